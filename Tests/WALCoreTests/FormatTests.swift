import Foundation
import Testing
import WALCore
import WALTestKit

@Suite struct FormatTests {
    @Test(arguments: [
        ("", UInt32(0)),
        ("a", UInt32(0xC1D0_4330)),
        ("123456789", UInt32(0xE306_9283)),
        (String(repeating: "x", count: 1000), UInt32(0x6171_54C9)),
    ])
    func crc32cMatchesKnownVectors(input: String, expected: UInt32) {
        #expect(CRC32C.checksum(Array(input.utf8)) == expected)
    }

    @Test func crc32cContinuesAcrossPieces() {
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        for split in 0...bytes.count {
            let first = CRC32C.checksum(Array(bytes[..<split]))
            #expect(CRC32C.checksum(Array(bytes[split...]), continuing: first) == CRC32C.checksum(bytes))
        }
    }

    @Test func segmentFileNamesEncodeTheFirstSequenceNumber() {
        #expect(LogFormat.segmentFileName(firstSeq: 1) == "00000000000000000001.seg")
        #expect(LogFormat.segmentFileName(firstSeq: UInt64.max) == "18446744073709551615.seg")
        #expect(LogFormat.parseSegmentFileName("00000000000000000042.seg") == 42)
        #expect(LogFormat.parseSegmentFileName("0000000000000000042.seg") == nil)
        #expect(LogFormat.parseSegmentFileName("0000000000000000004a.seg") == nil)
        #expect(LogFormat.parseSegmentFileName("00000000000000000042.seg.tmp") == nil)
    }

    @Test func durabilityModesParse() {
        #expect(Durability(parsing: "process") == .processCrash)
        #expect(Durability(parsing: "periodic:250") == .periodic(milliseconds: 250))
        #expect(Durability(parsing: "sync") == .synchronous)
        #expect(Durability(parsing: "periodic:0") == nil)
        #expect(Durability(parsing: "fast") == nil)
    }

    /// Settings the writer turns into nanosecond deadlines or byte sums are refused when out of range: they used to
    /// pass and trap (SIGILL) on an overflow in the sealer, at the size limit, or in `validate` itself.
    @Test(arguments: [
        "periodic", "block", "segment", "retention", "keep",
    ])
    func outOfRangeSettingsAreRefusedWithAClearError(setting: String) throws {
        var configuration = WALConfiguration()
        switch setting {
        case "periodic": configuration.durability = .periodic(milliseconds: 19_000_000_000_000)
        case "block":
            configuration.whenFull = .block(timeoutMilliseconds: 99_999_999_999_999_999)
            configuration.maxTotalBytes = 200_000_000
        case "segment":
            configuration.segmentSize = 4_611_686_018_427_387_904
            configuration.maxTotalBytes = 200_000_000
        case "retention": configuration.retentionIntervalMilliseconds = -1
        default: configuration.keepForReplaySeconds = Int.max
        }
        try withTemporaryDirectory { directory in
            #expect {
                _ = try WAL.open(path: directory.file("log"), configuration: configuration)
            } throws: { error in
                (error as? WALError)?.code == .invalidArgument
            }
            #expect(!FileManager.default.fileExists(atPath: directory.file("log")), "refused before anything is made")
        }
        // The largest accepted values still open.
        var largest = WALConfiguration()
        largest.durability = .periodic(milliseconds: WALConfiguration.maxPeriodicMilliseconds)
        largest.whenFull = .block(timeoutMilliseconds: WALConfiguration.maxBlockMilliseconds)
        largest.segmentSize = WALConfiguration.maxSegmentSize
        largest.keepForReplaySeconds = WALConfiguration.maxKeepForReplaySeconds
        try largest.validate()
    }

    /// The checked-in golden log (made by `tools/make-golden-fixture`) must read back exactly, forever: the format
    /// is a public contract.
    @Test func goldenFixtureReadsBackExactly() throws {
        let fixture = try #require(Bundle.module.url(forResource: "Fixtures/golden-log", withExtension: nil))
        let contents = try LogContents.read(fixture.path)
        #expect(contents.damage.isEmpty)
        #expect(contents.seqs == Array(1...1000).filter { !(501...510).contains($0) })
        #expect(contents.gaps == [GapMarker(fromSeq: 501, toSeq: 510, reason: "golden gap")])
        for record in contents.records {
            #expect(record.bytes == Array("golden record \(record.seq)".utf8))
        }
        let meta = try LogDirectory(path: fixture.path).readMeta()
        #expect(meta.logID.description == "00112233-4455-6677-8899-aabbccddeeff")
        let summary = try LogInspector.examine(path: fixture.path, decodeRecords: true)
        #expect(summary.damage.isEmpty)
        #expect(summary.segments == 2)
    }
}

@Suite struct LockTests {
    @Test func aSecondWriterIsRefusedWithTheHoldersPID() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            #expect {
                _ = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            } throws: { error in
                guard let error = error as? WALError else { return false }
                return error.code == .locked && error.message.contains("pid \(getpid())")
            }
            // Another process is refused too, with a clear message.
            let result = try walctl(["emit", "--dir", directory.file("log"), "--count", "1"])
            #expect(result.status == 1)
            #expect(result.err.contains("already open for writing by pid \(getpid())"))
            try wal.close()
            let again = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            try again.close()
        }
    }

    @Test func readersNeedNoLockWhileTheWriterRuns() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            try appendRecords(wal, 0..<5000)
            #expect(wal.waitUntilSealed())
            let contents = try LogContents.read(directory.file("log"))
            #expect(contents.seqs == Array(1...5000))
            let summary = try LogInspector.examine(path: directory.file("log"))
            #expect(summary.writerPID == getpid())
            try wal.close()
        }
    }
}

