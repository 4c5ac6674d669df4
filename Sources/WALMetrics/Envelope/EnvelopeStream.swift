import WALCore

/// Renders `OnexEnvelopeV1` JSON straight from log records, byte for byte what `Envelope.render` writes, for bulk
/// readers (`walctl replay --to stdout|file`, `inspect --records --json`) and for decoded records of the same log
/// (the Kafka shipper's messages): one renderer for ship and replay.
///
/// The parts of an envelope that depend only on the record's metric, tag set and agent (names, unit, tags, agent
/// id, already escaped) are rendered once per combination and reused; a record then costs its event id, timestamp,
/// value and correlation id. The filter's name, tag and agent conditions are decided once per combination too.
///
/// Not thread-safe: one thread at a time (it may move between threads, as `EnvelopeReader` moves it).
public final class EnvelopeStream: @unchecked Sendable {
    /// What the envelope shares with every record of the same metric, tag set and agent.
    package final class Shape {
        let matches: Bool
        /// From `,"payload":{"metric_id":` to `"value":`.
        let head: [UInt8]
        /// From `,"unit":` to `"correlation_id":` (inside the payload).
        let tail: [UInt8]
        /// The agent id's UTF-8 bytes (nil for none): the Kafka message's key.
        package let agentID: [UInt8]?
        /// The metric's category (its topic).
        package let category: MetricCategory
        /// The metric type's name (`gauge`), UTF-8.
        package let typeName: [UInt8]

        init(
            matches: Bool,
            head: [UInt8],
            tail: [UInt8],
            agentID: [UInt8]?,
            category: MetricCategory,
            typeName: [UInt8]
        ) {
            self.matches = matches
            self.head = head
            self.tail = tail
            self.agentID = agentID
            self.category = category
            self.typeName = typeName
        }
    }

    /// A record rendered by `renderMessage`: its shape (what it shares with records of the same metric, tag set and
    /// agent) and its emit time.
    package struct RenderedMessage {
        package let shape: Shape
        package let timestampNanos: Int64
    }

    struct ShapeKey: Hashable {
        var metric: UInt32
        var tagSet: UInt32
        var agent: UInt32
    }

    /// What `render` did with a record.
    public enum Outcome: Equatable {
        case rendered
        case filteredOut
        case undecodable(MetricsDecoder.Failure)
    }

