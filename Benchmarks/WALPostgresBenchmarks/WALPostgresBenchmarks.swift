import Benchmark
import Foundation
import Logging
import WALCore
import WALMetrics
import WALPostgres
import WALShipping
import WALTestKit

// End-to-end ship throughput into PostgreSQL (read the log, decode, binary COPY per category table, cursor in the
// same transaction) against, in the same run, a plain binary COPY of the same rows from the same process; with the
// allocations of each (scaled by 1000 like the time: allocations per row = the reported count x 1000 / recordCount).
//
// Needs a server: tools/bench-postgres.sh starts a throwaway one and runs this target.

let recordCount = 200_000
let batchSize = 10_000

let benchmarks: @Sendable () -> Void = {
    guard let server = ProcessInfo.processInfo.environment["WALCTL_BENCH_POSTGRES"] else {
        print("WALCTL_BENCH_POSTGRES is not set: run tools/bench-postgres.sh")
        return
    }
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .microseconds,
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(60),
        maxIterations: 5
    )

    Benchmark("ship to PostgreSQL end to end (x1000 rows)") { benchmark, log in
        let database = try Database(server: server)
        var settings = ShipperConfiguration()
        settings.batchSize = batchSize
        settings.catchUpBatchSize = batchSize
        settings.pollMilliseconds = 1
        settings.drainThroughSeq = UInt64(recordCount)
        let shipper = Shipper(
            directory: log.path,
            sink: PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo)),
            configuration: settings,
            logger: Logger(label: "bench")
        )
        benchmark.startMeasurement()
        try shipper.runBlocking()
        benchmark.stopMeasurement()
        precondition(shipper.statistics.recordsShipped == UInt64(recordCount))
    } setup: {
        try CatalogLog(records: recordCount, prefix: "walctl-pgbench")
    }

    Benchmark("plain binary COPY of the same rows (x1000 rows)") { benchmark, log in
        let database = try Database(server: server)
        benchmark.startMeasurement()
        try PostgresSink.plainCopy(
            conninfo: database.conninfo,
            records: log.records,
            logID: log.logID,
            batchSize: batchSize
        )
        benchmark.stopMeasurement()
    } setup: {
        try CatalogLog(records: recordCount, prefix: "walctl-pgbench")
    }
}

/// A fresh database per run (the scaling factor counts rows in thousands: 200 per run).
struct Database {
    let conninfo: String

    init(server: String) throws {
        let name = "walctl_bench_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let status = Shell.run("/usr/bin/psql", [server, "-qc", "CREATE DATABASE \(name)"])
        guard status == 0 else { throw POSIXError(.EIO) }
        conninfo = server.replacingOccurrences(of: "dbname=postgres", with: "dbname=\(name)")
    }
}
