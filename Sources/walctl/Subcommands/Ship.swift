import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import WALAlerts
import WALCore
import WALKafka
import WALMetrics
import WALObserve
import WALPostgres
import WALShipping

/// `walctl ship`: the shippers as a sidecar over a log another process writes.
struct Ship: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ship a log to PostgreSQL (exactly once) and Kafka (at least once, with event ids), as a sidecar.",
        discussion: """
            Tails the log and delivers every metric record to each configured sink, independently: one shipper per \
            sink, each on its own thread with its own cursor, so a sink that is down never slows the other.

            PostgreSQL: exactly once. The cursor is a row in walctl_cursors, committed in the same transaction as \
            the rows.

            Kafka: at least once, with idempotency keys. Topics {prefix}.{category}.v1; key: the agent id; value: \
            the OnexEnvelopeV1 JSON; headers log_id, wal_seq, event_id, metric_type. After every message of a \
            batch is acknowledged (acks=all, idempotent producer), the position is committed to Kafka as an offset \
            commit of the group walctl-ship-{log id} on the topic walctl.cursors.v1. A crash between the two \
            re-sends that batch with the same event_ids. Records Kafka refuses for good (too large) go to \
            {dir}/dead-letters/kafka.jsonl with the reason. librdkafka properties pass through with \
            --kafka-property or KAFKA_PROPERTY_* variables (KAFKA_PROPERTY_SASL_MECHANISM=PLAIN); secrets are \
            never logged.

            Each shipper also keeps a local copy of its position in the log's cursors/ folder, which holds back \
            retention. Transient failures (sink down, connection dropped) are retried with backoff forever while \
            the log accumulates. SIGTERM and SIGINT shut down gracefully after the batch in flight.

            --alerts FILE also runs the alert evaluator on the same log, with its own cursor and journal \
            (alerts/journal.jsonl): thresholds from FILE (walctl alerts check FILE validates it), alerts routed by \
            severity to the log, Kafka (agent.alerts.v1, when --kafka is given), a Slack-compatible webhook, \
            PagerDuty and email, each channel on its own thread with retries. walctl alerts DIR lists what fired.

            --drain exits 0 once everything sealed in the log when it started is committed to every sink (and, \
            with --alerts, evaluated and handed to every channel). A drain is a command someone waits for, so it \
            has a deadline: --timeout (default 5m). When it passes, the shippers stop (the batch in flight may \
            still commit), and walctl prints for each sink the sequence number it committed through and how many \
            sequence numbers up to the drain target are left undelivered, and exits 3.

            PostgreSQL refusals are told apart by SQLSTATE: configuration errors (wrong password, no such database, \
            an unknown conninfo option) and tables that no longer match the schema stop the shipper at once; rows \
            already there (after a replay) are skipped; only records no table of the schema could take go to \
            walctl_dead_letters. A second shipper of the same log into the same database waits (an advisory lock) \
            until the first stops. Keep passwords off the command line: PGPASSWORD, ~/.pgpass or PGSERVICE.

            One shipper for a whole host: --root DIR ships every log directory found under DIR (a folder \
            holding wal.meta, up to 4 levels down; hidden folders and symbolic links are not followed) and --logs \
            GLOB every log matching a pattern ('/var/lib/agents/*/metrics'); both repeat and rescan every second \
            for logs of agents that start later. Every log goes through one PostgreSQL connection and one Kafka \
            producer per sink: a PostgreSQL transaction carries the rows of many logs and every one of their \
            cursor rows (exactly once per log); each log keeps its own Kafka cursor group walctl-ship-{log id}. \
            Each batch is shared fairly among the logs with records waiting, so a backlog in one log never holds \
            up the fresh records of another. --drain then means every log found at start drained; --alerts runs \
            one evaluator per log. Kafka dead letters go to each log's dead-letters/kafka.jsonl.

            --retire-after DURATION removes a log once its writer is gone (its lock free) and everything in it is \
            committed to every sink (and evaluated, with --alerts) for that long: recovery first seals what a \
            killed agent left staged, and the log is removed under the writer's lock, never before its records \
            are delivered. The rows stay in the sinks. The logs' disk use is reported every minute (a warning \
            above --disk-budget).

            Exit codes: 0 drained or shut down; 1 a fatal error (a configuration error, tables that do not match \
            the schema, a schema newer than this walctl, a bad Kafka property, a cursor group holding another \
            log's cursor); 2 usage; 3 --drain ran out of --timeout with \
            records left undelivered.

            Examples:
              walctl ship --dir /var/lib/agent/metrics --postgres "host=db user=metrics dbname=metrics sslmode=require"
              walctl ship --dir ./log --kafka broker1:9092,broker2:9092 --postgres "$DATABASE_URL"
              walctl ship --root /var/lib/agents --postgres "$DATABASE_URL" --kafka b:9092 --retire-after 1h
              KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL walctl ship --dir ./log --kafka b:9093 \\
                  --kafka-property sasl.mechanism=SCRAM-SHA-512 --kafka-property sasl.username=metrics --drain
            """
    )

    @Option(help: "The log directory (or give --root / --logs to ship many).")
    var dir: String?

    @Option(help: "Ship every log directory under this folder, including logs that appear later (repeatable).")
    var root: [String] = []

    @Option(
        name: .customLong("logs"),
        help: ArgumentHelp("Ship every log directory matching this glob pattern (repeatable).", valueName: "glob")
    )
    var logPatterns: [String] = []

    @Option(
        help: ArgumentHelp(
            "With --root/--logs: remove a log this long after its writer is gone and everything is committed (30s, 1h).",
            valueName: "duration"
        )
    )
    var retireAfter: String?

    @Option(help: "With --root/--logs: warn when the logs use more than this many bytes of disk together.")
    var diskBudget: Int64?

    /// True when shipping many logs (--root, --logs).
    var isHost: Bool { !root.isEmpty || !logPatterns.isEmpty }

    var selection: LogSelection {
        isHost ? LogSelection(roots: root, patterns: logPatterns) : .single(dir ?? "")
    }

    @Option(help: "PostgreSQL conninfo or URL (default: $DATABASE_URL).")
    var postgres: String?

    @Option(help: "Kafka bootstrap servers, host:port,... (default: $KAFKA_BOOTSTRAP_SERVERS when no sink is given).")
    var kafka: String?

    @Option(
        name: .customLong("kafka-property"),
        help: ArgumentHelp(
            "A librdkafka property, name=value (repeatable; a kafka. prefix is dropped).",
            valueName: "name=value"
        )
    )
    var kafkaProperties: [String] = []

    @Option(help: "Kafka topic prefix: topics are {prefix}.{category}.v1.")
    var kafkaTopicPrefix = "agent.metrics"

    @Option(help: "Consumer group holding the Kafka cursor (default: walctl-ship-{log id}).")
    var kafkaGroup: String?

    @Option(help: "Prefix of each log's Kafka cursor group: {prefix}{log id} (for a second shipper of the same logs).")
    var kafkaGroupPrefix = "walctl-ship-"

    @Option(help: "Kafka compression: lz4, snappy, zstd, gzip or none (default: $KAFKA_METRICS_COMPRESSION or lz4).")
    var kafkaCompression: String?

    @Flag(help: "Exit once everything in the log at start is committed.")
    var drain = false

    @Option(
        help: ArgumentHelp(
            "With --drain: give up after this long (500ms, 30s, 5m, 1h; default 5m), exit 3 and say what is left.",
            valueName: "duration"
        )
    )
    var timeout: String?

    static let defaultDrainTimeoutNanos: Int64 = 300_000_000_000

    /// How long a drain may take, in nanoseconds.
    var drainTimeoutNanos: Int64 { timeout.flatMap(DurationText.parse) ?? Self.defaultDrainTimeoutNanos }

    @Option(
        help: ArgumentHelp(
            "Also evaluate alert thresholds from this file (see walctl alerts check), beside the shippers.",
            valueName: "thresholds.yaml"
        )
    )
    var alerts: String?

    @Option(help: "Alerts: Slack-compatible incoming webhook URL (default: $ALERT_SLACK_WEBHOOK_URL).")
    var slackWebhook: String?

    @Option(help: "Alerts: PagerDuty Events API v2 routing key (default: $ALERT_PAGERDUTY_ROUTING_KEY).")
    var pagerdutyRoutingKey: String?

    @Option(help: "Alerts: PagerDuty events URL (default: $ALERT_PAGERDUTY_URL or PagerDuty's /v2/enqueue).")
    var pagerdutyURL: String?

    @Option(help: "Alerts: SMTP server for email, host[:port] (default: $ALERT_SMTP_HOST; port 587).")
    var smtp: String?

    @Option(help: "Alerts: email sender (default: $ALERT_SMTP_FROM).")
    var smtpFrom: String?

    @Option(help: "Alerts: email recipient, repeatable (default: $ALERT_SMTP_TO, comma-separated).")
    var smtpTo: [String] = []

    @Flag(help: "Alerts: send email without STARTTLS (by default STARTTLS is required).")
    var smtpNoStarttls = false

    @Flag(help: "Alerts: do not verify the SMTP server's certificate (test servers only).")
    var smtpInsecure = false

    @Option(help: "Alerts: Kafka topic of alerts, when --kafka is given.")
    var alertsTopic = "agent.alerts.v1"

    @Option(
        name: .customLong("alert-route"),
        help: ArgumentHelp(
            "Alerts: the channels of a severity, replacing the design's (repeatable): critical=log,kafka,slack,pagerduty",
            valueName: "severity=channels"
        )
    )
    var alertRoutes: [String] = []

    @Option(help: "Alerts: delivery attempts per alert and channel before it is dead-lettered.")
    var alertMaxAttempts = 8

    @Option(help: "Alerts: seconds per alert and channel, from the first attempt, before it is dead-lettered.")
    var alertBudget: Double = 60

    @Option(help: "Records per batch when catching up on a backlog (default 10000).")
    var maxBatchSize: Int?

    @Option(help: "Records per batch (default: $METRICS_BATCH_SIZE or 100).")
    var batchSize: Int?

    @Option(help: "Longest wait before a partial batch ships, ms (default: $METRICS_FLUSH_INTERVAL_MS or 1000).")
    var flushIntervalMs: Int?

    @Option(
        help: ArgumentHelp(
            "Serve /metrics (Prometheus), /healthz, /readyz and the live page on this address (127.0.0.1:9464).",
            valueName: "host:port"
        )
    )
    var http: String?

    @Option(
        help: ArgumentHelp(
            "With --http: /healthz fails when a sink has committed nothing this long while records wait (default 60s).",
            valueName: "duration"
        )
    )
    var stalledAfter: String?

    /// Explicit sinks win; with none given, the environment's (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS).
    var conninfo: String? {
        if let postgres { return postgres }
        return kafka == nil && alerts == nil ? ProcessInfo.processInfo.environment["DATABASE_URL"] : nil
    }

    var bootstrap: String? {
        if let kafka { return kafka }
        return postgres == nil && alerts == nil ? ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"] : nil
    }

    func validate() throws {
        guard (dir != nil) != isHost else {
            throw ValidationError("give --dir DIR for one log, or --root DIR / --logs GLOB for many (not both)")
        }
        if isHost && kafkaGroup != nil {
            throw ValidationError("--kafka-group names one log's cursor group; with --root/--logs each log has its own")
        }
        if !isHost && (retireAfter != nil || diskBudget != nil) {
            throw ValidationError("--retire-after and --disk-budget go with --root or --logs")
        }
        if let retireAfter, (DurationText.parse(retireAfter) ?? -1) < 0 {
            throw ValidationError("--retire-after takes a duration like 30s, 10m or 1h")
        }
        guard conninfo != nil || bootstrap != nil || alerts != nil else {
            throw ValidationError(
                "give --postgres CONNINFO, --kafka BOOTSTRAP and/or --alerts FILE "
                    + "(or set DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS)"
            )
        }
        for assignment in kafkaProperties where KafkaProperty(assignment: assignment) == nil {
            throw ValidationError("--kafka-property takes name=value, not \"\(assignment)\"")
        }
        if let kafkaCompression, !["lz4", "snappy", "zstd", "gzip", "none"].contains(kafkaCompression) {
            throw ValidationError("--kafka-compression takes lz4, snappy, zstd, gzip or none")
        }
        // The same ranges as the collector's METRICS_BATCH_SIZE and METRICS_FLUSH_INTERVAL_MS (the interval becomes
        // a nanosecond deadline: a huge one trapped on overflow), for the options and for those variables.
        let environment = ProcessInfo.processInfo.environment
        for (name, option, variable, range) in [
            ("--max-batch-size", maxBatchSize, nil, 1...1_000_000),
            ("--batch-size", batchSize, "METRICS_BATCH_SIZE", 1...100_000),
            ("--flush-interval-ms", flushIntervalMs, "METRICS_FLUSH_INTERVAL_MS", 1...3_600_000),
        ] as [(String, Int?, String?, ClosedRange<Int>)] {
            if let option, !range.contains(option) {
                throw ValidationError("\(name) must be between \(range.lowerBound) and \(range.upperBound)")
            }
            if option == nil, let variable, let text = environment[variable], !range.contains(Int(text) ?? 0) {
                throw ValidationError(
                    "\(variable)=\(text): give an integer from \(range.lowerBound) to \(range.upperBound) (or \(name))"
                )
            }
        }
        if let http, ListenAddress(http) == nil {
            throw ValidationError("--http takes host:port, [ipv6]:port or :port (127.0.0.1:9464)")
        }
        if let stalledAfter {
            guard http != nil else { throw ValidationError("--stalled-after goes with --http") }
            guard let nanos = DurationText.parse(stalledAfter), nanos > 0 else {
                throw ValidationError("--stalled-after takes a duration like 30s or 5m")
            }
        }
        _ = try routes()
        if smtp != nil && (smtpFrom == nil || smtpTo.isEmpty)
            && (ProcessInfo.processInfo.environment["ALERT_SMTP_FROM"] == nil
                || ProcessInfo.processInfo.environment["ALERT_SMTP_TO"] == nil)
        {
            throw ValidationError("--smtp needs --smtp-from and --smtp-to (or ALERT_SMTP_FROM / ALERT_SMTP_TO)")
        }
        if alertMaxAttempts < 1 { throw ValidationError("--alert-max-attempts must be positive") }
        if !(alertBudget > 0 && alertBudget <= 86_400) {
            throw ValidationError("--alert-budget must be between 0 and 86400 seconds")
        }
        if let timeout {
            guard drain else { throw ValidationError("--timeout is the deadline of --drain; give --drain too") }
            guard let nanos = DurationText.parse(timeout), nanos > 0 else {
                throw ValidationError("--timeout takes a duration like 500ms, 30s, 5m or 1h")
            }
        }
        for (flag, value) in [("--slack-webhook", slackURL), ("--pagerduty-url", pagerdutyURL)] {
            if let value, WebhookURL(value) == nil { throw ValidationError("\(flag) takes an http(s) URL") }
        }
    }

    var slackURL: String? { slackWebhook ?? ProcessInfo.processInfo.environment["ALERT_SLACK_WEBHOOK_URL"] }

    /// The design's routes, with `--alert-route` replacing a severity's channels.
    func routes() throws -> AlertRoutes {
        var routes = AlertRoutes()
        for assignment in alertRoutes {
            let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let severity = Severity(rawValue: parts[0]) else {
                throw ValidationError("--alert-route takes severity=channel,channel (info, warning or critical)")
            }
            let channels = parts[1].split(separator: ",").map(String.init)
            let known: Set = ["log", "kafka", "slack", "pagerduty", "email"]
            guard channels.allSatisfy(known.contains) else {
                throw ValidationError("--alert-route channels are log, kafka, slack, pagerduty and email")
            }
            routes.channels[severity] = channels
        }
        return routes
    }

    /// The alert channels configured on the command line and in the environment.
    func alertChannels(logger: Logger) -> [any AlertChannel] {
        let environment = ProcessInfo.processInfo.environment
        var channels: [any AlertChannel] = [LogAlertChannel(logger: Logger(label: "walctl.alerts"))]
        if let bootstrap {
            var settings = KafkaSinkConfiguration(bootstrapServers: bootstrap, deadLetterFile: "/dev/null")
            settings.shipperName = "alerts"
            settings.apply(environment: environment)
            settings.properties += kafkaProperties.compactMap(KafkaProperty.init(assignment:))
            channels.append(
                KafkaAlertChannel(
                    producer: KafkaMessageProducer(configuration: settings, topic: alertsTopic, logger: logger)
                )
            )
        }
        if let text = slackURL, let target = WebhookURL(text) {
            channels.append(SlackAlertChannel(target: target))
        }
        if let key = pagerdutyRoutingKey ?? environment["ALERT_PAGERDUTY_ROUTING_KEY"],
            let target = WebhookURL(
                pagerdutyURL ?? environment["ALERT_PAGERDUTY_URL"] ?? PagerDutyAlertChannel.defaultURL
            )
        {
            channels.append(PagerDutyAlertChannel(routingKey: key, target: target))
        }
        if let email = emailSettings(environment) { channels.append(EmailAlertChannel(settings: email)) }
        return channels
    }

    /// Email settings from the command line and ALERT_SMTP_* variables; nil when no SMTP server is given.
    func emailSettings(_ environment: [String: String]) -> EmailSettings? {
        guard let server = smtp ?? environment["ALERT_SMTP_HOST"], !server.isEmpty else { return nil }
        let to = smtpTo.isEmpty ? (environment["ALERT_SMTP_TO"] ?? "").split(separator: ",").map(String.init) : smtpTo
        guard let from = smtpFrom ?? environment["ALERT_SMTP_FROM"], !to.isEmpty else { return nil }
        let parts = server.split(separator: ":", maxSplits: 1)
        var settings = EmailSettings(host: String(parts[0]), from: from, to: to)
        if parts.count == 2, let port = Int(parts[1]) {
            settings.port = port
        } else if let port = environment["ALERT_SMTP_PORT"].flatMap(Int.init) {
            settings.port = port
        }
        settings.startTLS = !smtpNoStarttls
        settings.verifyTLS = !smtpInsecure
        settings.username = environment["ALERT_SMTP_USERNAME"]
        settings.password = environment["ALERT_SMTP_PASSWORD"]
        return settings
    }

    func run() async throws {
        let logger = Logger(label: "walctl.ship")
        if let dir { _ = try readMeta(dir, command: "ship") }
        for folder in root where !FileManager.default.fileExists(atPath: folder) {
            Output.error("walctl ship: --root \(folder): no such directory")
            throw ExitCode(1)
        }
        let environment = ProcessInfo.processInfo.environment
        var settings = ShipperConfiguration()
        settings.batchSize = batchSize ?? environment["METRICS_BATCH_SIZE"].flatMap(Int.init) ?? 100
        settings.flushIntervalMilliseconds =
            flushIntervalMs ?? environment["METRICS_FLUSH_INTERVAL_MS"].flatMap(Int.init) ?? 1000
        if let maxBatchSize { settings.catchUpBatchSize = maxBatchSize }
        if drain {
            if let dir {
                settings.drainThroughSeq = (try? LogInspector.lastSealedSeqAcrossDamage(path: dir)) ?? 0
            } else {
                settings.drainsAtStart = true
            }
        }
        var sinks: [any MetricSink] = []
        if let conninfo {
            var postgresSettings = PostgresSinkConfiguration(conninfo: conninfo)
            // Off only to measure what read-ahead gains (tools/bench-postgres.sh).
            postgresSettings.readAhead = environment["WALCTL_PG_READ_AHEAD"] != "0"
            sinks.append(PostgresSink(configuration: postgresSettings, logger: logger))
        }
        if let bootstrap {
            // Many logs: each keeps its dead letters beside it (an empty path tells the sink so).
            var kafkaSettings = KafkaSinkConfiguration(
                bootstrapServers: bootstrap,
                deadLetterFile: dir.map { KafkaSinkConfiguration.defaultDeadLetterFile(directory: $0) } ?? ""
            )
            kafkaSettings.topicPrefix = kafkaTopicPrefix
            kafkaSettings.groupID = kafkaGroup
            kafkaSettings.groupPrefix = kafkaGroupPrefix
            kafkaSettings.apply(environment: environment)
            if let kafkaCompression { kafkaSettings.compression = kafkaCompression }
            kafkaSettings.properties += kafkaProperties.compactMap(KafkaProperty.init(assignment:))
            sinks.append(KafkaSink(configuration: kafkaSettings, logger: logger))
        }
        // One engine per sink: its own thread, connection and cursors.
        let selection = selection
        let engines = sinks.map {
            ShippingEngine(selection: selection, sink: $0, configuration: settings, logger: logger)
        }
        var services: [any Service] = engines
        var evaluator: AlertService?
        var fleet: AlertFleet?
        if let alerts {
            let thresholds: ThresholdFile
            do {
                thresholds = try ThresholdFile.load(path: alerts)
            } catch {
                Output.error("walctl ship: \(error)")
                throw ExitCode(1)
            }
            var alertSettings = AlertServiceConfiguration(thresholds: thresholds)
            alertSettings.drainThroughSeq = settings.drainThroughSeq
            alertSettings.routes = try routes()
            alertSettings.maxAttempts = alertMaxAttempts
            alertSettings.budgetSeconds = alertBudget
            let channels = alertChannels(logger: logger)
            logger.info(
                "alert channels",
                metadata: ["channels": "\(channels.map(\.name).joined(separator: ","))"]
            )
            if let dir {
                let service = AlertService(
                    directory: dir,
                    configuration: alertSettings,
                    channels: channels,
                    logger: logger
                )
                evaluator = service
                services.append(service)
            } else {
                let command = self
                let evaluators = AlertFleet(
                    selection: selection,
                    configuration: alertSettings,
                    drainsAtStart: drain,
                    makeChannels: { command.alertChannels(logger: logger) },
                    logger: logger
                )
                fleet = evaluators
                services.append(evaluators)
            }
        }
        var retirer: LogRetirer?
        if isHost {
            var retirement = LogRetirementConfiguration(
                retireAfterSeconds: retireAfter.flatMap(DurationText.parse).map { Double($0) / 1e9 } ?? .infinity
            )
            retirement.diskBudgetBytes = diskBudget
            let service = LogRetirer(
                engines: engines,
                configuration: retirement,
                isConsumed: { [fleet] directory, seq in
                    guard let fleet else { return true }
                    return (fleet.evaluatedThrough(directory: directory) ?? 0) >= seq
                },
                logger: logger
            )
            retirer = service
            services.append(service)
        }
        var listener: ObserveServer?
        if let http, let address = ListenAddress(http) {
            let monitor = ShipperMonitor(
                engines: engines,
                stalledAfterSeconds: stalledAfter.flatMap(DurationText.parse).map { Double($0) / 1e9 } ?? 60,
                alertStatistics: { [evaluator, fleet] in
                    if let evaluator { return [evaluator.directory: evaluator.statistics] }
                    return fleet?.statistics ?? [:]
                }
            )
            // The live page (/, /api/live): the same logs, tailed read-only on the view's own thread.
            let live = LiveView(selection: selection)
            let (server, _) = try startHTTPListener(
                address,
                routes: monitor.routes.merging(live.routes) { monitorRoute, _ in monitorRoute },
                command: "ship",
                logger: logger
            )
            listener = server
            services.append(live)
            services.append(server)
        }
        let configured = services.map {
            ServiceGroupConfiguration.ServiceConfiguration(
                service: $0,
                successTerminationBehavior: drain && !($0 is LogRetirer) && !($0 is ObserveServer)
                    ? .ignore : .gracefullyShutdownGroup
            )
        }
        let group = ServiceGroup(
            configuration: .init(services: configured, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        let timedOut = DrainFlag()
        // The drain's deadline: stop every service (they return after the batch in flight), and if one is stuck in
        // a blocking call past a grace period, report and exit anyway.
        let deadline =
            drain
            ? Task { [timeout = drainTimeoutNanos, evaluator, fleet] in
                try await Task.sleep(for: .nanoseconds(timeout))
                timedOut.value.store(true, ordering: .sequentiallyConsistent)
                for engine in engines { engine.stop() }
                evaluator?.stop()
                fleet?.stop()
                try await Task.sleep(for: .seconds(15))
                Self.reportUndelivered(engines: engines, evaluator: evaluator, timeout: timeout)
                Foundation.exit(3)
            } : nil
        defer { deadline?.cancel() }
        // A drain ends when the engines and evaluators are done: the retirer and the listener then stop too.
        let drainWatcher =
            drain && (retirer != nil || listener != nil)
            ? Task { [engines, evaluator, fleet, retirer, listener] in
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(50))
                    if engines.allSatisfy(\.isFinished) && (evaluator?.isFinished ?? true)
                        && (fleet?.isFinished ?? true)
                    {
                        retirer?.stop()
                        listener?.shutdown()
                        return
                    }
                }
            } : nil
        defer { drainWatcher?.cancel() }
        do {
            try await group.run()
        } catch {
            Output.error("walctl ship: \(error)")
            throw ExitCode(1)
        }
        deadline?.cancel()
        if let evaluator {
            let statistics = evaluator.statistics
            Output.error(
                "walctl ship: alerts: evaluated through \(statistics.evaluatedThrough), \(statistics.alertsFired) fired, "
                    + "\(statistics.alertsResent) re-sent from the journal"
            )
        }
        if let fleet {
            let all = fleet.statistics.values
            Output.error(
                "walctl ship: alerts: \(all.count) logs evaluated, \(all.reduce(0) { $0 + $1.alertsFired }) fired, "
                    + "\(all.reduce(0) { $0 + $1.alertsResent }) re-sent from the journal"
            )
        }
        for engine in engines {
            let statistics = engine.statistics
            let logs = engine.logs.count
            Output.error(
                "walctl ship: \(engine.sink.name): "
                    + (isHost
                        ? "\(logs) logs, lowest committed \(statistics.committedSeq)"
                        : "committed through \(statistics.committedSeq)")
                    + ", \(statistics.recordsShipped) records in \(statistics.batchesShipped) batches, "
                    + "\(statistics.entriesSkipped) skipped, \(statistics.retries) retries"
                    + ((engine.sink as? KafkaSink).map { ", \($0.statistics.deadLettered) dead-lettered" } ?? "")
                    + ((engine.sink as? PostgresSink).map {
                        ", \($0.alreadyPresentCount) already present, \($0.deadLetterCount) dead-lettered"
                    } ?? "")
            )
        }
        if let retirer {
            retirer.reportDiskUse()
            let statistics = retirer.statistics
            Output.error(
                "walctl ship: \(statistics.logsRetired) logs retired; the logs use \(statistics.diskBytes) bytes of disk"
            )
        }
        if drain, timedOut.value.load(ordering: .sequentiallyConsistent) {
            Self.reportUndelivered(engines: engines, evaluator: evaluator, timeout: drainTimeoutNanos)
            throw ExitCode(3)
        }
    }

    /// After a drain's deadline: per sink (and log), where it stands against the drain target.
    static func reportUndelivered(engines: [ShippingEngine], evaluator: AlertService?, timeout: Int64) {
        Output.error(
            "walctl ship: --drain gave up after \(DurationText.format(timeout)) (--timeout) with records left "
                + "undelivered:"
        )
        for engine in engines {
            let statistics = engine.statistics
            for log in engine.logs.values.sorted(by: { $0.directory < $1.directory }) {
                guard let target = log.drainTarget else { continue }
                let committed = log.statistics.committedSeq
                guard committed < target || engine.logs.count == 1 else { continue }
                Output.error(
                    "walctl ship:   \(engine.sink.name): "
                        + (engine.logs.count == 1 ? "" : "\(log.directory): ")
                        + "committed through \(committed), \(target > committed ? target - committed : 0) left"
                        + (statistics.lastError.map { "; last error: \($0)" } ?? "")
                )
            }
        }
        if let evaluator {
            let through = evaluator.statistics.evaluatedThrough
            let target = evaluator.configuration.drainThroughSeq ?? through
            Output.error(
                "walctl ship:   alerts: evaluated through \(through), \(target > through ? target - through : 0) left"
            )
        }
    }
}

