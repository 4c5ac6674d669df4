import CRdKafka

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
