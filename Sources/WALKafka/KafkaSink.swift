import CRdKafka
import Logging
import Synchronization
import WALCore
import WALMetrics
import WALShipping

/// The counters of a Kafka sink.
public struct KafkaSinkStatistics: Sendable, Equatable {
    /// Messages acknowledged by the brokers (`acks=all`), duplicates of retried batches included.
    public var messagesDelivered: UInt64 = 0
    /// Records written to the dead-letter file because Kafka refused them for good (too large).
    public var deadLettered: UInt64 = 0
    /// Times the producer was rebuilt after a fatal error.
    public var producerRebuilds: UInt64 = 0
    /// Cursor commits to Kafka.
    public var cursorCommits: UInt64 = 0
}

/// Delivers metric records to Kafka, at least once with idempotency keys.
///
/// - Each record becomes one message on `{prefix}.{category}.v1`: the `OnexEnvelopeV1` JSON as value, the agent
///   id as key (an agent's records keep their order within a partition), headers `log_id`, `wal_seq`, `event_id`,
///   `metric_type`, and the emit time as the message timestamp. `event_id` is the UUIDv5 of (log id, seq): a
///   re-sent record carries the same id.
/// - The producer runs with `acks=all` and `enable.idempotence=true`, so librdkafka's own retries neither lose nor
///   duplicate nor reorder messages.
/// - After every message of a batch is acknowledged, the batch's last sequence number is committed to Kafka as a
///   consumer-group offset commit (see `KafkaCursor`); on start it is read back from there. A crash between the
///   acknowledgements and the commit re-sends that one batch, with the same event ids.
/// - A record the brokers refuse for good (`MSG_SIZE_TOO_LARGE`) goes to the dead-letter file with the reason,
///   as do gaps and damaged regions of the log; everything else is retried.
/// - A fatal producer error (the idempotent producer can no longer guarantee order) rebuilds the producer, which
///   resumes from the committed cursor.
///
/// Blocking: the shipper calls it from its own thread, which also serves librdkafka's delivery reports
/// (`rd_kafka_poll`), never the cooperative pool. Not thread-safe, except `interruptDelivery` and `statistics`.
public final class KafkaSink: MetricSink, @unchecked Sendable {
    public let configuration: KafkaSinkConfiguration
    public var name: String { configuration.shipperName }
    private let logger: Logger
    private var producer: RDKafkaClient?
    private var producerFailed = false
    private var cursorClient: RDKafkaClient?
    private var cursorGroup: String?
    private var topicsEnsured = false
    private let deadLetters: DeadLetterFile
    private let interrupted = Atomic<Bool>(false)
    private let counters = Mutex(KafkaSinkStatistics())
    /// Cursors of logs delivered (every message acknowledged) but not yet committed, and when cursors were last
    /// committed: with many logs, cursors are committed at most once per `cursorCommitIntervalMilliseconds`.
    private var deferredCursors: [LogID: UInt64] = [:]
    private var cursorsCommittedAt: UInt64 = 0
    /// Batches produced and not yet retired, oldest first.
    private var inFlight: [InFlight] = []
    /// Positions of logs whose batches were retired since the engine last asked (`send`, `awaitBatchesInFlight`).
    private var delivered: [LogID: UInt64] = [:]
    /// Envelope renderers by log (`envelopeStream`).
    private var renderers: [LogID: (sourceService: String, stream: EnvelopeStream)] = [:]
    /// What batches produced by `replay` did, summed.
    private var replayed = ReplayOutcome()
    /// The message being produced: its envelope, then its header values (reused, so no allocation per record).
    private var scratch: [UInt8] = []
    private var headerSlices: [RDKafkaHeaderSlice] = [
        RDKafkaHeaderSlice(name: "log_id"), RDKafkaHeaderSlice(name: "wal_seq"),
        RDKafkaHeaderSlice(name: "event_id"), RDKafkaHeaderSlice(name: "metric_type"),
    ]

    public init(configuration: KafkaSinkConfiguration, logger: Logger = Logger(label: "walctl.kafka")) {
        self.configuration = configuration
        self.logger = logger
        self.deadLetters = DeadLetterFile(path: configuration.deadLetterFile)
    }

    public var statistics: KafkaSinkStatistics { counters.withLock { $0 } }

    /// The engine hands the sink the records as the log holds them: they are rendered straight from their bytes.
    public var takesEncodedRecords: Bool { true }

    // MARK: - Clients

