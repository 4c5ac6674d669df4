import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALKafka

/// The bootstrap servers of the test cluster: the mock started by tools/test.sh, or a real broker when
/// KAFKA_BOOTSTRAP_SERVERS was given. A test without it is reported as skipped.
let bootstrap = ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"]
let hasBootstrap = bootstrap != nil
let kafkaMockPath = BuiltProducts.executable("kafka-mock")

/// A topic prefix of its own, so that counts in one test are not disturbed by another.
func uniquePrefix() -> String { "walctl-test-\(UUID().uuidString.prefix(8).lowercased()).metrics" }

/// One message as kcat read it.
struct ConsumedMessage {
    var topic: String
    var partition: Int
    var key: String
    var headers: [String: String]
    var value: String

    var seq: UInt64 { UInt64(headers["wal_seq"] ?? "") ?? 0 }
}

/// Every message of every category topic under `prefix`, read by kcat from the beginning to the end.
func consumeAll(_ servers: String, prefix: String) throws -> [ConsumedMessage] {
    var messages: [ConsumedMessage] = []
    for category in MetricCategory.allCases {
        let topic = category.topic(prefix: prefix)
        let result = try kcat([
            "-C", "-b", servers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p\t%k\t%h\t%s\n",
        ])
        // A topic that never received a record may not exist: kcat then reports an error; nothing to count.
        for line in result.out.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count == 4, let partition = Int(fields[0]) else {
                Issue.record("unreadable kcat line: \(line.prefix(200))")
                continue
            }
            var headers: [String: String] = [:]
            for pair in fields[2].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { headers[String(parts[0])] = String(parts[1]) }
            }
            messages.append(
                ConsumedMessage(
                    topic: topic,
                    partition: partition,
                    key: String(fields[1]),
                    headers: headers,
                    value: String(fields[3])
                )
            )
        }
    }
    return messages
}

/// Reads the Kafka cursor of a log as the shipper would (a separate client, same consumer group).
final class CursorProbe {
    let sink: KafkaSink
    let logID: LogID

    init(servers: String, path: String, prefix: String) throws {
        var configuration = KafkaSinkConfiguration(bootstrapServers: servers, deadLetterFile: "/dev/null")
        configuration.topicPrefix = prefix
        configuration.requestTimeoutMilliseconds = 3000
        var logger = Logger(label: "probe")
        logger.logLevel = .critical
        sink = KafkaSink(configuration: configuration, logger: logger)
        logID = try LogDirectory(path: path).readMeta().logID
    }

    /// The committed position, or nil while Kafka cannot answer.
    func committed() -> UInt64? { try? sink.committedSeq(logID: logID) }
}
