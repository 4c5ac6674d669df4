import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

/// The test server, started by tools/test.sh (WALCTL_TEST_POSTGRES); a test without it is reported as skipped.
let testServer = ProcessInfo.processInfo.environment["WALCTL_TEST_POSTGRES"]
let testServerDirectory = ProcessInfo.processInfo.environment["WALCTL_TEST_PGDIR"]
let hasTestServer = testServer != nil

/// The repository root (for tools/pg.sh).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A fresh database on the test server, dropped afterwards.
final class TestDatabase {
    let name: String
    let conninfo: String

    init() throws {
        guard let server = testServer else { throw PGError(message: "no test server (run tools/test.sh)") }
        name = "walctl_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let admin = try PGConnection.connect(server, applicationName: "walctl-tests")
        try admin.execute("CREATE DATABASE \(name)")
        conninfo = server.replacingOccurrences(of: "dbname=postgres", with: "dbname=\(name)")
    }

    func connect() throws -> PGConnection { try PGConnection.connect(conninfo, applicationName: "walctl-test-check") }

    func query(_ sql: String, _ parameters: [String?] = []) throws -> [[String?]] {
        let result = try connect().execute(sql, parameters)
        return (0..<result.rowCount).map { row in (0..<16).map { result.value(row, $0) } }
    }

    func scalar(_ sql: String) throws -> String? { try query(sql).first?.first ?? nil }

    /// Rows of every metric table: (wal_seq, metric_name, value, tags json, agent, correlation, table).
    func allRows() throws -> [(
        seq: UInt64, name: String, value: Double, tags: [String: String], agent: String?, correlation: String?,
        table: String
    )] {
        var rows: [(UInt64, String, Double, [String: String], String?, String?, String)] = []
        for table in PostgresSchema.tables {
            for row in try query(
                "SELECT wal_seq, metric_name, value, tags::text, agent_id, correlation_id FROM \(table)"
            ) {
                let tags =
                    (try? JSONSerialization.jsonObject(with: Data((row[3] ?? "{}").utf8))) as? [String: String] ?? [:]
                rows.append(
                    (
                        UInt64(row[0] ?? "0") ?? 0, row[1] ?? "", Double(row[2] ?? "nan") ?? .nan, tags, row[4], row[5],
                        table
                    )
                )
            }
        }
        return rows.sorted { $0.0 < $1.0 }
    }

    deinit {
        if let server = testServer, let admin = try? PGConnection.connect(server, applicationName: "walctl-tests") {
            _ = try? admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(name)' AND pid <> pg_backend_pid()"
            )
            _ = try? admin.execute("DROP DATABASE IF EXISTS \(name)")
        }
    }
}

/// A shipper of the whole log at `path` (as sealed now) into `database`, in this process, that stops once drained.
func drainingShipper(
    _ path: String,
    into database: TestDatabase,
    batchSize: Int,
    retry: RetryPolicy = RetryPolicy(initialMilliseconds: 20, maximumMilliseconds: 500)
) throws -> Shipper {
    var settings = ShipperConfiguration()
    settings.batchSize = batchSize
    settings.pollMilliseconds = 5
    settings.retry = retry
    settings.drainThroughSeq = try LogInspector.lastSealedSeqCheap(path: path)
    return Shipper(
        directory: path,
        sink: PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo)),
        configuration: settings,
        logger: Logger(label: "test")
    )
}

/// Ships the whole log at `path` to `database` in this process (drain mode).
@discardableResult
func drain(_ path: String, into database: TestDatabase, batchSize: Int = 100) throws -> ShipperStatistics {
    let shipper = try drainingShipper(path, into: database, batchSize: batchSize)
    try shipper.runBlocking()
    return shipper.statistics
}

/// Checks that the database holds every record of the log exactly once, field for field.
func expectExactlyOnce(
    _ path: String,
    _ database: TestDatabase,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let records = try logRecords(path)
    let rows = try database.allRows()
    #expect(
        rows.count == records.count,
        "rows \(rows.count) vs records \(records.count)",
        sourceLocation: sourceLocation
    )
    #expect(Set(rows.map(\.seq)).count == rows.count, "a wal_seq appears twice", sourceLocation: sourceLocation)
    let logID = try LogDirectory(path: path).readMeta().logID.description
    #expect(try database.scalar("SELECT count(DISTINCT log_id) FROM agent_state_metrics") ?? "0" <= "1")
    for (record, row) in zip(records, rows) {
        guard record.seq == row.seq else {
            Issue.record("seq \(record.seq) vs row \(row.seq)", sourceLocation: sourceLocation)
            return
        }
        #expect(
            row.name == record.name && row.value == record.value && row.tags == record.tags,
            sourceLocation: sourceLocation
        )
        #expect(row.agent == record.agentID && row.correlation == record.correlationID, sourceLocation: sourceLocation)
        #expect(row.table == record.category.table, sourceLocation: sourceLocation)
    }
    let cursor = try database.scalar(
        "SELECT wal_seq FROM walctl_cursors WHERE log_id = '\(logID)' AND shipper = 'postgres'"
    )
    #expect(UInt64(cursor ?? "0") ?? 0 >= records.last?.seq ?? 0, sourceLocation: sourceLocation)
}
