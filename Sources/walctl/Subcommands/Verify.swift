import ArgumentParser
import WALCore

/// `walctl verify`: checks every checksum and record layout; `--repair` salvages and quarantines.
struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every frame of a log (exit 0 sound, 1 damaged, 2 usage); --repair salvages a damaged one.",
        discussion: """
            Checks segment headers, frame header and payload checksums (CRC32C), LZ4 decompression and the record \
            layout of every frame. A torn tail at the end of the active segment (what a crash leaves) is reported \
            but is not damage: the next writer open cuts it. Each damaged region is listed with its file and byte \
            offset. Without --repair it is read-only and safe while a writer runs.

            --repair fixes the log in place and never deletes data. A torn tail is cut, its bytes first copied \
            to quarantine/SEGMENT.torn-at-OFFSET. A segment with damage is moved to quarantine/ after every intact \
            frame of it was copied, byte for byte, into a new segment of the same name; the sequence numbers lost \
            in the damage are covered by gap markers naming the quarantined file, so readers and shippers account \
            for them. It prints each action, then verifies again. On a clean log it changes nothing. It takes the \
            writer's lock and refuses (exit 1) while a writer runs: stop the agent first.

            Exit codes: 0 sound (after --repair: repaired and now sound); 1 damage found, or the repair could not \
            be done; 2 usage.

            Examples:
              walctl verify /var/lib/agent/metrics
              walctl verify ./log --json | jq .damage
              walctl verify ./log --repair
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Cut a torn tail and quarantine damaged segments after salvaging their intact frames.")
    var repair = false

    struct Result: Encodable {
        var sound: Bool
        var segments: Int
        var frames: Int
        var records: UInt64
        var tornTailBytes: Int64
        var damage: [LogSummary.Problem]
        var repairs: [RepairReport.Action]?

        enum CodingKeys: String, CodingKey {
            case sound, segments, frames, records
            case tornTailBytes = "torn_tail_bytes"
            case damage, repairs
        }
    }

    func run() async throws {
        _ = try readMeta(dir, command: "verify")
        var repairs: [RepairReport.Action]?
        if repair {
            do {
                repairs = try LogRepair.repair(path: dir).actions
            } catch {
                Output.error("walctl verify --repair: \(error)")
                if error.code == .locked {
                    Output.error("hint: stop the process writing the log, then run the repair again")
                }
                throw ExitCode(1)
            }
            if !json {
                if let repairs, repairs.isEmpty { Output.line("repair: nothing to do") }
                for action in repairs ?? [] {
                    Output.line(
                        "repair: \(action.kind.replacingOccurrences(of: "_", with: " ")) \(action.file): \(action.detail)"
                    )
                }
            }
        }
        let summary: LogSummary
        do {
            summary = try LogInspector.examine(path: dir, decodeRecords: true)
        } catch {
            Output.error("walctl verify: \(error)")
            throw ExitCode(1)
        }
        let sound = summary.damage.isEmpty
        if json {
            Output.line(
                Output.json(
                    Result(
                        sound: sound,
                        segments: summary.segments,
                        frames: summary.frames,
                        records: summary.records,
                        tornTailBytes: summary.tornTailBytes,
                        damage: summary.damage,
                        repairs: repairs
                    )
                )
            )
        } else {
            Output.line("checked \(summary.segments) segments, \(summary.frames) frames, \(summary.records) records")
            if summary.tornTailBytes > 0 {
                Output.line(
                    "torn tail: \(summary.tornTailBytes) bytes at the end of the active segment "
                        + "(a crash; cut on next open or by --repair)"
                )
            }
            for problem in summary.damage {
                Output.line(
                    "DAMAGED \(problem.file) at byte \(problem.offset): \(problem.reason) (\(problem.length) bytes)"
                )
            }
            if sound {
                Output.line("sound")
            } else {
                Output.line("\(summary.damage.count) damaged regions")
                if !repair {
                    Output.line(
                        "next: inspect one with walctl inspect \(dir) --frame FILE:OFFSET --hexdump; "
                            + "salvage with walctl verify \(dir) --repair (writer stopped)"
                    )
                }
            }
        }
        if !sound { throw ExitCode(1) }
    }
}
