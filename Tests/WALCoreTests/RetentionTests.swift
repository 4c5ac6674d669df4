import Foundation
import Testing
@_spi(Testing) import WALCore
import WALTestKit

@Suite struct CursorTests {
    @Test func cursorsPersistAndListAndValidateNames() throws {
        try withTemporaryDirectory { directory in
            let store = CursorStore(path: directory.path)
            #expect(try store.load("postgres") == nil)
            try store.store("postgres", seq: 41)
            try store.store("postgres", seq: 42)
            try store.store("kafka", seq: 7)
            #expect(try store.load("postgres")?.seq == 42)
            #expect(try store.all().cursors.map(\.name) == ["kafka", "postgres"])
            #expect(throws: WALError.self) { try store.store("../escape", seq: 1) }
            #expect(throws: WALError.self) { try store.store("", seq: 1) }
            try store.remove("kafka")
            #expect(try store.all().cursors.map(\.name) == ["postgres"])
            // No temporary files are left behind by the atomic writes.
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.file("cursors"))
            #expect(names == ["postgres.cursor"])
        }
    }

    @Test func aDamagedCursorIsReportedNotSkipped() throws {
        try withTemporaryDirectory { directory in
            let store = CursorStore(path: directory.path)
            try store.store("a", seq: 5)
            try Corruptor.flipBit(directory.file("cursors/a.cursor"), at: 10)
            #expect(throws: WALError.self) { try store.load("a") }
            #expect(try store.all().damaged.count == 1)
        }
    }
}

@Suite struct RetentionTests {
    func configuration() -> WALConfiguration {
        var configuration = smallConfiguration()
        configuration.retentionIntervalMilliseconds = 10
        return configuration
    }

    @Test func segmentsAreDeletedOnlyWhenEveryCursorIsPastThem() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let store = CursorStore(path: path)
            let wal = try WAL.open(path: path, configuration: configuration())
            try appendRecords(wal, 0..<40_000)
            #expect(wal.waitUntilSealed())
            let segments = try LogDirectory(path: path).segments()
            try #require(segments.count >= 4)

            // Without a cursor nothing is deleted: nobody consumed anything. (Retention run directly: waiting for
            // the sealer's run would also pass if it never ran.)
            wal.runRetentionForTesting()
            #expect(try LogDirectory(path: path).segments() == segments)

            // Two cursors: the slower one decides.
            // (The slow one first: retention may run between the two stores.)
            try store.store("slow", seq: segments[2].firstSeq - 1)
            try store.store("fast", seq: 40_000)
            #expect(try eventually { try LogDirectory(path: path).segments().first == segments[2] })
            wal.runRetentionForTesting()
            #expect(try LogDirectory(path: path).segments().first == segments[2], "slow cursor holds segment 2")
            let contents = try LogContents.read(path)
            #expect(contents.seqs.first == segments[2].firstSeq)
            #expect(contents.damage.first?.lostFromSeq == 1, "a reader is told the range retention removed")

            // The active segment is never deleted, even when every cursor is at the end.
            try store.store("slow", seq: 40_000)
            #expect(try eventually { try LogDirectory(path: path).segments().count == 1 })
            #expect(try LogDirectory(path: path).segments().first == segments.last)
            try wal.close()
        }
    }

    @Test func keepForReplayBytesKeepsPassedSegments() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var configuration = configuration()
            configuration.keepForReplayBytes = 2 << 20
            let wal = try WAL.open(path: path, configuration: configuration)
            try appendRecords(wal, 0..<60_000)
            #expect(wal.waitUntilSealed())
            try CursorStore(path: path).store("done", seq: 60_000)
            #expect(
                try eventually {
                    let sealed = try LogDirectory(path: path).segments().dropLast()
                    let bytes = sealed.reduce(Int64(0)) { $0 + Corruptor.size($1.path) }
                    return bytes >= 2 << 20 && bytes < (2 << 20) + (1 << 20) + 1
                }
            )
            try wal.close()
        }
    }
}

@Suite(.serialized) struct FullDiskTests {
    func limited(_ policy: WhenFull) -> WALConfiguration {
        var configuration = smallConfiguration()
        configuration.maxTotalBytes = Int64(3 << 20) + Int64(64 << 10) + 4096
        configuration.whenFull = policy
        configuration.retentionIntervalMilliseconds = 10
        return configuration
    }

