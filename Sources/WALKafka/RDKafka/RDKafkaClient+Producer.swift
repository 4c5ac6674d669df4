import CRdKafka

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A message header for `produce`.
struct RDKafkaHeader {
    /// A NUL-terminated static name.
    var name: StaticString
    var value: String
}

/// A header of a message produced by `RDKafkaClient.produce(topic:key:bytes:value:headers:timestampMilliseconds:)`:
/// its NUL-terminated static name and where its value lies in the message's bytes.
struct RDKafkaHeaderSlice {
    var name: StaticString
    var value: Range<Int> = 0..<0
}

extension RDKafkaClient {
    // MARK: - Batches in flight

    /// Opens a new batch after those in flight: the messages produced from now on are counted in it.
    func openBatch() {
        context.batches.append(RDKafkaContext.Batch())
    }

    /// Starts a batch alone: the reports of batches still in flight are ignored from now on.
    func beginBatch() {
        abandonBatches()
        openBatch()
    }

    /// Forgets every batch in flight (after a purge): their reports are ignored from now on.
    func abandonBatches() {
        context.firstBatch &+= UInt32(context.batches.count)
        context.batches.removeAll(keepingCapacity: true)
    }

    /// The number of batches in flight.
    var batchesInFlight: Int { context.batches.count }

    /// Whether the oldest batch in flight has a report for every message.
    var oldestBatchComplete: Bool { context.batches.first.map { $0.outstanding == 0 } ?? false }

    /// Takes the oldest batch out of flight and returns its failures (by message index in the batch).
    func retireOldestBatch() -> [(index: Int, error: rd_kafka_resp_err_t)] {
        guard !context.batches.isEmpty else { return [] }
        context.firstBatch &+= 1
        return context.batches.removeFirst().failures
    }

    /// The failures reported so far for the newest batch (a producer of one batch at a time).
    var failures: [(index: Int, error: rd_kafka_resp_err_t)] { context.batches.last?.failures ?? [] }

    /// Serves the delivery reports that arrived, without waiting.
    ///
    /// The corresponding C function is `rd_kafka_poll`.
    func serveDeliveryReports() {
        rd_kafka_poll(handle, 0)
    }

    /// Serves delivery reports until the oldest batch in flight has every report, the deadline passes, or
    /// `interrupted` says so. Returns whether all its reports arrived. Blocks in `rd_kafka_poll`, which returns as
    /// soon as a report is served (no busy waiting).
    func awaitDeliveries(deadlineNanos: UInt64, now: () -> UInt64, interrupted: () -> Bool) -> Bool {
        while let oldest = context.batches.first, oldest.outstanding > 0 {
            if now() >= deadlineNanos || interrupted() { return false }
            rd_kafka_poll(handle, 50)
        }
        return true
    }

    // MARK: - Producing

    /// Enqueues one message (copied) of the newest batch, tagged with `index`. `topic` is NUL-terminated. Waits
    /// (serving delivery reports) while librdkafka's queue is full. Returns the error when librdkafka refuses the
    /// message outright (for example `MSG_SIZE_TOO_LARGE`).
    func produce(
        topic: [CChar],
        key: String?,
        value: [UInt8],
        headers: [RDKafkaHeader],
        timestampMilliseconds: Int64,
        index: Int
    ) -> rd_kafka_resp_err_t {
        // One buffer with the value, then each header's value.
        var bytes = value
        var slices: [RDKafkaHeaderSlice] = []
        for header in headers {
            let start = bytes.count
            bytes.append(contentsOf: header.value.utf8)
            slices.append(RDKafkaHeaderSlice(name: header.name, value: start..<bytes.count))
        }
        var keyText = key ?? ""
        let name = topic.withUnsafeBufferPointer { $0.baseAddress.map { String(cString: $0) } } ?? ""
        guard let topicHandle = topicHandle(name) else { return RD_KAFKA_RESP_ERR__INVALID_ARG }
        return bytes.withUnsafeBytes { buffer in
            slices.withUnsafeBufferPointer { headerSlices in
                keyText.withUTF8 { keyBytes in
                    produce(
                        topic: topicHandle,
                        key: key == nil ? nil : UnsafeRawBufferPointer(keyBytes),
                        bytes: buffer,
                        value: 0..<value.count,
                        headers: headerSlices,
                        timestampMilliseconds: timestampMilliseconds,
                        index: index
                    )
                }
            }
        }
    }

