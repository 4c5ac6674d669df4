import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import WALCore
import WALMetrics
import WALPostgres
import WALShipping

/// `walctl ship`: the shippers as a sidecar over a log another process writes.
struct Ship: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ship a log to PostgreSQL (exactly once), as a sidecar.",
        discussion: """
            Tails the log from the position committed in the sink, and delivers every metric record. Each shipper
            has its own cursor: in PostgreSQL (walctl_cursors, committed in the same transaction as the rows) and a
            local copy in the log's cursors/ folder, which holds back retention. Transient failures (database down,
            connection dropped) are retried with backoff forever while the log accumulates. SIGTERM and SIGINT shut
            down gracefully after the batch in flight.

            --drain exits 0 once everything sealed in the log when it started is committed.

            Exit codes: 0 drained or shut down; 1 a fatal error (e.g. a schema newer than this walctl); 2 usage.

            Examples:
              walctl ship --dir /var/lib/agent/metrics --postgres "host=db user=metrics dbname=metrics sslmode=require"
              DATABASE_URL=postgres://metrics@db/metrics walctl ship --dir ./log --drain
            """
    )

    @Option(help: "The log directory.")
    var dir: String

    @Option(help: "PostgreSQL conninfo or URL (default: $DATABASE_URL).")
    var postgres: String?

    @Flag(help: "Exit once everything in the log at start is committed.")
    var drain = false

    @Option(help: "Records per batch (default: $METRICS_BATCH_SIZE or 100).")
    var batchSize: Int?

    @Option(help: "Longest wait before a partial batch ships, ms (default: $METRICS_FLUSH_INTERVAL_MS or 1000).")
    var flushIntervalMs: Int?

    var conninfo: String? { postgres ?? ProcessInfo.processInfo.environment["DATABASE_URL"] }

    func validate() throws {
        guard conninfo != nil else { throw ValidationError("give --postgres CONNINFO (or set DATABASE_URL)") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be positive") }
        if let flushIntervalMs, flushIntervalMs < 1 { throw ValidationError("--flush-interval-ms must be positive") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "walctl.ship")
        guard (try? LogDirectory(path: dir).readMeta()) != nil else {
            Output.error("walctl ship: \(dir) is not a log directory")
            throw ExitCode(1)
        }
        let environment = ProcessInfo.processInfo.environment
        var settings = ShipperConfiguration()
        settings.batchSize = batchSize ?? environment["METRICS_BATCH_SIZE"].flatMap(Int.init) ?? 100
        settings.flushIntervalMilliseconds =
            flushIntervalMs ?? environment["METRICS_FLUSH_INTERVAL_MS"].flatMap(Int.init) ?? 1000
        if drain {
            settings.drainThroughSeq = (try? LogInspector.lastSealedSeqCheap(path: dir)) ?? 0
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var shippers: [Shipper] = []
        if let conninfo {
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: conninfo), logger: logger)
            let shipper = Shipper(directory: dir, sink: sink, configuration: settings, logger: logger)
            shippers.append(shipper)
            services.append(
                .init(service: shipper, successTerminationBehavior: drain ? .ignore : .gracefullyShutdownGroup)
            )
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch {
            Output.error("walctl ship: \(error)")
            throw ExitCode(1)
        }
        for shipper in shippers {
            let statistics = shipper.statistics
            Output.error(
                "walctl ship: \(shipper.sink.name): committed through \(statistics.committedSeq), "
                    + "\(statistics.recordsShipped) records in \(statistics.batchesShipped) batches, "
                    + "\(statistics.entriesSkipped) skipped, \(statistics.retries) retries"
            )
        }
    }
}

/// `walctl pg`: schema and partition administration.
struct PG: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pg",
        abstract: "PostgreSQL administration: create or migrate the schema, maintain partitions.",
        subcommands: [PGInit.self, PGMaintain.self]
    )
}

struct PostgresOptions: ParsableArguments {
    @Option(help: "PostgreSQL conninfo or URL (default: $DATABASE_URL).")
    var postgres: String?

    var conninfo: String? { postgres ?? ProcessInfo.processInfo.environment["DATABASE_URL"] }

    func validate() throws {
        guard conninfo != nil else { throw ValidationError("give --postgres CONNINFO (or set DATABASE_URL)") }
    }
}

struct PGInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the tables, partitions and indexes, or migrate them to this walctl's schema version.",
        discussion: """
            Idempotent: runs the migrations the database lacks, in a transaction. Fails (exit 1) when the database
            schema is newer than this walctl.

            Example:
              walctl pg init --postgres "host=127.0.0.1 user=postgres dbname=metrics"
            """
    )

    @OptionGroup var options: PostgresOptions

    func run() async throws {
        do {
            let version = try PostgresSink.initialize(conninfo: options.conninfo ?? "")
            let report = try PostgresSink.maintain(conninfo: options.conninfo ?? "")
            Output.line("schema version \(version); \(report.created.count) partitions created")
        } catch {
            Output.error("walctl pg init: \(error)")
            throw ExitCode(1)
        }
    }
}

struct PGMaintain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maintain",
        abstract: "Create daily partitions ahead, move early rows out of the default partition, drop expired ones.",
        discussion: """
            Example:
              walctl pg maintain --postgres "$DATABASE_URL" --days-ahead 7 --retention-days 90
            """
    )

    @OptionGroup var options: PostgresOptions

    @Option(help: "Daily partitions to create ahead of today (UTC).")
    var daysAhead = 7

    @Option(help: "Drop partitions older than this many days.")
    var retentionDays = 90

    func run() async throws {
        do {
            let report = try PostgresSink.maintain(
                conninfo: options.conninfo ?? "",
                daysAhead: daysAhead,
                retentionDays: retentionDays
            )
            Output.line(
                "created \(report.created.count) partitions (\(report.movedRows) rows moved from default), "
                    + "dropped \(report.dropped.count), deleted \(report.expiredDefaultRows) expired default rows"
            )
            for name in report.created { Output.line("  created \(name)") }
            for name in report.dropped { Output.line("  dropped \(name)") }
        } catch {
            Output.error("walctl pg maintain: \(error)")
            throw ExitCode(1)
        }
    }
}
