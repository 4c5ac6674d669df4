import Foundation
import Logging
import Synchronization
import Testing
import WALShipping
import WALTestKit

@testable import WALAlerts

/// Issue 13, item 8: a channel that never answers costs each alert a bounded time, and later alerts are delivered
/// while an earlier one waits for its retry.
@Suite struct ChannelWorkerTests {
    /// `count` critical alerts of consecutive records.
    func alerts(_ count: Int) throws -> [Alert] {
        let file = try ThresholdFile.parse(
            yaml: "version: 1\nmetrics:\n  routing_decision_time_ms: {critical: 100, cooldown: 0s}\n",
            path: "t.yaml"
        )
        var evaluator = AlertEvaluator(rules: file.rules, logID: logID)
        return (1...count).flatMap {
            evaluator.evaluate(record("routing_decision_time_ms", 500, seq: UInt64($0), seconds: Double($0)))
        }
    }

    /// A worker for `channel` (3 attempts, a fixed retry delay), started and given `alerts`, journaled as fired.
    func startWorker(
        _ channel: any AlertChannel,
        _ journal: AlertJournal,
        retryMilliseconds: Int,
        delivering alerts: [Alert]
    ) throws -> ChannelWorker {
        let worker = ChannelWorker(
            channel: channel,
            journal: journal,
            retry: RetryPolicy(initialMilliseconds: retryMilliseconds, maximumMilliseconds: retryMilliseconds),
            maxAttempts: 3,
            logger: Logger(label: "test")
        )
        try journal.fired(alerts)
        worker.start()
        worker.enqueue(alerts)
        return worker
    }

    /// A TCP port whose connections the kernel accepts (the listen backlog) and nobody ever answers.
    final class SilentEndpoint {
        let socket: Int32
        let port: UInt16

        init() {
            let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    _ = bind(descriptor, $0, length)
                    _ = listen(descriptor, 64)
                    _ = getsockname(descriptor, $0, &length)
                }
            }
            socket = descriptor
            port = UInt16(bigEndian: address.sin_port)
        }

        deinit { close(socket) }
    }

    /// Fails every attempt for one alert id; delivers the others, recording the order.
    final class OneFailingChannel: AlertChannel, @unchecked Sendable {
        let name = "flaky"
        let failing: String
        let delivered = Mutex<[String]>([])

        init(failing: String) { self.failing = failing }

        func deliver(_ alert: Alert) throws {
            guard alert.id != failing else { throw AlertDeliveryError(message: "refused") }
            delivered.withLock { $0.append(alert.id) }
        }
    }

    @Test func aWebhookThatNeverAnswersCostsEachAlertAtMostItsBudget() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = AlertJournal(logDirectory: directory.path)
        let endpoint = SilentEndpoint()
        let target = try #require(WebhookURL("http://127.0.0.1:\(endpoint.port)/hook"))
        let worker = ChannelWorker(
            channel: SlackAlertChannel(target: target),
            journal: journal,
            retry: RetryPolicy(initialMilliseconds: 50, maximumMilliseconds: 200),
            maxAttempts: 8,
            logger: Logger(label: "test"),
            budgetSeconds: 1
        )
        let alerts = try alerts(8)
        try journal.fired(alerts)
        worker.start()
        defer { worker.stop() }
        let start = DispatchTime.now().uptimeNanoseconds
        worker.enqueue(alerts)
        #expect(waitFor(seconds: 60) { worker.isIdle })
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        // One second each, four at a time: about two seconds (the bound leaves room for a loaded machine). Before: 10 s per attempt, 8 attempts, one alert at a
        // time (more than ten minutes).
        #expect(elapsed >= 1 && elapsed < 10, "\(elapsed) s")
        let entries = AlertJournal.read(logDirectory: directory.path).entries
        #expect(entries.count == 8)
        for entry in entries {
            #expect(entry.deadLettered["slack"]?.contains("not delivered within 1 s") == true, "\(entry.deadLettered)")
        }
    }

    @Test func laterAlertsAreDeliveredWhileAnEarlierOneWaitsForItsRetry() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = AlertJournal(logDirectory: directory.path)
        let alerts = try alerts(4)
        let channel = OneFailingChannel(failing: alerts[0].id)
        let worker = try startWorker(channel, journal, retryMilliseconds: 100, delivering: alerts)
        defer { worker.stop() }
        #expect(waitFor(seconds: 30) { worker.isIdle })
        #expect(channel.delivered.withLock { $0 } == alerts[1...].map(\.id))
        // In the journal, every later alert was delivered before the first one was given up.
        let lines = try String(contentsOfFile: journal.path, encoding: .utf8).split(separator: "\n")
        let givenUp = try #require(lines.firstIndex { $0.contains("\"dead_lettered\"") && $0.contains(alerts[0].id) })
        for alert in alerts[1...] {
            let delivered = try #require(lines.firstIndex { $0.contains("\"delivered\"") && $0.contains(alert.id) })
            #expect(delivered < givenUp)
        }
        #expect(AlertJournal.read(logDirectory: directory.path).entries.first?.deadLettered["flaky"] == "refused")
    }

    /// Fails the first attempt of some alerts; records every delivery in order.
    final class FailingOnceChannel: AlertChannel, @unchecked Sendable {
        let name = "storm"
        let failOnce: Set<String>
        let attempted = Mutex<Set<String>>([])
        let delivered = Mutex<[String]>([])

        init(failOnce: Set<String>) { self.failOnce = failOnce }

        func deliver(_ alert: Alert) throws {
            let first = attempted.withLock { $0.insert(alert.id).inserted }
            if first && failOnce.contains(alert.id) { throw AlertDeliveryError(message: "busy") }
            delivered.withLock { $0.append(alert.id) }
        }
    }

    /// A storm of 50,000 alerts (a restart re-sending what an outage left undelivered): each is delivered once, in
    /// the order fired except for those that waited for a retry. Taking the next alert scanned the whole queue, so
    /// this took minutes of CPU (10,000 re-sent alerts: 28 s).
    @Test func aStormOfAlertsIsDeliveredOnceEachInOrderWithoutAQuadraticQueue() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = AlertJournal(logDirectory: directory.path)
        let alerts = try alerts(50_000)
        let failing = Set(alerts.enumerated().filter { $0.offset % 997 == 5 }.map(\.element.id))
        let channel = FailingOnceChannel(failOnce: failing)
        let worker = try startWorker(channel, journal, retryMilliseconds: 1, delivering: alerts)
        defer { worker.stop() }
        // Seconds now; the quadratic queue took over ten minutes of CPU.
        #expect(waitFor(seconds: 300) { worker.isIdle })
        let delivered = channel.delivered.withLock { $0 }
        #expect(delivered.count == alerts.count)
        #expect(Set(delivered).count == alerts.count, "each once")
        #expect(delivered.filter { !failing.contains($0) } == alerts.map(\.id).filter { !failing.contains($0) })
        #expect(AlertJournal.read(logDirectory: directory.path).entries.allSatisfy { $0.delivered["storm"] != nil })
    }
}
