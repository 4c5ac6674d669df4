import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALKafka

/// `walctl replay --to kafka` against the test cluster (mock or real), counted with kcat.
@Suite(.enabled(if: hasBootstrap, "needs KAFKA_BOOTSTRAP_SERVERS (tools/test.sh starts the mock cluster)"))
struct KafkaReplayTests {
    @Test func replayResendsTheRangeWithTheSameEventIDsAndLeavesTheCursorAlone() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        #expect(try walctl(["emit", "--dir", path, "--count", "4000"]).status == 0)
        let shipped = try walctl(["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err)")
        let probe = try CursorProbe(servers: servers, path: path, prefix: prefix)
        #expect(probe.committed() == 4000)

        let replay = [
            "replay", path, "--to", "kafka", "--kafka", servers, "--kafka-topic-prefix", prefix, "--from-seq", "1001",
            "--to-seq", "2500",
        ]
        let result = try walctl(replay)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.err.contains("replayed 1500 records to kafka"))
        #expect(probe.committed() == 4000, "replay leaves the shipper's cursor alone")

        let messages = try consumeAll(servers, prefix: prefix)
        #expect(messages.count == 5500)
        let bySeq = Dictionary(grouping: messages, by: \.seq)
        #expect(Set(bySeq.keys) == Set(1...4000))
        for (seq, copies) in bySeq {
            #expect(copies.count == ((1001...2500).contains(seq) ? 2 : 1), "seq \(seq)")
            #expect(Set(copies.compactMap { $0.headers["event_id"] }).count == 1, "seq \(seq) keeps its event id")
            #expect(Set(copies.map(\.value)).count == 1, "seq \(seq): the same envelope")
            #expect(Set(copies.map(\.partition)).count == 1, "seq \(seq): the same partition (same key)")
        }
    }

    /// Issue 13 (the envelope as a contract): the log's source service, recorded by its writer, is in every
    /// message the shipper sends, and replay to stdout renders the very same bytes.
    @Test func shipAndReplayRenderTheSameEnvelopeWithTheLogsSourceService() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        var environment = ProcessInfo.processInfo.environment
        environment["METRICS_SOURCE_SERVICE"] = "billing-agent"
        #expect(try walctl(["emit", "--dir", path, "--count", "500"], environment: environment).status == 0)
        let shipped = try walctl(["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err)")
        let messages = try consumeAll(servers, prefix: prefix)
        #expect(messages.count == 500)
        let replayed = try walctl(["replay", path, "--to", "stdout"])
        let lines = replayed.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 500)
        let bySeq = Dictionary(uniqueKeysWithValues: messages.map { ($0.seq, $0.value) })
        for (index, line) in lines.enumerated() {
            #expect(bySeq[UInt64(index + 1)] == line, "seq \(index + 1): the shipper's bytes")
            #expect(line.contains(#""source_service":"billing-agent""#))
        }
    }

    @Test func advanceCursorMovesTheKafkaCursorForwardOnly() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        #expect(try walctl(["emit", "--dir", path, "--count", "3000"]).status == 0)
        let probe = try CursorProbe(servers: servers, path: path, prefix: prefix)
        let base = ["replay", path, "--to", "kafka", "--kafka", servers, "--kafka-topic-prefix", prefix]
        let advanced = try walctl(base + ["--to-seq", "2000", "--advance-cursor"])
        #expect(advanced.status == 0, "\(advanced.err)")
        #expect(advanced.err.contains("cursor now at 2000"))
        #expect(probe.committed() == 2000)
        // The shipper resumes after it: every record exactly once in all.
        let shipped = try walctl(["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err)")
        #expect(probe.committed() == 3000)
        let messages = try consumeAll(servers, prefix: prefix)
        #expect(messages.map(\.seq).sorted() == Array(1...3000))
        let back = try walctl(base + ["--to-seq", "10", "--advance-cursor"])
        #expect(back.status == 0)
        #expect(probe.committed() == 3000, "never moved back")

        let inspected = try walctl(["inspect", path, "--kafka", servers])
        #expect(inspected.status == 0, "\(inspected.err)")
        #expect(inspected.out.contains("kafka") && inspected.out.contains("at 3000, at the end"))
    }
}
