import Foundation
import WALAlerts
import WALMetrics

// MARK: - Alert journals

extension LiveView {
    /// Re-reads a log's alert journal when its size or modification time changed; returns true when its alerts did.
    /// Keeps the alerts of the last `LiveSnapshot.alertMinutes` minutes (the frequency chart) and the newest
    /// `maxAlerts` critical and warning ones whatever their age (the table).
    func readJournal(_ source: Source) -> Bool {
        let path = source.directory + "/" + AlertJournal.folder + "/" + AlertJournal.fileName
        var info = stat()
        guard stat(path, &info) == 0 else {
            guard !source.alerts.isEmpty || source.journalStamp.size != -1 else { return false }
            source.alerts = []
            source.journalStamp = (-1, 0)
            return true
        }
        let stamp = (Int64(info.st_size), Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
        guard stamp != source.journalStamp else { return false }
        source.journalStamp = stamp
        let (entries, _) = AlertJournal.read(logDirectory: source.directory)
        source.alerts = Self.rows(
            entries,
            directory: source.directory,
            nowNanos: clock(),
            keep: configuration.maxAlerts
        )
        return true
    }

    /// The journal's alerts as table rows: those fired in the frequency chart's window, and the newest `keep`
    /// critical and warning ones.
    static func rows(
        _ entries: [AlertJournal.Entry],
        directory: String,
        nowNanos: Int64,
        keep: Int
    ) -> [LiveSnapshot.AlertRow] {
        let since = nowNanos - Int64(LiveSnapshot.alertMinutes) * 60 * 1_000_000_000
        var rows: [LiveSnapshot.AlertRow] = []
        var serious = 0
        // Newest last in the journal: walk it backwards.
        for entry in entries.reversed() {
            // A time that does not parse (or lies outside 1677 to 2262) is not shown as 1970: the row is left out
            // (`walctl alerts` lists the journal whole).
            guard let time = Envelope.parseTimestamp(entry.timestamp) else { continue }
            let isSerious = entry.severity == "critical" || entry.severity == "warning"
            guard time >= since || (isSerious && serious < keep) else { continue }
            if isSerious { serious += 1 }
            let alert = entry.alert
            rows.append(
                LiveSnapshot.AlertRow(
                    timestampNanos: time,
                    severity: entry.severity,
                    metric: alert["metric_name"] as? String ?? "",
                    value: (alert["value"] as? NSNumber)?.doubleValue,
                    threshold: (alert["threshold"] as? NSNumber)?.doubleValue,
                    agentID: alert["agent_id"] as? String,
                    alertID: entry.id,
                    directory: directory
                )
            )
        }
        return rows
    }
}
