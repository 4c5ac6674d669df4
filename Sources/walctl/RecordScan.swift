import WALCore
import WALMetrics

extension RecordScan {
    /// A scan that reports what it passes over on stderr, one line each.
    static var reportingToStderr: RecordScan { RecordScan(report: { Output.error($0) }) }
}

extension RecordFilter {
    /// The filter ending at the last record sealed in `directory` now (or at its own end, when earlier): a command
    /// that reads a log being written stops there instead of chasing the writer. Unchanged when the last segment
    /// is damaged or cannot be read (`LogInspector.sealedEnd`): the scan then reads past the damage and reports it.
    func endingAtTheLastSealedRecord(of directory: String) -> RecordFilter {
        var filter = self
        if let end = (try? LogInspector.sealedEnd(path: directory)) ?? nil {
            filter.toSeq = Swift.min(filter.toSeq, end)
        }
        return filter
    }
}

/// Batches stdout writes (decoding is much faster than one write per line).
struct OutputBuffer {
    var bytes: [UInt8] = []

    mutating func line(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        bytes.append(0x0A)
    }

    mutating func flushIfLarge() {
        if bytes.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        Output.raw(bytes)
        bytes.removeAll(keepingCapacity: true)
    }
}
