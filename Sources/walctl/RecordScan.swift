import WALCore
import WALMetrics

/// Reads the records of a log that pass a filter, counting what it passes over, for the subcommands that read
/// records (`inspect --records`, `replay`, `tail`, `stats`). Lock-free and read-only.
struct RecordScan {
    /// What a scan met besides the records it delivered.
    struct Counts: Sendable, Encodable {
        var matched: UInt64 = 0
        var filteredOut: UInt64 = 0
        /// Sequence numbers covered by gap markers (records the writer dropped).
        var gapRecords: UInt64 = 0
        var damagedRegions: UInt64 = 0
        var undecodable: UInt64 = 0
        var lastSeq: UInt64 = 0

        enum CodingKeys: String, CodingKey {
            case matched
            case filteredOut = "filtered_out"
            case gapRecords = "gap_records"
            case damagedRegions = "damaged_regions"
            case undecodable
            case lastSeq = "last_seq"
        }
    }

    /// Where problems are reported (stderr by default): one line each, naming file and offset.
    var report: (String) -> Void = { Output.error($0) }

    /// Calls `body` with every matching record until the end of the log, the end of the filter's range, or until
    /// `body` returns false.
    func run(
        directory: String,
        filter: RecordFilter,
        counts: inout Counts,
        _ body: (MetricRecord) throws -> Bool
    ) throws {
        let reader = MetricsReader(path: directory, from: filter.fromSeq)
        try reader.read { entry in
            switch entry {
            case .metric(let record):
                if filter.isPast(record.seq) { return false }
                counts.lastSeq = record.seq
                guard filter.matches(record) else {
                    counts.filteredOut += 1
                    return true
                }
                counts.matched += 1
                return try body(record)
            case .gap(let gap):
                if filter.isPast(gap.fromSeq) { return false }
                counts.gapRecords += gap.toSeq - max(gap.fromSeq, filter.fromSeq) + 1
                counts.lastSeq = gap.toSeq
                report("gap: sequence numbers \(gap.fromSeq)...\(gap.toSeq) are not in the log: \(gap.reason)")
            case .damage(let damage):
                counts.damagedRegions += 1
                report("damage: \(damage); run walctl verify for the full list, walctl verify --repair to salvage")
            case .undecodable(let seq, let failure):
                if filter.isPast(seq) { return false }
                counts.undecodable += 1
                counts.lastSeq = seq
                report("record \(seq) does not decode: \(failure)")
            }
            return true
        }
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
