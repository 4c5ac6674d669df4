import Foundation
import WALMetrics

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A webhook URL that is never written out whole: only its scheme and host appear in logs and errors (a Slack
/// webhook URL is a secret).
public struct WebhookURL: Sendable, CustomStringConvertible {
    public let url: URL

    public init?(_ text: String) {
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme),
            url.host != nil
        else { return nil }
        self.url = url
    }

    public var description: String { "\(url.scheme ?? "?")://\(url.host ?? "?")/…" }
}

/// Why a channel could not deliver an alert (webhook, email).
public struct AlertDeliveryError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// POSTs JSON and waits for a 2xx answer, at most `timeoutSeconds`.
func postJSON(_ body: [UInt8], to target: WebhookURL, timeoutSeconds: Double = 10) throws {
    var request = URLRequest(url: target.url, timeoutInterval: timeoutSeconds)
    request.httpMethod = "POST"
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    request.httpBody = Data(body)
    final class Outcome: @unchecked Sendable {
        var status: Int?
        var error: (any Error)?
    }
    let outcome = Outcome()
    let done = DispatchSemaphore(value: 0)
    let task = URLSession.shared.dataTask(with: request) { _, response, error in
        outcome.status = (response as? HTTPURLResponse)?.statusCode
        outcome.error = error
        done.signal()
    }
    task.resume()
    // URLSession's own timeout is between packets; this one bounds the whole exchange.
    if done.wait(timeout: .now() + timeoutSeconds) == .timedOut {
        task.cancel()
        throw AlertDeliveryError(message: "\(target): no answer within \(timeoutSeconds) s")
    }
    if let error = outcome.error {
        throw AlertDeliveryError(message: "\(target): \((error as NSError).localizedDescription)")
    }
    guard let status = outcome.status, (200..<300).contains(status) else {
        throw AlertDeliveryError(message: "\(target): HTTP status \(outcome.status.map(String.init) ?? "none")")
    }
}

/// A channel that POSTs one JSON body per alert to a webhook: how it delivers, within its own timeout and what is
/// left of the alert's budget, and that its deliveries may overlap.
public protocol WebhookAlertChannel: AlertChannel {
    var target: WebhookURL { get }
    /// The longest wait for one answer.
    var timeoutSeconds: Double { get }
    /// The JSON body for `alert`.
    func body(_ alert: Alert) -> [UInt8]
}

extension WebhookAlertChannel {
    public func deliver(_ alert: Alert) throws {
        try postJSON(body(alert), to: target, timeoutSeconds: timeoutSeconds)
    }

    public func deliver(_ alert: Alert, timeoutSeconds budget: Double) throws {
        try postJSON(body(alert), to: target, timeoutSeconds: min(timeoutSeconds, budget))
    }

    /// Each POST stands alone (URLSession): four alerts may wait on a slow endpoint at once.
    public var concurrentDeliveries: Int { 4 }
}

/// Alerts to a Slack-compatible incoming webhook: a `text` line, and an attachment whose fields carry the alert
/// field by field (severity, metric, value, threshold, direction, window, agent, correlation id, tags, time, id).
public final class SlackAlertChannel: WebhookAlertChannel, @unchecked Sendable {
    public let name = "slack"
    public let target: WebhookURL
    /// The longest wait for one answer.
    public let timeoutSeconds: Double

    public init(target: WebhookURL, timeoutSeconds: Double = 10) {
        self.target = target
        self.timeoutSeconds = timeoutSeconds
    }

    public func body(_ alert: Alert) -> [UInt8] { Self.payload(alert) }

    static func payload(_ alert: Alert) -> [UInt8] {
        let color = alert.severity == .critical ? "danger" : alert.severity == .warning ? "warning" : "good"
        let comparison = alert.direction == .above ? ">" : "<"
        let text =
            "[\(alert.severity.rawValue.uppercased())] \(alert.metric) = \(Envelope.numberText(alert.value)) "
            + "(\(comparison) \(Envelope.numberText(alert.threshold))) on \(alert.agentID ?? "unknown agent")"
        var time: [UInt8] = []
        Envelope.appendTimestamp(alert.timestampNanos, into: &time)
        let fields: [(String, String)] = [
            ("severity", alert.severity.rawValue), ("metric", alert.metric),
            ("value", Envelope.numberText(alert.value)),
            ("threshold", Envelope.numberText(alert.threshold)), ("direction", alert.direction.rawValue),
            ("window", alert.window.description), ("agent_id", alert.agentID ?? "-"),
            ("correlation_id", alert.correlationID ?? "-"),
            ("tags", alert.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")),
            ("timestamp", String(decoding: time, as: UTF8.self)), ("alert_id", alert.id),
        ]
        var out: [UInt8] = Array(#"{"text":"#.utf8)
        Envelope.appendJSONString(text, into: &out)
        out += Array(#","attachments":[{"color":"\#(color)","fields":["#.utf8)
        for (index, field) in fields.enumerated() {
            if index > 0 { out.append(0x2C) }
            out += Array(#"{"title":"#.utf8)
            Envelope.appendJSONString(field.0, into: &out)
            out += Array(#","value":"#.utf8)
            Envelope.appendJSONString(field.1, into: &out)
            out += Array(#","short":true}"#.utf8)
        }
        out += Array("]}]}".utf8)
        return out
    }
}

/// Alerts to PagerDuty's Events API v2 (`/v2/enqueue`): a `trigger` event whose `dedup_key` is the alert id, so a
/// re-sent alert does not page twice.
public final class PagerDutyAlertChannel: WebhookAlertChannel, @unchecked Sendable {
    public let name = "pagerduty"
    public let target: WebhookURL
    private let routingKey: String

    public static let defaultURL = "https://events.pagerduty.com/v2/enqueue"

    /// The longest wait for one answer.
    public let timeoutSeconds: Double

    public init(routingKey: String, target: WebhookURL, timeoutSeconds: Double = 10) {
        self.routingKey = routingKey
        self.target = target
        self.timeoutSeconds = timeoutSeconds
    }

    public func body(_ alert: Alert) -> [UInt8] { payload(alert) }

    func payload(_ alert: Alert) -> [UInt8] {
        var time: [UInt8] = []
        Envelope.appendTimestamp(alert.timestampNanos, into: &time)
        let summary =
            "\(alert.metric) = \(Envelope.numberText(alert.value)) \(alert.direction == .above ? ">" : "<") "
            + "\(Envelope.numberText(alert.threshold)) (\(alert.severity.rawValue))"
        var out: [UInt8] = Array(#"{"routing_key":"#.utf8)
        Envelope.appendJSONString(routingKey, into: &out)
        out += Array(#","event_action":"trigger","dedup_key":"#.utf8)
        Envelope.appendJSONString(alert.id, into: &out)
        out += Array(#","payload":{"summary":"#.utf8)
        Envelope.appendJSONString(summary, into: &out)
        out += Array(#","source":"#.utf8)
        Envelope.appendJSONString(alert.agentID ?? "walctl", into: &out)
        out += Array(#","severity":"\#(alert.severity.rawValue)","timestamp":"#.utf8)
        Envelope.appendJSONString(String(decoding: time, as: UTF8.self), into: &out)
        out += Array(#","component":"#.utf8)
        Envelope.appendJSONString(alert.metric, into: &out)
        out += Array(#","group":"#.utf8)
        Envelope.appendJSONString(MetricCategory(metricName: alert.metric).rawValue, into: &out)
        out += Array(#","class":"threshold","custom_details":"#.utf8)
        out += Array(alert.json().utf8)
        out += Array("}}".utf8)
        return out
    }
}
