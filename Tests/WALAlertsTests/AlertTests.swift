import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALAlerts

/// A record of `name` with `value`, emitted `seconds` after a fixed origin.
func record(
    _ name: String,
    _ value: Double,
    seq: UInt64 = 1,
    seconds: Double = 0,
    tags: [String: String] = [:]
) -> MetricRecord {
    MetricRecord(
        seq: seq,
        name: name,
        type: MetricCatalog.byName[name]?.type ?? .gauge,
        value: value,
        unit: MetricCatalog.byName[name]?.unit ?? "x",
        tags: tags,
        timestampNanos: 1_800_000_000_000_000_000 + Int64(seconds * 1e9),
        correlationID: "corr-\(seq)",
        agentID: "agent-1"
    )
}

let logID = LogID(bytes: Array(0..<16))

@Suite struct ThresholdDefaultsTests {
    /// The design's table: metric, severity, threshold, direction.
    static let table: [(String, Severity, Double, Direction)] = [
        ("routing_decision_time_ms", .critical, 100, .above),
        ("state_lock_contention_ms", .critical, 50, .above),
        ("coordination_overhead_ms", .critical, 10_000, .above),
        ("workflow_success_rate", .critical, 80, .below),
        ("quorum_consensus_score", .critical, 0.6, .below),
        ("routing_decision_time_ms", .warning, 50, .above),
        ("state_get_time_ms", .warning, 10, .above),
        ("coordination_overhead_ms", .warning, 5000, .above),
        ("workflow_execution_time_ms", .warning, 10_000, .above),
        ("routing_cache_hit_rate", .warning, 60, .below),
        ("routing_decision_time_ms", .info, 20, .above),
        ("coordination_agent_count", .info, 10, .above),
        ("workflow_step_count", .info, 50, .above),
        ("state_snapshot_size_kb", .info, 500, .above),
    ]

    @Test func theBuiltInDefaultsAreTheDesignsTable() throws {
        let defaults = try ThresholdFile.parse(yaml: DefaultThresholds.yaml, path: "defaults")
        var found: [String] = []
        for rule in defaults.rules {
            for (severity, threshold) in rule.levels {
                found.append("\(rule.metric) \(severity) \(threshold) \(rule.direction)")
            }
        }
        #expect(found.sorted() == Self.table.map { "\($0.0) \($0.1) \($0.2) \($0.3)" }.sorted())
    }

    @Test(arguments: table.indices)
    func eachDefaultFiresAtItsLevelAndNotAtTheThreshold(index: Int) throws {
        let (metric, severity, threshold, direction) = Self.table[index]
        let step = max(abs(threshold) * 0.001, 0.0001)
        let past = direction == .above ? threshold + step : threshold - step
        // Exactly at the threshold: this level does not fire (the breach is strict).
        var evaluator = AlertEvaluator(rules: ThresholdFile.defaults.rules, logID: logID)
        let atThreshold = evaluator.evaluate(record(metric, threshold, seq: 1))
        #expect(!atThreshold.contains { $0.severity >= severity }, "\(metric) at \(threshold)")
        // Just past it: exactly this level (the next level's threshold is further away).
        let fired = evaluator.evaluate(record(metric, past, seq: 2, seconds: 1))
        #expect(fired.map(\.severity) == [severity], "\(metric) at \(past)")
        #expect(fired.first?.threshold == threshold)
        #expect(fired.first?.direction == direction)
    }
}

@Suite struct EvaluatorTests {
    func rule(_ yaml: String) throws -> [ThresholdRule] {
        try ThresholdFile.parse(yaml: "version: 1\nmetrics:\n" + yaml, path: "test.yaml").rules
    }

    @Test func anAverageWindowWaitsForItsSamplesAndForgetsOldValues() throws {
        let rules = try rule(
            """
              state_get_time_ms:
                warning: 10
                window: {aggregate: avg, duration: 10s, min_samples: 3}
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        #expect(evaluator.evaluate(record("state_get_time_ms", 30, seq: 1, seconds: 0)).isEmpty, "1 sample")
        #expect(evaluator.evaluate(record("state_get_time_ms", 30, seq: 2, seconds: 1)).isEmpty, "2 samples")
        let fired = evaluator.evaluate(record("state_get_time_ms", 0, seq: 3, seconds: 2))
        #expect(fired.count == 1)
        #expect(fired.first?.value == 20, "avg of 30, 30, 0")
        #expect(fired.first?.window == .aggregate(.avg, durationNanos: 10_000_000_000, minSamples: 3))
        // 20 s later the old values have left the window: three low values, no alert (and no cool-down involved).
        for (offset, seq) in [(20.0, 4), (21, 5), (22, 6)] {
            #expect(evaluator.evaluate(record("state_get_time_ms", 1, seq: UInt64(seq), seconds: offset)).isEmpty)
        }
    }

    @Test func aPercentileWindowFiresOnItsTailNotItsMean() throws {
        let rules = try rule(
            """
              routing_decision_time_ms:
                critical: 100
                window: {aggregate: p95, duration: 1m, min_samples: 20}
                cooldown: 0s
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        var fired: [Alert] = []
        for index in 0..<100 {
            // 94 fast decisions and 6 slow ones: the mean is low, the p95 is slow.
            let value = index % 16 == 15 ? 150.0 : 5.0
            fired += evaluator.evaluate(
                record("routing_decision_time_ms", value, seq: UInt64(index + 1), seconds: Double(index) * 0.1)
            )
        }
        #expect(!fired.isEmpty)
        #expect(fired.allSatisfy { $0.value == 150 && $0.severity == .critical })
        var fast = AlertEvaluator(rules: rules, logID: logID)
        for index in 0..<100 {
            let value = index % 50 == 49 ? 150.0 : 5.0
            #expect(
                fast.evaluate(
                    record("routing_decision_time_ms", value, seq: UInt64(index + 1), seconds: Double(index) * 0.1)
                ).isEmpty
            )
        }
    }

