import WALCore
import WALMetrics

/// A batch of decoded records for a sink, with the log position it completes.
public struct ShipBatch: Sendable {
    public var logID: LogID
    public var records: [MetricRecord]
    /// The last sequence number this batch accounts for: its records, and any gaps, damage or undecodable records
    /// met before the next record (those are reported in `skipped`, not silently passed over).
    public var throughSeq: UInt64
    /// What the batch passes over, with reasons (for dead-letter tables and logs).
    public var skipped: [SkippedEntry]
    /// The log's `source_service` (`Envelope.sourceService(directory:)`), for sinks that render envelopes; nil
    /// leaves it to the sink's configuration.
    public var sourceService: String?
    /// The log's directory, for sinks that keep something beside the log (the Kafka sink's dead-letter file when
    /// one sink ships many logs); nil leaves it to the sink's configuration.
    public var directory: String?
    /// The records as the log holds them, undecoded, for a sink that takes them so
    /// (`MetricSink.takesEncodedRecords`): then `records` is empty and the sink decodes what it needs (undecodable
    /// records are the sink's to report). Empty otherwise.
    public var encoded = EncodedRecords()

    /// The number of records the batch carries, decoded or encoded.
    public var recordCount: Int { records.count + encoded.count }

    /// The position this batch continues from (the shipping engine's: the sink's committed position plus the
    /// batches handed over before it). An exactly-once sink refuses the batch, writing nothing, when its committed
    /// cursor is elsewhere (a batch planned past a failure); nil: not checked.
    public var afterSeq: UInt64?

    public init(
        logID: LogID,
        records: [MetricRecord],
        throughSeq: UInt64,
        skipped: [SkippedEntry],
        sourceService: String? = nil,
        directory: String? = nil
    ) {
        self.logID = logID
        self.records = records
        self.throughSeq = throughSeq
        self.skipped = skipped
        self.sourceService = sourceService
        self.directory = directory
    }
}

extension ShipBatch {
    /// The position each log reaches once `batches` are committed (the highest `throughSeq` of its batches).
    package static func positions(_ batches: some Sequence<ShipBatch>) -> [LogID: UInt64] {
        var positions: [LogID: UInt64] = [:]
        for batch in batches { positions[batch.logID] = max(positions[batch.logID] ?? 0, batch.throughSeq) }
        return positions
    }
}

/// Something in the log that is not a deliverable record (a gap, a damaged region, an undecodable record): a range
/// of sequence numbers and the reason, as the log reports gaps.
public typealias SkippedEntry = GapMarker

/// A destination for metric records. Every method blocks; the shipper calls them from its own thread, one at a time.
public protocol MetricSink: AnyObject, Sendable {
    /// The shipper's name in cursors and logs (`postgres`, `kafka`).
    var name: String { get }

    /// The last sequence number of `logID` the sink has durably committed (0 for none), read from the sink itself.
    /// Connects (or reconnects) as needed.
    func committedSeq(logID: LogID) throws -> UInt64

    /// Delivers the batch and commits `batch.throughSeq`. An exactly-once sink commits both atomically. Records the
    /// sink rejects permanently are its to dead-letter; it throws only for failures to retry (after which the
    /// shipper asks `committedSeq` again, since the commit may or may not have happened).
    func deliver(_ batch: ShipBatch) throws

    /// The committed positions of many logs at once (a host shipper starting on a thousand logs). A log another
    /// shipper is shipping into the same place right now is left out of the answer: ask again later, without
    /// holding up the others.
    func committedSeqs(logIDs: [LogID]) throws -> [LogID: UInt64]

    /// Delivers the batches of several logs and commits each one's `throughSeq`, as `deliver` does for one. An
    /// exactly-once sink commits all of them and their cursors in one transaction; otherwise, on a throw, any
    /// subset may have been committed (the shipper asks `committedSeqs` again).
    func deliver(_ batches: [ShipBatch]) throws

    /// Hands the batches to the sink like `deliver`, but may return before they are committed: a pipelining sink
    /// (Kafka) keeps producing while earlier batches are acknowledged. Returns the positions of the logs whose
    /// batches are now committed, each the end of the contiguous committed prefix of what was sent (never past a
    /// batch not committed yet). On a throw nothing still in flight counts as committed (the shipper asks
    /// `committedSeqs` again). The default delivers (`deliver`) and returns every batch's `throughSeq`.
    func send(_ batches: [ShipBatch]) throws -> [LogID: UInt64]

    /// True while batches handed to `send` are not yet committed. The default: false.
    var hasBatchesInFlight: Bool { get }

    /// Waits up to `milliseconds` (blocking, without busy waiting) for batches in flight to be committed and
    /// returns the positions committed since the last report, as `send` does; throws as `send` does.
    func awaitBatchesInFlight(milliseconds: Int) throws -> [LogID: UInt64]

    /// Commits what `deliver` delivered but left to commit later (a sink that batches its cursor commits: Kafka's
    /// per-log cursors when many logs ship at once). Called before a drain reports success and when stopping.
    func commitDeferred() throws

    /// Closes connections. The shipper may call `committedSeq` again later, which reconnects.
    func disconnect()

    /// Asks a `deliver` in progress on another thread to give up soon (shutdown). Thread-safe. After it, `deliver`
    /// may throw; nothing is committed that was not delivered.
    func interruptDelivery()

