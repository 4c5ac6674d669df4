import Benchmark
import Foundation
import Synchronization
@_spi(Testing) import WALCore
import WALTestKit

/// A flag shared with background threads, so that they do not keep their owner alive.
final class RunFlag: Sendable {
    let running = Atomic<Bool>(true)
}

/// A log in a fresh temporary directory, closed and removed when released.
final class BenchLog: @unchecked Sendable {
    let path: String
    let wal: WAL
    private let flag = RunFlag()

    init(configuration: WALConfiguration = WALConfiguration()) throws {
        path = NSTemporaryDirectory() + "walctl-bench-\(UUID().uuidString)"
        var configuration = configuration
        // Keep the disk footprint bounded: a consumer cursor at the end lets retention delete sealed segments.
        configuration.retentionIntervalMilliseconds = 200
        wal = try WAL.open(path: path, configuration: configuration)
        try CursorStore(path: path).store("bench", seq: UInt64.max / 2)
    }

    /// A second thread appending the same record as fast as it can, until `close`.
    func startBackgroundAppender(record: [UInt8]) {
        let wal = self.wal
        let flag = self.flag
        Thread {
            record.withUnsafeBytes { bytes in
                while flag.running.load(ordering: .relaxed) { _ = try? wal.append(bytes) }
            }
        }.start()
    }

