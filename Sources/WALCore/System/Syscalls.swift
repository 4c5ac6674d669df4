import CWALSupport
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - errno plumbing

/// Runs a system call that returns -1 and sets errno on failure, retrying on EINTR when asked.
@inline(__always)
func valueOrErrno<I: FixedWidthInteger>(retryOnInterrupt: Bool = true, _ body: () -> I) -> Result<I, Errno> {
    while true {
        let value = body()
        if value != -1 { return .success(value) }
        let error = Errno(rawValue: errno)
        if retryOnInterrupt && error == .interrupted { continue }
        return .failure(error)
    }
}

// MARK: - FileDescriptor extensions

extension FileDescriptor {
    /// Preallocates `length` bytes at `offset`, so later writes into the range cannot fail with ENOSPC.
    ///
    /// The corresponding C function is `fallocate` (mode 0). File systems that cannot preallocate fall back to
    /// `posix_fallocate`, which writes zeroes.
    func preallocate(offset: Int64, length: Int64) throws(Errno) {
        let result = valueOrErrno {
            injectable(.fallocate) { walsupport_fallocate(rawValue, off_t(offset), off_t(length)) }
        }
        switch result {
        case .success: return
        case .failure(let error) where error == .notSupported:
            let rc = posix_fallocate(rawValue, off_t(offset), off_t(length))
            if rc != 0 { throw Errno(rawValue: rc) }
        case .failure(let error): throw error
        }
    }

    /// Flushes the file's data (not all metadata) to stable storage. The corresponding C function is `fdatasync`.
    func dataSync() throws(Errno) {
        _ = try valueOrErrno { injectable(.fdatasync) { fdatasync(rawValue) } }.get()
    }

    /// Flushes data and metadata. The corresponding C function is `fsync`.
    func fullSync() throws(Errno) {
        _ = try valueOrErrno { injectable(.fsync) { fsync(rawValue) } }.get()
    }

    /// Takes an exclusive advisory lock without waiting. The corresponding C function is `flock(LOCK_EX|LOCK_NB)`.
    /// Returns false when another open file description holds it.
    func tryLockExclusive() throws(Errno) -> Bool {
        switch valueOrErrno(retryOnInterrupt: true, { flock(rawValue, LOCK_EX | LOCK_NB) }) {
        case .success: return true
        case .failure(let error) where error == .wouldBlock: return false
        case .failure(let error): throw error
        }
    }

    /// The file's size in bytes. The corresponding C function is `fstat`.
    func size() throws(Errno) -> Int64 {
        var info = Glibc.stat()
        _ = try valueOrErrno { fstat(rawValue, &info) }.get()
        return Int64(info.st_size)
    }

    /// Bytes the file occupies on disk (allocated blocks).
    func allocatedSize() throws(Errno) -> Int64 {
        var info = Glibc.stat()
        _ = try valueOrErrno { fstat(rawValue, &info) }.get()
        return Int64(info.st_blocks) * 512
    }

    /// Changes the file's size. The corresponding C function is `ftruncate`.
    func setSize(_ size: Int64) throws(Errno) {
        _ = try valueOrErrno { injectable(.ftruncate) { ftruncate(rawValue, off_t(size)) } }.get()
    }

