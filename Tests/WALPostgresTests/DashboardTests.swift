import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

/// What Grafana's PostgreSQL datasource does to a panel's rawSql before running it: template variables, then
/// `$__interval`, then the macros the dashboards use. Multi-value variables are quoted and joined with commas;
/// "All" is the variable's custom all value (`'__all'`); single-value variables are substituted raw.
struct GrafanaExpander {
    var from: Date
    var to: Date
    var interval = "1m"
    var multi: [String: [String]?] = [:]  // nil: All
    var single: [String: String] = [:]

    static func rfc3339(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    func seconds(_ text: String) -> Int {
        let number = Int(text.dropLast()) ?? 0
        switch text.last {
        case "s": return number
        case "m": return number * 60
        case "h": return number * 3600
        case "d": return number * 86_400
        default: return number
        }
    }

    func expand(_ sql: String) -> String {
        var text = sql
        // Longer names first ($agent_type before $agent).
        for (name, values) in multi.sorted(by: { $0.key.count > $1.key.count }) {
            let value =
                values.map {
                    $0.map { "'" + $0.replacingOccurrences(of: "'", with: "''") + "'" }.joined(separator: ",")
                }
                ?? "'__all'"
            text = text.replacingOccurrences(of: "$" + name, with: value)
        }
        for (name, value) in single.sorted(by: { $0.key.count > $1.key.count }) {
            text = text.replacingOccurrences(of: "$" + name, with: value)
        }
        text = text.replacingOccurrences(of: "$__interval", with: interval)
        let fromText = "'" + Self.rfc3339(from) + "'"
        let toText = "'" + Self.rfc3339(to) + "'"
        text = text.replacingOccurrences(of: "$__timeFrom()", with: fromText)
        text = text.replacingOccurrences(of: "$__timeTo()", with: toText)
        text = replaceMacro("$__timeFilter", in: text) { arguments in
            "\(arguments[0]) BETWEEN \(fromText) AND \(toText)"
        }
        text = replaceMacro("$__timeGroupAlias", in: text) { arguments in
            "floor(extract(epoch from \(arguments[0]))/\(seconds(arguments[1])))*\(seconds(arguments[1])) AS \"time\""
        }
        return text
    }

    private func replaceMacro(_ name: String, in text: String, _ body: ([String]) -> String) -> String {
        var result = text
        while let start = result.range(of: name + "(") {
            guard let close = result[start.upperBound...].firstIndex(of: ")") else { break }
            let arguments = result[start.upperBound..<close].split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            result.replaceSubrange(start.lowerBound...close, with: body(arguments))
        }
        return result
    }
}

struct DashboardPanel {
    var dashboard: String
    var title: String
    var sql: String
    var columns: [String]
    var longRange: Bool

    static func all() throws -> [DashboardPanel] {
        var panels: [DashboardPanel] = []
        for name in ["realtime", "historical"] {
            let url = URL(fileURLWithPath: repositoryRoot + "/dashboards/grafana/dashboards/\(name).json")
            let board = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            for panel in board["panels"] as? [[String: Any]] ?? [] where panel["type"] as? String != "row" {
                let target = try #require((panel["targets"] as? [[String: Any]])?.first)
                let expected = try #require(panel["walctl"] as? [String: Any])
                panels.append(
                    DashboardPanel(
                        dashboard: name,
                        title: panel["title"] as? String ?? "",
                        sql: try #require(target["rawSql"] as? String),
                        columns: expected["columns"] as? [String] ?? [],
                        longRange: expected["long_range"] as? Bool ?? false
                    )
                )
            }
        }
        return panels
    }
}

extension PGConnection {
    /// The column names and row count of `sql`'s result (through a temporary view, rolled back).
    func columnNames(_ sql: String) throws -> (columns: [String], rows: Int) {
        try execute("BEGIN")
        defer { _ = try? execute("ROLLBACK") }
        try execute("CREATE TEMP VIEW walctl_panel AS " + sql)
        let names = try execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'walctl_panel'::regclass AND attnum > 0 ORDER BY attnum"
        )
        let rows = try execute("SELECT count(*) FROM walctl_panel").value(0, 0)
        return ((0..<names.rowCount).compactMap { names.value($0, 0) }, Int(rows ?? "0") ?? 0)
    }
}