    /// A direct-mapped cache in front of `shapes` (most logs have a few hundred shapes at most).
    private var recent: [(key: ShapeKey, shape: Shape)?] = Array(repeating: nil, count: 1024)
    private let timestampKey: [UInt8] = Array(#"","timestamp":""#.utf8)
    private let decoder: MetricsDecoder
    private let logID: LogID
    private let filter: RecordFilter
    private let opening: [UInt8]
    private let sourceService: [UInt8]
    private let sourceServiceName: String
    private var shapes: [ShapeKey: Shape] = [:]

    public init(
        directory: String,
        logID: LogID,
        filter: RecordFilter = RecordFilter(),
        sourceService: String? = nil
    ) {
        self.decoder = MetricsDecoder(directory: directory)
        self.logID = logID
        self.filter = filter
        self.opening = Array(#"{"event_type":"metric.recorded","event_version":"v1","event_id":""#.utf8)
        var source: [UInt8] = Array(#"","source_service":"#.utf8)
        // The log's own (recorded by its writer), unless the caller overrides it.
        let sourceServiceName = sourceService ?? Envelope.sourceService(directory: directory)
        self.sourceServiceName = sourceServiceName
        Envelope.appendString(sourceServiceName, into: &source)
        source.append(contentsOf: #","correlation_id":"#.utf8)
        self.sourceService = source
    }

    /// Appends the envelope of the record (and no newline) to `output` when it passes the filter.
    public func render(seq: UInt64, bytes: UnsafeRawBufferPointer, into output: inout [UInt8]) -> Outcome {
        let fields: RecordCodec.Fields
        switch RecordCodec.decode(bytes) {
        case .success(let value): fields = value
        case .failure(.notAMetricRecord(let kind)): return .undecodable(.notAMetricRecord("kind byte \(kind)"))
        case .failure(.malformed(let why)): return .undecodable(.notAMetricRecord(why))
        }
        guard seq >= filter.fromSeq, seq <= filter.toSeq, fields.timestampNanos >= filter.sinceNanos,
            fields.timestampNanos <= filter.untilNanos
        else { return .filteredOut }
        let shape: Shape
        switch self.shape(ShapeKey(metric: fields.metric, tagSet: fields.tagSet, agent: fields.agent)) {
        case .success(let found): shape = found
        case .failure(let failure): return .undecodable(failure)
        }
        guard shape.matches else { return .filteredOut }
        if let wanted = filter.correlationID, fields.correlationID != wanted { return .filteredOut }
        append(seq: seq, timestampNanos: fields.timestampNanos, value: fields.value, shape: shape, into: &output) {
            appendCorrelation(fields, into: &$0)
        }
        return .rendered
    }

    /// Appends the envelope of the record (and no newline) to `output`, ignoring the filter, and returns what a
    /// Kafka message of it needs besides: the record's shape (agent id, category, type) and emit time. The same
    /// bytes as `render(seq:bytes:into:)`; the Kafka shipper's path from the log's bytes, without `MetricRecord`.
    package func renderMessage(
        seq: UInt64,
        bytes: UnsafeRawBufferPointer,
        into output: inout [UInt8]
    ) -> Result<RenderedMessage, MetricsDecoder.Failure> {
        let fields: RecordCodec.Fields
        switch RecordCodec.decode(bytes) {
        case .success(let value): fields = value
        case .failure(.notAMetricRecord(let kind)): return .failure(.notAMetricRecord("kind byte \(kind)"))
        case .failure(.malformed(let why)): return .failure(.notAMetricRecord(why))
        }
        let shape: Shape
        switch self.shape(ShapeKey(metric: fields.metric, tagSet: fields.tagSet, agent: fields.agent)) {
        case .success(let found): shape = found
        case .failure(let failure): return .failure(failure)
        }
        append(seq: seq, timestampNanos: fields.timestampNanos, value: fields.value, shape: shape, into: &output) {
            appendCorrelation(fields, into: &$0)
        }
        return .success(RenderedMessage(shape: shape, timestampNanos: fields.timestampNanos))
    }

    /// Appends the envelope of `record`, decoded from this stream's log, ignoring the filter: what the record's
    /// metric, tag set and agent share is rendered once (`MetricRecord.symbols`); a record without symbols (built
    /// otherwise, or changed since) goes through `Envelope.render`. The same bytes either way.
    public func render(_ record: MetricRecord, into output: inout [UInt8]) {
        guard let symbols = record.symbols,
            case .success(let shape) = shape(
                ShapeKey(metric: symbols.metric, tagSet: symbols.tagSet, agent: symbols.agent)
            )
        else {
            Envelope.render(record, logID: logID, sourceService: sourceServiceName, into: &output)
            return
        }
        append(seq: record.seq, timestampNanos: record.timestampNanos, value: record.value, shape: shape, into: &output)
        {
            Envelope.appendOptional(record.correlationID, into: &$0)
        }
    }

    /// The envelope from its parts; `correlation` appends the correlation id's JSON (written twice).
    private func append(
        seq: UInt64,
        timestampNanos: Int64,
        value: Double,
        shape: Shape,
        into output: inout [UInt8],
        correlation: (inout [UInt8]) -> Void
    ) {
        output.append(contentsOf: opening)
        Envelope.appendEventID(logID: logID, seq: seq, into: &output)
        output.append(contentsOf: timestampKey)
        Envelope.appendTimestamp(timestampNanos, into: &output)
        output.append(contentsOf: sourceService)
        let correlationStart = output.count
        correlation(&output)
        let correlationEnd = output.count
        output.append(contentsOf: shape.head)
        Envelope.appendNumber(value, into: &output)
        output.append(contentsOf: shape.tail)
        // The same text again, copied from where it was just written.
        for index in correlationStart..<correlationEnd { output.append(output[index]) }
        output.append(0x7D)
        output.append(0x7D)
    }

    /// The shape of a combination, made once.
    private func shape(_ key: ShapeKey) -> Result<Shape, MetricsDecoder.Failure> {
        let slot = Int((key.metric &* 0x9E37_79B1 ^ key.tagSet &* 0x85EB_CA77 ^ key.agent &* 0xC2B2_AE3D) >> 22)
        if let cached = recent[slot], cached.key == key { return .success(cached.shape) }
        if let known = shapes[key] {
            recent[slot] = (key, known)
            return .success(known)
        }
        let made = makeShape(key)
        if case .success(let shape) = made {
            shapes[key] = shape
            recent[slot] = (key, shape)
        }
        return made
    }

    private func appendCorrelation(_ fields: RecordCodec.Fields, into output: inout [UInt8]) {
        if let (high, low) = fields.correlationUUID {
            output.append(0x22)
            Envelope.appendUUID(high, low, into: &output)
            output.append(0x22)
        } else {
            Envelope.appendOptional(fields.correlationText, into: &output)
        }
    }

    private func makeShape(_ key: ShapeKey) -> Result<Shape, MetricsDecoder.Failure> {
        guard let metric = decoder.resolveMetric(key.metric) else { return .failure(.unknownSymbol(key.metric)) }
        var tags: [String: String] = [:]
        if key.tagSet != 0 {
            guard let resolved = decoder.resolveTagSet(key.tagSet) else { return .failure(.unknownSymbol(key.tagSet)) }
            tags = resolved
        }
        var agent: String?
        if key.agent != 0 {
            guard let resolved = decoder.resolveString(key.agent) else { return .failure(.unknownSymbol(key.agent)) }
            agent = resolved
        }
        var matches =
            filter.metrics.isEmpty || filter.metrics.contains { RecordFilter.nameMatches(metric.name, pattern: $0) }
        if let wanted = filter.agentID, agent != wanted { matches = false }
        for (tagKey, value) in filter.tags where tags[tagKey] != value { matches = false }

        var head: [UInt8] = Array(#","payload":{"metric_id":"#.utf8)
        Envelope.appendString(MetricCatalog.metricID(for: metric.name), into: &head)
        head.append(contentsOf: #","metric_name":"#.utf8)
        Envelope.appendString(metric.name, into: &head)
        head.append(contentsOf: #","metric_type":""#.utf8)
        head.append(contentsOf: metric.type.description.utf8)
        head.append(contentsOf: #"","value":"#.utf8)
        var tail: [UInt8] = Array(#","unit":"#.utf8)
        Envelope.appendString(metric.unit, into: &tail)
        tail.append(contentsOf: #","tags":{"#.utf8)
        for (index, pair) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { tail.append(0x2C) }
            Envelope.appendString(pair.key, into: &tail)
            tail.append(0x3A)
            Envelope.appendString(pair.value, into: &tail)
        }
        tail.append(contentsOf: #"},"agent_id":"#.utf8)
        Envelope.appendOptional(agent, into: &tail)
        tail.append(contentsOf: #","correlation_id":"#.utf8)
        return .success(
            Shape(
                matches: matches,
                head: head,
                tail: tail,
                agentID: agent.map { Array($0.utf8) },
                category: MetricCategory(metricName: metric.name),
                typeName: Array(metric.type.description.utf8)
            )
        )
    }
}
