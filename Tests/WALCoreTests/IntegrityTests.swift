import Foundation
import Synchronization
import Testing
@_spi(Testing) import WALCore
import WALTestKit

/// The log's first promise (wal-format.md section 14): every record under its own sequence number, or a durable gap.
@Suite(.serialized) struct SequenceIntegrityTests {
    /// Staging + 2 segments of `smallConfiguration`: the size limit is reached after about 2 MiB.
    func limited() -> WALConfiguration {
        var configuration = smallConfiguration()
        configuration.maxTotalBytes = Int64(2 << 20) + Int64(64 << 10) + 4096
        configuration.whenFull = .dropNewest
        configuration.retentionIntervalMilliseconds = 10
        return configuration
    }

    /// Appends `values`, returning seq -> value for every acknowledged record and the dropped seqs.
    func append(_ wal: WAL, _ values: Range<UInt64>) -> (acked: [UInt64: UInt64], dropped: [UInt64]) {
        var acked: [UInt64: UInt64] = [:]
        var dropped: [UInt64] = []
        for value in values {
            do throws(WALError) {
                acked[try wal.append(testRecord(value))] = value
            } catch {
                if error.code == .dropped, let seq = error.seq {
                    dropped.append(seq)
                } else {
                    Issue.record("unexpected \(error)")
                }
            }
        }
        return (acked, dropped)
    }

    /// Every acknowledged record is in the log under its own seq with its own bytes (those retention has not
    /// deleted yet); no seq holds two records.
    func expectAckedRecordsExact(_ path: String, _ acked: [UInt64: UInt64]) throws {
        let contents = try LogContents.read(path)
        let first = min(contents.records.first?.seq ?? .max, contents.gaps.first?.fromSeq ?? .max)
        var seen = Set<UInt64>()
        var twice: [UInt64] = []
        var wrong: [UInt64] = []
        for record in contents.records {
            if !seen.insert(record.seq).inserted { twice.append(record.seq) }
            if let value = acked[record.seq], record.bytes != testRecord(value) { wrong.append(record.seq) }
        }
        #expect(twice.isEmpty, "\(twice.count) seqs hold two records: \(twice.prefix(5))")
        #expect(wrong.isEmpty, "\(wrong.count) seqs hold another record's bytes: \(wrong.prefix(5))")
        let missing = Set(acked.keys.filter { $0 >= first }).subtracting(seen)
        #expect(missing.isEmpty, "\(missing.count) acknowledged records missing: \(missing.sorted().prefix(5))")
        let violations = try LogInvariants.violations(path)
        #expect(violations.isEmpty, "\(violations.count) violations: \(violations.prefix(5))")
    }

