import CRdKafka
import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A consumer-group offset as Kafka stores it: the offset and the commit's metadata string.
struct CommittedOffset: Equatable {
    var offset: Int64
    var metadata: String
}

extension RDKafkaClient {
    /// Commits `offset` with `metadata` for partition 0 of `topic` in this consumer's group, synchronously.
    /// The client need not be subscribed: this is a plain (simple-consumer) offset commit.
    ///
    /// The corresponding C function is `rd_kafka_commit`.
    func commitOffset(topic: String, offset: Int64, metadata: String) throws(KafkaError) {
        guard let list = rd_kafka_topic_partition_list_new(1) else {
            throw KafkaError(message: "rd_kafka_topic_partition_list_new failed")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard let partition = rd_kafka_topic_partition_list_add(list, topic, 0) else {
            throw KafkaError(message: "rd_kafka_topic_partition_list_add failed")
        }
        partition.pointee.offset = offset
        // The list frees the metadata with free(): hand it a malloc'd copy.
        let bytes = Array(metadata.utf8)
        guard let copy = malloc(max(bytes.count, 1)) else { throw KafkaError(message: "out of memory") }
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { copy.copyMemory(from: base, byteCount: bytes.count) }
        }
        partition.pointee.metadata = copy
        partition.pointee.metadata_size = bytes.count
        let error = rd_kafka_commit(handle, list, 0)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error, "committing the cursor to \(topic)") }
        let partitionError = list.pointee.elems[0].err
        guard partitionError == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(partitionError, "committing the cursor to \(topic)")
        }
    }

    /// The offset committed by this consumer's group for partition 0 of `topic`, or nil when none is.
    ///
    /// The corresponding C function is `rd_kafka_committed`.
    func committedOffset(topic: String, timeoutMilliseconds: Int32) throws(KafkaError) -> CommittedOffset? {
        guard let list = rd_kafka_topic_partition_list_new(1) else {
            throw KafkaError(message: "rd_kafka_topic_partition_list_new failed")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard rd_kafka_topic_partition_list_add(list, topic, 0) != nil else {
            throw KafkaError(message: "rd_kafka_topic_partition_list_add failed")
        }
        let error = rd_kafka_committed(handle, list, timeoutMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error, "reading the cursor from \(topic)") }
        let element = list.pointee.elems[0]
        guard element.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(element.err, "reading the cursor from \(topic)")
        }
        guard element.offset >= 0 else { return nil }
        var metadata = ""
        if let pointer = element.metadata, element.metadata_size > 0 {
            metadata = String(
                decoding: UnsafeRawBufferPointer(start: pointer, count: element.metadata_size),
                as: UTF8.self
            )
        }
        return CommittedOffset(offset: element.offset, metadata: metadata)
    }
}

/// One group's offset commit for `RDKafkaClient.alterGroupOffsets`.
struct GroupOffsetCommit {
    var group: String
    var offset: Int64
    var metadata: String
}

