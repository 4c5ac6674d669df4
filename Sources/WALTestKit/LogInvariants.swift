import WALCore

/// The sequence-number invariants of `wal-format.md` section 14, checked from the outside: what every test of
/// crashes, drops, damage and injected faults asserts after the fact.
public enum LogInvariants {
    /// Describes every violation in the log at `path` (empty when it holds):
    /// - `walctl verify`'s checks find nothing (frames valid, seqs strictly increasing with no overlap and no hole,
    ///   no cursor ahead of the log, nothing assigned above the log's end);
    /// - read in order, records and gap markers cover every seq from the first to the last exactly once, so
    ///   `kept + gaps = last - first + 1`.
    public static func violations(_ path: String) throws -> [String] {
        var problems: [String] = []
        let summary = try LogInspector.examine(path: path, decodeRecords: true)
        problems += summary.damage.map { "verify: \($0.reason) (\($0.file) at \($0.offset))" }
        let contents = try LogContents.read(path)
        // Seqs before the first segment were deleted by retention: not a violation.
        problems += contents.damage.filter { !$0.reason.contains("deleted by retention") }.map {
            "reader: damage \($0)"
        }
        var ranges: [(UInt64, UInt64)] = []
        var records = contents.records.makeIterator()
        var gaps = contents.gaps.makeIterator()
        var nextRecord = records.next()
        var nextGap = gaps.next()
        // Merge records and gaps by seq (the reader delivers each kind in log order).
        while nextRecord != nil || nextGap != nil {
            if let record = nextRecord, nextGap.map({ record.seq < $0.fromSeq }) ?? true {
                ranges.append((record.seq, record.seq))
                nextRecord = records.next()
            } else if let gap = nextGap {
                ranges.append((gap.fromSeq, gap.toSeq))
                nextGap = gaps.next()
            }
        }
        var covered: UInt64 = 0
        for (index, range) in ranges.enumerated() {
            covered += range.1 - range.0 + 1
            if index > 0 && range.0 != ranges[index - 1].1 + 1 {
                problems.append("seq \(range.0) follows \(ranges[index - 1].1): not contiguous")
            }
        }
        if let first = ranges.first?.0, let last = ranges.last?.1, covered != last - first + 1 {
            problems.append("kept + gaps = \(covered), but last - first + 1 = \(last - first + 1)")
        }
        return problems
    }
}