    /// Defect: after a stall, the sealer's retry added the records of its unwritten frame to it again, so one frame
    /// claimed thousands of seqs holding copies of earlier records.
    @Test func aSealerRetryAfterAStallWritesEveryRecordUnderItsOwnSeq() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: limited())
            let cursors = CursorStore(path: path)
            try cursors.store("behind", seq: 0)
            var (acked, dropped) = append(wal, 0..<40_000)
            try #require(!dropped.isEmpty, "the size limit must have stalled the sealer")
            // The consumer catches up, retention frees space, the sealer's retries succeed.
            for round in 1...3 {
                try cursors.store("behind", seq: wal.statistics.sealedSeq)
                let more = append(wal, UInt64(round) * 100_000..<UInt64(round) * 100_000 + 20_000)
                acked.merge(more.acked) { old, _ in old }
                dropped += more.dropped
            }
            try cursors.store("behind", seq: wal.statistics.sealedSeq)
            #expect(wal.waitUntilSealed(timeoutMilliseconds: 10_000))
            try wal.close()
            try cursors.remove("behind")
            try expectAckedRecordsExact(path, acked)
        }
    }

    /// Defect: drops at the size limit lived only in memory; closing (or a kill) lost the gap and the next writer
    /// gave the dropped seqs to new records.
    @Test(arguments: [false, true])
    func droppedSeqsAreAGapAndNeverReusedAfterCloseOrCrash(crash: Bool) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: limited())
            try CursorStore(path: path).store("behind", seq: 0)
            let (acked, dropped) = append(wal, 0..<40_000)
            try #require(!dropped.isEmpty)
            if crash { wal.abandonForTesting() } else { #expect(throws: WALError.self) { try wal.close() } }

            try CursorStore(path: path).remove("behind")
            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            let next = try reopened.append(testRecord(7))
            #expect(next > dropped.max()!, "a new record took seq \(next), at or below a dropped one")
            #expect(reopened.waitUntilSealed())
            try reopened.close()
            try expectAckedRecordsExact(path, acked.merging([next: 7]) { old, _ in old })
            let gaps = try LogContents.read(path).gaps
            let gapSeqs = Set(gaps.flatMap { Array($0.fromSeq...$0.toSeq) })
            #expect(gapSeqs == Set(dropped), "every dropped seq, and only those, is in a gap marker")
        }
    }

    enum Tampering: String, CaseIterable {
        case truncatedToZero, zeroedWhole, deleted, truncatedToHalf, truncatedToItsHeader, truncatedInsideItsHeader
    }

    /// Defect: an empty or zeroed active segment was deleted silently and its seqs reused, so a shipper whose cursor
    /// was past them skipped every new record up to there.
    @Test(arguments: Tampering.allCases)
    func aLostActiveSegmentEndIsAGapAndItsSeqsAreNeverReused(tampering: Tampering) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            let acked = Dictionary(
                uniqueKeysWithValues: try appendRecords(wal, 0..<30_000).enumerated().map {
                    ($0.element, UInt64($0.offset))
                }
            )
            try wal.close()
            let segments = try LogDirectory(path: path).segments()
            try #require(segments.count >= 3)
            let active = segments.last!
            switch tampering {
            case .truncatedToZero: #expect(truncate(active.path, 0) == 0)
            case .zeroedWhole:
                // What a crash while creating a segment leaves: a preallocated file of zeros.
                let size = try FileManager.default.attributesOfItem(atPath: active.path)[.size] as! Int
                try Corruptor.zero(active.path, at: 0, length: size)
            case .deleted: try FileManager.default.removeItem(atPath: active.path)
            case .truncatedToHalf:
                let size = try FileManager.default.attributesOfItem(atPath: active.path)[.size] as! Int
                #expect(truncate(active.path, off_t(size / 2)) == 0)
            case .truncatedToItsHeader:
                // What a repair of a segment with no intact frame leaves: the writer must grow it, not try to
                // create a second file of the same name.
                #expect(truncate(active.path, 64) == 0)
            case .truncatedInsideItsHeader:
                // Shorter than a header (wal-format.md 5, step 3): removed, its seqs covered by the gap.
                #expect(truncate(active.path, 40) == 0)
            }
            // verify sees the loss before any writer opens the log.
            #expect(try LogInspector.examine(path: path).damage.contains { $0.reason.contains("were assigned") })

            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            let lost = try #require(reopened.recovery.lostSeqs)
            #expect(lost.upperBound == 30_000)
            let next = try reopened.append(testRecord(99))
            #expect(next == 30_001)
            #expect(reopened.waitUntilSealed())
            try reopened.close()
            let contents = try LogContents.read(path)
            let gap = try #require(contents.gaps.last)
            #expect(gap.toSeq == 30_000 && gap.reason.contains("lost"))
            let kept = Dictionary(uniqueKeysWithValues: acked.filter { $0.key < lost.lowerBound }.map { ($0, $1) })
            try expectAckedRecordsExact(path, kept.merging([next: 99]) { old, _ in old })
        }
    }

    /// Defect (found by a hostile tester): a zeroed header over an active segment whose frames were intact (a lost
    /// page) was taken for a segment a crash left unwritten, and the next writer deleted the file: 61,060 records
    /// gone, the loss recorded as a gap. Now readers report the header as damage, the writer refuses to open and
    /// keeps every byte, and a repair rebuilds the segment with every record.
    @Test(arguments: [64, 4096])
    func aZeroedHeaderOverIntactFramesIsDamageTheWriterKeeps(zeroedBytes: Int) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            let acked = Dictionary(
                uniqueKeysWithValues: try appendRecords(wal, 0..<30_000).enumerated().map {
                    ($0.element, UInt64($0.offset))
                }
            )
            try wal.close()
            let active = try #require(try LogDirectory(path: path).segments().last)
            let before = try Data(contentsOf: URL(fileURLWithPath: active.path))
            try Corruptor.zero(active.path, at: 0, length: zeroedBytes)

            #expect(try LogInspector.examine(path: path).damage.contains { $0.file == active.path })
            let error = #expect(throws: WALError.self) { try WAL.open(path: path, configuration: smallConfiguration()) }
            #expect(error?.description.contains("header is zeroed but frames follow it") == true)
            let after = try Data(contentsOf: URL(fileURLWithPath: active.path))
            #expect(after.count == before.count && after.dropFirst(zeroedBytes) == before.dropFirst(zeroedBytes))

            _ = try LogRepair.repair(path: path)
            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            let next = try reopened.append(testRecord(99))
            #expect(next > 30_000)
            #expect(reopened.waitUntilSealed())
            try reopened.close()
            // Every record whose frame lay past the zeroed bytes is back (with 64 bytes, every record).
            let contents = try LogContents.read(path)
            let lostInPage = Set(contents.gaps.flatMap { Array($0.fromSeq...$0.toSeq) })
            if zeroedBytes == 64 { #expect(lostInPage.isEmpty) }
            let kept = Dictionary(uniqueKeysWithValues: acked.filter { !lostInPage.contains($0.key) }.map { ($0, $1) })
            #expect(kept.count > acked.count - 2_000)
            try expectAckedRecordsExact(path, kept.merging([next: 99]) { old, _ in old })
        }
    }

    /// Defect (found by a hostile tester): a crashed writer's `staging.wal` copied into another log was recovered
    /// there, its 30 records stored under that log's seqs (and `verify` said sound). Another log's staging file is
    /// now kept aside, neither its records nor its high-water mark read.
    @Test func anotherLogsStagingFileIsKeptAsideNotRecovered() throws {
        try withTemporaryDirectory { directory in
            let foreign = directory.file("a")
            let crashed = try WAL.open(path: foreign, configuration: smallConfiguration())
            try crashed.append(testRecord(1))
            #expect(crashed.waitUntilSealed())
            crashed.pauseSealingForTesting()
            for value in 2...31 { try crashed.append(testRecord(UInt64(value))) }
            crashed.abandonForTesting()

            let path = directory.file("b")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            let acked = Dictionary(
                uniqueKeysWithValues: try appendRecords(wal, 0..<20).enumerated().map {
                    ($0.element, UInt64($0.offset))
                }
            )
            try wal.close()
            try FileManager.default.removeItem(atPath: path + "/staging.wal")
            try FileManager.default.copyItem(atPath: foreign + "/staging.wal", toPath: path + "/staging.wal")

            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            #expect(reopened.recovery.quarantined.contains { $0.contains("staging.wal.foreign-") })
            #expect(reopened.recovery.lostSeqs == nil)
            let next = try reopened.append(testRecord(99))
            #expect(next == 21)
            #expect(reopened.waitUntilSealed())
            try reopened.close()
            try expectAckedRecordsExact(path, acked.merging([next: 99]) { old, _ in old })
            #expect(try LogInvariants.violations(path) == [])
        }
    }

    /// Defect (found by a hostile tester): a segment of another log got "sound" from `verify` and its records were
    /// replayed as this log's. Now `verify` reports it, readers skip it whole as damage, and retention stops there.
    @Test func anotherLogsSegmentIsDamageReadersSkip() throws {
        try withTemporaryDirectory { directory in
            let other = directory.file("a")
            let foreignWAL = try WAL.open(path: other, configuration: smallConfiguration())
            try appendRecords(foreignWAL, 100_000..<130_000)
            try foreignWAL.close()
            let path = directory.file("b")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try appendRecords(wal, 0..<30_000)
            try wal.close()
            let segments = try LogDirectory(path: path).segments()
            try #require(segments.count >= 3)
            // Another log's segment, named and headed as this log's second segment (its first seq patched in).
            let second = segments[1]
            // Its frames hold about the seqs this log's second segment holds (the same record sizes).
            let source = try #require(try LogDirectory(path: other).segments().dropFirst().first)
            try FileManager.default.removeItem(atPath: second.path)
            try FileManager.default.copyItem(atPath: source.path, toPath: second.path)
            var header = Array(try Data(contentsOf: URL(fileURLWithPath: second.path)).prefix(64))
            withUnsafeBytes(of: second.firstSeq.littleEndian) { header.replaceSubrange(32..<40, with: $0) }
            let crc = header.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0.prefix(60))) }
            withUnsafeBytes(of: crc.littleEndian) { header.replaceSubrange(60..<64, with: $0) }
            try Corruptor.overwrite(second.path, at: 0, with: header)

            let summary = try LogInspector.examine(path: path, decodeRecords: true)
            #expect(summary.damage.contains { $0.file == second.path && $0.reason.contains("another log") })
            let contents = try LogContents.read(path)
            #expect(contents.damage.contains { $0.reason.contains("another log") })
            let foreignRecords = Set((100_000..<130_000).map { testRecord(UInt64($0)) })
            #expect(!contents.records.contains { foreignRecords.contains($0.bytes) }, "another log's record read")
        }
    }

    /// Defect (found by a hostile tester): retention took where a segment ends from the next segment's file name
    /// alone. A segment renamed to a lower seq (its header still saying where it starts) made the segment before
    /// it look consumed: with a cursor at 55,000 retention deleted seqs 1 to 67,292. Now both must be what their
    /// names say (else nothing is deleted), and `verify` reports the mismatch.
    @Test func aRenamedSegmentStopsRetentionAndIsReported() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try appendRecords(wal, 0..<30_000)
            try wal.close()
            let segments = try LogDirectory(path: path).segments()
            try #require(segments.count >= 3 && segments[1].firstSeq > 10)
            let lowered = segments[1].firstSeq / 2
            try FileManager.default.moveItem(
                atPath: segments[1].path,
                toPath: path + "/" + LogFormat.segmentFileName(firstSeq: lowered)
            )
            try CursorStore(path: path).store("pg", seq: lowered + 1)

            #expect(try LogInspector.examine(path: path).damage.contains { $0.reason.contains("is named for seq") })
            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            reopened.runRetentionForTesting()
            try reopened.close()
            #expect(FileManager.default.fileExists(atPath: segments[0].path), "the first segment was deleted")
        }
    }

    /// Found by a reviewer: in `periodic` mode the sealer wrote and fdatasynced frames without first flushing what
    /// their records depend on (`metrics.symbols`), so a power failure could keep a record and lose its symbol. The
    /// sealer now flushes the dependency before it writes a block's frames.
    @Test func inPeriodicModeTheSealerFlushesTheDependencyBeforeAnyFrame() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var configuration = smallConfiguration()
            configuration.durability = .periodic(milliseconds: 3_600_000)  // the periodic flush never comes
            let wal = try WAL.open(path: path, configuration: configuration)
            let sealedAtCalls = Mutex<[UInt64]>([])
            wal.setSyncDependency {
                let sealed = (try? LogInspector.lastSealedSeqCheap(path: path)) ?? 0
                sealedAtCalls.withLock { $0.append(sealed) }
            }
            try appendRecords(wal, 0..<10)
            #expect(wal.waitUntilSealed())
            let calls = sealedAtCalls.withLock { $0 }
            #expect(calls.first == 0, "the first flush came before any frame was written (\(calls))")
            try wal.close()
        }
    }

    /// A cursor ahead of the log (a consumer saw seqs the log no longer has, and the staging file is gone too):
    /// the writer starts above it.
    @Test func aCursorAheadOfTheLogIsAGapAndTheWriterStartsAboveIt() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try appendRecords(wal, 0..<100)
            try wal.close()
            try CursorStore(path: path).store("postgres", seq: 150)
            try FileManager.default.removeItem(atPath: path + "/staging.wal")
            #expect(
                try LogInspector.examine(path: path).damage.contains {
                    $0.reason.contains("cursor 'postgres' is at seq 150, ahead of the log")
                }
            )
            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            #expect(reopened.recovery.lostSeqs == 101...150)
            #expect(try reopened.append(testRecord(1)) == 151)
            try reopened.close()
            #expect(try LogInvariants.violations(path) == [])
        }
    }

    @Test func aCursorImplausiblyFarAheadStopsTheWriterWithAClearError() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try WAL.open(path: path, configuration: smallConfiguration()).close()
            try CursorStore(path: path).store("bogus", seq: 1 << 60)
            let error = #expect(throws: WALError.self) { try WAL.open(path: path, configuration: smallConfiguration()) }
            #expect(error?.description.contains("cursor 'bogus'") == true)
        }
    }

    /// verify reports frames whose seqs overlap or go backwards (damage, exit 1), naming the place.
    @Test func verifyReportsAFrameThatGoesBackwards() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try appendRecords(wal, 0..<2_000)
            try wal.close()
            #expect(try LogInvariants.violations(path) == [])
            // Copy the segment's first frame to the end of its data: a frame of seqs the log already has.
            let segment = try #require(try LogDirectory(path: path).segments().last)
            let summary = try LogInspector.examine(path: path)
            let end = try #require(summary.segmentList.last).bytesOnDisk
            let bytes = try #require(FileManager.default.contents(atPath: segment.path))
            let stored = bytes[64 + 24..<64 + 28].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            let length = (48 + Int(stored) + 7) & ~7
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: segment.path))
            try handle.seek(toOffset: UInt64(end))
            try handle.write(contentsOf: bytes[64..<64 + length])
            try handle.close()
            let damage = try LogInspector.examine(path: path, decodeRecords: true).damage
            #expect(damage.contains { $0.reason.contains("overlapping or going backwards") && $0.offset == end })
            let verify = try walctl(["verify", path])
            #expect(verify.status == 1)
            #expect((verify.out + verify.err).contains("going backwards"))
            // A writer takes the highest seq any frame holds as the end: no false "lost" gap over intact records.
            let writer = try WAL.open(path: path, configuration: smallConfiguration())
            #expect(writer.recovery.lostSeqs == nil)
            #expect(try writer.append(testRecord(7)) == 2_001)
            try writer.close()
        }
    }
}

