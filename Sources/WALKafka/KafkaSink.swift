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
    /// NUL-terminated topic names by category.
    private let topicNames: [MetricCategory: [CChar]]

    public init(configuration: KafkaSinkConfiguration, logger: Logger = Logger(label: "walctl.kafka")) {
        self.configuration = configuration
        self.logger = logger
        self.deadLetters = DeadLetterFile(path: configuration.deadLetterFile)
        var names: [MetricCategory: [CChar]] = [:]
        for category in MetricCategory.allCases {
            names[category] = Array(configuration.topic(for: category).utf8CString)
        }
        self.topicNames = names
    }

    public var statistics: KafkaSinkStatistics { counters.withLock { $0 } }

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
        _ = try produce(batches, committing: configuration.commitsCursor)
    }

    /// Produces the batch's records (the shipper's exact messages and event ids, so consumers drop what they
    /// already have) and waits for every acknowledgement; commits no cursor (`Replayer`). Refusals go to the
    /// dead-letter file of the configuration (never beside the log: a replay writes nothing there) and count as
    /// failed.
    public func replay(_ batch: ShipBatch) throws -> ReplayOutcome {
        var batch = batch
        batch.directory = nil
        let done = try produce([batch], committing: false)
        return ReplayOutcome(sent: done.delivered, failed: done.refused)
    }

    /// The committed cursor, as `committedSeq` (the Kafka cursor takes no lock).
    public func peekCommittedSeq(logID: LogID) throws -> UInt64 { try committedSeq(logID: logID) }

    /// Produces, waits for the acknowledgements, dead-letters, and commits the cursors when `committing`.
    private func produce(_ batches: [ShipBatch], committing: Bool) throws -> (delivered: UInt64, refused: UInt64) {
        let producer = try activeProducer()
        try ensureTopics(producer)
        producer.beginBatch()
        // Message indices run across the batches: (batch, record) by running index.
        var owners: [(batch: Int, record: Int)] = []
        var rejected: [[(index: Int, reason: String)]] = Array(repeating: [], count: batches.count)
        var envelope: [UInt8] = []
        envelope.reserveCapacity(512)
        for (batchIndex, batch) in batches.enumerated() {
            let logID = batch.logID
            let logIDText = logID.description
            for (recordIndex, record) in batch.records.enumerated() {
                let index = owners.count
                owners.append((batchIndex, recordIndex))
                let eventID = Envelope.eventID(logID: logID, seq: record.seq)
                envelope.removeAll(keepingCapacity: true)
                Envelope.render(
                    record,
                    logID: logID,
                    sourceService: batch.sourceService ?? configuration.sourceService,
                    eventID: eventID,
                    into: &envelope
                )
                let error = producer.produce(
                    topic: topicNames[record.category] ?? [],
                    key: record.agentID,
                    value: envelope,
                    headers: Self.headers(logID: logIDText, seq: record.seq, eventID: eventID, type: record.type),
                    timestampMilliseconds: record.timestampNanos / 1_000_000,
                    index: index
                )
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    if Self.isPermanent(error) {
                        rejected[batchIndex].append((recordIndex, String(cString: rd_kafka_err2str(error))))
                        continue
                    }
                    producer.purge()
                    try throwIfFatal(producer)
                    throw KafkaError(error, "producing to \(configuration.topic(for: record.category))")
                }
            }
        }

        // Serve delivery reports on this (the shipper's) thread until every message has one.
        let deadline = monotonicNanos() + UInt64(configuration.messageTimeoutMilliseconds + 10_000) * 1_000_000
        let complete = producer.awaitDeliveries(
            deadlineNanos: deadline,
            now: { monotonicNanos() },
            interrupted: { interrupted.load(ordering: .relaxed) }
        )
        try throwIfFatal(producer)
        guard complete else {
            producer.purge()
            let reason = interrupted.load(ordering: .relaxed) ? "shutting down" : "delivery reports overdue"
            throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "batch not delivered: \(reason)")
        }
        for failure in producer.context.failures where failure.index < owners.count {
            if Self.isPermanent(failure.error) {
                let owner = owners[failure.index]
                rejected[owner.batch].append((owner.record, String(cString: rd_kafka_err2str(failure.error))))
            } else {
                let detail = producer.context.lastError.withLock { $0 }.map { " (\($0))" } ?? ""
                throw KafkaError(
                    failure.error,
                    "delivery of \(producer.context.failures.count) messages failed\(detail)"
                )
            }
        }
        let refused = rejected.reduce(0) { $0 + $1.count }
        for (batchIndex, batch) in batches.enumerated() {
            try keepDeadLetters(batch, rejected: rejected[batchIndex])
        }

        if committing {
            for batch in batches { deferredCursors[batch.logID] = batch.throughSeq }
            // One log: its cursor after every batch, as always. Many: every log's at most once an interval (a
            // crash re-sends at most that interval of each log, with the same event ids).
            let now = monotonicNanos()
            if deferredCursors.count == 1
                || now - cursorsCommittedAt >= UInt64(configuration.cursorCommitIntervalMilliseconds) * 1_000_000
            {
                try commitDeferred()
            }
        }
        counters.withLock {
            $0.messagesDelivered += UInt64(owners.count - refused)
            $0.deadLettered += UInt64(refused)
        }
        return (UInt64(owners.count - refused), UInt64(refused))
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

    private func keepDeadLetters(_ batch: ShipBatch, rejected: [(index: Int, reason: String)]) throws {
        guard !rejected.isEmpty || !batch.skipped.isEmpty else { return }
        // A sink shipping many logs keeps each log's dead letters beside it (no file configured).
        let file =
            configuration.deadLetterFile.isEmpty && batch.directory != nil
            ? DeadLetterFile(
                path: KafkaSinkConfiguration.defaultDeadLetterFile(directory: batch.directory ?? "", shipperName: name)
            ) : deadLetters
        let now = Int64(bitPattern: wallClockNanos())
        var lines: [[UInt8]] = []
        for entry in rejected.sorted(by: { $0.index < $1.index }) where entry.index < batch.records.count {
            let record = batch.records[entry.index]
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
            Envelope.render(
                record,
                logID: batch.logID,
                sourceService: batch.sourceService ?? configuration.sourceService,
                into: &line
            )
            line.append(0x7D)
            lines.append(line)
            logger.error(
                "record refused by Kafka; written to the dead-letter file",
                metadata: ["wal_seq": "\(record.seq)", "reason": "\(entry.reason)", "file": "\(file.path)"]
            )
        }
        for skipped in batch.skipped {
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

extension MetricRecord {
    var category: MetricCategory { MetricCategory(metricName: name) }
}
