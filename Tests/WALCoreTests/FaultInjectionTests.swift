import Foundation
import Testing
@_spi(Testing) import WALCore
import WALMetrics
import WALTestKit
import WALTraffic

/// Faults injected at every system call of a scenario, as SQLite's test VFS does: for N = 1, 2, ... the Nth call
/// fails (ENOSPC, EIO, EINTR) or the process is killed there; after each, and after a restart, the invariants of
/// wal-format.md section 14 must hold. The quick sweeps run here; `tools/fault-sweep.sh` runs the long ones.
///
/// The injection point is process-wide: while a sweep arms it, any other test running in the same process would meet
/// its faults. So these run only when `WALCTL_FAULT_TESTS=1`, in a `swift test` invocation of their own
/// (`tools/test.sh` does both).
@Suite(
    .serialized,
    .enabled(
        if: ProcessInfo.processInfo.environment["WALCTL_FAULT_TESTS"] == "1",
        "process-wide fault injection: run alone, WALCTL_FAULT_TESTS=1 swift test --filter FaultInjectionTests"
    )
)
struct FaultInjectionTests {
    /// Every how many calls a sweep injects: `WALCTL_FAULT_SWEEP_STRIDE` when set (`tools/fault-sweep.sh` sets 1:
    /// every call); else the kill sweeps take every call and the errno sweeps about 25 calls each (a scenario with
    /// drops takes about a second, its close waiting for the stalled sealer), from a different offset per errno.
    static let strideOverride = ProcessInfo.processInfo.environment["WALCTL_FAULT_SWEEP_STRIDE"].flatMap { Int($0) }
    static let stride = strideOverride ?? 1

    struct Outcome {
        var acked: [UInt64: UInt64] = [:]
        var dropped: Set<UInt64> = []
        var highestSeen: UInt64 = 0
    }

    /// The scenario: create a log, append across segment rolls, register and move a cursor, run retention, close;
    /// reopen (recovery), append until the size limit drops records, close (records left in staging); reopen.
    /// Errors are expected (that is the point): the scenario stops at the first one it cannot go past.
    static func scenario(_ path: String) -> Outcome {
        var outcome = Outcome()
        func append(_ wal: WAL, _ values: Range<UInt64>) {
            for value in values {
                do throws(WALError) {
                    let seq = try wal.append(testRecord(value))
                    outcome.acked[seq] = value
                    outcome.highestSeen = max(outcome.highestSeen, seq)
                } catch {
                    if error.code == .dropped, let seq = error.seq {
                        outcome.dropped.insert(seq)
                        outcome.highestSeen = max(outcome.highestSeen, seq)
                    }
                }
            }
        }
        var configuration = smallConfiguration()
        configuration.retentionIntervalMilliseconds = 60_000
        guard let first = try? WAL.open(path: path, configuration: configuration) else { return outcome }
        append(first, 0..<12_000)
        _ = first.waitUntilSealed(timeoutMilliseconds: 2_000)
        try? CursorStore(path: path).store("consumer", seq: 4_000)
        first.runRetentionForTesting()
        try? first.close()

        configuration.maxTotalBytes = Int64(2 << 20) + Int64(64 << 10) + 4096
        configuration.whenFull = .dropNewest
        guard let second = try? WAL.open(path: path, configuration: configuration) else { return outcome }
        append(second, 100_000..<130_000)
        try? second.close()
        return outcome
    }

    /// After a fault (and the scenario's end), with faults off: the log opens, every acknowledged record still there
    /// (unless retention passed it) is intact under its own seq, seqs and gaps cover the log exactly, and the next
    /// record takes a seq above every seq the scenario saw.
    static func check(_ path: String, _ outcome: Outcome, _ label: String) throws {
        guard FileManager.default.fileExists(atPath: path + "/wal.meta") else {
            #expect(outcome.acked.isEmpty, "\(label): no log, but records were acknowledged")
            return
        }
        try? CursorStore(path: path).remove("consumer")
        let wal: WAL
        do {
            wal = try WAL.open(path: path, configuration: smallConfiguration())
        } catch {
            Issue.record("\(label): the log does not open after the fault: \(error)")
            return
        }
        let next = try wal.append(testRecord(1 << 40))
        #expect(next > outcome.highestSeen, "\(label): seq \(next) reused (the scenario saw \(outcome.highestSeen))")
        try wal.close()
        let violations = try LogInvariants.violations(path)
        #expect(violations.isEmpty, "\(label): \(violations.prefix(3))")
        let contents = try LogContents.read(path)
        let first = min(contents.records.first?.seq ?? .max, contents.gaps.first?.fromSeq ?? .max)
        var present = [UInt64: [UInt8]]()
        for record in contents.records { present[record.seq] = record.bytes }
        for (seq, value) in outcome.acked where seq >= first {
            #expect(present[seq] == testRecord(value), "\(label): acknowledged record \(seq) lost or changed")
        }
        let gapSeqs = contents.gaps.reduce(into: Set<UInt64>()) { set, gap in
            if gap.toSeq - gap.fromSeq < 1_000_000 { set.formUnion(gap.fromSeq...gap.toSeq) }
        }
        #expect(outcome.dropped.filter { $0 >= first }.isSubset(of: gapSeqs), "\(label): a dropped seq has no gap")
    }