    deinit {
        flag.running.store(false, ordering: .relaxed)
        usleep(10_000)
        try? wal.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The floor, with an optional second thread copying as fast as it can until the floor is released.
final class SharedMappingFloor: @unchecked Sendable {
    private let copier: MappingCopier
    private let flag = RunFlag()

    init(size: Int) throws { copier = try MappingCopier(size: size) }

    @inline(__always)
    func copy(_ bytes: UnsafeRawBufferPointer) -> Int { copier.copy(bytes) }

    func startBackgroundCopier(record: [UInt8]) {
        let flag = self.flag
        let copier = self.copier
        Thread {
            record.withUnsafeBytes { bytes in
                while flag.running.load(ordering: .relaxed) { _ = copier.copy(bytes) }
            }
        }.start()
    }

    deinit { flag.running.store(false, ordering: .relaxed) }
}

/// A log of about `bytes` in segments, left as a SIGKILL would leave it: a full staging area, unsealed.
final class CrashedLog: @unchecked Sendable {
    let path: String

    init(bytes: Int, record: [UInt8]) throws {
        path = NSTemporaryDirectory() + "walctl-crashed-\(UUID().uuidString)"
        let wal = try WAL.open(path: path)
        let count = bytes / (record.count + 4)
        try record.withUnsafeBytes { buffer in
            for _ in 0..<count { _ = try wal.append(buffer) }
        }
        wal.waitUntilSealed(timeoutMilliseconds: 120_000)
        crash(wal, record: record)
    }

    /// Fills staging without sealing, then abandons the writer.
    func crash(_ wal: WAL, record: [UInt8]) {
        wal.pauseSealingForTesting()
        let staged = wal.configuration.blockSize * (wal.configuration.blockCount - 1) / (record.count + 16)
        record.withUnsafeBytes { buffer in
            for _ in 0..<staged { _ = try? wal.append(buffer) }
        }
        wal.abandonForTesting()
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Raw bytes over bytes on disk for 200,000 records made by `make`.
func compressionRatio(_ make: (UInt64) -> [UInt8]) throws -> Double {
    let path = NSTemporaryDirectory() + "walctl-ratio-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let wal = try WAL.open(path: path)
    for counter in 0..<200_000 { try wal.append(make(UInt64(counter))) }
    try wal.close()
    let summary = try LogInspector.examine(path: path)
    return Double(summary.bytesRaw) / Double(summary.bytesOnDisk)
}

func randomRecord(size: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
}

/// What `walctl emit` writes (see SyntheticRecord): a header and a patterned filler.
func syntheticRecord(_ counter: UInt64) -> [UInt8] {
    var bytes = Array("SYN1".utf8) + [0, 0, 0, 0]
    withUnsafeBytes(of: counter.littleEndian) { bytes.append(contentsOf: $0) }
    let seed = counter &* 31
    for index in 16..<100 { bytes.append(UInt8(truncatingIfNeeded: seed &+ UInt64(index))) }
    return bytes
}

/// A metric-like JSON document, as a stand-in for real payloads until the metrics codec exists.
func jsonLikeRecord(_ counter: UInt64) -> [UInt8] {
    let metrics = ["routing_decision_time_ms", "state_get_time_ms", "workflow_step_count", "quorum_latency_ms"]
    let text =
        "{\"m\":\"\(metrics[Int(counter % 4)])\",\"v\":\(Double(counter % 997) / 7.0),"
        + "\"agent\":\"agent-\(counter % 8)\",\"corr\":\"c-\(counter / 50)\",\"ts\":\(1_767_225_600_000 + counter)}"
    return Array(text.utf8)
}

/// Latency under a fixed offered load (not saturating): `threads` threads each call `operation` at
/// `rate / threads` calls per second for `seconds`, waiting for each due time with `sched_yield` (so the sealer runs
/// between calls, as it would beside an agent doing other work). Returns every call's duration in nanoseconds,
/// sorted, and how many calls started more than 1 ms late (the offered rate was not kept). `operation` receives the
/// call's index in its thread, with the thread's number above `pacedThreadShift`.
func pacedLatencies(
    threads: Int,
    rate: Double,
    seconds: Double,
    _ operation: @escaping @Sendable (Int) -> Void
) -> (sorted: [UInt64], late: Int) {
    let perThread = Int(rate * seconds) / threads
    let interval = Double(threads) / rate * 1e9
    let results = Mutex<(durations: [UInt64], late: Int)>(([], 0))
    let group = DispatchGroup()
    let start = DispatchTime.now().uptimeNanoseconds + 20_000_000
    for thread in 0..<threads {
        group.enter()
        Thread {
            var durations = [UInt64](repeating: 0, count: perThread)
            var late = 0
            for index in 0..<perThread {
                let due = start + UInt64(Double(index) * interval)
                while DispatchTime.now().uptimeNanoseconds < due { sched_yield() }
                let began = DispatchTime.now().uptimeNanoseconds
                if began > due + 1_000_000 { late += 1 }
                operation(index | (thread << pacedThreadShift))
                durations[index] = DispatchTime.now().uptimeNanoseconds - began
            }
            results.withLock {
                $0.durations.append(contentsOf: durations)
                $0.late += late
            }
            group.leave()
        }.start()
    }
    group.wait()
    return results.withLock { ($0.durations.sorted(), $0.late) }
}

let pacedThreadShift = 40

/// CPU time (user and system) of this process's threads named `name`, in nanoseconds (clock ticks of /proc).
func threadCPUNanos(named name: String) -> UInt64 {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    var total: UInt64 = 0
    for task in tasks {
        let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
        guard comm.trimmingCharacters(in: .whitespacesAndNewlines) == name,
            let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
            let afterName = stat.range(of: ") ")
        else { continue }
        // Fields after the name: state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[afterName.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { continue }
        total += (user + system) * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }
    return total
}

/// A thread that takes `share` of one CPU in bursts, one every `period` nanoseconds (spinning, then sleeping),
/// until `stop`: a stand-in for the sealer's CPU use without its I/O or its lock.
final class CPULoad: @unchecked Sendable {
    private let flag = RunFlag()

    init(share: Double, period: UInt64) {
        let flag = self.flag
        let burst = UInt64(Double(period) * min(max(share, 0), 1))
        Thread {
            var state: UInt64 = 1
            while flag.running.load(ordering: .relaxed) {
                let until = DispatchTime.now().uptimeNanoseconds + burst
                while DispatchTime.now().uptimeNanoseconds < until { state = state &* 6_364_136_223_846_793_005 &+ 1 }
                usleep(UInt32((period - burst) / 1000))
            }
            blackHole(state)
        }.start()
    }

    func stop() { flag.running.store(false, ordering: .relaxed) }
}

/// The value at quantile `q` (0...1) of sorted values.
func quantile(_ sorted: [UInt64], _ q: Double) -> Int {
    sorted.isEmpty ? 0 : Int(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))])
}
