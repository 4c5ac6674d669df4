import Foundation
import Logging
import Synchronization
import Testing
import WALAlerts
import WALCore
import WALShipping
import WALTestKit

@testable import WALObserve

/// `/metrics`, `/healthz` and `/readyz` of a shipping engine in this process, against a fake sink that fails on
/// demand: the series carry exactly the engine's counts, and health follows progress, not liveness.
@Suite struct ShipperMonitorTests {
    final class Running: @unchecked Sendable {
        let engine: ShippingEngine
        let sink = FakeSink()
        let path: String
        let logID: String
        private let thread: Thread

        /// With `unreachable`, the sink cannot be reached from the start.
        init(path: String, unreachable: Bool = false) throws {
            self.path = path
            sink.setUnreachable(unreachable)
            logID = try LogDirectory(path: path).readMeta().logID.description
            var settings = ShipperConfiguration()
            settings.pollMilliseconds = 5
            settings.flushIntervalMilliseconds = 20
            settings.retry = RetryPolicy(initialMilliseconds: 10, maximumMilliseconds: 50)
            engine = ShippingEngine(
                selection: .single(path),
                sink: sink,
                configuration: settings,
                logger: Logger(label: "test")
            )
            let engine = engine
            thread = Thread { try? engine.runBlocking() }
            thread.start()
        }

