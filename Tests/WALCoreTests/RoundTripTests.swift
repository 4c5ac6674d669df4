import Foundation
import Synchronization
import Testing
import WALCore
import WALTestKit
import WALTraffic

@Suite struct RoundTripTests {
    @Test func recordsComeBackInOrderAcrossSegmentRollsAndRestarts() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var expected: [UInt64] = []
            for restart in 0..<3 {
                let wal = try WAL.open(path: path, configuration: smallConfiguration())
                let base = UInt64(restart) * 20_000
                let seqs = try appendRecords(wal, base..<base + 20_000)
                #expect(seqs.first == base + 1)
                #expect(seqs == Array(base + 1...base + 20_000))
                expected += Array(base..<base + 20_000)
                try wal.close()
            }
            let contents = try LogContents.read(path)
            #expect(contents.damage.isEmpty)
            #expect(contents.gaps.isEmpty)
            #expect(contents.seqs == Array(1...60_000))
            for (index, record) in contents.records.enumerated() {
                #expect(record.bytes == testRecord(expected[index]), "record \(record.seq) differs")
            }
            let segments = try LogDirectory(path: path).segments()
            #expect(segments.count > 3, "1 MiB segments must have rolled")
        }
    }

    @Test func readingFromTheMiddleStartsAtThatSequenceNumber() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            try appendRecords(wal, 0..<30_000)
            try wal.close()
            let contents = try LogContents.read(directory.file("log"), from: 12_345)
            #expect(contents.seqs == Array(12_345...30_000))
            #expect(contents.records.first?.bytes == testRecord(12_344))
        }
    }

    @Test func emptyAndLargestRecordsRoundTripAndTooLargeIsRejected() throws {
        try withTemporaryDirectory { directory in
            let configuration = smallConfiguration()
            let wal = try WAL.open(path: directory.file("log"), configuration: configuration)
            let largest = [UInt8](repeating: 0xAB, count: configuration.maxRecordSize)
            let a = try wal.append([UInt8]())
            let b = try wal.append(largest)
            #expect(throws: WALError.self) {
                try wal.append([UInt8](repeating: 1, count: configuration.maxRecordSize + 1))
            }
            let c = try wal.append([1, 2, 3])
            #expect([a, b, c] == [1, 2, 3], "a rejected record uses no sequence number")
            try wal.close()
            let contents = try LogContents.read(directory.file("log"))
            #expect(contents.records.map(\.bytes) == [[], largest, [1, 2, 3]])
        }
    }

    @Test func appendAfterCloseThrowsClosed() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            try wal.append([1])
            try wal.close()
            #expect {
                try wal.append([2])
            } throws: { error in
                (error as? WALError)?.code == .closed
            }
        }
    }

    /// The appender that closes a block wakes the sealer (after releasing the append lock): with a seal delay of
    /// 10 s the sealer's own timer would first look after 2.5 s, so only that wake-up seals within 2 s, and lets
    /// appenders fill staging many times over without waiting for the timer.
    @Test func anAppenderThatClosesABlockWakesTheSealer() throws {
        try withTemporaryDirectory { directory in
            var configuration = WALConfiguration()
            configuration.blockSize = 4096
            configuration.blockCount = 4
            configuration.sealDelayMilliseconds = 10_000
            let wal = try WAL.open(path: directory.file("log"), configuration: configuration)
            // Four records of 1,016 staged bytes fill a 4 KiB block; the fifth closes it.
            try appendRecords(wal, 1...5, size: 1000)
            #expect(eventually(within: 2) { wal.statistics.sealedSeq >= 4 }, "the closed block was sealed at once")
            // 60 blocks through 4: each closing appender wakes the sealer, none waits for its timer.
            let started = Date()
            try appendRecords(wal, 6...240, size: 1000)
            #expect(Date().timeIntervalSince(started) < 2)
            try wal.close()
            #expect(try LogContents.read(directory.file("log")).seqs == Array(1...240))
        }
    }

    @Test func recordsCompressInFrames() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            var record = SyntheticRecord(thread: 0, size: 100)
            for counter in 0..<10_000 {
                record.fill(counter: UInt64(counter))
                try wal.append(record.bytes)
            }
            try wal.close()
            let summary = try LogInspector.examine(path: directory.file("log"))
            #expect(summary.records == 10_000)
            #expect(summary.frames < 200, "records are compressed in blocks, not one by one")
            #expect(summary.bytesOnDisk < summary.bytesRaw / 2, "repetitive records compress")
        }
    }

    @Test func filesArePrivate() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try wal.append([1])
            try wal.close()
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o700)
            for name in try FileManager.default.contentsOfDirectory(atPath: path) where name != "cursors" {
                let mode = try FileManager.default.attributesOfItem(atPath: path + "/" + name)[.posixPermissions]
                #expect((mode as? NSNumber)?.intValue == 0o600, "\(name)")
            }
        }
    }
}

@Suite struct ConcurrencyTests {
    @Test func concurrentAppendersGetDistinctContiguousSequenceNumbers() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.open(path: directory.file("log"), configuration: smallConfiguration())
            let threads = 4
            let perThread = 25_000
            let results = Mutex<[[UInt64]]>(Array(repeating: [], count: threads))
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                var record = SyntheticRecord(thread: UInt32(thread), size: 64)
                var seqs: [UInt64] = []
                seqs.reserveCapacity(perThread)
                for counter in 0..<perThread {
                    record.fill(counter: UInt64(counter))
                    if let seq = try? record.bytes.withUnsafeBytes({ try wal.append($0) }) { seqs.append(seq) }
                }
                results.withLock { $0[thread] = seqs }
            }
            try wal.close()
            let returned = results.withLock { $0 }
            #expect(returned.allSatisfy { $0.count == perThread })
            #expect(Set(returned.joined()).count == threads * perThread)
            let contents = try LogContents.read(directory.file("log"))
            #expect(contents.seqs == Array(1...UInt64(threads * perThread)))
            // Each thread's records appear in its own order, intact, each exactly once.
            var nextCounter = [UInt64](repeating: 0, count: threads)
            for record in contents.records {
                let decoded = record.bytes.withUnsafeBytes { SyntheticRecord.check($0) }
                guard let decoded else {
                    Issue.record("record \(record.seq) is not intact")
                    continue
                }
                #expect(decoded.counter == nextCounter[Int(decoded.thread)])
                nextCounter[Int(decoded.thread)] += 1
            }
            #expect(nextCounter == [UInt64](repeating: UInt64(perThread), count: threads))
        }
    }

    @Test func concurrentSyncCallersAreGroupCommitted() throws {
        try withTemporaryDirectory { directory in
            var configuration = smallConfiguration()
            configuration.durability = .synchronous
            let wal = try WAL.open(path: directory.file("log"), configuration: configuration)
            DispatchQueue.concurrentPerform(iterations: 4) { thread in
                for index in 0..<200 { _ = try? wal.append(testRecord(UInt64(thread * 1000 + index))) }
            }
            let statistics = wal.statistics
            #expect(statistics.appended == 800)
            #expect(statistics.durableSeq == 800, "every synchronous append returned after its record was synced")
            try wal.close()
        }
    }
}