    @Test func coolDownSilencesRepeatsButNotEscalation() throws {
        let rules = try rule(
            """
              routing_decision_time_ms:
                warning: 50
                critical: 100
                cooldown: 30s
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        #expect(
            evaluator.evaluate(record("routing_decision_time_ms", 60, seq: 1, seconds: 0)).map(\.severity) == [.warning]
        )
        #expect(evaluator.evaluate(record("routing_decision_time_ms", 70, seq: 2, seconds: 10)).isEmpty, "cooling down")
        #expect(
            evaluator.evaluate(record("routing_decision_time_ms", 120, seq: 3, seconds: 11)).map(\.severity) == [
                .critical
            ]
        )
        #expect(evaluator.evaluate(record("routing_decision_time_ms", 130, seq: 4, seconds: 20)).isEmpty)
        #expect(
            evaluator.evaluate(record("routing_decision_time_ms", 60, seq: 5, seconds: 31)).map(\.severity) == [
                .warning
            ]
        )
    }

    @Test func aTagFilterLimitsTheRule() throws {
        let rules = try rule(
            """
              state_get_time_ms:
                warning: 10
                tags: {operation_type: get}
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        #expect(evaluator.evaluate(record("state_get_time_ms", 50, seq: 1, tags: ["operation_type": "scan"])).isEmpty)
        #expect(evaluator.evaluate(record("state_get_time_ms", 50, seq: 2, tags: ["operation_type": "get"])).count == 1)
    }

    @Test func alertIDsAreDeterministicAndThePayloadCarriesEveryField() throws {
        let records = (1...200).map {
            record("routing_decision_time_ms", Double($0), seq: UInt64($0), seconds: Double($0) * 61)
        }
        var first = AlertEvaluator(rules: ThresholdFile.defaults.rules, logID: logID)
        var second = AlertEvaluator(rules: ThresholdFile.defaults.rules, logID: logID)
        let a = records.flatMap { first.evaluate($0) }
        let b = records.flatMap { second.evaluate($0) }
        #expect(!a.isEmpty && a == b)
        #expect(Set(a.map(\.id)).count == a.count)
        let alert = try #require(a.first { $0.severity == .critical })
        #expect(alert.id == Envelope.uuid5(logID: logID, name: "alert/\(alert.seq)/0/critical"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(alert.json().utf8)) as? [String: Any])
        #expect(object["alert_id"] as? String == alert.id)
        #expect(object["severity"] as? String == "critical")
        #expect(object["metric_name"] as? String == "routing_decision_time_ms")
        #expect(object["value"] as? Double == alert.value && object["threshold"] as? Double == 100)
        #expect(object["direction"] as? String == "above" && object["window"] as? String == "last")
        #expect(
            object["agent_id"] as? String == "agent-1" && object["correlation_id"] as? String == "corr-\(alert.seq)"
        )
        #expect(object["wal_seq"] as? Int == Int(alert.seq))
        #expect((object["timestamp"] as? String)?.hasSuffix("Z") == true)
        #expect(object["tags"] as? [String: String] == [:])
    }
}

