import Foundation
import Testing
import WALAlerts
import WALCore
import WALMetrics
import WALObserve
import WALTestKit

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Headless Chromium (Debian's `chromium`; `tools/setup.sh` installs it), or nil.
enum Chromium {
    static let path = ProcessInfo.processInfo.environment["WALCTL_CHROMIUM"] ?? debianTool("chromium")

    /// Runs the browser on `url` with a profile of its own under `scratch`; returns stdout (the DOM with --dump-dom).
    static func run(_ arguments: [String], url: String, scratch: String) throws -> (status: Int32, out: String) {
        let browser = try #require(path, "chromium not found: bash tools/setup.sh installs it")
        let child = try ChildProcess(
            browser,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--hide-scrollbars", "--user-data-dir=\(scratch)/chromium-profile",
                // The page fetches /api/live every second; virtual time lets three refreshes happen without waiting.
                "--virtual-time-budget=4000",
            ] + arguments + [url]
        )
        let out = child.remainingOutput()
        return (child.wait(), out)
    }
}

/// Where tests keep what a person may want to look at: `$WALCTL_TEST_ARTEFACTS`, else `.build/test-artefacts/`.
func testArtefactsDirectory() throws -> String {
    let directory =
        ProcessInfo.processInfo.environment["WALCTL_TEST_ARTEFACTS"]
        ?? FileManager.default.currentDirectoryPath + "/.build/test-artefacts"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory
}

/// The live page in a real browser, against `walctl serve` over a log that `walctl emit` is writing.
@Suite(.serialized) struct LivePageBrowserTests {
    /// `walctl serve ... --http 127.0.0.1:0`, and the URL it printed once listening.
    func serve(_ arguments: [String]) throws -> (ChildProcess, String) {
        let server = try ChildProcess(walctlPath, ["serve"] + arguments + ["--http", "127.0.0.1:0"])
        let line = try #require(server.readLine(), "walctl serve printed nothing: \(server.partialStandardError())")
        #expect(line.hasPrefix("listening http://127.0.0.1:"), "\(line)")
        return (server, String(line.dropFirst("listening ".count)))
    }

