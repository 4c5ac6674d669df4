import Foundation
import Testing
import WALCore
import WALTestKit

/// One test per way a log gets damaged (as etcd's repair_test.go): each checks what readers report (file and
/// offset), that everything before and after the damage stays readable, and that a writer opens and carries on.
@Suite struct TearTests {
    /// A closed log of 3000 records in several segments; returns the path and its segment files.
    func makeLog(_ directory: TemporaryDirectory) throws -> (String, [LogDirectory.SegmentFile]) {
        let path = directory.file("log")
        let wal = try WAL.open(path: path, configuration: smallConfiguration())
        try appendRecords(wal, 0..<30_000)
        try wal.close()
        let segments = try LogDirectory(path: path).segments()
        try #require(segments.count >= 3)
        return (path, segments)
    }

    /// Frame offsets of a segment (for aiming the damage).
    func frames(_ path: String) throws -> [SegmentScan.Frame] {
        SegmentScan.scan(try SegmentFileReader(path: path)).frames
    }

    func checkRecordsIntact(_ contents: LogContents) {
        for record in contents.records where record.bytes != testRecord(record.seq - 1) {
            Issue.record("record \(record.seq) is not intact")
        }
    }

    /// Reopening as a writer must work and new records must follow the old ones.
    func checkWriterContinues(_ path: String, expectedNext: UInt64) throws {
        let wal = try WAL.open(path: path, configuration: smallConfiguration())
        let seq = try wal.append(testRecord(expectedNext - 1))
        #expect(seq == expectedNext)
        try wal.close()
        let contents = try LogContents.read(path, from: seq)
        #expect(contents.seqs == [seq])
    }

    @Test func tornTailIsCutOnOpenAndLosesNothingSealed() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            let active = try #require(segments.last)
            let last = try #require(try frames(active.path).last)
            let end = last.offset + Int64(last.header.frameLength)
            // A frame half written when the process died: a valid-looking header and part of a payload.
            let torn = Corruptor.garbage(count: 700)
            try Corruptor.overwrite(active.path, at: end, with: torn)
            let before = try LogContents.read(path)
            #expect(before.damage.isEmpty, "a torn tail is not damage")
            #expect(before.tornTailBytes == 700)
            #expect(before.seqs == Array(1...30_000))
            let verify = try walctl(["verify", path])
            #expect(verify.status == 0, "a torn tail after a crash is reported, not an error")
            #expect(verify.out.contains("torn tail: 700 bytes"))

            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            #expect(wal.recovery.tornTailBytes == 700)
            try wal.close()
            let after = try LogContents.read(path)
            #expect(after.tornTailBytes == 0)
            #expect(after.seqs == Array(1...30_000))
            try checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func bitFlipInASealedFrameIsReportedWithFileAndOffsetAndSkipped() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            let victim = segments[1]
            let frameList = try frames(victim.path)
            let target = frameList[frameList.count / 2]
            try Corruptor.flipBit(victim.path, at: target.offset + 100, bit: 3)

            let contents = try LogContents.read(path)
            #expect(contents.damage.count == 1)
            let damage = try #require(contents.damage.first)
            #expect(damage.path == victim.path)
            #expect(damage.offset == target.offset)
            #expect(damage.lostFromSeq == target.header.firstSeq)
            #expect(damage.lostToSeq == target.header.lastSeq)
            let lost = Set(target.header.firstSeq...target.header.lastSeq)
            #expect(contents.seqs == Array(1...30_000).filter { !lost.contains($0) })
            checkRecordsIntact(contents)

            let verify = try walctl(["verify", path])
            #expect(verify.status == 1)
            #expect(verify.out.contains("DAMAGED \(victim.path) at byte \(target.offset)"))
            try checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func truncatedSealedSegmentLosesOnlyItsTail() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            let victim = segments[0]
            let frameList = try frames(victim.path)
            let cut = frameList[frameList.count - 3]
            try Corruptor.truncate(victim.path, to: cut.offset + 30)