/// Set when a drain ran out of time (shared with the deadline task).
final class DrainFlag: Sendable {
    let value = Atomic<Bool>(false)
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

            Run it once with a role that may create tables (the tables' owner). The shipper then needs no DDL:
            --grant-to ROLE grants a shipping role exactly what it needs (USAGE on the schema; SELECT on
            walctl_schema; SELECT, INSERT, UPDATE on walctl_cursors; SELECT, INSERT on walctl_dead_letters; SELECT, INSERT
            on the metric tables; USAGE on their id sequences) and prints the statements. Partition maintenance
            stays with the owner: run walctl pg maintain daily (a shipper that may not create partitions leaves
            them to it; rows wait in the default partition).

            --read-only-role ROLE (for Grafana) creates the role if missing (LOGIN, no password: set one with \
            ALTER ROLE, or use certificates) and grants it USAGE on the schema and SELECT on walctl_schema, the \
            metric tables, the rollups and walctl_alerts, with default_transaction_read_only on.

            Keep passwords off the command line (ps shows it): libpq reads PGPASSWORD, ~/.pgpass (PGPASSFILE) and
            service files (PGSERVICE, ~/.pg_service.conf).

            Examples:
              PGPASSFILE=/etc/walctl/pgpass walctl pg init --postgres "host=db user=metrics_owner dbname=metrics"
              walctl pg init --postgres "service=metrics-admin" --grant-to metrics_shipper
            """
    )

    @OptionGroup var options: PostgresOptions

    @Option(
        name: .customLong("grant-to"),
        help: ArgumentHelp("Grant this (existing) role what shipping needs, and print the grants.", valueName: "role")
    )
    var grantTo: String?

    @Option(
        name: .customLong("read-only-role"),
        help: ArgumentHelp(
            "Create (if missing, LOGIN without a password) and grant a read-only role for dashboards: SELECT on the "
                + "metric tables, rollups and alerts; print the statements.",
            valueName: "role"
        )
    )
    var readOnlyRole: String?

    func run() async throws {
        do {
            let (version, grants) = try PostgresSink.initialize(conninfo: options.conninfo ?? "", grantTo: grantTo)
            let report = try PostgresSink.maintain(conninfo: options.conninfo ?? "")
            Output.line("schema version \(version); \(report.created.count) partitions created")
            for statement in grants { Output.line(statement + ";") }
            if let readOnlyRole {
                let statements = try RollupMaintenance.grantReadOnly(
                    conninfo: options.conninfo ?? "",
                    role: readOnlyRole
                )
                for statement in statements { Output.line(statement + ";") }
            }
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
            Then rebuilds the rollups (walctl_rollup_1m, walctl_rollup_1h) of every minute a row landed in since \
            the last rebuild, from the raw rows, in one transaction (idempotent; safe beside running shippers), and \
            drops rollups older than --rollup-retention-days. A shipper that may maintain partitions rebuilds \
            rollups too, as often as it maintains partitions (hourly); run this every few minutes from cron for \
            fresher historical dashboards.

            --alerts-from DIR (repeatable) loads the fired alerts of the log at DIR (its alerts/journal.jsonl) into \
            walctl_alerts, once per alert id.

            Example:
              walctl pg maintain --postgres "$DATABASE_URL" --days-ahead 7 --retention-days 90
              walctl pg maintain --postgres "$DATABASE_URL" --alerts-from /var/lib/agent/metrics
            """
    )