@Suite struct ThresholdFileTests {
    @Test(arguments: [
        ("metrics:\n  routing_decision_tim_ms:\n    warning: 5\n", 2, "unknown metric \"routing_decision_tim_ms\""),
        ("metrics:\n  Bad-Name:\n    warning: 5\n", 2, "not a valid metric name"),
        ("metrics:\n  state_get_time_ms:\n    warning: fast\n", 3, "state_get_time_ms.warning: expected a number"),
        ("metrics:\n  state_get_time_ms:\n    warning: 50\n    critical: 10\n", 3, "must be at least warning"),
        (
            "metrics:\n  workflow_success_rate:\n    direction: below\n    warning: 70\n    critical: 80\n", 3,
            "must be at most warning"
        ),
        ("metrics:\n  state_get_time_ms:\n    direction: sideways\n    warning: 1\n", 3, "expected above or below"),
        (
            "metrics:\n  state_get_time_ms:\n    warning: 1\n    window: {aggregate: p50, duration: 1m}\n", 4,
            "expected avg, p95 or p99"
        ),
        ("metrics:\n  state_get_time_ms:\n    warning: 1\n    cooldown: soon\n", 4, "expected a duration"),
        ("metrics:\n  state_get_time_ms:\n    warn: 1\n", 3, "unknown key \"warn\""),
        ("metrics:\n  state_get_time_ms: {}\n", 2, "give at least one of info, warning, critical"),
        ("version: 2\nmetrics: {}\n", 1, "unsupported version"),
        ("metrics:\n  state_get_time_ms: [\n", 3, "not valid YAML"),
        ("alerts: {}\n", 1, "unknown key \"alerts\""),
        // A key given twice was read twice, the last value winning silently.
        (
            "metrics:\n  workflow_success_rate:\n    direction: below\n    critical: 80\n    direction: above\n", 5,
            "duplicate key \"direction\" in workflow_success_rate (first at line 3)"
        ),
        (
            "metrics:\n  state_get_time_ms:\n    warning: 1\n  state_get_time_ms:\n    critical: 5\n", 4,
            "duplicate key \"state_get_time_ms\" in metrics"
        ),
        ("version: 1\nmetrics: {}\nversion: 1\n", 3, "duplicate key \"version\""),
        ("metrics:\n  state_get_time_ms:\n    warning: 1\n    tags: {a: x, a: y}\n", 4, "duplicate key \"a\""),
        (
            "metrics:\n  state_get_time_ms:\n    warning: 1\n    window: {aggregate: p95, duration: 1m, duration: 2m}\n",
            4, "duplicate key \"duration\" in state_get_time_ms.window"
        ),
        ("metrics:\n  state_get_time_ms:\n    - {warning: 1, warning: 2}\n", 3, "duplicate key \"warning\""),
    ])
    func aMalformedFileNamesTheLineAndTheReason(yaml: String, line: Int, reason: String) {
        do {
            _ = try ThresholdFile.parse(yaml: yaml, path: "t.yaml")
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.path == "t.yaml")
            #expect(error.line == line, "\(error)")
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func aDuplicateKeyIsRefusedWithFileLineAndColumnByAlertsCheck() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = directory.file("flipped.yaml")
        let flipped = """
            version: 1
            metrics:
              workflow_success_rate:
                direction: below
                critical: 80
                direction: above

            """
        try flipped.write(toFile: file, atomically: true, encoding: .utf8)
        let checked = try walctl(["alerts", "check", file])
        #expect(checked.status == 1, "\(checked.out)")
        #expect(checked.err.contains("\(file):6:5: duplicate key \"direction\""), "\(checked.err)")
    }

    @Test func customMetricsListsOfRulesAndDurationsParse() throws {
        let file = try ThresholdFile.parse(
            yaml: """
                version: 1
                metrics:
                  custom_queue_depth_count:
                    - {warning: 100, cooldown: 5m}
                    - {critical: 1000, tags: {queue: ingest}, window: {aggregate: p99, duration: 30s, min_samples: 10}}
                """,
            path: "t.yaml"
        )
        #expect(file.rules.count == 2)
        #expect(file.rules[0].cooldownNanos == 300_000_000_000)
        #expect(file.rules[1].tags == ["queue": "ingest"])
        #expect(file.rules[1].window == .aggregate(.p99, durationNanos: 30_000_000_000, minSamples: 10))
    }

    @Test func alertsCheckThroughTheCLI() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let defaults = try walctl(["alerts", "defaults"])
        #expect(defaults.status == 0)
        let good = directory.file("thresholds.yaml")
        try defaults.out.write(toFile: good, atomically: true, encoding: .utf8)
        let checked = try walctl(["alerts", "check", good])
        #expect(checked.status == 0, "\(checked.err)")
        #expect(checked.out.contains("valid, 11 rules"))
        let bad = directory.file("bad.yaml")
        try "version: 1\nmetrics:\n  quorum_consensus_scor:\n    critical: 0.6\n".write(
            toFile: bad,
            atomically: true,
            encoding: .utf8
        )
        let refused = try walctl(["alerts", "check", bad])
        #expect(refused.status == 1)
        #expect(refused.err.contains("\(bad):3:3: unknown metric \"quorum_consensus_scor\""))
        #expect(try walctl(["alerts", "check", directory.file("missing.yaml")]).status == 1)
        #expect(try walctl(["alerts", "check"]).status == 2)
    }
}
