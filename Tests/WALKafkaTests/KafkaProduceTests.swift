import CRdKafka
import Logging
import Testing
import WALCore

@testable import WALKafka

/// `RDKafkaClient.produce` against librdkafka's mock cluster in this process.
@Suite struct KafkaProduceTests {
    /// librdkafka 2.0.2 issue 4627: `rd_kafka_produceva` frees the headers list it built from single headers twice
    /// when the partitioner refuses the message (a topic known not to exist, or in an error state such as an
    /// authorization failure), and the process crashes: a C program doing this with `RD_KAFKA_VTYPE_HEADER`
    /// against the same mock died with SIGSEGV on the first refused message. Our produce hands librdkafka a list
    /// of its own (`RD_KAFKA_VTYPE_HEADERS`), which stays ours on that path: the message is refused, every time,
    /// and the process lives on.
    @Test func aTopicThatRefusesMessagesReturnsItsErrorWithoutFreeingTheHeadersTwice() throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("refused", partitions: 1, replicationFactor: 1)
        try cluster.createTopic("accepted", partitions: 1, replicationFactor: 1)
        // An invalid topic, permanently: the client marks it as not existing at once, and its partitioner refuses
        // every message (the mock reports partitions for a topic in any other error state, so the client would
        // queue the messages instead).
        cluster.setTopicError("refused", code: RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION.rawValue)
        let client = try RDKafkaClient.make(
            RD_KAFKA_PRODUCER,
            properties: [("bootstrap.servers", cluster.bootstrapServers), ("log_level", "3")],
            logger: Logger(label: "test")
        )
        // The client's handle of the topic learns the error from the topic's metadata.
        let refused = try #require(client.topicHandle("refused"))
        #expect(client.topicMetadata("refused", timeoutMilliseconds: 10_000) == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION)
        #expect(client.topicMetadata("accepted", timeoutMilliseconds: 10_000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        let value = Array("{}log-1042".utf8)
        let headers = [
            RDKafkaHeaderSlice(name: "log_id", value: 2..<7), RDKafkaHeaderSlice(name: "wal_seq", value: 7..<9),
            RDKafkaHeaderSlice(name: "event_id", value: 0..<2), RDKafkaHeaderSlice(name: "metric_type", value: 0..<0),
        ]
        client.beginBatch()
        var errors: [rd_kafka_resp_err_t] = []
        for index in 0..<500 {
            errors.append(produce(client, topic: refused, value: value, headers: headers, index: index))
        }
        #expect(errors.allSatisfy { $0 == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC })
        #expect(client.context.batches.first?.outstanding == 0)
        // The same client still delivers to a topic that accepts messages, headers and all.
        let accepted = try #require(client.topicHandle("accepted"))
        client.beginBatch()
        let error = produce(client, topic: accepted, value: value, headers: headers, index: 0)
        #expect(error == RD_KAFKA_RESP_ERR_NO_ERROR)
        let delivered = client.awaitDeliveries(
            deadlineNanos: monotonicNanos() + 30_000_000_000,
            now: { monotonicNanos() },
            interrupted: { false }
        )
        #expect(delivered)
        #expect(client.failures.isEmpty)
    }

    private func produce(
        _ client: RDKafkaClient,
        topic: OpaquePointer,
        value: [UInt8],
        headers: [RDKafkaHeaderSlice],
        index: Int
    ) -> rd_kafka_resp_err_t {
        value.withUnsafeBytes { bytes in
            headers.withUnsafeBufferPointer { headerSlices in
                client.produce(
                    topic: topic,
                    key: UnsafeRawBufferPointer(rebasing: bytes[2..<7]),
                    bytes: bytes,
                    value: 0..<2,
                    headers: headerSlices,
                    timestampMilliseconds: 1_700_000_000_000,
                    index: index
                )
            }
        }
    }
}