    @OptionGroup var options: PostgresOptions

    @Option(help: "Daily partitions to create ahead of today (UTC).")
    var daysAhead = 7

    @Option(help: "Drop partitions older than this many days.")
    var retentionDays = 90

    @Option(help: "Drop rollups older than this many days (at least --retention-days).")
    var rollupRetentionDays = 400

    @Option(help: ArgumentHelp("Load the fired alerts of this log into walctl_alerts (repeatable).", valueName: "dir"))
    var alertsFrom: [String] = []

    func validate() throws {
        if rollupRetentionDays < retentionDays {
            throw ValidationError("--rollup-retention-days must be at least --retention-days")
        }
    }

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
            let rollups = try RollupMaintenance.run(
                conninfo: options.conninfo ?? "",
                retentionDays: retentionDays,
                rollupRetentionDays: rollupRetentionDays
            )
            if rollups.ran {
                Output.line(
                    "rollups: \(rollups.minutes) minutes and \(rollups.hours) hours rebuilt, "
                        + "\(rollups.expired) expired rows deleted"
                )
            } else {
                Output.line("rollups: another session is rebuilding them now")
            }
            for dir in alertsFrom {
                let meta = try readMeta(dir, command: "pg maintain")
                let (entries, unreadable) = AlertJournal.read(logDirectory: dir)
                let loaded = try AlertLoading.load(
                    conninfo: options.conninfo ?? "",
                    logID: meta.logID.description,
                    payloads: entries.map(\.payload)
                )
                Output.line(
                    "alerts from \(dir): \(loaded.inserted) loaded, \(loaded.offered - loaded.inserted) already there"
                        + (unreadable > 0 ? ", \(unreadable) unreadable journal lines" : "")
                )
            }
        } catch {
            Output.error("walctl pg maintain: \(error)")
            throw ExitCode(1)
        }
    }
}
