import WALCore

/// Reads the records of a log that pass a filter, counting what it passes over, for the subcommands that read
/// records (`inspect --records`, `replay`, `tail`, `stats`) and for `Replayer`. Lock-free and read-only.
public struct RecordScan {
    /// What a scan met besides the records it delivered.
    public struct Counts: Sendable, Encodable, Equatable {
        public var matched: UInt64 = 0
        public var filteredOut: UInt64 = 0
        /// Sequence numbers covered by gap markers (records the writer dropped).
        public var gapRecords: UInt64 = 0
        public var damagedRegions: UInt64 = 0
        public var undecodable: UInt64 = 0
        public var lastSeq: UInt64 = 0

        enum CodingKeys: String, CodingKey {
            case matched
            case filteredOut = "filtered_out"
            case gapRecords = "gap_records"
            case damagedRegions = "damaged_regions"
            case undecodable
            case lastSeq = "last_seq"
        }

        public init() {}
    }

    /// Where problems are reported: one line each, naming file and offset (nowhere by default).
    public var report: (String) -> Void

    public init(report: @escaping (String) -> Void = { _ in }) { self.report = report }

    /// Calls `body` with every matching record until the end of the log, the end of the filter's range, or until
    /// `body` returns false.
    public func run(
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
                return passOver(gap: gap, filter: filter, counts: &counts)
            case .damage(let damage):
                passOver(damage: damage, counts: &counts)
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

extension RecordScan {
    /// Counts and reports a gap; false when it lies past the filter's range (reading stops).
    func passOver(gap: GapMarker, filter: RecordFilter, counts: inout Counts) -> Bool {
        if filter.isPast(gap.fromSeq) { return false }
        counts.gapRecords += gap.toSeq - max(gap.fromSeq, filter.fromSeq) + 1
        counts.lastSeq = max(counts.lastSeq, gap.toSeq)
        report("gap: sequence numbers \(gap.fromSeq)...\(gap.toSeq) are not in the log: \(gap.reason)")
        return true
    }

    func passOver(damage: ReadDamage, counts: inout Counts) {
        counts.damagedRegions += 1
        report("damage: \(damage); run walctl verify for the full list, walctl verify --repair to salvage")
    }

    /// Appends the envelope JSON line of every matching record to `output` (the fast path of `replay --to stdout`
    /// and `inspect --records --json`: no `MetricRecord` is built). `body` is called with the sequence number of
    /// each record appended and may flush `output`; it returns false to stop.
    public func envelopes(
        directory: String,
        filter: RecordFilter,
        logID: LogID,
        counts: inout Counts,
        output: inout [UInt8],
        _ body: (UInt64, inout [UInt8]) throws -> Bool
    ) throws {
        let reader = EnvelopeReader(directory: directory, logID: logID, filter: filter)
        try reader.read(
            passedOver: { entry in
                switch entry {
                case .filteredOut(let seq):
                    counts.filteredOut += 1
                    counts.lastSeq = max(counts.lastSeq, seq)
                case .undecodable(let seq, let failure):
                    counts.undecodable += 1
                    counts.lastSeq = max(counts.lastSeq, seq)
                    report("record \(seq) does not decode: \(failure)")
                case .gap(let gap):
                    return passOver(gap: gap, filter: filter, counts: &counts)
                case .damage(let damage):
                    passOver(damage: damage, counts: &counts)
                }
                return true
            },
            line: { seq, line in
                counts.matched += 1
                counts.lastSeq = max(counts.lastSeq, seq)
                output.append(contentsOf: line)
                return try body(seq, &output)
            }
        )
    }
}
