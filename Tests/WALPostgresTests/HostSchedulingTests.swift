import Foundation
import Testing
import WALCore
import WALShipping
import WALTestKit

/// The pure parts of host shipping: how a batch is shared among logs, and which directories are logs.
@Suite struct BatchPlannerTests {
    @Test func aFreshLogGetsAllItsRecordsBesideABacklogOfMillions() {
        let takes = BatchPlanner.plan(ready: [3_000_000, 10], capacity: 10_000)
        #expect(takes == [9_990, 10])
    }

    @Test func equalBacklogsShareEqually() {
        let takes = BatchPlanner.plan(ready: [50_000, 50_000, 50_000, 50_000], capacity: 10_000)
        #expect(takes == [2_500, 2_500, 2_500, 2_500])
    }

    @Test func whatALogDoesNotNeedGoesToTheOthers() {
        let takes = BatchPlanner.plan(ready: [5, 100_000, 0, 20_000], capacity: 10_000)
        #expect(takes[0] == 5 && takes[2] == 0)
        #expect(takes[1] == 4_998 && takes[3] == 4_997 || takes[1] == 4_997 && takes[3] == 4_998)
        #expect(takes.reduce(0, +) == 10_000)
    }

    @Test func neverMoreThanCapacityOrThanWaitsAndEveryoneServedInTurn() {
        var generator = SeededGenerator(seed: 16)
        for round in 0..<500 {
            let count = Int.random(in: 1...40, using: &generator)
            let ready = (0..<count).map { _ in Int.random(in: 0...2_000, using: &generator) }
            let capacity = Int.random(in: 1...5_000, using: &generator)
            let takes = BatchPlanner.plan(ready: ready, capacity: capacity, rotation: round)
            #expect(takes.reduce(0, +) == min(capacity, ready.reduce(0, +)))
            #expect(zip(takes, ready).allSatisfy { $0 >= 0 && $0 <= $1 })
            // Max-min fair: a log that got less than it wanted got at least as much as anyone, less one record.
            let most = takes.max() ?? 0
            for (take, want) in zip(takes, ready) where take < want { #expect(take >= most - 1) }
        }
    }

    @Test func indivisibleSharesRotate() {
        // One record for three logs: over three rounds each log is first once.
        let winners = (0..<3).map { round in
            BatchPlanner.plan(ready: [5, 5, 5], capacity: 1, rotation: round).firstIndex(of: 1) ?? -1
        }
        #expect(Set(winners) == [0, 1, 2])
    }
}

@Suite struct LogSelectionTests {
    @Test func rootsFindLogsAtAnyDepthButNotThroughLinksHiddenFoldersOrInsideALog() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = directory.file("agents")
        for path in ["a/metrics", "b/c/metrics", "d", ".retired-x", "a/metrics/nested"] {
            try FileManager.default.createDirectory(atPath: root + "/" + path, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: root + "/" + path + "/wal.meta", contents: Data([0]))
        }
        // A link to a log elsewhere, planted under the root, is not followed.
        let outside = directory.file("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: outside + "/wal.meta", contents: Data([0]))
        try FileManager.default.createSymbolicLink(atPath: root + "/planted", withDestinationPath: outside)
        // A wal.meta that is a link does not make a log either.
        try FileManager.default.createDirectory(atPath: root + "/e", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: root + "/e/wal.meta",
            withDestinationPath: outside + "/wal.meta"
        )

        let found = LogSelection(roots: [root + "/"]).discover()
        #expect(found == [root + "/a/metrics", root + "/b/c/metrics", root + "/d"])

        var shallow = LogSelection(roots: [root])
        shallow.maxDepth = 1
        #expect(shallow.discover() == [root + "/d"])

        #expect(LogSelection(patterns: [root + "/*/metrics"]).discover() == [root + "/a/metrics"])
        #expect(LogSelection(patterns: [root + "/nothing-*"]).discover().isEmpty)
        #expect(LogSelection.single(root + "/x/").discover() == [root + "/x"])
    }
}
