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
    /// Stop (successfully) once everything up to this sequence number is committed (a shipper of one log).
    public var drainThroughSeq: UInt64?
    /// Stop (successfully) once every log found by the first scan has committed what it had sealed then.
    public var drainsAtStart = false
    /// How often roots and patterns are scanned for new logs, in milliseconds.
    public var rescanMilliseconds = 1000
    /// Logs that may hold a segment open (a descriptor and a mapping each) at once; the least recently active
    /// beyond it are suspended.
    public var maxOpenLogs = 256
    /// The longest wait between two polls of an idle log, in milliseconds (the polls of a log back off from
    /// `pollMilliseconds` to this while it stays idle): bounds the extra latency of a quiet log's next record.
    public var idleProbeMaxMilliseconds = 200
    /// A log idle this long releases its segment (descriptor and mapping) until its next record, in milliseconds.
    public var suspendAfterIdleMilliseconds = 5000

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
    /// Bytes of the shipped records as the log holds them (encoded, before compression).
    public var bytesShipped: UInt64 = 0
    /// Failed attempts by kind (`SinkErrorKind.kind`; `other` for errors that name none, `fatal` for the one that
    /// stopped the shipper).
    public var errorsByKind: [String: UInt64] = [:]
    /// Records the sink refused for good and dead-lettered since the shipper started (`MetricSink.deadLetteredRecords`).
    public var deadLettered: UInt64 = 0
    /// Logs the shipper is shipping.
    public var logs = 0
    /// When the sink last committed a batch (monotonic nanoseconds), if it has.
    public var lastProgressNanos: UInt64?
    /// Since when records have been waiting for this shipper without a break (monotonic nanoseconds), if they are.
    public var waitingSinceNanos: UInt64?
    /// Since when every attempt to reach the sink has failed (monotonic nanoseconds), if the last one did.
    public var failingSinceNanos: UInt64?
    /// True once a `FatalSinkError` stopped the shipper.
    public var stoppedByError = false
    /// When the call into the sink now running began (monotonic nanoseconds), if one runs.
    public var sinkCallSinceNanos: UInt64?

    public init() {}
}

/// Ships one log to one sink: the `ShippingEngine` with a selection of one directory. It tails the log from the
/// sink's committed position and delivers every metric record, independently of any other shipper: on a dedicated
/// OS thread (never the cooperative pool), retrying transient failures with backoff forever while the log
/// accumulates, keeping a local cursor (named after the sink) so that retention never deletes what it has not
/// shipped.
///
/// Run it as a swift-service-lifecycle `Service`; graceful shutdown lets the batch in flight finish.
public final class Shipper: Service, @unchecked Sendable {
    public let directory: String
    public var sink: any MetricSink { engine.sink }
    public var configuration: ShipperConfiguration { engine.configuration }
    public let engine: ShippingEngine

    public init(directory: String, sink: any MetricSink, configuration: ShipperConfiguration, logger: Logger) {
        self.directory = directory
        self.engine = ShippingEngine(
            selection: .single(directory),
            sink: sink,
            configuration: configuration,
            logger: logger
        )
    }

    public var statistics: ShipperStatistics { engine.statistics }

    /// Asks the loop to stop after the batch in flight.
    public func stop() { engine.stop() }

    public func run() async throws { try await engine.run() }

    /// Runs the loop on the calling thread until stopped or drained (for tools and tests).
    public func runBlocking() throws { try engine.runBlocking() }
}

/// Sleeps `milliseconds` in steps of at most 50 ms, returning early once `stopped` says so: how every service's
/// thread waits between rounds and stays quick to stop.
package func sleepMilliseconds(_ milliseconds: Int, unless stopped: () -> Bool) {
    var remaining = milliseconds
    while remaining > 0 && !stopped() {
        let step = min(remaining, 50)
        usleep(UInt32(step) * 1000)
        remaining -= step
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
