import ArgumentParser
import Foundation
import WALCore

/// `walctl inspect`: a read-only summary of a live or crashed log.
struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a log (live or crashed) without modifying it.",
        discussion: """
            Reads every segment header and frame (checksums included), the staging file and the cursors. Takes no
            lock: safe while a writer runs, on a crashed log, and on a read-only copy.

            Examples:
              walctl inspect /var/lib/agent/metrics
              walctl inspect ./log --json | jq .last_seq
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        let summary: LogSummary
        do {
            summary = try LogInspector.examine(path: dir)
        } catch {
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        if json {
            Output.line(Output.json(summary))
            return
        }
        Output.line(Report.summary(summary, directory: dir))
    }
}

/// Human-readable renderings shared by subcommands.
enum Report {
    static func summary(_ s: LogSummary, directory: String) -> String {
        var lines: [String] = []
        func row(_ key: String, _ value: String) {
            lines.append(key.padding(toLength: 18, withPad: " ", startingAt: 0) + value)
        }
        row("log", "\(directory)  (id \(s.logID))")
        row("writer", s.writerPID.map { "running, pid \($0)" } ?? "none")
        row("segments", "\(s.segments)")
        row("frames", "\(s.frames)")
        row("records", "\(s.records)")
        row("sequence", s.firstSeq.map { "\($0) ... \(s.lastSeq ?? $0)" } ?? "empty")
        let ratio = s.bytesOnDisk > 0 ? String(format: "%.2fx", Double(s.bytesRaw) / Double(s.bytesOnDisk)) : "-"
        row("bytes", "\(s.bytesOnDisk) on disk, \(s.bytesAllocated) allocated, \(s.bytesRaw) raw (\(ratio))")
        if s.staged.records > 0 || s.staged.lastSeq != nil {
            row(
                "staged",
                "\(s.staged.records) records not yet sealed (\(s.staged.firstSeq ?? 0) ... \(s.staged.lastSeq ?? 0))"
            )
        }
        row("torn tail", "\(s.tornTailBytes) bytes" + (s.tornTailBytes > 0 ? " (cut by the next writer open)" : ""))
        row("damaged", "\(s.corruptFrames)")
        for problem in s.damage {
            lines.append("  \(problem.file) at byte \(problem.offset): \(problem.reason) (\(problem.length) bytes)")
        }
        row("gaps", "\(s.gaps.count)")
        for gap in s.gaps {
            lines.append("  \(gap.fromSeq) ... \(gap.toSeq): \(gap.reason)")
        }
        row("cursors", s.cursors.isEmpty ? "none" : "")
        for (name, seq) in s.cursors.sorted(by: { $0.key < $1.key }) {
            let lag = (s.lastSeq ?? 0) > seq ? (s.lastSeq ?? 0) - seq : 0
            lines.append(
                "  \(name.padding(toLength: 24, withPad: " ", startingAt: 0)) at \(seq), \(lag) records behind"
            )
        }
        return lines.joined(separator: "\n")
    }
}
