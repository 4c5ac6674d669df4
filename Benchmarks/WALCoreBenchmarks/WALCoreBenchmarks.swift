import Benchmark
import Foundation
@_spi(Testing) import WALCore

// Append latency, sustained throughput, recovery time and compression of the segment log, each next to the
// physical floor: a mutex-guarded memcpy of the same record into a MAP_SHARED mapping.
//
// Run: cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
// (add `--filter 'append.*'` for a subset; `--format markdown` for a table).

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 1000,
        maxDuration: .seconds(3),
        maxIterations: 2_000_000
    )

    let record = randomRecord(size: 100)
    let mixedRecords = (0..<4096).map { jsonLikeRecord(UInt64($0) &* 7919) }

    // MARK: - Floor

    Benchmark("floor: mutex + memcpy 100 B into MAP_SHARED") { benchmark, floor in
        record.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(floor.copy(bytes)) }
        }
    } setup: {
        try SharedMappingFloor(size: 64 << 20)
    }

    // MARK: - Append latency

    Benchmark("append 100 B, 1 thread") { benchmark, log in
        record.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try? log.wal.append(bytes)) }
        }
    } setup: {
        try BenchLog()
    }

    Benchmark("append 100 B, 2 threads (measured on one)") { (benchmark, log: BenchLog) in
        record.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try? log.wal.append(bytes)) }
        }
    } setup: {
        let log = try BenchLog()
        log.startBackgroundAppender(record: record)
        return log
    }

    Benchmark(
        "floor, 2 threads (measured on one)",
        configuration: .init(metrics: [.wallClock, .mallocCountTotal, .throughput])
    ) { (benchmark, floor: SharedMappingFloor) in
        record.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(floor.copy(bytes)) }
        }
    } setup: {
        let floor = try SharedMappingFloor(size: 64 << 20)
        floor.startBackgroundCopier(record: record)
        return floor
    }

    // MARK: - Offered load

    // Two appending threads at 1M records/s together (not saturating), distinct metric-like records so the sealer
    // compresses for real; every call timed, next to the floor (mutex + memcpy into MAP_SHARED) under the same load.
    //
    // Then where the tail comes from: the floor again, twice, beside a thread that takes as much CPU as the sealer
    // took during the appends (in bursts, as often as blocks closed): once with the two threads sharing one mutex (as
    // the appenders share the append lock) and once with a mapping and mutex per thread (what an append path
    // without a shared lock, reserving staging space with an atomic add, would at best be). When the two are alike,
    // such a path would not remove the tail.
    Benchmark(
        "append ~110 B, 2 threads at 1M records/s offered",
        configuration: .init(
            metrics: [
                .custom("append p50 ns"), .custom("append p99 ns"), .custom("append p99.9 ns"),
                .custom("floor p50 ns"), .custom("floor p99 ns"), .custom("floor p99.9 ns"),
                .custom("calls started over 1 ms late"), .custom("sealer CPU %"),
                .custom("floor beside sealer-sized load, shared mutex p99.9 ns"),
                .custom("floor beside sealer-sized load, mapping per thread p99.9 ns"),
            ],
            warmupIterations: 0,
            maxIterations: 1
        )
    ) { benchmark in
        let log = try BenchLog()
        let sealerBefore = threadCPUNanos(named: "wal-sealer")
        let appendsStarted = DispatchTime.now().uptimeNanoseconds
        let appends = pacedLatencies(threads: 2, rate: 1_000_000, seconds: 3) { index in
            mixedRecords[index & 4095].withUnsafeBytes { blackHole(try? log.wal.append($0)) }
        }
        let sealerShare =
            Double(threadCPUNanos(named: "wal-sealer") - sealerBefore)
            / Double(DispatchTime.now().uptimeNanoseconds - appendsStarted)
        let floor = try SharedMappingFloor(size: 64 << 20)
        let floors = pacedLatencies(threads: 2, rate: 1_000_000, seconds: 3) { index in
            mixedRecords[index & 4095].withUnsafeBytes { blackHole(floor.copy($0)) }
        }
        for (name, result) in [("append", appends), ("floor", floors)] {
            benchmark.measurement(.custom("\(name) p50 ns"), quantile(result.sorted, 0.5))
            benchmark.measurement(.custom("\(name) p99 ns"), quantile(result.sorted, 0.99))
            benchmark.measurement(.custom("\(name) p99.9 ns"), quantile(result.sorted, 0.999))
        }
        benchmark.measurement(.custom("calls started over 1 ms late"), appends.late + floors.late)
        benchmark.measurement(.custom("sealer CPU %"), Int(sealerShare * 100))
        // A block of 256 KiB holds about 2,000 of these records: the sealer wakes about every 2 ms.
        let load = CPULoad(share: sealerShare, period: 2_000_000)
        let shared = pacedLatencies(threads: 2, rate: 1_000_000, seconds: 3) { index in
            mixedRecords[index & 4095].withUnsafeBytes { blackHole(floor.copy($0)) }
        }
        let perThread = [try SharedMappingFloor(size: 64 << 20), try SharedMappingFloor(size: 64 << 20)]
        let separate = pacedLatencies(threads: 2, rate: 1_000_000, seconds: 3) { index in
            let thread = index >> pacedThreadShift
            mixedRecords[index & 4095].withUnsafeBytes { blackHole(perThread[thread].copy($0)) }
        }
        load.stop()
        benchmark.measurement(
            .custom("floor beside sealer-sized load, shared mutex p99.9 ns"),
            quantile(shared.sorted, 0.999)
        )
        benchmark.measurement(
            .custom("floor beside sealer-sized load, mapping per thread p99.9 ns"),
            quantile(separate.sorted, 0.999)
        )
    }

    // MARK: - Sustained throughput with sealing

    Benchmark(
        "sustained appends with sealing, 1M metric-like records (~110 B)",
        configuration: .init(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            timeUnits: .milliseconds,
            warmupIterations: 1,
            scalingFactor: .mega,
            maxDuration: .seconds(10),
            maxIterations: 10
        )
    ) { benchmark, log in
        // Distinct, metric-like records (about 6.7x compressible), so the sealer does real LZ4 work.
        var index = 0
        for _ in benchmark.scaledIterations {
            mixedRecords[index & 4095].withUnsafeBytes { blackHole(try? log.wal.append($0)) }
            index &+= 1
        }
        // Count the sealing in: the run ends when the sealer has written everything.
        log.wal.waitUntilSealed(timeoutMilliseconds: 60_000)
    } setup: {
        try BenchLog()
    }

    // MARK: - Recovery

    Benchmark(
        "recovery: open a crashed 1 GiB log",
        configuration: .init(
            metrics: [.wallClock],
            timeUnits: .milliseconds,
            warmupIterations: 0,
            maxDuration: .seconds(20),
            maxIterations: 5
        )
    ) { benchmark, crashed in
        for _ in benchmark.scaledIterations {
            benchmark.startMeasurement()
            let wal = try WAL.open(path: crashed.path)
            benchmark.stopMeasurement()
            blackHole(wal.recovery.resealedRecords)
            // Crash it again, with a full staging area, for the next iteration.
            crashed.crash(wal, record: record)
        }
    } setup: {
        try CrashedLog(bytes: 1 << 30, record: record)
    }

    // MARK: - Visibility

    // The documented bound (wal-format.md 11): a record is visible to a tail reader at most about 100 ms after
    // `append` returned with the default seal delay. Measured here, not asserted in a unit test.
    Benchmark(
        "append to visible in a tail reader (default seal delay)",
        configuration: .init(
            metrics: [.wallClock],
            timeUnits: .milliseconds,
            warmupIterations: 2,
            maxDuration: .seconds(10),
            maxIterations: 40
        )
    ) { benchmark, log in
        let tail = TailReader(path: log.path, after: log.wal.statistics.nextSeq - 1)
        for _ in benchmark.scaledIterations {
            let seq = try record.withUnsafeBytes { try log.wal.append($0) }
            var found = false
            while !found {
                try tail.poll { entry in
                    if case .record(let got, _) = entry, got == seq { found = true }
                }
                if !found { usleep(1000) }
            }
        }
    } setup: {
        try BenchLog()
    }

    // MARK: - Compression

    Benchmark(
        "compression ratio (raw / on disk) x100",
        configuration: .init(
            metrics: [.custom("ratio x100, synthetic emit records"), .custom("ratio x100, JSON-like records")],
            warmupIterations: 0,
            maxIterations: 1
        )
    ) { benchmark in
        let synthetic = try compressionRatio { counter in syntheticRecord(counter) }
        let jsonLike = try compressionRatio { counter in jsonLikeRecord(counter) }
        benchmark.measurement(.custom("ratio x100, synthetic emit records"), Int(synthetic * 100))
        benchmark.measurement(.custom("ratio x100, JSON-like records"), Int(jsonLike * 100))
    }
}
