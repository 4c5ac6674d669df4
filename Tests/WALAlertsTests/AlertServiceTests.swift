import Foundation
import Synchronization
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

    /// `walctl ship --root --alerts`: each log evaluated on its own (its journal, its alerts, its ids), exactly as
    /// `ship --dir --alerts` evaluates one.
    @Test func aHostShipperEvaluatesEveryLogsAlertsInThatLog() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = directory.file("agents")
        var paths: [String] = []
        for index in 0..<3 {
            paths.append(try agentLogPath(root, "agent-\(index)"))
            #expect(try walctl(["emit", "--dir", paths[index], "--count", "\(2_000 * (index + 1))"]).status == 0)
        }
        let thresholds = directory.file("thresholds.yaml")
        try Self.busyThresholds.write(toFile: thresholds, atomically: true, encoding: .utf8)
        let shipped = try walctl(["ship", "--root", root, "--alerts", thresholds, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err.suffix(2000))")
        var total = 0
        for path in paths {
            let expected = try expectedAlerts(path, Self.busyThresholds)
            #expect(!expected.isEmpty)
            let journaled = AlertJournal.read(logDirectory: path).entries
            #expect(journaled.map(\.id) == expected.map(\.id), "\(path)")
            #expect(journaled.allSatisfy { $0.delivered["log"] != nil })
            total += expected.count
        }
        #expect(shipped.err.contains("alerts: 3 logs evaluated, \(total) fired"), "\(shipped.err.suffix(500))")
    }

    @Test func sigkillOfTheEvaluatorLosesNoAlertAndRepeatsOnlyWithTheSameID() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let thresholds = directory.file("thresholds.yaml")
        try Self.busyThresholds.write(toFile: thresholds, atomically: true, encoding: .utf8)
        // The writer never ends by itself, so it outlasts the kills however slow the machine is: it is stopped with
        // SIGKILL after them, which loses no acknowledged record.
        let writer = try ChildProcess.endlessWriter(path, rate: 4000)
        #expect(writer.readLine()?.hasPrefix("acked") == true)
        var kills = 0
        var generator = SeededGenerator(test: "sigkill of the evaluator", default: 80)
        while kills < 5 {
            // Let it journal some alerts (while the writer still writes), then kill it at a random moment. (The count
            // is read before it starts: read after, a fast evaluator could have journaled what was to come.)
            let start = AlertJournal.read(logDirectory: path).entries.count
            let evaluator = try ChildProcess(walctlPath, ["ship", "--dir", path, "--alerts", thresholds])
            _ = waitFor { AlertJournal.read(logDirectory: path).entries.count > start || !writer.process.isRunning }
            usleep(UInt32.random(in: 0...200_000, using: &generator))
            evaluator.kill(SIGKILL)
            kills += 1
        }
        #expect(writer.process.isRunning, "the writer outlived the evaluator kills")
        writer.kill(SIGKILL)
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

    /// Windows and cool-downs of milliseconds on live traffic: at any kill the evaluator holds state that decides
    /// the next alerts. The `info: 0` rule is breached by every record: its chain of alerts (one per cool-down)
    /// never resynchronizes after a restart that gets its start wrong.
    static let tightThresholds = """
        version: 1
        metrics:
          routing_decision_time_ms:
            - {info: 20, warning: 50, critical: 100, cooldown: 30ms}
            - {info: 0, cooldown: 7ms}
            - {warning: 15, window: {aggregate: avg, duration: 40ms, min_samples: 5}, cooldown: 25ms}
            - {critical: 60, window: {aggregate: p95, duration: 80ms, min_samples: 10}, cooldown: 50ms}
          workflow_success_rate:
            direction: below
            warning: 80
            critical: 65
            cooldown: 35ms
        """

    /// `walctl ship --alerts` killed with SIGKILL at seeded random moments while a writer appends: the journal
    /// holds exactly the alerts of one uninterrupted evaluation (ids, order, each journaled once), and those of
    /// the independent Python evaluator.
    @Test func sigkilledAtRandomMomentsTheJournalIsThatOfAnUninterruptedRun() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let thresholds = directory.file("thresholds.yaml")
        try Self.tightThresholds.write(toFile: thresholds, atomically: true, encoding: .utf8)
        var generator = SeededGenerator(test: "sigkill of walctl ship --alerts", default: 1402)
        // As above: the writer outlasts the kills and is stopped with SIGKILL after them.
        let writer = try ChildProcess.endlessWriter(path, rate: 3000)
        #expect(writer.readLine()?.hasPrefix("acked") == true)
        var kills = 0
        while kills < 6 {
            let before = AlertJournal.read(logDirectory: path).entries.count
            let evaluator = try ChildProcess(walctlPath, ["ship", "--dir", path, "--alerts", thresholds])
            // Once it journals alerts (it is evaluating), kill it at a random moment.
            _ = waitFor { AlertJournal.read(logDirectory: path).entries.count > before || !writer.process.isRunning }
            usleep(UInt32.random(in: 0...500_000, using: &generator))
            evaluator.kill(SIGKILL)
            _ = evaluator.wait()
            kills += 1
        }
        #expect(writer.process.isRunning, "the writer outlived the evaluator kills")
        writer.kill(SIGKILL)
        let drained = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain"])
        #expect(drained.status == 0, "\(drained.err)")

        let records = try logRecords(path)
        var evaluator = AlertEvaluator(
            rules: try rules(Self.tightThresholds),
            logID: try LogDirectory(path: path).readMeta().logID
        )
        let expected = records.flatMap { evaluator.evaluate($0) }
        #expect(expected.count > 200)
        let journal = AlertJournal.read(logDirectory: path)
        #expect(journal.unreadable == 0)
        #expect(journal.entries.map(\.id) == expected.map(\.id), "the alerts, ids and order of one run")
        #expect(journal.entries.filter { $0.firedCount > 1 }.isEmpty, "no alert journaled twice")
        #expect(journal.entries.allSatisfy { $0.delivered["log"] != nil })
        #expect(
            summaries(expected) == (try referenceAlerts(thresholds: Self.tightThresholds, records: records)),
            "the independent evaluator agrees"
        )
    }

    /// The issue's timeline (one record per emit-second, value 50 against critical 30 with a 5 s cool-down, the
    /// breach ending and resuming, an 8 s average) written while `walctl ship --alerts` evaluates it and is
    /// killed with SIGKILL at seeded random moments: a restart that rebuilt its cool-downs from recent records
    /// would restart the chain of alerts on another record.
    @Test func sigkilledOnTheIssuesTimelineTheChainOfAlertsIsUnbroken() throws {
        let yaml = """
            version: 1
            metrics:
              routing_decision_time_ms:
                - {critical: 30, cooldown: 5s}
                - {warning: 35, window: {aggregate: avg, duration: 8s, min_samples: 4}, cooldown: 3s}
            """
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let thresholds = directory.file("thresholds.yaml")
        try yaml.write(toFile: thresholds, atomically: true, encoding: .utf8)
        var generator = SeededGenerator(test: "sigkill on the issue's timeline", default: 3005)
        let count = 6000
        let chunks = 8
        var settings = MetricsConfiguration(directory: path)
        settings.log.sealDelayMilliseconds = 2
        let collector = try MetricsCollector(configuration: settings)
        // The writer appends a chunk per evaluator run (paced, so the log grows while it evaluates) and waits for
        // that run's kill before the next one.
        let killed = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let writer = Thread {
            for index in 0..<count {
                if index > 0 && index % (count / chunks) == 0 { killed.wait() }
                let value: Double = (index / 37) % 4 == 3 ? 10 : 50
                collector.record(
                    "routing_decision_time_ms",
                    type: .timing,
                    value: value,
                    unit: "ms",
                    timestampNanos: Timeline.origin + Int64(index) * 1_000_000_000
                )
                if index % 3 == 0 { usleep(1000) }  // Pacing, not synchronization.
            }
            try? collector.close()
            finished.signal()
        }
        writer.start()
        for _ in 0..<chunks {
            let before = AlertJournal.read(logDirectory: path).entries.count
            let evaluator = try ChildProcess(walctlPath, ["ship", "--dir", path, "--alerts", thresholds])
            #expect(waitFor { AlertJournal.read(logDirectory: path).entries.count > before }, "it evaluates")
            usleep(UInt32.random(in: 0...300_000, using: &generator))
            evaluator.kill(SIGKILL)
            _ = evaluator.wait()
            killed.signal()
        }
        finished.wait()
        let drained = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain"])
        #expect(drained.status == 0, "\(drained.err)")

        let records = try logRecords(path)
        #expect(records.count == count)
        var evaluator = AlertEvaluator(rules: try rules(yaml), logID: try LogDirectory(path: path).readMeta().logID)
        let expected = records.flatMap { evaluator.evaluate($0) }
        let journal = AlertJournal.read(logDirectory: path)
        #expect(journal.entries.map(\.id) == expected.map(\.id), "the alerts, ids and order of one run")
        #expect(journal.entries.filter { $0.firedCount > 1 }.isEmpty, "no alert journaled twice")
        #expect(summaries(expected) == (try referenceAlerts(thresholds: yaml, records: records)))
    }
}
