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
        var key: String?
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
                key: record.agentID,
                value: value,
                headers: KafkaSink.headers(
                    logID: logID.description,
                    seq: record.seq,
                    eventID: eventID,
                    type: record.type
                ),
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
                let error = client.produce(
                    topic: message.topic,
                    key: message.key,
                    value: message.value,
                    headers: message.headers,
                    timestampMilliseconds: message.timestampMilliseconds,
                    index: index - start
                )
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error, "baseline produce") }
            }
            let delivered = client.awaitDeliveries(
                deadlineNanos: monotonicNanos() + 60_000_000_000,
                now: { monotonicNanos() },
                interrupted: { false }
            )
            guard delivered, client.failures.isEmpty else {
                throw KafkaError(message: "baseline delivery failed")
            }
            start = end
        }
    }
}
