import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

func withCollector<T>(
    agentID: String? = "agent-test",
    _ adjust: (inout MetricsConfiguration) -> Void = { _ in },
    _ body: (MetricsCollector, String) throws -> T
) throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var configuration = MetricsConfiguration(directory: directory.file("log"), agentID: agentID)
    configuration.log.sealDelayMilliseconds = 5
    adjust(&configuration)
    let collector = try MetricsCollector(configuration: configuration)
    defer { try? collector.close() }
    return try body(collector, directory.file("log"))
}

func withCollector<T>(
    agentID: String? = "agent-test",
    _ body: (MetricsCollector, String) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var configuration = MetricsConfiguration(directory: directory.file("log"), agentID: agentID)
    configuration.log.sealDelayMilliseconds = 5
    let collector = try MetricsCollector(configuration: configuration)
    defer { try? collector.close() }
    return try await body(collector, directory.file("log"))
}

/// Every metric record of a log, decoded; fails the test on anything else.
func readMetrics(_ path: String, from seq: UInt64 = 1) throws -> [MetricRecord] {
    var records: [MetricRecord] = []
    try MetricsReader(path: path, from: seq).read { entry in
        switch entry {
        case .metric(let record): records.append(record)
        default: Issue.record("unexpected entry \(entry)")
        }
        return true
    }
    return records
}

func withTemporaryDirectory<T>(_ body: (TemporaryDirectory) throws -> T) throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try body(directory)
}
