import ArgumentParser
import Foundation
import WALCore
import WALMetrics

/// `walctl tail`: the last records of a log, and with `-f` the new ones as they are sealed.
struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the last records of a log; with -f, follow new records as they are sealed.",
        discussion: """
            Prints the last N records that pass the filters (a table, or with --json one OnexEnvelopeV1 per \
            line). With -f it then follows the log like tail -f: a record appears within about a second of its \
            emit (the writer's seal delay plus a 100 ms poll). It follows across segment rolls, writer restarts \
            and retention deleting segments (reported on stderr). Lock-free and read-only: safe beside a writer.

            Exit codes: 0 done (with -f: runs until interrupted); 1 the log cannot be read; 2 usage.

            Examples:
              walctl tail /var/lib/agent/metrics
              walctl tail ./log -n 50 --metric routing_decision_time_ms
              walctl tail ./log -f --agent agent-7 --json | jq .payload.value
            """
    )

    @Argument(help: "The log directory.")
    var dir: String

    @Option(name: [.customShort("n"), .customLong("lines")], help: "How many of the last records to print first.")
    var lines = 10

    @Flag(name: [.customShort("f"), .customLong("follow")], help: "Keep printing new records as they are sealed.")
    var follow = false

    @Flag(help: "One OnexEnvelopeV1 JSON object per line.")
    var json = false

    @OptionGroup(title: "Record filters")
    var filters: RecordFilterOptions

    @Option(help: "With -f: poll interval in milliseconds.")
    var pollMs = 100

    func validate() throws {
        // The last -n records are kept in memory (and a huge count overflowed: exit 132); replay prints whole logs.
        if lines < 0 || lines > 10_000_000 { throw ValidationError("-n must be between 0 and 10000000") }
        if pollMs < 1 || pollMs > 60_000 { throw ValidationError("--poll-ms must be between 1 and 60000") }
    }

    func run() async throws {
        let meta = try readMeta(dir, command: "tail")
        let filter = try filters.filter()
        var output = OutputBuffer()
        if !json { output.line(Report.recordHeader) }
        let last: [MetricRecord]
        let end: UInt64
        do {
            (last, end) = try lastRecords(filter: filter)
        } catch {
            Output.error("walctl tail: \(error)")
            throw ExitCode(1)
        }
        // The log's source service (recorded by its writer, fixed for the log's life): read once, when the first
        // record shows that the symbols file exists.
        var sourceService: String?
        func render(_ record: MetricRecord) {
            if json && sourceService == nil { sourceService = Envelope.sourceService(directory: dir) }
            self.render(record, logID: meta.logID, sourceService: sourceService ?? "", into: &output)
        }
        for record in last { render(record) }
        output.flush()
        guard follow else { return }
        let reader = TailReader(path: dir, after: max(end, filter.fromSeq - 1))
        let decoder = MetricsDecoder(directory: dir)
        while !Task.isCancelled {
            do {
                try reader.poll(maxEntries: 10_000) { entry in
                    switch entry {
                    case .record(let seq, let bytes):
                        switch decoder.decode(seq: seq, bytes: bytes) {
                        case .success(let record):
                            if filter.matches(record) { render(record) }
                        case .failure(let failure):
                            Output.error("record \(seq) does not decode: \(failure)")
                        }
                    case .gap(let gap):
                        Output.error(
                            "gap: sequence numbers \(gap.fromSeq)...\(gap.toSeq) are not in the log: \(gap.reason)"
                        )
                    case .damage(let damage):
                        Output.error("damage: \(damage)")
                    }
                    output.flushIfLarge()
                }
            } catch {
                output.flush()
                Output.error("walctl tail: \(error)")
                throw ExitCode(1)
            }
            output.flush()
            if filter.isPast(reader.nextSeq) { return }
            try? await Task.sleep(for: .milliseconds(pollMs))
        }
    }

    private func render(
        _ record: MetricRecord,
        logID: LogID,
        sourceService: String,
        into output: inout OutputBuffer
    ) {
        if json {
            // The log's source service: what the shippers rendered for this record.
            Envelope.render(record, logID: logID, sourceService: sourceService, into: &output.bytes)
            output.bytes.append(0x0A)
        } else {
            output.line(Report.recordRow(record))
        }
    }

    /// The last `lines` matching records, and the last sequence number read. Reads a window at the end of the log,
    /// doubling it until enough records match or the window covers the whole range.
    private func lastRecords(filter: RecordFilter) throws -> ([MetricRecord], UInt64) {
        let lastSealed = try LogInspector.lastSealedSeqCheap(path: dir)
        let end = min(lastSealed, filter.toSeq)
        guard lines > 0, end >= filter.fromSeq else { return ([], lastSealed) }
        var window = UInt64(max(lines, 1024))
        while true {
            var scoped = filter
            scoped.fromSeq = end > window ? max(filter.fromSeq, end - window + 1) : filter.fromSeq
            scoped.toSeq = end
            var kept: [MetricRecord] = []
            var counts = RecordScan.Counts()
            try RecordScan(report: { _ in }).run(directory: dir, filter: scoped, counts: &counts) { record in
                kept.append(record)
                if kept.count > lines * 2 { kept.removeFirst(kept.count - lines) }
                return true
            }
            if kept.count >= lines || scoped.fromSeq == filter.fromSeq {
                return (Array(kept.suffix(lines)), max(end, counts.lastSeq))
            }
            window = window > UInt64.max / 4 ? .max : window * 4
        }
    }
}
