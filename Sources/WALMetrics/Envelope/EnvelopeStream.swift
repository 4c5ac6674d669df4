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
    /// What the envelope shares with every record of the same metric: from `,"payload":{"metric_id":` to
    /// `"value":`, then from `,"unit":` to `"tags":{`.
    package final class MetricPart {
        let matches: Bool
        let head: FixedBytes
        let unit: FixedBytes
        /// The metric's category (its topic).
        package let category: MetricCategory
        /// The metric type's name (`gauge`), UTF-8.
        package let typeName: [UInt8]

        init(matches: Bool, head: [UInt8], unit: [UInt8], category: MetricCategory, typeName: [UInt8]) {
            self.matches = matches
            self.head = FixedBytes(head)
            self.unit = FixedBytes(unit)
            self.category = category
            self.typeName = typeName
        }

        deinit {
            head.deallocate()
            unit.deallocate()
        }
    }

    /// What the envelope shares with every record of the same tag set: the tags' members, sorted by key.
    final class TagsPart {
        let matches: Bool
        let members: FixedBytes

        init(matches: Bool, members: [UInt8]) {
            self.matches = matches
            self.members = FixedBytes(members)
        }

        deinit { members.deallocate() }
    }

    /// What the envelope shares with every record of the same agent: from the tags' `}` to `"correlation_id":`
    /// (inside the payload).
    package final class AgentPart {
        let matches: Bool
        let tail: FixedBytes
        /// The agent id's UTF-8 bytes (nil for none): the Kafka message's key.
        package let agentID: [UInt8]?

        init(matches: Bool, tail: [UInt8], agentID: [UInt8]?) {
            self.matches = matches
            self.tail = FixedBytes(tail)
            self.agentID = agentID
        }

        deinit { tail.deallocate() }
    }

    /// A record rendered by `renderMessage`: what a Kafka message of it needs besides the envelope (its metric's
    /// category and type, its agent) and its emit time.
    package struct RenderedMessage {
        package let metric: MetricPart
        package let agent: AgentPart
        package let timestampNanos: Int64
    }

    /// Parts by symbol id: an array for the ids a log has (dense from 1; 0 is "none"), a dictionary beyond
    /// `directLimit`.
    struct PartTable<Part: AnyObject> {
        static var directLimit: Int { 1 << 20 }
        private var direct: [Part?] = []
        private var beyond: [UInt32: Part] = [:]

        func find(_ id: UInt32) -> Part? {
            let index = Int(id)
            if index < direct.count { return direct[index] }
            return index < Self.directLimit ? nil : beyond[id]
        }

        mutating func insert(_ part: Part, at id: UInt32) {
            let index = Int(id)
            guard index < Self.directLimit else {
                beyond[id] = part
                return
            }
            if index >= direct.count { direct.append(contentsOf: repeatElement(nil, count: index + 1 - direct.count)) }
            direct[index] = part
        }
    }

    /// What `render` did with a record.
    public enum Outcome: Equatable {
        case rendered
        case filteredOut
        case undecodable(MetricsDecoder.Failure)
    }

    private let timestampKey = FixedBytes(Array(#"","timestamp":""#.utf8))
    private let decoder: MetricsDecoder
    private let logID: LogID
    private let filter: RecordFilter
    private let opening: FixedBytes
    private let sourceService: FixedBytes
    private let sourceServiceName: String
    // The parts by symbol id, rendered once each: a record touches three small tables. (`walctl emit` traffic, 25
    // metrics, 629 tag sets and 4 agents, has 12,577 combinations: rendered per combination, they missed the caches.)
    @exclusivity(unchecked) private var metrics = PartTable<MetricPart>()
    @exclusivity(unchecked) private var tagSets = PartTable<TagsPart>()
    @exclusivity(unchecked) private var agents = PartTable<AgentPart>()

    public init(
        directory: String,
        logID: LogID,
        filter: RecordFilter = RecordFilter(),
        sourceService: String? = nil
    ) {
        self.decoder = MetricsDecoder(directory: directory)
        self.logID = logID
        self.filter = filter
        self.opening = FixedBytes(Array(#"{"event_type":"metric.recorded","event_version":"v1","event_id":""#.utf8))
        var source: [UInt8] = Array(#"","source_service":"#.utf8)
        // The log's own (recorded by its writer), unless the caller overrides it.
        let sourceServiceName = sourceService ?? Envelope.sourceService(directory: directory)
        self.sourceServiceName = sourceServiceName
        Envelope.appendString(sourceServiceName, into: &source)
        source.append(contentsOf: #","correlation_id":"#.utf8)
        self.sourceService = FixedBytes(source)
    }

    deinit {
        timestampKey.deallocate()
        opening.deallocate()
        sourceService.deallocate()
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
        let parts: Parts
        switch self.parts(metric: fields.metric, tagSet: fields.tagSet, agent: fields.agent) {
        case .success(let found): parts = found
        case .failure(let failure): return .undecodable(failure)
        }
        guard parts.metric.matches, parts.tags.matches, parts.agent.matches else { return .filteredOut }
        if let wanted = filter.correlationID, fields.correlationID != wanted { return .filteredOut }
        append(seq: seq, timestampNanos: fields.timestampNanos, value: fields.value, parts: parts, into: &output) {
            appendCorrelation(fields, into: &$0)
        }
        return .rendered
    }

    /// Appends the envelope of the record (and no newline) to `output`, ignoring the filter, and returns what a
    /// Kafka message of it needs besides: the record's metric (category, type), agent and emit time. The same
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
        let parts: Parts
        switch self.parts(metric: fields.metric, tagSet: fields.tagSet, agent: fields.agent) {
        case .success(let found): parts = found
        case .failure(let failure): return .failure(failure)
        }
        append(seq: seq, timestampNanos: fields.timestampNanos, value: fields.value, parts: parts, into: &output) {
            appendCorrelation(fields, into: &$0)
        }
        return .success(
            RenderedMessage(metric: parts.metric, agent: parts.agent, timestampNanos: fields.timestampNanos)
        )
    }

    /// Appends the envelope of `record`, decoded from this stream's log, ignoring the filter: what the record's
    /// metric, tag set and agent share is rendered once (`MetricRecord.symbols`); a record without symbols (built
    /// otherwise, or changed since) goes through `Envelope.render`. The same bytes either way.
    public func render(_ record: MetricRecord, into output: inout [UInt8]) {
        guard let symbols = record.symbols,
            case .success(let parts) = parts(metric: symbols.metric, tagSet: symbols.tagSet, agent: symbols.agent)
        else {
            Envelope.render(record, logID: logID, sourceService: sourceServiceName, into: &output)
            return
        }
        append(seq: record.seq, timestampNanos: record.timestampNanos, value: record.value, parts: parts, into: &output)
        {
            Envelope.appendOptional(record.correlationID, into: &$0)
        }
    }

    /// The envelope from its parts; `correlation` appends the correlation id's JSON (written twice).
    private func append(
        seq: UInt64,
        timestampNanos: Int64,
        value: Double,
        parts: Parts,
        into output: inout [UInt8],
        correlation: (inout [UInt8]) -> Void
    ) {
        output.append(contentsOf: opening.bytes)
        Envelope.appendEventID(logID: logID, seq: seq, into: &output)
        output.append(contentsOf: timestampKey.bytes)
        Envelope.appendTimestamp(timestampNanos, into: &output)
        output.append(contentsOf: sourceService.bytes)
        let correlationStart = output.count
        correlation(&output)
        let correlationEnd = output.count
        output.append(contentsOf: parts.metric.head.bytes)
        Envelope.appendNumber(value, into: &output)
        output.append(contentsOf: parts.metric.unit.bytes)
        output.append(contentsOf: parts.tags.members.bytes)
        output.append(contentsOf: parts.agent.tail.bytes)
        // The same text again, copied from where it was just written.
        for index in correlationStart..<correlationEnd { output.append(output[index]) }
        output.append(0x7D)
        output.append(0x7D)
    }

    /// The parts of a record's envelope.
    private struct Parts {
        var metric: MetricPart
        var tags: TagsPart
        var agent: AgentPart
    }

    /// The parts of a record with these symbols, each made once (failing on the metric, then the tag set, then the
    /// agent).
    private func parts(metric: UInt32, tagSet: UInt32, agent: UInt32) -> Result<Parts, MetricsDecoder.Failure> {
        guard let metricPart = metrics.find(metric) ?? makeMetricPart(metric) else {
            return .failure(.unknownSymbol(metric))
        }
        guard let tagsPart = tagSets.find(tagSet) ?? makeTagsPart(tagSet) else {
            return .failure(.unknownSymbol(tagSet))
        }
        guard let agentPart = agents.find(agent) ?? makeAgentPart(agent) else { return .failure(.unknownSymbol(agent)) }
        return .success(Parts(metric: metricPart, tags: tagsPart, agent: agentPart))
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

    private func makeMetricPart(_ id: UInt32) -> MetricPart? {
        guard let metric = decoder.resolveMetric(id) else { return nil }
        var head: [UInt8] = Array(#","payload":{"metric_id":"#.utf8)
        Envelope.appendString(MetricCatalog.metricID(for: metric.name), into: &head)
        head.append(contentsOf: #","metric_name":"#.utf8)
        Envelope.appendString(metric.name, into: &head)
        head.append(contentsOf: #","metric_type":""#.utf8)
        head.append(contentsOf: metric.type.description.utf8)
        head.append(contentsOf: #"","value":"#.utf8)
        var unit: [UInt8] = Array(#","unit":"#.utf8)
        Envelope.appendString(metric.unit, into: &unit)
        unit.append(contentsOf: #","tags":{"#.utf8)
        let part = MetricPart(
            matches: filter.metrics.isEmpty
                || filter.metrics.contains { RecordFilter.nameMatches(metric.name, pattern: $0) },
            head: head,
            unit: unit,
            category: MetricCategory(metricName: metric.name),
            typeName: Array(metric.type.description.utf8)
        )
        metrics.insert(part, at: id)
        return part
    }

    private func makeTagsPart(_ id: UInt32) -> TagsPart? {
        var tags: [String: String] = [:]
        if id != 0 {
            guard let resolved = decoder.resolveTagSet(id) else { return nil }
            tags = resolved
        }
        var members: [UInt8] = []
        for (index, pair) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { members.append(0x2C) }
            Envelope.appendString(pair.key, into: &members)
            members.append(0x3A)
            Envelope.appendString(pair.value, into: &members)
        }
        let part = TagsPart(matches: filter.tags.allSatisfy { tags[$0.key] == $0.value }, members: members)
        tagSets.insert(part, at: id)
        return part
    }

    private func makeAgentPart(_ id: UInt32) -> AgentPart? {
        var agent: String?
        if id != 0 {
            guard let resolved = decoder.resolveString(id) else { return nil }
            agent = resolved
        }
        var tail: [UInt8] = Array(#"},"agent_id":"#.utf8)
        Envelope.appendOptional(agent, into: &tail)
        tail.append(contentsOf: #","correlation_id":"#.utf8)
        var matches = true
        if let wanted = filter.agentID, agent != wanted { matches = false }
        let part = AgentPart(matches: matches, tail: tail, agentID: agent.map { Array($0.utf8) })
        agents.insert(part, at: id)
        return part
    }
}

/// Bytes rendered once and appended to many envelopes, outside Swift's reference counting (an array's buffer is
/// retained and released at every append); deallocated by its owner's `deinit`.
struct FixedBytes {
    let bytes: UnsafeBufferPointer<UInt8>

    init(_ source: [UInt8]) {
        let storage = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, source.count))
        _ = storage.initialize(from: source)
        bytes = UnsafeBufferPointer(rebasing: storage[0..<source.count])
    }

    func deallocate() {
        UnsafeMutableRawPointer(mutating: bytes.baseAddress)?.deallocate()
    }
}
