import Foundation
import Testing
import WALCore
import WALMetrics

@Suite struct ConfigurationTests {
    @Test func everyVariableIsRead() throws {
        let configuration = try MetricsConfiguration.fromEnvironment([
            "METRICS_ENABLED": "true",
            "METRICS_DIR": "/var/lib/agent/metrics",
            "METRICS_AGENT_ID": "agent-7",
            "METRICS_DURABILITY": "periodic:250",
            "METRICS_MAX_BYTES": "2G",
            "METRICS_WHEN_FULL": "block:500",
            "METRICS_BATCH_SIZE": "500",
            "METRICS_FLUSH_INTERVAL_MS": "200",
        ])
        #expect(configuration.enabled)
        #expect(configuration.directory == "/var/lib/agent/metrics")
        #expect(configuration.agentID == "agent-7")
        #expect(configuration.log.durability == .periodic(milliseconds: 250))
        #expect(configuration.log.maxTotalBytes == 2 << 30)
        #expect(configuration.log.whenFull == .block(timeoutMilliseconds: 500))
        #expect(configuration.batchSize == 500)
        #expect(configuration.flushIntervalMilliseconds == 200)
    }

    @Test func defaultsAreTheDesigns() throws {
        let configuration = try MetricsConfiguration.fromEnvironment(["METRICS_DIR": "/tmp/x"])
        #expect(configuration.batchSize == 100)
        #expect(configuration.flushIntervalMilliseconds == 1000)
        #expect(configuration.log.durability == .processCrash)
        #expect(configuration.log.whenFull == .dropNewest)
        #expect(configuration.log.maxTotalBytes == nil)
    }

    @Test(arguments: [
        ("METRICS_ENABLED", "maybe", "true, false"),
        ("METRICS_DURABILITY", "fast", "process, periodic:MS"),
        ("METRICS_DURABILITY", "periodic:0", "periodic:MS"),
        ("METRICS_MAX_BYTES", "lots", "a positive byte count"),
        ("METRICS_MAX_BYTES", "-5", "a positive byte count"),
        ("METRICS_WHEN_FULL", "panic", "drop-newest, block:MS"),
        // Values the writer would overflow on (a trap in the sealer, or when the log reaches its size limit).
        ("METRICS_DURABILITY", "periodic:19000000000000", "MS from 1 to 3600000"),
        ("METRICS_WHEN_FULL", "block:20000000000000", "MS from 0 to 86400000"),
        ("METRICS_WHEN_FULL", "block:99999999999999999", "MS from 0 to 86400000"),
        ("METRICS_BATCH_SIZE", "0", "1 to 100000"),
        ("METRICS_FLUSH_INTERVAL_MS", "soon", "1 to 3600000"),
        ("METRICS_AGENT_ID", String(repeating: "a", count: 101), "1 to 100 bytes"),
    ])
    func invalidValuesNameTheVariableAndTheAcceptedValues(variable: String, value: String, accepted: String) {
        var environment = ["METRICS_DIR": "/tmp/x"]
        environment[variable] = value
        #expect {
            _ = try MetricsConfiguration.fromEnvironment(environment)
        } throws: { error in
            let message = (error as? MetricsError)?.message ?? ""
            return message.contains(variable) && message.contains(accepted)
        }
    }

    @Test func aMissingDirectoryIsAnErrorOnlyWhenEnabled() throws {
        #expect(throws: MetricsError.self) { _ = try MetricsConfiguration.fromEnvironment([:]) }
        #expect(try MetricsConfiguration.fromEnvironment(["METRICS_ENABLED": "0"]).enabled == false)
    }

    @Test func aTooSmallSizeLimitIsRefusedUpFront() {
        #expect(throws: MetricsError.self) {
            _ = try MetricsConfiguration.fromEnvironment(["METRICS_DIR": "/tmp/x", "METRICS_MAX_BYTES": "1M"])
        }
    }

    @Test func collectorFromEnvironmentWritesWhereItSays() throws {
        let directory = try TemporaryDirectoryForConfiguration()
        defer { directory.remove() }
        let collector = try MetricsCollector.fromEnvironment([
            "METRICS_DIR": directory.path + "/log", "METRICS_AGENT_ID": "env-agent", "METRICS_DURABILITY": "sync",
        ])
        #expect(collector.recordCounter("state_operation_count").isRecorded)
        #expect(collector.log?.statistics.durableSeq == 1, "sync durability: durable on return")
        try collector.close()
        #expect(try readMetrics(directory.path + "/log").first?.agentID == "env-agent")
    }
}

struct TemporaryDirectoryForConfiguration {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "walctl-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