    private func activeProducer() throws -> RDKafkaClient {
        dropFailedProducer()
        if let producer { return producer }
        do {
            let fresh = try RDKafkaClient.make(
                RD_KAFKA_PRODUCER,
                properties: configuration.producerProperties(),
                logger: logger
            )
            producer = fresh
            logger.info(
                "Kafka producer started",
                metadata: ["properties": "\(configuration.redactedProperties.joined(separator: " "))"]
            )
            return fresh
        } catch {
            throw FatalSinkError(error.message)
        }
    }

    /// Marks the producer failed and throws librdkafka's fatal error, if it raised one.
    private func throwIfFatal(_ producer: RDKafkaClient) throws {
        if let fatal = producer.fatalError {
            producerFailed = true
            throw fatal
        }
    }

    /// Drops a producer in a fatal state; the next call builds a new one, which resumes from the committed cursor.
    private func dropFailedProducer() {
        guard producerFailed else { return }
        producerFailed = false
        // Nothing the failed producer had in flight can be acknowledged any more.
        inFlight.removeAll()
        if producer != nil {
            producer = nil
            counters.withLock { $0.producerRebuilds += 1 }
            logger.warning("the Kafka producer hit a fatal error; it is rebuilt and resumes from the committed cursor")
        }
    }

    /// The headers of a record's message.
    static func headers(logID: String, seq: UInt64, eventID: String, type: MetricType) -> [RDKafkaHeader] {
        [
            RDKafkaHeader(name: "log_id", value: logID),
            RDKafkaHeader(name: "wal_seq", value: String(seq)),
            RDKafkaHeader(name: "event_id", value: eventID),
            RDKafkaHeader(name: "metric_type", value: type.description),
        ]
    }

    private func activeCursorClient(logID: LogID) throws -> RDKafkaClient {
        let group = configuration.group(for: logID)
        if let cursorClient, cursorGroup == group { return cursorClient }
        do {
            let client = try RDKafkaClient.make(
                RD_KAFKA_CONSUMER,
                properties: configuration.cursorClientProperties(group: group),
                logger: logger
            )
            cursorClient = client
            cursorGroup = group
            return client
        } catch {
            throw FatalSinkError(error.message)
        }
    }