    @Test func countingCallsDoesNotChangeTheScenario() throws {
        try withTemporaryDirectory { directory in
            FaultInjection.arm(at: 0, .kill, trace: true)
            let outcome = Self.scenario(directory.file("log"))
            FaultInjection.disarm()
            let calls = Set(FaultInjection.trace)
            // The scenario reaches every kind of call the sweep is meant to cover.
            for call in [FaultInjection.Call.write, .fallocate, .ftruncate, .fsync, .fdatasync, .msync, .rename, .open]
            {
                #expect(calls.contains(call), "the scenario makes no \(call) call")
            }
            #expect(!outcome.dropped.isEmpty, "the scenario reaches the size limit")
            try Self.check(directory.file("log"), outcome, "no fault")
        }
    }

    @Test(arguments: ["ENOSPC", "EIO", "EINTR"])
    func everySystemCallOfTheScenarioFailingKeepsTheInvariants(error: String) throws {
        let total = try withTemporaryDirectory { directory in
            FaultInjection.arm(at: 0, .kill)
            _ = Self.scenario(directory.file("log"))
            defer { FaultInjection.disarm() }
            return FaultInjection.callCount
        }
        try #require(total > 20)
        let step = Self.strideOverride ?? max(1, total / 25)
        let offset = (["ENOSPC", "EIO", "EINTR"].firstIndex(of: error) ?? 0) % step
        print("\(error) sweep: \(total) calls, every \(step) from \(1 + offset)")
        for n in Swift.stride(from: 1 + offset, through: total + 2, by: step) {
            try withTemporaryDirectory { directory in
                let path = directory.file("log")
                #expect(FaultInjection.arm(specification: "\(n):\(error)"))
                let outcome = Self.scenario(path)
                FaultInjection.disarm()
                try Self.check(path, outcome, "\(error) at call \(n) of \(total)")
            }
        }
    }

    /// A real `walctl emit` killed (SIGKILL) at its Nth system call, for every N: creating the log, sealing,
    /// rolling segments, closing. Records are self-checking and single-threaded, so a record's counter tells the seq
    /// it must have: no record may sit under another seq.
    @Test func aWriterKilledAtEverySystemCallKeepsTheInvariants() throws {
        let arguments = ["--count", "6000", "--raw", "--size", "200", "--segment-size", "1048576"]
        let total = try withTemporaryDirectory { directory in
            let counting = try walctl(
                ["emit", "--dir", directory.file("log")] + arguments,
                environment: Self.environment(fault: "0:kill")
            )
            try #require(counting.status == 0, "\(counting.err)")
            let line = try #require(counting.err.split(separator: "\n").first { $0.contains("system calls counted") })
            return try #require(line.split(separator: " ").compactMap { Int($0) }.first)
        }
        try #require(total > 10)
        for n in Swift.stride(from: 1, through: total + 8, by: Self.stride) {
            try withTemporaryDirectory { directory in
                let path = directory.file("log")
                _ = try walctl(["emit", "--dir", path] + arguments, environment: Self.environment(fault: "\(n):kill"))
                try Self.checkKilledWriter(path, "kill at call \(n)")
            }
        }
    }

