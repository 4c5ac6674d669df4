import ArgumentParser
import WALCore

/// `walctl verify`: checks every checksum and record layout.
struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every frame of a log; exit 0 when sound, 1 when damage is found, 2 on usage errors.",
        discussion: """
            Checks segment headers, frame header and payload checksums (CRC32C), LZ4 decompression and the record
            layout of every frame. A torn tail at the end of the active segment (what a crash leaves) is reported
            but is not damage: the next writer open cuts it. Each damaged region is listed with its file and byte
            offset. Read-only; safe while a writer runs.

            Examples:
              walctl verify /var/lib/agent/metrics
              walctl verify ./log --json
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() async throws {
        let summary: LogSummary
        do {
            summary = try LogInspector.examine(path: dir, decodeRecords: true)
        } catch {
            Output.error("walctl verify: \(error)")
            throw ExitCode(1)
        }
        let sound = summary.damage.isEmpty
        if json {
            struct Result: Encodable {
                var sound: Bool
                var frames: Int
                var records: UInt64
                var torn_tail_bytes: Int64
                var damage: [LogSummary.Problem]
            }
            Output.line(
                Output.json(
                    Result(
                        sound: sound,
                        frames: summary.frames,
                        records: summary.records,
                        torn_tail_bytes: summary.tornTailBytes,
                        damage: summary.damage
                    )
                )
            )
        } else {
            Output.line("checked \(summary.segments) segments, \(summary.frames) frames, \(summary.records) records")
            if summary.tornTailBytes > 0 {
                Output.line(
                    "torn tail: \(summary.tornTailBytes) bytes at the end of the active segment (a crash; cut on next open)"
                )
            }
            for problem in summary.damage {
                Output.line(
                    "DAMAGED \(problem.file) at byte \(problem.offset): \(problem.reason) (\(problem.length) bytes)"
                )
            }
            Output.line(sound ? "sound" : "\(summary.damage.count) damaged regions")
        }
        if !sound { throw ExitCode(1) }
    }
}
