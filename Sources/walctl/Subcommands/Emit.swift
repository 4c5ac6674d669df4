import ArgumentParser
import Foundation
import Synchronization
import WALCore
import WALTestKit

/// `walctl emit`: appends synthetic records, for demos, load and crash tests.
struct Emit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append synthetic records to a log (load generator and crash-test driver).",
        discussion: """
            Prints `acked SEQ` on stdout after every 10,000 appends have returned (every record up to SEQ is then
            durable in the chosen mode), and `done SEQ` at the end. A throughput summary goes to stderr.

            Each record holds the emitting thread, its own counter, and a filler derived from both, so that a
            reader can check every byte (see SyntheticRecord in WALTestKit).

            Examples:
              walctl emit --dir /var/lib/agent/metrics --count 1000000
              walctl emit --dir ./log --count 100000 --threads 2 --rate 50000 --durability periodic:100
            """
    )

    @Option(help: "The log directory (created if missing).")
    var dir: String

    @Option(help: "How many records to append in total.")
    var count: Int

    @Option(help: "Records per second, all threads together (default: as fast as possible).")
    var rate: Double?

    @Option(help: "Appending threads.")
    var threads: Int = 1

    @Option(help: "Record size in bytes (at least 16).")
    var size: Int = 100

    @Option(help: "process (default), periodic:MS, or sync.")
    var durability: String = "process"

    @Option(help: "Segment size in bytes.")
    var segmentSize: Int?

    @Option(help: "Limit of all log files in bytes (whenFull applies beyond it).")
    var maxBytes: Int64?

    func validate() throws {
        guard count >= 0 else { throw ValidationError("--count must not be negative") }
        guard threads >= 1, threads <= 64 else { throw ValidationError("--threads must be between 1 and 64") }
        guard size >= SyntheticRecord.minimumSize, size <= 65536 else {
            throw ValidationError("--size must be between \(SyntheticRecord.minimumSize) and 65536")
        }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard Durability(parsing: durability) != nil else {
            throw ValidationError("--durability must be process, periodic:MS or sync")
        }
    }

    func run() throws {
        var configuration = WALConfiguration()
        configuration.durability = Durability(parsing: durability) ?? .processCrash
        if let segmentSize { configuration.segmentSize = segmentSize }
        configuration.maxTotalBytes = maxBytes
        let wal: WAL
        do {
            wal = try WAL.open(path: dir, configuration: configuration)
        } catch {
            Output.error("walctl emit: \(error)")
            throw ExitCode(1)
        }
        let recovery = wal.recovery
        if recovery.resealedRecords > 0 || recovery.tornTailBytes > 0 || !recovery.damage.isEmpty {
            Output.error(
                "walctl emit: recovered \(recovery.resealedRecords) staged records, cut \(recovery.tornTailBytes) "
                    + "torn bytes, \(recovery.damage.count) damaged regions kept"
            )
        }
        let total = count
        let threadCount = threads
        let recordSize = size
        let perThreadRate = rate.map { $0 / Double(threadCount) }
        let counters = Counters()
        let started = DispatchTime.now().uptimeNanoseconds
        let finished = DispatchGroup()
        for thread in 0..<threadCount {
            let share = total / threadCount + (thread < total % threadCount ? 1 : 0)
            finished.enter()
            // Appends never suspend: each emitter is a real OS thread, not a task on the cooperative pool.
            let worker = Thread {
                Self.runThread(
                    wal: wal,
                    thread: thread,
                    count: share,
                    size: recordSize,
                    rate: perThreadRate,
                    counters: counters
                )
                finished.leave()
            }
            worker.start()
        }
        finished.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let last = counters.highest.load(ordering: .relaxed)
        do { try wal.close() } catch { Output.error("walctl emit: close: \(error)") }
        Output.line("done \(last)")
        let appended = counters.appended.load(ordering: .relaxed)
        let failed = counters.failures.load(ordering: .relaxed)
        Output.error(
            String(
                format: "walctl emit: %d records in %.3f s (%.0f records/s), %d failed, %d threads, %d bytes each",
                appended,
                elapsed,
                Double(appended) / max(elapsed, 1e-9),
                failed,
                threadCount,
                recordSize
            )
        )
        if failed > 0 { throw ExitCode(1) }
    }

    /// One appending thread. Runs on its own OS thread (appends never suspend), paced when `rate` is set.
    private static func runThread(
        wal: WAL,
        thread: Int,
        count: Int,
        size: Int,
        rate: Double?,
        counters: Counters
    ) {
        var record = SyntheticRecord(thread: UInt32(thread), size: size)
        let started = DispatchTime.now().uptimeNanoseconds
        for index in 0..<count {
            if let rate, index % 64 == 0 {
                let due = started + UInt64(Double(index) / rate * 1e9)
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { usleep(UInt32(min((due - now) / 1000, 1_000_000))) }
            }
            record.fill(counter: UInt64(index))
            do {
                let seq = try record.bytes.withUnsafeBytes { try wal.append($0) }
                counters.highest.max(seq)
                let done = counters.appended.add(1, ordering: .relaxed).newValue
                if done % 10_000 == 0 { Output.line("acked \(counters.highest.load(ordering: .relaxed))") }
            } catch {
                if counters.failures.add(1, ordering: .relaxed).newValue <= 5 { Output.error("walctl emit: \(error)") }
            }
        }
    }
}

/// Totals shared by the emitting threads.
final class Counters: Sendable {
    let appended = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    /// The highest sequence number an append returned: every record up to it is in the log.
    let highest = Atomic<UInt64>(0)
}

extension Atomic where Value == UInt64 {
    func max(_ value: UInt64) {
        var current = load(ordering: .relaxed)
        while current < value {
            let (exchanged, original) = compareExchange(
                expected: current,
                desired: value,
                ordering: .relaxed
            )
            if exchanged { return }
            current = original
        }
    }
}