extension PostgresTests {
    /// Issue 17: every panel of every dashboard runs against demo data and returns the columns it expects.
    @Suite struct Dashboards {
        @Test func everyPanelQueryRunsAndReturnsItsColumnsAndLongRangesReadRollups() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "20000", "--threads", "2"]).status == 0)
            let ship = try walctl(["ship", "--dir", path, "--postgres", database.conninfo, "--drain"])
            #expect(ship.status == 0, "\(ship.err)")
            // A week of older rows too, so the daily panels have days.
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let records = spreadRecords(count: 4000, hours: 24 * 7, firstSeq: 1, seed: 3)
            try sink.deliver(ShipBatch(logID: LogID.random(), records: records, throughSeq: 4000, skipped: []))
            _ = try database.connect().execute(
                """
                INSERT INTO walctl_alerts (alert_id, fired_at, severity, metric_name, value, threshold, agent_id,
                    payload)
                SELECT 'a' || i, now() - i * interval '1 minute', (ARRAY['critical', 'warning', 'info'])[i % 3 + 1],
                    'state_get_time_ms', 9, 5, 'agent-0-' || (i % 4), '{}'
                FROM generate_series(1, 30) AS i
                """
            )
            let maintain = try walctl(["pg", "maintain", "--postgres", database.conninfo])
            #expect(maintain.status == 0, "\(maintain.err)")
            // A selection the recent demo rows match: two agents, and an agent type one of them routed with.
            let agents = try database.query(
                "SELECT DISTINCT agent_id FROM agent_state_metrics WHERE timestamp > now() - interval '10 minutes' "
                    + "ORDER BY 1 LIMIT 2"
            ).compactMap { $0[0] }
            #expect(agents.count == 2)
            let agentType = try #require(
                try database.scalar(
                    "SELECT tags ->> 'agent_type' FROM agent_routing_metrics WHERE agent_id = '\(agents[0])' "
                        + "AND metric_name = 'routing_confidence_score' ORDER BY timestamp DESC LIMIT 1"
                )
            )
            let panels = try DashboardPanel.all()
            #expect(panels.count == 23)
            #expect(panels.filter(\.longRange).count == 9)
            let connection = try database.connect()
            let now = Date()
            let selections: [[String: [String]?]] = [
                ["agent": nil, "agent_type": nil],
                ["agent": agents, "agent_type": [agentType]],
            ]
            for selection in selections {
                for panel in panels {
                    let range: Double = panel.longRange ? 90 * 86_400 : 15 * 60
                    let expander = GrafanaExpander(
                        from: now.addingTimeInterval(-range),
                        to: now,
                        multi: selection,
                        single: ["latency": "state_get_time_ms"]
                    )
                    let sql = expander.expand(panel.sql)
                    #expect(!sql.contains("$"), "\(panel.title): unexpanded \(sql)")
                    do {
                        let (columns, rows) = try connection.columnNames(sql)
                        #expect(columns == panel.columns, "\(panel.dashboard) / \(panel.title)")
                        #expect(rows > 0, "\(panel.dashboard) / \(panel.title): no rows for \(selection)")
                    } catch {
                        Issue.record("\(panel.dashboard) / \(panel.title): \(error)\n\(sql)")
                    }
                    // Long ranges read the rollups, never the raw tables; short ones prune partitions.
                    let plan = try connection.execute("EXPLAIN " + sql)
                    let text = (0..<plan.rowCount).compactMap { plan.value($0, 0) }.joined(separator: "\n")
                    if panel.longRange {
                        #expect(text.contains("walctl_rollup_1h"), "\(panel.title): \(text)")
                        #expect(!text.contains("_metrics"), "\(panel.title) reads raw rows: \(text)")
                    } else if text.contains("_metrics") {
                        #expect(!text.contains("_default"), "\(panel.title): partitions not pruned: \(text)")
                        let partitions = Set(
                            text.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "_" })
                                .filter { $0.range(of: #"_metrics_p[0-9]{8}$"#, options: .regularExpression) != nil }
                        )
                        #expect(partitions.count <= 2, "\(panel.title): \(partitions)")
                    }
                }
            }
        }

        @Test func alertsFromTheJournalLandOnceAndTheReadOnlyRoleReadsButCannotWrite() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "5000"]).status == 0)
            let journal = directory.file("log/alerts/journal.jsonl")
            try FileManager.default.createDirectory(
                atPath: directory.file("log/alerts"),
                withIntermediateDirectories: true
            )
            var lines = ""
            for index in 0..<5 {
                lines +=
                    #"{"event":"fired","alert":{"alert_id":"id-\#(index)","severity":"critical","metric_name":"state_get_time_ms","value":12.5,"threshold":5,"direction":"above","window":"1m","tags":{},"agent_id":"agent-1","correlation_id":null,"timestamp":"2026-01-02T03:04:05.123456789Z","wal_seq":\#(index + 1),"rule":0}}"#
                    + "\n"
            }
            // The same alert journaled twice (a crash re-evaluated it) and a delivery line.
            lines +=
                #"{"event":"fired","alert":{"alert_id":"id-0","severity":"critical","metric_name":"state_get_time_ms","value":12.5,"threshold":5,"direction":"above","window":"1m","tags":{},"agent_id":"agent-1","correlation_id":null,"timestamp":"2026-01-02T03:04:05.123456789Z","wal_seq":1,"rule":0}}"#
            lines +=
                "\n" + #"{"event":"delivered","alert_id":"id-1","channel":"log","at":"2026-01-02T03:04:06Z"}"# + "\n"
            try lines.write(toFile: journal, atomically: true, encoding: .utf8)
            for round in 0..<2 {
                let result = try walctl(["pg", "maintain", "--postgres", database.conninfo, "--alerts-from", path])
                #expect(result.status == 0, "\(result.err)")
                #expect(result.out.contains(round == 0 ? "5 loaded, 0 already there" : "0 loaded, 5 already there"))
            }
            #expect(try database.count("SELECT count(*) FROM walctl_alerts") == 5)
            let logID = try LogDirectory(path: path).readMeta().logID.description
            #expect(try database.count("SELECT count(*) FROM walctl_alerts WHERE log_id = '\(logID)'") == 5)
            #expect(
                try database.scalar("SELECT fired_at = '2026-01-02T03:04:05.123457Z' FROM walctl_alerts LIMIT 1")
                    == "t"
            )

            // The read-only role: created, reads every dashboard table, writes nothing.
            let role = "grafana_ro_" + database.name.suffix(8)
            let initialize = try walctl(["pg", "init", "--postgres", database.conninfo, "--read-only-role", role])
            #expect(initialize.status == 0, "\(initialize.err)")
            #expect(initialize.out.contains("GRANT SELECT ON walctl_rollup_1h"))
            defer {
                _ = try? database.connect().execute("DROP OWNED BY \(role)")
                _ = try? database.connect().execute("DROP ROLE \(role)")
            }
            let reader = try PGConnection.connect(
                database.conninfo.replacingOccurrences(of: "user=postgres", with: "user=\(role)"),
                applicationName: "walctl-test-ro"
            )
            for table in PostgresSchema.tables + PostgresSchema.rollupTables + [PostgresSchema.alertsTable] {
                #expect(throws: Never.self) { try reader.execute("SELECT count(*) FROM \(table)") }
            }
            #expect(throws: PGError.self) { try reader.execute("DELETE FROM walctl_alerts") }
            #expect(throws: PGError.self) { try reader.execute("SELECT * FROM walctl_cursors") }
            #expect(
                throws: PGError.self,
                "read-only by default, even if granted more later"
            ) {
                try reader.execute("CREATE TEMP TABLE x (a int)")
            }
        }
    }
}
