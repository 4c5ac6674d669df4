import Foundation
import Testing
import WALAlerts
import WALCore
import WALMetrics
import WALShipping
import WALTestKit
import WALTraffic

@testable import WALObserve

/// The live view on real logs written by the collector: what it reads, where it starts, what it releases.
@Suite struct LiveViewTests {
    func passes(_ view: LiveView, until condition: () -> Bool) -> Bool {
        waitFor(seconds: 20) {
            view.pass()
            return condition()
        }
    }

    @Test func panelsComeFromALogBeingWritten() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        let view = LiveView(selection: .single(path))
        #expect(view.pass() == 0)
        #expect(view.snapshot().recordsInWindow == 0)

        for index in 0..<200 {
            collector.record(MetricCatalog.routingDecisionTime, value: Double(index % 4) + 1, agentID: "router-1")
            collector.record(MetricCatalog.stateGetTime, value: Double(index + 1), agentID: "state-1")
            collector.record(MetricCatalog.coordinationOverhead, value: 40, agentID: "agent-\(index % 7)")
        }
        collector.flush()
        #expect(passes(view) { view.snapshot().recordsInWindow == 600 && view.snapshot().logs.first?.lastSeq == 600 })
        let snapshot = view.snapshot()
        #expect(snapshot.routing.decisions == 200)
        #expect(snapshot.routing.decisionTimeMs == 2.5)
        #expect(snapshot.state.get.count == 200)
        #expect(snapshot.state.get.p99.map { abs($0 - 198) <= 1.98 } == true)
        #expect(snapshot.coordination.overheadMs == 40)
        #expect(snapshot.coordination.activeAgents == 7)
        #expect(snapshot.logs.map(\.state) == ["reading"])
        #expect(snapshot.logs.first?.lastSeq == 600)

