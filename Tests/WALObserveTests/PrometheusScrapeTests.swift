import Foundation
import Testing
import WALCore
import WALTestKit

/// A running `walctl ship --http`, scraped by a real Prometheus server (Debian's `prometheus`), with a PostgreSQL
/// server of its own that the test stops and starts: PromQL over the scraped series returns the lag the test
/// created, `promtool check metrics` accepts the exposition, and `/healthz` fails while PostgreSQL is down with
/// records waiting, then recovers by itself.
@Suite(.serialized) struct PrometheusScrapeTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// A throwaway PostgreSQL server under /tmp (the postgres user must reach its folder), stopped and removed at
    /// the end.
    final class OwnPostgres {
        let directory = "/tmp/walctl-observe-pg-\(UUID().uuidString.prefix(8))"
        var conninfo = ""

        init() throws {
            // Through Shell.run: the server inherits no pipe of ours (a pipe would never see its end).
            guard pg("start") == 0 else { throw POSIXError(.EIO) }
            conninfo = try String(contentsOfFile: directory + "/conninfo", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func pg(_ command: String) -> Int32 {
            Shell.run("/bin/bash", ["\(PrometheusScrapeTests.repositoryRoot)/tools/pg.sh", command, directory])
        }

        deinit {
            _ = pg("stop")
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// A Prometheus server scraping `target` every second, with its data in a temporary folder.
    final class OwnPrometheus {
        let folder: TemporaryDirectory
        let port: Int
        let process: ChildProcess

        init(binary: String, target: String) throws {
            folder = try TemporaryDirectory()
            port = Int(try unusedLoopbackPort())
            let configuration = folder.file("prometheus.yml")
            try """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: walctl
                static_configs:
                  - targets: ['\(target)']
            """.write(toFile: configuration, atomically: true, encoding: .utf8)
            process = try ChildProcess(
                binary,
                [
                    "--config.file=\(configuration)", "--storage.tsdb.path=\(folder.file("data"))",
                    "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
                ]
            )
        }

        /// The results of an instant PromQL query; nil when Prometheus refused it (the error is in `lastError`).
        func results(_ promql: String) -> [[String: Any]]? {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let encoded = promql.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
            guard let reply = httpGet(port: port, "/api/v1/query?query=\(encoded)", timeoutSeconds: 5),
                let json = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any]
            else { return nil }
            guard reply.status == 200, let data = json["data"] as? [String: Any],
                let result = data["result"] as? [[String: Any]]
            else {
                lastError = json["error"] as? String ?? reply.body
                return nil
            }
            return result
        }

        var lastError = ""

        /// The value of an instant PromQL query with a single result; nil when it has none yet.
        func query(_ promql: String) -> Double? {
            guard let result = results(promql), result.count == 1, let value = result[0]["value"] as? [Any],
                value.count == 2, let text = value[1] as? String
            else { return nil }
            return Double(text)
        }

        deinit {
            process.kill(SIGTERM)
            folder.remove()
        }
    }

    @Test(.timeLimit(.minutes(5))) func prometheusScrapesTheShipperAndHealthFollowsPostgres() throws {
        guard let prometheus = debianTool("prometheus") else {
            #expect(!requireDebianTools, "prometheus missing under CI: tools/setup.sh installs it")
            return
        }
        let postgres = try OwnPostgres()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "5000"]).status == 0)
        let first = try LogInspector.lastSealedSeqCheap(path: path)
        let port = Int(try unusedLoopbackPort())
        #expect(try walctl(["pg", "init", "--postgres", postgres.conninfo]).status == 0)
        let shipper = try ChildProcess(
            walctlPath,
            [
                "ship", "--dir", path, "--postgres", postgres.conninfo, "--http", "127.0.0.1:\(port)",
                "--stalled-after", "2s",
            ]
        )
        defer { shipper.kill(SIGTERM) }
        let server = try OwnPrometheus(binary: prometheus, target: "127.0.0.1:\(port)")
        let logID = try LogDirectory(path: path).readMeta().logID.description
        let series = "{sink=\"postgres\",log_id=\"\(logID)\"}"

        // 1. Caught up: Prometheus sees the committed position and no lag; the shipper is ready and healthy.
        #expect(
            waitFor(seconds: 60) { server.query("walctl_ship_committed_seq\(series)") == Double(first) },
            "\(shipper.partialStandardError())"
        )
        #expect(server.query("walctl_ship_lag_records\(series)") == 0)
        #expect(server.query("walctl_ship_records_total\(series)") == 5000)
        #expect(httpGet(port: port, "/healthz")?.status == 200)
        #expect(httpGet(port: port, "/readyz")?.status == 200)
        let exposition = try #require(httpGet(port: port, "/metrics"))
        #expect(exposition.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let check = try promtoolCheck(exposition.body)
        #expect(check.status == 0, "\(check.output)")

        // 2. PostgreSQL goes down while the agent writes 3,000 more: the lag is scraped, health fails with the reason.
        #expect(postgres.pg("stop") == 0)
        #expect(try walctl(["emit", "--dir", path, "--count", "3000"]).status == 0)
        let second = try LogInspector.lastSealedSeqCheap(path: path)
        #expect(
            waitFor(seconds: 60) { server.query("walctl_ship_lag_records\(series)") == Double(second - first) },
            "lag \(String(describing: server.query("walctl_ship_lag_records\(series)")))"
        )
        var health: HTTPReply?
        #expect(
            waitFor(seconds: 30) {
                health = httpGet(port: port, "/healthz")
                return health?.status == 503
            }
        )
        let reason = health?.body ?? ""
        #expect(reason.hasPrefix("unhealthy\npostgres: "), "\(reason)")
        #expect(reason.contains("records wait") || reason.contains("every attempt failed"), "\(reason)")
        #expect(!reason.contains("password"), "\(reason)")
        #expect(waitFor(seconds: 30) { (server.query("sum(walctl_ship_errors_total{kind=\"connection\"})") ?? 0) > 0 })
        #expect(waitFor(seconds: 30) { server.query("walctl_ship_healthy{sink=\"postgres\"}") == 0 })

        // 3. PostgreSQL returns: the shipper catches up by itself, health and lag recover.
        #expect(postgres.pg("start") == 0)
        #expect(waitFor(seconds: 60) { httpGet(port: port, "/healthz")?.status == 200 })
        #expect(
            waitFor(seconds: 60) {
                server.query("walctl_ship_committed_seq\(series)") == Double(second)
                    && server.query("walctl_ship_lag_records\(series)") == 0
            }
        )
        #expect(server.query("walctl_ship_records_total\(series)") == 8000)

        // 4. Every expression of the shipper's Grafana dashboard runs on this Prometheus, and those about sinks and
        // logs return series (the alert panels have none without --alerts).
        let board = URL(fileURLWithPath: Self.repositoryRoot + "/dashboards/grafana/dashboards/shipper.json")
        let dashboard = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: board)) as? [String: Any]
        )
        var checked = 0
        for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                let expression = try #require(target["expr"] as? String)
                    .replacingOccurrences(of: "$__rate_interval", with: "1m")
                    .replacingOccurrences(of: "$instance", with: ".*")
                    .replacingOccurrences(of: "$sink", with: ".*")
                let expectsData = (target["walctl"] as? [String: Any])?["expects_data"] as? Bool ?? false
                let title = panel["title"] as? String ?? ""
                let results = server.results(expression)
                #expect(results != nil, "\(title): \(expression): \(server.lastError)")
                if expectsData { #expect(results?.isEmpty == false, "\(title): \(expression) returned nothing") }
                checked += 1
            }
        }
        #expect(checked >= 20)
        shipper.kill(SIGTERM)
    }
}
