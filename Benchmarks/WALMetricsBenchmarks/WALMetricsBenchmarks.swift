import Benchmark
import Foundation
import WALCore
import WALMetrics
import WALTestKit
import WALTraffic

// The emit API: by name with three tags, and through a handle; bytes on disk per record for the catalog workload.
//
// Run: cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target WALMetricsBenchmarks

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        // Per emit: time, heap allocations and bytes allocated (the malloc interposer's counters).
        metrics: [.wallClock, .mallocCountTotal, .mallocBytesCount, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 1000,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000
    )
    let tags = ["agent_type": "router", "routing_strategy": "smart", "cache_status": "hit"]

    // The floor, in the same run: a mutex-guarded memcpy of as many bytes as the handle benchmarks' records into a
    // MAP_SHARED mapping. Their values (0.5 plus 0.001 per call, accumulated) are mostly not short decimals, so a
    // record is kind, flags, metric, tag set, agent (5 B), time (8 B) and an f64 (8 B): 21 B, and 37 B with a UUID.
    for size in [21, 37] {
        let bytes = [UInt8](repeating: 0x5A, count: size)
        Benchmark("floor: mutex + memcpy \(size) B into MAP_SHARED") { benchmark, copier in
            bytes.withUnsafeBytes { bytes in
                for _ in benchmark.scaledIterations { blackHole(copier.copy(bytes)) }
            }
        } setup: {
            try MappingCopier(size: 64 << 20)
        }
    }

    Benchmark("recordTiming by name, 3 tags") { benchmark, fixture in
        var value = 0.5
        for _ in benchmark.scaledIterations {
            value += 0.001
            blackHole(fixture.collector.recordTiming("routing_decision_time_ms", milliseconds: value, tags: tags))
        }
    } setup: {
        try CollectorFixture()
    }

    Benchmark("recordTiming through a handle, 3 tags") { (benchmark, fixture: CollectorFixture) in
        var value = 0.5
        for _ in benchmark.scaledIterations {
            value += 0.001
            blackHole(fixture.handle.record(value))
        }
    } setup: {
        let fixture = try CollectorFixture()
        fixture.handle = try fixture.collector.handle(MetricCatalog.routingDecisionTime, tags: tags)
        return fixture
    }

    Benchmark("recordTiming through a handle, 3 tags, with a correlation id") {
        (benchmark, fixture: CollectorFixture) in
        var value = 0.5
        let correlation = "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b"
        for _ in benchmark.scaledIterations {
            value += 0.001
            blackHole(fixture.handle.record(value, correlationID: correlation))
        }
    } setup: {
        let fixture = try CollectorFixture()
        fixture.handle = try fixture.collector.handle(MetricCatalog.routingDecisionTime, tags: tags)
        return fixture
    }

    Benchmark(
        "bytes per record on disk, catalog workload x100",
        configuration: .init(
            metrics: [
                .custom("bytes x100, workflow traffic (2 agents threads)"),
                .custom("bytes x100, i.i.d. random catalog traffic"),
                .custom("raw bytes x100, workflow traffic"),
            ],
            warmupIterations: 0,
            maxIterations: 1
        )
    ) { benchmark in
        let workflow = try bytesPerRecord(threads: 2) { thread, counter in AgentTraffic(thread: thread).event(counter) }
        let random = try bytesPerRecord(threads: 2) { thread, counter in
            AgentTraffic(thread: thread).independentEvent(counter)
        }
        benchmark.measurement(.custom("bytes x100, workflow traffic (2 agents threads)"), Int(workflow.disk * 100))
        benchmark.measurement(.custom("bytes x100, i.i.d. random catalog traffic"), Int(random.disk * 100))
        benchmark.measurement(.custom("raw bytes x100, workflow traffic"), Int(workflow.raw * 100))
    }

    // The bulk-read path of `walctl replay --to stdout` and `inspect --records --json` (the operator issue asks for
    // at least one million records per second to /dev/null).
    Benchmark(
        "envelopes from the log to /dev/null, 1M records",
        configuration: .init(
            metrics: [.wallClock, .custom("records per second")],
            timeUnits: .milliseconds,
            warmupIterations: 1,
            maxDuration: .seconds(20),
            maxIterations: 5
        )
    ) { benchmark, fixture in
        for _ in benchmark.scaledIterations {
            let started = ContinuousClock.now
            let rendered = try fixture.renderAll()
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            precondition(rendered == MillionRecordLog.records, "rendered \(rendered)")
            benchmark.measurement(.custom("records per second"), Int(Double(rendered) / seconds))
        }
    } setup: {
        try MillionRecordLog()
    }
}

