import ArgumentParser
import Foundation
import WALCore
import WALMetrics

/// `walctl inspect`: a read-only summary of a live or crashed log.
struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a log (live or crashed) without modifying it.",
        discussion: """
            Reads every segment header and frame (checksums included), the staging file and the cursors. Takes no
            lock: safe while a writer runs, on a crashed log, and on a read-only copy.

            With --records, prints the decoded metric records instead: an aligned table, or with --json one
            OnexEnvelopeV1 JSON object per line (the same bytes the Kafka shipper sends).

            Examples:
              walctl inspect /var/lib/agent/metrics
              walctl inspect ./log --json | jq .last_seq
              walctl inspect ./log --records --limit 20
              walctl inspect ./log --records --from-seq 5000 --json | jq .payload.value
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Flag(help: "Print one JSON object instead of a table (JSON lines with --records).")
    var json = false

    @Flag(help: "Print decoded metric records.")
    var records = false

    @Option(help: "With --records: the first sequence number.")
    var fromSeq: UInt64 = 1

    @Option(help: "With --records: at most this many records.")
    var limit: Int?

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must not be negative") }
    }

    func run() async throws {
        if records {
            try printRecords()
            return
        }
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

extension Inspect {
    func printRecords() throws {
        let meta: LogMeta
        do {
            meta = try LogDirectory(path: dir).readMeta()
        } catch {
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        let reader = MetricsReader(path: dir, from: fromSeq)
        var printed = 0
        var problems = 0
        var output = OutputBuffer()
        if !json {
            output.line(Report.recordHeader)
        }
        do {
            try reader.read { entry in
                if let limit, printed >= limit { return false }
                switch entry {
                case .metric(let record):
                    if json {
                        Envelope.render(record, logID: meta.logID, into: &output.bytes)
                        output.bytes.append(0x0A)
                    } else {
                        output.line(Report.recordRow(record))
                    }
                    printed += 1
                case .gap(let gap):
                    Output.error("gap: sequence numbers \(gap.fromSeq)...\(gap.toSeq) lost: \(gap.reason)")
                case .damage(let damage):
                    problems += 1
                    Output.error("damage: \(damage)")
                case .undecodable(let seq, let failure):
                    problems += 1
                    Output.error("record \(seq): \(failure)")
                }
                output.flushIfLarge()
                return true
            }
        } catch {
            output.flush()
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        output.flush()
    }
}

/// Batches stdout writes (decoding is much faster than one write per line).
struct OutputBuffer {
    var bytes: [UInt8] = []

    mutating func line(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        bytes.append(0x0A)
    }

    mutating func flushIfLarge() {
        if bytes.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        Output.raw(bytes)
        bytes.removeAll(keepingCapacity: true)
    }
}

/// Human-readable renderings shared by subcommands.
enum Report {
    static let recordHeader =
        "SEQ".padding(toLength: 10, withPad: " ", startingAt: 0) + "  "
        + "TIME (UTC)".padding(toLength: 30, withPad: " ", startingAt: 0) + "  "
        + "METRIC".padding(toLength: 32, withPad: " ", startingAt: 0) + "  "
        + "VALUE".padding(toLength: 14, withPad: " ", startingAt: 0) + "  AGENT / CORRELATION / TAGS"

    static func recordRow(_ record: MetricRecord) -> String {
        var time: [UInt8] = []
        Envelope.appendTimestamp(record.timestampNanos, into: &time)
        let tags = record.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let value = "\(Envelope.numberText(record.value)) \(record.unit)"
        return String(record.seq).padding(toLength: 10, withPad: " ", startingAt: 0) + "  "
            + String(decoding: time, as: UTF8.self).padding(toLength: 30, withPad: " ", startingAt: 0) + "  "
            + record.name.padding(toLength: 32, withPad: " ", startingAt: 0) + "  "
            + value.padding(toLength: 14, withPad: " ", startingAt: 0) + "  "
            + "\(record.agentID ?? "-") / \(record.correlationID ?? "-") / \(tags)"
    }

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
