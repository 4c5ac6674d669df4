import Logging
import ServiceLifecycle
import Synchronization
import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Settings of log retirement.
public struct LogRetirementConfiguration: Sendable {
    /// How long a log must stay finished (writer gone, everything committed everywhere) before it is removed, in
    /// seconds.
    public var retireAfterSeconds: Double
    /// How often logs are looked at, in milliseconds.
    public var checkMilliseconds = 1000
    /// How often the host-wide disk use of the logs is measured and reported, in seconds.
    public var diskReportSeconds = 60
    /// Bytes the logs may occupy on this host together before a warning is logged (nil: no budget).
    public var diskBudgetBytes: Int64?

    public init(retireAfterSeconds: Double) { self.retireAfterSeconds = retireAfterSeconds }
}

/// Counters of the retirer.
public struct LogRetirerStatistics: Sendable, Equatable {
    public var logsRetired: UInt64 = 0
    /// Bytes allocated on disk by every shipped log, at the last measurement.
    public var diskBytes: Int64 = 0
    public var logsMeasured = 0
}

/// Removes logs whose agents are gone once every sink (and every other consumer named by `isConsumed`, such as the
/// alert evaluator) has committed everything in them, after a grace period: `walctl ship --root ... --retire-after`.
///
/// A log is a candidate when every engine knows its committed position and none has records of it waiting; it must
/// then stay a candidate, with its writer lock free, for `retireAfterSeconds`. `LogRetirement.retire` does the
/// removal under the writer's lock, after running recovery (which seals what a killed writer left staged) and
/// asking again whether the last sealed sequence number is committed everywhere: never before. A retired log's rows
/// stay in the sinks; the engines forget it.
public final class LogRetirer: Service, @unchecked Sendable {
    public let engines: [ShippingEngine]
    public let configuration: LogRetirementConfiguration
    private let isConsumed: @Sendable (_ directory: String, _ seq: UInt64) -> Bool
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let counters = Mutex(LogRetirerStatistics())
    private var finishedSince: [String: UInt64] = [:]

    public init(
        engines: [ShippingEngine],
        configuration: LogRetirementConfiguration,
        isConsumed: @escaping @Sendable (_ directory: String, _ seq: UInt64) -> Bool = { _, _ in true },
        logger: Logger
    ) {
        self.engines = engines
        self.configuration = configuration
        self.isConsumed = isConsumed
        self.logger = logger
    }

    public var statistics: LogRetirerStatistics { counters.withLock { $0 } }

    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    public func run() async throws {
        try await runOnDedicatedThread(name: "retire", stop: { self.stop() }) { self.loop() }
    }

    private func loop() {
        var lastReport: UInt64 = 0
        while !stopRequested.load(ordering: .relaxed) {
            let now = monotonicNow()
            checkOnce(now: now)
            let due = lastReport == 0 || now - lastReport >= UInt64(configuration.diskReportSeconds) * 1_000_000_000
            if due && engines.allSatisfy(\.isStarted) {
                reportDiskUse()
                lastReport = max(now, 1)
            }
            sleepMilliseconds(configuration.checkMilliseconds) { stopRequested.load(ordering: .relaxed) }
        }
    }

    /// One pass over the logs (for tests: `now` is monotonic nanoseconds).
    public func checkOnce(now: UInt64) {
        guard let first = engines.first, configuration.retireAfterSeconds.isFinite else { return }
        let graceNanos = UInt64(max(0, configuration.retireAfterSeconds) * 1e9)
        let candidates = first.logs
        var seen: Set<String> = []
        for (directory, status) in candidates {
            seen.insert(directory)
            // Retired a moment ago (the engines forget it on their next turn), or removed by someone else.
            guard LogSelection.isLogDirectory(directory) else { continue }
            let everywhere = engines.allSatisfy { engine in
                guard let log = engine.logs[directory] else { return false }
                return !log.heldElsewhere && log.statistics.connected && log.statistics.recordsBehind == 0
            }
            guard everywhere, !LogDirectory(path: directory).isWriterActive() else {
                finishedSince[directory] = nil
                continue
            }
            let since = finishedSince[directory] ?? now
            finishedSince[directory] = since
            guard now - since >= graceNanos else { continue }
            let outcome: LogRetirement.Outcome
            do {
                outcome = try LogRetirement.retire(path: directory) { last, logID in
                    // Positions of this log, not of another one that was at this path when the engines looked.
                    engines.allSatisfy { engine in
                        engine.logs[directory]?.logID == logID.description
                            && (engine.committedSeq(directory: directory) ?? 0) >= last
                    } && isConsumed(directory, last)
                }
            } catch {
                logger.error("cannot retire the log", metadata: ["dir": "\(directory)", "error": "\(error)"])
                finishedSince[directory] = nil
                continue
            }
            switch outcome {
            case .retired(let last):
                for engine in engines { engine.forget(directory: directory) }
                finishedSince[directory] = nil
                counters.withLock { $0.logsRetired += 1 }
                logger.info(
                    "retired a finished log",
                    metadata: ["dir": "\(directory)", "log_id": "\(status.logID)", "last_seq": "\(last)"]
                )
            case .writerAlive, .undelivered:
                finishedSince[directory] = nil
            }
        }
        for directory in finishedSince.keys where !seen.contains(directory) { finishedSince[directory] = nil }
    }

    /// Measures the bytes the logs occupy (allocated blocks) and reports them, with a warning over the budget.
    public func reportDiskUse() {
        guard let first = engines.first else { return }
        let directories = Array(first.logs.keys)
        var total: Int64 = 0
        for directory in directories { total += LogDirectory(path: directory).allocatedBytes() }
        counters.withLock {
            $0.diskBytes = total
            $0.logsMeasured = directories.count
        }
        if let budget = configuration.diskBudgetBytes, total > budget {
            logger.warning(
                "the logs use more disk than the budget",
                metadata: ["bytes": "\(total)", "budget": "\(budget)", "logs": "\(directories.count)"]
            )
        } else {
            logger.info("disk use of the logs", metadata: ["bytes": "\(total)", "logs": "\(directories.count)"])
        }
    }
}
