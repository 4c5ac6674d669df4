import ArgumentParser
import Foundation
import Synchronization
import WALCore
import WALMetrics
import WALTraffic

/// `walctl emit`: agent traffic for demos, load and crash tests, or one record from a script.
struct Emit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append metrics to a log: realistic agent traffic, or one record from a script.",
        discussion: """
            Traffic mode (--count): each thread plays four agents emitting all 25 catalog metrics with the \
            design's tags and correlation ids (deterministic, see AgentTraffic). Prints `acked SEQ` on stdout after \
            every 10,000 appends have returned (every record up to SEQ is then durable in the chosen mode) and \
            `done SEQ` at the end; a throughput summary goes to stderr. --raw writes self-checking opaque records \
            instead of metrics (a test of the log alone).

            Single mode (--metric): appends one record and prints `recorded SEQ`; exits 1 with the reason when the \
            collector rejects it. Type and unit come from the catalog for catalog names; give --type and --unit \
            for other names.

            Exit codes: 0 appended; 1 the log cannot be opened or the record was rejected; 2 usage.

            Examples:
              walctl emit --dir /var/lib/agent/metrics --count 1000000 --threads 2
              walctl emit --dir ./log --count 100000 --rate 50000 --durability periodic:100
              walctl emit --dir ./log --metric routing_decision_time_ms --value 12.5 --tag agent_type=router \\
                  --agent agent-7 --correlation-id 3f2a...
              walctl emit --dir ./log --metric custom_queue_depth_count --type gauge --unit count --value 42
            """
    )

    @Option(help: "The log directory (created if missing).")
    var dir: String

    @Option(help: "Traffic mode: how many records to append in total.")
    var count: Int?

    @Option(help: "Traffic mode: records per second, all threads together (default: as fast as possible).")
    var rate: Double?

    @Option(help: "Traffic mode: appending threads.")
    var threads: Int = 1

    @Flag(help: "Traffic mode: opaque self-checking records instead of metrics.")
    var raw = false

    @Option(help: "Raw traffic: record size in bytes (at least 16).")
    var size: Int = 100

    @Option(help: "Single mode: the metric name.")
    var metric: String?

    @Option(parsing: .unconditional, help: "Single mode: the value (negative values too: --value -5).")
    var value: Double?

    @Option(help: "Single mode: a tag key=value (repeatable).")
    var tag: [String] = []

    @Option(help: "Single mode: the agent id.")
    var agent: String?

    @Option(help: "Single mode: the correlation id.")
    var correlationId: String?

    @Option(help: "Single mode, names outside the catalog: timing, counter, gauge or rate.")
    var type: String?

    @Option(help: "Single mode, names outside the catalog: the unit.")
    var unit: String?

    @Option(help: "process (default), periodic:MS, or sync.")
    var durability: String = "process"

    @Option(help: "Segment size in bytes.")
    var segmentSize: Int?

    @Option(help: "Limit of all log files in bytes (whenFull applies beyond it).")
    var maxBytes: Int64?

    func validate() throws {
        guard (count == nil) != (metric == nil) else {
            throw ValidationError("give either --count (traffic) or --metric (one record)")
        }
        if let count, count < 0 { throw ValidationError("--count must not be negative") }
        guard threads >= 1, threads <= 64 else { throw ValidationError("--threads must be between 1 and 64") }
        guard size >= SyntheticRecord.minimumSize, size <= 65536 else {
            throw ValidationError("--size must be between \(SyntheticRecord.minimumSize) and 65536")
        }
        // Paced records are due at index / rate seconds, in UInt64 nanoseconds: NaN or a vanishing rate would trap.
        if let rate, !(rate >= 0.001 && rate <= 1e9) {
            throw ValidationError("--rate must be between 0.001 and 1000000000 records per second")
        }
        guard Durability(parsing: durability) != nil else {
            throw ValidationError("--durability must be process, periodic:MS or sync")
        }
        // The log's own ranges (periodic interval, segment size, size limit), before anything is opened.
        do throws(WALError) { try logConfiguration.validate() } catch {
            throw ValidationError("--durability, --segment-size or --max-bytes: \(error.message)")
        }
        if metric != nil {
            guard value != nil else { throw ValidationError("--metric needs --value") }
            for item in tag where !item.contains("=") { throw ValidationError("--tag takes key=value, not '\(item)'") }
            if let type, MetricType(name: type) == nil {
                throw ValidationError("--type must be timing, counter, gauge or rate")
            }
            if let metric, let definition = MetricCatalog.byName[metric] {
                if let type, MetricType(name: type) != definition.type {
                    throw ValidationError(
                        "\(metric) is a catalog metric of type \(definition.type); leave out --type \(type)"
                    )
                }
                if let unit, unit != definition.unit {
                    throw ValidationError(
                        "\(metric) is a catalog metric in \(definition.unit); leave out --unit \(unit)"
                    )
                }
            }
            var keys = Set<Substring>()
            for item in tag {
                let key = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
                if !keys.insert(key).inserted {
                    throw ValidationError("--tag \(key) is given twice; one value per key")
                }
            }
        }
    }

    var logConfiguration: WALConfiguration {
        var configuration = WALConfiguration()
        configuration.durability = Durability(parsing: durability) ?? .processCrash
        if let segmentSize { configuration.segmentSize = segmentSize }
        configuration.maxTotalBytes = maxBytes
        return configuration
    }

    /// The collector's settings: the log's options, and the agent's METRICS_SOURCE_SERVICE, recorded in the log when
    /// it is created.
    var metricsConfiguration: MetricsConfiguration {
        var settings = MetricsConfiguration(directory: dir)
        settings.log = logConfiguration
        settings.sourceService =
            ProcessInfo.processInfo.environment["METRICS_SOURCE_SERVICE"] ?? Envelope.defaultSourceService
        return settings
    }

    func run() throws {
        if let metric {
            try emitOne(metric)
            return
        }
        let settings = metricsConfiguration
        let collector: MetricsCollector?
        let wal: WAL
        do {
            if raw {
                collector = nil
                wal = try WAL.open(path: dir, configuration: logConfiguration)
            } else {
                let opened = try MetricsCollector(configuration: settings)
                collector = opened
                guard let log = opened.log else { throw ExitCode(1) }
                wal = log
            }
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
        let total = count ?? 0
        let threadCount = threads
        let perThreadRate = rate.map { $0 / Double(threadCount) }
        let counters = Counters()
        let started = DispatchTime.now().uptimeNanoseconds
        let finished = DispatchGroup()
        for thread in 0..<threadCount {
            let share = total / threadCount + (thread < total % threadCount ? 1 : 0)
            finished.enter()
            // Appends never suspend: each emitter is a real OS thread, not a task on the cooperative pool.
            let size = self.size
            Thread {
                let source: RecordSource =
                    collector.map { .traffic(TrafficEmitter(traffic: AgentTraffic(thread: thread), collector: $0)) }
                    ?? .raw(SyntheticRecord(thread: UInt32(thread), size: size), wal)
                Self.runThread(source: source, count: share, rate: perThreadRate, counters: counters)
                finished.leave()
            }.start()
        }
        finished.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let last = counters.highest.load(ordering: .relaxed)
        do {
            if let collector { try collector.close() } else { try wal.close() }
        } catch {
            Output.error("walctl emit: close: \(error)")
        }
        Output.line("done \(last)")
        let appended = counters.appended.load(ordering: .relaxed)
        let failed = counters.failures.load(ordering: .relaxed)
        Output.error(
            String(
                format: "walctl emit: %d records in %.3f s (%.0f records/s), %d failed, %d threads",
                appended,
                elapsed,
                Double(appended) / max(elapsed, 1e-9),
                failed,
                threadCount
            )
        )
        let samples = counters.samples.load(ordering: .relaxed)
        if samples > 0 {
            // Shares of the emitting threads' time, from every 16th record timed in two parts.
            let generator = Double(counters.generatorNanos.load(ordering: .relaxed)) / Double(samples)
            let emitting = Double(counters.collectorNanos.load(ordering: .relaxed)) / Double(samples)
            let share = 100 * generator / max(generator + emitting, 1e-9)
            Output.error(
                String(
                    format: "walctl emit: per record (1 in 16 timed): generator %.0f ns (%.0f%%), "
                        + "collector %.0f ns (%.0f%%); the collector alone: %.0f records/s per thread",
                    generator,
                    share,
                    emitting,
                    100 - share,
                    1e9 / max(emitting, 1e-9)
                )
            )
        }
        if failed > 0 { throw ExitCode(1) }
    }

    /// Where a thread's records come from.
    enum RecordSource {
        case traffic(TrafficEmitter)
        case raw(SyntheticRecord, WAL)
    }

    private static func runThread(source: RecordSource, count: Int, rate: Double?, counters: Counters) {
        var source = source
        var generatorNanos: UInt64 = 0
        var collectorNanos: UInt64 = 0
        var samples = 0
        defer {
            counters.generatorNanos.add(generatorNanos, ordering: .relaxed)
            counters.collectorNanos.add(collectorNanos, ordering: .relaxed)
            counters.samples.add(samples, ordering: .relaxed)
        }
        let started = DispatchTime.now().uptimeNanoseconds
        for index in 0..<count {
            if let rate, index % 64 == 0 {
                let due = started + UInt64(Double(index) / rate * 1e9)
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { usleep(UInt32(min((due - now) / 1000, 1_000_000))) }
            }
            let outcome: Result<UInt64, EmitFailure>
            switch source {
            case .traffic(let emitter):
                let result: EmitResult
                // One record in 16, at every step of the workflow in turn.
                if index & 15 == (index >> 4) & 15 {
                    let before = monotonicNanos()
                    let event = emitter.prepare(UInt64(index))
                    let prepared = monotonicNanos()
                    result = emitter.record(event)
                    let recorded = monotonicNanos()
                    generatorNanos &+= prepared &- before
                    collectorNanos &+= recorded &- prepared
                    samples += 1
                } else {
                    result = emitter.emit(UInt64(index))
                }
                switch result {
                case .recorded(let seq): outcome = .success(seq)
                case let other: outcome = .failure(EmitFailure(text: "\(other)"))
                }
            case .raw(var record, let wal):
                record.fill(counter: UInt64(index))
                do {
                    outcome = .success(try record.bytes.withUnsafeBytes { try wal.append($0) })
                } catch {
                    outcome = .failure(EmitFailure(text: "\(error)"))
                }
                source = .raw(record, wal)
            }
            switch outcome {
            case .success(let seq):
                counters.highest.max(seq)
                let done = counters.appended.add(1, ordering: .relaxed).newValue
                if done % 10_000 == 0 { Output.line("acked \(counters.highest.load(ordering: .relaxed))") }
            case .failure(let why):
                if counters.failures.add(1, ordering: .relaxed).newValue <= 5 {
                    Output.error("walctl emit: \(why.text)")
                }
            }
        }
    }

    /// Single mode: one record through the collector.
    private func emitOne(_ name: String) throws {
        var tags: [String: String] = [:]
        for item in tag {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            tags[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        let definition = MetricCatalog.byName[name]
        guard let metricType = definition?.type ?? type.flatMap({ MetricType(name: $0) }) else {
            Output.error("walctl emit: \(name) is not in the catalog; give --type (timing, counter, gauge, rate)")
            throw ExitCode(2)
        }
        let defaultUnits: [MetricType: String] = [.timing: "ms", .counter: "count", .rate: "%"]
        guard let metricUnit = unit ?? definition?.unit ?? defaultUnits[metricType] else {
            Output.error("walctl emit: \(name) is not in the catalog; give --unit for a gauge")
            throw ExitCode(2)
        }
        let settings = metricsConfiguration
        let collector: MetricsCollector
        do {
            collector = try MetricsCollector(configuration: settings)
        } catch {
            Output.error("walctl emit: \(error)")
            throw ExitCode(1)
        }
        let result = collector.record(
            name,
            type: metricType,
            value: value ?? 0,
            unit: metricUnit,
            tags: tags,
            correlationID: correlationId,
            agentID: agent
        )
        do { try collector.close() } catch { Output.error("walctl emit: close: \(error)") }
        switch result {
        case .recorded(let seq):
            Output.line("recorded \(seq)")
        case .rejected(let reason):
            Output.error("walctl emit: rejected: \(reason.rawValue) (\(Self.explain(reason)))")
            throw ExitCode(1)
        case .dropped(let seq):
            Output.error("walctl emit: dropped as \(seq): the log is full (whenFull policy); recorded as a gap")
            throw ExitCode(1)
        case .disabled:
            Output.error("walctl emit: metrics are disabled")
            throw ExitCode(1)
        }
    }

    static func explain(_ reason: RejectionReason) -> String {
        switch reason {
        case .invalidName: return "names are {category}_{metric}_{unit} in lower snake case, 3 to 100 bytes"
        case .nonFiniteValue: return "the value must be a finite number"
        case .tooManyTags: return "at most 16 tags"
        case .invalidTagKey: return "tag keys are lower snake case, 1 to 64 bytes"
        case .tagValueTooLong: return "tag values are at most 256 bytes"
        case .invalidUnit: return "units are 1 to 20 bytes"
        case .invalidCorrelationID: return "correlation ids are 1 to 100 bytes"
        case .invalidAgentID: return "agent ids are 1 to 100 bytes"
        case .nulCharacter: return "strings must not contain NUL"
        case .conflictingDefinition: return "this name was already recorded with another type or unit"
        case .symbolTableFull: return "too many distinct strings; tag values should not be unique ids"
        case .logUnavailable: return "the log could not take the record"
        }
    }
}

struct EmitFailure: Error {
    var text: String
}

/// Totals shared by the emitting threads.
final class Counters: Sendable {
    let appended = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    /// The highest sequence number an append returned: every record up to it is in the log.
    let highest = Atomic<UInt64>(0)
    /// Time of the sampled records in the traffic generator (`prepare`) and in the collector (`record`).
    let generatorNanos = Atomic<UInt64>(0)
    let collectorNanos = Atomic<UInt64>(0)
    let samples = Atomic<Int>(0)
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
