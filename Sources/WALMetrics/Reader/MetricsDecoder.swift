import WALCore

/// Turns log records into `MetricRecord`s, resolving symbol ids against the log's `metrics.symbols`.
///
/// Reads new symbol entries on demand (a writer in another process may have added them). Not thread-safe: one
/// decoder per reader.
public final class MetricsDecoder {
    private let symbols: SymbolFileReader
    private var metrics: [UInt32: (name: String, type: MetricType, unit: String)] = [:]
    private var tagSets: [UInt32: [String: String]] = [:]
    private var strings: [UInt32: String] = [:]

    /// Why a record could not be decoded.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The bytes are not a metric record (another payload in the log, or damage inside a valid frame).
        case notAMetricRecord(String)
        /// A symbol id that `metrics.symbols` does not hold (missing or damaged symbols file).
        case unknownSymbol(UInt32)

        public var description: String {
            switch self {
            case .notAMetricRecord(let why): return "not a metric record: \(why)"
            case .unknownSymbol(let id): return "symbol \(id) is not in \(SymbolFileFormat.fileName)"
            }
        }
    }

    public init(directory: String) {
        symbols = SymbolFileReader(directory: directory)
        symbols.refresh()
    }

    /// The log's `source_service`, as its writer recorded it in `metrics.symbols` (read with the symbols; the
    /// default until the file exists, and any record decoded since then has it).
    public var sourceService: String { symbols.sourceService }

    /// The emit time (nanoseconds since the Unix epoch) of a record as the log holds it, read without decoding the
    /// rest (no symbol lookups); nil when the bytes are not a metric record.
    package static func timestampNanos(encoded bytes: UnsafeRawBufferPointer) -> Int64? {
        RecordCodec.timestampNanos(bytes)
    }

    /// Decodes one record.
    public func decode(seq: UInt64, bytes: UnsafeRawBufferPointer) -> Result<MetricRecord, Failure> {
        let fields: RecordCodec.Fields
        switch RecordCodec.decode(bytes) {
        case .success(let value): fields = value
        case .failure(.notAMetricRecord(let kind)): return .failure(.notAMetricRecord("kind byte \(kind)"))
        case .failure(.malformed(let why)): return .failure(.notAMetricRecord(why))
        }
        guard let metric = resolveMetric(fields.metric) else { return .failure(.unknownSymbol(fields.metric)) }
        var tags: [String: String] = [:]
        if fields.tagSet != 0 {
            guard let resolved = resolveTagSet(fields.tagSet) else { return .failure(.unknownSymbol(fields.tagSet)) }
            tags = resolved
        }
        var agent: String?
        if fields.agent != 0 {
            guard let resolved = resolveString(fields.agent) else { return .failure(.unknownSymbol(fields.agent)) }
            agent = resolved
        }
        var record = MetricRecord(
            seq: seq,
            name: metric.name,
            type: metric.type,
            value: fields.value,
            unit: metric.unit,
            tags: tags,
            timestampNanos: fields.timestampNanos,
            correlationID: fields.correlationID,
            agentID: agent
        )
        record.symbols = MetricRecord.Symbols(metric: fields.metric, tagSet: fields.tagSet, agent: fields.agent)
        return .success(record)
    }

    /// The symbol with this id, reading new entries once when it is not known yet.
    private func symbol(_ id: UInt32) -> Symbol? {
        if id == 0 { return nil }
        if Int(id) > symbols.symbols.count { symbols.refresh() }
        guard Int(id) <= symbols.symbols.count else { return nil }
        return symbols.symbols[Int(id) - 1]
    }

    func resolveString(_ id: UInt32) -> String? {
        if let cached = strings[id] { return cached }
        guard case .string(let text) = symbol(id) else { return nil }
        strings[id] = text
        return text
    }

    func resolveMetric(_ id: UInt32) -> (name: String, type: MetricType, unit: String)? {
        if let cached = metrics[id] { return cached }
        guard case .metric(let type, let nameID, let unitID) = symbol(id), let name = resolveString(nameID),
            let unit = resolveString(unitID)
        else { return nil }
        metrics[id] = (name, type, unit)
        return (name, type, unit)
    }

    func resolveTagSet(_ id: UInt32) -> [String: String]? {
        if let cached = tagSets[id] { return cached }
        guard case .tagSet(let pairs) = symbol(id) else { return nil }
        var tags: [String: String] = [:]
        for pair in pairs {
            guard let key = resolveString(pair.key), let value = resolveString(pair.value) else { return nil }
            tags[key] = value
        }
        tagSets[id] = tags
        return tags
    }
}

/// An entry of a metrics reader.
public enum MetricEntry {
    case metric(MetricRecord)
    /// Records the writer dropped (whenFull policy), with the reason.
    case gap(GapMarker)
    /// Unreadable bytes in a segment.
    case damage(ReadDamage)
    /// A record that is in the log but does not decode as a metric.
    case undecodable(seq: UInt64, MetricsDecoder.Failure)
}

/// Reads metric records of a log from a sequence number to its current end (see `LogReader`).
public final class MetricsReader {
    private let reader: LogReader
    private let decoder: MetricsDecoder

    public init(path: String, from seq: UInt64 = 1) {
        reader = LogReader(path: path, from: seq)
        decoder = MetricsDecoder(directory: path)
    }

    /// Calls `body` with each entry until the end, or until it returns false.
    public func read(_ body: (MetricEntry) throws -> Bool) throws {
        try reader.read { entry in
            switch entry {
            case .record(let seq, let bytes):
                switch decoder.decode(seq: seq, bytes: bytes) {
                case .success(let record): return try body(.metric(record))
                case .failure(let failure): return try body(.undecodable(seq: seq, failure))
                }
            case .gap(let gap): return try body(.gap(gap))
            case .damage(let damage): return try body(.damage(damage))
            }
        }
    }
}
