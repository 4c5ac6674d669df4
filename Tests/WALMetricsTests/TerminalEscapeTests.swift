import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

/// Issue 13, item 3: control characters in agent ids, tag values and metric units reach no terminal raw, and no
/// newline forges a line, in any human-readable output; JSON keeps the exact bytes.
@Suite struct TerminalEscapeTests {
    static let agent = "evil\u{1B}[2J\u{1B}]0;owned\u{07}\nFAKE ROW\r"
    static let tag = "v\u{1B}[31mred\n\u{9B}31m\u{7F}\u{202E}"

    func hostileLog(_ directory: TemporaryDirectory) throws -> String {
        let path = directory.file("log")
        let emit = try walctl([
            "emit", "--dir", path, "--metric", "state_operation_count", "--value", "1",
            "--agent", Self.agent, "--tag", "operation_type=\(Self.tag)",
        ])
        try #require(emit.status == 0, "\(emit.err)")
        return path
    }

    /// What a terminal would act on: ESC, BEL, CR, a newline inside a row, DEL, C1 CSI, a bidi override.
    func expectSafe(_ text: String, lines: Int, _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) {
        for forbidden: Unicode.Scalar in ["\u{1B}", "\u{07}", "\r", "\u{7F}", "\u{9B}", "\u{202E}"] {
            #expect(
                !text.unicodeScalars.contains(forbidden),
                "\(comment): U+\(String(forbidden.value, radix: 16))",
                sourceLocation: sourceLocation
            )
        }
        #expect(!text.contains("\nFAKE ROW"), comment, sourceLocation: sourceLocation)
        #expect(text.split(separator: "\n").count == lines, "\(comment): \(text)", sourceLocation: sourceLocation)
        #expect(
            text.contains(#"evil\e[2J\e]0;owned\x07\nFAKE ROW\r"#),
            "\(comment): \(text)",
            sourceLocation: sourceLocation
        )
    }

    @Test func inspectRecordsAndTailEscapeControlCharacters() throws {
        try withTemporaryDirectory { directory in
            let path = try hostileLog(directory)
            let inspect = try walctl(["inspect", path, "--records"])
            #expect(inspect.status == 0)
            expectSafe(inspect.out, lines: 2, "inspect --records")
            #expect(inspect.out.contains(#"operation_type=v\e[31mred\n\u{9B}31m\x7f\u{202E}"#), "\(inspect.out)")
            let tail = try walctl(["tail", path, "-n", "5"])
            #expect(tail.status == 0)
            expectSafe(tail.out, lines: 2, "tail")
        }
    }

    @Test func statsByTableEscapesControlCharacters() throws {
        try withTemporaryDirectory { directory in
            let path = try hostileLog(directory)
            let byTag = try walctl(["stats", path, "--by", "metric,operation_type"])
            #expect(byTag.status == 0, "\(byTag.err)")
            #expect(!byTag.out.unicodeScalars.contains("\u{1B}") && !byTag.out.contains("\n31m"), "\(byTag.out)")
            #expect(byTag.out.contains(#"v\e[31mred\n\u{9B}31m\x7f\u{202E}"#), "\(byTag.out)")
            let byAgent = try walctl(["stats", path, "--by", "metric,agent"])
            #expect(byAgent.status == 0, "\(byAgent.err)")
            #expect(!byAgent.out.unicodeScalars.contains("\u{1B}") && !byAgent.out.contains("\nFAKE ROW"))
        }
    }

    @Test func jsonOutputKeepsTheExactText() throws {
        try withTemporaryDirectory { directory in
            let path = try hostileLog(directory)
            let inspect = try walctl(["inspect", path, "--records", "--json"])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any])
            let payload = try #require(object["payload"] as? [String: Any])
            #expect(payload["agent_id"] as? String == Self.agent)
            #expect((payload["tags"] as? [String: String])?["operation_type"] == Self.tag)
            #expect(!inspect.out.unicodeScalars.contains("\u{1B}"))
        }
    }
}
