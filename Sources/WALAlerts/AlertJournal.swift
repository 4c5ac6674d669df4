import Foundation
import WALMetrics
import WALShipping

/// The durable record of alerts: `{log}/alerts/journal.jsonl`, one JSON object per line, appended and fsynced.
///
/// - `{"event":"fired","alert":{…payload…}}` is written before the evaluator's state (`alerts/state.json`) and
///   cursor pass the record that fired the alert, so no alert is lost to a crash; an alert is journaled once (a
///   restart that re-evaluates records already journaled finds their ids here).
/// - `{"event":"delivered","alert_id","channel","at"}` after a channel accepted it. Written but not fsynced: the line
///   survives a crash of the process, and one lost to a power failure only re-sends that alert with its id (a
///   delivery mark per fsync capped an alert storm's delivery at the disk's fsync rate, some 200 a second here);
///   `{"event":"dead_lettered","alert_id","channel","at","reason"}` after a channel gave up on it (the alert itself
///   then also goes to `{log}/dead-letters/alerts.jsonl` with the channel and the reason).
///
/// On start the evaluator re-sends every fired alert that some channel has neither delivered nor dead-lettered: at
/// least once per channel, repeats only for alerts that were in flight, with the same id. Thread-safe.
public final class AlertJournal: @unchecked Sendable {
    public static let folder = "alerts"
    public static let fileName = "journal.jsonl"

    public let path: String
    /// `{log}/dead-letters/alerts.jsonl`: each alert a channel gave up on, whole, with the channel and the reason.
    public let deadLetterPath: String
    private let file: DeadLetterFile
    private let deadLetters: DeadLetterFile
    private let lock = NSLock()

    public init(logDirectory: String) {
        path = logDirectory + "/" + Self.folder + "/" + Self.fileName
        deadLetterPath = logDirectory + "/dead-letters/alerts.jsonl"
        file = DeadLetterFile(path: path)
        deadLetters = DeadLetterFile(path: deadLetterPath)
    }

    public func fired(_ alerts: [Alert]) throws {
        guard !alerts.isEmpty else { return }
        try append(alerts.map { Array(#"{"event":"fired","alert":\#($0.json())}"#.utf8) })
    }

    public func delivered(_ alertID: String, channel: String) throws {
        try append(
            [
                Array(
                    #"{"event":"delivered","alert_id":"\#(alertID)","channel":\#(quoted(channel)),"at":"\#(now())"}"#
                        .utf8
                )
            ],
            sync: false
        )
    }

    public func deadLettered(_ alert: Alert, channel: String, reason: String) throws {
        let alertID = alert.id
        try lock.withLock {
            try deadLetters.append([
                Array(
                    #"{"channel":\#(quoted(channel)),"reason":\#(quoted(reason)),"at":"\#(now())","alert":\#(alert.json())}"#
                        .utf8
                )
            ])
        }
        try append([
            Array(
                #"{"event":"dead_lettered","alert_id":"\#(alertID)","channel":\#(quoted(channel)),"at":"\#(now())","reason":\#(quoted(reason))}"#
                    .utf8
            )
        ])
    }

    private func append(_ lines: [[UInt8]], sync: Bool = true) throws {
        try lock.withLock { try file.append(lines, sync: sync) }
    }

    // MARK: - Reading

    /// One alert as the journal knows it.
    public struct Entry: Sendable {
        /// The fired alert's payload, as written.
        public var alert: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] ?? [:]
        }
        public var payload: String
        public var id: String
        public var severity: String
        public var timestamp: String
        /// Channel name to the time it was delivered.
        public var delivered: [String: String] = [:]
        /// Channel name to the reason it gave up.
        public var deadLettered: [String: String] = [:]
        /// How many times it was journaled as fired (more than once after a crash re-evaluated it).
        public var firedCount = 1
    }

    /// Every alert of the journal at `path`, in the order first fired. A torn last line (a crash mid-append) is
    /// skipped; other unreadable lines are counted in `unreadable`.
    public static func read(logDirectory: String) -> (entries: [Entry], unreadable: Int) {
        let path = logDirectory + "/" + folder + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else { return ([], 0) }
        var entries: [Entry] = []
        var index: [String: Int] = [:]
        var unreadable = 0
        let lines = data.split(separator: 0x0A, omittingEmptySubsequences: true)
        for (number, line) in lines.enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                let event = object["event"] as? String
            else {
                if number != lines.count - 1 || data.last == 0x0A { unreadable += 1 }
                continue
            }
            switch event {
            case "fired":
                guard let alert = object["alert"] as? [String: Any], let id = alert["alert_id"] as? String,
                    let payload = try? JSONSerialization.data(withJSONObject: alert, options: [.sortedKeys])
                else {
                    unreadable += 1
                    continue
                }
                if let at = index[id] {
                    entries[at].firedCount += 1
                } else {
                    index[id] = entries.count
                    entries.append(
                        Entry(
                            payload: String(decoding: payload, as: UTF8.self),
                            id: id,
                            severity: alert["severity"] as? String ?? "",
                            timestamp: alert["timestamp"] as? String ?? ""
                        )
                    )
                }
            case "delivered", "dead_lettered":
                guard let id = object["alert_id"] as? String, let channel = object["channel"] as? String,
                    let at = index[id]
                else {
                    unreadable += 1
                    continue
                }
                if event == "delivered" {
                    entries[at].delivered[channel] = object["at"] as? String ?? ""
                } else {
                    entries[at].deadLettered[channel] = object["reason"] as? String ?? ""
                }
            default:
                unreadable += 1
            }
        }
        return (entries, unreadable)
    }
}

private func quoted(_ text: String) -> String {
    var bytes: [UInt8] = []
    Envelope.appendJSONString(text, into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

private func now() -> String {
    var bytes: [UInt8] = []
    Envelope.appendTimestamp(Int64(Date().timeIntervalSince1970 * 1e9), into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}
