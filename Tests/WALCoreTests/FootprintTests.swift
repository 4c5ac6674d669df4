import Foundation
import Testing
@_spi(Testing) import WALCore
import WALTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Bytes the files under `path` occupy on disk (`st_blocks * 512`, not their sizes), recursively.
func allocatedBytes(under path: String) -> Int64 {
    var total: Int64 = 0
    var info = stat()
    guard lstat(path, &info) == 0 else { return 0 }
    total += Int64(info.st_blocks) * 512
    if (info.st_mode & S_IFMT) == S_IFDIR {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            total += allocatedBytes(under: path + "/" + name)
        }
    }
    return total
}

/// The active (last) segment of the log in `path`: its size and the bytes it occupies on disk.
func activeSegment(_ path: String) throws -> (size: Int64, allocated: Int64) {
    let last = try #require(try LogDirectory(path: path).segments().last)
    var info = stat()
    try #require(lstat(last.path, &info) == 0)
    return (Int64(info.st_size), Int64(info.st_blocks) * 512)
}

/// Issue 16: a quiet log must not hold 64 MiB of preallocated segment. Segments start with 1 MiB allocated and grow
/// in `fallocate`d steps as frames fill them (`SegmentAllocation`).
@Suite struct FootprintTests {
    @Test func theAllocationRuleStartsAtOneMebibyteAndDoublesInStepsOfAtMostEight() {
        let mib: Int64 = 1 << 20
        func capacity(_ end: Int64, from current: Int64 = 0, segment: Int64 = 64 * mib) -> Int64 {
            SegmentAllocation.capacity(toHold: end, from: current, segmentSize: segment)
        }
        #expect(capacity(0) == mib)
        #expect(capacity(64) == mib)
        #expect(capacity(mib) == mib)
        #expect(capacity(mib + 1) == 2 * mib)
        #expect(capacity(3 * mib) == 4 * mib)
        #expect(capacity(9 * mib) == 16 * mib)
        #expect(capacity(17 * mib) == 24 * mib, "steps of at most 8 MiB past 8 MiB")
        #expect(capacity(63 * mib) == 64 * mib)
        #expect(capacity(2 * mib + 1, from: 2 * mib) == 4 * mib, "grows from the current allocation")
        #expect(capacity(5 * mib, from: 24 * mib) == 24 * mib, "never shrinks what is allocated")
        #expect(capacity(70 * mib) == 70 * mib, "a frame larger than the segment size still fits")
        #expect(capacity(100, segment: mib) == mib)
        #expect(capacity(100, from: 300_000, segment: 2 * mib) == mib, "a repaired segment grows to the first step")
    }