@Suite struct TailReaderTests {
    @Test func tailReaderFollowsNewRecordsAcrossSegmentRolls() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            let tail = TailReader(path: path, after: 0)
            var seen: [UInt64] = []
            func drain() throws {
                try tail.poll { entry in
                    if case .record(let seq, let bytes) = entry {
                        #expect(Array(bytes) == testRecord(seq - 1))
                        seen.append(seq)
                    }
                }
            }
            for batch in 0..<10 {
                let base = UInt64(batch) * 3000
                try appendRecords(wal, base..<base + 3000)
                #expect(
                    try eventually {
                        try drain(); return seen.count == Int(base) + 3000
                    }
                )
            }
            #expect(seen == Array(1...30_000))
            #expect(try LogDirectory(path: path).segments().count > 2)
            try wal.close()
        }
    }

    /// A suspended tail reader holds no descriptor, says so cheaply while nothing changes, and resumes where it stood
    /// (within the segment, and across a roll to a new one).
    @Test func aSuspendedTailReaderResumesWhereItStood() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            let tail = TailReader(path: path, after: 0)
            var seen: [UInt64] = []
            func drain(to count: Int) throws -> Bool {
                try tail.poll { entry in
                    if case .record(let seq, _) = entry { seen.append(seq) }
                }
                return seen.count >= count
            }
            _ = try appendRecords(wal, 0..<100)
            #expect(try eventually { try drain(to: 100) })
            #expect(!tail.isSuspended)
            // Descriptors open on this log only: other tests of the process open and close files meanwhile.
            func openUnderLog() -> Int {
                ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).filter {
                    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0))?
                        .hasPrefix(path + "/") == true
                }.count
            }
            let descriptors = openUnderLog()
            // Written a moment ago (stamped in the future, so however long this thread stalls): a write in the same
            // tick of the kernel's coarse file clock would not move the modification time, so the reader cannot
            // tell and says it may have more.
            for file in try LogDirectory(path: path).segments().map(\.path) + [path] {
                try FileManager.default.setAttributes(
                    [.modificationDate: Date().addingTimeInterval(10)],
                    ofItemAtPath: file
                )
            }
            tail.suspend()
            #expect(tail.isSuspended)
            #expect(openUnderLog() == descriptors - 1)
            #expect(tail.mayHaveMore)
            #expect(try eventually { try drain(to: 100) })
            // Written a minute ago (backdated): two stats say nothing changed, and nothing is opened.
            let minuteAgo = Date().addingTimeInterval(-60)
            for file in try LogDirectory(path: path).segments().map(\.path) + [path] {
                try FileManager.default.setAttributes([.modificationDate: minuteAgo], ofItemAtPath: file)
            }
            tail.suspend()
            #expect(!tail.mayHaveMore)
            #expect(try eventually { try drain(to: 100) })
            // Frames sealed after the reader's last poll but before it was suspended: the stamps alone would hide
            // them (nothing changes after the suspension); the reader looked for them and says it may have more.
            _ = try appendRecords(wal, 100..<150)
            #expect(eventually { (try? LogInspector.lastSealedSeqCheap(path: path)) == 150 })
            for file in try LogDirectory(path: path).segments().map(\.path) + [path] {
                try FileManager.default.setAttributes([.modificationDate: minuteAgo], ofItemAtPath: file)
            }
            tail.suspend()
            #expect(tail.mayHaveMore)
            #expect(try eventually { try drain(to: 150) })
            tail.suspend()
            // New frames in the same segment, then enough to roll into new segments.
            _ = try appendRecords(wal, 150..<200)
            #expect(eventually { tail.mayHaveMore })
            #expect(try eventually { try drain(to: 200) })
            #expect(seen == Array(1...200))
            tail.suspend()
            _ = try appendRecords(wal, 200..<30_000)
            #expect(eventually { tail.mayHaveMore })
            #expect(try eventually(within: 20) { try drain(to: 30_000) })
            #expect(seen == Array(1...30_000))
            #expect(try LogDirectory(path: path).segments().count > 1)
            try wal.close()
        }
    }

    /// Every appended record reaches a tail reader. (How fast, against the documented 100 ms bound, is measured by
    /// the benchmark "append to visible in a tail reader" in WALCoreBenchmarks: a unit test on a shared, noisy
    /// machine asserts only a bound no healthy run comes near.)
    @Test func aRecordIsVisibleToTheTail() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: WALConfiguration())
            let tail = TailReader(path: path, after: 0)
            var worst: Double = 0
            for value in 0..<20 {
                let started = Date()
                let seq = try wal.append(testRecord(UInt64(value)))
                var found = false
                while !found && Date().timeIntervalSince(started) < 10 {
                    try tail.poll { entry in
                        if case .record(let got, _) = entry, got == seq { found = true }
                    }
                    if !found { usleep(2000) }
                }
                #expect(found)
                worst = max(worst, Date().timeIntervalSince(started))
            }
            #expect(worst < 10, "a record reached the tail reader only after \(worst) s")
            try wal.close()
        }
    }

    @Test func tailReaderStartsAfterItsCursor() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try appendRecords(wal, 0..<1000)
            #expect(wal.waitUntilSealed())
            let tail = TailReader(path: path, after: 600)
            var seen: [UInt64] = []
            try tail.poll { if case .record(let seq, _) = $0 { seen.append(seq) } }
            #expect(seen == Array(601...1000))
            #expect(tail.nextSeq == 1001)
            try wal.close()
        }
    }
}
