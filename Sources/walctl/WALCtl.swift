import ArgumentParser
import Foundation
import Logging
@_spi(Testing) import WALCore

@main
struct WALCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "walctl",
        abstract: "Durable agent metrics: feed, inspect and verify a segment log.",
        discussion: """
            Exit codes: 0 success; 1 the operation failed or found damage; 2 usage error.
            """,
        subcommands: [
            Emit.self, Inspect.self, Tail.self, Replay.self, Verify.self, Stats.self, Ship.self, PG.self, Alerts.self,
            Demo.self, Serve.self,
        ]
    )

    /// Runs the command; usage errors exit 2 (ArgumentParser's default is 64), as documented.
    static func main() async {
        // A testing aid, as SQLite's test VFS: `N:kill`, `N:ENOSPC`, `N:EIO` or `N:EINTR` makes the Nth system call
        // of the log fail that way (wal-format.md section 14 and the fault-injection tests).
        if let specification = ProcessInfo.processInfo.environment["WALCTL_FAULT_INJECTION"],
            !FaultInjection.arm(specification: specification)
        {
            Output.error("walctl: WALCTL_FAULT_INJECTION='\(specification)' is not N:kill|ENOSPC|EIO|EINTR[:calls]")
            Foundation.exit(2)
        }
        // Logs go to stderr: stdout carries data (records, JSON) that scripts parse.
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let injecting = ProcessInfo.processInfo.environment["WALCTL_FAULT_INJECTION"] != nil
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            if injecting { Output.error("walctl: fault injection: \(FaultInjection.callCount) system calls counted") }
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                Output.error(fullMessage(for: error))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Unbuffered writes to stdout and stderr (the `stdout` global is not concurrency-safe in Swift 6).
enum Output {
    static func line(_ text: String) {
        write(1, text + "\n")
    }

    static func error(_ text: String) {
        write(2, text.hasSuffix("\n") ? text : text + "\n")
    }

    /// Writes text to stderr as it is (no newline added): progress bars.
    static func errorRaw(_ text: String) {
        write(2, text)
    }

    /// Writes bytes to stdout as they are.
    static func raw(_ bytes: [UInt8]) {
        var copy = bytes
        writeAll(1, &copy)
    }

    private static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        writeAll(fd, &bytes)
    }

    private static func writeAll(_ fd: Int32, _ bytes: inout [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { buffer in
                Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if n <= 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
        bytes.removeAll()
    }

    /// Encodes a value as JSON (sorted keys, one line).
    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