    /// The same, with the kill inside recovery: a log left by a writer killed mid-stream is opened by a writer that
    /// is itself killed at each of its system calls.
    @Test func recoveryKilledAtEverySystemCallKeepsTheInvariants() throws {
        try withTemporaryDirectory { directory in
            let crashed = directory.file("crashed")
            let child = try ChildProcess(
                walctlPath,
                [
                    "emit", "--dir", crashed, "--count", "100000000", "--raw", "--size", "200", "--segment-size",
                    "1048576",
                ]
            )
            _ = child.killAfterAcks(lines: 2, extraMicroseconds: 3_000)
            let arguments = ["--count", "100", "--raw", "--size", "200", "--segment-size", "1048576"]
            var n = 1
            var completed = false
            while !completed && n < 400 {
                let path = directory.file("copy-\(n)")
                #expect(Shell.run("/bin/cp", ["-a", crashed, path]) == 0)
                let run = try walctl(
                    ["emit", "--dir", path] + arguments,
                    environment: Self.environment(fault: "\(n):kill")
                )
                completed = run.status == 0
                // The second writer's records restart their counters at 0: check the invariants, not the counters.
                let violations = try LogInvariants.violations(path)
                #expect(violations.isEmpty, "kill at recovery call \(n): \(violations.prefix(3))")
                let wal = try WAL.open(path: path, configuration: WALConfiguration())
                let before = try LogContents.read(path)
                let highest = max(before.seqs.last ?? 0, before.gaps.last?.toSeq ?? 0)
                #expect(try wal.append(testRecord(1)) > highest)
                try wal.close()
                try? FileManager.default.removeItem(atPath: path)
                n += Self.stride
            }
            #expect(completed, "the recovering writer never ran to the end")
        }
    }