/// Forged records with valid checksums: absurd, not losses.
@Suite struct ForgedRecordTests {
    /// A staged gap record claiming every seq up to 2^64 - 1 would make the writer write 2^32 gap frames (filling
    /// the disk) and readers overflow: it is refused like any invalid staged record.
    @Test func aStagedGapToTheEndOfTheSequenceSpaceIsIgnored() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path, configuration: smallConfiguration())
            try appendRecords(wal, 0..<1_000)
            try wal.close()
            // Block 0 of staging.wal: one gap record, seq 1001 ... 2^64 - 1, with a valid checksum.
            var payload = [UInt8]()
            withUnsafeBytes(of: UInt64.max.littleEndian) { payload += $0 }
            payload += Array("forged".utf8)
            let word = UInt32(payload.count) | (1 << 28)
            var crc = CRC32C.checksum(payload)
            crc = withUnsafeBytes(of: word.littleEndian) { CRC32C.checksum($0, continuing: crc) }
            crc = withUnsafeBytes(of: UInt64(1_001).littleEndian) { CRC32C.checksum($0, continuing: crc) }
            var record = [UInt8]()
            withUnsafeBytes(of: word.littleEndian) { record += $0 }
            withUnsafeBytes(of: crc.littleEndian) { record += $0 }
            withUnsafeBytes(of: UInt64(1_001).littleEndian) { record += $0 }
            try Corruptor.overwrite(path + "/staging.wal", at: 4096, with: record + payload)
            _ = try LogInspector.examine(path: path)
            let reopened = try WAL.open(path: path, configuration: smallConfiguration())
            #expect(try reopened.append(testRecord(1)) == 1_001)
            try reopened.close()
            #expect(try LogInvariants.violations(path) == [])
        }
    }
}

