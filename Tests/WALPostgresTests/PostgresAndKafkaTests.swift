import Foundation
import Testing
import WALCore
import WALTestKit

@testable import WALPostgres

extension PostgresTests {
    /// Both sinks in one sidecar: each shipper has its own thread and cursor, so a Kafka outage never holds up
    /// PostgreSQL. Kafka is a kafka-mock of the test's own, so that the test can take its brokers down.
    @Suite struct BothSinks {
        @Test func kafkaDownWhilePostgresKeepsReceivingThenKafkaCatchesUp() throws {
            let mock = try KafkaMockProcess(brokers: 1)
            let servers = mock.servers
            #expect(mock.set(up: false))

            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "5000"]).status == 0)
            let shipper = try ChildProcess(
                walctlPath,
                [
                    "ship", "--dir", path, "--postgres", database.conninfo, "--kafka", servers,
                    "--flush-interval-ms", "50", "--kafka-property", "message.timeout.ms=2000",
                ]
            )
            let logID = try LogDirectory(path: path).readMeta().logID.description
            func postgresCommitted() -> UInt64 {
                ((try? PostgresSink.cursors(conninfo: database.conninfo)) ?? [])
                    .first { $0.logID == logID && $0.shipper == "postgres" }?.seq ?? 0
            }
            #expect(waitFor(seconds: 60) { postgresCommitted() == 5000 }, "PostgreSQL receives while Kafka is down")
            #expect(
                waitFor(seconds: 60) { shipper.partialStandardError().contains("delivery failed; retrying") },
                "Kafka really fails meanwhile"
            )
            #expect(!FileManager.default.fileExists(atPath: path + "/cursors/kafka") || localCursor(path) == 0)

            #expect(mock.set(up: true))
            #expect(waitFor(seconds: 90) { localCursor(path) == 5000 }, "Kafka catches up on its own")
            shipper.kill(SIGTERM)
            #expect(shipper.wait() == 0)
            let consumed = try kcat([
                "-C", "-b", servers, "-t", "agent.metrics.state.v1", "-o", "beginning", "-e", "-q", "-f", "%h\n",
            ])
            let lines = consumed.out.split(separator: "\n")
            #expect(consumed.status == 0)
            let expectedState = try logRecords(path).filter { $0.name.hasPrefix("state_") }.count
            #expect(Set(lines).count == expectedState && expectedState > 0)
            try expectExactlyOnce(path, database)
        }
    }
}

/// The shipper's local copy of its position (cursors/NAME), which follows the sink's commits.
private func localCursor(_ path: String, shipper: String = "kafka") -> UInt64 {
    ((try? CursorStore(path: path).load(shipper)) ?? nil)?.seq ?? 0
}
