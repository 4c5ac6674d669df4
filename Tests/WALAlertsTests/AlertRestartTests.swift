import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALAlerts

// MARK: - Scenarios

/// A timeline of records: metric, value, emit time in seconds after `origin`.
struct Timeline {
    static let origin: Int64 = 1_800_000_000_000_000_000
    var events: [(name: String, value: Double, seconds: Double)]

    /// As `MetricRecord`s with seqs 1, 2, ...
    var records: [MetricRecord] {
        events.enumerated().map { index, event in
            record(event.name, event.value, seq: UInt64(index + 1), seconds: event.seconds)
        }
    }

    /// Writes the timeline into a new log at `path` (through the collector, with these emit times).
    func write(to path: String) throws {
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for event in events {
            let definition = try #require(MetricCatalog.byName[event.name])
            let result = collector.record(
                event.name,
                type: definition.type,
                value: event.value,
                unit: definition.unit,
                agentID: "agent-1",
                timestampNanos: Self.origin + Int64((event.seconds * 1e9).rounded())
            )
            guard case .recorded = result else { throw TimelineError(result: "\(result)") }
        }
        try collector.close()
    }

    struct TimelineError: Error { var result: String }
}

/// The issue's scenario: one record per second of value 50 against critical 30 with a 5 s cool-down.
let steadyBreach = """
    version: 1
    metrics:
      routing_decision_time_ms:
        critical: 30
        cooldown: 5s
    """

/// Windows and cool-downs together: what a restart has to carry over.
let windowedRules = """
    version: 1
    metrics:
      routing_decision_time_ms:
        - {critical: 30, cooldown: 5s}
        - {warning: 40, window: {aggregate: avg, duration: 4s, min_samples: 3}, cooldown: 3s}
        - {critical: 45, window: {aggregate: p95, duration: 6s, min_samples: 2}, cooldown: 2500ms}
      workflow_success_rate:
        direction: below
        warning: 90
        critical: 70
        cooldown: 7s
    """

func rules(_ yaml: String) throws -> [ThresholdRule] { try ThresholdFile.parse(yaml: yaml, path: "t.yaml").rules }

func scenarios() -> [(name: String, yaml: String, timeline: Timeline)] {
    let steady = Timeline(events: (0..<60).map { ("routing_decision_time_ms", 50, Double($0)) })
    let ending = Timeline(events: (0..<45).map { ("routing_decision_time_ms", $0 < 30 ? 50 : 10, Double($0)) })
    var generator = SeededGenerator(test: "windowed scenario", default: 14)
    var events: [(String, Double, Double)] = []
    var time = 0.0
    for _ in 0..<120 {
        time += Double(Int.random(in: 1...1500, using: &generator)) / 1000
        if Bool.random(using: &generator) {
            events.append(("routing_decision_time_ms", Double(Int.random(in: 0...600, using: &generator)) / 10, time))
        } else {
            events.append(("workflow_success_rate", Double(Int.random(in: 500...1000, using: &generator)) / 10, time))
        }
    }
    return [
        ("steady breach", steadyBreach, steady), ("breach ending at 30 s", steadyBreach, ending),
        ("windows and cool-downs", windowedRules, Timeline(events: events)),
    ]
}

/// The alerts of the independent Python evaluator (`Tests/Reference/alert_reference.py`): seq, rule, severity,
/// value.
func referenceAlerts(thresholds: String, records: [MetricRecord]) throws -> [String] {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let yamlPath = directory.file("thresholds.yaml")
    try thresholds.write(toFile: yamlPath, atomically: true, encoding: .utf8)
    let recordsPath = directory.file("records.jsonl")
    var lines = ""
    for record in records {
        let object: [String: Any] = [
            "seq": record.seq, "name": record.name, "value": hexFloat(record.value),
            "time_ns": record.timestampNanos, "tags": record.tags,
        ]
        lines += String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self) + "\n"
    }
    try lines.write(toFile: recordsPath, atomically: true, encoding: .utf8)
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Reference/alert_reference.py").path
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", script, yamlPath, recordsPath]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try #require(process.terminationStatus == 0, "the reference evaluator failed")
    return String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
        let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        let value = Double(object["value"] as? String ?? "") ?? .nan  // Swift reads hexadecimal floats too.
        return "\(object["seq"] ?? "?") \(object["rule"] ?? "?") \(object["severity"] ?? "?") \(value)"
    }
}