            let contents = try LogContents.read(path)
            let nextFirst = segments[1].firstSeq
            #expect(contents.damage.count == 1)
            #expect(contents.damage.first?.path == victim.path)
            #expect(contents.damage.first?.lostFromSeq == cut.header.firstSeq)
            #expect(contents.damage.first?.lostToSeq == nextFirst - 1)
            #expect(contents.seqs == Array(1..<cut.header.firstSeq) + Array(nextFirst...30_000))
            checkRecordsIntact(contents)
            #expect(try walctl(["verify", path]).status == 1)
            try checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func zeroedPageInTheMiddleIsSkipped() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            let victim = segments[1]
            try Corruptor.zero(victim.path, at: 8192, length: 4096)

            let contents = try LogContents.read(path)
            #expect(contents.damage.count == 1)
            let damage = try #require(contents.damage.first)
            #expect(damage.path == victim.path)
            #expect(damage.offset <= 8192)
            let lostFrom = try #require(damage.lostFromSeq)
            let lostTo = try #require(damage.lostToSeq)
            #expect(contents.seqs == Array(1..<lostFrom) + Array(lostTo + 1...30_000))
            checkRecordsIntact(contents)
            #expect(try walctl(["verify", path]).status == 1)
            try checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func garbageAppendedToASealedSegmentIsReported() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            let victim = segments[0]
            let size = Corruptor.size(victim.path)
            try Corruptor.overwrite(victim.path, at: size, with: Corruptor.garbage(count: 333))

            let contents = try LogContents.read(path)
            #expect(contents.seqs == Array(1...30_000), "nothing is lost")
            #expect(contents.damage.count == 1)
            #expect(contents.damage.first?.offset == size)
            #expect(contents.damage.first?.length == 333)
            #expect(try walctl(["verify", path]).status == 1)
            try checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func garbageInTheActiveSegmentAfterACrashIsCutNotMistakenForData() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            let active = try #require(segments.last)
            let last = try #require(try frames(active.path).last)
            let end = last.offset + Int64(last.header.frameLength)
            try Corruptor.overwrite(active.path, at: end + 4096, with: Corruptor.garbage(count: 4096, seed: 7))
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            #expect(wal.recovery.tornTailBytes == 8192)
            try appendRecords(wal, 30_000..<31_000)
            try wal.close()
            let contents = try LogContents.read(path)
            #expect(contents.damage.isEmpty)
            #expect(contents.seqs == Array(1...31_000))
            checkRecordsIntact(contents)
        }
    }

    @Test func damagedSegmentHeaderSkipsTheSegmentAndReportsIt() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            try Corruptor.flipBit(segments[1].path, at: 20)
            let contents = try LogContents.read(path)
            #expect(contents.damage.first?.path == segments[1].path)
            #expect(contents.seqs == Array(1..<segments[1].firstSeq) + Array(segments[2].firstSeq...30_000))
            #expect(try walctl(["verify", path]).status == 1)
        }
    }

    @Test func readerNeverCrashesOnRandomDamage() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try makeLog(directory)
            var generator = SeededGenerator()
            for round in 0..<40 {
                let victim = segments[Int.random(in: 0..<segments.count, using: &generator)]
                let size = Corruptor.size(victim.path)
                let offset = Int64.random(in: 0..<max(size, 1), using: &generator)
                let length = Int.random(in: 1...512, using: &generator)
                try Corruptor.overwrite(
                    victim.path,
                    at: offset,
                    with: Corruptor.garbage(count: length, seed: UInt64(round + 1))
                )
                let contents = try LogContents.read(path)
                #expect(contents.seqs == contents.seqs.sorted())
                #expect(Set(contents.seqs).count == contents.seqs.count)
                checkRecordsIntact(contents)
                _ = try LogInspector.examine(path: path, decodeRecords: true)
            }
        }
    }
}
