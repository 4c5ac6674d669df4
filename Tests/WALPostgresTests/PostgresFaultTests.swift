import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

extension PostgresTests {
    /// Crashes and outages: after each, every record is in PostgreSQL exactly once.
    @Suite struct Faults {
        @Test func sigkillOfTheShipperAtRandomMomentsLosesAndDuplicatesNothing() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "60000", "--threads", "2"]).status == 0)
            // A writer keeps emitting while the shipper is killed again and again (it never ends by itself: a
            // writer of fixed length ended after the first trials on a slow machine).
            let writer = try ChildProcess.endlessWriter(path, rate: 10_000)
            var generator = SeededGenerator()
            var committedSeen: [UInt64] = []
            func committed() -> UInt64 {
                UInt64(((try? database.scalar("SELECT coalesce(max(wal_seq), 0) FROM walctl_cursors")) ?? nil) ?? "0")
                    ?? 0
            }
            for trial in 0..<10 {
                let before = committed()
                let shipper = try ChildProcess(
                    walctlPath,
                    ["ship", "--dir", path, "--postgres", database.conninfo, "--batch-size", "500"]
                )
                // Odd trials kill mid-stream for sure: after the shipper committed something new. Even trials kill
                // at any moment, startup included.
                let remaining = (try LogInspector.lastSealedSeqCheap(path: path)) > before
                if trial % 2 == 1 && remaining { #expect(waitFor(seconds: 60) { committed() > before }) }
                usleep(UInt32.random(in: 20_000...500_000, using: &generator))
                shipper.kill(SIGKILL)
                committedSeen.append(committed())  // 0 until the shipper created its tables
            }
            #expect(writer.process.isRunning, "the writer wrote through every kill")
            writer.kill(SIGKILL)
            try WAL.open(path: path).close()  // Seals what the killed writer staged.
            #expect(committedSeen.last ?? 0 > 0, "the shipper made progress between kills")
            #expect(committedSeen == committedSeen.sorted(), "the committed position never goes back")
            try drain(path, into: database, batchSize: 1000)
            try expectExactlyOnce(path, database)
            #expect(try logRecords(path).count > 60_000)
        }

        @Test func postgresStoppedAndRestartedMidStream() throws {
            let serverDirectory = try #require(testServerDirectory)
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "20000"]).status == 0)
            let shipper = try ChildProcess(
                walctlPath,
                ["ship", "--dir", path, "--postgres", database.conninfo, "--batch-size", "200"]
            )
            defer { shipper.kill(SIGTERM) }
            // Wait for progress, then take the server down while the shipper works and the log grows.
            #expect(waitFor { (try? database.scalar("SELECT count(*) FROM walctl_cursors")) == "1" })
            #expect(Shell.run("/bin/bash", ["\(repositoryRoot)/tools/pg.sh", "stop", serverDirectory]) == 0)
            #expect(try walctl(["emit", "--dir", path, "--count", "20000"]).status == 0)
            #expect(Shell.run("/bin/bash", ["\(repositoryRoot)/tools/pg.sh", "start", serverDirectory]) == 0)
            // The shipper reconnects and catches up on its own.
            let total = try LogInspector.lastSealedSeqCheap(path: path)
            #expect(
                waitFor(seconds: 60) {
                    (try? database.scalar("SELECT wal_seq FROM walctl_cursors")).flatMap { $0.flatMap { UInt64($0) } }
                        == total
                }
            )
            shipper.kill(SIGTERM)
            try expectExactlyOnce(path, database)
        }

        @Test func connectionsDroppedMidCopyLoseAndDuplicateNothing() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "150000", "--threads", "2"]).status == 0)
            let shipper = try drainingShipper(
                path,
                into: database,
                batchSize: 10_000,
                retry: RetryPolicy(initialMilliseconds: 10, maximumMilliseconds: 100)
            )
            let done = DispatchSemaphore(value: 0)
            Thread {
                try? shipper.runBlocking()
                done.signal()
            }.start()
            // Terminate the shipper's backend at random moments while it copies (a bounded number of times, so
            // that it can also finish).
            let admin = try database.connect()
            var generator = SeededGenerator()
            var terminated = 0
            var attempts = 0
            while attempts < 40 && terminated < 6
                && done.wait(timeout: .now() + .milliseconds(Int.random(in: 20...150, using: &generator))) == .timedOut
            {
                attempts += 1
                let result = try admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'walctl-postgres'"
                )
                terminated += Int(result.value(0, 0) ?? "0") ?? 0
            }
            #expect(done.wait(timeout: .now() + 120) == .success, "the shipper finished after the drops")
            #expect(terminated > 0)
            #expect(shipper.statistics.retries > 0, "the connection really dropped")
            try expectExactlyOnce(path, database)
        }
    }
}