    /// Creates missing category topics and the cursor topic when allowed (3 partitions, 7 days, the producer's
    /// compression); otherwise relies on existing topics or broker auto-creation. The cursor topic must exist in
    /// the end.
    private func ensureTopics(_ producer: RDKafkaClient) throws {
        guard !topicsEnsured else { return }
        let timeout = configuration.requestTimeoutMilliseconds
        let cluster = try producer.clusterMetadata(timeoutMilliseconds: timeout)
        let wanted = MetricCategory.allCases.map { configuration.topic(for: $0) } + [configuration.cursorTopic]
        let missing = wanted.filter { !cluster.topics.contains($0) }
        if configuration.createTopics && !missing.isEmpty {
            let controller = producer.controllerID(timeoutMilliseconds: timeout)
            if cluster.brokers.contains(controller) {
                createTopics(missing, producer)
            } else {
                logger.notice(
                    "the cluster names no usable controller; relying on broker auto-creation for missing topics",
                    metadata: ["controller": "\(controller)", "missing": "\(missing.joined(separator: ","))"]
                )
            }
        }
        // Ask for each missing category topic's metadata now, which auto-creates it where the brokers allow it (the
        // mock cluster, which has no CreateTopics): left to the first message, a topic's creation costs librdkafka
        // about a second of metadata retries (measured: 1.07 s against 0.05 s for a 10-record drain).
        // Asked twice when the first answer was an error (the topic was being created): the producer's metadata cache
        // then knows the topic's partitions, and its first message is not refused as for an unknown topic.
        for topic in missing where topic != configuration.cursorTopic {
            if producer.topicMetadata(topic, timeoutMilliseconds: timeout) != RD_KAFKA_RESP_ERR_NO_ERROR {
                _ = producer.topicMetadata(topic, timeoutMilliseconds: timeout)
            }
        }
        if !cluster.topics.contains(configuration.cursorTopic) {
            // Created above, or auto-created by this metadata request where the brokers allow it.
            let state = producer.topicMetadata(configuration.cursorTopic, timeoutMilliseconds: timeout)
            guard state == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(
                    state,
                    "the cursor topic \(configuration.cursorTopic) does not exist and cannot be created "
                        + "(create it with 1 partition, or allow topic creation)"
                )
            }
        }
        topicsEnsured = true
    }

    private func createTopics(_ names: [String], _ producer: RDKafkaClient) {
        let metricTopics = names.filter { $0 != configuration.cursorTopic }
        var outcomes: [RDKafkaClient.TopicCreation] = []
        do {
            if !metricTopics.isEmpty {
                outcomes += try producer.createTopics(
                    metricTopics,
                    partitions: configuration.topicPartitions,
                    replicationFactor: configuration.topicReplicationFactor,
                    configuration: [
                        ("retention.ms", "\(configuration.topicRetentionMilliseconds)"),
                        (
                            "compression.type",
                            configuration.compression == "none" ? "producer" : configuration.compression
                        ),
                        ("cleanup.policy", "delete"),
                    ],
                    timeoutMilliseconds: configuration.requestTimeoutMilliseconds
                )
            }
            if names.contains(configuration.cursorTopic) {
                outcomes += try producer.createTopics(
                    [configuration.cursorTopic],
                    partitions: 1,
                    replicationFactor: configuration.topicReplicationFactor,
                    configuration: [],
                    timeoutMilliseconds: configuration.requestTimeoutMilliseconds
                )
            }
        } catch {
            logger.notice(
                "topic creation not available; relying on existing topics or broker auto-creation",
                metadata: ["error": "\(error.message)"]
            )
        }
        for outcome in outcomes {
            switch outcome.error {
            case RD_KAFKA_RESP_ERR_NO_ERROR:
                logger.info("created Kafka topic", metadata: ["topic": "\(outcome.topic)"])
            case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
                break
            default:
                logger.warning(
                    "cannot create Kafka topic; relying on the broker",
                    metadata: ["topic": "\(outcome.topic)", "error": "\(outcome.message)"]
                )
            }
        }
    }

    // MARK: - MetricSink

    public func committedSeq(logID: LogID) throws -> UInt64 {
        let producer = try activeProducer()
        try ensureTopics(producer)
        return try readCursor(logID: logID) ?? 0
    }

    /// The cursor committed in Kafka for `logID` (0 for none), read without creating anything: for `walctl inspect`.
    /// Nil when the cursor topic does not exist (no shipper ever ran against this cluster).
    public func readCursor(logID: LogID) throws -> UInt64? {
        let client = try activeCursorClient(logID: logID)
        let lookup: Result<CommittedOffset?, KafkaError>
        do {
            lookup = .success(
                try client.committedOffset(
                    topic: configuration.cursorTopic,
                    timeoutMilliseconds: configuration.requestTimeoutMilliseconds
                )
            )
        } catch {
            lookup = .failure(error)
        }
        if case .failure(let error) = lookup, error.code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART.rawValue {
            return nil
        }
        return try cursorSeq(try lookup.get(), logID: logID)
    }

    /// The cursor a group's committed offset holds for `logID` (0 for none); a fatal error when the group holds
    /// something else.
    private func cursorSeq(_ found: CommittedOffset?, logID: LogID) throws -> UInt64 {
        guard let committed = found else { return 0 }
        let group = configuration.group(for: logID)
        guard let cursor = KafkaCursor(offset: committed.offset, metadata: committed.metadata) else {
            throw FatalSinkError(
                "consumer group \(group) has offset \(committed.offset) on \(configuration.cursorTopic) that is not "
                    + "a walctl cursor (metadata \"\(committed.metadata.prefix(200))\"); give another group id"
            )
        }
        guard cursor.logID == logID.description else {
            throw FatalSinkError(
                "consumer group \(group) holds the cursor of log \(cursor.logID), not of this log (\(logID)); "
                    + "give another group id"
            )
        }
        return cursor.seq
    }

    /// The positions of many logs, read through the producer with the admin API (one client for any number of
    /// logs; librdkafka 2.0 sends one request per group, all in flight at once).
    public func committedSeqs(logIDs: [LogID]) throws -> [LogID: UInt64] {
        // Delivered but not committed yet (before a retry): commit first, so as not to send them again.
        try? commitDeferred()
        if logIDs.count == 1, let logID = logIDs.first { return [logID: try committedSeq(logID: logID)] }
        let producer = try activeProducer()
        try ensureTopics(producer)
        var positions: [LogID: UInt64] = [:]
        for chunk in stride(from: 0, to: logIDs.count, by: 100).map({ logIDs[$0..<min($0 + 100, logIDs.count)] }) {
            let found = try producer.groupOffsets(
                chunk.map { configuration.group(for: $0) },
                topic: configuration.cursorTopic,
                timeoutMilliseconds: configuration.requestTimeoutMilliseconds
            )
            for logID in chunk {
                positions[logID] = try cursorSeq(found[configuration.group(for: logID)] ?? nil, logID: logID)
            }
        }
        return positions
    }

    public func deliver(_ batch: ShipBatch) throws { try deliver([batch]) }

    /// Produces the records of every batch, waits until each message is acknowledged, dead-letters what the
    /// brokers refused for good, then commits each log's cursor (its own consumer group).
    public func deliver(_ batches: [ShipBatch]) throws {
        _ = try send(batches)
        let producer = try activeProducer()
        try retire(producer, leaving: 0)
        try commitIfDue(force: false)
        _ = takeDelivered()
    }

    /// Produces the records of every batch (waiting only while `batchesInFlight` batches are in flight), retires the
    /// batches whose every message is acknowledged (oldest first: never one after a batch still in flight), and
    /// returns the logs' positions committed by them: `MetricSink.send`. One log's cursor is committed to Kafka
    /// before its position is returned; with many logs, cursors are committed at most once an interval (a crash
    /// re-sends at most that interval of each log, with the same event ids).
    public func send(_ batches: [ShipBatch]) throws -> [LogID: UInt64] {
        let producer = try activeProducer()
        try ensureTopics(producer)
        for batch in batches {
            try retire(producer, leaving: max(0, configuration.batchesInFlight - 1))
            try enqueue(batch, commits: configuration.commitsCursor, producer)
        }
        try retire(producer, leaving: Int.max)
        try commitIfDue(force: false)
        return takeDelivered()
    }

    public var hasBatchesInFlight: Bool { !inFlight.isEmpty }

    /// Serves delivery reports for up to `milliseconds` (in `rd_kafka_poll`, which returns with the first report)
    /// until the oldest batch in flight has all of them, then retires what is complete and commits as `send` does.
    public func awaitBatchesInFlight(milliseconds: Int) throws -> [LogID: UInt64] {
        if let producer, !inFlight.isEmpty {
            let until = monotonicNanos() + UInt64(max(0, milliseconds)) * 1_000_000
            _ = producer.awaitDeliveries(
                deadlineNanos: until,
                now: { monotonicNanos() },
                interrupted: { interrupted.load(ordering: .relaxed) }
            )
            try retire(producer, leaving: Int.max)
        }
        try commitIfDue(force: false)
        return takeDelivered()
    }

    /// Produces the batch's records (the shipper's exact messages and event ids, so consumers drop what they
    /// already have) and waits for every acknowledgement; commits no cursor (`Replayer`). Refusals go to the
    /// dead-letter file of the configuration (never beside the log: a replay writes nothing there) and count as
    /// failed.
    public func replay(_ batch: ShipBatch) throws -> ReplayOutcome {
        var batch = batch
        batch.directory = nil
        let producer = try activeProducer()
        try ensureTopics(producer)
        try enqueue(batch, commits: false, producer)
        let before = replayed
        try retire(producer, leaving: 0)
        return ReplayOutcome(sent: replayed.sent - before.sent, failed: replayed.failed - before.failed)
    }

    /// The committed cursor, as `committedSeq` (the Kafka cursor takes no lock).
    public func peekCommittedSeq(logID: LogID) throws -> UInt64 { try committedSeq(logID: logID) }

    // MARK: - Batches in flight

    /// A batch produced and not yet retired (in the producer's order of batches).
    private struct InFlight {
        var batch: ShipBatch
        var commits: Bool
        /// Records librdkafka refused outright, by index in the batch, with the reason.
        var rejected: [(index: Int, reason: String)]
        /// Encoded records that are not metric records of the log (passed over, dead-lettered).
        var undecodable: [SkippedEntry]
        /// When the batch must have every report: `message.timeout.ms` and 10 s after it was produced.
        var deadline: UInt64
    }

    /// Produces every record of `batch` as a new batch in flight. Allocates nothing per record in Swift: the
    /// envelope and the header values are written into one reused buffer, the event id inside the envelope is the
    /// `event_id` header's value. Encoded records (`ShipBatch.encoded`, from the engine) are rendered straight from
    /// the log's bytes by the log's `EnvelopeStream`; decoded ones (`walctl replay --to kafka`) from their fields.
    private func enqueue(_ batch: ShipBatch, commits: Bool, _ producer: RDKafkaClient) throws {
        // The topic handles by category (`MetricCategory.ordinal`).
        var topics = [OpaquePointer?](repeating: nil, count: MetricCategory.allCases.count)
        for category in MetricCategory.allCases {
            guard let topic = producer.topicHandle(configuration.topic(for: category)) else {
                throw FatalSinkError("librdkafka refuses the topic name \(configuration.topic(for: category))")
            }
            topics[category.ordinal] = topic
        }
        producer.openBatch()
        var item = InFlight(
            batch: batch,
            commits: commits,
            rejected: [],
            undecodable: [],
            deadline: monotonicNanos() + UInt64(configuration.messageTimeoutMilliseconds + 10_000) * 1_000_000
        )
        let logID = batch.logID
        let sourceService = batch.sourceService ?? configuration.sourceService
        let renderer = batch.directory.map { envelopeStream(logID: logID, directory: $0, sourceService: sourceService) }
        // The buffer and the header slices move into the writer for the loop, and back.
        var writer = MessageWriter(
            producer: producer,
            topics: topics.compactMap { $0 },
            logID: Array(logID.description.utf8),
            buffer: scratch,
            slices: headerSlices
        )
        scratch = []
        defer {
            scratch = writer.buffer
            headerSlices = writer.slices
        }
        if !batch.encoded.isEmpty {
            guard let renderer else { throw FatalSinkError("encoded records without their log's directory") }
            try batch.encoded.forEach { index, seq, bytes in
                writer.buffer.removeAll(keepingCapacity: true)
                switch renderer.renderMessage(seq: seq, bytes: bytes, into: &writer.buffer) {
                case .success(let message):
                    let valueEnd = writer.buffer.count
                    let error = message.agent.agentID.withUnsafeBytesIfPresent { key in
                        writer.produce(
                            index: index,
                            seq: seq,
                            valueEnd: valueEnd,
                            key: key,
                            category: message.metric.category,
                            typeName: message.metric.typeName,
                            timestampNanos: message.timestampNanos
                        )
                    }
                    try refused(error, index: index, category: message.metric.category, item: &item, producer)
                case .failure(let failure):
                    // As the engine reports a record it cannot decode: passed over, in the dead-letter file.
                    item.undecodable.append(SkippedEntry(fromSeq: seq, toSeq: seq, reason: failure.description))
                }
            }
        } else {
            // The records borrowed in place (no copy of each record).
            try batch.records.withUnsafeBufferPointer { records in
                for index in records.indices {
                    writer.buffer.removeAll(keepingCapacity: true)
                    if let renderer {
                        renderer.render(records[index], into: &writer.buffer)
                    } else {
                        Envelope.render(
                            records[index],
                            logID: logID,
                            sourceService: sourceService,
                            into: &writer.buffer
                        )
                    }
                    let valueEnd = writer.buffer.count
                    let error = withUTF8IfPresent(records[index].agentID) { key in
                        writer.produce(
                            index: index,
                            seq: records[index].seq,
                            valueEnd: valueEnd,
                            key: key,
                            category: records[index].category,
                            typeName: records[index].type.description.utf8,
                            timestampNanos: records[index].timestampNanos
                        )
                    }
                    try refused(error, index: index, category: records[index].category, item: &item, producer)
                }
            }
        }
        inFlight.append(item)
    }

    /// What librdkafka's answer to a message means: nothing when it took it; a record refused for good is noted
    /// (dead-lettered when the batch retires); anything else abandons every batch in flight, this one included,
    /// and throws.
    private func refused(
        _ error: rd_kafka_resp_err_t,
        index: Int,
        category: MetricCategory,
        item: inout InFlight,
        _ producer: RDKafkaClient
    ) throws {
        guard error != RD_KAFKA_RESP_ERR_NO_ERROR else { return }
        if Self.isPermanent(error) {
            item.rejected.append((index, String(cString: rd_kafka_err2str(error))))
            return
        }
        inFlight.append(item)
        abandonInFlight(producer)
        try throwIfFatal(producer)
        throw KafkaError(error, "producing to \(configuration.topic(for: category))")
    }

    /// How many messages `enqueue` produces between two servings of the delivery reports.
    static let messagesBetweenServing = 256

    /// The envelope renderer of a log (`EnvelopeStream`, as `walctl replay` uses), made once per log and source
    /// service; at most 64 are kept (each holds the log's symbols and what it rendered from them).
    private func envelopeStream(logID: LogID, directory: String, sourceService: String) -> EnvelopeStream {
        if let known = renderers[logID], known.sourceService == sourceService { return known.stream }
        if renderers.count >= 64 { renderers.removeAll() }
        let stream = EnvelopeStream(directory: directory, logID: logID, sourceService: sourceService)
        renderers[logID] = (sourceService, stream)
        return stream
    }

    /// Retires the oldest batches in flight whose every message has a delivery report, waiting (serving reports)
    /// while more than `limit` are in flight: dead-letters what the brokers refused for good, and notes each
    /// retired batch's position as delivered (`deferredCursors`). A batch with a failure worth retrying, or overdue,
    /// abandons every batch in flight and throws: nothing after it is retired.
    private func retire(_ producer: RDKafkaClient, leaving limit: Int) throws {
        producer.serveDeliveryReports()
        while let oldest = inFlight.first {
            if !producer.oldestBatchComplete {
                guard inFlight.count > limit || monotonicNanos() >= oldest.deadline else { break }
                let complete = producer.awaitDeliveries(
                    deadlineNanos: oldest.deadline,
                    now: { monotonicNanos() },
                    interrupted: { interrupted.load(ordering: .relaxed) }
                )
                if !complete {
                    abandonInFlight(producer)
                    try throwIfFatal(producer)
                    let reason = interrupted.load(ordering: .relaxed) ? "shutting down" : "delivery reports overdue"
                    throw KafkaError(
                        code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue,
                        message: "batch not delivered: \(reason)"
                    )
                }
            }
            let failures = producer.retireOldestBatch()
            var item = inFlight.removeFirst()
            for failure in failures where failure.index < item.batch.recordCount {
                guard Self.isPermanent(failure.error) else {
                    abandonInFlight(producer)
                    try throwIfFatal(producer)
                    let detail = producer.context.lastError.withLock { $0 }.map { " (\($0))" } ?? ""
                    throw KafkaError(failure.error, "delivery of \(failures.count) messages failed\(detail)")
                }
                item.rejected.append((failure.index, String(cString: rd_kafka_err2str(failure.error))))
            }
            try keepDeadLetters(item.batch, rejected: item.rejected, undecodable: item.undecodable)
            let refused = UInt64(item.rejected.count)
            let acknowledged = UInt64(item.batch.recordCount - item.undecodable.count) - refused
            counters.withLock {
                $0.messagesDelivered += acknowledged
                $0.deadLettered += refused
            }
            if item.commits {
                deferredCursors[item.batch.logID] = item.batch.throughSeq
                delivered[item.batch.logID] = item.batch.throughSeq
            } else {
                replayed += ReplayOutcome(sent: acknowledged, failed: refused)
            }
        }
    }

    /// Drops every batch in flight (purged from librdkafka's queues): none of them is retired or committed.
    private func abandonInFlight(_ producer: RDKafkaClient) {
        producer.purge()
        inFlight.removeAll()
    }

    /// Commits the delivered cursors: one log's at once, many logs' at most once per
    /// `cursorCommitIntervalMilliseconds` (or when `force`).
    private func commitIfDue(force: Bool) throws {
        guard !deferredCursors.isEmpty else { return }
        let now = monotonicNanos()
        if force || deferredCursors.count == 1
            || now - cursorsCommittedAt >= UInt64(configuration.cursorCommitIntervalMilliseconds) * 1_000_000
        {
            try commitDeferred()
        }
    }

    /// The positions delivered since the last call: retired batches' positions, committed to Kafka already for one
    /// log, or deferred to the next interval for many (the engine's retention follows what Kafka acknowledged).
    private func takeDelivered() -> [LogID: UInt64] {
        defer { delivered.removeAll(keepingCapacity: true) }
        return delivered
    }

    /// Commits the cursors of logs delivered since the last commit (one admin request per log, all in flight).
    public func commitDeferred() throws {
        guard !deferredCursors.isEmpty else { return }
        if deferredCursors.count == 1, let (logID, seq) = deferredCursors.first {
            try commitCursor(logID: logID, seq: seq)
            deferredCursors.removeAll()
            cursorsCommittedAt = monotonicNanos()
            return
        }
        let producer = try activeProducer()
        try producer.alterGroupOffsets(
            deferredCursors.map {
                GroupOffsetCommit(
                    group: configuration.group(for: $0.key),
                    offset: Int64($0.value),
                    metadata: KafkaCursor(logID: $0.key.description, seq: $0.value).metadata
                )
            },
            topic: configuration.cursorTopic,
            timeoutMilliseconds: configuration.requestTimeoutMilliseconds
        )
        counters.withLock { $0.cursorCommits += UInt64(deferredCursors.count) }
        deferredCursors.removeAll()
        cursorsCommittedAt = monotonicNanos()
    }

    /// One log's cursor, through a consumer client of its group (`rd_kafka_commit`): the path a single-log shipper
    /// takes, which does not depend on librdkafka's coordinator admin requests.
    private func commitCursor(logID: LogID, seq: UInt64) throws {
        let client = try activeCursorClient(logID: logID)
        try client.commitOffset(
            topic: configuration.cursorTopic,
            offset: Int64(seq),
            metadata: KafkaCursor(logID: logID.description, seq: seq).metadata
        )
        counters.withLock { $0.cursorCommits += 1 }
    }

    /// Moves the committed cursor forward to `seq` (never back): `walctl replay --advance-cursor`. Returns the
    /// cursor after the call.
    public func advanceCursor(logID: LogID, to seq: UInt64) throws -> UInt64 {
        let current = try committedSeq(logID: logID)
        guard seq > current else { return current }
        try commitCursor(logID: logID, seq: seq)
        return seq
    }

    public func disconnect() {
        // librdkafka reconnects by itself; only a producer in a fatal state is replaced (on the next call).
        dropFailedProducer()
    }

    public func interruptDelivery() {
        interrupted.store(true, ordering: .relaxed)
    }

    /// Makes the producer fail as librdkafka does when idempotence can no longer be guaranteed (tests).
    func raiseFatalErrorForTesting() {
        if let producer {
            rd_kafka_test_fatal_error(
                producer.handle,
                RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                "raised by a test"
            )
        }
    }

    // MARK: - Dead letters

    /// Errors no retry fixes: the record itself is refused.
    static func isPermanent(_ error: rd_kafka_resp_err_t) -> Bool {
        error == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || error == RD_KAFKA_RESP_ERR_INVALID_RECORD
    }

    /// The sequence number, category and envelope of the record at `index` of `batch`.
    private func deadLetter(
        _ batch: ShipBatch,
        index: Int
    ) -> (seq: UInt64, category: MetricCategory, envelope: [UInt8]) {
        var envelope: [UInt8] = []
        let sourceService = batch.sourceService ?? configuration.sourceService
        guard !batch.encoded.isEmpty else {
            let record = batch.records[index]
            Envelope.render(record, logID: batch.logID, sourceService: sourceService, into: &envelope)
            return (record.seq, record.category, envelope)
        }
        let seq = batch.encoded.seqs[index]
        let renderer = envelopeStream(
            logID: batch.logID,
            directory: batch.directory ?? "",
            sourceService: sourceService
        )
        let rendered = batch.encoded.withBytes(at: index) {
            renderer.renderMessage(seq: seq, bytes: $0, into: &envelope)
        }
        return (seq, (try? rendered.get())?.metric.category ?? .custom, envelope)
    }

    private func keepDeadLetters(
        _ batch: ShipBatch,
        rejected: [(index: Int, reason: String)],
        undecodable: [SkippedEntry] = []
    ) throws {
        guard !rejected.isEmpty || !batch.skipped.isEmpty || !undecodable.isEmpty else { return }
        // A sink shipping many logs keeps each log's dead letters beside it (no file configured).
        let file =
            configuration.deadLetterFile.isEmpty && batch.directory != nil
            ? DeadLetterFile(
                path: KafkaSinkConfiguration.defaultDeadLetterFile(directory: batch.directory ?? "", shipperName: name)
            ) : deadLetters
        let now = Int64(bitPattern: wallClockNanos())
        var lines: [[UInt8]] = []
        for entry in rejected.sorted(by: { $0.index < $1.index }) where entry.index < batch.recordCount {
            let record = deadLetter(batch, index: entry.index)
            var line: [UInt8] = []
            line.append(contentsOf: #"{"log_id":""#.utf8)
            line.append(contentsOf: batch.logID.description.utf8)
            line.append(contentsOf: #"","wal_seq":\#(record.seq),"topic":"#.utf8)
            Envelope.appendJSONString(configuration.topic(for: record.category), into: &line)
            line.append(contentsOf: #","reason":"#.utf8)
            Envelope.appendJSONString(entry.reason, into: &line)
            line.append(contentsOf: #","at":""#.utf8)
            Envelope.appendTimestamp(now, into: &line)
            line.append(contentsOf: #"","envelope":"#.utf8)
            line.append(contentsOf: record.envelope)
            line.append(0x7D)
            lines.append(line)
            logger.error(
                "record refused by Kafka; written to the dead-letter file",
                metadata: ["wal_seq": "\(record.seq)", "reason": "\(entry.reason)", "file": "\(file.path)"]
            )
        }
        for skipped in (batch.skipped + undecodable).sorted(by: { $0.fromSeq < $1.fromSeq }) {
            var line: [UInt8] = []
            line.append(contentsOf: #"{"log_id":""#.utf8)
            line.append(contentsOf: batch.logID.description.utf8)
            line.append(contentsOf: #"","from_seq":\#(skipped.fromSeq),"to_seq":\#(skipped.toSeq),"reason":"#.utf8)
            Envelope.appendJSONString(skipped.reason, into: &line)
            line.append(contentsOf: #","at":""#.utf8)
            Envelope.appendTimestamp(now, into: &line)
            line.append(contentsOf: #""}"#.utf8)
            lines.append(line)
        }
        try file.append(lines)
    }
}

/// What `KafkaSink` needs to produce one batch's messages: one reused buffer for each message's envelope and header
/// values, the header slices, the topic handles by category. Allocates nothing per message in Swift.
private struct MessageWriter {
    let producer: RDKafkaClient
    /// By `MetricCategory.ordinal`.
    let topics: [OpaquePointer]
    /// The `log_id` header's value.
    let logID: [UInt8]
    var buffer: [UInt8]
    var slices: [RDKafkaHeaderSlice]
    var producedSinceServing = 0

    init(
        producer: RDKafkaClient,
        topics: [OpaquePointer],
        logID: [UInt8],
        buffer: [UInt8],
        slices: [RDKafkaHeaderSlice]
    ) {
        self.producer = producer
        self.topics = topics
        self.logID = logID
        self.buffer = buffer
        self.slices = slices
    }

    /// Produces the message whose envelope is `buffer[0..<valueEnd]`, after appending its header values (the
    /// event id is the envelope's own); returns librdkafka's error when it refuses the message.
    mutating func produce(
        index: Int,
        seq: UInt64,
        valueEnd: Int,
        key: UnsafeRawBufferPointer?,
        category: MetricCategory,
        typeName: some Collection<UInt8>,
        timestampNanos: Int64
    ) -> rd_kafka_resp_err_t {
        slices[0].value = Self.append(logID, to: &buffer)
        slices[1].value = Self.appendDecimal(seq, to: &buffer)
        slices[2].value = Envelope.eventIDRange
        slices[3].value = Self.append(typeName, to: &buffer)
        let topic = topics[category.ordinal]
        let producer = producer
        let error = buffer.withUnsafeBytes { bytes in
            slices.withUnsafeBufferPointer { headers in
                producer.produce(
                    topic: topic,
                    key: key,
                    bytes: bytes,
                    value: 0..<valueEnd,
                    headers: headers,
                    timestampMilliseconds: timestampNanos / 1_000_000,
                    index: index
                )
            }
        }
        // Serves the reports that arrived every so many messages (without waiting): librdkafka frees the
        // acknowledged messages then, and their memory is reused by the next ones while it is still in the
        // allocator's caches (not 40,000 messages later, in a burst).
        producedSinceServing += 1
        if producedSinceServing == KafkaSink.messagesBetweenServing {
            producedSinceServing = 0
            producer.serveDeliveryReports()
        }
        return error
    }

    /// Appends `bytes` and returns where they went.
    private static func append(_ bytes: some Collection<UInt8>, to buffer: inout [UInt8]) -> Range<Int> {
        let start = buffer.count
        buffer.append(contentsOf: bytes)
        return start..<buffer.count
    }

    /// Appends the decimal digits of `value` and returns where they went.
    private static func appendDecimal(_ value: UInt64, to buffer: inout [UInt8]) -> Range<Int> {
        let start = buffer.count
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        buffer.append(contentsOf: repeatElement(0x30, count: digits))
        rest = value
        for index in (start..<buffer.count).reversed() {
            buffer[index] = 0x30 + UInt8(rest % 10)
            rest /= 10
        }
        return start..<buffer.count
    }
}

extension MetricRecord {
    var category: MetricCategory { MetricCategory(metricName: name) }
}

extension MetricCategory {
    /// A dense index of the category (0 to 5).
    var ordinal: Int {
        switch self {
        case .routing: 0
        case .state: 1
        case .coordination: 2
        case .workflow: 3
        case .quorum: 4
        case .custom: 5
        }
    }
}

/// Calls `body` with the UTF-8 bytes of `text`, or with nil when there is none (a copy only for a string without
/// contiguous storage).
private func withUTF8IfPresent<Result>(
    _ text: String?,
    _ body: (UnsafeRawBufferPointer?) throws -> Result
) rethrows -> Result {
    guard let text else { return try body(nil) }
    if let result = try text.utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    var copy = text
    return try copy.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
}

extension Optional where Wrapped == [UInt8] {
    /// Calls `body` with the bytes, or with nil when there are none.
    func withUnsafeBytesIfPresent<Result>(_ body: (UnsafeRawBufferPointer?) throws -> Result) rethrows -> Result {
        guard let bytes = self else { return try body(nil) }
        return try bytes.withUnsafeBytes { try body($0) }
    }
}
