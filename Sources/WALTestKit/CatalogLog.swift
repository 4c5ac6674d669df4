import Foundation
import WALCore
import WALMetrics
import WALTraffic

/// A log of catalog traffic in a fresh temporary directory (two agent threads' workflows), with its records decoded:
/// the input of the shipping benchmarks. Removed when released.
public final class CatalogLog: @unchecked Sendable {
    public let path: String
    public let records: [MetricRecord]
    public let logID: LogID

    public init(records count: Int, prefix: String = "walctl-catalog") throws {
        path = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for counter in 0..<UInt64(count / 2) {
            AgentTraffic(thread: 0).emit(counter, into: collector)
            AgentTraffic(thread: 1).emit(counter, into: collector)
        }
        try collector.close()
        logID = try LogDirectory(path: path).readMeta().logID
        records = try logRecords(path)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
