import Synchronization
import WALCore
import WALMetrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Settings of a replay.
public struct ReplayConfiguration: Sendable {
    /// Which records are sent: a sequence range, a time range and content filters.
    public var filter = RecordFilter()
    /// Records per sink call (one transaction, one produce batch).
    public var batchSize = 5000
    /// At most this many records per second (nil: as fast as the sink takes them).
    public var recordsPerSecond: Int?
    /// Attempts per batch before a transient failure stops the replay.
    public var attempts = 5
    public var retry = RetryPolicy(initialMilliseconds: 200, maximumMilliseconds: 5000)
    /// Afterwards, move the sink's committed cursor forward to the last sequence number replayed (never back).
    /// Refused when the cursor lies before `filter.fromSeq` (the shipper would skip the records in between); only
    /// meaningful without content filters (the caller checks: the cursor would pass records not replayed).
    public var advancesCursor = false

    public init() {}
}

/// What a replay did (so far, while it runs).
public struct ReplayStatistics: Sendable, Equatable {
    /// Records the sink took (rows inserted, messages acknowledged, lines written; with no sink, records counted).
    public var sent: UInt64 = 0
    /// Records the sink already held and skipped.
    public var alreadyPresent: UInt64 = 0
    /// Records the sink refused for good (dead-lettered by the sink).
    public var failed: UInt64 = 0
    /// The first record replayed, and the last sequence number read (a record, filtered out or passed over).
    public var firstSeq: UInt64?
    public var lastSeq: UInt64?
    /// What the read met: records matched and filtered out, gaps, damage, undecodable records.
    public var scan = RecordScan.Counts()
    public var batches: UInt64 = 0
    /// Failed attempts that were retried.
    public var retries: UInt64 = 0
    /// The sink's cursor after `advancesCursor`.
    public var cursor: UInt64?
    public var seconds: Double = 0

    public init() {}
}

/// Something a running replay reports, on the replaying thread.
public enum ReplayEvent: Sendable {
    /// A batch was taken by the sink: the last sequence number it held, and records done so far (sent and already
    /// present).
    case progress(seq: UInt64, done: UInt64)
    /// An attempt failed and is retried after a backoff.
    case retrying(attempt: Int, error: String)
    /// The read passed over a gap, a damaged region or an undecodable record (one line naming it).
    case passedOver(String)
}

/// Why a replay stopped, with what it had done and, when a batch failed, where to resume.
public struct ReplayError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// The first sequence number not known to be sent (`--from-seq` of the next attempt), when a batch failed.
    public var resumeFromSeq: UInt64?
    public var statistics: ReplayStatistics
    public var description: String { message }
}

/// Re-sends a range of a log through a `MetricSink`'s idempotent `replay` (never its cursor-committing
/// `deliver`): `walctl replay` after an outage, or any Swift program. Reads lock-free and read-only (a live log, a
/// crashed one, a read-only copy: nothing is written into the log directory), in batches of
/// `configuration.batchSize`, paced to `recordsPerSecond`, each batch retried with the shipper's `RetryPolicy`
/// backoff (the sink disconnected in between, so that nothing a failed attempt left half-done is reused) up to
/// `attempts` times. Sending a range twice adds nothing the sink does not already hold.
///
/// An `EnvelopeFileSink` takes the fast path: envelope lines rendered straight from the log's bytes, no
/// `MetricRecord` built. Without a sink (a dry run), records are only counted.
///
/// Blocking: `run` works on the calling thread. `statistics` and `stop` are thread-safe.
public final class Replayer: @unchecked Sendable {
    public let directory: String
    public let sink: (any MetricSink)?
    public let configuration: ReplayConfiguration
    private let current = Mutex(ReplayStatistics())
    private let stopRequested = Atomic<Bool>(false)

    /// `sink` nil counts what would be sent (a dry run).
    public init(directory: String, sink: (any MetricSink)?, configuration: ReplayConfiguration) {
        self.directory = directory
        self.sink = sink
        self.configuration = configuration
    }

    /// The counters so far.
    public var statistics: ReplayStatistics { current.withLock { $0 } }

