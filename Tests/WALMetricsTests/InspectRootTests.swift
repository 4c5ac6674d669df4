import Foundation
import Testing
import WALCore
import WALTestKit

/// `walctl inspect --root` / `--logs` through the built executable: one line per log, totals, JSON.
@Suite struct InspectRootTests {
    @Test func inspectRootSummarisesEveryLogWithItsCursorsLag() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let counts = ["a": 3000, "b": 500, "c": 1200]
        for (name, count) in counts {
            try FileManager.default.createDirectory(atPath: directory.file(name), withIntermediateDirectories: true)
            let result = try walctl(["emit", "--dir", directory.file("\(name)/metrics"), "--count", "\(count)"])
            #expect(result.status == 0, "\(result.err)")
        }
        try CursorStore(path: directory.file("a/metrics")).store("postgres", seq: 2000)

        let text = try walctl(["inspect", "--root", directory.path])
        #expect(text.status == 0, "\(text.err)")
        let lines = text.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 6, "header, three logs, total, disk use: \(text.out)")
        #expect(lines[1].contains("a/metrics") && lines[1].contains("3000") && lines[1].contains("postgres@local 1000"))
        #expect(lines[2].contains("b/metrics") && lines[2].contains("no cursor"))
        #expect(lines[4].hasPrefix("total (3 logs)") && lines[4].contains("4700"))
        #expect(lines[5].hasPrefix("disk use: "))

        let json = try walctl(["inspect", "--logs", directory.path + "/*/metrics", "--json"])
        #expect(json.status == 0, "\(json.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
        let logs = try #require(object["logs"] as? [[String: Any]])
        #expect(logs.count == 3)
        let overviews = logs.compactMap { $0["overview"] as? [String: Any] }
        #expect(overviews.compactMap { $0["records"] as? Int }.sorted() == [500, 1200, 3000])
        let lags = try #require(logs.first?["cursor_lags"] as? [[String: Any]])
        #expect(lags.first?["lag_records"] as? Int == 1000)
        let total = try #require(object["total"] as? [String: Any])
        #expect(total["records"] as? Int == 4700 && total["logs"] as? Int == 3)
        #expect((total["bytes_allocated"] as? Int ?? 0) >= (total["bytes_on_disk"] as? Int ?? 1))

        #expect(try walctl(["inspect", directory.file("a/metrics"), "--root", directory.path]).status == 2)
        #expect(try walctl(["inspect", "--root", directory.path, "--segments"]).status == 2)
    }
}