    /// Appends until drops happen; returns (accepted seqs, dropped seqs).
    func fill(_ wal: WAL, count: Int) -> ([UInt64], [UInt64]) {
        var accepted: [UInt64] = []
        var dropped: [UInt64] = []
        for value in 0..<count {
            do {
                accepted.append(try wal.append(testRecord(UInt64(value))))
            } catch {
                if error.code == .dropped {
                    dropped.append(wal.statistics.nextSeq - 1)
                } else {
                    Issue.record("unexpected \(error)")
                }
            }
        }
        return (accepted, dropped)
    }

    @Test func dropNewestCountsEveryDropAndRecordsTheGapInTheLog() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: limited(.dropNewest))
            try CursorStore(path: path).store("consumer", seq: 0)
            let (accepted, dropped) = fill(wal, count: 60_000)
            #expect(!dropped.isEmpty, "the size limit must have been reached")
            #expect(wal.statistics.dropped == UInt64(dropped.count))
            #expect(wal.statistics.stallReason?.contains("size limit") == true)
            // The consumer catches up: retention frees space and appends succeed again.
            try CursorStore(path: path).store("consumer", seq: UInt64(accepted.count / 2))
            var resumed: UInt64?
            #expect(
                eventually {
                    resumed = try? wal.append(testRecord(999_999))
                    return resumed != nil
                }
            )
            #expect(wal.waitUntilSealed())
            try wal.close()
            let contents = try LogContents.read(path)
            let gapSeqs = contents.gaps.flatMap { Array($0.fromSeq...$0.toSeq) }
            #expect(Set(gapSeqs) == Set(dropped) || Set(dropped).isSubset(of: Set(gapSeqs)))
            #expect(contents.gaps.allSatisfy { $0.reason.contains("size limit") })
            let readable = Set(contents.seqs)
            #expect(readable.isDisjoint(with: dropped))
            if let resumed { #expect(readable.contains(resumed)) }
            #expect(try LogInspector.examine(path: path).gaps == contents.gaps)
        }
    }

    @Test func blockWaitsForTheTimeoutBeforeDropping() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: limited(.block(timeoutMilliseconds: 30)))
            try CursorStore(path: path).store("consumer", seq: 0)
            var dropTook: TimeInterval = 0
            for value in 0..<100_000 {
                let started = Date()
                do throws(WALError) {
                    _ = try wal.append(testRecord(UInt64(value)))
                } catch {
                    let code = error.code
                    #expect(code == .dropped)
                    dropTook = Date().timeIntervalSince(started)
                    break
                }
            }
            #expect(dropTook >= 0.029, "a drop under .block happens only after the timeout (took \(dropTook) s)")
            #expect(wal.statistics.dropped == 1)
            // Still stalled: close says records stay in staging (they are sealed by the next open).
            #expect(throws: WALError.self) { try wal.close() }
        }
    }

    @Test(.enabled(if: SmallFileSystem.isAvailable, "needs root to mount a small tmpfs"))
    func realENOSPCIsADropWithAGapNotACrash() throws {
        let filesystem = try SmallFileSystem(megabytes: 4)
        defer { filesystem.unmount() }
        let path = filesystem.path + "/log"
        var configuration = smallConfiguration()
        configuration.whenFull = .dropNewest
        let wal = try WAL.open(path: path, configuration: configuration)
        var dropped = 0
        for value in 0..<200_000 {
            do {
                _ = try wal.append(testRecord(UInt64(value)))
            } catch {
                let code = error.code
                #expect(code == .dropped)
                dropped += 1
            }
        }
        #expect(dropped > 0)
        #expect(wal.statistics.stallReason == "no space left on device")
        try? wal.close()
        let contents = try LogContents.read(path)
        #expect(contents.damage.isEmpty)
        let lost = contents.gaps.reduce(UInt64(0)) { $0 + $1.toSeq - $1.fromSeq + 1 }
        #expect(contents.gaps.allSatisfy { $0.reason.contains("no space") })
        #expect(Int(lost) <= dropped)
    }
}

@Suite struct KeepForReplayAgeTests {
    @Test func keepForReplayAgeKeepsYoungSegmentsUntilTheSizeLimitNeedsThem() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var configuration = smallConfiguration()
            configuration.retentionIntervalMilliseconds = 10
            configuration.keepForReplaySeconds = 3600
            let wal = try WAL.open(path: path, configuration: configuration)
            try appendRecords(wal, 0..<40_000)
            #expect(wal.waitUntilSealed())
            let before = try LogDirectory(path: path).segments()
            try CursorStore(path: path).store("done", seq: 40_000)
            wal.runRetentionForTesting()
            #expect(try LogDirectory(path: path).segments() == before, "young segments are kept for replay")
            try wal.close()
        }
    }
}
