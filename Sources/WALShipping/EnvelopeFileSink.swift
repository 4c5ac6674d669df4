import WALCore
import WALMetrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Envelope JSON lines (one OnexEnvelopeV1 object per record, the bytes the Kafka shipper sends) to a file
/// descriptor: `walctl replay --to stdout` and `--to file:PATH`. It keeps no cursor, so it only replays: `deliver`
/// and `committedSeq` refuse. `Replayer` writes to it straight from the log's bytes (no `MetricRecord` built);
/// `replay(_:)` renders decoded records, for other callers.
///
/// Not thread-safe. `finish` fsyncs and closes a file it created.
public final class EnvelopeFileSink: MetricSink, @unchecked Sendable {
    public let name: String
    /// The descriptor written to; -1 writes nowhere.
    public let fd: Int32
    private let ownsDescriptor: Bool

    /// Lines to `fd`, which the caller keeps open and closes (stdout).
    public init(name: String, fd: Int32) {
        self.name = name
        self.fd = fd
        self.ownsDescriptor = false
    }

    private init(name: String, ownedFD: Int32) {
        self.name = name
        self.fd = ownedFD
        self.ownsDescriptor = true
    }

    /// Creates (or truncates) `path`, mode 0600 like the log: the records are no less private in a copy. A path
    /// inside one of `outside`'s log directories, or naming one of their files through a link, is refused before
    /// anything is written (the file opened is checked again before it is truncated).
    public static func create(
        path: String,
        outside logs: OutsideLogs = OutsideLogs(logDirectories: [])
    ) throws -> EnvelopeFileSink {
        try logs.check(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FatalSinkError("cannot create \(path): \(String(cString: strerror(errno)))") }
        do {
            try logs.check(opened: fd, path: path)
            var info = stat()
            if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, ftruncate(fd, 0) != 0 {
                throw FatalSinkError("cannot truncate \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            close(fd)
            throw error
        }
        return EnvelopeFileSink(name: "file:\(path)", ownedFD: fd)
    }

    /// Writes `bytes` whole and empties it.
    public func write(_ bytes: inout [UInt8]) throws {
        defer { bytes.removeAll(keepingCapacity: true) }
        guard fd >= 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw FatalSinkError("write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Fsyncs and closes a file this sink created; a descriptor given to it is left open.
    public func finish() throws {
        guard ownsDescriptor, fd >= 0 else { return }
        defer { close(fd) }
        // EINVAL: a file that cannot be synced (/dev/null, a pipe); there is nothing to make durable.
        if fsync(fd) != 0 && errno != EINVAL {
            throw FatalSinkError("fsync failed: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: - MetricSink

    public func replay(_ batch: ShipBatch) throws -> ReplayOutcome {
        var output: [UInt8] = []
        output.reserveCapacity(batch.records.count * 512)
        for record in batch.records {
            Envelope.render(
                record,
                logID: batch.logID,
                sourceService: batch.sourceService ?? Envelope.defaultSourceService,
                into: &output
            )
            output.append(0x0A)
        }
        try write(&output)
        return ReplayOutcome(sent: UInt64(batch.records.count))
    }

    public func committedSeq(logID: LogID) throws -> UInt64 {
        throw FatalSinkError("the \(name) sink keeps no cursor: it only replays")
    }

    public func deliver(_ batch: ShipBatch) throws {
        throw FatalSinkError("the \(name) sink keeps no cursor: it only replays")
    }

    public func disconnect() {}
}
