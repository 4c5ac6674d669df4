import WALCore
import WALMetrics

extension RecordScan {
    /// A scan that reports what it passes over on stderr, one line each.
    static var reportingToStderr: RecordScan { RecordScan(report: { Output.error($0) }) }
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
