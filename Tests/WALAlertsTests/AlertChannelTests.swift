import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALAlerts

let bootstrap = ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"]

/// Channels end to end through `walctl ship --alerts`: Slack and PagerDuty payloads at a local HTTP server, the
/// Kafka topic read back with kcat, a failing webhook, and the emit-to-delivery latency.
@Suite(.enabled(if: bootstrap != nil, "needs KAFKA_BOOTSTRAP_SERVERS (tools/test.sh starts the mock cluster)"))
struct AlertChannelTests {
    func emit(_ path: String, _ name: String, _ value: Double, agent: String = "agent-7") throws {
        let result = try walctl([
            "emit", "--dir", path, "--metric", name, "--value", "\(value)", "--agent", agent,
            "--correlation-id", "job-\(Int(value))", "--tag", "agent_type=router",
        ])
        #expect(result.status == 0, "\(result.err)")
    }

    /// `walctl ship --alerts` with Kafka: alerts on `topic`, metrics on topics of their own.
    func shipWithAlerts(_ path: String, _ thresholds: String, servers: String, topic: String) -> [String] {
        [
            "ship", "--dir", path, "--alerts", thresholds, "--kafka", servers, "--alerts-topic", topic,
            "--kafka-topic-prefix", "walctl-test-\(UUID().uuidString.prefix(8).lowercased()).metrics",
        ]
    }

    func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func criticalAndWarningAlertsReachSlackPagerDutyAndKafkaFieldByField() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let server = try WebhookRecorder()
        defer { server.stop() }
        try emit(path, "routing_decision_time_ms", 150)  // critical
        try emit(path, "state_get_time_ms", 25)  // warning
        try emit(path, "workflow_step_count", 60)  // info: log only
        let thresholds = directory.file("thresholds.yaml")
        try DefaultThresholds.yaml.write(toFile: thresholds, atomically: true, encoding: .utf8)
        let topic = "walctl-test-alerts-\(UUID().uuidString.prefix(8).lowercased())"
        let shipped = try walctl(
            shipWithAlerts(path, thresholds, servers: servers, topic: topic) + [
                "--slack-webhook", server.url("/services/T000/B000/secret-token"), "--pagerduty-routing-key", "rk-123",
                "--pagerduty-url", server.url("/v2/enqueue"), "--drain",
            ]
        )
        #expect(shipped.status == 0, "\(shipped.err)")
        #expect(!shipped.err.contains("secret-token"), "a webhook URL is never logged in full")

        let alerts = AlertJournal.read(logDirectory: path).entries
        #expect(alerts.map(\.severity) == ["critical", "warning", "info"])
        let critical = try #require(alerts.first)
        let warning = try #require(alerts.dropFirst().first)
        #expect(critical.delivered.keys.sorted() == ["kafka", "log", "pagerduty", "slack"])
        #expect(warning.delivered.keys.sorted() == ["kafka", "log", "slack"])
        #expect(alerts.last?.delivered.keys.sorted() == ["log"])

