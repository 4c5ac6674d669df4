import Logging
import ServiceLifecycle
import Synchronization
import WALCore
import WALMetrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Settings of a shipper.
public struct ShipperConfiguration: Sendable {
    /// Records per batch when keeping up. Default 100 (the design).
    public var batchSize = 100
    /// Longest a record waits for its batch to fill, in milliseconds. Default 1000 (the design).
    public var flushIntervalMilliseconds = 1000
    /// Records per batch when catching up (more records are already waiting). Default 10,000.
    public var catchUpBatchSize = 10_000
    /// How often the log is polled for new records when idle, in milliseconds.
    public var pollMilliseconds = 20
    public var retry = RetryPolicy()
    /// Stop (successfully) once everything up to this sequence number is committed.
    public var drainThroughSeq: UInt64?

    public init() {}
}

/// The counters of a running shipper.
public struct ShipperStatistics: Sendable, Equatable {
    /// The last sequence number committed in the sink.
    public var committedSeq: UInt64 = 0
    public var recordsShipped: UInt64 = 0
    public var batchesShipped: UInt64 = 0
    /// Gaps, damage and undecodable records passed over (each reported).
    public var entriesSkipped: UInt64 = 0
    /// Records sealed in the log and not yet committed in the sink.
    public var recordsBehind: UInt64 = 0
    /// Age in seconds of the oldest record read but not yet committed (0 when caught up).
    public var oldestUnshippedAgeSeconds: Double = 0
    public var retries: UInt64 = 0
    /// The last error, with secrets redacted, and when (ns since the epoch).
    public var lastError: String?
    public var lastErrorAtNanos: UInt64?
    public var connected = false
}

/// Tails a log from the sink's committed position and delivers every metric record to one sink, independently of
/// any other shipper: it runs its blocking loop on a dedicated OS thread (never the cooperative pool), retries
/// transient failures with backoff forever while the log accumulates, and keeps a local cursor (named after the
/// sink) so that retention never deletes what it has not shipped.
///
/// Run it as a swift-service-lifecycle `Service`; graceful shutdown lets the batch in flight finish.
public final class Shipper: Service, @unchecked Sendable {
    public let directory: String
    public let sink: any MetricSink
    public let configuration: ShipperConfiguration
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let state = Mutex(ShipperStatistics())

    public init(directory: String, sink: any MetricSink, configuration: ShipperConfiguration, logger: Logger) {
        self.directory = directory
        self.sink = sink
        self.configuration = configuration
        self.logger = logger
    }

    public var statistics: ShipperStatistics { state.withLock { $0 } }

