import Benchmark
import Foundation
import WALCore
import WALMetrics
import WALObserve
import WALShipping
import WALTestKit
import WALTraffic

// The live view's reading rate: 1M catalog records (AgentTraffic, 2 agent threads' worth) read and counted into the
// per-second aggregates by LiveView, beside the floor of reading them at all (TailReader + MetricsDecoder, what a
// shipper does before it renders anything).
//
// Run: cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target WALObserveBenchmarks

let recordCount = 1_000_000

final class LogFixture: @unchecked Sendable {
    let directory: TemporaryDirectory
    let path: String

    init() throws {
        directory = try TemporaryDirectory(prefix: "walctl-bench-live")
        path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        let traffic = [AgentTraffic(thread: 0), AgentTraffic(thread: 1)]
        for counter in 0..<UInt64(recordCount) { _ = traffic[Int(counter % 2)].emit(counter / 2, into: collector) }
        try collector.close()
        // The panels count complete seconds only: let the last one end.
        Thread.sleep(forTimeInterval: 1.1)
    }

    deinit { directory.remove() }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput],
        timeUnits: .milliseconds,
        warmupIterations: 1,
        maxDuration: .seconds(20),
        maxIterations: 5
    )

    Benchmark("live view: read and aggregate 1M catalog records") { benchmark, fixture in
        var configuration = LiveView.Configuration()
        configuration.backfillRecords = UInt64(recordCount)
        let view = LiveView(selection: .single(fixture.path), configuration: configuration)
        benchmark.startMeasurement()
        while view.snapshot().logs.first?.lastSeq ?? 0 < UInt64(recordCount) { view.readAvailable() }
        benchmark.stopMeasurement()
        precondition(view.snapshot().recordsInWindow == UInt64(recordCount), "records outside the window")
    } setup: {
        try LogFixture()
    }

    Benchmark("floor: TailReader + MetricsDecoder, 1M catalog records") { benchmark, fixture in
        let reader = TailReader(path: fixture.path, after: 0)
        let decoder = MetricsDecoder(directory: fixture.path)
        var decoded = 0
        benchmark.startMeasurement()
        while decoded < recordCount {
            try reader.poll(maxEntries: 4096) { entry in
                if case .record(let seq, let bytes) = entry,
                    case .success(let record) = decoder.decode(seq: seq, bytes: bytes)
                {
                    blackHole(record)
                    decoded += 1
                }
            }
        }
        benchmark.stopMeasurement()
    } setup: {
        try LogFixture()
    }
}