    /// Enqueues one message (copied) of the newest batch, tagged with `index`, on the topic handle `topic`
    /// (`topicHandle(_:)`): its value and its headers' values are ranges of `bytes`. Waits (serving delivery
    /// reports) while librdkafka's queue is full; returns the error when librdkafka refuses the message outright.
    /// Allocates nothing in Swift.
    ///
    /// The headers go to librdkafka as one list of our own (`RD_KAFKA_VTYPE_HEADERS`), never header by header
    /// (`RD_KAFKA_VTYPE_HEADER`): librdkafka 2.0.2's `rd_kafka_produceva` frees a list it built from single
    /// headers twice when the partitioner refuses the message (a topic known not to exist, or in an error state
    /// such as an authorization failure: librdkafka issue 4627), and the process crashes. A list of our own stays
    /// ours on every error path (and is reused when the queue is full), and is librdkafka's once the message is
    /// enqueued.
    ///
    /// The corresponding C function is `rd_kafka_produceva`.
    func produce(
        topic: OpaquePointer,
        key: UnsafeRawBufferPointer?,
        bytes: UnsafeRawBufferPointer,
        value: Range<Int>,
        headers: UnsafeBufferPointer<RDKafkaHeaderSlice>,
        timestampMilliseconds: Int64,
        index: Int
    ) -> rd_kafka_resp_err_t {
        let batch = context.firstBatch &+ UInt32(truncatingIfNeeded: max(0, context.batches.count - 1))
        var headerList: OpaquePointer?
        if !headers.isEmpty {
            headerList = rd_kafka_headers_new(headers.count)
            for header in headers {
                let error = rd_kafka_header_add(
                    headerList,
                    UnsafeRawPointer(header.name.utf8Start).assumingMemoryBound(to: CChar.self),
                    -1,
                    bytes.baseAddress.map { UnsafeRawPointer($0 + header.value.lowerBound) },
                    header.value.count
                )
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    rd_kafka_headers_destroy(headerList)
                    return error
                }
            }
        }
        return withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { vus in
            vus.initialize(repeating: rd_kafka_vu_t())
            vus[0].vtype = RD_KAFKA_VTYPE_RKT
            vus[0].u.rkt = topic
            vus[1].vtype = RD_KAFKA_VTYPE_VALUE
            vus[1].u.mem.ptr = UnsafeMutableRawPointer(mutating: bytes.baseAddress.map { $0 + value.lowerBound })
            vus[1].u.mem.size = value.count
            vus[2].vtype = RD_KAFKA_VTYPE_KEY
            vus[2].u.mem.ptr = key.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
            vus[2].u.mem.size = key?.count ?? 0
            vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS
            vus[3].u.i = RD_KAFKA_MSG_F_COPY
            vus[4].vtype = RD_KAFKA_VTYPE_OPAQUE
            vus[4].u.ptr = messageOpaque(batch: batch, index: index)
            vus[5].vtype = RD_KAFKA_VTYPE_TIMESTAMP
            vus[5].u.i64 = timestampMilliseconds
            var count = 6
            if let headerList {
                vus[6].vtype = RD_KAFKA_VTYPE_HEADERS
                vus[6].u.headers = headerList
                count = 7
            }
            while true {
                let error = rd_kafka_produceva(handle, UnsafePointer(vus.baseAddress), count)
                guard let error else {
                    // Enqueued: the message owns the header list now.
                    if !context.batches.isEmpty { context.batches[context.batches.count - 1].outstanding += 1 }
                    return RD_KAFKA_RESP_ERR_NO_ERROR
                }
                let code = rd_kafka_error_code(error)
                rd_kafka_error_destroy(error)
                guard code == RD_KAFKA_RESP_ERR__QUEUE_FULL else {
                    // Refused: the header list is still ours.
                    if let headerList { rd_kafka_headers_destroy(headerList) }
                    return code
                }
                rd_kafka_poll(handle, 10)
            }
        }
    }

    /// Drops queued and in-flight messages (their reports say `_PURGE_QUEUE` / `_PURGE_INFLIGHT`, and are
    /// ignored: every batch in flight is abandoned). Messages already on the wire may still be written by the broker.
    func purge() {
        rd_kafka_purge(handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
        rd_kafka_poll(handle, 0)
        abandonBatches()
    }

    // MARK: - Topics

    /// The outcome of creating one topic.
    struct TopicCreation {
        var topic: String
        var error: rd_kafka_resp_err_t
        var message: String
    }

    /// Creates topics with the admin API. Throws when the request as a whole fails (for example a broker
    /// without CreateTopics); otherwise returns each topic's outcome (`TOPIC_ALREADY_EXISTS` included).
    ///
    /// The corresponding C function is `rd_kafka_CreateTopics`.
    func createTopics(
        _ names: [String],
        partitions: Int32,
        replicationFactor: Int32,
        configuration: [(String, String)],
        timeoutMilliseconds: Int32
    ) throws(KafkaError) -> [TopicCreation] {
        var errorText = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for name in names {
            guard let topic = rd_kafka_NewTopic_new(name, partitions, replicationFactor, &errorText, errorText.count)
            else { throw KafkaError(message: "topic \(name): \(bufferText(errorText))") }
            newTopics.append(topic)
            for (key, value) in configuration {
                let error = rd_kafka_NewTopic_set_config(topic, key, value)
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error, "topic setting \(key)") }
            }
        }
        guard let queue = rd_kafka_queue_new(handle) else { throw KafkaError(message: "rd_kafka_queue_new failed") }
        defer { rd_kafka_queue_destroy(queue) }
        guard let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS) else {
            throw KafkaError(message: "rd_kafka_AdminOptions_new failed")
        }
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMilliseconds, &errorText, errorText.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMilliseconds, &errorText, errorText.count)
        newTopics.withUnsafeMutableBufferPointer {
            rd_kafka_CreateTopics(handle, $0.baseAddress, $0.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeoutMilliseconds + 1000) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, "creating topics")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        guard eventError == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            throw KafkaError(code: eventError.rawValue, message: "creating topics: \(text)")
        }
        guard let result = rd_kafka_event_CreateTopics_result(event) else {
            throw KafkaError(message: "creating topics: no result")
        }
        var count = 0
        guard let topics = rd_kafka_CreateTopics_result_topics(result, &count) else { return [] }
        return (0..<count).compactMap { index in
            guard let topic = topics[index] else { return nil }
            return TopicCreation(
                topic: String(cString: rd_kafka_topic_result_name(topic)),
                error: rd_kafka_topic_result_error(topic),
                message: rd_kafka_topic_result_error_string(topic).map { String(cString: $0) } ?? ""
            )
        }
    }

    /// The cluster's brokers and topics (a request for all topics, which creates nothing).
    ///
    /// The corresponding C function is `rd_kafka_metadata`.
    func clusterMetadata(timeoutMilliseconds: Int32) throws(KafkaError) -> (brokers: Set<Int32>, topics: Set<String>) {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 1, nil, &metadata, timeoutMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(error, "reading the cluster's metadata")
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        var brokers: Set<Int32> = []
        var topics: Set<String> = []
        if let list = metadata.pointee.brokers {
            for index in 0..<Int(metadata.pointee.broker_cnt) { brokers.insert(list[index].id) }
        }
        if let list = metadata.pointee.topics {
            for index in 0..<Int(metadata.pointee.topic_cnt)
            where list[index].err == RD_KAFKA_RESP_ERR_NO_ERROR && list[index].partition_cnt > 0 {
                if let name = list[index].topic { topics.insert(String(cString: name)) }
            }
        }
        return (brokers, topics)
    }

    /// The controller broker's id, or -1 when unknown.
    ///
    /// The corresponding C function is `rd_kafka_controllerid`.
    func controllerID(timeoutMilliseconds: Int32) -> Int32 {
        rd_kafka_controllerid(handle, timeoutMilliseconds)
    }

    /// Asks the cluster for a topic's metadata; on brokers that auto-create topics, this creates it. Returns the
    /// topic's error in the metadata (`NO_ERROR` when it exists).
    ///
    /// The corresponding C function is `rd_kafka_metadata`.
    func topicMetadata(_ name: String, timeoutMilliseconds: Int32) -> rd_kafka_resp_err_t {
        guard let topic = rd_kafka_topic_new(handle, name, nil) else { return RD_KAFKA_RESP_ERR__INVALID_ARG }
        defer { rd_kafka_topic_destroy(topic) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 0, topic, &metadata, timeoutMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return error }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0, let topics = metadata.pointee.topics else {
            return RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
        }
        if topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR { return topics[0].err }
        return topics[0].partition_cnt > 0 ? RD_KAFKA_RESP_ERR_NO_ERROR : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
    }
}
