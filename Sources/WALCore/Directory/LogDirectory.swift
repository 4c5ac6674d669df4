import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The files of one log directory, seen read-only. Never takes the writer's lock.
public struct LogDirectory: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    public var metaPath: String { path + "/" + LogFormat.metaFileName }
    public var lockPath: String { path + "/" + LogFormat.lockFileName }
    public var stagingPath: String { path + "/" + LogFormat.stagingFileName }
    public var cursorDirectory: String { path + "/" + LogFormat.cursorDirectoryName }

    public func segmentPath(firstSeq: UInt64) -> String { path + "/" + LogFormat.segmentFileName(firstSeq: firstSeq) }

    /// A segment file as listed in the directory.
    public struct SegmentFile: Sendable, Equatable {
        public var firstSeq: UInt64
        public var path: String
        public var name: String { String(path.split(separator: "/").last ?? "") }
    }

    /// Segment files in sequence order (by the first sequence number in their name).
    public func segments() throws(WALError) -> [SegmentFile] {
        try FileSystem.list(path).compactMap { name in
            LogFormat.parseSegmentFileName(name).map { SegmentFile(firstSeq: $0, path: path + "/" + name) }
        }.sorted { $0.firstSeq < $1.firstSeq }
    }

    /// Reads the log's identity from `wal.meta`.
    /// A log readable by its owner only (0700) is not "not a log" to another user: that is `.io` with cause
    /// `.permissionDenied`.
    public func readMeta() throws(WALError) -> LogMeta {
        var info = stat()
        if stat(metaPath, &info) != 0 {
            let error = Errno(rawValue: errno)
            if error == .permissionDenied {
                throw WALError(
                    .io,
                    "permission denied (the log is readable by its owner only; run as its owner)",
                    path: path,
                    cause: error
                )
            }
            throw WALError(.notFound, "not a log directory (no \(LogFormat.metaFileName))", path: path)
        }
        let bytes = try FileSystem.readAll(metaPath, limit: LogFormat.metaSize)
        return try bytes.withBytes { buffer throws(WALError) in try LogMeta.decode(buffer, path: metaPath) }
    }

    /// The pid written in the lock file by the current or last writer, if any.
    public func lockHolderPID() -> Int32? {
        guard let bytes = try? FileSystem.readAll(lockPath, limit: 64, followLink: false) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingWhitespace())
    }

    /// True when a live process holds the writer lock (probed with a non-blocking lock attempt on the directory,
    /// and on `wal.lock` for writers of earlier versions).
    public func isWriterActive() -> Bool {
        for (lockable, options) in [(path, FileDescriptor.OpenOptions.directory), (lockPath, .noFollow)] {
            guard let fd = try? FileSystem.open(lockable, .readOnly, options: options) else { continue }
            defer { try? fd.close() }
            if let acquired = try? fd.tryLockExclusive(), !acquired { return true }
        }
        return false
    }
}

/// The content of `wal.meta`: the log's identity, fixed at creation.
public struct LogMeta: Sendable, Equatable {
    public var logID: LogID
    public var createdAtNanos: UInt64

    func encode() -> [UInt8] {
        var bytes = LogFormat.metaMagic
        bytes.appendLE(LogFormat.version)
        bytes.appendLE(UInt16(0))
        bytes.appendLE(UInt32(0))
        bytes.append(contentsOf: logID.bytes)
        bytes.appendLE(createdAtNanos)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 20))
        bytes.appendLE(CRC32C.checksum(bytes))
        return bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws(WALError) -> LogMeta {
        guard bytes.count == LogFormat.metaSize, Array(bytes.prefix(8)) == LogFormat.metaMagic else {
            throw WALError(.corrupt, "not a log meta file", path: path, offset: 0)
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes.prefix(60))) == bytes.getLE(UInt32.self, at: 60)
        else { throw WALError(.corrupt, "meta file checksum mismatch", path: path, offset: 60) }
        guard bytes.getLE(UInt16.self, at: 8) == LogFormat.version else {
            throw WALError(.incompatible, "log format version is not \(LogFormat.version)", path: path, offset: 8)
        }
        return LogMeta(logID: LogID(bytes: Array(bytes[16..<32])), createdAtNanos: bytes.getLE(at: 32) ?? 0)
    }
}

/// The writer's exclusive hold on a directory: an advisory `flock` on the directory itself, which nobody can
/// delete from under a running writer, and on `wal.lock`, which holds the writer's pid (and excludes writers of
/// earlier versions, which lock only that file). Deleting `wal.lock` ("a stale lock") lets no second writer in.
final class DirectoryLock {
    private let directoryFD: FileDescriptor
    private let fd: FileDescriptor

    /// Takes the lock; a writer records its pid in the file, a maintenance holder (`repair`) leaves it as it is.
    init(directory: LogDirectory, recordPID: Bool = true) throws(WALError) {
        let directoryFD = try FileSystem.open(directory.path, .readOnly, options: [.directory])
        let locked: Bool
        do { locked = try directoryFD.tryLockExclusive() } catch {
            try? directoryFD.close()
            throw WALError.io("cannot lock", path: directory.path, error)
        }
        guard locked else {
            try? directoryFD.close()
            let holder = directory.lockHolderPID().map { "pid \($0)" } ?? "another process"
            throw WALError(.locked, "the log is already open for writing by \(holder)", path: directory.path)
        }
        let fd: FileDescriptor
        do {
            fd = try FileSystem.open(
                directory.lockPath,
                .readWrite,
                options: [.create, .noFollow],
                permissions: [.ownerReadWrite]
            )
        } catch {
            try? directoryFD.close()
            throw error
        }
        do {
            try FileSystem.refuseHardLinks(fd, path: directory.lockPath)
        } catch {
            try? fd.close()
            try? directoryFD.close()
            throw error
        }
        do {
            guard try fd.tryLockExclusive() else {
                try? fd.close()
                try? directoryFD.close()
                let holder = directory.lockHolderPID().map { "pid \($0)" } ?? "another process"
                throw WALError(.locked, "the log is already open for writing by \(holder)", path: directory.lockPath)
            }
            if recordPID {
                try fd.setSize(0)
                let text = Array("\(getpid())\n".utf8)
                try text.withBytes { buffer throws(Errno) in try fd.writeFully(at: 0, from: buffer) }
            }
        } catch let error as WALError {
            throw error
        } catch {
            try? fd.close()
            try? directoryFD.close()
            throw WALError.io("cannot lock", path: directory.lockPath, error as? Errno ?? .ioError)
        }
        self.fd = fd
        self.directoryFD = directoryFD
    }

    deinit {
        // Closing the descriptors releases the flocks.
        try? fd.close()
        try? directoryFD.close()
    }
}

extension String {
    /// The string without leading and trailing whitespace (Foundation-free; shared by the package's modules).
    package func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
