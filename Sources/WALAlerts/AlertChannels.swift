import Foundation
import Logging
import WALMetrics
import WALShipping

/// A destination for alerts. `deliver` blocks until the alert is accepted, or throws; it is called from the
/// channel's own threads, at most `concurrentDeliveries` alerts at a time.
public protocol AlertChannel: AnyObject, Sendable {
    /// The name in routes and in the journal (`log`, `kafka`, `slack`, `pagerduty`, `email`).
    var name: String { get }
    func deliver(_ alert: Alert) throws
    /// Like `deliver`, giving up after about `timeoutSeconds` (what is left of the alert's time budget). The
    /// default ignores the bound and calls `deliver`.
    func deliver(_ alert: Alert, timeoutSeconds: Double) throws
    /// How many alerts may be in `deliver` at once (1 unless the channel is safe to call from several threads,
    /// as the webhooks are): an endpoint that never answers then holds up only that many alerts at a time.
    var concurrentDeliveries: Int { get }
}

extension AlertChannel {
    public func deliver(_ alert: Alert, timeoutSeconds: Double) throws { try deliver(alert) }
    public var concurrentDeliveries: Int { 1 }
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

/// Delivers one channel's alerts on threads of its own (`concurrentDeliveries` of them), so that a slow or failing
/// channel never holds up the others, the evaluator or the emitters.
///
/// Each alert has a time budget (`budgetSeconds`, from its first attempt) and at most `maxAttempts` attempts; an
/// attempt is given only what is left of the budget. A failed alert waits for its retry (backoff) in the queue,
/// not on the thread: later alerts are delivered meanwhile. When the attempts or the budget run out, the alert is
/// recorded as dead-lettered in the journal, with the reason. So an endpoint that never answers costs each alert
/// at most its budget, and `concurrentDeliveries` alerts wait it out side by side.
final class ChannelWorker: @unchecked Sendable {
    /// The default time budget per alert and channel.
    static let defaultBudgetSeconds = 60.0

    let channel: any AlertChannel
    private let journal: AlertJournal
    private let retry: RetryPolicy
    private let maxAttempts: Int
    private let budgetNanos: UInt64
    private let logger: Logger
    private let condition = NSCondition()

    /// An alert waiting for its first or next attempt.
    private struct Pending {
        var alert: Alert
        var dueAt: UInt64
        var attempts = 0
        var firstAttemptAt: UInt64?
    }

    /// Alerts not yet attempted, in the order fired (each is due when queued): `fresh[freshHead...]`.
    private var fresh: [Pending] = []
    private var freshHead = 0
    /// Alerts waiting for a retry, latest due first (the next one is the last). Both are kept in order so that
    /// taking the next alert costs O(1) (a scan for the earliest of them made a storm of 10,000 re-sent alerts take
    /// 28 s of CPU).
    private var retries: [Pending] = []
    private var inFlight = 0
    private var stopping = false
    private let onOutcome: @Sendable (DeliveryOutcome) -> Void

    /// What one attempt came to, for the channel counters.
    enum DeliveryOutcome {
        case delivered, failed, deadLettered
    }

    init(
        channel: any AlertChannel,
        journal: AlertJournal,
        retry: RetryPolicy,
        maxAttempts: Int,
        logger: Logger,
        budgetSeconds: Double = ChannelWorker.defaultBudgetSeconds,
        onOutcome: @escaping @Sendable (DeliveryOutcome) -> Void = { _ in }
    ) {
        self.onOutcome = onOutcome
        self.channel = channel
        self.journal = journal
        self.retry = retry
        self.maxAttempts = maxAttempts
        self.budgetNanos = UInt64(max(0.001, budgetSeconds) * 1e9)
        self.logger = logger
    }

    func start() {
        for index in 0..<max(1, channel.concurrentDeliveries) {
            let thread = Thread { [self] in loop() }
            thread.name = "alert-\(channel.name)-\(index)"
            thread.start()
        }
    }

