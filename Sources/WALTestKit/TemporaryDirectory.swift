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

/// Runs a command to completion and returns its exit status (or -1 when it could not start).
///
/// Plain `posix_spawn` and `waitpid`, with the standard streams on /dev/null: Foundation's `Process` may never see
/// the exit of a child that leaves a daemon behind (`pg_ctl start`).
public enum Shell {
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [Int32(0), 1, 2] {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let spawned = argv.withUnsafeBufferPointer { buffer in
            posix_spawn(&pid, executable, &actions, nil, buffer.baseAddress!, environ)
        }
        guard spawned == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { return -1 }
        }
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
    }
}

/// Polls a condition every 20 ms until it holds or the time is up; returns whether it held.
public func waitFor(seconds: Double = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// The log path of an agent named `name` under a host root (`root/name/metrics`), its folder created private (0700),
/// as walctl requires of a log's parent: what a host shipper's tests lay out, one agent at a time.
public func agentLogPath(_ root: String, _ name: String) throws -> String {
    let folder = root + "/" + name
    try FileManager.default.createDirectory(
        atPath: folder,
        withIntermediateDirectories: true,
        attributes: [.posixPermissions: 0o700]
    )
    return folder + "/metrics"
}

/// Every regular file under `path` (recursively; links are not followed), by relative path, with its bytes: a
/// snapshot to compare before and after a command that must leave a log as it was.
public func fileSnapshot(_ path: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    let enumerator = FileManager.default.enumerator(atPath: path)
    while let name = enumerator?.nextObject() as? String {
        let attributes = try FileManager.default.attributesOfItem(atPath: path + "/" + name)
        guard attributes[.type] as? FileAttributeType == .typeRegular else { continue }
        files[name] = try Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
    }
    return files
}
