import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import WALObserve
import WALShipping

/// `walctl serve`: the live page for logs alone (no sink, no database).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the live page of one or many logs: the design's real-time panels, from the logs themselves.",
        discussion: """
            Tails the logs on a thread of its own (it only reads: no cursor is written, retention is not held back) \
            and serves on --http: / the live page (plain HTML, CSS and a small script, no external URL: it works \
            on a machine without internet), /api/live its data as JSON, /metrics (Prometheus: the logs' disk use, staged \
            records and last seq), /healthz and /readyz. The page refreshes every \
            second: routing and state operations over the last minute, coordination and workflow execution over \
            the last five, and the recent alerts of the logs' journals (alerts/journal.jsonl, written by \
            walctl ship --alerts). A log is read from the last five minutes only (at most 200,000 records before \
            its end), so a large log is not read from the start.

            The listener binds to the loopback address by default; it has no authentication, so think twice before \
            giving it another address. Port 0 takes a free port. Prints `listening http://HOST:PORT/` (or, with \
            --json, {"url":...,"port":...}) on stdout once bound. SIGTERM and SIGINT stop it.

            Exit codes: 0 stopped by a signal; 1 the address cannot be bound; 2 usage.

            Examples:
              walctl serve --dir /var/lib/agent/metrics
              walctl serve --root /var/lib/agents --http 127.0.0.1:8080
              walctl serve --logs '/var/lib/agents/*/metrics' --http :0 --json
            """
    )

    @Option(help: "A log directory (repeatable).")
    var dir: [String] = []

    @Option(help: "Every log directory under this folder, including logs that appear later (repeatable).")
    var root: [String] = []

    @Option(
        name: .customLong("logs"),
        help: ArgumentHelp("Every log directory matching this glob pattern (repeatable).", valueName: "glob")
    )
    var logPatterns: [String] = []

    @Option(help: ArgumentHelp("Where to listen (host:port, [ipv6]:port or :port).", valueName: "host:port"))
    var http = "127.0.0.1:9464"

    @Flag(help: "Print the address as JSON once listening.")
    var json = false

    func validate() throws {
        guard !(dir.isEmpty && root.isEmpty && logPatterns.isEmpty) else {
            throw ValidationError("give --dir, --root or --logs")
        }
        guard ListenAddress(http) != nil else {
            throw ValidationError("--http takes host:port, [ipv6]:port or :port (127.0.0.1:9464)")
        }
    }

    func run() async throws {
        let logger = Logger(label: "walctl.serve")
        let address = ListenAddress(http)!
        let view = LiveView(selection: LogSelection(directories: dir, roots: root, patterns: logPatterns))
        // /metrics (the logs' disk use, staged records, last seq), /healthz and /readyz, for the logs alone.
        let monitor = ShipperMonitor(engines: [], logDirectories: { [view] in view.directories })
        let (server, port) = try startHTTPListener(
            address,
            routes: view.routes.merging(monitor.routes) { live, _ in live },
            command: "serve",
            logger: logger
        )
        var shown = address
        shown.port = port
        let url = "http://\(shown)/"
        Output.line(json ? Output.json(Listening(url: url, port: port)) : "listening \(url)")
        let group = ServiceGroup(
            configuration: .init(
                services: [view, server],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    struct Listening: Encodable {
        var url: String
        var port: Int
    }
}