    func fetchJSON(_ url: String) -> [String: Any]? {
        guard let data = try? Data(contentsOf: URL(string: url)!) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// Waits until `/api/live` reports the first log in `state`.
    func waitForLogState(_ url: String, _ state: String) -> Bool {
        waitFor {
            let logs = fetchJSON(url + "api/live")?["logs"] as? [[String: Any]]
            return logs?.first?["state"] as? String == state
        }
    }

    /// Every `data-metric` element of the DOM: its path to its `data-raw` value.
    func figures(_ dom: String) throws -> [String: String] {
        let pattern = try NSRegularExpression(pattern: #"data-metric="([^"]+)"[^>]*data-raw="([^"]*)""#)
        var result: [String: String] = [:]
        for match in pattern.matches(in: dom, range: NSRange(dom.startIndex..., in: dom)) {
            result[String(dom[Range(match.range(at: 1), in: dom)!])] = String(dom[Range(match.range(at: 2), in: dom)!])
        }
        return result
    }

    @Test(
        .enabled(
            if: Chromium.path != nil || requireDebianTools,
            "chromium not found (bash tools/setup.sh installs it); with CI set this test runs and fails instead"
        )
    )
    func theLivePageRendersItsPanelsFromALogBeingWritten() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let writer = try ChildProcess.endlessWriter(path, rate: 4000)
        defer { writer.kill() }
        #expect(waitFor { ((try? LogInspector.lastSealedSeqCheap(path: path)) ?? 0) > 0 })
        // Alerts as walctl ship --alerts journals them.
        try AlertJournal(logDirectory: path).fired(try fireAlerts(path, values: [150, 70, 30, 120]))

        let (server, url) = try serve(["--dir", path])
        defer { if server.process.isRunning { server.kill() } }
        // The view has read some of every panel's metrics (the traffic emits all 25 in turn).
        #expect(
            waitFor {
                guard let live = fetchJSON(url + "api/live"), let workflow = live["workflow"] as? [String: Any] else {
                    return false
                }
                return (workflow["executions"] as? Double ?? 0) > 0
            }
        )

        let (status, dom) = try Chromium.run(["--dump-dom"], url: url, scratch: directory.path)
        #expect(status == 0)
        #expect(dom.contains(#"<body data-status="live""#), "\(dom.prefix(2000))")
        for panel in ["routing", "state", "coordination", "workflow", "alerts"] {
            #expect(dom.contains(#"data-panel="\#(panel)""#))
        }
        let shown = try figures(dom)
        let numeric = [
            "routing.decision_time_ms_avg", "routing.cache_hit_rate_pct", "routing.decisions", "routing.confidence_avg",
            "state.get_ms.p50", "state.get_ms.p99", "state.set_ms.p95", "state.ops_per_s",
            "coordination.overhead_ms_avg", "coordination.active_agents", "coordination.dependency_wait_ms_avg",
            "workflow.success_rate_pct", "workflow.execution_time_ms_avg", "workflow.parallel_speedup_avg",
            "alerts.critical_30m",
        ]
        for metric in numeric {
            let raw = try #require(shown[metric], "\(metric) is not on the page")
            #expect(Double(raw).map { $0.isFinite } == true, "\(metric) shows '\(raw)'")
        }
        #expect(Double(shown["routing.decisions"] ?? "") ?? 0 > 0)
        #expect(Double(shown["alerts.critical_30m"] ?? "") == 2)
        // The alert table: the newest first, critical and warning only.
        let rows = try NSRegularExpression(pattern: #"<tr data-severity="(\w+)""#)
        let severities = rows.matches(in: dom, range: NSRange(dom.startIndex..., in: dom)).map {
            String(dom[Range($0.range(at: 1), in: dom)!])
        }
        #expect(severities == ["critical", "warning", "critical"])
        // Sparklines were drawn, and the confidence distribution has bars.
        #expect(dom.contains("<polyline class=\"spark\""))
        #expect(dom.contains("data-bucket=\"9\""))
        #expect(!dom.contains("last refresh <span id=\"last-refresh\">never</span>"))

        let artefacts = try testArtefactsDirectory()
        let picture = artefacts + "/live-page.png"
        try? FileManager.default.removeItem(atPath: picture)
        let shot = try Chromium.run(
            ["--screenshot=\(picture)", "--window-size=1280,1600"],
            url: url,
            scratch: directory.path
        )
        #expect(shot.status == 0)
        let size = (try? FileManager.default.attributesOfItem(atPath: picture)[.size] as? Int) ?? 0
        #expect(size > 20_000, "screenshot \(picture): \(size) bytes")

        // Beside the page, serve answers health and the logs' series.
        let port = try #require(Int(url.dropFirst("http://127.0.0.1:".count).dropLast()))
        #expect(httpGet(port: port, "/healthz")?.status == 200)
        #expect(httpGet(port: port, "/metrics")?.body.contains("walctl_log_last_seq{") == true)

        // SIGTERM stops the view's thread and the listener: exit 0.
        server.kill(SIGTERM)
        #expect(server.process.terminationStatus == 0, "\(server.standardError())")
    }

    @Test(.enabled(if: Chromium.path != nil || requireDebianTools, "chromium not found (bash tools/setup.sh)"))
    func aLogWithoutRecordsShowsNoDataYet() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        defer { try? collector.close() }
        let (server, url) = try serve(["--dir", path])
        defer { server.kill(SIGTERM) }
        #expect(waitForLogState(url, "idle"))
        let (status, dom) = try Chromium.run(["--dump-dom"], url: url, scratch: directory.path)
        #expect(status == 0)
        #expect(dom.contains(#"<body data-status="no-data""#))
        #expect(dom.contains(">no data yet<"))
        // Every figure is there, without a number.
        let shown = try figures(dom)
        #expect(shown["routing.decision_time_ms_avg"] == "" && shown["workflow.success_rate_pct"] == "")
        #expect(shown["routing.decisions"] == "0")
    }

    @Test(.enabled(if: Chromium.path != nil || requireDebianTools, "chromium not found (bash tools/setup.sh)"))
    func aPageWhoseDataCannotBeFetchedSaysItIsStale() throws {
        // Opened from a file, the page's fetch of /api/live fails: what it shows when the listener is gone.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let page = directory.file("live.html")
        try Data(LivePage.html).write(to: URL(fileURLWithPath: page))
        let (status, dom) = try Chromium.run(["--dump-dom"], url: "file://" + page, scratch: directory.path)
        #expect(status == 0)
        #expect(dom.contains(#"<body data-status="stale""#))
        #expect(dom.contains("stale: /api/live unreachable"))
        #expect(!dom.contains("http://") && !dom.contains("https://"), "the page names no external URL")
    }

    @Test(.enabled(if: Chromium.path != nil || requireDebianTools, "chromium not found (bash tools/setup.sh)"))
    func aMissingLogShowsUnreachableRatherThanBreaking() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (server, url) = try serve(["--dir", directory.file("no-log-here")])
        defer { server.kill(SIGTERM) }
        #expect(waitForLogState(url, "unreachable"))
        let (status, dom) = try Chromium.run(["--dump-dom"], url: url, scratch: directory.path)
        #expect(status == 0)
        #expect(dom.contains(#"<body data-status="unreachable""#))
        #expect(dom.contains(">log unreachable<"))
        #expect(dom.contains("no-log-here"))
    }
}
