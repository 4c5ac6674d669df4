import Foundation

/// Runs kcat (an independent Kafka client) with a time limit (kcat without a reachable broker would wait minutes);
/// returns its status and stdout.
public func kcat(_ arguments: [String], input: String? = nil) throws -> (status: Int32, out: String) {
    let child = try ChildProcess("/usr/bin/timeout", ["60", "/usr/bin/kcat"] + arguments, input: input)
    let out = child.remainingOutput()
    return (child.wait(), out)
}

/// A kafka-mock process of a test's own, for tests that take the brokers down and back (a real broker cannot be
/// stopped by a test, so these always run against the mock). Stopped with SIGTERM when released.
public final class KafkaMockProcess {
    public let process: ChildProcess
    public let servers: String

    public struct NotStarted: Error {}

    /// Starts the mock; with `failingProduceRequests`, its first produce requests fail with that Kafka error code.
    public init(brokers: Int = 3, failingProduceRequests: (count: Int, code: Int32)? = nil) throws {
        var arguments = ["--brokers", "\(brokers)"]
        if let failing = failingProduceRequests {
            arguments += ["--fail-produce-requests", "\(failing.count):\(failing.code)"]
        }
        process = try ChildProcess(BuiltProducts.executable("kafka-mock"), arguments)
        guard let servers = process.readLine() else { throw NotStarted() }
        self.servers = servers
    }

    /// Sets every broker down (SIGUSR1) or up (SIGUSR2); returns whether the mock confirmed.
    @discardableResult
    public func set(up: Bool) -> Bool {
        Foundation.kill(process.pid, up ? SIGUSR2 : SIGUSR1)
        return process.readLine() == (up ? "up" : "down")
    }

    deinit {
        process.kill(SIGTERM)
    }
}
