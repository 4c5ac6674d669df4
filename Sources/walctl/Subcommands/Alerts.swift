import ArgumentParser
import WALAlerts
import WALMetrics

/// `walctl alerts`: threshold files.
struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Alert thresholds: validate a thresholds file, or print the design's defaults.",
        subcommands: [AlertsCheck.self, AlertsDefaults.self]
    )
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