extension RDKafkaClient {
    /// The offsets committed for partition 0 of `topic` by each of `groups` (nil: none committed), through the
    /// admin API on this client, whatever its kind: one client serves the cursors of any number of logs. The
    /// requests (one per group, as librdkafka 2.0 allows) are all in flight at once.
    ///
    /// The corresponding C function is `rd_kafka_ListConsumerGroupOffsets`.
    func groupOffsets(
        _ groups: [String],
        topic: String,
        timeoutMilliseconds: Int32
    ) throws(KafkaError) -> [String: CommittedOffset?] {
        guard !groups.isEmpty else { return [:] }
        guard let queue = rd_kafka_queue_new(handle) else { throw KafkaError(message: "rd_kafka_queue_new failed") }
        defer { rd_kafka_queue_destroy(queue) }
        let options = try adminOptions(RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeoutMilliseconds)
        defer { rd_kafka_AdminOptions_destroy(options) }
        for group in groups {
            guard let list = rd_kafka_topic_partition_list_new(1) else { throw KafkaError(message: "out of memory") }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            rd_kafka_topic_partition_list_add(list, topic, 0)
            var request: [OpaquePointer?] = [rd_kafka_ListConsumerGroupOffsets_new(group, list)]
            defer { rd_kafka_ListConsumerGroupOffsets_destroy(request[0]) }
            request.withUnsafeMutableBufferPointer {
                rd_kafka_ListConsumerGroupOffsets(handle, $0.baseAddress, 1, options, queue)
            }
        }
        var found: [String: CommittedOffset?] = [:]
        try forEachGroupResult(queue, requests: groups.count, timeoutMilliseconds, "reading the cursor") { event in
            var count = 0
            guard let result = rd_kafka_event_ListConsumerGroupOffsets_result(event),
                let results = rd_kafka_ListConsumerGroupOffsets_result_groups(result, &count)
            else { return [] }
            return (0..<count).compactMap { results[$0] }
        } _: { name, groupResult throws(KafkaError) in
            guard let partitions = rd_kafka_group_result_partitions(groupResult), partitions.pointee.cnt > 0 else {
                found[name] = .some(nil)
                return
            }
            let element = partitions.pointee.elems[0]
            guard element.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(element.err, "reading the cursor of group \(name) from \(topic)")
            }
            guard element.offset >= 0 else {
                found[name] = .some(nil)
                return
            }
            var metadata = ""
            if let pointer = element.metadata, element.metadata_size > 0 {
                metadata = String(
                    decoding: UnsafeRawBufferPointer(start: pointer, count: element.metadata_size),
                    as: UTF8.self
                )
            }
            found[name] = CommittedOffset(offset: element.offset, metadata: metadata)
        }
        return found
    }

    /// Commits an offset with metadata for partition 0 of `topic` in each commit's group, through the admin API
    /// (all requests in flight at once). Throws the first failure; the others may have been committed.
    ///
    /// The corresponding C function is `rd_kafka_AlterConsumerGroupOffsets`.
    func alterGroupOffsets(
        _ commits: [GroupOffsetCommit],
        topic: String,
        timeoutMilliseconds: Int32
    ) throws(KafkaError) {
        guard !commits.isEmpty else { return }
        guard let queue = rd_kafka_queue_new(handle) else { throw KafkaError(message: "rd_kafka_queue_new failed") }
        defer { rd_kafka_queue_destroy(queue) }
        let options = try adminOptions(RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, timeoutMilliseconds)
        defer { rd_kafka_AdminOptions_destroy(options) }
        for commit in commits {
            guard let list = rd_kafka_topic_partition_list_new(1),
                let partition = rd_kafka_topic_partition_list_add(list, topic, 0)
            else { throw KafkaError(message: "out of memory") }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            partition.pointee.offset = commit.offset
            // The list frees the metadata with free(): hand it a malloc'd copy.
            let bytes = Array(commit.metadata.utf8)
            guard let copy = malloc(max(bytes.count, 1)) else { throw KafkaError(message: "out of memory") }
            bytes.withUnsafeBytes { source in
                if let base = source.baseAddress { copy.copyMemory(from: base, byteCount: bytes.count) }
            }
            partition.pointee.metadata = copy
            partition.pointee.metadata_size = bytes.count
            var request: [OpaquePointer?] = [rd_kafka_AlterConsumerGroupOffsets_new(commit.group, list)]
            defer { rd_kafka_AlterConsumerGroupOffsets_destroy(request[0]) }
            request.withUnsafeMutableBufferPointer {
                rd_kafka_AlterConsumerGroupOffsets(handle, $0.baseAddress, 1, options, queue)
            }
        }
        try forEachGroupResult(queue, requests: commits.count, timeoutMilliseconds, "committing the cursor") { event in
            var count = 0
            guard let result = rd_kafka_event_AlterConsumerGroupOffsets_result(event),
                let results = rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &count)
            else { return [] }
            return (0..<count).compactMap { results[$0] }
        } _: { name, groupResult throws(KafkaError) in
            if let partitions = rd_kafka_group_result_partitions(groupResult), partitions.pointee.cnt > 0,
                partitions.pointee.elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR
            {
                throw KafkaError(partitions.pointee.elems[0].err, "committing the cursor of group \(name) to \(topic)")
            }
        }
    }

    private func adminOptions(_ operation: rd_kafka_admin_op_t, _ timeout: Int32) throws(KafkaError) -> OpaquePointer {
        guard let options = rd_kafka_AdminOptions_new(handle, operation) else {
            throw KafkaError(message: "rd_kafka_AdminOptions_new failed")
        }
        var errorText = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout, &errorText, errorText.count)
        return options
    }

    /// Takes one result per request off `queue` and hands each group's result to `body`, by group name; a group's
    /// own error is thrown as `what` failed. After a failure it keeps taking the results still due (a queue destroyed
    /// under requests in flight is where librdkafka 2.0's admin requests are fragile), then throws the first one.
    private func forEachGroupResult(
        _ queue: OpaquePointer,
        requests: Int,
        _ timeout: Int32,
        _ what: String,
        _ groupResults: (OpaquePointer) -> [OpaquePointer],
        _ body: (_ name: String, _ groupResult: OpaquePointer) throws(KafkaError) -> Void
    ) throws(KafkaError) {
        var failure: KafkaError?
        var answered = 0
        defer { drainAdminEvents(queue, remaining: requests - answered, timeout) }
        for _ in 0..<requests {
            let event: OpaquePointer
            do {
                event = try awaitAdminEvent(queue, timeout, what)
            } catch {
                if error.code != RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue { answered += 1 }
                failure = failure ?? error
                continue
            }
            answered += 1
            defer { rd_kafka_event_destroy(event) }
            guard failure == nil else { continue }
            for groupResult in groupResults(event) {
                let name = String(cString: rd_kafka_group_result_name(groupResult))
                do throws(KafkaError) {
                    if let error = rd_kafka_group_result_error(groupResult) {
                        throw KafkaError(
                            code: rd_kafka_error_code(error).rawValue,
                            message: "\(what) of group \(name): " + String(cString: rd_kafka_error_string(error))
                        )
                    }
                    try body(name, groupResult)
                } catch {
                    failure = error
                    break
                }
            }
        }
        if let failure { throw failure }
    }

    /// Takes the results still due off `queue` (waiting up to the request timeout and a grace for them).
    private func drainAdminEvents(_ queue: OpaquePointer, remaining: Int, _ timeout: Int32) {
        guard remaining > 0 else { return }
        let deadline = monotonicNanos() + UInt64(max(timeout, 0) + 5000) * 1_000_000
        var left = remaining
        while left > 0 && monotonicNanos() < deadline {
            guard let event = rd_kafka_queue_poll(queue, 100) else { continue }
            rd_kafka_event_destroy(event)
            left -= 1
        }
    }

    /// The next admin result on `queue`, with its request-level error thrown.
    private func awaitAdminEvent(
        _ queue: OpaquePointer,
        _ timeout: Int32,
        _ what: String
    ) throws(KafkaError) -> OpaquePointer {
        guard let event = rd_kafka_queue_poll(queue, timeout + 1000) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, what)
        }
        let error = rd_kafka_event_error(event)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            rd_kafka_event_destroy(event)
            throw KafkaError(code: error.rawValue, message: "\(what): \(text)")
        }
        return event
    }
}
