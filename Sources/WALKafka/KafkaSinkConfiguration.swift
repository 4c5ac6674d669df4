import WALCore
import WALMetrics

/// Settings of the Kafka sink. Every librdkafka property can be added through `properties`, which are applied
/// last and so override the defaults below (for `security.protocol`, `sasl.*`, `ssl.*` and the rest).
public struct KafkaSinkConfiguration: Sendable {
    /// `host:port,...` (`KAFKA_BOOTSTRAP_SERVERS`).
    public var bootstrapServers: String
    /// The shipper's name in logs and in the local cursor file.
    public var shipperName = "kafka"
    /// Topics are `{topicPrefix}.{category}.v1`.
    public var topicPrefix = "agent.metrics"
    /// `compression.type` of the producer, and of topics this sink creates: `lz4` (default), `snappy`, `zstd`,
    /// `gzip` or `none` (`KAFKA_METRICS_COMPRESSION`).
    public var compression = "lz4"
    /// The consumer group whose offset commit holds the cursor. Default: `walctl-ship-{log id}`.
    public var groupID: String?
    /// The prefix of each log's cursor group when `groupID` is not given: `{prefix}{log id}`. Two shippers of the
    /// same logs into one cluster (two topic prefixes) need different prefixes.
    public var groupPrefix = "walctl-ship-"
    /// With many logs in flight, how often their cursors are committed, in milliseconds (one log: after every batch).
    public var cursorCommitIntervalMilliseconds = 1000
    /// The topic whose partition 0 the cursor is committed against (nothing is ever produced to it).
    public var cursorTopic = "walctl.cursors.v1"
    /// `linger.ms`: how long librdkafka waits to fill a produce request.
    public var lingerMilliseconds = 5
    /// `message.timeout.ms`: how long librdkafka retries a message before reporting it failed; the shipper then
    /// retries the batch with backoff.
    public var messageTimeoutMilliseconds = 30_000
    /// Batches the sink keeps in flight: it produces the next while earlier ones are acknowledged (the cursor moves
    /// over the contiguous acknowledged prefix only). A crash re-sends at most this many batches.
    public var batchesInFlight = 4
    /// Timeout of cursor reads and commits and of topic creation.
    public var requestTimeoutMilliseconds: Int32 = 10_000
    /// Create missing topics with the admin API (falls back to broker auto-creation or existing topics).
    public var createTopics = true
    public var topicPartitions: Int32 = 3
    /// -1: the broker's `default.replication.factor`.
    public var topicReplicationFactor: Int32 = -1
    /// `retention.ms` of created topics: 7 days (the design).
    public var topicRetentionMilliseconds: Int64 = 604_800_000
    /// Whether `deliver` commits each batch's position as the cursor. `walctl replay` turns it off: it re-sends a
    /// range without moving the shipper's position (unless asked to, with `KafkaSink.advanceCursor`).
    public var commitsCursor = true
    /// `source_service` of the envelopes.
    public var sourceService = Envelope.defaultSourceService
    /// Where records Kafka refuses for good (too large) and log regions passed over are written, with the reason.
    public var deadLetterFile: String
    /// Extra librdkafka properties, applied in order after the defaults (`KAFKA_PROPERTY_*`, `--kafka-property`).
    public var properties: [KafkaProperty] = []

    public init(bootstrapServers: String, deadLetterFile: String) {
        self.bootstrapServers = bootstrapServers
        self.deadLetterFile = deadLetterFile
    }

    /// The default dead-letter file of a log directory: `{dir}/dead-letters/kafka.jsonl`.
    public static func defaultDeadLetterFile(directory: String, shipperName: String = "kafka") -> String {
        "\(directory)/dead-letters/\(shipperName).jsonl"
    }

    /// Adds the environment's settings: `KAFKA_METRICS_COMPRESSION`, and `KAFKA_PROPERTY_SASL_MECHANISM=PLAIN`
    /// style pass-through (`sasl.mechanism`: lowercased, `_` read as `.`).
    public mutating func apply(environment: [String: String]) {
        if let compression = environment["KAFKA_METRICS_COMPRESSION"], !compression.isEmpty {
            self.compression = compression
        }
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) where key.hasPrefix("KAFKA_PROPERTY_") {
            let name = key.dropFirst("KAFKA_PROPERTY_".count).lowercased().replacingUnderscores()
            if !name.isEmpty { properties.append(KafkaProperty(name: name, value: value)) }
        }
    }

    /// The consumer group of a log's cursor.
    public func group(for logID: LogID) -> String { groupID ?? "\(groupPrefix)\(logID)" }

    /// The topic of a category.
    public func topic(for category: MetricCategory) -> String { category.topic(prefix: topicPrefix) }

    /// Producer properties: delivery guarantees first, user properties last.
    func producerProperties() -> [(String, String)] {
        [
            ("bootstrap.servers", bootstrapServers),
            ("client.id", "walctl-\(shipperName)"),
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("compression.type", compression),
            ("linger.ms", "\(lingerMilliseconds)"),
            ("message.timeout.ms", "\(messageTimeoutMilliseconds)"),
            // Java clients' partitioner: an agent's records land on the same partition whatever the client.
            ("partitioner", "murmur2_random"),
            // Back within a second or two of a broker's return (librdkafka's default backs off up to 10 s).
            ("reconnect.backoff.max.ms", "2000"),
        ] + properties.map { ($0.name, $0.value) }
    }

    /// Properties of the client that reads and commits the cursor.
    func cursorClientProperties(group: String) -> [(String, String)] {
        [
            ("bootstrap.servers", bootstrapServers),
            ("client.id", "walctl-\(shipperName)-cursor"),
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("reconnect.backoff.max.ms", "2000"),
        ] + properties.filter { !Self.producerOnly.contains($0.name) }.map { ($0.name, $0.value) }
    }

    /// Producer properties a consumer would warn about.
    static let producerOnly: Set<String> = [
        "acks", "request.required.acks", "enable.idempotence", "compression.type", "compression.codec",
        "linger.ms", "queue.buffering.max.ms", "message.timeout.ms", "delivery.timeout.ms", "partitioner",
        "batch.num.messages", "batch.size", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
        "retries", "message.send.max.retries", "retry.backoff.ms", "transactional.id", "compression.level",
        "max.in.flight.requests.per.connection", "max.in.flight", "sticky.partitioning.linger.ms",
    ]

    /// The properties as they may be logged: secret values replaced by `***`.
    public var redactedProperties: [String] {
        producerProperties().map { "\($0.0)=\(displayValue($0.0, $0.1))" }
    }
}

/// One librdkafka property.
public struct KafkaProperty: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    /// Parses `name=value`; a `kafka.` prefix is dropped (`kafka.sasl.mechanism=PLAIN`).
    public init?(assignment: String) {
        guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else { return nil }
        var name = String(assignment[..<equals])
        if name.hasPrefix("kafka.") { name.removeFirst("kafka.".count) }
        guard !name.isEmpty else { return nil }
        self.name = name
        self.value = String(assignment[assignment.index(after: equals)...])
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        String(map { $0 == "_" ? "." : $0 })
    }
}
