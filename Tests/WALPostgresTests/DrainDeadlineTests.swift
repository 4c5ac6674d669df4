import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALPostgres

#if canImport(Glibc)
import Glibc
#endif

/// `walctl ship --drain` is a command someone waits for: against a sink that never answers it gives up after
/// `--timeout`, exits 3 and says per sink what is left (issue 14 item 6). No server needed: the sinks point at a
/// port nothing listens on.
@Suite struct DrainDeadlineTests {
    func logOf(_ count: Int, in directory: TemporaryDirectory) throws -> String {
        let path = directory.file("log")
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for index in 0..<count { collector.recordGauge("custom_depth", value: Double(index), unit: "x") }
        try collector.close()
        return path
    }

    @Test(arguments: ["kafka", "postgres"])
    func aDrainAgainstASinkThatNeverAnswersGivesUpAtItsTimeout(sink: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try logOf(50, in: directory)
        let port = Int(try unusedLoopbackPort())
        let target =
            sink == "kafka"
            ? ["--kafka", "127.0.0.1:\(port)"]
            : ["--postgres", "host=127.0.0.1 port=\(port) dbname=metrics user=metrics connect_timeout=1"]
        let started = Date()
        let result = try walctl(["ship", "--dir", path] + target + ["--drain", "--timeout", "2s"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(result.status == 3, "\(result.err)")
        #expect(result.err.contains("--drain gave up after 2s"), "\(result.err)")
        #expect(result.err.contains("\(sink): committed through 0, 50 left"), "\(result.err)")
        #expect(elapsed < 2 + 15 + 5, "the deadline and at most the grace period (\(elapsed) s)")
    }

    @Test func aDrainWithinItsTimeoutExitsZero() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try logOf(50, in: directory)
        let thresholds = directory.file("t.yaml")
        try "version: 1\nmetrics:\n  custom_depth:\n    warning: 40\n".write(
            toFile: thresholds,
            atomically: true,
            encoding: .utf8
        )
        let result = try walctl(["ship", "--dir", path, "--alerts", thresholds, "--drain", "--timeout", "1m"])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.err.contains("evaluated through 50"), "\(result.err)")
    }

    @Test func theTimeoutBelongsToADrain() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try logOf(1, in: directory)
        #expect(try walctl(["ship", "--dir", path, "--kafka", "127.0.0.1:1", "--timeout", "2s"]).status == 2)
        #expect(
            try walctl(["ship", "--dir", path, "--kafka", "127.0.0.1:1", "--drain", "--timeout", "soon"]).status == 2
        )
        let help = try walctl(["ship", "--help"]).out
        #expect(help.contains("--timeout") && help.contains("exits 3"))
    }
}

extension PostgresTests {
    /// Defect (found by a hostile tester): `ship --drain` took its target from the last segment's frame headers up to
    /// the first damaged one, so with a damaged frame header in the active segment it committed through the seq
    /// before it, printed that, and exited 0 with every record after it unshipped (61,060 of 200,000 there). The
    /// target now reaches past the damage (the highest seq sealed), as readers do.
    @Suite struct DrainPastDamage {
        @Test func aDrainShipsEveryRecordPastADamagedFrameHeaderInTheLastSegment() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "20000"]).status == 0)
            let segment = try #require(try LogDirectory(path: path).segments().last).path
            let frames = SegmentScan.scan(try SegmentFileReader(path: segment)).frames
            try #require(frames.count > 3)
            try Corruptor.flipBit(segment, at: frames[1].offset + 9)  // the second frame's first seq
            let end = try #require(try LogInspector.sealedEnd(path: path))
            #expect(end == frames.last!.header.lastSeq)
            #expect(try LogInspector.lastSealedSeqCheap(path: path) < end, "the hop over headers stops at the damage")

            let ship = try walctl(["ship", "--dir", path, "--postgres", database.conninfo, "--drain"])
            #expect(ship.status == 0, "\(ship.err)")
            #expect((ship.out + ship.err).contains("committed through \(end),"), "\(ship.out)\(ship.err)")
            let cursor = try database.connect().execute("SELECT max(wal_seq) FROM walctl_cursors").value(0, 0)
            #expect(cursor == String(end))
        }
    }
}
