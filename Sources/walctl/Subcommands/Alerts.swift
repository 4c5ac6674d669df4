import ArgumentParser
import Foundation
import WALAlerts
import WALMetrics

/// `walctl alerts`: threshold files.
struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Alerts: list those fired and where each was delivered; validate or print thresholds.",
        subcommands: [AlertsList.self, AlertsCheck.self, AlertsDefaults.self],
        defaultSubcommand: AlertsList.self
    )
}

struct AlertsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the alerts fired from a log and where each was delivered (walctl alerts DIR).",
        discussion: """
            Reads the log's alert journal (alerts/journal.jsonl, written by walctl ship --alerts): each alert with \
            its severity, metric, value, threshold, the record that fired it, and per channel whether it was \
            delivered, dead-lettered (with the reason) or is still pending. Read-only.

            Exit codes: 0 listed; 1 the directory is not a log; 2 usage.

            Examples:
              walctl alerts /var/lib/agent/metrics --since -1h --severity critical
              walctl alerts ./log --json | jq 'select(.delivered.log == null)'
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Option(parsing: .unconditional, help: ArgumentHelp("Alerts fired at or after this time.", valueName: "time"))
    var since: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Alerts fired at or before this time.", valueName: "time"))
    var until: String?

    @Option(help: "Only this severity and above: info, warning or critical.")
    var severity: String?

    @Flag(help: "One JSON object per alert: the payload, plus delivered and dead_lettered per channel.")
    var json = false

    func validate() throws {
        if let severity, Severity(rawValue: severity) == nil {
            throw ValidationError("--severity takes info, warning or critical")
        }
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, TimeArgument.nanos(value) == nil {
                throw ValidationError("\(name): \"\(value)\" is neither RFC 3339 nor a relative time like -15m")
            }
        }
    }

    func run() async throws {
        _ = try readMeta(dir, command: "alerts")
        let sinceNanos = since.flatMap { TimeArgument.nanos($0) } ?? .min
        let untilNanos = until.flatMap { TimeArgument.nanos($0) } ?? .max
        let minimum = severity.flatMap(Severity.init(rawValue:)) ?? .info
        let (entries, unreadable) = AlertJournal.read(logDirectory: dir)
        var rows = [["TIME (UTC)", "SEVERITY", "METRIC", "VALUE", "THRESHOLD", "SEQ", "ALERT ID", "CHANNELS"]]
        var output = OutputBuffer()
        for entry in entries {
            let alert = entry.alert
            let time = Envelope.parseTimestamp(entry.timestamp) ?? 0
            guard time >= sinceNanos, time <= untilNanos,
                let level = Severity(rawValue: entry.severity), level >= minimum
            else { continue }
            if json {
                var object = alert
                object["delivered"] = entry.delivered
                object["dead_lettered"] = entry.deadLettered
                if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                    output.line(String(decoding: data, as: UTF8.self))
                }
                continue
            }
            let channels =
                entry.delivered.keys.sorted().map { "\($0): delivered" }
                + entry.deadLettered.sorted { $0.key < $1.key }.map { "\($0.key): dead-lettered (\($0.value))" }
            rows.append([
                entry.timestamp, entry.severity, alert["metric_name"] as? String ?? "?",
                (alert["value"] as? NSNumber).map { Envelope.numberText($0.doubleValue) } ?? "?",
                (alert["direction"] as? String == "below" ? "< " : "> ")
                    + ((alert["threshold"] as? NSNumber).map { Envelope.numberText($0.doubleValue) } ?? "?"),
                "\(alert["wal_seq"] as? Int ?? 0)", entry.id,
                channels.isEmpty ? "pending" : channels.joined(separator: ", "),
            ])
        }
        if json {
            output.flush()
        } else {
            Output.line(table(rows, rightAligned: [3, 5]))
        }
        if unreadable > 0 { Output.error("walctl alerts: \(unreadable) unreadable journal lines skipped") }
    }
}

struct AlertsCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a thresholds file and list its rules.",
        discussion: """
            Reports the first problem with the file, line and column, and why: YAML syntax, an unknown key, a \
            metric name that is not in the catalog of its category (a typo would otherwise never fire), levels \
            out of order for their direction, a malformed window or duration.

            Exit codes: 0 valid; 1 invalid or unreadable; 2 usage.

            Examples:
              walctl alerts check /etc/walctl/thresholds.yaml
              walctl alerts defaults > thresholds.yaml && walctl alerts check thresholds.yaml
            """
    )

    @Argument(help: "The thresholds file (YAML).")
    var file: String

    func run() async throws {
        let thresholds: ThresholdFile
        do {
            thresholds = try ThresholdFile.load(path: file)
        } catch {
            Output.error("walctl alerts check: \(error)")
            throw ExitCode(1)
        }
        var rows = [["LINE", "METRIC", "DIRECTION", "INFO", "WARNING", "CRITICAL", "WINDOW", "TAGS", "COOLDOWN"]]
        for rule in thresholds.rules {
            let level = { (severity: Severity) in rule.levels[severity].map(Envelope.numberText) ?? "-" }
            rows.append([
                String(rule.line), rule.metric, rule.direction.rawValue, level(.info), level(.warning),
                level(.critical), rule.window.description,
                rule.tags.isEmpty
                    ? "-"
                    : rule.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                        .joined(separator: ","),
                "\(rule.cooldownNanos / 1_000_000_000)s",
            ])
        }
        Output.line(table(rows, rightAligned: [0, 3, 4, 5]))
        Output.line("\(file): valid, \(thresholds.rules.count) rules")
    }
}

struct AlertsDefaults: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "defaults",
        abstract: "Print the design's default thresholds as a thresholds file.",
        discussion: """
            Exit codes: 0 printed.

            Examples:
              walctl alerts defaults > thresholds.yaml
            """
    )

    func run() async throws {
        Output.raw(Array(DefaultThresholds.yaml.utf8))
    }
}