        /// A log of `count` records written by `walctl emit` in `directory`, shipped.
        convenience init(records count: Int, in directory: TemporaryDirectory) throws {
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "\(count)"]).status == 0)
            try self.init(path: path)
        }

        func stop() {
            engine.stop()
            _ = waitFor { engine.isFinished }
        }
    }

    /// Waits until `monitor` reports unhealthy: whether it did, and the last report read.
    func awaitUnhealthy(_ monitor: ShipperMonitor) -> (Bool, String) {
        var report = ""
        let turned = waitFor {
            let health = monitor.health()
            report = health.report
            return !health.healthy
        }
        return (turned, report)
    }

    @Test func seriesCarryTheEngineCountsAndPassPromtool() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "500"]).status == 0)
        let last = try LogInspector.lastSealedSeqCheap(path: path)
        let running = try Running(path: path)
        defer { running.stop() }
        let monitor = ShipperMonitor(engines: [running.engine], stalledAfterSeconds: 60)
        let labels = ["sink": "fake", "log_id": running.logID, "dir": path]
        var text = ""
        #expect(
            waitFor {
                text = String(decoding: monitor.metricsText(), as: UTF8.self)
                return sample(text, "walctl_ship_committed_seq", labels) == Double(last)
                    && sample(text, "walctl_ship_lag_records", labels) == 0
            },
            "\(text)"
        )
        #expect(sample(text, "walctl_ship_records_total", labels) == 500)
        let rows = running.sink.rows(of: try LogDirectory(path: path).readMeta().logID)
        #expect(rows.count == 500)
        #expect((sample(text, "walctl_ship_bytes_total", labels) ?? 0) > 500 * 10)
        #expect(sample(text, "walctl_ship_lag_seconds", labels) == 0)
        #expect(sample(text, "walctl_ship_logs", ["sink": "fake"]) == 1)
        #expect(sample(text, "walctl_ship_healthy", ["sink": "fake"]) == 1)
        #expect(sample(text, "walctl_log_last_seq", ["dir": path]) == Double(last))
        #expect(sample(text, "walctl_log_staged_records", ["dir": path]) == 0)
        #expect((sample(text, "walctl_log_bytes_on_disk", ["dir": path]) ?? 0) > 1_000_000)
        #expect(monitor.health().healthy && monitor.readiness().ready)
        if requireDebianTools || debianTool("promtool") != nil {
            let check = try promtoolCheck(text)
            #expect(check.status == 0, "\(check.output)\n\(text)")
        }
        // Counters only go up between scrapes; a second scrape with nothing new repeats the values.
        let again = String(decoding: monitor.metricsText(), as: UTF8.self)
        #expect(sample(again, "walctl_ship_records_total", labels) == 500)
    }

    @Test func healthFailsWhenRecordsWaitWithoutProgressAndRecovers() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let running = try Running(records: 100, in: directory)
        defer { running.stop() }
        let path = running.path
        let monitor = ShipperMonitor(engines: [running.engine], stalledAfterSeconds: 0.5)
        #expect(waitFor { running.engine.statistics.recordsShipped == 100 })
        #expect(waitFor { monitor.readiness().ready })
        // The sink fails from now on while new records arrive.
        running.sink.failNext(Int.max)
        #expect(try walctl(["emit", "--dir", path, "--count", "50"]).status == 0)
        let (turned, report) = awaitUnhealthy(monitor)
        #expect(turned)
        #expect(report.hasPrefix("unhealthy\nfake: "), "\(report)")
        #expect(report.contains("records wait") || report.contains("every attempt failed"), "\(report)")
        #expect(report.contains("injected failure"), "\(report)")
        var text = ""
        #expect(
            waitFor {
                text = String(decoding: monitor.metricsText(), as: UTF8.self)
                return sample(text, "walctl_ship_lag_records", ["dir": path]) == 50
            },
            "\(text)"
        )
        #expect(sample(text, "walctl_ship_healthy", ["sink": "fake"]) == 0)
        #expect((sample(text, "walctl_ship_errors_total", ["sink": "fake", "kind": "injected"]) ?? 0) > 0)
        // The sink heals: the backlog ships and health returns.
        running.sink.failNext(0)
        #expect(waitFor { monitor.health().healthy }, "\(monitor.health().report)")
        #expect(waitFor { running.engine.statistics.recordsShipped == 150 })
    }

    /// A call into the sink that does not return (a lock wait in PostgreSQL): the shipper's thread is stuck in it,
    /// so the lag it publishes froze and /healthz said healthy for as long as the call hung (found by a hostile
    /// tester). The hung call is told by itself, and health returns when it does.
    @Test func aCallHungInTheSinkTurnsHealthUnhealthy() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let running = try Running(records: 100, in: directory)
        defer {
            running.sink.release()
            running.stop()
        }
        let monitor = ShipperMonitor(engines: [running.engine], stalledAfterSeconds: 0.5)
        #expect(waitFor { running.engine.statistics.recordsShipped == 100 })
        #expect(monitor.health().healthy)
        running.sink.hold()
        #expect(try walctl(["emit", "--dir", running.path, "--count", "50"]).status == 0)
        let (turned, report) = awaitUnhealthy(monitor)
        #expect(turned)
        #expect(report.contains("fake: a call to the sink has not returned for"), "\(report)")
        running.sink.release()
        #expect(waitFor { running.engine.statistics.recordsShipped == 150 })
        #expect(waitFor { monitor.health().healthy }, "\(monitor.health().report)")
    }

    /// A shipper started while its sink is down reads nothing (it cannot learn where to read from), yet the records
    /// waiting age: the lag in seconds grows from their emit time (it stayed at 0 s for as long as the sink was down,
    /// so an alert on it never fired), and it ends when they ship.
    @Test func theLagInSecondsGrowsWhileTheSinkIsDownFromTheStart() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let emitting = Date()
        #expect(try walctl(["emit", "--dir", path, "--count", "500"]).status == 0)
        let running = try Running(path: path, unreachable: true)
        defer { running.stop() }
        let monitor = ShipperMonitor(engines: [running.engine], stalledAfterSeconds: 60)
        var lag: Double?
        #expect(
            waitFor {
                let text = String(decoding: monitor.metricsText(), as: UTF8.self)
                lag = sample(text, "walctl_ship_lag_seconds", ["dir": path])
                return (lag ?? 0) >= 1
            },
            "lag \(String(describing: lag))"
        )
        #expect(running.engine.statistics.recordsShipped == 0)
        #expect((lag ?? 0) <= Date().timeIntervalSince(emitting) + 1, "no older than the records")
        running.sink.setUnreachable(false)
        #expect(waitFor { running.engine.statistics.recordsShipped == 500 })
        #expect(waitFor { running.engine.statistics.oldestUnshippedAgeSeconds == 0 })
    }

    /// A log shipped before the sink went down is not waiting when a shipper restarts during the outage: the local
    /// copy of the position is its floor (a reviewer found every record of such a log counted as waiting, and the
    /// lag in seconds taken from its first record, which would fire alerts for logs with nothing to ship).
    @Test func aLogShippedBeforeTheOutageShowsNoLagWhenTheShipperRestartsDuringIt() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try Running(records: 500, in: directory)
        #expect(waitFor { first.engine.statistics.recordsShipped == 500 })
        first.stop()
        let second = try Running(path: first.path, unreachable: true)
        defer { second.stop() }
        let monitor = ShipperMonitor(engines: [second.engine], stalledAfterSeconds: 60)
        #expect(waitFor { second.engine.statistics.retries > 0 })
        let text = String(decoding: monitor.metricsText(), as: UTF8.self)
        #expect(sample(text, "walctl_ship_lag_records", ["dir": first.path]) == 0, "\(text)")
        #expect(sample(text, "walctl_ship_lag_seconds", ["dir": first.path]) == 0)
    }

    @Test func lagCountsRecordsWrittenWhileTheSinkIsUnreachable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let running = try Running(records: 100, in: directory)
        defer { running.stop() }
        let path = running.path
        let monitor = ShipperMonitor(engines: [running.engine], stalledAfterSeconds: 60)
        #expect(waitFor { running.engine.statistics.recordsShipped == 100 })
        // The sink goes down; 50 records are read and fail, then 30 more arrive that the engine cannot read (it
        // reads nothing while it cannot learn the positions): the lag still counts all 80.
        running.sink.setUnreachable(true)
        #expect(try walctl(["emit", "--dir", path, "--count", "50"]).status == 0)
        #expect(waitFor { running.engine.statistics.retries > 0 })
        #expect(try walctl(["emit", "--dir", path, "--count", "30"]).status == 0)
        var text = ""
        #expect(
            waitFor {
                text = String(decoding: monitor.metricsText(), as: UTF8.self)
                return sample(text, "walctl_ship_lag_records", ["dir": path]) == 80
            },
            "\(text)"
        )
        running.sink.setUnreachable(false)
        #expect(waitFor { running.engine.statistics.recordsShipped == 180 })
    }

    @Test func alertChannelCountersAreExportedPerLogAndChannel() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "10"]).status == 0)
        let counts = Mutex(AlertServiceStatistics())
        counts.withLock {
            $0.alertsFired = 5
            $0.delivered = ["log": 5, "slack": 3]
            $0.deliveryFailures = ["slack": 4]
            $0.deadLettered = ["slack": 2]
        }
        let monitor = ShipperMonitor(engines: [], alertStatistics: { [path: counts.withLock { $0 }] })
        var text = String(decoding: monitor.metricsText(), as: UTF8.self)
        let logID = try LogDirectory(path: path).readMeta().logID.description
        #expect(sample(text, "walctl_alerts_fired_total", ["dir": path, "log_id": logID]) == 5)
        #expect(sample(text, "walctl_alerts_delivered_total", ["channel": "slack"]) == 3)
        #expect(sample(text, "walctl_alerts_delivered_total", ["channel": "log"]) == 5)
        #expect(sample(text, "walctl_alerts_delivery_failures_total", ["channel": "slack"]) == 4)
        #expect(sample(text, "walctl_alerts_dead_letters_total", ["channel": "slack"]) == 2)
        // Counters follow the evaluator's counts from scrape to scrape.
        counts.withLock { $0.delivered["slack"] = 4 }
        text = String(decoding: monitor.metricsText(), as: UTF8.self)
        #expect(sample(text, "walctl_alerts_delivered_total", ["channel": "slack"]) == 4)
        if requireDebianTools || debianTool("promtool") != nil {
            let check = try promtoolCheck(text)
            #expect(check.status == 0, "\(check.output)\n\(text)")
        }
    }

    @Test func problemsFollowProgressNotLiveness() {
        let second: UInt64 = 1_000_000_000
        var statistics = ShipperStatistics()
        let start: UInt64 = 1000 * second
        // Idle, nothing waiting: healthy however long nothing was committed.
        #expect(
            ShipperMonitor.problem(statistics, now: start + 3600 * second, startedAt: start, stalledAfter: 60) == nil
        )
        // Records waiting: healthy until the limit passes since the later of the wait's start and the last commit.
        statistics.waitingSinceNanos = start + 10 * second
        statistics.lastProgressNanos = start + 40 * second
        statistics.recordsBehind = 7
        #expect(ShipperMonitor.problem(statistics, now: start + 99 * second, startedAt: start, stalledAfter: 60) == nil)
        let stalled = ShipperMonitor.problem(statistics, now: start + 101 * second, startedAt: start, stalledAfter: 60)
        #expect(stalled == "no commit for 61 s while 7 records wait")
        // Failing to reach the sink at all (so no position, nothing known to wait) also counts.
        statistics = ShipperStatistics()
        statistics.failingSinceNanos = start
        statistics.lastError = "connection refused"
        #expect(
            ShipperMonitor.problem(statistics, now: start + 61 * second, startedAt: start, stalledAfter: 60)
                == "every attempt failed for 61 s; last error: connection refused"
        )
        // A call into the sink that has not returned for the limit.
        statistics = ShipperStatistics()
        statistics.sinkCallSinceNanos = start
        #expect(ShipperMonitor.problem(statistics, now: start + 59 * second, startedAt: start, stalledAfter: 60) == nil)
        #expect(
            ShipperMonitor.problem(statistics, now: start + 61 * second, startedAt: start, stalledAfter: 60)
                == "a call to the sink has not returned for 61 s"
        )
        statistics.lastError = "connection refused"
        statistics.stoppedByError = true
        #expect(
            ShipperMonitor.problem(statistics, now: start, startedAt: start, stalledAfter: 60)
                == "stopped; last error: connection refused"
        )
    }
}
