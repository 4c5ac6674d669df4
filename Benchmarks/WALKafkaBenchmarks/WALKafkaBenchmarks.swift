import Benchmark
import Foundation
import Logging
import Synchronization
import WALCore
@_spi(Benchmarks) import WALKafka
import WALMetrics
import WALShipping
import WALTestKit

// End-to-end ship throughput into Kafka (read the log, decode, render the envelope and event id, produce with
// acks=all and idempotence, wait for every delivery report, commit the cursor to Kafka per batch) against, in the
// same run, a bare librdkafka producer sending the same, already-rendered messages with the same settings and
// batches to the same cluster.
//
// The cluster: KAFKA_BOOTSTRAP_SERVERS when set, else librdkafka's mock cluster (3 brokers) in this process.
// Mallocs count every thread of the process (librdkafka's too): divided by the records of an iteration (200,000),
// the allocations per shipped record; the bare producer's count is librdkafka's own share.
// Run: cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target WALKafkaBenchmarks

let recordCount = 200_000
let batchSize = 10_000

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .peakMemoryResident],
        timeUnits: .microseconds,
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(60),
        maxIterations: 5
    )

    Benchmark("ship to Kafka end to end (x1000 messages)") { benchmark, fixture in
        let log = try CatalogLog(records: recordCount, prefix: "walctl-kafkabench")
        var settings = ShipperConfiguration()
        settings.batchSize = batchSize
        settings.catchUpBatchSize = batchSize
        settings.pollMilliseconds = 1
        settings.drainThroughSeq = UInt64(recordCount)
        let sink = KafkaSink(configuration: fixture.configuration(log: log), logger: quietLogger)
        let shipper = Shipper(directory: log.path, sink: sink, configuration: settings, logger: quietLogger)
        benchmark.startMeasurement()
        try shipper.runBlocking()
        benchmark.stopMeasurement()
        precondition(shipper.statistics.recordsShipped == UInt64(recordCount))
    } setup: {
        try Cluster.shared()
    }

    // Where the shipper's time goes beyond the producer's: decoding the log, event ids, envelopes.
    Benchmark("decode the log (x1000 records)") { benchmark, fixture in
        let log = try CatalogLog(records: recordCount, prefix: "walctl-kafkabench")
        benchmark.startMeasurement()
        blackHole(try logRecords(log.path).count)
        benchmark.stopMeasurement()
    } setup: {
        try Cluster.shared()
    }

    Benchmark("event ids only (x1000 records)") { benchmark, fixture in
        let log = try CatalogLog(records: recordCount, prefix: "walctl-kafkabench")
        benchmark.startMeasurement()
        var total = 0
        for record in log.records { total &+= Envelope.eventID(logID: log.logID, seq: record.seq).utf8.count }
        benchmark.stopMeasurement()
        blackHole(total)
    } setup: {
        try Cluster.shared()
    }

    Benchmark("envelopes only (x1000 records)") { benchmark, fixture in
        let log = try CatalogLog(records: recordCount, prefix: "walctl-kafkabench")
        benchmark.startMeasurement()
        var output: [UInt8] = []
        var total = 0
        for record in log.records {
            output.removeAll(keepingCapacity: true)
            Envelope.render(record, logID: log.logID, eventID: "00000000-0000-0000-0000-000000000000", into: &output)
            total &+= output.count
        }
        benchmark.stopMeasurement()
        blackHole(total)
    } setup: {
        try Cluster.shared()
    }

    Benchmark("bare librdkafka producer, same messages (x1000 messages)") { benchmark, fixture in
        let log = try CatalogLog(records: recordCount, prefix: "walctl-kafkabench")
        let configuration = fixture.configuration(log: log)
        let messages = KafkaBaselineProducer.messages(for: log.records, logID: log.logID, configuration: configuration)
        let producer = try KafkaBaselineProducer(configuration: configuration)
        benchmark.startMeasurement()
        try producer.send(messages, batchSize: batchSize)
        benchmark.stopMeasurement()
    } setup: {
        try Cluster.shared()
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    return logger
}()

/// The cluster both benchmarks send to, started once.
final class Cluster: @unchecked Sendable {
    let servers: String
    private let mock: KafkaMockCluster?
    private static let instance = Mutex<Cluster?>(nil)

    private init() throws {
        if let servers = ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"] {
            self.servers = servers
            mock = nil
        } else {
            let cluster = try KafkaMockCluster(brokers: 3)
            servers = cluster.bootstrapServers
            mock = cluster
        }
    }

    static func shared() throws -> Cluster {
        try instance.withLock { existing in
            if let existing { return existing }
            let created = try Cluster()
            existing = created
            return created
        }
    }

    func configuration(log: CatalogLog) -> KafkaSinkConfiguration {
        var configuration = KafkaSinkConfiguration(
            bootstrapServers: servers,
            deadLetterFile: log.path + "/dead-letters/kafka.jsonl"
        )
        configuration.topicPrefix = "walctl-bench.metrics"
        return configuration
    }
}
