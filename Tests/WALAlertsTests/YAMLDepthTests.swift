import Foundation
import Testing
import WALTestKit

@testable import WALAlerts

/// Issue 13, item 7: a thresholds file nested thousands of levels deep is refused with file:line:column, by
/// `walctl alerts check` and `walctl ship --alerts`, instead of killing the process.
@Suite struct YAMLDepthTests {
    /// 5,000 levels in about 10 KB, in each way YAML nests.
    static let hostile: [(name: String, text: String, line: Int)] = [
        ("flow sequences", String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000), 1),
        ("flow mappings", String(repeating: "{a: ", count: 5000) + String(repeating: "}", count: 5000), 1),
        ("compact block sequences", String(repeating: "- ", count: 5000) + "x\n", 1),
        ("metrics then flow", "version: 1\nmetrics:\n  x: " + String(repeating: "[", count: 5000), 3),
        (
            "block mappings",
            (0..<200).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n") + " 1\n", 65
        ),
    ]

    @Test(arguments: hostile.indices)
    func deepNestingIsAnErrorWithItsPlace(index: Int) throws {
        let (name, text, line) = Self.hostile[index]
        let error = try #require(throws: ThresholdError.self) { try ThresholdFile.parse(yaml: text, path: "t.yaml") }
        #expect(error.line == line, "\(name): \(error)")
        #expect(error.reason.contains("nested deeper than 64 levels"), "\(name): \(error)")
    }

    @Test func realFilesAreNotAffected() throws {
        #expect(YAMLDepth.firstExcess(in: DefaultThresholds.yaml) == nil)
        // Brackets and hashes in quoted scalars and comments do not count.
        let quoted =
            "a: '" + String(repeating: "[", count: 100) + "'  # " + String(repeating: "{", count: 100)
            + "\nb: \"" + String(repeating: "[", count: 100) + "\\\"\"\n"
        #expect(YAMLDepth.firstExcess(in: quoted) == nil)
        #expect(YAMLDepth.firstExcess(in: String(repeating: "[", count: 63)) == nil, "the line itself counts one level")
        #expect(YAMLDepth.firstExcess(in: String(repeating: "[", count: 64))! == (1, 64))
    }

    @Test func theCLIRefusesInsteadOfCrashing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = directory.file("deep.yaml")
        try (String(repeating: "- ", count: 5000) + "x\n").write(toFile: file, atomically: true, encoding: .utf8)
        let check = try walctl(["alerts", "check", file])
        #expect(check.status == 1, "\(check.err)")
        #expect(check.err.contains("\(file):1:"), "\(check.err)")
        #expect(check.err.contains("nested deeper than 64 levels"))
        let log = directory.file("log")
        #expect(try walctl(["emit", "--dir", log, "--count", "10"]).status == 0)
        let ship = try walctl(["ship", "--dir", log, "--alerts", file, "--drain"])
        #expect(ship.status == 1 && ship.err.contains("nested deeper than 64 levels"), "\(ship.err)")
    }
}
