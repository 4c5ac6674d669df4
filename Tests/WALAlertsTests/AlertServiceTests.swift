import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALAlerts

/// The evaluator as `walctl ship --alerts` runs it: journal, log channel, `walctl alerts DIR`, crashes.
@Suite struct AlertServiceTests {
    /// Thresholds that fire often on agent traffic: no cool-down on plain rules, plus a windowed rule and a rule
    /// with a cool-down, whose state must survive restarts.
    static let busyThresholds = """
        version: 1
        metrics:
          routing_decision_time_ms:
            - {info: 20, warning: 50, critical: 100, cooldown: 0s}
            - {warning: 40, window: {aggregate: avg, duration: 2s, min_samples: 5}, cooldown: 1s}
          state_lock_contention_ms:
            critical: 150
            cooldown: 500ms
          workflow_success_rate:
            direction: below
            critical: 65
            cooldown: 0s
        """

    /// The alerts an uninterrupted evaluation of the whole log fires.
    func expectedAlerts(_ path: String, _ yaml: String) throws -> [Alert] {
        let rules = try ThresholdFile.parse(yaml: yaml, path: "t.yaml").rules
        var evaluator = AlertEvaluator(rules: rules, logID: try LogDirectory(path: path).readMeta().logID)
        return try logRecords(path).flatMap { evaluator.evaluate($0) }
    }

    @Test func shipWithAlertsJournalsDeliversAndListsEveryAlert() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let values: [(String, Double)] = [
            ("routing_decision_time_ms", 10), ("routing_decision_time_ms", 25), ("routing_decision_time_ms", 60),
            ("routing_decision_time_ms", 120), ("routing_decision_time_ms", 130), ("workflow_success_rate", 70),
            ("state_snapshot_size_kb", 400), ("state_snapshot_size_kb", 600),
        ]
        for (name, value) in values {
            #expect(
                try walctl(["emit", "--dir", path, "--metric", name, "--value", "\(value)", "--agent", "a-1"]).status
                    == 0
            )
        }
        let thresholds = directory.file("thresholds.yaml")
        try DefaultThresholds.yaml.write(toFile: thresholds, atomically: true, encoding: .utf8)
        let shipped = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err)")
        #expect(shipped.err.contains("critical walctl.alerts"), "the log channel writes at the alert's level")

        let expected = try expectedAlerts(path, DefaultThresholds.yaml)
        // 25 info, 60 warning, 120 critical (130 cools down), 70 below 80 critical, 600 KB info.
        #expect(expected.map(\.severity) == [.info, .warning, .critical, .critical, .info])
        let listed = try walctl(["alerts", path, "--json"])
        #expect(listed.status == 0, "\(listed.err)")
        let objects = try listed.out.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.map { $0["alert_id"] as? String } == expected.map(\.id))
        for object in objects {
            #expect((object["delivered"] as? [String: String])?["log"] != nil, "delivered to the log channel")
        }
        let critical = try walctl(["alerts", path, "--severity", "critical"])
        #expect(critical.out.split(separator: "\n").count == 3, "a header and the two critical alerts")
        #expect(critical.out.contains("log: delivered"))
        #expect(try walctl(["alerts", path, "--since", "+1h", "--json"]).out.isEmpty)
        #expect(try walctl(["alerts", path, "--severity", "urgent"]).status == 2)

        // A second run evaluates nothing again: the evaluator's cursor is at the end.
        let again = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain"])
        #expect(again.err.contains("0 fired, 0 re-sent"))
        #expect(AlertJournal.read(logDirectory: path).entries.allSatisfy { $0.firedCount == 1 })
    }

    @Test func sigkillOfTheEvaluatorLosesNoAlertAndRepeatsOnlyWithTheSameID() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let thresholds = directory.file("thresholds.yaml")
        try Self.busyThresholds.write(toFile: thresholds, atomically: true, encoding: .utf8)
        let writer = try ChildProcess(walctlPath, ["emit", "--dir", path, "--count", "200000", "--rate", "40000"])
        #expect(writer.readLine()?.hasPrefix("acked") == true)
        var kills = 0
        var generator = SeededGenerator()
        while kills < 5 && writer.process.isRunning {
            let evaluator = try ChildProcess(walctlPath, ["ship", "--dir", path, "--alerts", thresholds])
            // Let it journal some alerts (while the writer still writes), then kill it at a random moment.
            let start = AlertJournal.read(logDirectory: path).entries.count
            _ = waitFor { AlertJournal.read(logDirectory: path).entries.count > start || !writer.process.isRunning }
            usleep(UInt32.random(in: 0...200_000, using: &generator))
            evaluator.kill(SIGKILL)
            kills += 1
        }
        #expect(kills >= 3, "the writer outlived several evaluator kills")
        #expect(writer.wait() == 0)
        let drained = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain"])
        #expect(drained.status == 0, "\(drained.err)")

        let expected = try expectedAlerts(path, Self.busyThresholds)
        let journal = AlertJournal.read(logDirectory: path)
        #expect(journal.unreadable == 0)
        #expect(expected.count > 100)
        #expect(
            journal.entries.map(\.id) == expected.map(\.id),
            "the same alerts, ids and order as one uninterrupted run"
        )
        for entry in journal.entries {
            #expect(entry.delivered["log"] != nil, "\(entry.id) delivered")
            #expect(entry.firedCount <= 1 + kills, "repeats only for alerts in flight")
        }
        let repeated = journal.entries.filter { $0.firedCount > 1 }.count
        #expect(repeated <= kills * 10_000, "at most a poll's worth per kill")
    }
}
