import CRdKafka
import WALCore
import WALMetrics

/// A bare librdkafka producer with the sink's producer settings, sending already-rendered messages: the baseline
/// the Kafka shipper is measured against in `Benchmarks/WALKafkaBenchmarks` (the same messages, without the log,
/// decoding, rendering or cursor commits).
@_spi(Benchmarks)
public final class KafkaBaselineProducer {
    /// One message exactly as `KafkaSink` would produce it.
    public struct Message {
        var topic: [CChar]
        var key: [UInt8]?
        var value: [UInt8]
        var headers: [RDKafkaHeader]
        var timestampMilliseconds: Int64
    }

    private let client: RDKafkaClient

    public init(configuration: KafkaSinkConfiguration) throws {
        client = try RDKafkaClient.make(
            RD_KAFKA_PRODUCER,
            properties: configuration.producerProperties(),
            logger: .init(label: "baseline")
        )
    }

    /// The messages the sink would send for `records`.
    public static func messages(
        for records: [MetricRecord],
        logID: LogID,
        configuration: KafkaSinkConfiguration
    ) -> [Message] {
        records.map { record in
            let eventID = Envelope.eventID(logID: logID, seq: record.seq)
            var value: [UInt8] = []
            Envelope.render(
                record,
                logID: logID,
                sourceService: configuration.sourceService,
                eventID: eventID,
                into: &value
            )
            return Message(
                topic: Array(configuration.topic(for: record.category).utf8CString),
                key: record.agentID.map { Array($0.utf8) },
                value: value,
                headers: [
                    RDKafkaHeader(name: "log_id", value: logID.description),
                    RDKafkaHeader(name: "wal_seq", value: String(record.seq)),
                    RDKafkaHeader(name: "event_id", value: eventID),
                    RDKafkaHeader(name: "metric_type", value: record.type.description),
                ],
                timestampMilliseconds: record.timestampNanos / 1_000_000
            )
        }
    }

    /// Sends the messages in batches of `batchSize`, waiting for every delivery report of a batch before the next
    /// (as the shipper does). Throws on the first failed delivery.
    public func send(_ messages: [Message], batchSize: Int) throws {
        var start = 0
        while start < messages.count {
            let end = min(messages.count, start + batchSize)
            client.beginBatch()
            for index in start..<end {
                let message = messages[index]
                let error = message.topic.withUnsafeBufferPointer { topic in
                    guard let topicName = topic.baseAddress else { return RD_KAFKA_RESP_ERR__INVALID_ARG }
                    return message.value.withUnsafeBytes { value in
                        (message.key ?? []).withUnsafeBytes { key in
                            client.produce(
                                topic: topicName,
                                key: message.key == nil ? nil : key,
                                value: value,
                                headers: message.headers,
                                timestampMilliseconds: message.timestampMilliseconds,
                                index: index - start
                            )
                        }
                    }
                }
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error, "baseline produce") }
            }
            let delivered = client.awaitDeliveries(
                deadlineNanos: monotonicNanos() + 60_000_000_000,
                now: { monotonicNanos() },
                interrupted: { false }
            )
            guard delivered, client.context.failures.isEmpty else {
                throw KafkaError(message: "baseline delivery failed")
            }
            start = end
        }
    }
}