    func enqueue(_ alerts: [Alert]) {
        guard !alerts.isEmpty else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        fresh += alerts.map { Pending(alert: $0, dueAt: now) }
        condition.broadcast()
        condition.unlock()
    }

    /// True when nothing is queued (retries included) or being delivered.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return freshHead == fresh.count && retries.isEmpty && inFlight == 0
    }

    /// Stops after the attempts in flight; what is still queued stays pending in the journal for the next start.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        defer { condition.unlock() }
        while !stopping {
            let now = DispatchTime.now().uptimeNanoseconds
            // The alert due first (new alerts are due when queued, retries after their backoff).
            let freshDue = freshHead < fresh.count ? fresh[freshHead].dueAt : nil
            let retryDue = retries.last?.dueAt
            guard let due = freshDue.map({ min($0, retryDue ?? $0) }) ?? retryDue else {
                condition.wait()
                continue
            }
            guard due <= now else {
                _ = condition.wait(until: Date().addingTimeInterval(Double(due - now) / 1e9))
                continue
            }
            var pending: Pending
            if let freshDue, freshDue == due {
                pending = fresh[freshHead]
                freshHead += 1
                if freshHead == fresh.count || freshHead >= 4096 && freshHead * 2 >= fresh.count {
                    fresh.removeFirst(freshHead)
                    freshHead = 0
                }
            } else {
                pending = retries.removeLast()
            }
            inFlight += 1
            condition.unlock()
            let again = attempt(&pending)
            condition.lock()
            inFlight -= 1
            if again && !stopping { scheduleRetry(pending) }
            condition.broadcast()
        }
    }

    /// Files a failed alert among the retries, which stay ordered latest due first, and first filed first among
    /// equals (called with the lock held).
    private func scheduleRetry(_ pending: Pending) {
        var low = 0
        var high = retries.count
        while low < high {
            let middle = (low + high) / 2
            if retries[middle].dueAt >= pending.dueAt { low = middle + 1 } else { high = middle }
        }
        retries.insert(pending, at: low)
    }

    /// One attempt; true when the alert is to be tried again (at `pending.dueAt`).
    private func attempt(_ pending: inout Pending) -> Bool {
        let start = DispatchTime.now().uptimeNanoseconds
        let first = pending.firstAttemptAt ?? start
        pending.firstAttemptAt = first
        pending.attempts += 1
        let remaining = budgetNanos - min(budgetNanos, start - first)
        do {
            try channel.deliver(pending.alert, timeoutSeconds: max(0.001, Double(remaining) / 1e9))
            try journal.delivered(pending.alert.id, channel: channel.name)
            onOutcome(.delivered)
            return false
        } catch {
            let now = DispatchTime.now().uptimeNanoseconds
            let spent = now - first
            let outOfAttempts = pending.attempts >= maxAttempts
            if outOfAttempts || spent >= budgetNanos {
                let reason =
                    outOfAttempts
                    ? "\(error)"
                    : "not delivered within \(Self.seconds(budgetNanos)) (\(pending.attempts) attempts): \(error)"
                logger.error(
                    "alert not delivered; dead-lettered",
                    metadata: ["channel": "\(channel.name)", "alert_id": "\(pending.alert.id)", "error": "\(reason)"]
                )
                try? journal.deadLettered(pending.alert, channel: channel.name, reason: reason)
                onOutcome(.deadLettered)
                return false
            }
            logger.warning(
                "alert delivery failed; retrying",
                metadata: ["channel": "\(channel.name)", "attempt": "\(pending.attempts)", "error": "\(error)"]
            )
            onOutcome(.failed)
            let delay = UInt64(retry.delayMilliseconds(attempt: pending.attempts)) * 1_000_000
            pending.dueAt = now + min(delay, budgetNanos - spent)
            return true
        }
    }

    private static func seconds(_ nanos: UInt64) -> String {
        let value = Double(nanos) / 1e9
        return value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}
