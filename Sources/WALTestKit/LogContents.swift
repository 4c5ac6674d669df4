import WALCore
import WALMetrics

/// Everything a reader returns from a log, collected for assertions.
public struct LogContents: Sendable {
    public var records: [(seq: UInt64, bytes: [UInt8])] = []
    public var gaps: [GapMarker] = []
    public var damage: [ReadDamage] = []
    public var tornTailBytes: Int64 = 0

    public var seqs: [UInt64] { records.map(\.seq) }

    /// Reads the whole log from `seq`.
    public static func read(_ path: String, from seq: UInt64 = 1) throws -> LogContents {
        var contents = LogContents()
        let reader = LogReader(path: path, from: seq)
        try reader.read { entry in
            switch entry {
            case .record(let seq, let bytes): contents.records.append((seq, Array(bytes)))
            case .gap(let gap): contents.gaps.append(gap)
            case .damage(let damage): contents.damage.append(damage)
            }
            return true
        }
        contents.tornTailBytes = reader.tornTailBytes
        return contents
    }
}

/// A deterministic record for sequence-checking tests: `value` as 8 bytes, then `size - 8` pseudo-random bytes
/// seeded by it (about as compressible as real metric payloads: LZ4 gains little on them).
public func testRecord(_ value: UInt64, size: Int = 100) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: max(size, 8))
    withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
    var state = value &* 0x9E37_79B9_7F4A_7C15 | 1
    for index in 8..<bytes.count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        bytes[index] = UInt8(truncatingIfNeeded: state)
    }
    return bytes
}

/// Every metric record of the log at `path`, decoded, in order.
public func logRecords(_ path: String) throws -> [MetricRecord] {
    var records: [MetricRecord] = []
    try MetricsReader(path: path).read { entry in
        if case .metric(let record) = entry { records.append(record) }
        return true
    }
    return records
}
