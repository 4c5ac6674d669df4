import ArgumentParser
import Foundation
import Logging
import WALCore
import WALKafka
import WALMetrics
import WALPostgres
import WALShipping

/// `walctl replay`: re-ships a selected range of a log, idempotently.
struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-ship a range of a log after an outage, idempotently, to PostgreSQL, Kafka, stdout or a file.",
        discussion: """
            Reads the selected records (filters below) and sends them without touching the shippers' cursors.

            --to postgres: rows already present (same log_id, wal_seq, timestamp) are skipped, so a replay never \
            creates duplicates and a second replay adds nothing. The summary says what was inserted and what was \
            already there.

            --to kafka: the same messages the shipper sends (topics, keys, headers), with the same event_id \
            (derived from the log id and sequence number), so consumers drop what they already have.

            --to stdout: one OnexEnvelopeV1 JSON object per line. --to file:PATH: the same into PATH (created or \
            truncated, fsynced at the end); a PATH inside the log directory, or linked to one of its files, is \
            refused.

            Works on a live log and on a copy taken off a dead machine, read-only filesystem included: nothing is \
            written into the log directory. --advance-cursor then moves the sink's committed cursor forward to the \
            last sequence number replayed (never back), so the shipper does not send the range again; it is refused \
            with content filters, and when the cursor is before --from-seq (the shipper would skip records).

            On a terminal, a progress bar with rate and ETA goes to stderr; otherwise a plain line every 5 seconds. \
            A summary ends the run (stderr, or --json). A transient failure is retried with backoff; after \
            --retries attempts replay stops and says from which sequence number to resume.

            Exit codes: 0 everything sent (or counted, with --dry-run); 1 a sink failed or the log cannot be read; \
            2 usage.

            Examples:
              walctl replay ./log --to postgres --since 2026-11-29T02:00:00Z --until -1h
              walctl replay /mnt/dead-host/metrics --to kafka --kafka broker:9092 --from-seq 120000
              walctl replay ./log --to stdout --metric 'workflow_*' | jq .payload.value
              walctl replay ./log --to file:/tmp/outage.jsonl --since -2h --rate-limit 50000
              walctl replay ./log --to postgres --dry-run --tag agent_type=router
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Option(help: ArgumentHelp("Where to send: postgres, kafka, stdout or file:PATH.", valueName: "target"))
    var to: String

    @OptionGroup(title: "Record filters")
    var filters: RecordFilterOptions

    @Option(help: "PostgreSQL conninfo or URL (default: $DATABASE_URL).")
    var postgres: String?

    @Option(help: "Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS).")
    var kafka: String?

    @Option(
        name: .customLong("kafka-property"),
        help: ArgumentHelp("A librdkafka property, name=value (repeatable).", valueName: "name=value")
    )
    var kafkaProperties: [String] = []

    @Option(help: "Kafka topic prefix: topics are {prefix}.{category}.v1.")
    var kafkaTopicPrefix = "agent.metrics"

    @Option(help: "Consumer group of the Kafka cursor, for --advance-cursor (default: walctl-ship-{log id}).")
    var kafkaGroup: String?

    @Option(help: "Where Kafka's refusals go (default: ./walctl-replay-dead-letters.jsonl).")
    var deadLetters = "walctl-replay-dead-letters.jsonl"

    @Flag(help: "Count what would be sent; connect to nothing.")
    var dryRun = false

    @Option(help: ArgumentHelp("At most this many records per second.", valueName: "records"))
    var rateLimit: Int?

    @Option(help: "Records per transaction or produce batch.")
    var batchSize = 5000

    @Option(help: "Attempts per batch before giving up on a transient failure.")
    var retries = 5

    @Flag(help: "Afterwards, move the sink's committed cursor forward to the last sequence number replayed.")
    var advanceCursor = false

    @Flag(help: "Print the summary as one JSON object (on stdout, or stderr when replaying to stdout).")
    var json = false

    enum Target: Equatable {
        case postgres, kafka, stdout
        case file(String)

        init?(_ text: String) {
            switch text {
            case "postgres", "postgresql": self = .postgres
            case "kafka": self = .kafka
            case "stdout", "-": self = .stdout
            default:
                guard text.hasPrefix("file:"), text.count > 5 else { return nil }
                self = .file(String(text.dropFirst(5)))
            }
        }

        var name: String {
            switch self {
            case .postgres: return "postgres"
            case .kafka: return "kafka"
            case .stdout: return "stdout"
            case .file(let path): return "file:\(path)"
            }
        }
    }

    var environment: [String: String] { ProcessInfo.processInfo.environment }
    var conninfo: String? { postgres ?? environment["DATABASE_URL"] }
    var bootstrap: String? { kafka ?? environment["KAFKA_BOOTSTRAP_SERVERS"] }

    func validate() throws {
        guard let target = Target(to) else {
            throw ValidationError("--to takes postgres, kafka, stdout or file:PATH, not \"\(to)\"")
        }
        if target == .postgres && conninfo == nil && !dryRun {
            throw ValidationError("--to postgres needs --postgres CONNINFO (or DATABASE_URL)")
        }
        if target == .kafka && bootstrap == nil && !dryRun {
            throw ValidationError("--to kafka needs --kafka BOOTSTRAP (or KAFKA_BOOTSTRAP_SERVERS)")
        }
        // Nothing is written into the log being read: an output path there would truncate its segments.
        let logs = OutsideLogs(logDirectories: [dir])
        var outputs: [(option: String, path: String)] = []
        if case .file(let path) = target { outputs.append(("--to file:", path)) }
        if target == .kafka && !dryRun { outputs.append(("--dead-letters", deadLetters)) }
        for output in outputs {
            do { try logs.check(output.path) } catch { throw ValidationError("\(output.option) \(error.message)") }
        }
        if let rateLimit, rateLimit < 1 { throw ValidationError("--rate-limit must be positive") }
        if batchSize < 1 { throw ValidationError("--batch-size must be positive") }
        if retries < 1 { throw ValidationError("--retries must be positive") }
        for assignment in kafkaProperties where KafkaProperty(assignment: assignment) == nil {
            throw ValidationError("--kafka-property takes name=value, not \"\(assignment)\"")
        }
        if advanceCursor {
            guard target == .postgres || target == .kafka else {
                throw ValidationError("--advance-cursor goes with --to postgres or --to kafka")
            }
            let content =
                filters.metric.isEmpty && filters.tag.isEmpty && filters.agent == nil
                && filters.correlationID == nil && filters.since == nil && filters.until == nil
            guard content else {
                throw ValidationError(
                    "--advance-cursor cannot go with --metric, --tag, --agent, --correlation-id, --since or --until: "
                        + "the cursor would pass records that were not replayed"
                )
            }
        }
    }

    /// What a replay did.
    struct Summary: Encodable {
        var target: String
        var dryRun: Bool
        var sent: UInt64 = 0
        var alreadyPresent: UInt64 = 0
        var failed: UInt64 = 0
        var firstSeq: UInt64?
        var lastSeq: UInt64?
        var scan = RecordScan.Counts()
        var seconds: Double = 0
        var cursor: UInt64?

        enum CodingKeys: String, CodingKey {
            case target
            case dryRun = "dry_run"
            case sent
            case alreadyPresent = "already_present"
            case failed
            case firstSeq = "first_seq"
            case lastSeq = "last_seq"
            case scan, seconds, cursor
        }

        init(target: String, dryRun: Bool, statistics: ReplayStatistics) {
            self.target = target
            self.dryRun = dryRun
            sent = statistics.sent
            alreadyPresent = statistics.alreadyPresent
            failed = statistics.failed
            firstSeq = statistics.firstSeq
            lastSeq = statistics.lastSeq
            scan = statistics.scan
            seconds = statistics.seconds
            cursor = statistics.cursor
        }
    }

    func run() async throws {
        _ = try readMeta(dir, command: "replay")
        let filter = try filters.filter()
        guard let target = Target(to) else { throw ExitCode(2) }
        let sink: (any MetricSink)?
        do {
            sink = try makeSink(target)
        } catch {
            Output.error("walctl replay: \(error)")
            throw ExitCode(1)
        }
        var settings = ReplayConfiguration()
        settings.filter = filter
        settings.batchSize = batchSize
        settings.recordsPerSecond = rateLimit
        settings.attempts = retries
        settings.advancesCursor = advanceCursor
        // The log as it stands now: a writer appending meanwhile does not keep the replay going.
        settings.filter = filter.endingAtTheLastSealedRecord(of: dir)
        let end =
            settings.filter.toSeq != .max
            ? settings.filter.toSeq : (try? LogInspector.lastSealedSeqCheap(path: dir)) ?? 0
        let progress = ProgressReporter(from: filter.fromSeq, to: end)
        let replayer = Replayer(directory: dir, sink: sink, configuration: settings)
        var failure: String?
        let statistics: ReplayStatistics
        do {
            statistics = try replayer.run { event in
                switch event {
                case .progress(let seq, let done): progress.update(seq: seq, sent: done)
                case .retrying(let attempt, let error):
                    Output.error("walctl replay: attempt \(attempt) failed (\(error)); retrying")
                case .passedOver(let line): Output.error(line)
                }
            }
        } catch {
            failure = error.message
            statistics = error.statistics
        }
        progress.finish()
        do {
            try (sink as? EnvelopeFileSink)?.finish()
        } catch {
            failure = failure ?? "\(error)"
        }
        sink?.disconnect()
        report(Summary(target: target.name, dryRun: dryRun, statistics: statistics))
        if let failure {
            Output.error("walctl replay: \(failure)")
            throw ExitCode(1)
        }
        if statistics.failed > 0 { throw ExitCode(1) }
    }

    private func report(_ summary: Summary) {
        if json {
            let text = Output.json(summary)
            if Target(to) == .stdout { Output.error(text) } else { Output.line(text) }
            return
        }
        let rate = summary.seconds > 0 ? Double(summary.sent + summary.alreadyPresent) / summary.seconds : 0
        let range = summary.firstSeq.map { "sequence \($0) ... \(summary.lastSeq ?? $0)" } ?? "no records"
        var text =
            (summary.dryRun ? "dry run: would send " : "replayed ") + "\(summary.sent) records to \(summary.target) "
            + "(\(range)) in \(String(format: "%.1f", summary.seconds)) s, \(Int(rate)) records/s"
        if Target(to) == .postgres && !summary.dryRun {
            text += "; \(summary.alreadyPresent) already present (skipped)"
        }
        text += "; \(summary.failed) failed"
        text += "; passed over: \(summary.scan.filteredOut) filtered out, \(summary.scan.gapRecords) in gaps, "
        text += "\(summary.scan.damagedRegions) damaged regions, \(summary.scan.undecodable) undecodable"
        if let cursor = summary.cursor { text += "; cursor now at \(cursor)" }
        Output.error(text)
    }

    // MARK: - Sinks

    /// The sink of `target`; nil for a dry run (records are counted, nothing is connected to).
    private func makeSink(_ target: Target) throws -> (any MetricSink)? {
        if dryRun { return nil }
        switch target {
        case .stdout:
            return EnvelopeFileSink(name: "stdout", fd: 1)
        case .file(let path):
            return try EnvelopeFileSink.create(path: path, outside: OutsideLogs(logDirectories: [dir]))
        case .postgres:
            return PostgresSink(
                configuration: PostgresSinkConfiguration(conninfo: conninfo ?? ""),
                logger: Logger(label: "walctl.replay")
            )
        case .kafka:
            var settings = KafkaSinkConfiguration(bootstrapServers: bootstrap ?? "", deadLetterFile: deadLetters)
            settings.topicPrefix = kafkaTopicPrefix
            settings.groupID = kafkaGroup
            settings.apply(environment: environment)
            settings.properties += kafkaProperties.compactMap(KafkaProperty.init(assignment:))
            settings.commitsCursor = false
            return KafkaSink(configuration: settings, logger: Logger(label: "walctl.replay"))
        }
    }
}

// MARK: - Progress

/// A progress bar with rate and ETA on a terminal (stderr), plain lines every 5 s otherwise.
final class ProgressReporter {
    let from: UInt64
    let to: UInt64
    let terminal = isatty(2) == 1
    private let started: UInt64
    private var lastShown: UInt64
    private var shown = false

    init(from: UInt64, to: UInt64) {
        self.from = from
        self.to = to
        started = monotonicNanos()
        lastShown = started
    }

    func update(seq: UInt64, sent: UInt64) {
        let now = monotonicNanos()
        let interval: UInt64 = terminal ? 200_000_000 : 5_000_000_000
        guard now - lastShown >= interval else { return }
        lastShown = now
        let total = to >= from ? to - from + 1 : 0
        let done = seq >= from ? seq - from + 1 : 0
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let seconds = Double(now - started) / 1e9
        let rate = seconds > 0 ? Double(sent) / seconds : 0
        let eta = fraction > 0 ? seconds * (1 - fraction) / fraction : 0
        let stats = "\(sent) records, \(Int(rate)) records/s, at seq \(seq) of \(to), ETA \(Int(eta)) s"
        if terminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            Output.errorRaw("\r[\(bar)] \(String(format: "%3d", Int(fraction * 100)))% \(stats)\u{1B}[K")
            shown = true
        } else {
            Output.error("progress: \(Int(fraction * 100))%, \(stats)")
        }
    }

    func finish() {
        if shown { Output.errorRaw("\n") }
    }
}