/// The writer's exclusion and the files it creates, against a careless operator and a planted link.
@Suite struct WriterExclusionTests {
    @Test func aHardLinkedLockFileOrACursorFolderLinkedElsewhereIsRefused() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try WAL.open(path: path).close()
            let victim = directory.file("victim")
            try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
            try FileManager.default.removeItem(atPath: path + "/wal.lock")
            #expect(link(victim, path + "/wal.lock") == 0)
            let error = #expect(throws: WALError.self) { try WAL.open(path: path) }
            #expect(error?.description.contains("hard links") == true)
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
            try FileManager.default.removeItem(atPath: path + "/wal.lock")

            // Cursors decide where seqs continue: a cursors/ folder that is a link elsewhere is refused.
            let elsewhere = directory.file("elsewhere")
            try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(atPath: path + "/cursors", withDestinationPath: elsewhere)
            #expect(throws: WALError.self) { try WAL.open(path: path) }
        }
    }

    @Test func deletingTheLockFileLetsNoSecondWriterIn() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let first = try WAL.open(path: path)
            try FileManager.default.removeItem(atPath: path + "/wal.lock")
            let error = #expect(throws: WALError.self) { try WAL.open(path: path) }
            #expect(error?.code == .locked)
            #expect(LogDirectory(path: path).isWriterActive())
            try first.append(testRecord(1))
            try first.close()
            #expect(!LogDirectory(path: path).isWriterActive())
            try WAL.open(path: path).close()
        }
    }

    @Test func aPlantedLockSymlinkIsRefusedAndItsTargetUntouched() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try WAL.open(path: path).close()
            let victim = directory.file("victim")
            try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
            try FileManager.default.removeItem(atPath: path + "/wal.lock")
            try FileManager.default.createSymbolicLink(atPath: path + "/wal.lock", withDestinationPath: victim)
            let error = #expect(throws: WALError.self) { try WAL.open(path: path) }
            #expect(error?.description.contains("symbolic link") == true)
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        }
    }

    @Test func aPlantedStagingSymlinkIsNeverWrittenThrough() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try WAL.open(path: path).close()
            let victim = directory.file("victim")
            try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
            try FileManager.default.removeItem(atPath: path + "/staging.wal")
            try FileManager.default.createSymbolicLink(atPath: path + "/staging.wal", withDestinationPath: victim)
            let error = #expect(throws: WALError.self) { try WAL.open(path: path) }
            #expect(error?.description.contains("symbolic link") == true)
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        }
    }

    @Test func cursorWritesNeverFollowAPlantedTemporaryFile() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try WAL.open(path: path).close()
            let store = CursorStore(path: path)
            try store.store("postgres", seq: 1)
            let victim = directory.file("victim")
            try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
            // The old predictable name: NAME.tmp.PID.
            let planted = path + "/cursors/postgres.cursor.tmp.\(getpid())"
            try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: victim)
            try store.store("postgres", seq: 2)
            #expect(try store.load("postgres")?.seq == 2)
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        }
    }

    @Test func aLogDirectoryWritableByOthersIsRefused() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            #expect(chmod(path, 0o777) == 0)
            let error = #expect(throws: WALError.self) { try WAL.open(path: path) }
            #expect(error?.description.contains("writable by other users") == true)
            #expect(chmod(path, 0o700) == 0)
            try WAL.open(path: path).close()
        }
    }

    @Test func aCursorDirectoryThatIsASymlinkIsRefused() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try WAL.open(path: path).close()
            let elsewhere = directory.file("elsewhere")
            try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(atPath: path + "/cursors", withDestinationPath: elsewhere)
            #expect(throws: WALError.self) { try CursorStore(path: path).store("postgres", seq: 1) }
            #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
        }
    }
}

