import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

/// `walctl stats` computes exact statistics with one stated rule each, and its filters and groups say what they
/// mean (issue 14 items 3 to 5, issue 13 item 9).
@Suite struct StatsExactnessTests {
    func groups(_ arguments: [String]) throws -> [[String: Any]] {
        let result = try walctl(["stats"] + arguments + ["--json"])
        try #require(result.status == 0, "\(result.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
        return try #require(object["groups"] as? [[String: Any]])
    }

    func group(_ groups: [[String: Any]], _ metric: String) throws -> [String: Any] {
        try #require(groups.first { $0["metric"] as? String == metric })
    }

    @Test func percentilesAreNearestRankOnBothSidesOfZeroAndNeverClamped() throws {
        try withCollector { collector, path in
            for value in [-1000.0, -1000, -1, -1] { collector.recordGauge("custom_pairs", value: value, unit: "x") }
            for value in 1...100 { collector.recordGauge("custom_negative", value: -Double(value), unit: "x") }
            for value in 1...100 { collector.recordGauge("custom_positive", value: Double(value), unit: "x") }
            for value in [1.0, 1e20] { collector.recordGauge("custom_huge", value: value, unit: "x") }
            for _ in 0..<2 { collector.recordGauge("custom_overflow", value: 1e308, unit: "x") }
            try collector.close()

            let all = try groups([path])
            #expect(try group(all, "custom_pairs")["p50"] as? Double == -1000)
            #expect(try group(all, "custom_negative")["p50"] as? Double == -51)
            #expect(try group(all, "custom_positive")["p50"] as? Double == 50)
            #expect(try group(all, "custom_negative")["p95"] as? Double == -6)
            #expect(try group(all, "custom_positive")["p95"] as? Double == 95)
            #expect(try group(all, "custom_huge")["p95"] as? Double == 1e20, "no clamp at 4.6e15")
            #expect(try group(all, "custom_huge")["mean"] as? Double == 5e19)
            #expect(try group(all, "custom_overflow")["mean"] as? Double == 1e308, "the mean does not overflow")

            let table = try walctl(["stats", path]).out
            let overflowRow = try #require(table.split(separator: "\n").first { $0.hasPrefix("custom_overflow") })
            #expect(!overflowRow.contains("null") && overflowRow.contains("1e+308"), "\(overflowRow)")
            let help = try walctl(["stats", "--help"]).out
            #expect(help.contains("nearest rank"))
        }
    }

    /// Ten records, then 20 s of silence: over `--since -30s` that is 10 records in 30 s, not in 9.5 s.
    @Test func theRateOfAWindowOpenAtItsEndRunsToNow() throws {
        try withCollector { collector, path in
            let now = Int64(Date().timeIntervalSince1970 * 1e9)
            for index in 0..<10 {
                collector.record(
                    "custom_ticks",
                    type: .counter,
                    value: 1,
                    unit: "count",
                    timestampNanos: now - 25_000_000_000 + Int64(index) * 500_000_000
                )
            }
            try collector.close()
            let open = try group(try groups([path, "--since", "-30s"]), "custom_ticks")
            let rate = try #require(open["rate_per_second"] as? Double)
            #expect(abs(rate - 10.0 / 30) < 0.01, "rate \(rate)")
            let closed = try group(try groups([path, "--since", "-30s", "--until", "now"]), "custom_ticks")
            #expect(abs((closed["rate_per_second"] as? Double ?? 0) - 10.0 / 30) < 0.01)
            // Neither bound: first to last record.
            let whole = try group(try groups([path]), "custom_ticks")
            #expect(abs((whole["rate_per_second"] as? Double ?? 0) - 10 / 4.5) < 0.01)
        }
    }

