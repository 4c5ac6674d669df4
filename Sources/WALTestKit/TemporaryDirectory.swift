import Foundation

/// A fresh directory under the system temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "walctl-test") throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        path = String(cString: made)
    }

    /// A path inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A tmpfs of a fixed size mounted for one test: a real file system that really fills up (ENOSPC).
/// Needs root (CAP_SYS_ADMIN); `isAvailable` says whether this machine allows it.
public final class SmallFileSystem {
    public let path: String

    public init(megabytes: Int) throws {
        let directory = try TemporaryDirectory(prefix: "walctl-tmpfs")
        path = directory.path
        let status = Shell.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        guard status == 0 else {
            directory.remove()
            throw POSIXError(.EPERM)
        }
    }

    public static var isAvailable: Bool {
        guard getuid() == 0, let probe = try? SmallFileSystem(megabytes: 1) else { return false }
        probe.unmount()
        return true
    }

    public func unmount() {
        _ = Shell.run("/bin/umount", [path])
        rmdir(path)
    }
}

/// Runs a command to completion and returns its exit status.
public enum Shell {
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
