import WALCore
import WALMetrics
import WALShipping

/// Builds the input of `COPY table (columns) FROM STDIN (FORMAT binary)`: PostgreSQL's binary COPY format
/// (a signature, then per tuple a field count and length-prefixed big-endian field values, then -1).
struct BinaryCopyBuilder {
    private(set) var bytes: [UInt8] = []
    private(set) var rows = 0

    /// Rows grouped by table, one COPY input each, tables in name order (a fixed lock order for concurrent
    /// writers): the one place that groups rows by table (shipping, idempotent insert, replay, the baseline).
    static func byTable(
        _ rows: some Sequence<(logID: LogID, record: MetricRecord)>
    ) -> [(table: String, copy: BinaryCopyBuilder)] {
        var tables: [String: BinaryCopyBuilder] = [:]
        for (logID, record) in rows {
            tables[record.category.table, default: BinaryCopyBuilder()].append(record, logID: logID)
        }
        return tables.sorted { $0.key < $1.key }.map { (table: $0.key, copy: $0.value) }
    }

    /// `byTable` of the records of several logs' batches.
    static func byTable(_ batches: [ShipBatch]) -> [(table: String, copy: BinaryCopyBuilder)] {
        byTable(batches.lazy.flatMap { batch in batch.records.lazy.map { (logID: batch.logID, record: $0) } })
    }

    /// `byTable` of the records of one log.
    static func byTable(
        _ records: some Collection<MetricRecord>,
        logID: LogID
    ) -> [(table: String, copy: BinaryCopyBuilder)] {
        byTable(records.lazy.map { (logID: logID, record: $0) })
    }

    /// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
    static let postgresEpochOffsetMicros: Int64 = 946_684_800_000_000

    init() {
        bytes.reserveCapacity(1 << 16)
        bytes.append(contentsOf: Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00])
        append32(0)  // flags
        append32(0)  // header extension length
    }

    mutating func append(_ record: MetricRecord, logID: LogID) {
        rows += 1
        append16(11)
        text(record.metricID)
        text(record.name)
        text(record.type.description)
        append32(8)
        append64(record.value.bitPattern)
        text(record.unit)
        // jsonb binary: version 1, then the JSON text.
        var json: [UInt8] = [1]
        json.append(0x7B)
        for (index, key) in record.tags.keys.sorted().enumerated() {
            if index > 0 { json.append(0x2C) }
            Envelope.appendJSONString(key, into: &json)
            json.append(0x3A)
            Envelope.appendJSONString(record.tags[key] ?? "", into: &json)
        }
        json.append(0x7D)
        append32(UInt32(json.count))
        bytes.append(contentsOf: json)
        optionalText(record.agentID)
        optionalText(record.correlationID)
        append32(8)
        append64(UInt64(bitPattern: Self.microseconds(record.timestampNanos) - Self.postgresEpochOffsetMicros))
        append32(16)
        bytes.append(contentsOf: logID.bytes)
        append32(8)
        append64(record.seq)
    }

    /// A `timestamptz` keeps microseconds: the emit time rounded to the nearest microsecond, ties to the even
    /// microsecond (`…01.999999500Z` is stored as `…02.000000`, as PostgreSQL's own text input stores it; a row and
    /// its Kafka event differ by at most 500 ns).
    static func microseconds(_ nanos: Int64) -> Int64 {
        let floor = nanos >= 0 ? nanos / 1000 : (nanos - 999) / 1000
        let remainder = nanos - floor * 1000
        if remainder > 500 || (remainder == 500 && floor % 2 != 0) { return floor + 1 }
        return floor
    }

    /// The finished input (with the trailer).
    func finished() -> [UInt8] {
        var result = bytes
        result.append(0xFF)
        result.append(0xFF)
        return result
    }

    private mutating func text(_ value: String) {
        let utf8 = Array(value.utf8)
        append32(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    private mutating func optionalText(_ value: String?) {
        if let value { text(value) } else { append32(UInt32.max) }  // -1: NULL
    }

    private mutating func append16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    private mutating func append32(_ value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    private mutating func append64(_ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
