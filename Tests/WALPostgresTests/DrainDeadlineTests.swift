import Foundation
import Testing
import WALMetrics
import WALTestKit

#if canImport(Glibc)
import Glibc
#endif

/// `walctl ship --drain` is a command someone waits for: against a sink that never answers it gives up after
/// `--timeout`, exits 3 and says per sink what is left (issue 14 item 6). No server needed: the sinks point at a
/// port nothing listens on.
@Suite struct DrainDeadlineTests {
    func logOf(_ count: Int, in directory: TemporaryDirectory) throws -> String {
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for index in 0..<count { collector.recordGauge("custom_depth", value: Double(index), unit: "x") }
        try collector.close()
        return path
    }

    @Test(arguments: ["kafka", "postgres"])
    func aDrainAgainstASinkThatNeverAnswersGivesUpAtItsTimeout(sink: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try logOf(50, in: directory)
        let port = Int(try unusedLoopbackPort())
        let target =
            sink == "kafka"
            ? ["--kafka", "127.0.0.1:\(port)"]
            : ["--postgres", "host=127.0.0.1 port=\(port) dbname=metrics user=metrics connect_timeout=1"]
        let started = Date()
        let result = try walctl(["ship", "--dir", path] + target + ["--drain", "--timeout", "2s"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(result.status == 3, "\(result.err)")
        #expect(result.err.contains("--drain gave up after 2s"), "\(result.err)")
        #expect(result.err.contains("\(sink): committed through 0, 50 left"), "\(result.err)")
        #expect(elapsed < 2 + 15 + 5, "the deadline and at most the grace period (\(elapsed) s)")
    }

    @Test func aDrainWithinItsTimeoutExitsZero() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try logOf(50, in: directory)
        let thresholds = directory.file("t.yaml")
        try "version: 1\nmetrics:\n  custom_depth:\n    warning: 40\n".write(
            toFile: thresholds,
            atomically: true,
            encoding: .utf8
        )
        let result = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain", "--timeout", "1m"])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.err.contains("evaluated through 50"), "\(result.err)")
    }

    @Test func theTimeoutBelongsToADrain() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try logOf(1, in: directory)
        #expect(try walctl(["ship", "--dir", path, "--kafka", "127.0.0.1:1", "--timeout", "2s"]).status == 2)
        #expect(
            try walctl(["ship", "--dir", path, "--kafka", "127.0.0.1:1", "--drain", "--timeout", "soon"]).status == 2
        )
        let help = try walctl(["ship", "--help"]).out
        #expect(help.contains("--timeout") && help.contains("exits 3"))
    }
}
