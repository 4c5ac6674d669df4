import WALAlerts
import WALKafka

// Wired in here, where both are linked: WALAlerts knows no sink, and WALKafka (a layer below alerting) knows no
// alert.

/// Alerts to Kafka: one message per alert on `agent.alerts.v1` (the payload JSON, keyed by metric name, headers
/// `alert_id` and `severity`), acknowledged by the brokers before it counts as delivered.
final class KafkaAlertChannel: AlertChannel, @unchecked Sendable {
    let name = "kafka"
    private let producer: KafkaMessageProducer

    init(producer: KafkaMessageProducer) { self.producer = producer }

    func deliver(_ alert: Alert) throws {
        try producer.send(
            key: alert.metric,
            value: Array(alert.json().utf8),
            alertID: alert.id,
            severity: alert.severity.rawValue
        )
    }
}