    @Test func recordsWithoutTheTagFormAGroupOfTheirOwn() throws {
        try withCollector { collector, path in
            collector.recordGauge("custom_depth", value: 1, unit: "x", tags: ["region": "-"])
            collector.recordGauge("custom_depth", value: 2, unit: "x", tags: ["region": "eu"])
            collector.recordGauge("custom_depth", value: 3, unit: "x")
            collector.recordGauge("custom_depth", value: 4, unit: "x")
            try collector.close()
            let rows = try groups([path, "--by", "metric,region"])
            #expect(rows.map { $0["tag_value"] as? String } == ["-", "eu", nil])
            #expect(rows.map { $0["count"] as? Int } == [1, 1, 2])
            #expect(rows.last.map { $0["tag_value"] is NSNull } == true, "null, not a value")
            let table = try walctl(["stats", path, "--by", "metric,region"]).out
            #expect(table.contains("(none)"))
        }
    }

    @Test func aTagKeyGivenTwiceIsAUsageError() throws {
        try withCollector { collector, path in
            collector.recordGauge("custom_depth", value: 1, unit: "x", tags: ["region": "eu"])
            try collector.close()
            for command in ["stats", "inspect", "replay", "tail"] {
                var arguments = [command, path, "--tag", "region=eu", "--tag", "region=us"]
                if command == "inspect" { arguments.append("--records") }
                if command == "replay" { arguments += ["--to", "stdout"] }
                let result = try walctl(arguments)
                #expect(result.status == 2, "\(command): \(result.err)")
                #expect(result.err.contains("--tag region is given twice"), "\(command)")
            }
            #expect(try walctl(["stats", path, "--tag", "region=eu", "--tag", "region=eu"]).status == 0)
            for (flag, first, second) in [("--agent", "a", "b"), ("--since", "-1d", "-2d"), ("--until", "now", "-1d")] {
                let result = try walctl(["stats", path, flag, first, flag, second])
                #expect(result.status == 2 && result.err.contains("\(flag) is given 2 times"), "\(result.err)")
            }
        }
    }

    @Test func emitTakesNegativeValuesAndRefusesAContradictoryType() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let negative = try walctl([
            "emit", "--dir", path, "--metric", "custom_delta", "--type", "gauge", "--unit", "x",
            "--value", "-5",
        ])
        #expect(negative.status == 0, "\(negative.err)")
        #expect(try logRecords(path).map(\.value) == [-5])
        let typed = try walctl([
            "emit", "--dir", path, "--metric", "routing_decision_time_ms", "--type", "gauge",
            "--value", "3",
        ])
        #expect(typed.status == 2 && typed.err.contains("catalog metric"), "\(typed.err)")
        let twice = try walctl([
            "emit", "--dir", path, "--metric", "custom_delta", "--type", "gauge", "--unit", "x",
            "--value", "1", "--tag", "a=1", "--tag", "a=2",
        ])
        #expect(twice.status == 2, "\(twice.err)")
        #expect(try logRecords(path).count == 1)
    }
}

/// The envelope keeps what the log keeps (wal-format.md 13.4): nine fractional digits, and the sign of -0.0.
@Suite struct EnvelopePrecisionTests {
    @Test func theEnvelopeKeepsNanosecondsAndTheSignOfZero() throws {
        try withCollector { collector, path in
            let time: Int64 = 1_767_225_601_999_999_500
            collector.record("custom_zero", type: .gauge, value: -0.0, unit: "x", timestampNanos: time)
            collector.record("custom_zero", type: .gauge, value: 0.0, unit: "x", timestampNanos: time + 1)
            try collector.close()
            let result = try walctl(["inspect", path, "--records", "--json"])
            #expect(result.status == 0, "\(result.err)")
            let lines = result.out.split(separator: "\n").map(String.init)
            try #require(lines.count == 2)
            #expect(lines[0].contains(#""timestamp":"2026-01-01T00:00:01.999999500Z""#), "\(lines[0])")
            #expect(lines[0].contains(#""value":-0.0,"#), "\(lines[0])")
            #expect(lines[1].contains(#""value":0,"#), "\(lines[1])")
            let payload = try #require(
                (try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])?["payload"]
                    as? [String: Any]
            )
            let value = try #require(payload["value"] as? Double)
            #expect(value == 0 && value.sign == .minus, "reads back as -0.0")
        }
    }
}
