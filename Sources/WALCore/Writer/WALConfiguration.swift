/// How hard `append` and the sealer work to put records on stable storage.
public enum Durability: Sendable, Equatable, CustomStringConvertible {
    /// Default. A record is in a `MAP_SHARED` mapping when `append` returns: it survives the process being killed
    /// (SIGKILL, a crash), not the machine losing power. No system call per append.
    case processCrash
    /// As `processCrash`, and every `milliseconds` the staging file is `msync`ed and the active segment
    /// `fdatasync`ed: after power loss at most the last interval of records is lost.
    case periodic(milliseconds: Int)
    /// Every `append` returns only once its record is on stable storage (`msync` of staging, group-committed:
    /// concurrent appenders share one flush).
    case synchronous

    public var description: String {
        switch self {
        case .processCrash: return "process"
        case .periodic(let ms): return "periodic:\(ms)"
        case .synchronous: return "sync"
        }
    }

    /// Parses `process`, `periodic:MS` or `sync`.
    public init?(parsing text: String) {
        switch text {
        case "process", "mmap", "processCrash": self = .processCrash
        case "sync", "synchronous": self = .synchronous
        default:
            guard text.hasPrefix("periodic:"), let ms = Int(text.dropFirst("periodic:".count)), ms > 0 else {
                return nil
            }
            self = .periodic(milliseconds: ms)
        }
    }
}

/// What `append` does when the size limit is reached and the staging area is full.
public enum WhenFull: Sendable, Equatable {
    /// Drop the record at once (the call throws `.dropped`); emitters never wait.
    case dropNewest
    /// Wait up to `timeoutMilliseconds` for space, then drop.
    case block(timeoutMilliseconds: Int)
}

/// Settings of a log writer. The defaults suit an agent emitting metrics.
public struct WALConfiguration: Sendable {
    /// Largest size of a segment file. Default 64 MiB. A segment does not take it all at once: it starts with 1 MiB
    /// allocated and grows in `fallocate`d steps (doubling, at most 8 MiB a step) as frames fill it, so a quiet log
    /// holds 1 MiB of segment; every byte a frame is written into is allocated first (wal-format.md section 3).
    public var segmentSize: Int = 64 << 20
    /// Size of one staging block: the unit of compression; a record must fit in one. Default 256 KiB.
    public var blockSize: Int = 256 << 10
    /// Number of staging blocks. Default 8. The staging file (a 4 KiB header and the blocks, 2 MiB + 4 KiB by
    /// default) is allocated and mapped whole from the start: stores into a mapping must never meet a full disk.
    public var blockCount: Int = 8
    public var durability: Durability = .processCrash
    /// A partly filled staging block is sealed at most this long after its first record. Default 40 ms.
    public var sealDelayMilliseconds: Int = 40
    /// Upper bound of all segment files plus the staging file; nil for no limit.
    public var maxTotalBytes: Int64?
    public var whenFull: WhenFull = .dropNewest
    /// Sealed segments that every cursor has passed are still kept while younger than this (seconds), unless the
    /// size limit needs the space.
    public var keepForReplaySeconds: Int?
    /// ...or while the sealed segments after them add up to less than this many bytes.
    public var keepForReplayBytes: Int64?
    /// How often retention runs. Default 1 s.
    public var retentionIntervalMilliseconds: Int = 1000

    public init() {}

    /// The largest record `append` accepts.
    public var maxRecordSize: Int { blockSize - LogFormat.stagedRecordHeaderSize - gapRecordReserve }

    /// Room kept in every block for a gap record.
    let gapRecordReserve = 256

