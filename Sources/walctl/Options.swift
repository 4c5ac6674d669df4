import ArgumentParser
import Foundation
import WALCore
import WALMetrics

/// The record filters shared by `inspect --records`, `replay`, `tail` and `stats`.
struct RecordFilterOptions: ParsableArguments {
    @Option(help: "The first sequence number.")
    var fromSeq: UInt64?

    @Option(help: "The last sequence number (inclusive).")
    var toSeq: UInt64?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Records emitted at or after this time: RFC 3339 (2026-11-29T14:00:00Z) or relative (-15m, -2h, -1d).",
            valueName: "time"
        )
    )
    var since: String?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Records emitted at or before this time (same forms as --since).", valueName: "time")
    )
    var until: String?

    @Option(help: ArgumentHelp("A metric name; a trailing * matches a prefix (repeatable).", valueName: "name"))
    var metric: [String] = []

    @Option(
        help: ArgumentHelp(
            "Records with this tag value (repeatable for other keys: every one must match; one value per key).",
            valueName: "key=value"
        )
    )
    var tag: [String] = []

    @Option(help: "Records of this agent id.")
    var agent: String?

    @Option(help: "Records with this correlation id.")
    var correlationID: String?

    /// Filters that take one value: ArgumentParser would keep the last of several silently.
    static let singleValued = ["--from-seq", "--to-seq", "--since", "--until", "--agent", "--correlation-id"]

    func validate() throws {
        for flag in Self.singleValued {
            let uses = CommandLine.arguments.dropFirst().filter { $0 == flag || $0.hasPrefix(flag + "=") }.count
            if uses > 1 {
                throw ValidationError("\(flag) is given \(uses) times; it takes one value (filters combine with AND)")
            }
        }
        _ = try filter()
    }

    /// The filter these options describe; `ValidationError` for a malformed time or tag.
    func filter(now: Date = Date()) throws -> RecordFilter {
        var filter = RecordFilter()
        if let fromSeq { filter.fromSeq = max(fromSeq, 1) }
        if let toSeq { filter.toSeq = toSeq }
        if filter.fromSeq > filter.toSeq { throw ValidationError("--from-seq is after --to-seq") }
        if let since {
            guard let nanos = TimeArgument.nanos(since, now: now) else {
                throw ValidationError(
                    "--since: \"\(since)\" is neither RFC 3339 nor a relative time like -15m, between 1677 and 2262"
                )
            }
            filter.sinceNanos = nanos
        }
        if let until {
            guard let nanos = TimeArgument.nanos(until, now: now) else {
                throw ValidationError(
                    "--until: \"\(until)\" is neither RFC 3339 nor a relative time like -15m, between 1677 and 2262"
                )
            }
            filter.untilNanos = nanos
        }
        if filter.sinceNanos > filter.untilNanos { throw ValidationError("--since is after --until") }
        filter.metrics = metric
        for assignment in tag {
            guard let pair = RecordFilter.tag(assignment) else {
                throw ValidationError("--tag takes key=value, not \"\(assignment)\"")
            }
            // A record has one value per tag: two values of one key would match nothing (AND) and keeping the last
            // silently hides the mistake, so it is a usage error.
            if let earlier = filter.tags[pair.key], earlier != pair.value {
                throw ValidationError(
                    "--tag \(pair.key) is given twice (\(earlier), \(pair.value)); tags filter with AND, one value per key"
                )
            }
            filter.tags[pair.key] = pair.value
        }
        filter.agentID = agent
        filter.correlationID = correlationID
        return filter
    }
}

/// Times on the command line: RFC 3339, or relative to now (`-15m`, `-2h`, `-1d`, `-30s`, `now`); nil for anything
/// else and for times a nanosecond count cannot hold (before 1677-09-21, after 2262-04-11).
enum TimeArgument {
    static func nanos(_ text: String, now: Date = Date()) -> Int64? {
        let nowNanos = Int64(now.timeIntervalSince1970 * 1e9)
        if text == "now" { return nowNanos }
        if let relative = relativeNanos(text) {
            let (sum, overflow) = nowNanos.addingReportingOverflow(relative)
            return overflow ? nil : sum
        }
        return Envelope.parseTimestamp(text)
    }