/// A closed log of one million records of two agent threads' traffic, for the bulk-read benchmark.
final class MillionRecordLog: @unchecked Sendable {
    let path: String
    let logID: LogID
    static let records = 1_000_000

    init() throws {
        path = NSTemporaryDirectory() + "walctl-replay-bench-\(UUID().uuidString)"
        try emitTraffic(into: path, perThread: Self.records / 2, threads: 2) { thread, counter in
            AgentTraffic(thread: thread).event(counter)
        }
        logID = try LogDirectory(path: path).readMeta().logID
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// What `walctl replay --to stdout` and `inspect --records --json` do: every record to its envelope JSON line
    /// (`EnvelopeReader`, one rendering thread per processor), written to /dev/null in 64 KiB writes. Returns the
    /// records rendered.
    func renderAll() throws -> Int {
        let sink = open("/dev/null", O_WRONLY)
        defer { close(sink) }
        var output: [UInt8] = []
        output.reserveCapacity(1 << 17)
        var rendered = 0
        try EnvelopeReader(directory: path, logID: logID).read(
            passedOver: { _ in true },
            line: { _, line in
                output.append(contentsOf: line)
                rendered += 1
                if output.count >= 1 << 16 {
                    _ = output.withUnsafeBytes { write(sink, $0.baseAddress, $0.count) }
                    output.removeAll(keepingCapacity: true)
                }
                return true
            }
        )
        _ = output.withUnsafeBytes { write(sink, $0.baseAddress, $0.count) }
        return rendered
    }
}

final class CollectorFixture: @unchecked Sendable {
    let path: String
    let collector: MetricsCollector
    var handle: MetricHandle

    init() throws {
        path = NSTemporaryDirectory() + "walctl-metrics-bench-\(UUID().uuidString)"
        var configuration = MetricsConfiguration(directory: path, agentID: "bench-agent")
        configuration.log.retentionIntervalMilliseconds = 200
        collector = try MetricsCollector(configuration: configuration)
        try CursorStore(path: path).store("bench", seq: UInt64.max / 2)
        handle = try collector.handle(MetricCatalog.routingDecisionTime)
    }

    deinit {
        try? collector.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Emits 200,000 events per thread (interleaved as two agent threads would) and measures the log.
func bytesPerRecord(threads: Int, _ make: (Int, UInt64) -> AgentTraffic.Event) throws -> (disk: Double, raw: Double) {
    let path = NSTemporaryDirectory() + "walctl-bytes-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try emitTraffic(into: path, perThread: 200_000, threads: threads, make)
    let summary = try LogInspector.examine(path: path)
    return (Double(summary.bytesOnDisk) / Double(summary.records), Double(summary.bytesRaw) / Double(summary.records))
}

/// Emits `perThread` events per thread, interleaved as agent threads would, into a new log, and closes it.
func emitTraffic(
    into path: String,
    perThread: Int,
    threads: Int,
    _ make: (Int, UInt64) -> AgentTraffic.Event
) throws {
    let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
    for counter in 0..<UInt64(perThread) {
        for thread in 0..<threads {
            let event = make(thread, counter)
            collector.record(
                event.definition,
                value: event.value,
                tags: event.tags,
                correlationID: event.correlationID,
                agentID: event.agentID
            )
        }
    }
    try collector.close()
}