    /// Asks the loop to stop after the batch in flight.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        sink.interruptDelivery()
    }

    public func run() async throws {
        try await runOnDedicatedThread(name: "ship-\(sink.name)", stop: { self.stop() }) { try self.loop() }
    }

    /// Runs the loop on the calling thread until stopped or drained (for tools and tests).
    public func runBlocking() throws { try loop() }

    // MARK: - The loop

    private func loop() throws {
        let meta = try LogDirectory(path: directory).readMeta()
        let cursors = CursorStore(path: directory)
        let decoder = MetricsDecoder(directory: directory)
        var committed: UInt64?
        var tail: TailReader?
        var attempt = 0
        var pending: [MetricRecord] = []
        var pendingSkipped: [SkippedEntry] = []
        var pendingThrough: UInt64 = 0
        var firstPendingAt: UInt64?
        let batchCap = max(1, configuration.catchUpBatchSize, configuration.batchSize)

        while !stopRequested.load(ordering: .relaxed) {
            do {
                // Where the sink is: after any failure the commit may or may not have happened, so ask it.
                if committed == nil {
                    let position = try sink.committedSeq(logID: meta.logID)
                    committed = position
                    tail = TailReader(path: directory, after: position)
                    pending.removeAll()
                    pendingSkipped.removeAll()
                    pendingThrough = position
                    firstPendingAt = nil
                    state.withLock {
                        $0.committedSeq = position
                        $0.connected = true
                    }
                    try? cursors.store(sink.name, seq: position)
                    logger.info("shipping from the sink's committed position", metadata: ["seq": "\(position)"])
                }
                guard let reader = tail, let position = committed else { continue }
                if let target = configuration.drainThroughSeq, position >= target { return }

                // Read what is available, up to a batch (frames come whole, so a read may overshoot: the excess
                // waits for the next batch).
                let room = batchCap - pending.count
                if room > 0 {
                    _ = try reader.poll(maxEntries: room) { entry in
                        switch entry {
                        case .record(let seq, let bytes):
                            switch decoder.decode(seq: seq, bytes: bytes) {
                            case .success(let record): pending.append(record)
                            case .failure(let failure):
                                pendingSkipped.append(
                                    SkippedEntry(fromSeq: seq, toSeq: seq, reason: failure.description)
                                )
                            }
                            pendingThrough = seq
                        case .gap(let gap):
                            pendingSkipped.append(gap)
                            pendingThrough = max(pendingThrough, gap.toSeq)
                        case .damage(let damage):
                            let from = damage.lostFromSeq ?? pendingThrough + 1
                            let to = damage.lostToSeq ?? from
                            pendingSkipped.append(SkippedEntry(fromSeq: from, toSeq: to, reason: damage.description))
                            logger.error("damaged log region passed over", metadata: ["damage": "\(damage)"])
                            pendingThrough = max(pendingThrough, to)
                        }
                    }
                }
                let now = monotonicNow()
                if pendingThrough > position && firstPendingAt == nil { firstPendingAt = now }
                let waited = firstPendingAt.map { now - $0 } ?? 0
                let draining = configuration.drainThroughSeq.map { pendingThrough >= $0 } ?? false
                let due =
                    pending.count >= configuration.batchSize
                    || waited >= UInt64(configuration.flushIntervalMilliseconds) * 1_000_000
                    || (draining && pendingThrough > position)
                    || (pending.isEmpty && !pendingSkipped.isEmpty)
                updateLag(position: position, pending: pending)
                guard due, pendingThrough > position else {
                    sleepMilliseconds(configuration.pollMilliseconds)
                    continue
                }
                // A batch never exceeds batchCap records: that bounds a transaction, and what a crash
                // between delivery and commit can send twice.
                var batch = ShipBatch(
                    logID: meta.logID,
                    records: pending,
                    throughSeq: pendingThrough,
                    skipped: pendingSkipped,
                    sourceService: decoder.sourceService
                )
                if pending.count > batchCap {
                    let cut = pending[batchCap - 1].seq
                    batch.records = Array(pending.prefix(batchCap))
                    batch.skipped = pendingSkipped.filter { $0.toSeq <= cut }
                    batch.throughSeq = cut
                }
                try sink.deliver(batch)
                committed = batch.throughSeq
                attempt = 0
                state.withLock {
                    $0.committedSeq = batch.throughSeq
                    $0.recordsShipped += UInt64(batch.records.count)
                    $0.batchesShipped += 1
                    $0.entriesSkipped += UInt64(batch.skipped.count)
                }
                pending.removeFirst(batch.records.count)
                pendingSkipped.removeAll { $0.toSeq <= batch.throughSeq }
                if pending.isEmpty && pendingSkipped.isEmpty { firstPendingAt = nil }
                // The local cursor only follows the sink's (it may lag, never lead): it holds back retention.
                try? cursors.store(sink.name, seq: batch.throughSeq)
            } catch let error as FatalSinkError {
                state.withLock {
                    $0.lastError = error.message
                    $0.lastErrorAtNanos = UInt64(wallClockNow())
                    $0.connected = false
                }
                logger.critical("shipper stopped", metadata: ["error": "\(error.message)"])
                sink.disconnect()
                throw error
            } catch {
                attempt += 1
                let text = "\(error)"
                state.withLock {
                    $0.retries += 1
                    $0.lastError = text
                    $0.lastErrorAtNanos = UInt64(wallClockNow())
                    $0.connected = false
                }
                logger.warning("delivery failed; retrying", metadata: ["error": "\(text)", "attempt": "\(attempt)"])
                sink.disconnect()
                committed = nil
                tail = nil
                sleepMilliseconds(configuration.retry.delayMilliseconds(attempt: attempt))
            }
        }
    }

    private var lastSealedSeq: UInt64 = 0
    private var lastSealedCheckedAt: UInt64 = 0

    private func updateLag(position: UInt64, pending: [MetricRecord]) {
        let now = monotonicNow()
        if now - lastSealedCheckedAt >= 1_000_000_000 {
            lastSealedSeq = (try? LogInspector.lastSealedSeqCheap(path: directory)) ?? lastSealedSeq
            lastSealedCheckedAt = now
        }
        let sealed = lastSealedSeq
        let oldest = pending.first.map { max(0, Double(wallClockNow() - $0.timestampNanos) / 1e9) } ?? 0
        state.withLock {
            $0.recordsBehind = sealed > position ? sealed - position : 0
            $0.oldestUnshippedAgeSeconds = oldest
        }
    }

    private func sleepMilliseconds(_ milliseconds: Int) {
        var remaining = milliseconds
        while remaining > 0 && !stopRequested.load(ordering: .relaxed) {
            let step = min(remaining, 50)
            usleep(UInt32(step) * 1000)
            remaining -= step
        }
    }
}

@inline(__always)
func monotonicNow() -> UInt64 { monotonicNanos() }

/// Runs `body` on a thread of its own (blocking C calls never hold a thread of the cooperative pool) until it
/// returns or throws; graceful shutdown and task cancellation call `stop`, which must make `body` return soon.
/// The shape of every long-running service here (shippers, the alert evaluator).
public func runOnDedicatedThread(
    name: String,
    stop: @escaping @Sendable () -> Void,
    _ body: @escaping @Sendable () throws -> Void
) async throws {
    try await withGracefulShutdownHandler {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                OSThread.start(name: name) {
                    do {
                        try body()
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }.detach()
            }
        } onCancel: {
            stop()
        }
    } onGracefulShutdown: {
        stop()
    }
}

@inline(__always)
func wallClockNow() -> Int64 { Int64(bitPattern: wallClockNanos()) }
