import WALCore
import WALMetrics
import WALShipping

/// The input of `COPY table (columns) FROM STDIN (FORMAT binary)` for the rows of some batches, one COPY per table,
/// streamed: PostgreSQL's binary COPY format (a signature, then per tuple a field count and length-prefixed
/// big-endian field values, then -1), encoded a chunk at a time into one reused buffer and sent as soon as a chunk
/// is full, so PostgreSQL parses, inserts and indexes one chunk while the next is encoded (the shipper and the
/// server overlap instead of taking turns), and a batch costs no buffer of its own size.
///
/// Streaming changes nothing that is committed: the same rows, in the same order, through the same COPY statements
/// of the caller's transaction; a COPY that fails anywhere commits none of its rows.
///
/// Encoding allocates nothing per row: texts are copied from the strings' UTF-8 storage, the tags' JSON is written
/// in place and its length filled in afterwards.
struct BinaryCopy {
    /// The batches whose rows are copied.
    let batches: [ShipBatch]
    /// The category of every record, per batch (computed once; a table's COPY walks them).
    private let categories: [[MetricCategory]]
    /// The tables with rows, in name order (a fixed lock order for concurrent writers), with their row counts.
    let tables: [(table: String, category: MetricCategory, rows: Int)]

    /// Bytes encoded before a chunk is sent: large enough that a send costs little, small enough that PostgreSQL
    /// starts on the first rows early and the buffer stays in cache.
    static let chunkBytes = 128 * 1024

    /// Groups the rows of `batches` by table: the one place that does (shipping, idempotent insert, replay, the
    /// baseline).
    init(_ batches: [ShipBatch]) {
        self.batches = batches
        var counts: [MetricCategory: Int] = [:]
        categories = batches.map { batch in
            batch.records.map { record in
                let category = record.category
                counts[category, default: 0] += 1
                return category
            }
        }
        tables = counts.map { (table: $0.key.table, category: $0.key, rows: $0.value) }.sorted { $0.table < $1.table }
    }

    /// The records of one log.
    init(_ records: some Collection<MetricRecord>, logID: LogID) {
        self.init([ShipBatch(logID: logID, records: Array(records), throughSeq: 0, skipped: [])])
    }

    /// Copies the rows of `category` into `target` (the category's table, or a staging table like it) through
    /// `connection`, in chunks encoded into `buffer`.
    func copy(
        _ category: MetricCategory,
        into target: String,
        connection: PGConnection,
        buffer: inout [UInt8]
    ) throws(PGError) {
        var batchIndex = 0
        var recordIndex = 0
        var started = false
        try connection.copyIn(
            "COPY \(target) (\(PostgresSchema.copyColumns)) FROM STDIN (FORMAT binary)",
            buffer: &buffer
        ) { out in
            if !started {
                out.append(contentsOf: Self.header)
                started = true
            }
            while batchIndex < batches.count {
                let batch = batches[batchIndex]
                let kinds = categories[batchIndex]
                while recordIndex < kinds.count {
                    let index = recordIndex
                    recordIndex += 1
                    guard kinds[index] == category else { continue }
                    Self.append(batch.records[index], logID: batch.logID, into: &out)
                    if out.count >= Self.chunkBytes { return true }
                }
                batchIndex += 1
                recordIndex = 0
            }
            out.append(0xFF)  // the trailer: a field count of -1
            out.append(0xFF)
            return false
        }
    }

    // MARK: - The format

    /// The signature, flags (0) and header extension length (0).
    static let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]

    /// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
    static let postgresEpochOffsetMicros: Int64 = 946_684_800_000_000

    /// One tuple, in `PostgresSchema.copyColumns` order.
    static func append(_ record: MetricRecord, logID: LogID, into bytes: inout [UInt8]) {
        append16(11, into: &bytes)
        text(record.metricID, into: &bytes)
        text(record.name, into: &bytes)
        text(record.type.description, into: &bytes)
        append32(8, into: &bytes)
        append64(record.value.bitPattern, into: &bytes)
        text(record.unit, into: &bytes)
        // jsonb binary: version 1, then the JSON text; its length is known once written. Key order is free:
        // jsonb stores an object's keys in its own order.
        let lengthAt = bytes.count
        append32(0, into: &bytes)
        bytes.append(1)
        bytes.append(0x7B)
        var first = true
        for (key, value) in record.tags {
            if !first { bytes.append(0x2C) }
            first = false
            Envelope.appendJSONString(key, into: &bytes)
            bytes.append(0x3A)
            Envelope.appendJSONString(value, into: &bytes)
        }
        bytes.append(0x7D)
        let length = UInt32(bytes.count - lengthAt - 4).bigEndian
        withUnsafeBytes(of: length) { raw in
            for offset in 0..<4 { bytes[lengthAt + offset] = raw[offset] }
        }
        optionalText(record.agentID, into: &bytes)
        optionalText(record.correlationID, into: &bytes)
        append32(8, into: &bytes)
        append64(
            UInt64(bitPattern: microseconds(record.timestampNanos) - postgresEpochOffsetMicros),
            into: &bytes
        )
        append32(16, into: &bytes)
        bytes.append(contentsOf: logID.bytes)
        append32(8, into: &bytes)
        append64(record.seq, into: &bytes)
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

    private static func text(_ value: String, into bytes: inout [UInt8]) {
        var value = value
        value.withUTF8 { utf8 in
            append32(UInt32(utf8.count), into: &bytes)
            bytes.append(contentsOf: utf8)
        }
    }

    private static func optionalText(_ value: String?, into bytes: inout [UInt8]) {
        if let value { text(value, into: &bytes) } else { append32(UInt32.max, into: &bytes) }  // -1: NULL
    }

    private static func append16(_ value: UInt16, into bytes: inout [UInt8]) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    private static func append32(_ value: UInt32, into bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    private static func append64(_ value: UInt64, into bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
