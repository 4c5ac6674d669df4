import Dispatch
import Synchronization
import WALCore

/// Read-ahead for a sink that commits one transaction at a time (PostgreSQL): the sink's transactions run in order
/// on a thread of their own, so that while batch N is copied and committed, the engine's thread reads and decodes
/// batch N+1 and hands it over. The server then starts on N+1 the moment N's `COMMIT` returns, instead of waiting
/// for the shipper to read it (before, the shipper and PostgreSQL took turns).
///
/// It implements `MetricSink.send`, `hasBatchesInFlight` and `awaitBatchesInFlight` for such a sink; the sink's own
/// `deliver` runs inside, unchanged. At most `depth` hand-overs are in flight (one running, `depth - 1` waiting):
/// `send` blocks while the queue is full, so memory stays bounded by `depth` batches beside the engine's.
///
/// **Never past a failure.** Transactions run strictly in order. When one throws, every hand-over still waiting is
/// dropped unrun (it was planned on the assumption that the failed one commits: it does not start right after
/// the committed position) and the failure is reported by the next `send` or `awaitBatchesInFlight`; the engine
/// then reads the positions back from the sink and plans again. So a batch only ever runs after every batch handed
/// over before it has committed. The positions committed before the failure are reported first (`send` returns
/// them without queueing its batches, which then count as in flight until the failure is thrown; none of them is
/// reported as committed).
///
/// **One owner of the sink's state at a time.** While a transaction runs, the sink's connection belongs to the
/// pipeline's thread; the caller's thread may use it again only after `quiesce()` returns (every other method of
/// the sink begins with it). The mutex hand-over orders the two threads' accesses.
///
/// Thread-safety: `send`, `awaitBatchesInFlight`, `hasBatchesInFlight`, `quiesce` are called by one thread (the
/// engine's); `interrupt` from any thread.
package final class DeliveryPipeline: @unchecked Sendable {
    private struct State {
        var queue: [[ShipBatch]] = []
        var running = false
        /// The failure of the last transaction that ran, until reported.
        var failure: (any Error)?
        /// True when `send` returned positions without queueing its batches because a failure waits to be reported.
        var refused = false
        /// Positions committed and not reported yet.
        var delivered: [LogID: UInt64] = [:]
        var interrupted = false
        var closed = false
        var started = false
        /// Statistics for tests: transactions run, and how many hand-overs waited while one ran, at most.
        var runs = 0
        var mostWaiting = 0

        var inFlight: Int { queue.count + (running ? 1 : 0) }
    }

    private let name: String
    private let depth: Int
    private let deliver: @Sendable ([ShipBatch]) throws -> Void
    private let state = Mutex(State())
    /// When the running transaction began (monotonic nanoseconds), 0 while none runs.
    private let runningSince = Atomic<UInt64>(0)
    /// One signal per hand-over queued (and one to close); a signal for a dropped hand-over finds the queue empty.
    private let work = DispatchSemaphore(value: 0)
    /// One signal per transaction finished (or hand-overs dropped): wakes the engine's thread where it waits.
    private let progress = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - name: the thread's name.
    ///   - depth: hand-overs in flight at most (at least 1: 1 runs each batch while the next one is read, without
    ///     queueing it; 2 also keeps the next one ready for the moment the running one commits).
    ///   - deliver: the sink's transaction for some batches (`MetricSink.deliver`); it runs on the pipeline's thread.
    package init(name: String, depth: Int = 2, deliver: @escaping @Sendable ([ShipBatch]) throws -> Void) {
        self.name = name
        self.depth = max(1, depth)
        self.deliver = deliver
    }

    deinit {
        close()
    }

    /// Ends the thread once the transaction running (if any) ends; hand-overs waiting are dropped.
    package func close() {
        let wake = state.withLock { state -> Bool in
            state.closed = true
            state.queue.removeAll()
            return state.started
        }
        if wake { work.signal() }
    }

    /// `MetricSink.send`: hands the batches over (waiting while `depth` hand-overs are in flight) and returns the
    /// positions committed since the last report; throws the failure of an earlier hand-over.
    package func send(_ batches: [ShipBatch]) throws -> [LogID: UInt64] {
        while true {
            let outcome = try state.withLock { state throws -> (positions: [LogID: UInt64], queued: Bool)? in
                if state.interrupted {
                    // Stopping: nothing more is handed over, and the engine's loop ends without a failure.
                    state.refused = true
                    return (take(&state), false)
                }
                if state.failure != nil {
                    if !state.delivered.isEmpty {
                        state.refused = true
                        return (take(&state), false)
                    }
                    try reportFailure(&state)
                }
                guard state.inFlight < depth else { return nil }
                state.queue.append(batches)
                state.mostWaiting = max(state.mostWaiting, state.queue.count - (state.running ? 0 : 1))
                if !state.started {
                    state.started = true
                    OSThread.start(name: name) { [self] in self.serve() }.detach()
                }
                return (take(&state), true)
            }
            if let outcome {
                if outcome.queued { work.signal() }
                return outcome.positions
            }
            progress.wait()
        }
    }

    /// `MetricSink.hasBatchesInFlight`: a transaction runs or waits, or a failure waits to be reported.
    package var hasBatchesInFlight: Bool {
        state.withLock { $0.inFlight > 0 || $0.failure != nil || $0.refused || !$0.delivered.isEmpty }
    }

    /// `MetricSink.awaitBatchesInFlight`: waits up to `milliseconds` for a transaction to end and returns the
    /// positions committed since the last report; throws a failure once those are reported.
    package func awaitBatchesInFlight(milliseconds: Int) throws -> [LogID: UInt64] {
        let deadline = DispatchTime.now() + .milliseconds(max(0, milliseconds))
        while true {
            let outcome = try state.withLock { state throws -> [LogID: UInt64]? in
                if !state.delivered.isEmpty { return take(&state) }
                if state.failure != nil || state.refused { try reportFailure(&state) }
                return state.inFlight == 0 ? [:] : nil
            }
            if let outcome { return outcome }
            if progress.wait(timeout: deadline) == .timedOut { return [:] }
        }
    }

    /// Waits until no transaction runs or waits (the caller's thread may then use the sink's connection). What
    /// committed meanwhile, and a failure, are still reported by the next `send` or `awaitBatchesInFlight`.
    package func quiesce() {
        while state.withLock({ $0.inFlight > 0 }) { progress.wait() }
    }

    /// Stops handing over: what waits is dropped, the transaction running ends as it would (thread-safe).
    package func interrupt() {
        state.withLock { state in
            state.interrupted = true
            state.queue.removeAll()
        }
        progress.signal()
    }

    /// When the transaction running now began (monotonic nanoseconds), nil while none runs: a transaction that
    /// hangs (a lock wait) is told by it, while the engine's own calls keep returning.
    package var runningSinceNanos: UInt64? {
        let since = runningSince.load(ordering: .relaxed)
        return since == 0 ? nil : since
    }

    /// Transactions run so far, hand-overs waiting now, and the most that waited behind a running one (for tests).
    package var counts: (runs: Int, running: Bool, waiting: Int, mostWaiting: Int) {
        state.withLock { ($0.runs, $0.running, $0.queue.count, $0.mostWaiting) }
    }

    // MARK: - The pipeline's thread

    private func serve() {
        while true {
            work.wait()
            let next = state.withLock { state -> [ShipBatch]?? in
                if state.closed { return .some(nil) }
                guard !state.queue.isEmpty else { return .none }
                state.running = true
                state.runs += 1
                return .some(state.queue.removeFirst())
            }
            guard let job = next else { continue }
            guard let batches = job else { return }
            var failure: (any Error)?
            runningSince.store(max(monotonicNow(), 1), ordering: .relaxed)
            do {
                try deliver(batches)
            } catch {
                failure = error
            }
            runningSince.store(0, ordering: .relaxed)
            state.withLock { state in
                state.running = false
                if let failure {
                    state.failure = failure
                    // Planned on the assumption that this one commits: never run.
                    state.queue.removeAll()
                } else {
                    state.delivered.merge(ShipBatch.positions(batches)) { max($0, $1) }
                }
            }
            progress.signal()
        }
    }

    private func take(_ state: inout State) -> [LogID: UInt64] {
        defer { state.delivered.removeAll(keepingCapacity: true) }
        return state.delivered
    }

    private func reportFailure(_ state: inout State) throws {
        state.refused = false
        if let failure = state.failure {
            state.failure = nil
            throw failure
        }
        if state.interrupted { throw DeliveryInterrupted() }
    }
}

/// A hand-over after `interrupt` (shutdown): nothing of it was delivered.
package struct DeliveryInterrupted: Error, CustomStringConvertible {
    package var description: String { "delivery interrupted (stopping)" }
}