    /// `-15m` is fifteen minutes ago; `+1h` an hour ahead; the sign is required.
    static func relativeNanos(_ text: String) -> Int64? {
        guard let sign = text.first, sign == "-" || sign == "+" else { return nil }
        let body = text.dropFirst()
        let units: [(String, Int64)] = [
            ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
            ("d", 86_400_000_000_000),
        ]
        for (suffix, scale) in units where body.hasSuffix(suffix) {
            guard let amount = Int64(body.dropLast(suffix.count)), amount >= 0,
                amount <= Int64.max / scale
            else { return nil }
            return sign == "-" ? -amount * scale : amount * scale
        }
        return nil
    }
}

/// Where the log directory's metadata can be had, or an exit 1 naming the directory.
func readMeta(_ dir: String, command: String) throws -> LogMeta {
    do {
        return try LogDirectory(path: dir).readMeta()
    } catch {
        // A log readable by its owner only (0700): readMeta says so rather than "not a log".
        if error.cause == .permissionDenied {
            Output.error("walctl \(command): \(dir): \(error.message)")
            throw ExitCode(1)
        }
        Output.error("walctl \(command): \(error)")
        if error.code == .notFound {
            Output.error("hint: give the directory the agent writes its log into (it holds \(LogFormat.metaFileName))")
        }
        throw ExitCode(1)
    }
}

/// Renders a time (nanoseconds since the epoch) as RFC 3339 UTC.
func rfc3339(_ nanos: Int64) -> String {
    var bytes: [UInt8] = []
    Envelope.appendTimestamp(nanos, into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

/// A short human duration: 850ms, 12s, 4m10s, 3h05m, 2d04h.
func humanDuration(nanos: Int64) -> String {
    let ms = max(nanos, 0) / 1_000_000
    if ms < 1000 { return "\(ms)ms" }
    let s = ms / 1000
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
    if s < 86_400 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
    return "\(s / 86_400)d\(String(format: "%02d", (s % 86_400) / 3600))h"
}

// MARK: - Text for terminals

/// Text that came from the log or the file system (agent ids, tag values, metric names, units, file names), made
/// safe to print on an operator's terminal: every control character is escaped, so no escape sequence reaches the
/// terminal and no newline forges a line. ESC is `\e`; newline, carriage return and tab are `\n`, `\r`, `\t`;
/// other C0 characters and DEL are `\xNN`; C1 controls and the bidirectional overrides and isolates (U+202A to
/// U+202E, U+2066 to U+2069, which reorder what follows on screen) are `\u{NNNN}`; a backslash is `\\`, so an
/// escape cannot be forged either. Every human-readable output goes through it (`table`, `Report.recordRow`,
/// the summary); JSON output escapes on its own.
func terminalSafe(_ text: String) -> String {
    func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        return value < 0x20 || value == 0x5C || (0x7F...0x9F).contains(value) || (0x202A...0x202E).contains(value)
            || (0x2066...0x2069).contains(value)
    }
    guard text.unicodeScalars.contains(where: needsEscape) else { return text }
    var result = ""
    result.reserveCapacity(text.utf8.count + 8)
    for scalar in text.unicodeScalars {
        guard needsEscape(scalar) else {
            result.unicodeScalars.append(scalar)
            continue
        }
        switch scalar.value {
        case 0x1B: result += "\\e"
        case 0x0A: result += "\\n"
        case 0x0D: result += "\\r"
        case 0x09: result += "\\t"
        case 0x5C: result += "\\\\"
        case 0..<0x80: result += "\\x" + hexByte(UInt8(scalar.value))
        default: result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        }
    }
    return result
}

/// Left-aligned columns, padded to the widest cell. Cells go through `terminalSafe`.
func table(_ rows: [[String]], rightAligned: Set<Int> = []) -> String {
    let rows = rows.map { $0.map(terminalSafe) }
    guard let width = rows.map(\.count).max() else { return "" }
    var widths = [Int](repeating: 0, count: width)
    for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
    return rows.map { row in
        row.enumerated().map { index, cell in
            let pad = String(repeating: " ", count: widths[index] - cell.count)
            return rightAligned.contains(index) ? pad + cell : (index == row.count - 1 ? cell : cell + pad)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// Two lower-case hex digits.
func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
}

extension String {
    /// The string followed by spaces up to `width` characters; a longer string is kept whole (never truncated).
    func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
