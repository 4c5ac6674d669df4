import ArgumentParser
import Foundation
import Histogram
import WALCore
import WALMetrics

/// `walctl stats`: per-metric distributions over a time window, the design's dashboard views in a terminal.
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per metric count, rate, min, mean, p50, p95, p99 and max over a window, grouped as dashboards.",
        discussion: """
            Reads the records of the window (--since/--until, default: the whole log; -5m with --watch) and the \
            other filters, and prints one row per group: by metric, or with --by metric,KEY by metric and the \
            value of tag KEY (agent and correlation_id work as keys too). Percentiles come from an HdrHistogram \
            with three significant digits (values are kept to 0.001). Rows are sectioned like the design's \
            dashboards: routing, state, coordination, workflow, quorum, custom. Non-finite values are counted \
            apart, never mixed into the percentiles.

            --watch redraws every second over a rolling window, until interrupted.

            Exit codes: 0 printed; 1 the log cannot be read; 2 usage.

            Examples:
              walctl stats /var/lib/agent/metrics --since -15m
              walctl stats ./log --by metric,agent_type --metric 'routing_*'
              walctl stats ./log --since -1m --watch
              walctl stats ./log --json | jq '.groups[] | select(.p99 > 100)'
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @OptionGroup(title: "Record filters")
    var filters: RecordFilterOptions

    @Option(help: ArgumentHelp("Group by metric, or by metric and a tag key (metric,agent_type).", valueName: "keys"))
    var by = "metric"

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Redraw every second over a rolling window.")
    var watch = false

    var groupKey: String? {
        let parts = by.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return parts.count > 1 ? parts[1] : nil
    }

    func validate() throws {
        let parts = by.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.first == "metric", parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else {
            throw ValidationError("--by takes metric or metric,KEY (a tag key, agent or correlation_id)")
        }
        if watch && json { throw ValidationError("--watch draws tables; leave out --json") }
    }

    func run() async throws {
        _ = try readMeta(dir, command: "stats")
        if !watch {
            let view = try compute(filter: try filters.filter())
            Output.line(json ? Output.json(view) : render(view))
            return
        }
        while !Task.isCancelled {
            var filter = try filters.filter()
            if filters.since == nil { filter.sinceNanos = Int64(Date().timeIntervalSince1970 * 1e9) - 300_000_000_000 }
            let view = try compute(filter: filter)
            Output.raw(
                Array(
                    ("\u{1B}[H\u{1B}[2J" + "walctl stats \(dir)  (every 1 s, ctrl-c to stop)\n\n" + render(view) + "\n")
                        .utf8
                )
            )
            try? await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: - Model

    struct Group: Encodable {
        var metric: String
        var category: String
        var tagKey: String?
        var tagValue: String?
        var unit: String
        var count: UInt64
        var nonFinite: UInt64
        var ratePerSecond: Double
        var min: Double?
        var mean: Double?
        var p50: Double?
        var p95: Double?
        var p99: Double?
        var max: Double?

        enum CodingKeys: String, CodingKey {
            case metric, category
            case tagKey = "tag_key"
            case tagValue = "tag_value"
            case unit, count
            case nonFinite = "non_finite"
            case ratePerSecond = "rate_per_second"
            case min, mean, p50, p95, p99, max
        }
    }

    struct View: Encodable {
        var since: String?
        var until: String?
        var records: UInt64
        var groups: [Group]
        var scan: RecordScan.Counts
    }

    func compute(filter: RecordFilter) throws -> View {
        var accumulators: [String: Accumulator] = [:]
        var counts = RecordScan.Counts()
        var first: Int64 = .max
        var last: Int64 = .min
        let key = groupKey
        do {
            try RecordScan(report: { _ in }).run(directory: dir, filter: filter, counts: &counts) { record in
                first = Swift.min(first, record.timestampNanos)
                last = Swift.max(last, record.timestampNanos)
                var tagValue: String?
                if let key {
                    switch key {
                    case "agent", "agent_id": tagValue = record.agentID ?? "-"
                    case "correlation_id": tagValue = record.correlationID ?? "-"
                    default: tagValue = record.tags[key] ?? "-"
                    }
                }
                let id = tagValue.map { record.name + "\u{0}" + $0 } ?? record.name
                if accumulators[id] == nil {
                    accumulators[id] = Accumulator(metric: record.name, unit: record.unit, tagValue: tagValue)
                }
                accumulators[id]?.add(record.value)
                return true
            }
        } catch {
            Output.error("walctl stats: \(error)")
            throw ExitCode(1)
        }
        let start = filter.sinceNanos != .min ? filter.sinceNanos : first
        let end =
            filter.untilNanos != .max ? Swift.min(filter.untilNanos, Int64(Date().timeIntervalSince1970 * 1e9)) : last
        let seconds = end > start ? Double(end - start) / 1e9 : 0
        let groups = accumulators.values.map { $0.group(tagKey: key, seconds: seconds) }.sorted {
            ($0.category, $0.metric, $0.tagValue ?? "") < ($1.category, $1.metric, $1.tagValue ?? "")
        }
        return View(
            since: start != .max ? rfc3339(start) : nil,
            until: end != .min ? rfc3339(end) : nil,
            records: counts.matched,
            groups: groups,
            scan: counts
        )
    }

    func render(_ view: View) -> String {
        var text = "window \(view.since ?? "-") ... \(view.until ?? "-"), \(view.records) records\n"
        let order = MetricCategory.allCases.map(\.rawValue)
        for category in order {
            let rows = view.groups.filter { $0.category == category }
            guard !rows.isEmpty else { continue }
            text += "\n" + category.uppercased() + "\n"
            var table: [[String]] = [
                ["METRIC"] + (groupKey.map { [$0.uppercased()] } ?? [])
                    + ["COUNT", "RATE/S", "MIN", "MEAN", "P50", "P95", "P99", "MAX", "UNIT"]
            ]
            for row in rows {
                let number = { (value: Double?) in
                    value.map { Envelope.numberText(($0 * 1000).rounded() / 1000) } ?? "-"
                }
                table.append(
                    [row.metric] + (groupKey != nil ? [row.tagValue ?? "-"] : [])
                        + [
                            String(row.count) + (row.nonFinite > 0 ? " (+\(row.nonFinite) non-finite)" : ""),
                            String(format: "%.1f", row.ratePerSecond),
                            number(row.min), number(row.mean), number(row.p50), number(row.p95), number(row.p99),
                            number(row.max), row.unit,
                        ]
                )
            }
            let offset = groupKey == nil ? 1 : 2
            text += walctl.table(table, rightAligned: Set(offset..<(offset + 8))) + "\n"
        }
        return text
    }
}

/// Count, sum, extremes and an HdrHistogram of one group. Values are recorded in thousandths; negatives go to a
/// second histogram of magnitudes, so percentiles stay right across zero.
struct Accumulator {
    let metric: String
    let unit: String
    let tagValue: String?
    private var positive = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
    private var negative = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
    private var count: UInt64 = 0
    private var nonFinite: UInt64 = 0
    private var sum = 0.0
    private var minimum = Double.infinity
    private var maximum = -Double.infinity
    static let scale = 1000.0
    static let ceiling = Double(UInt64(1) << 62)

    init(metric: String, unit: String, tagValue: String?) {
        self.metric = metric
        self.unit = unit
        self.tagValue = tagValue
        positive.autoResize = true
        negative.autoResize = true
    }

    mutating func add(_ value: Double) {
        guard value.isFinite else {
            nonFinite += 1
            return
        }
        count += 1
        sum += value
        minimum = Swift.min(minimum, value)
        maximum = Swift.max(maximum, value)
        let scaled = Swift.min((abs(value) * Self.scale).rounded(), Self.ceiling)
        if value < 0 {
            _ = negative.record(UInt64(scaled))
        } else {
            _ = positive.record(UInt64(scaled))
        }
    }

    /// The value at a percentile (0...100) across both histograms.
    func percentile(_ p: Double) -> Double {
        let negatives = Double(negative.totalCount)
        let total = negatives + Double(positive.totalCount)
        let rank = p / 100 * total
        if rank <= negatives && negatives > 0 {
            let within = Swift.max(0, Swift.min(100, 100 * (1 - rank / negatives)))
            return clamp(-Double(negative.lowestEquivalentForValue(negative.valueAtPercentile(within))) / Self.scale)
        }
        let positives = Double(positive.totalCount)
        let within = positives > 0 ? Swift.max(0, Swift.min(100, 100 * (rank - negatives) / positives)) : 0
        return clamp(Double(positive.lowestEquivalentForValue(positive.valueAtPercentile(within))) / Self.scale)
    }

    /// Histogram buckets are approximate: keep a percentile inside what was seen.
    private func clamp(_ value: Double) -> Double { Swift.max(minimum, Swift.min(maximum, value)) }

    func group(tagKey: String?, seconds: Double) -> Stats.Group {
        let any = count > 0
        return Stats.Group(
            metric: metric,
            category: MetricCategory(metricName: metric).rawValue,
            tagKey: tagKey,
            tagValue: tagValue,
            unit: unit,
            count: count,
            nonFinite: nonFinite,
            ratePerSecond: seconds > 0 ? Double(count + nonFinite) / seconds : 0,
            min: any ? minimum : nil,
            mean: any ? sum / Double(count) : nil,
            p50: any ? percentile(50) : nil,
            p95: any ? percentile(95) : nil,
            p99: any ? percentile(99) : nil,
            max: any ? maximum : nil
        )
    }
}
