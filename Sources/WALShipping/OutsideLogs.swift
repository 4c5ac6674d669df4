#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Keeps files an operator names for output (`walctl replay --to file:PATH`, `--dead-letters PATH`) out of the log
/// directories being read: truncating `{log}/00000000000000067293.seg` or `{log}/staging.wal` would destroy records
/// the log still holds, and a new file there is one the log never made.
///
/// A path is refused when the real path of its folder (symbolic links and `..` resolved) is a log directory or lies
/// inside one, and when it names an existing file of a log by another way: a symbolic link to it, or a hard link
/// (same device and inode as a file in the log's tree). `check(opened:)` repeats the identity test on the descriptor
/// actually opened, so a link swapped in between is refused too.
public struct OutsideLogs: Sendable {
    /// The log directories, as given and as real paths (those that cannot be resolved protect nothing on disk).
    public let directories: [String]
    private let realDirectories: [(given: String, real: String)]

    public init(logDirectories: [String]) {
        directories = logDirectories
        realDirectories = logDirectories.compactMap { given in realPath(given).map { (given, $0) } }
    }

    /// Throws when writing `path` could create or change a file inside one of the log directories.
    public func check(_ path: String) throws(FatalSinkError) {
        let folder = path.lastIndex(of: "/").map { index in index == path.startIndex ? "/" : String(path[..<index]) }
        if let folderReal = realPath(folder ?? "."), let log = containing(folderReal) {
            throw FatalSinkError("\(path) is inside the log directory \(log): write the output elsewhere")
        }
        if let fileReal = realPath(path), let log = containing(fileReal) {
            throw FatalSinkError(
                "\(path) is \(fileReal), a file of the log directory \(log): write the output elsewhere"
            )
        }
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        try refuseIdentity(of: info, path: path)
    }

    /// Throws when the open file `fd` (named `path`) is one of the logs' files.
    public func check(opened fd: Int32, path: String) throws(FatalSinkError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        try refuseIdentity(of: info, path: path)
    }

    // MARK: - Private

    /// The given name of the log directory that is `real` or holds it.
    private func containing(_ real: String) -> String? {
        realDirectories.first { log in
            real == log.real || real.hasPrefix(log.real == "/" ? "/" : log.real + "/")
        }?.given
    }

    private func refuseIdentity(of info: stat, path: String) throws(FatalSinkError) {
        // Only a regular file can be a log's file; /dev/null or a pipe is fine to write to.
        guard info.st_mode & S_IFMT == S_IFREG else { return }
        // A file with one name is a log's file only under that name, which the real-path checks already refused:
        // the log directories are walked only for a file with several names.
        guard info.st_nlink > 1 else { return }
        for log in realDirectories {
            if let file = Self.file(in: log.real, device: info.st_dev, inode: info.st_ino, depth: 3) {
                throw FatalSinkError(
                    "\(path) is the same file as \(file) (a hard link into the log directory \(log.given)): "
                        + "write the output elsewhere"
                )
            }
        }
    }

    /// The path of a regular file under `directory` (to `depth` levels of folders) with this device and inode.
    private static func file(in directory: String, device: dev_t, inode: ino_t, depth: Int) -> String? {
        guard let handle = opendir(directory) else { return nil }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            let path = directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFREG where info.st_dev == device && info.st_ino == inode: return path
            case S_IFDIR where depth > 0:
                if let found = file(in: path, device: device, inode: inode, depth: depth - 1) { return found }
            default: continue
            }
        }
        return nil
    }
}

/// The canonical absolute path (symbolic links, `.` and `..` resolved), or nil when it does not exist.
private func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
