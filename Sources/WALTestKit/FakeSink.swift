import Foundation
import Synchronization
import WALCore
import WALMetrics
import WALShipping

/// An in-memory `MetricSink` for tests of shipping and replay: rows keyed by (log id, seq), so writing one twice
/// keeps one, and a committed position per log. `failNext` injects transient failures; a failed `replay` first
/// writes half of its batch (a failure after partial work), as a real sink may. Thread-safe.
public final class FakeSink: MetricSink, @unchecked Sendable {
    public let name: String

    struct State {
        var rows: [LogID: [UInt64: MetricRecord]] = [:]
        var committed: [LogID: UInt64] = [:]
        var skipped: [LogID: [SkippedEntry]] = [:]
        var failures = 0
        var unreachable = false
        var replayCalls = 0
        var disconnects = 0
    }

    private let state = Mutex(State())

    public init(name: String = "fake") { self.name = name }

    /// The error injected failures throw.
    public struct InjectedFailure: Error, CustomStringConvertible {
        public var description: String { "injected failure" }
    }

    /// The next `count` calls of `replay` or `deliver` fail (transiently).
    public func failNext(_ count: Int) { state.withLock { $0.failures = count } }

    /// The records held for `logID`, by sequence number.
    public func rows(of logID: LogID) -> [UInt64: MetricRecord] { state.withLock { $0.rows[logID] ?? [:] } }

    /// The skipped entries (gaps, damage, undecodable records) delivered for `logID`, in order.
    public func skipped(of logID: LogID) -> [SkippedEntry] { state.withLock { $0.skipped[logID] ?? [] } }

    /// While true, every call that reaches the sink (positions, delivery) fails, as a server that is down.
    public func setUnreachable(_ unreachable: Bool) { state.withLock { $0.unreachable = unreachable } }

    public var replayCalls: Int { state.withLock { $0.replayCalls } }
    public var disconnects: Int { state.withLock { $0.disconnects } }

    /// Sets the committed position of `logID` (as if a shipper had committed it).
    public func setCommitted(_ seq: UInt64, of logID: LogID) { state.withLock { $0.committed[logID] = seq } }

    public func committedSeq(logID: LogID) throws -> UInt64 {
        try state.withLock {
            if $0.unreachable { throw InjectedFailure() }
            return $0.committed[logID] ?? 0
        }
    }

    /// While held, `deliver` does not return (a call hung in the sink: a lock wait, a network black hole) until
    /// released.
    public func hold() { gate.withLock { $0 = true } }
    public func release() { gate.withLock { $0 = false } }
    private let gate = Mutex(false)

    public func deliver(_ batch: ShipBatch) throws {
        while gate.withLock({ $0 }) { usleep(1000) }
        try state.withLock { state in
            if state.unreachable { throw InjectedFailure() }
            if state.failures > 0 {
                state.failures -= 1
                throw InjectedFailure()
            }
            for record in batch.records { state.rows[batch.logID, default: [:]][record.seq] = record }
            state.skipped[batch.logID, default: []] += batch.skipped
            state.committed[batch.logID] = max(state.committed[batch.logID] ?? 0, batch.throughSeq)
        }
    }

    public func replay(_ batch: ShipBatch) throws -> ReplayOutcome {
        try state.withLock { state in
            state.replayCalls += 1
            let failing = state.failures > 0
            let records = failing ? batch.records.prefix(batch.records.count / 2) : batch.records[...]
            var outcome = ReplayOutcome()
            for record in records {
                if state.rows[batch.logID]?[record.seq] == nil {
                    state.rows[batch.logID, default: [:]][record.seq] = record
                    outcome.sent += 1
                } else {
                    outcome.alreadyPresent += 1
                }
            }
            if failing {
                state.failures -= 1
                throw InjectedFailure()
            }
            return outcome
        }
    }

    public func advanceCursor(logID: LogID, to seq: UInt64) throws -> UInt64 {
        state.withLock { state in
            let position = max(state.committed[logID] ?? 0, seq)
            state.committed[logID] = position
            return position
        }
    }

    public func disconnect() { state.withLock { $0.disconnects += 1 } }
}

extension FakeSink.InjectedFailure: SinkErrorKind {
    public var kind: String { "injected" }
}
