import Foundation
import Testing
import WALTestKit

@testable import WALKafka

@Suite struct KafkaConfigurationTests {
    @Test func propertiesPassThroughFromTheEnvironmentAndTheCommandLineAfterTheDefaults() throws {
        var configuration = KafkaSinkConfiguration(bootstrapServers: "b:9092", deadLetterFile: "/dev/null")
        configuration.apply(environment: [
            "KAFKA_PROPERTY_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_PROPERTY_SASL_MECHANISM": "PLAIN",
            "KAFKA_METRICS_COMPRESSION": "zstd",
            "UNRELATED": "x",
        ])
        configuration.properties.append(try #require(KafkaProperty(assignment: "kafka.linger.ms=50")))
        let properties = configuration.producerProperties()
        #expect(properties.contains { $0 == ("security.protocol", "SASL_SSL") })
        #expect(properties.contains { $0 == ("sasl.mechanism", "PLAIN") })
        #expect(properties.contains { $0 == ("compression.type", "zstd") })
        #expect(
            properties.contains { $0 == ("acks", "all") }
                && properties.contains { $0 == ("enable.idempotence", "true") }
        )
        // Later wins: the user's linger.ms comes after the default.
        #expect(properties.last { $0.0 == "linger.ms" }?.1 == "50")
        // The cursor client gets the security settings but not producer-only ones.
        let cursor = configuration.cursorClientProperties(group: "g")
        #expect(cursor.contains { $0 == ("security.protocol", "SASL_SSL") })
        #expect(!cursor.contains { $0.0 == "linger.ms" || $0.0 == "acks" })
    }

    @Test(arguments: ["novalue", "=x", "kafka.=x"])
    func malformedAssignmentsAreRefused(_ text: String) {
        #expect(KafkaProperty(assignment: text) == nil)
    }

    @Test func secretValuesAreRedactedForLogs() {
        var configuration = KafkaSinkConfiguration(bootstrapServers: "b:9092", deadLetterFile: "/dev/null")
        configuration.properties = [
            KafkaProperty(name: "sasl.password", value: "hunter2"),
            KafkaProperty(name: "ssl.key.password", value: "s3cret"),
            KafkaProperty(name: "sasl.oauthbearer.config", value: "principal=x secret=y"),
            KafkaProperty(name: "sasl.username", value: "metrics"),
        ]
        let shown = configuration.redactedProperties.joined(separator: " ")
        #expect(!shown.contains("hunter2") && !shown.contains("s3cret") && !shown.contains("secret=y"))
        #expect(shown.contains("sasl.password=***") && shown.contains("sasl.username=metrics"))
    }

    @Test func theCursorMetadataRoundTripsAndForeignCommitsAreNotMistakenForIt() throws {
        let cursor = KafkaCursor(logID: "0f6c1c2e-7d07-48f3-a927-4a91de8049ac", seq: 1234)
        #expect(KafkaCursor(offset: 1234, metadata: cursor.metadata) == cursor)
        #expect(KafkaCursor(offset: 1235, metadata: cursor.metadata) == nil, "offset and metadata disagree")
        #expect(KafkaCursor(offset: 1234, metadata: "") == nil)
        #expect(KafkaCursor(offset: 1234, metadata: "{\"format\":\"other\"}") == nil)
    }

    @Test func shipWithoutAnySinkIsAUsageError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_URL"] = nil
        environment["KAFKA_BOOTSTRAP_SERVERS"] = nil
        let result = try walctl(["ship", "--dir", directory.path], environment: environment)
        #expect(result.status == 2)
        #expect(result.err.contains("--kafka"))
        let bad = try walctl(["ship", "--dir", directory.path, "--kafka", "x:1", "--kafka-property", "oops"])
        #expect(bad.status == 2)
    }

    @Test func aBadPropertyIsFatalAndItsSecretValueIsNeverPrinted() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "10"]).status == 0)
        let result = try walctl([
            "ship", "--dir", path, "--kafka", "127.0.0.1:1", "--kafka-property", "sasl.password=hunter2",
            "--kafka-property", "linger.ms=soon", "--drain",
        ])
        #expect(result.status == 1)
        #expect(result.err.contains("Kafka property linger.ms"))
        #expect(!result.err.contains("hunter2"))
    }
}
