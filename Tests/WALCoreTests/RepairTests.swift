import Foundation
import Testing
import WALCore
import WALTestKit

/// `walctl verify --repair`, one test per tear scenario (as etcd's repair_test.go): what it prints, that the
/// damaged bytes are kept in quarantine/ byte for byte, that every intact record survives, that the lost range is
/// covered by a gap marker naming the quarantined file, that the log verifies sound afterwards, that a second repair
/// changes nothing, and that a writer carries on.
@Suite struct RepairTests {
    let tears = TearTests()

    /// Every file of the log directory (recursively) with its bytes.
    func snapshot(_ path: String) throws -> [String: Data] { try fileSnapshot(path) }

    /// Runs `walctl verify --repair`, checks it ends sound, and that running it again changes nothing.
    func repair(_ path: String) throws -> String {
        let result = try walctl(["verify", path, "--repair"])
        #expect(result.status == 0, "\(result.out)\n\(result.err)")
        #expect(result.out.hasSuffix("sound"))
        let before = try snapshot(path)
        let again = try walctl(["verify", path, "--repair"])
        #expect(again.status == 0)
        #expect(again.out.hasPrefix("repair: nothing to do"))
        #expect(try snapshot(path) == before, "a repair of a sound log changes nothing")
        return result.out
    }

    /// After a repair: no damage, every record but the lost ones intact, one gap covering exactly the lost range.
    func checkRepaired(_ path: String, lost: ClosedRange<UInt64>?, quarantined name: String) throws {
        let contents = try LogContents.read(path)
        #expect(contents.damage.isEmpty)
        tears.checkRecordsIntact(contents)
        if let lost {
            #expect(contents.seqs == Array(1..<lost.lowerBound) + Array(lost.upperBound + 1...30_000))
            #expect(contents.gaps.count == 1)
            #expect(contents.gaps.first?.fromSeq == lost.lowerBound)
            #expect(contents.gaps.first?.toSeq == lost.upperBound)
            #expect(contents.gaps.first?.reason.contains("quarantine/\(name)") == true)
        } else {
            #expect(contents.seqs == Array(1...30_000))
            #expect(contents.gaps.isEmpty)
        }
    }

    @Test func repairTearLastCutsTheTornTailAndKeepsItsBytes() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            let active = try #require(segments.last)
            let last = try #require(try tears.frames(active.path).last)
            let end = last.offset + Int64(last.header.frameLength)
            let torn = Corruptor.garbage(count: 700)
            try Corruptor.overwrite(active.path, at: end, with: torn)

            let out = try repair(path)
            #expect(out.contains("repair: torn tail cut \(active.name): zeroed 700 bytes at byte \(end)"))
            let kept = try Data(contentsOf: URL(fileURLWithPath: "\(path)/quarantine/\(active.name).torn-at-\(end)"))
            #expect(Array(kept) == torn)
            try checkRepaired(path, lost: nil, quarantined: active.name)
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func repairTearMiddleSalvagesEveryIntactFrame() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            let victim = segments[1]
            let frameList = try tears.frames(victim.path)
            let target = frameList[frameList.count / 2]
            try Corruptor.flipBit(victim.path, at: target.offset + 100, bit: 3)
            let damaged = try Data(contentsOf: URL(fileURLWithPath: victim.path))

