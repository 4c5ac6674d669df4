import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

// MARK: - Helpers

/// A login role of the test server, unique to the test. With a password it is a member of
/// `walctl_password_login`, whose members must give it (tools/pg.sh puts a scram-sha-256 line for them first in
/// pg_hba.conf; every other role is trusted). Roles are cluster-wide and the cluster is thrown away after the run,
/// so they are not dropped.
struct TestRole {
    let name: String

    init(password: String? = nil, login: Bool = true) throws {
        guard let server = testServer else { throw PGError(message: "no test server (run tools/test.sh)") }
        name = "walctl_role_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let admin = try PGConnection.connect(server, applicationName: "walctl-tests")
        // Concurrent tests may both create the group: the loser's duplicate_object is harmless.
        try admin.execute(
            """
            DO $$ BEGIN CREATE ROLE walctl_password_login NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$
            """
        )
        if password != nil {
            let rules = try admin.execute(
                """
                SELECT count(*) FROM pg_hba_file_rules
                WHERE '+walctl_password_login' = ANY(user_name) AND auth_method = 'scram-sha-256'
                """
            )
            guard rules.value(0, 0) != "0" else {
                throw PGError(
                    message: "the test server trusts every role: start it from a fresh directory with tools/pg.sh, "
                        + "which requires a password of walctl_password_login's members"
                )
            }
        }
        var create = "CREATE ROLE \(name) \(login ? "LOGIN" : "NOLOGIN")"
        if let password { create += " PASSWORD \(PGConnection.quoteLiteral(password)) IN ROLE walctl_password_login" }
        try admin.execute(create)
    }

    /// `database`'s conninfo as this role, with `extra` appended verbatim.
    func conninfo(_ database: TestDatabase, _ extra: String = "") -> String {
        database.conninfo.replacingOccurrences(of: "user=postgres", with: "user=\(name)") + extra
    }
}

/// The test server's port.
var testServerPort: String {
    (testServer ?? "").split(separator: " ").first { $0.hasPrefix("port=") }.map { String($0.dropFirst(5)) } ?? "5432"
}

/// Runs walctl, giving up after `seconds` (a command that should fail fast must not hang the suite): status nil
/// when it had to be killed.
func walctlBounded(
    _ arguments: [String],
    seconds: Double = 60
) throws -> (status: Int32?, out: String, err: String) {
    let child = try ChildProcess(walctlPath, arguments)
    let finished = waitFor(seconds: seconds) { !child.process.isRunning }
    if !finished { child.kill(SIGKILL) }
    let status = child.wait()
    return (finished ? status : nil, child.remainingOutput(), child.standardError())
}

func walctlLog(_ directory: TemporaryDirectory, count: Int) throws -> String {
    let path = directory.file("log")
    #expect(try walctl(["emit", "--dir", path, "--count", "\(count)"]).status == 0)
    return path
}

extension TestDatabase {
    func count(_ sql: String) throws -> Int { Int(try scalar(sql) ?? "0") ?? 0 }
}

extension PostgresTests {
    // MARK: - Secrets

