import ArgumentParser
import Foundation
import WALCore
import WALMetrics

/// `walctl stats`: per-metric distributions over a time window, the design's dashboard views in a terminal.
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per metric count, rate, min, mean, p50, p95, p99 and max over a window, grouped as dashboards.",
        discussion: """
            Reads the records of the window (--since/--until, default: the whole log; -5m with --watch) and the \
            other filters, and prints one row per group: by metric, or with --by metric,KEY by metric and the \
            value of tag KEY (agent and correlation_id work as keys too); records without tag KEY form a row of \
            their own (tag_value null in --json, "(none)" in the table), apart from any value. Rows are sectioned \
            like the design's dashboards: routing, state, coordination, workflow, quorum, custom.

            Every statistic is exact (the values of the window are kept in memory, 8 bytes each). mean: the exact \
            sum of the values, correctly rounded, divided by the count; it never overflows (the mean of 1e308 and \
            1e308 is 1e308). p50, p95, p99: nearest rank, the same rule on both sides of zero: the value at rank \
            ceil(p/100 x count) of the values sorted ascending (p50 of -1000, -1000, -1, -1 is -1000; p50 of \
            1...100 is 50). Non-finite values are counted apart, never mixed into the statistics. rate: records \
            per second from --since (or the first record) to --until, or to now when --since is given without \
            --until (to the last record when neither is given). The table shows values rounded to 0.001; --json \
            gives them whole.

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

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(metric, forKey: .metric)
            try container.encode(category, forKey: .category)
            if let tagKey {
                try container.encode(tagKey, forKey: .tagKey)
                try container.encode(tagValue, forKey: .tagValue)  // null: the record has no such tag.
            }
            try container.encode(unit, forKey: .unit)
            try container.encode(count, forKey: .count)
            try container.encode(nonFinite, forKey: .nonFinite)
            try container.encode(ratePerSecond, forKey: .ratePerSecond)
            for (key, value) in [
                (CodingKeys.min, min), (.mean, mean), (.p50, p50), (.p95, p95), (.p99, p99), (.max, max),
            ] {
                try container.encodeIfPresent(value, forKey: key)
            }
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
            let scope = filter.endingAtTheLastSealedRecord(of: dir)
            try RecordScan(report: { _ in }).run(directory: dir, filter: scope, counts: &counts) { record in
                first = Swift.min(first, record.timestampNanos)
                last = Swift.max(last, record.timestampNanos)
                var tagValue: String?
                if let key {
                    switch key {
                    case "agent", "agent_id": tagValue = record.agentID
                    case "correlation_id": tagValue = record.correlationID
                    default: tagValue = record.tags[key]
                    }
                }
                // A missing tag is a group of its own: "=" + value and "!" cannot collide.
                let id = key == nil ? record.name : record.name + "\u{0}" + (tagValue.map { "=" + $0 } ?? "!")
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
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        let start = filter.sinceNanos != .min ? filter.sinceNanos : first
        // A window open at its end (--since without --until, and --watch) runs to now: the silence after the last
        // record is part of it.
        let end =
            filter.untilNanos != .max
            ? Swift.min(filter.untilNanos, now) : filter.sinceNanos != .min ? Swift.max(now, last) : last
        let seconds = end > start ? Double(end - start) / 1e9 : 0
        let groups = accumulators.values.map { $0.group(tagKey: key, seconds: seconds) }.sorted {
            // Rows without the tag come after the values.
            ($0.category, $0.metric, $0.tagValue == nil ? 1 : 0, $0.tagValue ?? "")
                < ($1.category, $1.metric, $1.tagValue == nil ? 1 : 0, $1.tagValue ?? "")
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
                // Rounded to 0.001 where that changes anything; larger values print whole (never "null").
                let number = { (value: Double?) in
                    value.map { Envelope.numberText(abs($0) < 1e15 ? ($0 * 1000).rounded() / 1000 : $0) } ?? "-"
                }
                table.append(
                    [row.metric] + (groupKey != nil ? [row.tagValue ?? "(none)"] : [])
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

/// The values of one group, kept whole (8 bytes each) so that every statistic is exact: the mean is the exact sum
/// correctly rounded, divided by the count (`ExactSum.mean`: never overflows), percentiles are nearest rank
/// (`ExactSum.nearestRank`). Non-finite values are counted apart.
struct Accumulator {
    let metric: String
    let unit: String
    let tagValue: String?
    private var values: [Double] = []
    private var nonFinite: UInt64 = 0

    init(metric: String, unit: String, tagValue: String?) {
        self.metric = metric
        self.unit = unit
        self.tagValue = tagValue
    }

    mutating func add(_ value: Double) {
        guard value.isFinite else {
            nonFinite += 1
            return
        }
        values.append(value)
    }

    func group(tagKey: String?, seconds: Double) -> Stats.Group {
        let sorted = values.sorted()
        let any = !sorted.isEmpty
        let count = UInt64(sorted.count)
        return Stats.Group(
            metric: metric,
            category: MetricCategory(metricName: metric).rawValue,
            tagKey: tagKey,
            tagValue: tagValue,
            unit: unit,
            count: count,
            nonFinite: nonFinite,
            ratePerSecond: seconds > 0 ? Double(count + nonFinite) / seconds : 0,
            min: sorted.first,
            mean: any ? ExactSum.mean(sorted) : nil,
            p50: any ? ExactSum.nearestRank(50, sorted: sorted) : nil,
            p95: any ? ExactSum.nearestRank(95, sorted: sorted) : nil,
            p99: any ? ExactSum.nearestRank(99, sorted: sorted) : nil,
            max: sorted.last
        )
    }
}
