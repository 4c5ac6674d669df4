import Logging
import ServiceLifecycle
import Synchronization
import WALCore
import WALShipping

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Alert evaluation for every log of a `LogSelection` (`walctl ship --root ... --alerts FILE`): one `AlertService`
/// per log, with the log's own cursor, journal and state exactly as for a single log, started as logs appear.
///
/// Cost: an evaluator thread per log plus one worker thread per channel and log, and channels made per log by
/// `makeChannels` (a Kafka alert channel is a producer per log). That suits dozens to a few hundred logs; the
/// metric shippers themselves stay at one thread per sink whatever the number of logs.
public final class AlertFleet: Service, @unchecked Sendable {
    public let selection: LogSelection
    private let configuration: AlertServiceConfiguration
    private let makeChannels: @Sendable () -> [any AlertChannel]
    private let logger: Logger
    private let rescanMilliseconds: Int
    private let drainsAtStart: Bool
    private let stopRequested = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    private let services = Mutex<[String: (service: AlertService, finished: Bool, failure: String?)]>([:])

    public init(
        selection: LogSelection,
        configuration: AlertServiceConfiguration,
        drainsAtStart: Bool,
        rescanMilliseconds: Int = 1000,
        makeChannels: @escaping @Sendable () -> [any AlertChannel],
        logger: Logger
    ) {
        self.selection = selection
        self.configuration = configuration
        self.drainsAtStart = drainsAtStart
        self.rescanMilliseconds = rescanMilliseconds
        self.makeChannels = makeChannels
        self.logger = logger
    }

    /// Statistics of each log's evaluator, by directory.
    public var statistics: [String: AlertServiceStatistics] {
        services.withLock { $0.mapValues { $0.service.statistics } }
    }

    /// Where the evaluator of `directory` stands (nil when it has none yet): retirement waits for it.
    public func evaluatedThrough(directory: String) -> UInt64? {
        services.withLock { $0[directory]?.service.statistics.evaluatedThrough }
    }

    /// True once the fleet's loop returned.
    public var isFinished: Bool { finished.load(ordering: .acquiring) }

    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        services.withLock { for entry in $0.values { entry.service.stop() } }
    }

    public func run() async throws {
        try await runOnDedicatedThread(name: "alerts", stop: { self.stop() }) { try self.loop() }
    }

    private func loop() throws {
        defer { finished.store(true, ordering: .releasing) }
        var first = true
        while !stopRequested.load(ordering: .relaxed) {
            for directory in selection.discover() where services.withLock({ $0[directory] == nil }) {
                var settings = configuration
                if first && drainsAtStart {
                    settings.drainThroughSeq = (try? LogInspector.lastSealedSeqAcrossDamage(path: directory)) ?? 0
                } else {
                    settings.drainThroughSeq = nil
                }
                start(directory, settings)
            }
            first = false
            let states = services.withLock { $0.values.map { ($0.finished, $0.failure) } }
            if let failure = states.compactMap(\.1).first { throw AlertFleetError(message: failure) }
            // Draining: done when every evaluator started at the first scan finished.
            if drainsAtStart && states.allSatisfy(\.0) { return }
            sleepMilliseconds(rescanMilliseconds) { stopRequested.load(ordering: .relaxed) }
        }
        let running = services.withLock { $0.values.map(\.service) }
        for service in running { service.stop() }
        while !services.withLock({ $0.values.allSatisfy(\.finished) }) { usleep(10_000) }
    }

    private func start(_ directory: String, _ settings: AlertServiceConfiguration) {
        let service = AlertService(
            directory: directory,
            configuration: settings,
            channels: makeChannels(),
            logger: logger
        )
        services.withLock { $0[directory] = (service, false, nil) }
        // A log that ends (retired, removed) ends its evaluator with an error: that is reported, not fatal.
        OSThread.start(name: "alerts-log") { [self] in
            var failure: String?
            do {
                try service.runBlocking()
            } catch {
                if LogSelection.isLogDirectory(directory) {
                    failure = "alerts of \(directory): \(error)"
                } else {
                    logger.info("log gone; its alert evaluator stopped", metadata: ["dir": "\(directory)"])
                }
            }
            services.withLock {
                $0[directory]?.finished = true
                $0[directory]?.failure = failure
            }
        }.detach()
    }
}

/// An evaluator of the fleet stopped with an error.
public struct AlertFleetError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