    /// Issue 16: segments grow in `fallocate`d steps. A disk that is full when the active segment must grow (every
    /// fallocate fails with ENOSPC) stalls the sealer exactly as a full disk at a new segment did: appends drop, each
    /// drop is a gap marker, nothing is written into unallocated space, and the log resumes once there is room.
    @Test func aFullDiskWhileTheActiveSegmentGrowsDropsWithAGapAndResumes() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var configuration = smallConfiguration()
            configuration.segmentSize = 8 << 20
            configuration.whenFull = .dropNewest
            let wal = try WAL.open(path: path, configuration: configuration)
            FaultInjection.arm(at: 1, .fail(.noSpace), calls: [.fallocate], repeating: true)
            var accepted: [UInt64] = []
            var dropped: [UInt64] = []
            for value in 0..<100_000 {
                do throws(WALError) {
                    accepted.append(try wal.append(testRecord(UInt64(value))))
                } catch {
                    #expect(error.code == .dropped)
                    if let seq = error.seq { dropped.append(seq) }
                }
            }
            let stalled = wal.statistics
            let size = try activeSegment(path).size
            FaultInjection.disarm()
            #expect(!dropped.isEmpty, "a full disk while growing must stall the sealer")
            #expect(stalled.stallReason == "no space left on device")
            #expect(size == SegmentAllocation.initial, "no step could be allocated, so the segment did not grow")
            // Room again: the sealer's next retry grows the segment and appends succeed.
            var resumed: UInt64?
            #expect(
                eventually {
                    resumed = try? wal.append(testRecord(999_999))
                    return resumed != nil
                }
            )
            #expect(wal.waitUntilSealed())
            try wal.close()
            let contents = try LogContents.read(path)
            #expect(contents.damage.isEmpty)
            let readable = Set(contents.seqs)
            #expect(accepted.allSatisfy { readable.contains($0) })
            if let resumed { #expect(readable.contains(resumed)) }
            let gapSeqs = Set(contents.gaps.flatMap { Array($0.fromSeq...$0.toSeq) })
            #expect(Set(dropped).isSubset(of: gapSeqs))
            #expect(contents.gaps.allSatisfy { $0.reason.contains("no space") })
            #expect(try activeSegment(path).size > SegmentAllocation.initial)
        }
    }

    /// In every durability mode, a sync flushes the symbol table before the staging file: a record never becomes
    /// durable while a symbol it refers to is not (issue 12, defect 5: `.periodic` and `.synchronous` left it out).
    @Test(arguments: ["process", "periodic:60000", "sync"])
    func symbolsAreFlushedBeforeTheRecordsThatUseThem(durability: String) throws {
        try withTemporaryDirectory { directory in
            var configuration = MetricsConfiguration(directory: directory.file("log"))
            configuration.log = smallConfiguration()
            configuration.log.durability = try #require(Durability(parsing: durability))
            let collector = try MetricsCollector(configuration: configuration)
            // The first msync after a new symbol must be the symbol table's; failing it fails the sync (or, in
            // sync mode, the append) before the staging file is flushed.
            FaultInjection.arm(at: 1, .fail(.ioError), calls: [.msync], trace: true)
            let result = collector.recordGauge("fresh_symbol_gauge", value: 1, unit: "count")
            var failure: String?
            if durability == "sync" {
                if case .rejected = result { failure = "append" }
            } else {
                do { try collector.sync() } catch { failure = "\(error)" }
            }
            let calls = FaultInjection.trace
            FaultInjection.disarm()
            #expect(failure != nil, "the injected msync failure must surface")
            if let failure, durability != "sync" { #expect(failure.contains("metrics.symbols")) }
            #expect(calls == [.msync], "nothing is flushed after the symbol table fails")
            // Without the fault, both files are flushed, symbols first.
            FaultInjection.arm(at: 0, .kill, calls: [.msync], trace: true)
            _ = collector.recordGauge("another_fresh_gauge", value: 2, unit: "count")
            try collector.sync()
            let flushed = FaultInjection.trace
            FaultInjection.disarm()
            #expect(flushed.count >= 2, "symbols and staging are both flushed: \(flushed)")
            try collector.close()
        }
    }

    /// `walctl verify --repair` failing at each of its system calls (EIO, then ENOSPC): a second repair, with
    /// faults off, must finish the job, and the log must hold every intact record, one gap naming the quarantined
    /// segment, and no damage. A repair interrupted between moving the damaged segment aside and publishing the
    /// rebuilt one must not lose the segment.
    @Test(arguments: ["EIO", "ENOSPC"])
    func repairFailingAtEverySystemCallCanBeRunAgain(error: String) throws {
        try withTemporaryDirectory { directory in
            let (damaged, segments) = try TearTests().makeLog(directory)
            let victim = segments[1]
            let frames = try TearTests().frames(victim.path)
            try Corruptor.flipBit(victim.path, at: frames[frames.count / 2].offset + 100, bit: 3)
            let active = try #require(segments.last)
            let last = try #require(try TearTests().frames(active.path).last)
            try Corruptor.overwrite(
                active.path,
                at: last.offset + Int64(last.header.frameLength),
                with: Corruptor.garbage(count: 300)
            )
            FaultInjection.arm(at: 0, .kill)
            let probe = directory.file("probe")
            #expect(Shell.run("/bin/cp", ["-a", damaged, probe]) == 0)
            _ = try LogRepair.repair(path: probe)
            let total = FaultInjection.callCount
            FaultInjection.disarm()
            try #require(total > 5)
            for n in 1...total + 1 {
                let path = directory.file("copy-\(n)")
                #expect(Shell.run("/bin/cp", ["-a", damaged, path]) == 0)
                #expect(FaultInjection.arm(specification: "\(n):\(error)"))
                let first = Result { try LogRepair.repair(path: path) }
                FaultInjection.disarm()
                do {
                    _ = try LogRepair.repair(path: path)
                } catch {
                    Issue.record("\(error) at repair call \(n) of \(total) (first run: \(first)): \(error)")
                    continue
                }
                let violations = try LogInvariants.violations(path)
                #expect(violations.isEmpty, "repair call \(n): \(violations.prefix(3))")
                let contents = try LogContents.read(path)
                TearTests().checkRecordsIntact(contents)
                #expect(contents.records.count >= 29_000, "repair call \(n): only \(contents.records.count) records")
                #expect(contents.gaps.count == 1, "repair call \(n): \(contents.gaps)")
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }

    static func environment(fault: String) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["WALCTL_FAULT_INJECTION"] = fault
        return environment
    }

    static func checkKilledWriter(_ path: String, _ label: String) throws {
        guard FileManager.default.fileExists(atPath: path + "/wal.meta") else { return }
        let violations = try LogInvariants.violations(path)
        #expect(violations.isEmpty, "\(label): \(violations.prefix(3))")
        let contents = try LogContents.read(path)
        for record in contents.records {
            let decoded = record.bytes.withUnsafeBytes { SyntheticRecord.check($0) }
            #expect(decoded?.counter == record.seq - 1, "\(label): seq \(record.seq) holds another record")
        }
        let highest = max(contents.seqs.last ?? 0, contents.gaps.last?.toSeq ?? 0)
        let wal: WAL
        do {
            wal = try WAL.open(path: path, configuration: WALConfiguration())
        } catch {
            Issue.record("\(label): the log does not open after the kill: \(error)")
            return
        }
        let next = try wal.append(testRecord(1))
        #expect(next > highest, "\(label): seq \(next) reused")
        try wal.close()
        #expect(try LogInvariants.violations(path).isEmpty, "\(label): after the next writer")
    }
}
