import Foundation
import Logging
import WALMetrics
import WALShipping

/// A destination for alerts. `deliver` blocks until the alert is accepted, or throws; it is called from the
/// channel's own thread, one alert at a time.
public protocol AlertChannel: AnyObject, Sendable {
    /// The name in routes and in the journal (`log`, `kafka`, `slack`, `pagerduty`, `email`).
    var name: String { get }
    func deliver(_ alert: Alert) throws
}

/// Which channels each severity goes to. The design's defaults: critical to log, Kafka, Slack, PagerDuty and
/// email; warning to log, Kafka and Slack; info to log. Channels that are not configured are left out.
public struct AlertRoutes: Sendable, Equatable {
    public var channels: [Severity: [String]]

    public init(channels: [Severity: [String]] = AlertRoutes.designDefaults) { self.channels = channels }

    public static let designDefaults: [Severity: [String]] = [
        .critical: ["log", "kafka", "slack", "pagerduty", "email"],
        .warning: ["log", "kafka", "slack"],
        .info: ["log"],
    ]

    public func channels(for severity: Severity) -> [String] { channels[severity] ?? [] }
}

/// Alerts to the process log (swift-log), at the alert's severity.
public final class LogAlertChannel: AlertChannel, @unchecked Sendable {
    public let name = "log"
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func deliver(_ alert: Alert) throws {
        let level: Logger.Level
        switch alert.severity {
        case .critical: level = .critical
        case .warning: level = .warning
        case .info: level = .info
        }
        logger.log(
            level: level,
            "alert \(alert.severity.rawValue): \(alert.metric) = \(Envelope.numberText(alert.value)) is \(alert.direction.rawValue) \(Envelope.numberText(alert.threshold))",
            metadata: [
                "alert_id": "\(alert.id)", "agent_id": "\(alert.agentID ?? "-")", "wal_seq": "\(alert.seq)",
                "window": "\(alert.window)",
            ]
        )
    }
}

/// Delivers one channel's alerts on a thread of its own, so that a slow or failing channel never holds up the
/// others, the evaluator or the emitters. A failure is retried with backoff; after `maxAttempts` the alert is
/// recorded as dead-lettered in the journal, with the reason.
final class ChannelWorker: @unchecked Sendable {
    let channel: any AlertChannel
    private let journal: AlertJournal
    private let retry: RetryPolicy
    private let maxAttempts: Int
    private let logger: Logger
    private let condition = NSCondition()
    private var queue: [Alert] = []
    private var stopping = false
    private var busy = false
    private var thread: Thread?

    init(channel: any AlertChannel, journal: AlertJournal, retry: RetryPolicy, maxAttempts: Int, logger: Logger) {
        self.channel = channel
        self.journal = journal
        self.retry = retry
        self.maxAttempts = maxAttempts
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "alert-\(channel.name)"
        self.thread = thread
        thread.start()
    }

    func enqueue(_ alerts: [Alert]) {
        guard !alerts.isEmpty else { return }
        condition.lock()
        queue += alerts
        condition.signal()
        condition.unlock()
    }

    /// True when nothing is queued or being delivered.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return queue.isEmpty && !busy
    }

    /// Stops after the alert in flight; what is still queued stays pending in the journal for the next start.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            let alert = queue.removeFirst()
            busy = true
            condition.unlock()
            deliver(alert)
            condition.lock()
            busy = false
            condition.unlock()
        }
    }

    private func deliver(_ alert: Alert) {
        var attempt = 0
        while true {
            attempt += 1
            do {
                try channel.deliver(alert)
                try journal.delivered(alert.id, channel: channel.name)
                return
            } catch {
                if attempt >= maxAttempts || isStopping {
                    if attempt >= maxAttempts {
                        logger.error(
                            "alert not delivered; dead-lettered",
                            metadata: ["channel": "\(channel.name)", "alert_id": "\(alert.id)", "error": "\(error)"]
                        )
                        try? journal.deadLettered(alert, channel: channel.name, reason: "\(error)")
                    }
                    return
                }
                logger.warning(
                    "alert delivery failed; retrying",
                    metadata: ["channel": "\(channel.name)", "attempt": "\(attempt)", "error": "\(error)"]
                )
                let until = Date().addingTimeInterval(Double(retry.delayMilliseconds(attempt: attempt)) / 1000)
                condition.lock()
                while !stopping && Date() < until { _ = condition.wait(until: until) }
                condition.unlock()
            }
        }
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }
}