    /// Reads until `buffer` is full or end of file; returns the count read (short only at end of file).
    func readFully(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let base = buffer.baseAddress! + done
            let n = try valueOrErrno { Glibc.pread(rawValue, base, buffer.count - done, off_t(offset) + off_t(done)) }
                .get()
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all of `buffer` at `offset`, retrying short writes.
    func writeFully(at offset: Int64, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        var done = 0
        while done < buffer.count {
            let base = buffer.baseAddress! + done
            let n = try valueOrErrno {
                injectable(.write) { Glibc.pwrite(rawValue, base, buffer.count - done, off_t(offset) + off_t(done)) }
            }.get()
            done += n
        }
    }
}

// MARK: - Paths and directories

package enum FileSystem {
    /// Opens a file, mapping the error into a `WALError` naming the path (see `openFile`; a fault-injection point).
    static func open(
        _ path: String,
        _ mode: FileDescriptor.AccessMode,
        options: FileDescriptor.OpenOptions = [],
        permissions: FilePermissions? = nil
    ) throws(WALError) -> FileDescriptor {
        if mode != .readOnly || options.contains(.create), let injected = FaultInjection.check(.open) {
            throw WALError.io("cannot open", path: path, injected)
        }
        return try openFile(path, mode, options: options, permissions: permissions)
    }

    /// Opens a file of a log, mapping the error into a `WALError` naming the path.
    ///
    /// Anything but a regular file (a directory with `.directory`) is refused with `.invalidArgument`: a FIFO, a
    /// socket or a device planted under a log file's name. The open itself never waits (`O_NONBLOCK`, which does
    /// nothing to a regular file): opening a FIFO without it blocks until the other end opens, which hung every
    /// command and the writer. For the log's own files use `open`; this one is for the files other modules keep in
    /// the log directory (`metrics.symbols`).
    package static func openFile(
        _ path: String,
        _ mode: FileDescriptor.AccessMode,
        options: FileDescriptor.OpenOptions = [],
        permissions: FilePermissions? = nil
    ) throws(WALError) -> FileDescriptor {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                FilePath(path),
                mode,
                options: options.union([.closeOnExec, .nonBlocking]),
                permissions: permissions
            )
        } catch let error as Errno {
            if error == .noSuchAddressOrDevice, let kind = fileKind(path) {
                // O_WRONLY | O_NONBLOCK on a FIFO without a reader, or a socket.
                throw WALError(.invalidArgument, "is \(kind), not a regular file (planted?)", path: path, cause: error)
            }
            if error == .noSuchFileOrDirectory {
                throw WALError(.notFound, "no such file", path: path, cause: error)
            }
            if error == .tooManySymbolicLinkLevels && options.contains(.noFollow) {
                throw WALError(.invalidArgument, "refusing to open a symbolic link", path: path, cause: error)
            }
            if error == .fileExists && options.contains(.exclusiveCreate) {
                throw WALError(.io, "already exists (a planted file or link?)", path: path, cause: error)
            }
            throw WALError.io("cannot open", path: path, error)
        } catch {
            throw WALError(.io, "cannot open: \(error)", path: path)
        }
        if !options.contains(.directory), let kind = fileKind(fd) {
            try? fd.close()
            throw WALError(.invalidArgument, "is \(kind), not a regular file (planted?)", path: path)
        }
        return fd
    }

    /// What an open file is when it is not a regular file ("a FIFO", "a directory", ...); nil for a regular file.
    private static func fileKind(_ fd: FileDescriptor) -> String? {
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0 else { return nil }
        return kindName(info.st_mode)
    }

    /// As `fileKind(_:)`, for a path (following a symbolic link).
    private static func fileKind(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return kindName(info.st_mode)
    }

    private static func kindName(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR, S_IFBLK: return "a device"
        case S_IFDIR: return "a directory"
        default: return "a special file"
        }
    }

    /// Creates a directory with mode 0700 if it does not exist. An existing one must be safe to write into: a real
    /// directory (with `followLink` false, not a symbolic link), owned by this process's user, writable by nobody
    /// else (see `checkPrivate`).
    package static func makeDirectory(_ path: String, followLink: Bool = true) throws(WALError) {
        if injectable(.mkdir, { mkdir(path, 0o700) }) == 0 { return }
        let error = Errno(rawValue: errno)
        guard error == .fileExists else { throw WALError.io("cannot create directory", path: path, error) }
        guard try checkExistingDirectory(path, followLink: followLink) else {
            throw WALError(.invalidArgument, "exists and is not a directory", path: path)
        }
    }

    /// Checks, when it exists, that `path` is a real directory (not a symbolic link), ours, writable by nobody else.
    static func checkDirectoryIfPresent(_ path: String) throws(WALError) {
        _ = try checkExistingDirectory(path, followLink: false)
    }

    /// Checks that `path`, if something is there, is a directory safe to write into (see `checkPrivate`); with
    /// `followLink` false a symbolic link is refused. Returns false when nothing is there.
    private static func checkExistingDirectory(_ path: String, followLink: Bool) throws(WALError) -> Bool {
        var info = stat()
        guard (followLink ? stat(path, &info) : lstat(path, &info)) == 0 else { return false }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            try checkPrivate(path, info)
            return true
        case S_IFLNK:
            throw WALError(.invalidArgument, "is a symbolic link where a directory of the log belongs", path: path)
        default:
            throw WALError(.invalidArgument, "exists and is not a directory", path: path)
        }
    }

    /// Refuses a file with more than one name: a hard link planted under a log file's name would make the writer
    /// write into a file elsewhere (O_NOFOLLOW stops symbolic links only).
    static func refuseHardLinks(_ fd: FileDescriptor, path: String) throws(WALError) {
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0 else { return }
        if info.st_nlink > 1 {
            throw WALError(
                .invalidArgument,
                "has \(info.st_nlink) hard links; a log file must have one name (a planted link?)",
                path: path
            )
        }
    }

    /// Refuses a directory that another user owns or that others may write into: anyone who can write there can
    /// plant links and files the log would then write through.
    static func checkPrivate(_ path: String, _ info: stat) throws(WALError) {
        if info.st_uid != geteuid() {
            throw WALError(
                .invalidArgument,
                "the directory is owned by uid \(info.st_uid), not by this user (uid \(geteuid())); "
                    + "a log directory must belong to its writer",
                path: path
            )
        }
        if info.st_mode & 0o022 != 0 {
            let mode = String(info.st_mode & 0o7777, radix: 8)
            throw WALError(
                .invalidArgument,
                "the directory is writable by other users (mode \(mode)); run chmod 700 on it",
                path: path
            )
        }
    }

    /// Names in a directory, excluding `.` and `..`.
    static func list(_ path: String) throws(WALError) -> [String] {
        guard let dir = opendir(path) else {
            let error = Errno(rawValue: errno)
            if error == .noSuchFileOrDirectory { throw WALError(.notFound, "no such directory", path: path) }
            throw WALError.io("cannot list directory", path: path, error)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    /// Size in bytes, or nil when the file is gone.
    static func size(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }

    /// Last modification time in nanoseconds since the epoch, or nil when the file is gone.
    package static func modificationNanos(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt64(info.st_mtim.tv_sec) * 1_000_000_000 + UInt64(info.st_mtim.tv_nsec)
    }

    /// Removes a file; a file already gone is not an error.
    static func remove(_ path: String) throws(WALError) {
        if injectable(.unlink, { unlink(path) }) == 0 { return }
        let error = Errno(rawValue: errno)
        if error == .noSuchFileOrDirectory { return }
        throw WALError.io("cannot remove", path: path, error)
    }

    /// Gives the file `from` a second name `to` (a hard link; `to` must not exist).
    static func link(_ from: String, _ to: String) throws(WALError) {
        if injectable(.link, { Glibc.link(from, to) }) != 0 {
            throw WALError.io("cannot link to \(to)", path: from, Errno(rawValue: errno))
        }
    }

    static func rename(_ from: String, _ to: String) throws(WALError) {
        if injectable(.rename, { Glibc.rename(from, to) }) != 0 {
            throw WALError.io("cannot rename to \(to)", path: from, Errno(rawValue: errno))
        }
    }

    /// fsyncs a directory so that creations, renames and removals in it survive power loss.
    static func syncDirectory(_ path: String) throws(WALError) {
        let fd = try open(path, .readOnly, options: [.directory])
        defer { try? fd.close() }
        do { try fd.fullSync() } catch { throw WALError.io("cannot fsync directory", path: path, error) }
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
    ///
    /// The temporary file has an unpredictable name and is created with `O_EXCL | O_NOFOLLOW`: a file or link
    /// planted under any name is never written through.
    package static func writeAtomically(
        _ path: String,
        directory: String,
        bytes: [UInt8],
        sync: Bool = true
    ) throws(WALError) {
        var random = SystemRandomNumberGenerator()
        let suffix = String(random.next() & 0xFFFF_FFFF_FFFF, radix: 16)
        let temporary = path + ".tmp.\(getpid()).\(suffix)"
        let fd = try open(
            temporary,
            .writeOnly,
            options: [.create, .exclusiveCreate, .noFollow],
            permissions: [.ownerReadWrite]
        )
        do {
            try bytes.withBytes { buffer throws(Errno) in try fd.writeFully(at: 0, from: buffer) }
            if sync { try fd.fullSync() }
            try fd.close()
        } catch {
            try? fd.close()
            try? remove(temporary)
            throw WALError.io("cannot write", path: temporary, error as? Errno ?? .ioError)
        }
        try rename(temporary, path)
        if sync { try syncDirectory(directory) }
    }

    /// Reads a whole small file.
    static func readAll(_ path: String, limit: Int = 1 << 20, followLink: Bool = true) throws(WALError) -> [UInt8] {
        let fd = try open(path, .readOnly, options: followLink ? [] : [.noFollow])
        defer { try? fd.close() }
        do {
            let size = Int(min(try fd.size(), Int64(limit)))
            var bytes = [UInt8](repeating: 0, count: size)
            let n = try bytes.withMutableBytes { buffer throws(Errno) in try fd.readFully(at: 0, into: buffer) }
            bytes.removeSubrange(n...)
            return bytes
        } catch {
            throw WALError.io("cannot read", path: path, error)
        }
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch.
@inline(__always)
package func wallClockNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Monotonic time in nanoseconds, for intervals and deadlines.
@inline(__always)
package func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
