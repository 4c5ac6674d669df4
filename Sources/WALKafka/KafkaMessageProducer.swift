import CRdKafka
import Logging
import WALCore

/// Produces one message at a time to a topic and waits until the brokers acknowledged it (`acks=all`, idempotent
/// producer): the producer of the alert channel (`agent.alerts.v1`). A fatal producer error drops the producer;
/// the next `send` builds a new one.
///
/// Blocking, on the caller's thread (which also serves the delivery report). Not thread-safe.
public final class KafkaMessageProducer: @unchecked Sendable {
    public let configuration: KafkaSinkConfiguration
    public let topic: String
    private let topicName: [CChar]
    private let logger: Logger
    private var producer: RDKafkaClient?

    public init(configuration: KafkaSinkConfiguration, topic: String, logger: Logger) {
        self.configuration = configuration
        self.topic = topic
        self.topicName = Array(topic.utf8CString)
        self.logger = logger
    }

    /// Sends one message with the headers `alert_id` and `severity`, keyed by `key`; returns once it is
    /// acknowledged, or throws `KafkaError`.
    public func send(key: String?, value: [UInt8], alertID: String, severity: String) throws {
        let client: RDKafkaClient
        if let producer {
            client = producer
        } else {
            client = try RDKafkaClient.make(
                RD_KAFKA_PRODUCER,
                properties: configuration.producerProperties(),
                logger: logger
            )
            producer = client
        }
        client.beginBatch()
        let error = client.produce(
            topic: topicName,
            key: key,
            value: value,
            headers: [
                RDKafkaHeader(name: "alert_id", value: alertID), RDKafkaHeader(name: "severity", value: severity),
            ],
            timestampMilliseconds: Int64(bitPattern: wallClockNanos()) / 1_000_000,
            index: 0
        )
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error, "producing to \(topic)") }
        let deadline = monotonicNanos() + UInt64(configuration.messageTimeoutMilliseconds + 10_000) * 1_000_000
        let complete = client.awaitDeliveries(
            deadlineNanos: deadline,
            now: { monotonicNanos() },
            interrupted: { false }
        )
        if let fatal = client.fatalError {
            producer = nil
            throw fatal
        }
        guard complete else {
            client.purge()
            throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "delivery to \(topic) timed out")
        }
        if let failure = client.failures.first {
            throw KafkaError(failure.error, "delivery to \(topic) failed")
        }
    }
}