        // Slack: the critical and the warning alert, a text line and one attachment field per alert field.
        let slack = server.received.filter { $0.path == "/services/T000/B000/secret-token" }
        #expect(slack.count == 2)
        // Webhooks take up to four alerts at once (issue 13, item 8): find the critical one by its text.
        let first = try object(
            try #require(slack.first { $0.body.contains("[CRITICAL]") } ?? slack.first).body
        )
        #expect((first["text"] as? String)?.hasPrefix("[CRITICAL] routing_decision_time_ms = 150 (> 100)") == true)
        let attachment = try #require((first["attachments"] as? [[String: Any]])?.first)
        #expect(attachment["color"] as? String == "danger")
        var fields: [String: String] = [:]
        for field in attachment["fields"] as? [[String: Any]] ?? [] {
            fields[field["title"] as? String ?? ""] = field["value"] as? String
        }
        #expect(
            fields == [
                "severity": "critical", "metric": "routing_decision_time_ms", "value": "150", "threshold": "100",
                "direction": "above", "window": "last", "agent_id": "agent-7", "correlation_id": "job-150",
                "tags": "agent_type=router", "timestamp": critical.timestamp, "alert_id": critical.id,
            ]
        )

        // PagerDuty: only the critical one, deduplicated on the alert id.
        let pagerduty = server.received.filter { $0.path == "/v2/enqueue" }
        #expect(pagerduty.count == 1)
        let event = try object(try #require(pagerduty.first).body)
        #expect(event["routing_key"] as? String == "rk-123")
        #expect(event["event_action"] as? String == "trigger")
        #expect(event["dedup_key"] as? String == critical.id)
        let payload = try #require(event["payload"] as? [String: Any])
        #expect(payload["severity"] as? String == "critical")
        #expect(payload["source"] as? String == "agent-7")
        #expect(payload["component"] as? String == "routing_decision_time_ms")
        #expect(payload["group"] as? String == "routing")
        #expect(payload["timestamp"] as? String == critical.timestamp)
        #expect((payload["custom_details"] as? [String: Any])?["alert_id"] as? String == critical.id)

        // Kafka: the critical and the warning alert, read back by kcat, with their ids as headers.
        let read = try kcat(["-C", "-b", servers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n"])
        let lines = read.out.split(separator: "\n")
        #expect(lines.count == 2)
        let ids = lines.compactMap { line -> String? in
            let parts = line.split(separator: "\t", maxSplits: 2)
            guard parts.count == 3, let value = try? object(String(parts[2])) else { return nil }
            #expect(parts[1].contains("alert_id=\(value["alert_id"] as? String ?? "?")"))
            #expect(String(parts[0]) == value["metric_name"] as? String)
            return value["alert_id"] as? String
        }
        #expect(Set(ids) == [critical.id, warning.id])
    }

    @Test func aFailingWebhookIsDeadLetteredWithoutDelayingKafka() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let server = try WebhookRecorder()
        defer { server.stop() }
        // A slow and failing endpoint: each attempt takes a second, then fails.
        server.respond(with: 500, delayMilliseconds: 1000)
        for value in [110.0, 120, 130] { try emit(path, "routing_decision_time_ms", value) }
        let thresholds = directory.file("thresholds.yaml")
        try "version: 1\nmetrics:\n  routing_decision_time_ms: {critical: 100, cooldown: 0s}\n".write(
            toFile: thresholds,
            atomically: true,
            encoding: .utf8
        )
        let topic = "walctl-test-alerts-\(UUID().uuidString.prefix(8).lowercased())"
        let shipped = try walctl(
            shipWithAlerts(path, thresholds, servers: servers, topic: topic) + [
                "--slack-webhook", server.url("/hook"), "--alert-route", "critical=kafka,slack", "--alert-max-attempts",
                "2", "--drain",
            ]
        )
        #expect(shipped.status == 0, "\(shipped.err)")
        let alerts = AlertJournal.read(logDirectory: path).entries
        #expect(alerts.count == 3)
        for alert in alerts {
            #expect(alert.delivered["kafka"] != nil)
            #expect(alert.delivered["slack"] == nil)
            #expect(alert.deadLettered["slack"]?.contains("HTTP status 500") == true)
            #expect(alert.delivered["log"] == nil, "the route replaced the design's")
        }
        #expect(server.received.count == 6, "two attempts per alert")
        // Kafka got every alert before the webhook's retries were over.
        let kafkaTimes = alerts.compactMap { Envelope.parseTimestamp($0.delivered["kafka"] ?? "") }
        let journal = try String(contentsOfFile: path + "/alerts/journal.jsonl", encoding: .utf8)
        let deadTimes = try journal.split(separator: "\n").filter { $0.contains("dead_lettered") }.compactMap {
            Envelope.parseTimestamp(try object(String($0))["at"] as? String ?? "")
        }
        #expect(deadTimes.count == 3)
        #expect(kafkaTimes.count == 3)
        #expect(
            kafkaTimes.max() ?? .max < deadTimes.min() ?? .min,
            "every alert was in Kafka before the webhook gave up on the first one"
        )
        let listed = try walctl(["alerts", path])
        #expect(listed.out.contains("slack: dead-lettered (http://127.0.0.1/…: HTTP status 500)"))
        // The dead-letter file keeps each alert whole, with the channel and the reason.
        let deadLetters = try String(contentsOfFile: path + "/dead-letters/alerts.jsonl", encoding: .utf8)
            .split(separator: "\n").map { try object(String($0)) }
        #expect(deadLetters.count == 3)
        #expect(deadLetters.allSatisfy { $0["channel"] as? String == "slack" })
        #expect(
            Set(deadLetters.compactMap { ($0["alert"] as? [String: Any])?["alert_id"] as? String })
                == Set(alerts.map(\.id))
        )
    }

    @Test func aCriticalAlertReachesItsChannelsWithinOneSecondOfTheEmit() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let server = try WebhookRecorder()
        defer { server.stop() }
        try emit(path, "routing_decision_time_ms", 1)
        let thresholds = directory.file("thresholds.yaml")
        try "version: 1\nmetrics:\n  routing_decision_time_ms: {critical: 100, cooldown: 0s}\n".write(
            toFile: thresholds,
            atomically: true,
            encoding: .utf8
        )
        let evaluator = try ChildProcess(
            walctlPath,
            ["ship", "--dir", path, "--alerts", thresholds, "--slack-webhook", server.url("/hook")]
        )
        defer { evaluator.kill(SIGKILL) }
        #expect(waitFor { (try? CursorStore(path: path).load("alerts")) != nil })
        var latencies: [Double] = []
        var endToEnd: [Double] = []
        for index in 0..<5 {
            // The emit returns when the record is durable; the alert must be at the webhook within a second.
            let before = server.received.count
            let started = DispatchTime.now().uptimeNanoseconds
            try emit(path, "routing_decision_time_ms", 150 + Double(index) * 70)
            let durable = DispatchTime.now().uptimeNanoseconds
            #expect(waitFor(seconds: 30) { server.received.count > before })
            guard let arrived = server.received.last?.receivedAt else { continue }
            // The webhook may have had it before the emit command exited (the record is durable before that).
            latencies.append(max(0, Double(arrived) - Double(durable)) / 1e9)
            endToEnd.append(Double(arrived - started) / 1e9)
        }
        // From the record durable to the webhook: the median within the issue's second (one late sample is a
        // starved CI machine, five are a defect); with the emit command's process start, a looser bound for each.
        #expect(latencies.count == 5)
        #expect(latencies.sorted()[latencies.count / 2] < 1.0, "latencies \(latencies)")
        #expect(endToEnd.allSatisfy { $0 < 5.0 }, "emit command start to webhook \(endToEnd)")
        print("alert latency, record durable to webhook: \(latencies.map { String(format: "%.3f", $0) }) s")
    }
}

