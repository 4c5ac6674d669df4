import Foundation
import Synchronization

/// A child process whose stdout is read line by line, and which can be killed with any signal.
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    private let output = Pipe()
    private let errors = Pipe()
    private var buffer = Data()
    private var pendingLines: [String] = []
    /// stderr, drained as it arrives: a child must never block on a full pipe (it would hang on exit).
    private let collectedErrors = ErrorBuffer()

    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        input: String? = nil
    ) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let stdin = Pipe()
        if input != nil { process.standardInput = stdin }
        process.standardOutput = output
        process.standardError = errors
        let collected = collectedErrors
        errors.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            if !chunk.isEmpty { collected.data.withLock { $0.append(chunk) } }
        }
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
    }

    public var pid: Int32 { process.processIdentifier }

    /// The next stdout line, or nil at end of output (the child exited).
    public func readLine() -> String? {
        while pendingLines.isEmpty {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty {
                if buffer.isEmpty { return nil }
                let last = String(decoding: buffer, as: UTF8.self)
                buffer.removeAll()
                return last
            }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: 0x0A) {
                pendingLines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                buffer.removeSubrange(buffer.startIndex...newline)
            }
        }
        return pendingLines.removeFirst()
    }

    /// Sends `signal` and waits for the process to end.
    public func kill(_ signal: Int32 = SIGKILL) {
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    /// Waits for exit; returns the status (a signal number for a killed process).
    @discardableResult
    public func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Everything the child wrote to stderr (call after it exited).
    public func standardError() -> String {
        errors.fileHandleForReading.readabilityHandler = nil
        let rest = errors.fileHandleForReading.readDataToEndOfFile()
        return collectedErrors.data.withLock { String(decoding: $0 + rest, as: UTF8.self) }
    }

    /// What the child wrote to stderr so far (it may still be running).
    public func partialStandardError() -> String {
        collectedErrors.data.withLock { String(decoding: $0, as: UTF8.self) }
    }

    /// All remaining stdout (call after it exited).
    public func remainingOutput() -> String {
        var lines: [String] = []
        while let line = readLine() { lines.append(line) }
        return lines.joined(separator: "\n")
    }
}

final class ErrorBuffer: Sendable {
    let data = Mutex(Data())
}

/// Finds the built `walctl` executable next to the test bundle (the same build directory).
public enum BuiltProducts {
    public static func executable(_ name: String) -> String {
        if let override = ProcessInfo.processInfo.environment["WALCTL_BIN"], name == "walctl" { return override }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The XCTest runner may be inside `X.xctest/` on some layouts.
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        let selfExe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: selfExe).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

// MARK: - walctl in tests

/// The built `walctl`, next to the test bundle.
public let walctlPath = BuiltProducts.executable("walctl")

/// Runs walctl to completion; returns exit status, stdout and stderr.
public func walctl(
    _ arguments: [String],
    environment: [String: String]? = nil
) throws -> (status: Int32, out: String, err: String) {
    let child = try ChildProcess(walctlPath, arguments, environment: environment)
    let out = child.remainingOutput()
    let status = child.wait()
    return (status, out, child.standardError())
}

extension ChildProcess {
    /// A `walctl emit` that appends agent traffic into `path` at `rate` records per second until it is killed
    /// (a live writer for tests of readers beside it). It prints `acked SEQ` every 10,000 records.
    public static func endlessWriter(_ path: String, rate: Int) throws -> ChildProcess {
        try ChildProcess(walctlPath, ["emit", "--dir", path, "--count", "100000000", "--rate", "\(rate)"])
    }

    /// For a `walctl emit` child: reads `lines` lines of its output, waits `extraMicroseconds`, kills it with
    /// SIGKILL, and returns the highest `acked SEQ` it printed (lines written before the kill count too).
    public func killAfterAcks(lines: Int, extraMicroseconds: UInt32) -> UInt64 {
        var acked: UInt64 = 0
        func note(_ line: Substring) {
            if line.hasPrefix("acked "), let seq = UInt64(line.dropFirst(6)) { acked = max(acked, seq) }
        }
        for _ in 0..<lines {
            guard let line = readLine() else { break }
            note(Substring(line))
        }
        usleep(extraMicroseconds)
        kill(SIGKILL)
        for line in remainingOutput().split(separator: "\n") { note(line) }
        return acked
    }
}