            let out = try repair(path)
            #expect(
                out.contains("repair: quarantined \(victim.name): byte \(target.offset): payload checksum mismatch")
            )
            #expect(out.contains("repair: salvaged \(victim.name): \(frameList.count - 1) intact frames"))
            #expect(
                out.contains("gap marker for sequence numbers \(target.header.firstSeq)...\(target.header.lastSeq)")
            )
            let kept = try Data(contentsOf: URL(fileURLWithPath: "\(path)/quarantine/\(victim.name)"))
            #expect(kept == damaged, "the damaged segment is kept as it was")
            try checkRepaired(path, lost: target.header.firstSeq...target.header.lastSeq, quarantined: victim.name)
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func repairTruncatedSealedSegmentCoversItsLostTailWithAGap() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            let victim = segments[0]
            let frameList = try tears.frames(victim.path)
            let cut = frameList[frameList.count - 3]
            try Corruptor.truncate(victim.path, to: cut.offset + 30)

            _ = try repair(path)
            try checkRepaired(path, lost: cut.header.firstSeq...(segments[1].firstSeq - 1), quarantined: victim.name)
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func repairZeroedPageInTheMiddle() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            let victim = segments[1]
            try Corruptor.zero(victim.path, at: 8192, length: 4096)
            let damage = try #require(try LogContents.read(path).damage.first)
            let lost = try #require(damage.lostFromSeq)...(try #require(damage.lostToSeq))

            _ = try repair(path)
            try checkRepaired(path, lost: lost, quarantined: victim.name)
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func repairGarbageAfterASealedSegmentLosesNothing() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            let victim = segments[0]
            let size = Corruptor.size(victim.path)
            try Corruptor.overwrite(victim.path, at: size, with: Corruptor.garbage(count: 333))

            let out = try repair(path)
            #expect(out.contains("repair: quarantined \(victim.name)"))
            #expect(!out.contains("gap marker"), "no record was lost")
            try checkRepaired(path, lost: nil, quarantined: victim.name)
        }
    }

    @Test func repairDamagedSegmentHeaderSalvagesItsFrames() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            try Corruptor.flipBit(segments[1].path, at: 20)

            let out = try repair(path)
            #expect(out.contains("segment header: segment header checksum mismatch"))
            try checkRepaired(path, lost: nil, quarantined: segments[1].name)
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    /// Defect (found by a hostile tester): a deleted middle segment stayed damage for good: `verify` reported the
    /// missing seqs, and `verify --repair` said "nothing to do" and exited 1. It now writes a segment holding one gap
    /// marker for them, and the log is sound.
    @Test func repairOfADeletedMiddleSegmentRecordsItsSeqsAsAGap() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            try #require(segments.count >= 3)
            let lost = segments[1].firstSeq...(segments[2].firstSeq - 1)
            try FileManager.default.removeItem(atPath: segments[1].path)
            #expect(try walctl(["verify", path]).status != 0)

            let out = try repair(path)
            #expect(out.contains("gap marker for sequence numbers \(lost.lowerBound)...\(lost.upperBound)"), "\(out)")
            let contents = try LogContents.read(path)
            #expect(contents.damage.isEmpty)
            #expect(contents.seqs == Array(1..<lost.lowerBound) + Array(lost.upperBound + 1...30_000))
            #expect(contents.gaps.map { $0.fromSeq...$0.toSeq } == [lost])
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    /// Defect (found by a hostile tester): a frame repeating the seqs of an earlier one (checksums intact: a copied
    /// frame) was reported by `verify` but `verify --repair` said "nothing to do". The rebuilt segment keeps the
    /// first frame holding each seq.
    @Test func repairDropsAFrameThatRepeatsEarlierSeqs() throws {
        try withTemporaryDirectory { directory in
            let (path, segments) = try tears.makeLog(directory)
            let victim = segments[0]
            let frameList = try tears.frames(victim.path)
            let first = try #require(frameList.first)
            let last = try #require(frameList.last)
            let copy = Array(
                try Data(contentsOf: URL(fileURLWithPath: victim.path))
                    .dropFirst(Int(first.offset)).prefix(first.header.frameLength)
            )
            try Corruptor.overwrite(victim.path, at: last.offset + Int64(last.header.frameLength), with: copy)
            #expect(try walctl(["verify", path]).status != 0)

            let out = try repair(path)
            #expect(out.contains("repeats sequence numbers"), "\(out)")
            try checkRepaired(path, lost: nil, quarantined: victim.name)
            try tears.checkWriterContinues(path, expectedNext: 30_001)
        }
    }

    @Test func repairOfACleanLogChangesNothing() throws {
        try withTemporaryDirectory { directory in
            let (path, _) = try tears.makeLog(directory)
            let before = try snapshot(path)
            let result = try walctl(["verify", path, "--repair", "--json"])
            #expect(result.status == 0)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
            #expect((object["repairs"] as? [Any])?.isEmpty == true)
            #expect(object["sound"] as? Bool == true)
            #expect(try snapshot(path) == before)
        }
    }

    @Test func repairRefusesWhileAWriterHoldsTheLock() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let writer = try ChildProcess.endlessWriter(path, rate: 20000)
            defer { writer.kill() }
            #expect(writer.readLine()?.hasPrefix("acked") == true)
            let result = try walctl(["verify", path, "--repair"])
            #expect(result.status == 1)
            #expect(result.err.contains("already open for writing by pid \(writer.pid)"))
            #expect(result.err.contains("stop the process writing the log"))
            #expect(!FileManager.default.fileExists(atPath: path + "/quarantine"))
        }
    }
}
