/// Fired alerts into `walctl_alerts`, once each: the alert journal (`{log}/alerts/journal.jsonl`) is read by the
/// caller (WALPostgres does not depend on WALAlerts) and its payloads are inserted with `ON CONFLICT (alert_id) DO
/// NOTHING`. Alert ids are deterministic (the evaluator's), so loading a journal again, a journal that journaled
/// an alert twice after a crash, or two journals holding the same alert adds each alert once.
public enum AlertLoading {
    public struct Report: Sendable, Equatable {
        /// Alerts offered.
        public var offered = 0
        /// Alerts inserted now (the rest were there already).
        public var inserted = 0
    }

    /// Inserts `payloads` (each a fired alert's JSON object, as journaled) in one transaction, tagged with
    /// `logID` (the log whose journal they come from; nil when unknown).
    public static func load(conninfo: String, logID: String?, payloads: [String]) throws(PGError) -> Report {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-pg-alerts")
        try connection.execute("SET client_min_messages = warning")
        try PostgresSink.checkSchema(connection)
        return try load(connection, logID: logID, payloads: payloads)
    }

    static func load(_ connection: PGConnection, logID: String?, payloads: [String]) throws(PGError) -> Report {
        var report = Report(offered: payloads.count)
        try connection.execute("BEGIN")
        do throws(PGError) {
            var start = 0
            while start < payloads.count {
                let end = min(start + 1000, payloads.count)
                let array = "[" + payloads[start..<end].joined(separator: ",") + "]"
                report.inserted +=
                    try connection.execute(
                        """
                        INSERT INTO walctl_alerts (alert_id, fired_at, severity, metric_name, value, threshold,
                            agent_id, log_id, payload)
                        SELECT p ->> 'alert_id', (p ->> 'timestamp')::timestamptz, p ->> 'severity',
                            p ->> 'metric_name', (p ->> 'value')::float8, (p ->> 'threshold')::float8,
                            p ->> 'agent_id', $2::uuid, p
                        FROM jsonb_array_elements($1::jsonb) AS p
                        ON CONFLICT (alert_id) DO NOTHING
                        """,
                        [array, logID]
                    ).affectedRows
                start = end
            }
            try connection.execute("COMMIT")
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
        return report
    }
}
