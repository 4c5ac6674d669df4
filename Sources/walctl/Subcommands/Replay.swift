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
            truncated, fsynced at the end).

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
    }

    /// Where the records go: envelope lines to a file descriptor (stdout, a file, nowhere for --dry-run), or a sink.
    enum Destination {
        case lines(EnvelopeOutput)
        case sink(any ReplaySender)
    }

    func run() async throws {
        let meta = try readMeta(dir, command: "replay")
        let filter = try filters.filter()
        guard let target = Target(to) else { throw ExitCode(2) }
        let destination: Destination
        do {
            destination = try makeDestination(target, logID: meta.logID)
        } catch {
            Output.error("walctl replay: \(error)")
            throw ExitCode(1)
        }
        let end = min((try? LogInspector.lastSealedSeqCheap(path: dir)) ?? 0, filter.toSeq)
        var progress = ProgressReporter(from: filter.fromSeq, to: end)
        var summary = Summary(target: target.name, dryRun: dryRun)
        let started = monotonicNanos()
        var failure: String?
        do {
            switch destination {
            case .lines(let output):
                try writeLines(to: output, filter: filter, logID: meta.logID, summary: &summary, progress: &progress)
            case .sink(let sender):
                try sendBatches(to: sender, filter: filter, logID: meta.logID, summary: &summary, progress: &progress)
            }
        } catch let error as ReplayFailure {
            failure = error.message
        } catch {
            failure = "cannot read the log: \(error)"
        }
        summary.lastSeq = summary.scan.lastSeq > 0 ? summary.scan.lastSeq : nil
        progress.finish()
        do {
            switch destination {
            case .lines(let output):
                try output.finish()
            case .sink(let sender):
                if failure == nil && advanceCursor {
                    summary.cursor = try sender.advanceCursor(
                        logID: meta.logID,
                        from: filter.fromSeq,
                        to: summary.scan.lastSeq
                    )
                }
                sender.finish()
            }
        } catch {
            failure = failure ?? "\(error)"
        }
        summary.seconds = Double(monotonicNanos() - started) / 1e9
        report(summary)
        if let failure {
            Output.error("walctl replay: \(failure)")
            throw ExitCode(1)
        }
        if summary.failed > 0 { throw ExitCode(1) }
    }

    /// stdout, a file, or a dry run: envelopes rendered straight from the log records, written in large blocks.
    private func writeLines(
        to destination: EnvelopeOutput,
        filter: RecordFilter,
        logID: LogID,
        summary: inout Summary,
        progress: inout ProgressReporter
    ) throws {
        var pacer = RatePacer(recordsPerSecond: rateLimit)
        let block = min(batchSize, rateLimit ?? .max)
        var counts = RecordScan.Counts()
        var output: [UInt8] = []
        output.reserveCapacity(1 << 17)
        var pending = 0
        var firstSeq: UInt64?
        var sent: UInt64 = 0
        defer {
            summary.scan = counts
            summary.firstSeq = firstSeq
            summary.sent = sent
        }
        try RecordScan().envelopes(directory: dir, filter: filter, logID: logID, counts: &counts, output: &output) {
            seq,
            bytes in
            firstSeq = firstSeq ?? seq
            pending += 1
            if pending >= block || bytes.count >= 1 << 16 {
                try destination.write(&bytes)
                sent += UInt64(pending)
                pacer.account(pending)
                pending = 0
                progress.update(seq: seq, sent: sent)
            }
            return true
        }
        try destination.write(&output)
        sent += UInt64(pending)
    }

    /// PostgreSQL or Kafka: decoded records in batches, each retried with backoff on transient failures.
    private func sendBatches(
        to sender: any ReplaySender,
        filter: RecordFilter,
        logID: LogID,
        summary: inout Summary,
        progress: inout ProgressReporter
    ) throws {
        var pacer = RatePacer(recordsPerSecond: rateLimit)
        let limit = min(batchSize, rateLimit ?? .max)
        var counts = RecordScan.Counts()
        var batch: [MetricRecord] = []
        var outcome = ReplayOutcome(sent: 0)
        var firstSeq: UInt64?
        defer {
            summary.scan = counts
            summary.firstSeq = firstSeq
            summary.sent = outcome.sent
            summary.alreadyPresent = outcome.present
            summary.failed = outcome.failed
        }
        func flush() throws {
            guard !batch.isEmpty else { return }
            let done = try send(batch, with: sender, logID: logID)
            outcome.sent += done.sent
            outcome.present += done.present
            outcome.failed += done.failed
            pacer.account(batch.count)
            batch.removeAll(keepingCapacity: true)
        }
        try RecordScan().run(directory: dir, filter: filter, counts: &counts) { record in
            firstSeq = firstSeq ?? record.seq
            batch.append(record)
            if batch.count >= limit {
                try flush()
                progress.update(seq: record.seq, sent: outcome.sent + outcome.present)
            }
            return true
        }
        try flush()
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

    // MARK: - Sending

    private func send(_ batch: [MetricRecord], with sender: any ReplaySender, logID: LogID) throws -> ReplayOutcome {
        var attempt = 0
        let policy = RetryPolicy(initialMilliseconds: 200, maximumMilliseconds: 5000)
        while true {
            attempt += 1
            do {
                return try sender.send(batch, logID: logID)
            } catch {
                if attempt >= retries || error is FatalSinkError {
                    throw ReplayFailure(
                        message: "\(error); records up to \(batch.first.map { $0.seq - 1 } ?? 0) were sent: "
                            + "resume with --from-seq \(batch.first?.seq ?? 1)"
                    )
                }
                Output.error("walctl replay: attempt \(attempt) failed (\(error)); retrying")
                usleep(UInt32(policy.delayMilliseconds(attempt: attempt) * 1000))
            }
        }
    }

    private func makeDestination(_ target: Target, logID: LogID) throws -> Destination {
        if dryRun { return .lines(EnvelopeOutput(fd: -1)) }
        switch target {
        case .stdout:
            return .lines(EnvelopeOutput(fd: 1))
        case .file(let path):
            // 0600 like the log: the records are no less private in a copy.
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw ReplayFailure(message: "cannot create \(path): \(String(cString: strerror(errno)))")
            }
            return .lines(EnvelopeOutput(fd: fd))
        case .postgres:
            return .sink(
                PostgresSender(
                    sink: PostgresSink(
                        configuration: PostgresSinkConfiguration(conninfo: conninfo ?? ""),
                        logger: Logger(label: "walctl.replay")
                    )
                )
            )
        case .kafka:
            var settings = KafkaSinkConfiguration(bootstrapServers: bootstrap ?? "", deadLetterFile: deadLetters)
            settings.topicPrefix = kafkaTopicPrefix
            settings.groupID = kafkaGroup
            settings.apply(environment: environment)
            settings.properties += kafkaProperties.compactMap(KafkaProperty.init(assignment:))
            settings.commitsCursor = false
            return .sink(
                KafkaSender(
                    sink: KafkaSink(configuration: settings, logger: Logger(label: "walctl.replay")),
                    sourceService: Envelope.sourceService(directory: dir)
                )
            )
        }
    }
}