    /// Records this sink refused for good and dead-lettered since it was made (thread-safe; 0 by default).
    var deadLetteredRecords: UInt64 { get }

    /// When a call the sink runs on a thread of its own began (PostgreSQL's read-ahead transaction), on the
    /// monotonic clock; nil while none runs (thread-safe; nil by default). The engine's hung-call mark covers the
    /// calls it makes itself; this covers the work those calls hand over and return from.
    var callRunningSinceNanos: UInt64? { get }

    /// True when the sink renders records straight from their bytes in the log: the engine then hands it
    /// `ShipBatch.encoded` instead of decoding each record into a `MetricRecord` (`records` stays empty). The
    /// default: false.
    var takesEncodedRecords: Bool { get }

    // MARK: Replay

    /// Writes the batch's records idempotently and commits no cursor (`Replayer`, `walctl replay`): sending the
    /// same batch again, or over what a shipper already sent, adds nothing a reader keeps twice (PostgreSQL skips
    /// rows it holds; Kafka resends the same event ids, which consumers drop). `skipped` is ignored and nothing is
    /// written beside the log. Throws for failures worth retrying (the whole batch may then be sent again) and
    /// `FatalSinkError` for the rest. The default refuses: a sink replays only when it says so.
    func replay(_ batch: ShipBatch) throws -> ReplayOutcome

    /// The committed position of `logID`, read without taking the log from a shipper that runs beside (for
    /// replay's `--advance-cursor` and for lag). The default is `committedSeq(logID:)`.
    func peekCommittedSeq(logID: LogID) throws -> UInt64

    /// Moves the committed position of `logID` forward to `seq`, never back, and returns it afterwards
    /// (`walctl replay --advance-cursor`). The default refuses.
    func advanceCursor(logID: LogID, to seq: UInt64) throws -> UInt64
}

/// What one replayed batch did at the sink.
public struct ReplayOutcome: Sendable, Equatable {
    /// Records written (rows inserted, messages acknowledged, lines written).
    public var sent: UInt64
    /// Records the sink already held and skipped (PostgreSQL only).
    public var alreadyPresent: UInt64
    /// Records the sink refused for good (dead-lettered).
    public var failed: UInt64

    public init(sent: UInt64 = 0, alreadyPresent: UInt64 = 0, failed: UInt64 = 0) {
        self.sent = sent
        self.alreadyPresent = alreadyPresent
        self.failed = failed
    }

    public static func += (lhs: inout ReplayOutcome, rhs: ReplayOutcome) {
        lhs.sent += rhs.sent
        lhs.alreadyPresent += rhs.alreadyPresent
        lhs.failed += rhs.failed
    }
}

extension MetricSink {
    public func interruptDelivery() {}

    public var deadLetteredRecords: UInt64 { 0 }

    public var callRunningSinceNanos: UInt64? { nil }

    public var takesEncodedRecords: Bool { false }

    public func commitDeferred() throws {}

    public func committedSeqs(logIDs: [LogID]) throws -> [LogID: UInt64] {
        var positions: [LogID: UInt64] = [:]
        for logID in logIDs { positions[logID] = try committedSeq(logID: logID) }
        return positions
    }

    public func deliver(_ batches: [ShipBatch]) throws {
        for batch in batches { try deliver(batch) }
    }

    public func send(_ batches: [ShipBatch]) throws -> [LogID: UInt64] {
        try deliver(batches)
        return ShipBatch.positions(batches)
    }

    public var hasBatchesInFlight: Bool { false }

    public func awaitBatchesInFlight(milliseconds: Int) throws -> [LogID: UInt64] { [:] }

    public func replay(_ batch: ShipBatch) throws -> ReplayOutcome {
        throw FatalSinkError("the \(name) sink cannot replay")
    }

    public func peekCommittedSeq(logID: LogID) throws -> UInt64 { try committedSeq(logID: logID) }

    public func advanceCursor(logID: LogID, to seq: UInt64) throws -> UInt64 {
        throw FatalSinkError("the \(name) sink keeps no cursor to advance")
    }
}

/// Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
public struct RetryPolicy: Sendable {
    public var initialMilliseconds: Int = 100
    public var maximumMilliseconds: Int = 30_000

    public init(initialMilliseconds: Int = 100, maximumMilliseconds: Int = 30_000) {
        self.initialMilliseconds = initialMilliseconds
        self.maximumMilliseconds = maximumMilliseconds
    }

    /// The delay before retry number `attempt` (1 for the first retry): uniform in [0, min(max, initial * 2^(attempt-1))].
    public func delayMilliseconds(attempt: Int) -> Int {
        let exponent = min(max(attempt - 1, 0), 20)
        let ceiling = min(maximumMilliseconds, initialMilliseconds << exponent)
        return Int.random(in: 0...max(ceiling, 1))
    }
}

/// An error that names its kind for the shippers' error counters (`walctl_ship_errors_total{kind="..."}`): a short,
/// stable, low-cardinality word such as `connection`, `timeout` or `server`, never a message.
public protocol SinkErrorKind: Error {
    var kind: String { get }
}

/// An error no retry can fix (a schema newer than this code, a configuration mistake): the shipper stops and
/// reports it instead of retrying forever.
public struct FatalSinkError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
