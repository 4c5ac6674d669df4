import Foundation
import Testing
import WALCore
import WALTestKit

@testable import WALMetrics

/// The envelope is part of the contract (issue 13): the examples of wal-format.md section 13.4 are rendered here
/// byte for byte, and the source service is the log's, whoever renders it.
@Suite struct EnvelopeSpecTests {
    static let logID = LogID(bytes: [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
    ])
    static let time = Envelope.parseTimestamp("2026-11-29T11:20:27.123456789Z")!

    /// The records of the spec's examples, in their order, with the source service each is rendered with.
    static let examples: [(record: MetricRecord, sourceService: String)] = [
        (
            MetricRecord(
                seq: 1,
                name: "routing_decision_time_ms",
                type: .timing,
                value: 12.5,
                unit: "ms",
                tags: ["agent_type": "router", "strategy": "capability"],
                timestampNanos: time,
                correlationID: "6f1c5a52-3f1e-4c1b-9a43-5b2d7f1a9e01",
                agentID: "agent-1"
            ), "omninode-bridge"
        ),
        (
            MetricRecord(
                seq: 42,
                name: "billing_queue_depth",
                type: .gauge,
                value: 1e15,
                unit: "count",
                tags: [:],
                timestampNanos: time + 1,
                correlationID: nil,
                agentID: nil
            ), "billing-agent"
        ),
        (
            MetricRecord(
                seq: 18_446_744_073_709_551_615,
                name: "workflow_success_rate",
                type: .rate,
                value: 2.5e-5,
                unit: "%",
                tags: ["note": "say \"hi\"\n\u{1}", "zone": "eu-west"],
                timestampNanos: -1,
                correlationID: "job 7",
                agentID: "a\\b"
            ), "omninode-bridge"
        ),
    ]

    /// The one-line JSON examples of section 13.4, in order.
    static func specExamples() throws -> [String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("wal-format.md"), encoding: .utf8)
        let section = try #require(text.range(of: "### 13.4 The envelope"))
        let rest = text[section.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        var examples: [String] = []
        var inJSON = false
        for line in rest[..<end].split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "```json" {
                inJSON = true
            } else if line == "```" {
                inJSON = false
            } else if inJSON {
                examples.append(String(line))
            }
        }
        return examples
    }

    @Test func theSpecsExamplesRenderByteForByte() throws {
        let expected = try Self.specExamples()
        #expect(expected.count == Self.examples.count)
        for (index, example) in Self.examples.enumerated() where index < expected.count {
            let rendered = Envelope.json(example.record, logID: Self.logID, sourceService: example.sourceService)
            #expect(rendered == expected[index], "example \(index + 1)")
            // Valid JSON, with the fields in the spec's order.
            let object = try #require(try JSONSerialization.jsonObject(with: Data(rendered.utf8)) as? [String: Any])
            #expect(object.count == 7)
        }
    }

    /// Times a nanosecond count cannot hold are not times (nil), not an overflow trap.
    @Test func timestampsOutsideWhatNanosecondsHoldAreRefused() {
        #expect(Envelope.parseTimestamp("2262-04-11T23:47:16.854775807Z") == Int64.max)
        #expect(Envelope.parseTimestamp("2262-04-11T23:47:16.854775808Z") == nil)
        #expect(Envelope.parseTimestamp("1677-09-21T00:12:44Z") == -9_223_372_036_000_000_000)
        #expect(Envelope.parseTimestamp("1677-09-21T00:12:43Z") == nil)
        for text in [
            "2263-01-01T00:00:00Z", "1000-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00Z",
        ] {
            #expect(Envelope.parseTimestamp(text) == nil, "\(text)")
        }
    }

    @Test(arguments: [
        (12.5, "12.5"), (3, "3"), (-0.0, "-0.0"), (1e15, "1000000000000000"),
        (9_007_199_254_740_991, "9007199254740991"),
        (9_007_199_254_740_992, "9007199254740992"), (9_007_199_254_740_994, "9.007199254740994e+15"),
        (9.9e15, "9.9e+15"), (1e-4, "0.0001"), (9.999e-5, "9.999e-05"), (1e16, "1e+16"), (0.1, "0.1"), (1e-5, "1e-05"),
        (-3.25, "-3.25"), (1.5e300, "1.5e+300"), (Double.nan, "null"),
    ])
    func numbersPrintAsTheSpecSays(value: Double, text: String) {
        #expect(Envelope.numberText(value) == text)
    }

    /// `METRICS_SOURCE_SERVICE` is recorded by the writer; every renderer of the log (replay, tail, inspect) uses it.
    @Test func theSourceServiceIsAPropertyOfTheLog() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        var environment = ProcessInfo.processInfo.environment
        environment["METRICS_SOURCE_SERVICE"] = "billing-agent"
        let emit = try walctl(
            ["emit", "--dir", path, "--metric", "state_operation_count", "--value", "1"],
            environment: environment
        )
        #expect(emit.status == 0, "\(emit.err)")
        #expect(Envelope.sourceService(directory: path) == "billing-agent")
        for command in [
            ["replay", path, "--to", "stdout"], ["tail", path, "--json"], ["inspect", path, "--records", "--json"],
        ] {
            let result = try walctl(command)
            #expect(result.out.contains(#""source_service":"billing-agent""#), "\(command[0]): \(result.out)")
        }
        // Another service on the same log is refused (its records were rendered with the first).
        environment["METRICS_SOURCE_SERVICE"] = "other-agent"
        let refused = try walctl(
            ["emit", "--dir", path, "--metric", "state_operation_count", "--value", "1"],
            environment: environment
        )
        #expect(refused.status != 0)
        #expect(refused.err.contains("billing-agent"), "\(refused.err)")
        // A log created without it keeps the design's default.
        let plain = directory.file("plain")
        #expect(try walctl(["emit", "--dir", plain, "--metric", "state_operation_count", "--value", "1"]).status == 0)
        #expect(Envelope.sourceService(directory: plain) == Envelope.defaultSourceService)
        #expect(try walctl(["replay", plain, "--to", "stdout"]).out.contains(#""source_service":"omninode-bridge""#))
    }

    @Test func aSourceServiceTooLongForTheHeaderIsAConfigurationError() {
        #expect(throws: MetricsError.self) {
            try MetricsConfiguration.fromEnvironment([
                "METRICS_DIR": "/tmp/x", "METRICS_SOURCE_SERVICE": String(repeating: "s", count: 28),
            ])
        }
    }
}
