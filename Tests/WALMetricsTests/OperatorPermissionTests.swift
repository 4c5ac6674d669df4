import Foundation
import Testing
import WALCore
import WALTestKit

/// Issue 13, item 9 (the parts outside `stats`): what another user is told about a private log, and the mode of
/// what replay writes.
@Suite struct OperatorPermissionTests {
    static let runuser = "/usr/sbin/runuser"

    /// Another user than the log's owner (root runs the tests here; `nobody` stands for the other user).
    @Test(
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: runuser), "needs root and runuser")
    )
    func inspectAsAnotherUserOnAPrivateLogSaysPermissionDenied() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "10"]).status == 0)
            // Only the log is private: its parent is open to all, as /var/lib is.
            #expect(chmod(directory.path, 0o755) == 0)
            #expect(chmod(path, 0o700) == 0)
            // The other user runs a copy of walctl beside the log: the build folder may be private (a clone in a
            // mktemp -d folder is 0700).
            let binary = directory.file("walctl")
            try FileManager.default.copyItem(atPath: walctlPath, toPath: binary)
            #expect(chmod(binary, 0o755) == 0)
            for command in [["inspect", path], ["tail", path, "-n", "1"], ["replay", path, "--to", "stdout"]] {
                let child = try ChildProcess(Self.runuser, ["-u", "nobody", "--", binary] + command)
                _ = child.remainingOutput()
                let status = child.wait()
                let errors = child.standardError()
                #expect(status == 1, "\(command[0]): \(errors)")
                #expect(errors.contains("permission denied"), "\(command[0]): \(errors)")
                #expect(!errors.contains("not a log directory"), "\(command[0]): \(errors)")
            }
        }
    }

    @Test func replayToAFileWritesItOwnerOnlyLikeTheLog() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "10"]).status == 0)
        let copy = directory.file("copy.jsonl")
        #expect(try walctl(["replay", path, "--to", "file:\(copy)"]).status == 0)
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int)
        #expect(mode == 0o600, "mode \(String(mode, radix: 8))")
    }
}