struct ReplayFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// What one batch did at the target.
struct ReplayOutcome {
    var sent: UInt64
    var present: UInt64 = 0
    var failed: UInt64 = 0
}

/// A sink replayed into.
protocol ReplaySender {
    func send(_ batch: [MetricRecord], logID: LogID) throws -> ReplayOutcome
    /// Moves the sink's cursor forward to `seq` when it is at or after `from - 1`; returns it afterwards.
    func advanceCursor(logID: LogID, from: UInt64, to seq: UInt64) throws -> UInt64
    func finish()
}

extension ReplaySender {
    /// Refuses to move a cursor that lies before `from`: the shipper would then skip the records in between.
    func checkAdvance(name: String, current: UInt64, from: UInt64) throws {
        guard current + 1 >= from else {
            throw ReplayFailure(
                message: "the \(name) cursor is at \(current), before --from-seq \(from): advancing it would skip "
                    + "\(current + 1)...\(from - 1); replay from \(current + 1) instead"
            )
        }
    }
}

/// Envelope JSON lines to a file descriptor; -1 writes nowhere (--dry-run).
final class EnvelopeOutput {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Writes `bytes` whole and empties it.
    func write(_ bytes: inout [UInt8]) throws {
        defer { bytes.removeAll(keepingCapacity: true) }
        guard fd >= 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReplayFailure(message: "write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// A file is fsynced and closed; stdout is left open.
    func finish() throws {
        guard fd > 2 else { return }
        defer { close(fd) }
        if fsync(fd) != 0 { throw ReplayFailure(message: "fsync failed: \(String(cString: strerror(errno)))") }
    }
}

final class PostgresSender: ReplaySender {
    let sink: PostgresSink
    init(sink: PostgresSink) { self.sink = sink }

    func send(_ batch: [MetricRecord], logID: LogID) throws -> ReplayOutcome {
        let outcome = try sink.replay(batch, logID: logID)
        return ReplayOutcome(sent: UInt64(outcome.inserted), present: UInt64(outcome.present))
    }

    func advanceCursor(logID: LogID, from: UInt64, to seq: UInt64) throws -> UInt64 {
        try checkAdvance(name: "postgres", current: try sink.cursor(logID: logID), from: from)
        return try sink.advanceCursor(logID: logID, to: seq)
    }

    func finish() { sink.disconnect() }
}

final class KafkaSender: ReplaySender {
    let sink: KafkaSink
    /// The log's source service: replay sends the shipper's exact messages.
    let sourceService: String

    init(sink: KafkaSink, sourceService: String) {
        self.sink = sink
        self.sourceService = sourceService
    }

    func send(_ batch: [MetricRecord], logID: LogID) throws -> ReplayOutcome {
        let before = sink.statistics
        try sink.deliver(
            ShipBatch(
                logID: logID,
                records: batch,
                throughSeq: batch.last?.seq ?? 0,
                skipped: [],
                sourceService: sourceService
            )
        )
        let after = sink.statistics
        return ReplayOutcome(
            sent: after.messagesDelivered - before.messagesDelivered,
            failed: after.deadLettered - before.deadLettered
        )
    }

    func advanceCursor(logID: LogID, from: UInt64, to seq: UInt64) throws -> UInt64 {
        try checkAdvance(name: "kafka", current: try sink.committedSeq(logID: logID), from: from)
        return try sink.advanceCursor(logID: logID, to: seq)
    }

    func finish() { sink.disconnect() }
}

// MARK: - Pace and progress

/// Sleeps as needed to keep a rate limit (records per second), measured from the start.
struct RatePacer {
    let recordsPerSecond: Int?
    private let started = monotonicNanos()
    private var sent = 0

    init(recordsPerSecond: Int?) { self.recordsPerSecond = recordsPerSecond }

    mutating func account(_ records: Int) {
        sent += records
        guard let recordsPerSecond else { return }
        let due = UInt64(Double(sent) / Double(recordsPerSecond) * 1e9)
        let elapsed = monotonicNanos() - started
        if due > elapsed { usleep(UInt32(min((due - elapsed) / 1000, 10_000_000))) }
    }
}

/// A progress bar with rate and ETA on a terminal (stderr), plain lines every 5 s otherwise.
struct ProgressReporter {
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

    mutating func update(seq: UInt64, sent: UInt64) {
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
