import CRdKafka

/// librdkafka's built-in mock cluster (`rd_kafka_mock_cluster_new`): real Kafka protocol over TCP on loopback, with
/// `brokers` brokers, for tests on machines where no broker can be installed.
///
/// Known limits of the mock: it accepts but does not store offsets sent with `send_offsets_to_transaction`, and does
/// not hide aborted transactions from `read_committed` consumers; plain group offset commits with metadata work.
/// The cluster lives as long as this object; it is not thread-safe.
public final class KafkaMockCluster {
    private let handle: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,...` of the brokers.
    public let bootstrapServers: String

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Starts a cluster of `brokers` brokers.
    public init(brokers: Int) throws {
        guard brokers >= 1, brokers <= 16 else { throw Failure(description: "brokers must be between 1 and 16") }
        var errorText = [CChar](repeating: 0, count: 512)
        guard let configuration = rd_kafka_conf_new() else { throw Failure(description: "rd_kafka_conf_new failed") }
        // The host client has no bootstrap servers of its own; keep its warning about that quiet.
        _ = rd_kafka_conf_set(configuration, "log_level", "3", &errorText, errorText.count)
        // The mock cluster needs a client instance to live in; it is otherwise unused.
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, configuration, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(configuration)
            throw Failure(description: "rd_kafka_new: \(bufferText(errorText))")
        }
        guard let cluster = rd_kafka_mock_cluster_new(handle, Int32(brokers)) else {
            rd_kafka_destroy(handle)
            throw Failure(description: "rd_kafka_mock_cluster_new failed")
        }
        self.handle = handle
        self.cluster = cluster
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    /// Creates a topic with the given partitions and replication factor.
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int) throws {
        let error = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw Failure(description: "topic \(name): \(String(cString: rd_kafka_err2str(error)))")
        }
    }

    /// Makes the next `count` produce requests the cluster receives (from any client, to any broker) fail with
    /// `code` (a Kafka error code: 21 `INVALID_REQUIRED_ACKS`, which librdkafka does not retry), each failing every
    /// message it carries.
    ///
    /// The corresponding C function is `rd_kafka_mock_push_request_errors_array`.
    public func failProduceRequests(_ count: Int, code: Int32) {
        let errors = [rd_kafka_resp_err_t](repeating: rd_kafka_resp_err_t(rawValue: code), count: count)
        errors.withUnsafeBufferPointer {
            // ApiKey 0: ProduceRequest.
            rd_kafka_mock_push_request_errors_array(cluster, 0, count, $0.baseAddress)
        }
    }

    /// Makes the cluster answer every metadata request for `topic` with Kafka error `code` (17:
    /// `TOPIC_EXCEPTION`, an invalid topic, which the client takes as permanent); 0 clears it. The mock still
    /// reports the topic's partitions with any error but `UNKNOWN_TOPIC_OR_PART` (3).
    ///
    /// The corresponding C function is `rd_kafka_mock_topic_set_error`.
    public func setTopicError(_ topic: String, code: Int32) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: code))
    }

    /// Takes a broker down (connections refused) or brings it back.
    public func setBroker(_ id: Int32, up: Bool) throws {
        let error = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw Failure(description: "broker \(id): \(String(cString: rd_kafka_err2str(error)))")
        }
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }
}