/// Alerts as `referenceAlerts` lists them.
func summaries(_ alerts: [Alert]) -> [String] {
    alerts.map { "\($0.seq) \($0.rule) \($0.severity.rawValue) \($0.value)" }
}

/// Python's `float.hex` form, which `float.fromhex` reads back exactly.
func hexFloat(_ value: Double) -> String {
    if value == 0 { return value.sign == .minus ? "-0x0.0p+0" : "0x0.0p+0" }
    let sign = value.sign == .minus ? "-" : ""
    let magnitude = abs(value)
    if magnitude.isSubnormal {
        return sign + "0x0." + String(magnitude.significandBitPattern, radix: 16).leftPadded(to: 13) + "p-1022"
    }
    return sign + "0x1." + String(magnitude.significandBitPattern, radix: 16).leftPadded(to: 13) + "p"
        + (magnitude.exponent >= 0 ? "+" : "") + String(magnitude.exponent)
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

// MARK: - The evaluator restarted at every record

@Suite struct EvaluatorRestartTests {
    /// Evaluates `records`, stopping after the first `stop` of them, journaling the state through JSON and
    /// continuing from it in a new evaluator.
    func restarted(_ rules: [ThresholdRule], _ records: [MetricRecord], at stop: Int) throws -> [Alert] {
        var first = AlertEvaluator(rules: rules, logID: logID)
        var alerts = records.prefix(stop).flatMap { first.evaluate($0) }
        let json = try JSONEncoder().encode(first.state)
        let state = try JSONDecoder().decode(AlertEvaluatorState.self, from: json)
        #expect(state == first.state, "the state survives JSON bit for bit")
        var second = AlertEvaluator(rules: rules, logID: logID, state: state)
        alerts += records.dropFirst(stop).flatMap { second.evaluate($0) }
        return alerts
    }

    @Test func theIssuesScenarioFiresEveryFiveSecondsFromTheFirstRecord() throws {
        let records = Timeline(events: (0..<60).map { ("routing_decision_time_ms", 50, Double($0)) }).records
        var evaluator = AlertEvaluator(rules: try rules(steadyBreach), logID: logID)
        let fired = records.flatMap { evaluator.evaluate($0) }
        #expect(fired.map(\.seq) == Array(stride(from: 1, through: 56, by: 5)), "... 31, 36, 41 ...")
        let ending = Timeline(events: (0..<45).map { ("routing_decision_time_ms", $0 < 30 ? 50 : 10, Double($0)) })
        var second = AlertEvaluator(rules: try rules(steadyBreach), logID: logID)
        #expect(ending.records.flatMap { second.evaluate($0) }.map(\.seq).last == 26, "t = 25 s is the last breach")
    }

    @Test(arguments: scenarios().indices)
    func stoppingAndRestartingAtEveryRecordChangesNoAlert(scenario: Int) throws {
        let (name, yaml, timeline) = scenarios()[scenario]
        let parsed = try rules(yaml)
        let records = timeline.records
        var evaluator = AlertEvaluator(rules: parsed, logID: logID)
        let uninterrupted = records.flatMap { evaluator.evaluate($0) }
        #expect(uninterrupted.count > 5, "\(name) fires")
        #expect(summaries(uninterrupted) == (try referenceAlerts(thresholds: yaml, records: records)), "\(name)")
        for stop in 0...records.count {
            #expect(try restarted(parsed, records, at: stop) == uninterrupted, "\(name): restarted after \(stop)")
        }
    }
}

// MARK: - The service restarted at every record, and after a crash between journal and state

@Suite struct AlertServiceRestartTests {
    /// Runs the service in process (no channels) until it has evaluated exactly through `seq`.
    func evaluate(_ path: String, _ yaml: String, through seq: UInt64) throws {
        var settings = AlertServiceConfiguration(thresholds: try ThresholdFile.parse(yaml: yaml, path: "t.yaml"))
        settings.drainThroughSeq = seq
        settings.pollIntervalMilliseconds = 1
        let service = AlertService(directory: path, configuration: settings, channels: [], logger: Logger(label: "t"))
        try service.runBlocking()
        #expect(service.statistics.evaluatedThrough == seq)
        #expect(AlertStateFile(logDirectory: path).load()?.throughSeq == seq, "the state is journaled on stop")
        #expect(try CursorStore(path: path).load("alerts")?.seq == seq, "the cursor follows the state")
    }

    func forget(_ path: String) throws {
        try? FileManager.default.removeItem(atPath: path + "/alerts")
        try? FileManager.default.removeItem(atPath: path + "/cursors/alerts.cursor")
    }

    @Test(arguments: scenarios().indices)
    func aServiceStoppedAtEveryRecordJournalsTheAlertsOfAnUninterruptedRun(scenario: Int) throws {
        let (name, yaml, timeline) = scenarios()[scenario]
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        try timeline.write(to: path)
        let records = try logRecords(path)
        var evaluator = AlertEvaluator(rules: try rules(yaml), logID: try LogDirectory(path: path).readMeta().logID)
        let expected = records.flatMap { evaluator.evaluate($0) }.map(\.id)
        let last = try #require(records.last?.seq)
        for stop in 0...last {
            try forget(path)
            try evaluate(path, yaml, through: stop)
            try evaluate(path, yaml, through: last)
            let journal = AlertJournal.read(logDirectory: path)
            #expect(journal.entries.map(\.id) == expected, "\(name): stopped after \(stop)")
            #expect(journal.entries.allSatisfy { $0.firedCount == 1 }, "\(name): nothing journaled twice")
        }
    }

    /// A crash after alerts were journaled but before the state caught up: the restart re-evaluates those records
    /// from the older state, fires the same alerts, and journals none of them again.
    @Test func aCrashBetweenJournalAndStateRepeatsNoAlert() throws {
        let (_, yaml, timeline) = scenarios()[2]
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        try timeline.write(to: path)
        let records = try logRecords(path)
        var evaluator = AlertEvaluator(rules: try rules(yaml), logID: try LogDirectory(path: path).readMeta().logID)
        let expected = records.flatMap { evaluator.evaluate($0) }.map(\.id)
        let last = try #require(records.last?.seq)
        let state = AlertStateFile(logDirectory: path)
        for (older, newer) in [(0, 7), (10, 11), (20, 60), (59, 100), (1, last)] {
            try forget(path)
            try evaluate(path, yaml, through: UInt64(older))
            let saved = try #require(state.load())
            try evaluate(path, yaml, through: UInt64(newer))
            try state.store(saved)  // The state of the crashed run never reached the disk.
            try CursorStore(path: path).store("alerts", seq: UInt64(older))
            try evaluate(path, yaml, through: last)
            let journal = AlertJournal.read(logDirectory: path)
            #expect(journal.entries.map(\.id) == expected, "state at \(older), journal at \(newer)")
            #expect(journal.entries.allSatisfy { $0.firedCount == 1 }, "state at \(older), journal at \(newer)")
        }
    }

    /// A log evaluated before states were journaled (only a cursor): the restart replays the log to the cursor.
    @Test func aCursorWithoutStateIsReachedByReplayingTheLog() throws {
        let (_, yaml, timeline) = scenarios()[0]
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        try timeline.write(to: path)
        let records = try logRecords(path)
        var evaluator = AlertEvaluator(rules: try rules(yaml), logID: try LogDirectory(path: path).readMeta().logID)
        let expected = records.flatMap { evaluator.evaluate($0) }.map(\.id)
        try evaluate(path, yaml, through: 28)
        try FileManager.default.removeItem(atPath: AlertStateFile(logDirectory: path).path)
        try evaluate(path, yaml, through: UInt64(records.count))
        #expect(AlertJournal.read(logDirectory: path).entries.map(\.id) == expected)
    }
}
