import Foundation
import Testing
import WALCore
import WALTestKit
import WALTraffic

/// Real processes killed with SIGKILL at random moments: every acknowledged record must survive.
@Suite(.serialized) struct CrashTests {
    @Test(arguments: [1, 2])
    func everyAcknowledgedRecordSurvivesSIGKILL(threads: Int) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            var generator = SeededGenerator()
            var recoveredEnd: UInt64 = 0
            let trials = 12
            for trial in 0..<trials {
                let child = try ChildProcess(
                    walctlPath,
                    [
                        "emit", "--dir", path, "--count", "100000000", "--threads", "\(threads)", "--raw", "--size",
                        "100",
                        "--segment-size", "4194304",
                    ]
                )
                // Kill at a random moment: after a random number of acknowledgements, then a random extra delay.
                let acked = child.killAfterAcks(
                    lines: Int.random(in: 1...8, using: &generator),
                    extraMicroseconds: UInt32.random(in: 0...20_000, using: &generator)
                )
                try #require(acked > recoveredEnd, "trial \(trial): the child acknowledged nothing")

                let wal = try WAL.open(path: path, configuration: WALConfiguration())
                let next = wal.statistics.nextSeq
                try wal.close()
                let contents = try LogContents.read(path)
                #expect(contents.damage.isEmpty, "trial \(trial): \(contents.damage)")
                #expect(contents.gaps.isEmpty)
                let seqs = contents.seqs
                #expect(seqs.first == 1)
                #expect(seqs == Array(1..<next), "trial \(trial): sequence numbers contiguous, in order, no duplicates")
                #expect(next - 1 >= acked, "trial \(trial): acked \(acked) but recovered only up to \(next - 1)")
                // Records written by this trial's child: each thread's counters run 0, 1, 2... with every byte intact.
                var counters = [UInt32: UInt64]()
                for record in contents.records where record.seq > recoveredEnd {
                    guard let decoded = record.bytes.withUnsafeBytes({ SyntheticRecord.check($0) }) else {
                        Issue.record("trial \(trial): record \(record.seq) is not intact")
                        continue
                    }
                    #expect(decoded.counter == counters[decoded.thread, default: 0])
                    counters[decoded.thread] = decoded.counter + 1
                }
                recoveredEnd = next - 1
            }
            let verify = try walctl(["verify", path])
            #expect(verify.status == 0, "\(verify.out)")
        }
    }

    @Test func stagedRecordsOfAKilledWriterAreVisibleToInspectAndResealedOnOpen() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            // A long seal delay keeps the last records in staging when the child is killed.
            let child = try ChildProcess.endlessWriter(path, rate: 20000)
            var acked: UInt64 = 0
            while acked < 20_000, let line = child.readLine() {
                if line.hasPrefix("acked ") { acked = UInt64(line.dropFirst(6)) ?? 0 }
            }
            child.kill(SIGKILL)
            let summary = try LogInspector.examine(path: path)
            let visible = (summary.lastSeq ?? 0) + UInt64(summary.staged.records)
            #expect(visible >= acked)
            #expect(summary.writerPID == nil)
            let wal = try WAL.open(path: path, configuration: WALConfiguration())
            #expect(UInt64(wal.recovery.resealedRecords) == UInt64(summary.staged.records))
            try wal.close()
            let after = try LogInspector.examine(path: path)
            #expect(after.lastSeq == summary.staged.lastSeq ?? summary.lastSeq)
            #expect(after.staged.records == 0)
        }
    }
}

@Suite struct SummaryJSONTests {
    /// Issue 13, item 9: `inspect --json` keys are snake_case, `staged` included.
    @Test func stagedKeysAreSnakeCase() throws {
        let text = #"{"records":2,"first_seq":5,"last_seq":6}"#
        let staged = try JSONDecoder().decode(LogSummary.Staged.self, from: Data(text.utf8))
        #expect(staged.records == 2 && staged.firstSeq == 5 && staged.lastSeq == 6)
        let object = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(staged)) as? [String: Any]
        #expect(Set(object?.keys.map { $0 } ?? []) == ["records", "first_seq", "last_seq"])
    }
}