    /// Issue 13, item 1: libpq echoes connection strings in its errors; none of these secrets may reach the
    /// terminal, from any command, on any attempt.
    @Suite struct Secrets {
        @Test func hostileConnectionStringsNeverReachTheTerminal() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let role = try TestRole(password: "Right Words_Secret")
            let path = try walctlLog(directory, count: 10)
            let cases: [(conninfo: String, secrets: [String])] = [
                ("postgresql://u:Pct%zzSecret@127.0.0.1:\(testServerPort)/db", ["Pct%zzSecret", "zzSecret"]),
                ("postgresql://u:Ipv6Secret@[::1/db", ["Ipv6Secret"]),
                (role.conninfo(database, " password='Two Words_Secret'"), ["Words_Secret"]),
                (role.conninfo(database, " password = 'Spaced_Secret'"), ["Spaced_Secret"]),
                ("host=127.0.0.1 port=\(testServerPort) password=Two Words_Secret", ["Words_Secret"]),
            ]
            for (conninfo, secrets) in cases {
                let commands = [
                    ["pg", "init", "--postgres", conninfo],
                    ["ship", "--dir", path, "--postgres", conninfo, "--drain"],
                    ["inspect", path, "--postgres", conninfo],
                    ["replay", path, "--to", "postgres", "--postgres", conninfo],
                ]
                for command in commands {
                    let result = try walctlBounded(command)
                    #expect(result.status == 1, "\(command[0]) must fail at once: \(result.err)")
                    for secret in secrets {
                        #expect(
                            !result.err.contains(secret) && !result.out.contains(secret),
                            "\(command): \(result.err)"
                        )
                    }
                    #expect(!result.err.isEmpty, "a failure says why")
                }
            }
        }

        @Test func theInfoLineOfEveryConnectionHidesAPasswordWithSpacesAndSpacing() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let role = try TestRole(password: "Right Words_Secret")
            #expect(try walctl(["pg", "init", "--postgres", database.conninfo, "--grant-to", role.name]).status == 0)
            let path = try walctlLog(directory, count: 100)
            let conninfo = role.conninfo(database, " password = 'Right Words_Secret'")
            let ship = try walctlBounded(["ship", "--dir", path, "--postgres", conninfo, "--drain"])
            #expect(ship.status == 0, "\(ship.err)")
            #expect(ship.err.contains("connected to PostgreSQL") && ship.err.contains("password=***"), "\(ship.err)")
            #expect(!ship.err.contains("Words_Secret"), "\(ship.err)")
            let inspect = try walctlBounded(["inspect", path, "--postgres", conninfo])
            #expect(inspect.status == 0 && !inspect.err.contains("Secret") && !inspect.out.contains("Secret"))
        }
    }

    // MARK: - Configuration errors

    /// Issue 13, item 5: what no retry can heal fails the first attempt, with the reason; what can heal is retried.
    @Suite struct ConfigurationErrors {
        @Test func configurationErrorsFailFastWithTheReason() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let withPassword = try TestRole(password: "Right_Secret")
            let noLogin = try TestRole(login: false)
            let path = try walctlLog(directory, count: 10)
            let cases: [(conninfo: String, reason: String)] = [
                (withPassword.conninfo(database, " password=Wrong_Secret"), "28P01"),
                (database.conninfo.replacingOccurrences(of: database.name, with: "walctl_no_such_db"), "3D000"),
                (database.conninfo + " no_such_option=1", "invalid connection option"),
                (noLogin.conninfo(database), "28000"),
                (database.conninfo + " sslmode=sometimes", "invalid sslmode value"),
            ]
            for (conninfo, reason) in cases {
                let ship = try walctlBounded(["ship", "--dir", path, "--postgres", conninfo, "--drain"])
                #expect(ship.status == 1, "\(reason): \(ship.err)")
                #expect(ship.err.contains(reason), "\(ship.err)")
                #expect(!ship.err.contains("retrying"), "\(reason) is not retried: \(ship.err)")
                #expect(!ship.err.contains("Secret"))
                let initialize = try walctlBounded(["pg", "init", "--postgres", conninfo])
                #expect(initialize.status == 1 && initialize.err.contains(reason), "\(initialize.err)")
            }
        }

        @Test func aServerThatIsDownIsRetried() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let path = try walctlLog(directory, count: 10)
            // A port nobody listens on: what a server being restarted looks like.
            let port = try unusedLoopbackPort()
            let ship = try ChildProcess(
                walctlPath,
                ["ship", "--dir", path, "--postgres", "host=127.0.0.1 port=\(port) user=postgres", "--drain"]
            )
            defer { ship.kill(SIGKILL) }
            #expect(
                waitFor(seconds: 30) {
                    ship.partialStandardError().components(separatedBy: "delivery failed; retrying").count > 2
                }
            )
            #expect(ship.process.isRunning, "a refused connection is retried")
        }
    }

    // MARK: - Refusals

    /// Issue 13, item 4: a bad day is not a bad record.
    @Suite struct Refusals {
        @Test(arguments: [
            ("ALTER TABLE agent_routing_metrics DROP COLUMN unit", "agent_routing_metrics.unit is missing"),
            (
                "ALTER TABLE agent_state_metrics ALTER COLUMN value TYPE NUMERIC(10,4)",
                "agent_state_metrics.value is numeric(10,4)"
            ),
            (
                "ALTER TABLE agent_workflow_metrics ALTER COLUMN metric_name TYPE VARCHAR(10)",
                "agent_workflow_metrics.metric_name is character varying(10)"
            ),
        ])
        func aTableAlteredByHandStopsTheShipperWithoutDeadLetters(alter: String, difference: String) throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = try walctlLog(directory, count: 2000)
            #expect(try walctl(["pg", "init", "--postgres", database.conninfo]).status == 0)
            try database.connect().execute(alter)
            let ship = try walctlBounded(["ship", "--dir", path, "--postgres", database.conninfo, "--drain"])
            #expect(ship.status == 1, "\(ship.err)")
            #expect(ship.err.contains(difference), "\(ship.err)")
            #expect(try database.count("SELECT count(*) FROM walctl_dead_letters") == 0)
            #expect(try database.count("SELECT count(*) FROM walctl_cursors") == 0)
        }

        @Test func aTableAlteredWhileShippingStopsAtTheNextBatch() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = try walctlLog(directory, count: 3000)
            let records = try logRecords(path)
            let logID = try LogDirectory(path: path).readMeta().logID
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            #expect(try sink.committedSeq(logID: logID) == 0)
            try sink.deliver(ShipBatch(logID: logID, records: Array(records[..<1000]), throughSeq: 1000, skipped: []))
            // Altered behind the connected shipper's back: the connect-time check has passed already.
            try database.connect().execute("ALTER TABLE agent_state_metrics DROP COLUMN correlation_id")
            let rest = Array(records[1000...])
            #expect(throws: FatalSinkError.self) {
                try sink.deliver(ShipBatch(logID: logID, records: rest, throughSeq: 3000, skipped: []))
            }
            #expect(try database.count("SELECT count(*) FROM walctl_dead_letters") == 0)
            #expect(try database.scalar("SELECT wal_seq FROM walctl_cursors") == "1000")
        }

        /// Found by a hostile tester: with the partitions detached by hand, every row failed with "no partition of
        /// relation" (SQLSTATE 23514) and was dead-lettered as a bad record, the cursor moving past them (exit 0).
        /// It is a schema fault: the shipper stops with nothing dead-lettered and the cursor where it was.
        @Test func aMissingPartitionStopsTheShipperInsteadOfDeadLetteringRecords() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = try walctlLog(directory, count: 3000)
            let records = try logRecords(path)
            let logID = try LogDirectory(path: path).readMeta().logID
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            try sink.deliver(ShipBatch(logID: logID, records: Array(records[..<1000]), throughSeq: 1000, skipped: []))
            let admin = try database.connect()
            let partitions = """
                SELECT i.inhparent::regclass::text, i.inhrelid::regclass::text FROM pg_inherits AS i
                JOIN pg_class AS c ON c.oid = i.inhparent WHERE c.relkind = 'p'
                """
            for row in try database.query(partitions) {
                try admin.execute("ALTER TABLE \(row[0] ?? "") DETACH PARTITION \(row[1] ?? "")")
            }
            #expect(throws: FatalSinkError.self) {
                let rest = Array(records[1000...])
                try sink.deliver(ShipBatch(logID: logID, records: rest, throughSeq: 3000, skipped: []))
            }
            #expect(try database.count("SELECT count(*) FROM walctl_dead_letters") == 0)
            #expect(try database.scalar("SELECT wal_seq FROM walctl_cursors") == "1000")
        }

        /// Found by a hostile tester: a migration that cannot succeed (a table of walctl's name but another shape,
        /// SQLSTATE 42P17) was retried forever by `ship`, while `pg init` said why and exited 1. It now stops the
        /// shipper with the reason.
        @Test func aMigrationThatCannotSucceedStopsTheShipper() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = try walctlLog(directory, count: 100)
            try database.connect().execute("CREATE TABLE agent_routing_metrics (id int, foo text)")
            let ship = try walctlBounded(
                ["ship", "--dir", path, "--postgres", database.conninfo, "--drain", "--timeout", "30s"]
            )
            #expect(ship.status == 1, "\(ship.err)")
            #expect(ship.err.contains("cannot be brought to"), "\(ship.err)")
        }

        @Test func replayBeforeTheShipperCaughtUpAddsNoDeadLetters() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = try walctlLog(directory, count: 15000)
            #expect(try walctl(["pg", "init", "--postgres", database.conninfo]).status == 0)
            let replay = try walctl([
                "replay", path, "--to", "postgres", "--postgres", database.conninfo, "--to-seq", "12000",
            ])
            #expect(replay.status == 0, "\(replay.err)")
            let ship = try walctlBounded(["ship", "--dir", path, "--postgres", database.conninfo, "--drain"])
            #expect(ship.status == 0, "\(ship.err)")
            #expect(ship.err.contains("12000 already present, 0 dead-lettered"), "\(ship.err)")
            #expect(try database.count("SELECT count(*) FROM walctl_dead_letters") == 0)
            try expectExactlyOnce(path, database)
            let inspect = try walctl(["inspect", path, "--postgres", database.conninfo, "--json"])
            let summary = try #require(
                try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any]
            )
            let letters = try #require(summary["postgres_dead_letters"] as? [String: Any])
            #expect(letters["records"] as? Int == 0 && letters["ranges"] as? Int == 0)
        }

        /// Bisection finds the refused records among duplicates: only they are dead-lettered.
        @Test func onlyTheRefusedRecordsAreDeadLetteredAmongRowsAlreadyThere() throws {
            let database = try TestDatabase()
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let logID = LogID.random()
            let now = Int64(Date().timeIntervalSince1970 * 1e9)
            let refused: Set<UInt64> = [400, 650, 999]
            let records = (1...1000).map { seq in
                MetricRecord(
                    seq: UInt64(seq),
                    // Over the column's 100 characters: no table of this schema can take it.
                    name: refused.contains(UInt64(seq))
                        ? "state_" + String(repeating: "x", count: 120) : "state_a_count",
                    type: .counter,
                    value: Double(seq),
                    unit: "count",
                    tags: [:],
                    timestampNanos: now + Int64(seq),
                    correlationID: nil,
                    agentID: nil
                )
            }
            #expect(try sink.committedSeq(logID: logID) == 0)
            try sink.deliver(ShipBatch(logID: logID, records: Array(records[..<300]), throughSeq: 300, skipped: []))
            try sink.deliver(ShipBatch(logID: logID, records: records, throughSeq: 1000, skipped: []))
            #expect(try database.count("SELECT count(*) FROM agent_state_metrics") == 997)
            #expect(try database.count("SELECT count(DISTINCT wal_seq) FROM agent_state_metrics") == 997)
            let letters = try database.query("SELECT wal_seq_from FROM walctl_dead_letters ORDER BY 1").map { $0[0] }
            #expect(letters == ["400", "650", "999"])
            #expect(sink.deadLetterCount == 3 && sink.alreadyPresentCount == 300)
            #expect(try sink.committedSeq(logID: logID) == 1000)
        }

        @Test func twoShippersOnOneLogOneShipsAndTheCursorNeverGoesBack() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = try walctlLog(directory, count: 20000)
            var seen: [UInt64] = []
            func cursor() -> UInt64 {
                let value =
                    UInt64(
                        ((try? database.scalar("SELECT coalesce(max(wal_seq), 0) FROM walctl_cursors")) ?? nil) ?? "0"
                    ) ?? 0
                seen.append(value)
                return value
            }
            let first = try ChildProcess(
                walctlPath,
                [
                    "ship", "--dir", path, "--postgres", database.conninfo, "--batch-size", "100", "--max-batch-size",
                    "100",
                ]
            )
            defer { first.kill(SIGKILL) }
            #expect(waitFor(seconds: 30) { cursor() > 0 })
            let second = try ChildProcess(
                walctlPath,
                ["ship", "--dir", path, "--postgres", database.conninfo, "--drain"]
            )
            defer { second.kill(SIGKILL) }
            #expect(
                waitFor(seconds: 30) {
                    _ = cursor(); return second.partialStandardError().contains("another shipper")
                }
            )
            #expect(second.process.isRunning, "the second shipper waits")
            // The first keeps shipping; then it stops and the second takes over and drains.
            #expect(waitFor(seconds: 30) { cursor() > 2000 })
            first.kill(SIGTERM)
            #expect(
                waitFor(seconds: 60) {
                    _ = cursor(); return !second.process.isRunning
                }
            )
            #expect(second.wait() == 0, "\(second.standardError())")
            _ = cursor()
            #expect(seen == seen.sorted(), "the cursor never goes back")
            #expect(seen.last == 20000)
            #expect(try database.count("SELECT count(*) FROM walctl_dead_letters") == 0)
            try expectExactlyOnce(path, database)
        }
    }

    // MARK: - Least privilege

    /// Issue 13, item 6: an administrator runs `pg init` once; a role with SELECT/INSERT (and UPDATE on its cursor
    /// table) ships.
    @Suite struct LeastPrivilege {
        @Test func aRoleGrantedByPgInitShipsWithoutDDL() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let role = try TestRole()
            let path = try walctlLog(directory, count: 5000)
            // Before init, the role can do nothing, and says what to do.
            let early = try walctlBounded(["ship", "--dir", path, "--postgres", role.conninfo(database), "--drain"])
            #expect(early.status == 1 && early.err.contains("walctl pg init"), "\(early.err)")
            let initialize = try walctl(["pg", "init", "--postgres", database.conninfo, "--grant-to", role.name])
            #expect(initialize.status == 0, "\(initialize.err)")
            #expect(initialize.out.contains("GRANT SELECT, INSERT, UPDATE ON walctl_cursors TO \"\(role.name)\""))
            #expect(
                try database.scalar("SELECT has_schema_privilege('\(role.name)', 'public', 'CREATE')") == "f",
                "the role may not create tables"
            )
            #expect(
                try database.scalar("SELECT has_table_privilege('\(role.name)', 'agent_state_metrics', 'DELETE')")
                    == "f"
            )
            let ship = try walctlBounded(["ship", "--dir", path, "--postgres", role.conninfo(database), "--drain"])
            #expect(ship.status == 0, "\(ship.err)")
            try expectExactlyOnce(path, database)
            // A replay by the same role skips what is there.
            let replay = try walctl(["replay", path, "--to", "postgres", "--postgres", role.conninfo(database)])
            #expect(replay.status == 0, "\(replay.err)")
            try expectExactlyOnce(path, database)
        }
    }
}