        // More records: only the new ones are added.
        for _ in 0..<100 { collector.record(MetricCatalog.routingDecisionTime, value: 10) }
        collector.flush()
        #expect(passes(view) { view.snapshot().routing.decisions == 300 })
        // (2.5 * 200 + 10 * 100) / 300
        #expect(view.snapshot().routing.decisionTimeMs == 5)
        try collector.close()
    }

    @Test func aLongLogIsReadFromNearItsEndOnly() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for index in 0..<50_000 { collector.record(MetricCatalog.stateSetTime, value: Double(index % 100)) }
        try collector.close()
        var configuration = LiveView.Configuration()
        configuration.backfillRecords = 1_000
        let view = LiveView(selection: .single(path), configuration: configuration)
        // The panels count the records once their second is complete.
        #expect(
            passes(view) { view.snapshot().logs.first?.lastSeq == 50_000 && view.snapshot().state.set.count == 1_000 }
        )
        let snapshot = view.snapshot()
        #expect(snapshot.state.set.count == 1_000)
        #expect(snapshot.logs.first?.skipped == 49_000)
    }

    @Test func aLogOlderThanFiveMinutesShowsNoData() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for _ in 0..<100 { collector.record(MetricCatalog.routingDecisionTime, value: 3) }
        try collector.close()
        // Ten minutes from now, every frame of the log was sealed more than five minutes before: nothing is read.
        let later = Int64(Date().timeIntervalSince1970 * 1e9) + 600_000_000_000
        let view = LiveView(selection: .single(path), clock: { later })
        #expect(passes(view) { view.snapshot().logs.first?.state != nil })
        view.pass()
        #expect(view.snapshot().logs.first?.lastSeq == 100)
        #expect(view.snapshot().recordsInWindow == 0)
    }

    @Test func idleLogsReleaseTheirDescriptorsAndWakeUpOnNewRecords() throws {
        let root = try TemporaryDirectory()
        defer { root.remove() }
        var collectors: [MetricsCollector] = []
        for index in 0..<20 {
            let path = try agentLogPath(root.path, "agent-\(index)")
            let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            collector.record(MetricCatalog.workflowSuccessRate, value: 100)
            collector.flush()
            collectors.append(collector)
        }
        var configuration = LiveView.Configuration()
        configuration.suspendAfterIdleMilliseconds = 50
        configuration.maxOpenLogs = 4
        let view = LiveView(selection: LogSelection(roots: [root.path]), configuration: configuration)
        #expect(passes(view) { view.snapshot().workflow.successRatePercent == 100 && view.snapshot().logCount == 20 })
        #expect(passes(view) { view.snapshot().logs.allSatisfy { $0.state == "idle" } })
        // The panels end at the last complete second: records of the second still running count once it ends
        // (making 20 collectors can take over a second on a loaded machine).
        #expect(passes(view) { view.snapshot().recordsInWindow == 20 })

        collectors[7].record(MetricCatalog.workflowSuccessRate, value: 0)
        collectors[7].flush()
        #expect(passes(view) { view.snapshot().recordsInWindow == 21 })
        #expect(view.snapshot().workflow.successRatePercent == 2000.0 / 21)
        for collector in collectors { try collector.close() }
    }

    /// A damaged segment: the records lost in it are counted and shown (the page said nothing of them before, found
    /// by a hostile tester), and the records after it are read.
    @Test func damageInALogIsCountedNotPassedOverInSilence() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "60000"]).status == 0)
        let last = try LogInspector.lastSealedSeqCheap(path: path)
        let segment = try #require(try LogDirectory(path: path).segments().first).path
        let handle = try #require(FileHandle(forUpdatingAtPath: segment))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size / 3)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 200))
        try handle.close()
        let view = LiveView(selection: .single(path))
        #expect(passes(view) { view.snapshot().logs.first?.lastSeq == last })
        let state = try #require(view.snapshot().logs.first)
        #expect(state.damaged >= 1)
        #expect(state.lost > 0 && state.lost < last, "\(state)")
        let json = String(decoding: view.snapshot().json(), as: UTF8.self)
        #expect(json.contains("\"damaged\":\(state.damaged)"), "\(json.prefix(400))")
    }

    @Test func aMissingLogIsUnreachableAndTheOthersAreRead() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        collector.record(MetricCatalog.workflowParallelSpeedup, value: 2)
        collector.flush()
        let view = LiveView(selection: LogSelection(directories: [path, directory.file("nothing")]))
        #expect(passes(view) { view.snapshot().workflow.parallelSpeedup == 2 })
        let states = Dictionary(uniqueKeysWithValues: view.snapshot().logs.map { ($0.directory, $0) })
        #expect(states[directory.file("nothing")]?.state == "unreachable")
        #expect(states[directory.file("nothing")]?.error != nil)
        #expect(states[path]?.state == "reading")
        try collector.close()
    }

    @Test func alertsComeFromTheJournal() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        try collector.close()
        let journal = AlertJournal(logDirectory: path)
        let view = LiveView(selection: .single(path))
        view.pass()
        #expect(view.snapshot().alerts.isEmpty)

        let alerts = try fireAlerts(path, values: [150, 70, 30, 120])
        try journal.fired(alerts)
        #expect(passes(view) { view.snapshot().alerts.count == 3 })
        let snapshot = view.snapshot()
        #expect(snapshot.alerts.map(\.severity) == ["critical", "warning", "critical"])
        #expect(snapshot.alerts.map(\.value) == [120, 70, 150])
        #expect(snapshot.alerts.first?.metric == "routing_decision_time_ms")
        #expect(snapshot.alerts.first?.threshold == 100)
        #expect(snapshot.alerts.first?.agentID == "router-1")
        #expect(snapshot.alertFrequency["critical"]?.reduce(0, +) == 2)
        #expect(snapshot.alertFrequency["warning"]?.reduce(0, +) == 1)
        #expect(snapshot.alertFrequency["info"]?.reduce(0, +) == 1)
    }

    /// A journal line naming a time a nanosecond count cannot hold (the year 2263, 1000) trapped on an overflow and
    /// took the live page down; such rows, and unparseable times, are left out.
    @Test func journalTimesOutOfRangeAreLeftOutNotACrash() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        try collector.close()
        try FileManager.default.createDirectory(atPath: path + "/alerts", withIntermediateDirectories: true)
        let lines = ["2263-01-01T00:00:00Z", "1000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday"].map {
            #"{"event":"fired","alert":{"alert_id":"a-\#($0)","severity":"critical","timestamp":"\#($0)","#
                + #""metric_name":"m","value":1}}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(
            toFile: path + "/alerts/journal.jsonl",
            atomically: true,
            encoding: .utf8
        )
        let view = LiveView(selection: .single(path))
        view.pass()
        #expect(view.snapshot().alerts.isEmpty)
        try AlertJournal(logDirectory: path).fired(try fireAlerts(path, values: [150]))
        #expect(passes(view) { view.snapshot().alerts.count == 1 })
    }
}

/// Real alerts for `values` of routing_decision_time_ms (info 20, warning 50, critical 100; no cool-down), as
/// `walctl ship --alerts` journals them: evaluated on records emitted now into the log at `path`.
func fireAlerts(_ path: String, values: [Double]) throws -> [Alert] {
    let logID = try LogDirectory(path: path).readMeta().logID
    var evaluator = AlertEvaluator(
        rules: [
            ThresholdRule(
                metric: "routing_decision_time_ms",
                levels: [.info: 20, .warning: 50, .critical: 100],
                cooldownNanos: 0
            )
        ],
        logID: logID
    )
    let now = Int64(Date().timeIntervalSince1970 * 1e9)
    return values.enumerated().flatMap { index, value in
        evaluator.evaluate(
            MetricRecord(
                seq: UInt64(index + 1),
                name: "routing_decision_time_ms",
                type: .timing,
                value: value,
                unit: "ms",
                tags: [:],
                timestampNanos: now + Int64(index) * 1_000_000,
                correlationID: nil,
                agentID: "router-1"
            )
        )
    }
}
