#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An append-only JSON-lines file of what a sink could not deliver, with the reason: what a sink without a
/// dead-letter table of its own writes instead of dropping silently.
///
/// Each `append` is written with `O_APPEND` and `fsync`ed before it returns, so a sink can commit its cursor past
/// the entries right after. Entries of a batch that is retried after a crash may appear twice. Not thread-safe.
public final class DeadLetterFile: @unchecked Sendable {
    public let path: String
    private var descriptor: Int32 = -1

    /// The file (created `0600`, with its folder `0700`, on the first append).
    public init(path: String) { self.path = path }

    /// Appends one line per entry (each a JSON object without its newline) and syncs the file. With `sync: false`
    /// the lines are written (they survive a crash of the process) but not synced: for entries whose loss in a power
    /// failure only repeats work.
    public func append(_ lines: [[UInt8]], sync: Bool = true) throws(DeadLetterError) {
        guard !lines.isEmpty else { return }
        let fd = try descriptorForAppend()
        var bytes: [UInt8] = []
        for line in lines {
            bytes.append(contentsOf: line)
            bytes.append(0x0A)
        }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                guard let base = buffer.baseAddress else { return 0 }
                return write(fd, base + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw DeadLetterError(path: path, operation: "write", errno: errno)
            }
            written += result
        }
        guard !sync || fsync(fd) == 0 else { throw DeadLetterError(path: path, operation: "fsync", errno: errno) }
    }

    private func descriptorForAppend() throws(DeadLetterError) -> Int32 {
        if descriptor >= 0 { return descriptor }
        if let slash = path.lastIndex(of: "/") {
            let folder = String(path[..<slash])
            if !folder.isEmpty, mkdir(folder, 0o700) != 0, errno != EEXIST {
                throw DeadLetterError(path: folder, operation: "mkdir", errno: errno)
            }
        }
        // O_NOFOLLOW: a symbolic link planted under the name is refused, never appended through.
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw DeadLetterError(path: path, operation: "open", errno: errno) }
        descriptor = fd
        return fd
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }
}

/// A dead-letter file that cannot be written: the shipper retries rather than commit past entries it could not keep.
public struct DeadLetterError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    public var errno: Int32

    public var description: String {
        "dead-letter file \(path): \(operation) failed: \(String(cString: strerror(errno)))"
    }
}
