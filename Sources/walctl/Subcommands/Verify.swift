import ArgumentParser
import WALCore
import WALMetrics

/// `walctl verify`: checks every checksum and record layout; `--repair` salvages and quarantines.
struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every frame of a log (exit 0 sound, 1 damaged, 2 usage); --repair salvages a damaged one.",
        discussion: """
            Checks segment headers, frame header and payload checksums (CRC32C), LZ4 decompression and the record \
            layout of every frame. A torn tail at the end of the active segment (what a crash leaves) is reported \
            but is not damage: the next writer open cuts it. Each damaged region is listed with its file and byte \
            offset. Without --repair it is read-only and safe while a writer runs.

            It also checks metrics.symbols, the table that turns the symbol ids in metric records into names, units, \
            tags and agent ids. A torn last entry (a crash while interning a new string) is reported but is not \
            damage: no record refers to it, and the next writer cuts it. Any other unreadable entry is damage: ids are \
            positions in the table and readers stop at the first unreadable entry, so records that refer to it or to \
            a later one do not decode (they are counted as undecodable, never read as other strings), and writers \
            refuse to open the log rather than give those ids to other strings. verify lists how many records that \
            hides. --repair cannot restore a symbol and leaves the file untouched: restore metrics.symbols from a \
            copy, or write new metrics to another directory.

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
        /// nil when the log has no symbols file.
        var symbols: SymbolTableCheck?

        enum CodingKeys: String, CodingKey {
            case sound, segments, frames, records
            case tornTailBytes = "torn_tail_bytes"
            case damage, repairs, symbols
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
        let symbols: SymbolTableCheck?
        do {
            symbols = try SymbolTableCheck.check(directory: dir)
        } catch {
            Output.error("walctl verify: \(error)")
            throw ExitCode(1)
        }
        let sound = summary.damage.isEmpty && symbols?.damage == nil
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
                        repairs: repairs,
                        symbols: symbols
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
            if let symbols { Self.print(symbols, directory: dir) }
            if sound {
                Output.line("sound")
            } else {
                Output.line("\(summary.damage.count + (symbols?.damage == nil ? 0 : 1)) damaged regions")
                if !repair && !summary.damage.isEmpty {
                    Output.line(
                        "next: inspect one with walctl inspect \(dir) --frame FILE:OFFSET --hexdump; "
                            + "salvage with walctl verify \(dir) --repair (writer stopped)"
                    )
                }
            }
        }
        if !sound { throw ExitCode(1) }
    }

    static func print(_ symbols: SymbolTableCheck, directory: String) {
        if symbols.tornTailBytes > 0 {
            Output.line(
                "symbols: torn last entry, \(symbols.tornTailBytes) bytes at the end of metrics.symbols "
                    + "(a crash while interning; no record refers to it; cut on the next writer open)"
            )
        }
        guard let damage = symbols.damage else { return }
        Output.line(
            "DAMAGED metrics.symbols at byte \(damage.offset): \(damage.reason) (symbol id \(damage.firstUnreadableID); "
                + "\(damage.entriesAfter) stored entries after it cannot be read; \(symbols.entries) entries readable)"
        )
        let records = symbols.recordsReferringToUnreadableSymbols.map { "\($0) records" } ?? "records"
        Output.line(
            "  \(records) refer to symbol \(damage.firstUnreadableID) or later and cannot be decoded (walctl stats "
                + "counts them as undecodable); writers refuse this log so that those ids are never given to other "
                + "strings; --repair cannot restore symbols: restore metrics.symbols from a copy, or write to another "
                + "directory (see walctl verify --help)"
        )
    }
}