    /// Asks a running replay to stop after the batch in flight (it then throws, saying where to resume).
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        sink?.interruptDelivery()
    }

    /// Replays the range; returns the statistics, or throws a `ReplayError` carrying them.
    public func run(events: @escaping (ReplayEvent) -> Void = { _ in }) throws(ReplayError) -> ReplayStatistics {
        let started = monotonicNanos()
        var statistics = ReplayStatistics()
        func finished() -> ReplayStatistics {
            statistics.lastSeq = statistics.scan.lastSeq > 0 ? statistics.scan.lastSeq : nil
            statistics.seconds = Double(monotonicNanos() - started) / 1e9
            current.withLock { $0 = statistics }
            return statistics
        }
        let logID: LogID
        do {
            logID = try LogDirectory(path: directory).readMeta().logID
        } catch {
            throw ReplayError(message: "cannot read the log: \(error)", statistics: finished())
        }
        let scan = RecordScan(report: { events(.passedOver($0)) })
        do {
            switch sink {
            case let file as EnvelopeFileSink:
                try writeLines(to: file, logID: logID, scan: scan, statistics: &statistics, events: events)
            case .some(let sink):
                try sendBatches(to: sink, logID: logID, scan: scan, statistics: &statistics, events: events)
            case nil:
                try writeLines(to: nil, logID: logID, scan: scan, statistics: &statistics, events: events)
            }
        } catch let failure as BatchFailure {
            throw ReplayError(message: failure.message, resumeFromSeq: failure.resumeFromSeq, statistics: finished())
        } catch {
            throw ReplayError(message: "cannot read the log: \(error)", statistics: finished())
        }
        if configuration.advancesCursor, let sink {
            do {
                statistics.cursor = try advanceCursor(of: sink, logID: logID, to: statistics.scan.lastSeq)
            } catch let failure as BatchFailure {
                throw ReplayError(message: failure.message, statistics: finished())
            } catch {
                throw ReplayError(message: "\(error)", statistics: finished())
            }
        }
        return finished()
    }

    struct BatchFailure: Error {
        var message: String
        var resumeFromSeq: UInt64?
    }

    // MARK: - Envelope lines (files, stdout, dry runs)

    private func writeLines(
        to file: EnvelopeFileSink?,
        logID: LogID,
        scan: RecordScan,
        statistics: inout ReplayStatistics,
        events: (ReplayEvent) -> Void
    ) throws {
        var pacer = RatePacer(recordsPerSecond: configuration.recordsPerSecond)
        let block = min(configuration.batchSize, configuration.recordsPerSecond ?? .max)
        var output: [UInt8] = []
        output.reserveCapacity(1 << 17)
        var pending = 0
        var counts = RecordScan.Counts()
        defer { statistics.scan = counts }
        try scan.envelopes(
            directory: directory,
            filter: configuration.filter,
            logID: logID,
            counts: &counts,
            output: &output
        ) {
            seq,
            bytes in
            statistics.firstSeq = statistics.firstSeq ?? seq
            pending += 1
            if pending >= block || bytes.count >= 1 << 16 {
                try file?.write(&bytes)
                bytes.removeAll(keepingCapacity: true)
                statistics.sent += UInt64(pending)
                statistics.batches += 1
                pacer.account(pending)
                pending = 0
                publish(statistics)
                events(.progress(seq: seq, done: statistics.sent))
            }
            return !stopRequested.load(ordering: .relaxed)
        }
        try file?.write(&output)
        statistics.sent += UInt64(pending)
        if pending > 0 { statistics.batches += 1 }
    }

    // MARK: - Sinks

    private func sendBatches(
        to sink: any MetricSink,
        logID: LogID,
        scan: RecordScan,
        statistics: inout ReplayStatistics,
        events: (ReplayEvent) -> Void
    ) throws {
        var pacer = RatePacer(recordsPerSecond: configuration.recordsPerSecond)
        let limit = min(configuration.batchSize, configuration.recordsPerSecond ?? .max)
        let sourceService = Envelope.sourceService(directory: directory)
        var records: [MetricRecord] = []
        records.reserveCapacity(min(limit, 1 << 16))
        var counts = RecordScan.Counts()
        defer { statistics.scan = counts }
        func flush() throws {
            guard let last = records.last else { return }
            // No directory: a sink keeps nothing beside the log during a replay.
            let batch = ShipBatch(
                logID: logID,
                records: records,
                throughSeq: last.seq,
                skipped: [],
                sourceService: sourceService
            )
            let outcome = try send(batch, to: sink, statistics: &statistics, events: events)
            statistics.sent += outcome.sent
            statistics.alreadyPresent += outcome.alreadyPresent
            statistics.failed += outcome.failed
            statistics.batches += 1
            pacer.account(records.count)
            records.removeAll(keepingCapacity: true)
            publish(statistics)
            events(.progress(seq: last.seq, done: statistics.sent + statistics.alreadyPresent))
        }
        try scan.run(directory: directory, filter: configuration.filter, counts: &counts) { record in
            statistics.firstSeq = statistics.firstSeq ?? record.seq
            records.append(record)
            if records.count >= limit { try flush() }
            return true
        }
        try flush()
    }

    /// One batch, retried with backoff on transient failures. Each attempt sends the whole batch again (the sink's
    /// `replay` is idempotent), on a fresh connection.
    private func send(
        _ batch: ShipBatch,
        to sink: any MetricSink,
        statistics: inout ReplayStatistics,
        events: (ReplayEvent) -> Void
    ) throws -> ReplayOutcome {
        var attempt = 0
        let first = batch.records.first?.seq ?? batch.throughSeq
        while true {
            attempt += 1
            do {
                return try sink.replay(batch)
            } catch {
                let stopping = stopRequested.load(ordering: .relaxed)
                if attempt >= max(1, configuration.attempts) || error is FatalSinkError || stopping {
                    throw BatchFailure(
                        message: "\(error); records up to \(first - 1) were sent: resume with --from-seq \(first)",
                        resumeFromSeq: first
                    )
                }
                statistics.retries += 1
                events(.retrying(attempt: attempt, error: "\(error)"))
                sink.disconnect()
                sleep(milliseconds: configuration.retry.delayMilliseconds(attempt: attempt))
            }
        }
    }

    /// Moves the sink's cursor forward to `seq`, refusing when it lies before the replayed range's start.
    private func advanceCursor(of sink: any MetricSink, logID: LogID, to seq: UInt64) throws -> UInt64 {
        let from = configuration.filter.fromSeq
        let position = try sink.peekCommittedSeq(logID: logID)
        guard position + 1 >= from else {
            throw BatchFailure(
                message: "the \(sink.name) cursor is at \(position), before --from-seq \(from): advancing it would "
                    + "skip \(position + 1)...\(from - 1); replay from \(position + 1) instead"
            )
        }
        return try sink.advanceCursor(logID: logID, to: seq)
    }

    /// Publishes the counters for `statistics` readers (the scan's counts are published at the end).
    private func publish(_ statistics: ReplayStatistics) {
        current.withLock { $0 = statistics }
    }

    private func sleep(milliseconds: Int) {
        sleepMilliseconds(milliseconds) { stopRequested.load(ordering: .relaxed) }
    }
}

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