/// The email channel against a local SMTP server (Debian's aiosmtpd) that requires STARTTLS.
@Suite struct EmailChannelTests {
    @Test func aCriticalAlertArrivesByEmailOverSTARTTLS() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let cert = directory.file("cert.pem")
        let key = directory.file("key.pem")
        #expect(
            Shell.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost",
                ]
            ) == 0
        )
        let port = try unusedLoopbackPort()
        let maildir = directory.file("maildir")
        let server = try ChildProcess(
            "/usr/bin/python3",
            [
                "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "--tlscert", cert, "--tlskey", key, "-c",
                "aiosmtpd.handlers.Mailbox", maildir,
            ]
        )
        defer { server.kill(SIGKILL) }
        #expect(waitFor { canConnect(port) }, "aiosmtpd listens: \(server.partialStandardError())")

        let path = directory.file("log")
        let emitted = try walctl([
            "emit", "--dir", path, "--metric", "quorum_consensus_score", "--value", "0.4", "--agent", "agent-q",
        ])
        #expect(emitted.status == 0)
        let thresholds = directory.file("thresholds.yaml")
        try DefaultThresholds.yaml.write(toFile: thresholds, atomically: true, encoding: .utf8)
        let shipped = try walctl([
            "ship", "--dir", path, "--alerts", thresholds, "--smtp", "127.0.0.1:\(port)", "--smtp-from",
            "walctl@example.org", "--smtp-to", "oncall@example.org", "--smtp-insecure", "--drain",
        ])
        #expect(shipped.status == 0, "\(shipped.err)")
        let alert = try #require(AlertJournal.read(logDirectory: path).entries.first)
        #expect(alert.delivered["email"] != nil, "\(alert.deadLettered)")

        let messages = (try? FileManager.default.contentsOfDirectory(atPath: maildir + "/new")) ?? []
        #expect(messages.count == 1)
        let message = try String(contentsOfFile: maildir + "/new/" + (messages.first ?? ""), encoding: .utf8)
        #expect(message.contains("Subject: [walctl CRITICAL] quorum_consensus_score = 0.4 (< 0.6)"))
        #expect(message.contains("Message-ID: <\(alert.id)@walctl>"))
        #expect(message.contains("agent_id: agent-q"))
        #expect(message.contains("To: <oncall@example.org>"))
        #expect(message.contains(#""alert_id":"\#(alert.id)""#))

        // Without STARTTLS the server refuses the mail (it requires TLS): dead-lettered with the reason.
        let second = directory.file("log2")
        #expect(
            try walctl(["emit", "--dir", second, "--metric", "quorum_consensus_score", "--value", "0.1"]).status == 0
        )
        let plain = try walctl([
            "ship", "--dir", second, "--alerts", thresholds, "--smtp", "127.0.0.1:\(port)", "--smtp-from",
            "walctl@example.org", "--smtp-to", "oncall@example.org", "--smtp-no-starttls", "--alert-max-attempts", "1",
            "--drain",
        ])
        #expect(plain.status == 0)
        #expect(AlertJournal.read(logDirectory: second).entries.first?.deadLettered["email"] != nil)
    }

    func canConnect(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        } == 0
    }
}