/// A FIFO planted under a log file's name: opening one blocks until its other end opens, which hung every command
/// and the writer forever. Every file is now opened without waiting and refused unless it is a regular file.
@Suite struct PlantedFIFOTests {
    /// `walctl` with a deadline; `hung` when it had to be killed.
    func walctlWithin(
        seconds: Int,
        _ arguments: [String]
    ) throws -> (status: Int32, out: String, err: String, hung: Bool) {
        // SIGKILL: a walctl blocked in open(2) retries it after a handled SIGTERM. timeout(1) sends it to its process
        // group, itself included: the status is then the signal (9), or 137 when timeout survives it.
        let child = try ChildProcess("/usr/bin/timeout", ["-s", "KILL", "\(seconds)", walctlPath] + arguments)
        let out = child.remainingOutput()
        let status = child.wait()
        let hung = child.process.terminationReason == .uncaughtSignal || status == 137
        return (status, out, child.standardError(), hung)
    }

    @Test(arguments: ["SEGMENT", "staging.wal", "wal.meta", "wal.lock", "metrics.symbols", "cursors/x.cursor"])
    func noCommandWaitsOnAFIFOAndTheWriterRefusesIt(name: String) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let emitted = try walctl(["emit", "--dir", path, "--count", "3000"])
            try #require(emitted.status == 0, "\(emitted.err)")
            let segment = try #require(
                try FileManager.default.contentsOfDirectory(atPath: path).first { $0.hasSuffix(".seg") }
            )
            let file = path + "/" + (name == "SEGMENT" ? segment : name)
            try FileManager.default.createDirectory(
                atPath: path + "/cursors",
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
            try? FileManager.default.removeItem(atPath: file)
            try #require(mkfifo(file, 0o600) == 0)
            for arguments in [
                ["inspect", path], ["verify", path], ["verify", path, "--repair"], ["stats", path], ["tail", path],
                ["replay", path, "--to", "stdout"], ["emit", "--dir", path, "--count", "10"],
            ] {
                let result = try walctlWithin(seconds: 20, arguments)
                #expect(!result.hung, "\(arguments) hung on the FIFO \(name)")
                if arguments[0] == "emit" && name != "cursors/x.cursor" {
                    #expect(result.status == 1, "\(arguments): \(result.err)")
                    #expect(result.err.contains("is a FIFO, not a regular file"), "\(result.err)")
                }
                if arguments == ["verify", path] && (name == "SEGMENT" || name.hasPrefix("cursors")) {
                    #expect(result.status == 1 && result.out.contains("is a FIFO, not a regular file"), "\(result.out)")
                }
            }
            var info = stat()
            #expect(lstat(file, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "the FIFO is left as it was")
        }
    }
}

/// The fuzz harness's seed corpus (and any input a fuzz run once found) replayed through every reader: what
/// `tools/fuzz.sh` explores with libFuzzer stays a regression test of the normal build.
@Suite struct FuzzCorpusTests {
    @Test(arguments: ["frame", "staging", "small-files", "record", "symbols"])
    func theCorpusReplaysWithoutACrash(target: String) throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/corpus/\(target)").path
        var environment = ProcessInfo.processInfo.environment
        environment["WALCTL_FUZZ_TARGET"] = target
        let child = try ChildProcess(BuiltProducts.executable("walctl-fuzz"), [corpus], environment: environment)
        let output = child.remainingOutput()
        #expect(child.wait() == 0)
        let replayed = output.split(separator: " ").compactMap { Int($0) }.first ?? 0
        #expect(replayed > 0, "\(output)")
    }
}