    /// Checks every value; throws `.invalidArgument` naming the first one out of range.
    public func validate() throws(WALError) {
        guard blockSize >= 4096, blockSize <= 16 << 20, blockSize % 4096 == 0 else {
            throw WALError(.invalidArgument, "blockSize must be a multiple of 4096 between 4 KiB and 16 MiB")
        }
        guard blockCount >= 2, blockCount <= 1024 else {
            throw WALError(.invalidArgument, "blockCount must be between 2 and 1024")
        }
        guard segmentSize >= 1 << 20, segmentSize >= 4 * blockSize, segmentSize <= Self.maxSegmentSize else {
            throw WALError(.invalidArgument, "segmentSize must be at least 1 MiB and 4 blocks, and at most 4 GiB")
        }
        if let maxTotalBytes {
            let floor = Int64(LogFormat.stagingHeaderSize + blockSize * blockCount) + 2 * Int64(segmentSize)
            guard maxTotalBytes >= floor else {
                throw WALError(.invalidArgument, "maxTotalBytes must be at least staging + 2 segments (\(floor) bytes)")
            }
        }
        // The writer turns these into nanosecond deadlines (UInt64): the bounds keep every sum and product in range.
        if case .periodic(let ms) = durability, ms <= 0 || ms > Self.maxPeriodicMilliseconds {
            throw WALError(
                .invalidArgument,
                "the periodic sync interval must be between 1 and \(Self.maxPeriodicMilliseconds) ms (1 hour), not \(ms)"
            )
        }
        if case .block(let ms) = whenFull, ms < 0 || ms > Self.maxBlockMilliseconds {
            throw WALError(
                .invalidArgument,
                "the whenFull block timeout must be between 0 and \(Self.maxBlockMilliseconds) ms (1 day), not \(ms)"
            )
        }
        guard sealDelayMilliseconds >= 1, sealDelayMilliseconds <= 10_000 else {
            throw WALError(.invalidArgument, "sealDelayMilliseconds must be between 1 and 10000")
        }
        guard retentionIntervalMilliseconds >= 1, retentionIntervalMilliseconds <= Self.maxPeriodicMilliseconds else {
            throw WALError(.invalidArgument, "retentionIntervalMilliseconds must be between 1 and 3600000 (1 hour)")
        }
        if let keepForReplaySeconds, keepForReplaySeconds < 0 || keepForReplaySeconds > Self.maxKeepForReplaySeconds {
            throw WALError(
                .invalidArgument,
                "keepForReplaySeconds must be between 0 and \(Self.maxKeepForReplaySeconds) (10 years)"
            )
        }
        if let keepForReplayBytes, keepForReplayBytes < 0 {
            throw WALError(.invalidArgument, "keepForReplayBytes must not be negative")
        }
    }

    /// Largest `segmentSize`: 4 GiB (wal-format.md sets no limit; this one keeps every offset and sum in range).
    public static let maxSegmentSize = 1 << 32
    /// Longest `.periodic` sync interval: 1 hour.
    public static let maxPeriodicMilliseconds = 3_600_000
    /// Longest `.block` wait for space: 1 day.
    public static let maxBlockMilliseconds = 86_400_000
    /// Longest `keepForReplaySeconds`: 10 years.
    public static let maxKeepForReplaySeconds = 315_360_000
}

/// Counters of a running writer. Read with `WAL.statistics`.
public struct WALStatistics: Sendable, Equatable {
    /// Records appended by this writer since it opened.
    public var appended: UInt64
    /// Records dropped by the `whenFull` policy since it opened (each recorded in a gap marker).
    public var dropped: UInt64
    /// The next sequence number `append` will assign.
    public var nextSeq: UInt64
    /// The last sequence number written into a segment (visible to readers).
    public var sealedSeq: UInt64
    /// The last sequence number known to be on stable storage (by `sync()` or the periodic flush).
    public var durableSeq: UInt64
    /// Bytes of all segment files (their sizes, the allocated but unwritten space of the active one included).
    public var segmentBytes: Int64
    /// Staging blocks waiting for the sealer.
    public var blocksWaiting: Int
    /// Why the sealer cannot write (size limit, no space), or nil.
    public var stallReason: String?
    /// The last I/O error of the sealer, or nil.
    public var lastError: String?
}

/// What `open` found and did.
public struct RecoveryReport: Sendable, Equatable {
    /// True when the log was created by this open.
    public var created = false
    /// Records found in staging that were not yet in a segment, and were sealed by the recovery.
    public var resealedRecords = 0
    /// Bytes of a torn write cut off the end of the last segment.
    public var tornTailBytes: Int64 = 0
    /// Damaged regions found in the last segment (kept in place; readers skip them).
    public var damage: [SegmentScan.Damage] = []
    /// Files moved aside because they could not be read (`*.damaged-<time>`).
    public var quarantined: [String] = []
    /// Segment files removed because they were empty or their header was all zero (a crash while creating one, or
    /// a file emptied by hand).
    public var removedEmptySegments: [String] = []
    /// Seqs that had been assigned (the high-water mark) or seen by a consumer (a cursor) but were not in the log:
    /// recorded as a gap marker, never reused.
    public var lostSeqs: ClosedRange<UInt64>?
    /// Wall time the recovery took.
    public var durationNanos: UInt64 = 0
}
