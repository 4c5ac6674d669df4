import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One log at a glance, read cheaply (frame headers only, no payload, no checksum of payloads): what a listing of
/// every log of a host needs (`walctl inspect --root`). `LogInspector.examine` is the thorough check.
public struct LogOverview: Sendable, Codable, Equatable {
    public var directory: String
    public var logID: String
    public var segments: Int
    /// Records in sealed data frames.
    public var records: UInt64
    public var firstSeq: UInt64?
    /// The last sequence number sealed (a record or a gap marker).
    public var lastSeq: UInt64?
    /// Bytes written in the segments (up to each one's last valid frame).
    public var bytesOnDisk: Int64
    /// Bytes the filesystem allocated to the segments and the staging file (preallocation included).
    public var bytesAllocated: Int64
    /// The writer's pid while one holds the log.
    public var writerPID: Int32?
    /// Records staged (appended, durable in the staging file) and not sealed yet.
    public var stagedRecords: Int
    public var stagedLastSeq: UInt64?
    /// Local cursors (the `cursors/` folder) by name.
    public var cursors: [String: UInt64]

    enum CodingKeys: String, CodingKey {
        case directory
        case logID = "log_id"
        case segments, records
        case firstSeq = "first_seq"
        case lastSeq = "last_seq"
        case bytesOnDisk = "bytes_on_disk"
        case bytesAllocated = "bytes_allocated"
        case writerPID = "writer_pid"
        case stagedRecords = "staged_records"
        case stagedLastSeq = "staged_last_seq"
        case cursors
    }
}

extension LogInspector {
    /// The overview of the log at `path`: one header read per frame, one `fstat` per segment, the staging file's
    /// blocks, the cursor files, a non-blocking probe of the writer lock. Lock-free and read-only.
    public static func overview(path: String) throws(WALError) -> LogOverview {
        let directory = LogDirectory(path: path)
        let meta = try directory.readMeta()
        let files = try directory.segments()
        var overview = LogOverview(
            directory: path,
            logID: meta.logID.description,
            segments: files.count,
            records: 0,
            bytesOnDisk: 0,
            bytesAllocated: FileSystem.allocated(directory.stagingPath) ?? 0,
            writerPID: directory.isWriterActive() ? directory.lockHolderPID() : nil,
            stagedRecords: 0,
            cursors: [:]
        )
        var lastSealed: UInt64 = 0
        for file in files {
            // A segment deleted by retention meanwhile, or never written (a crash while creating it), holds
            // nothing to count.
            guard let reader = try? SegmentFileReader(path: file.path) else { continue }
            overview.bytesAllocated += reader.allocatedSize()
            var end = Int64(LogFormat.segmentHeaderSize)
            hopFrameHeaders(reader) { frame in
                if frame.type == .data {
                    overview.records += UInt64(frame.recordCount)
                    if overview.firstSeq == nil { overview.firstSeq = frame.firstSeq }
                }
                lastSealed = max(lastSealed, frame.lastSeq)
                end += Int64(frame.frameLength)
                return true
            }
            overview.bytesOnDisk += end
        }
        overview.lastSeq = lastSealed > 0 ? lastSealed : nil
        let staged = stagedRecords(directory: directory, after: lastSealed)
        overview.stagedRecords = staged.records
        overview.stagedLastSeq = staged.lastSeq
        for cursor in (try? CursorStore(directory: directory).all().cursors) ?? [] {
            overview.cursors[cursor.name] = cursor.seq
        }
        return overview
    }
}

extension FileSystem {
    /// Bytes allocated to the file at `path` (`st_blocks` × 512), or nil when it is gone.
    static func allocated(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_blocks) * 512 : nil
    }
}