    @Test func aLogWithOneRecordAllocatesAFewMegabytes() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path)  // The defaults: 64 MiB segments, 8 x 256 KiB staging.
            try wal.append(testRecord(1))
            #expect(wal.waitUntilSealed())
            let segment = try activeSegment(path)
            #expect(segment.allocated <= SegmentAllocation.initial)
            #expect(segment.size == SegmentAllocation.initial)
            // 1 MiB of segment, 2 MiB + 4 KiB of staging, wal.meta and wal.lock.
            let open = allocatedBytes(under: path)
            #expect(open <= 4 << 20, "a log with one record allocates \(open) bytes")
            #expect(wal.statistics.segmentBytes == SegmentAllocation.initial)
            try wal.close()
            // A restart of the quiet log allocates nothing more.
            let reopened = try WAL.open(path: path)
            try reopened.append(testRecord(2))
            #expect(reopened.waitUntilSealed())
            try reopened.close()
            #expect(allocatedBytes(under: path) <= 4 << 20)
            #expect(try LogContents.read(path).seqs == [1, 2])
        }
    }

    @Test func segmentsGrowWithTrafficAndEveryByteWrittenIsAllocated() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var configuration = WALConfiguration()
            configuration.segmentSize = 16 << 20
            let wal = try WAL.open(path: path, configuration: configuration)
            var previous = try activeSegment(path).size
            var steps: [Int64] = [previous]
            // Incompressible 100-byte records: about 110 bytes of segment each.
            for batch in 0..<20 {
                let first = UInt64(batch * 10_000)
                try appendRecords(wal, first..<first + 10_000)
                #expect(wal.waitUntilSealed())
                let segment = try activeSegment(path)
                if segment.size != previous { steps.append(segment.size) }
                previous = segment.size
                // fallocate'd, not sparse: the whole size is allocated, never more than a step past the data.
                #expect(segment.allocated >= segment.size)
                #expect(segment.size <= configuration.segmentSize)
            }
            // 20 x 10,000 x ~110 bytes = ~22 MB: one full 16 MiB segment (trimmed), then a second one growing again.
            let segments = try LogDirectory(path: path).segments()
            #expect(segments.count == 2)
            #expect(steps.starts(with: [1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20]), "steps: \(steps)")
            #expect(steps.dropFirst(5).first == 1 << 20, "a new segment starts small again: \(steps)")
            try wal.close()
            let total = allocatedBytes(under: path)
            let data = try LogInspector.examine(path: path).bytesOnDisk
            #expect(total <= data + (8 << 20) + (3 << 20), "allocated \(total) for \(data) bytes of segments")
            #expect(try LogContents.read(path).seqs.count == 200_000)
        }
    }

    /// A writer of an earlier version preallocated the whole active segment (64 MiB); reopening a quiet log releases
    /// what its data does not need.
    @Test func reopeningReleasesTheWholeSegmentAnEarlierWriterPreallocated() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let wal = try WAL.open(path: path)
            try appendRecords(wal, 0..<10)
            try wal.close()
            let segmentPath = try #require(try LogDirectory(path: path).segments().last).path
            let fd = open(segmentPath, O_RDWR)
            try #require(fd >= 0)
            #expect(posix_fallocate(fd, 0, 64 << 20) == 0)
            close(fd)
            #expect(try activeSegment(path).allocated >= 64 << 20)
            let reopened = try WAL.open(path: path)
            #expect(try activeSegment(path).size == SegmentAllocation.initial)
            #expect(try activeSegment(path).allocated <= SegmentAllocation.initial)
            try appendRecords(reopened, 10..<20)
            try reopened.close()
            #expect(try LogContents.read(path).seqs == Array(1...20))
        }
    }

    /// The golden fixture is a log of the earlier shape (an active segment of 16 KiB, zeroes after its data): a writer
    /// of today appends to it, growing that segment.
    @Test func aWriterAppendsToTheGoldenFixture() throws {
        let fixture = try #require(Bundle.module.url(forResource: "Fixtures/golden-log", withExtension: nil))
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            try FileManager.default.copyItem(atPath: fixture.path, toPath: path)
            let wal = try WAL.open(path: path)
            #expect(try activeSegment(path).size == 16384)
            let seqs = try appendRecords(wal, 0..<30_000)  // About 3.1 MB of frames.
            #expect(seqs.first == 1001)
            #expect(wal.waitUntilSealed())
            let grown = try activeSegment(path).size
            #expect(grown == 4 << 20, "16 KiB, then 1 MiB, 2 MiB and 4 MiB; not \(grown)")
            try wal.close()
            let contents = try LogContents.read(path)
            #expect(contents.damage.isEmpty)
            #expect(contents.gaps == [GapMarker(fromSeq: 501, toSeq: 510, reason: "golden gap")])
            #expect(contents.seqs.count == 990 + 30_000)
            #expect(contents.seqs.last == 31_000)
            #expect(try LogInspector.examine(path: path).corruptFrames == 0)
        }
    }

    /// A full disk when the active segment must grow (the old writer preallocated 64 MiB up front and could not even
    /// open this log): the sealer stalls, appends drop with a gap marker, nothing crashes.
    @Test(.enabled(if: SmallFileSystem.isAvailable, "needs root to mount a small tmpfs"))
    func aFullDiskWhileTheSegmentGrowsIsADropWithAGap() throws {
        let filesystem = try SmallFileSystem(megabytes: 6)
        defer { filesystem.unmount() }
        let path = filesystem.path + "/log"
        var configuration = WALConfiguration()
        configuration.whenFull = .dropNewest
        let wal = try WAL.open(path: path, configuration: configuration)
        var accepted: [UInt64] = []
        var dropped = 0
        for value in 0..<200_000 {
            do {
                accepted.append(try wal.append(testRecord(UInt64(value))))
            } catch {
                #expect(error.code == .dropped)
                dropped += 1
            }
        }
        #expect(dropped > 0)
        #expect(wal.statistics.stallReason == "no space left on device")
        #expect(try activeSegment(path).size > SegmentAllocation.initial, "the segment grew before the disk filled")
        try? wal.close()
        let contents = try LogContents.read(path)
        #expect(contents.damage.isEmpty)
        #expect(contents.gaps.allSatisfy { $0.reason.contains("no space") })
        // Every accepted record up to the last one sealed reads back (the rest stay in staging for the next open).
        let readable = Set(contents.seqs)
        let sealed = try #require(contents.seqs.last)
        #expect(accepted.filter { $0 <= sealed }.allSatisfy { readable.contains($0) })
    }
}
