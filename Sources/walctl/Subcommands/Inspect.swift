import ArgumentParser
import Foundation
import WALCore
import WALKafka
import WALMetrics
import WALPostgres
import WALShipping

/// `walctl inspect`: forensics of a live or crashed log. Never modifies anything.
struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forensics of a log, live or crashed: summary, segments, frames, records, one frame's bytes.",
        discussion: """
            Read-only and lock-free: safe while a writer runs, on a crashed log, and on a read-only copy taken \
            off a dead machine. Segments deleted by retention while inspect reads are skipped.

            Views, one at a time:

            (default) The summary: log id, segments, frames, records, sequence and time ranges, bytes on disk \
            and raw, compression, gap markers with their reasons, torn tail, damaged frames, and every cursor \
            with its lag in records and age (the emit age of the oldest record it has not passed). --postgres and \
            --kafka add the cursors committed in those sinks.

            --segments: one row per segment: seq range, sealed-at range, frames, records, sizes, sealed or active.

            --frames: one row per frame: offset, length, kind, codec, checksum status, seq range, records; \
            unreadable regions appear as "damaged" rows with the reason.

            --records: decoded metric records, filtered with --from-seq, --to-seq, --since, --until, --metric, \
            --tag, --agent, --correlation-id and --limit.

            --frame SEGMENT:OFFSET: the header of the frame at that byte offset, decoded field by field even \
            when invalid, with each checksum's status; --hexdump adds its raw bytes.

            --json prints one JSON object per view, or JSON lines (one OnexEnvelopeV1 per record, the bytes the \
            Kafka shipper sends) with --records.

            Exit codes: 0 shown (damage found is reported, not an error: use verify for a status); 1 the log or a \
            sink cannot be read; 2 usage.

            Examples:
              walctl inspect /var/lib/agent/metrics
              walctl inspect ./log --postgres "$DATABASE_URL" --kafka localhost:9092
              walctl inspect ./log --json | jq .last_seq
              walctl inspect ./log --segments
              walctl inspect ./log --frames --json | jq '.frames[] | select(.kind == "damaged")'
              walctl inspect ./log --frame 00000000000000000001.seg:4160 --hexdump
              walctl inspect ./log --records --since -15m --metric 'routing_*' --tag agent_type=router --limit 20
              walctl inspect ./log --records --from-seq 5000 --json | jq .payload.value
            """
    )

    @Argument(help: ArgumentHelp("The log directory (or --root / --logs for every log of a host).", valueName: "dir"))
    var directory: String?

    var dir: String { directory ?? "" }

    @Option(help: ArgumentHelp("Summarise every log under this folder, one line each (repeatable).", valueName: "dir"))
    var root: [String] = []

    @Option(
        help: ArgumentHelp(
            "Summarise every log directory matching this glob, one line each (repeatable).",
            valueName: "glob"
        )
    )
    var logs: [String] = []

    @Flag(help: "Print JSON: one object per view, JSON lines with --records.")
    var json = false

    @Flag(help: "List segments.")
    var segments = false

    @Flag(help: "List frames.")
    var frames = false

    @Flag(help: "Print decoded metric records.")
    var records = false

    @Option(help: ArgumentHelp("Show the frame at a byte offset of a segment.", valueName: "segment:offset"))
    var frame: String?

    @Flag(help: "With --frame: also print the frame's raw bytes.")
    var hexdump = false

    @OptionGroup(title: "Record filters (with --records)")
    var filters: RecordFilterOptions

    @Option(help: "With --records: at most this many records.")
    var limit: Int?

    @Option(help: "Summary: also show this PostgreSQL database's cursors and dead letters (conninfo or URL).")
    var postgres: String?

    @Option(help: "Summary: also show the cursor committed in this Kafka cluster (bootstrap servers).")
    var kafka: String?

    @Option(help: "The consumer group of the Kafka cursor (default: walctl-ship-{log id}).")
    var kafkaGroup: String?

    @Option(
        name: .customLong("kafka-property"),
        help: ArgumentHelp("A librdkafka property for the cursor read (repeatable).", valueName: "name=value")
    )
    var kafkaProperties: [String] = []

    var manyLogs: Bool { !root.isEmpty || !logs.isEmpty }

    func validate() throws {
        if manyLogs {
            guard directory == nil else { throw ValidationError("give a log directory, or --root / --logs, not both") }
            guard !segments && !frames && !records && frame == nil else {
                throw ValidationError("--root and --logs show the summary only")
            }
        } else if directory == nil {
            throw ValidationError("give a log directory, or --root DIR / --logs GLOB")
        }
        if let limit, limit < 0 { throw ValidationError("--limit must not be negative") }
        let views = [segments, frames, records, frame != nil].filter { $0 }.count
        if views > 1 { throw ValidationError("choose one of --segments, --frames, --records, --frame") }
        if hexdump && frame == nil { throw ValidationError("--hexdump goes with --frame SEGMENT:OFFSET") }
        if let frame, FrameAddress(frame) == nil {
            throw ValidationError("--frame takes SEGMENT:OFFSET, for example 00000000000000000001.seg:4160")
        }
        for assignment in kafkaProperties where KafkaProperty(assignment: assignment) == nil {
            throw ValidationError("--kafka-property takes name=value, not \"\(assignment)\"")
        }
    }

    func run() async throws {
        if manyLogs { return try printHost() }
        if records { return try printRecords() }
        if let frame, let address = FrameAddress(frame) { return try printFrame(address) }
        if segments { return try printSegments() }
        if frames { return try printFrames() }
        try printSummary()
    }
}

// MARK: - Summary

extension Inspect {
    /// The summary as JSON: every `LogSummary` field, plus the time range and cursor lags.
    struct SummaryJSON: Encodable {
        var summary: LogSummary
        var firstTime: String?
        var lastTime: String?
        var cursorLags: [CursorLag]
        /// With --postgres: what walctl_dead_letters holds for this log.
        var postgresDeadLetters: PostgresDeadLetters?

        enum Extra: String, CodingKey {
            case firstTime = "first_time"
            case lastTime = "last_time"
            case cursorLags = "cursor_lags"
            case postgresDeadLetters = "postgres_dead_letters"
        }

        func encode(to encoder: any Encoder) throws {
            try summary.encode(to: encoder)
            var container = encoder.container(keyedBy: Extra.self)
            try container.encode(firstTime, forKey: .firstTime)
            try container.encode(lastTime, forKey: .lastTime)
            try container.encode(cursorLags, forKey: .cursorLags)
            if let postgresDeadLetters { try container.encode(postgresDeadLetters, forKey: .postgresDeadLetters) }
        }
    }

    /// Rows of `walctl_dead_letters` for this log.
    struct PostgresDeadLetters: Encodable {
        /// Records PostgreSQL refused (each with its envelope and the error).
        var records: UInt64
        /// Ranges the log could not deliver (gaps, damage, undecodable records) and the sequence numbers they cover.
        var ranges: UInt64
        var rangeSeqs: UInt64

        enum CodingKeys: String, CodingKey {
            case records, ranges
            case rangeSeqs = "range_seqs"
        }
    }

    func printSummary() throws {
        let meta = try readMeta(dir, command: "inspect")
        let summary: LogSummary
        do {
            summary = try LogInspector.examine(path: dir)
        } catch {
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        let lastSeq = summary.lastSeq ?? 0
        let firstTime = summary.firstSeq.flatMap { ShippingLag.emitTime(directory: dir, atOrAfter: $0) }
        let lastTime = summary.lastSeq.flatMap { lastEmitTime(from: $0) }
        var sources: [(String, String, UInt64)] = summary.cursors.sorted { $0.key < $1.key }.map {
            ($0.key, "local", $0.value)
        }
        sources += try sinkCursors(logID: meta.logID)
        var deadLetters: PostgresDeadLetters?
        if let postgres {
            do {
                let found = try PostgresSink.deadLetters(conninfo: postgres, logID: meta.logID.description)
                deadLetters = PostgresDeadLetters(
                    records: found.records,
                    ranges: found.ranges,
                    rangeSeqs: found.rangeSeqs
                )
            } catch {
                Output.error("walctl inspect: cannot read the PostgreSQL dead letters: \(error)")
                throw ExitCode(1)
            }
        }
        let lags = ShippingLag.measure(
            directory: dir,
            lastSeq: lastSeq,
            positions: sources.map { CursorPosition(name: $0.0, source: $0.1, seq: $0.2) },
            now: now
        )
        if json {
            Output.line(
                Output.json(
                    SummaryJSON(
                        summary: summary,
                        firstTime: firstTime.map(rfc3339),
                        lastTime: lastTime.map(rfc3339),
                        cursorLags: lags,
                        postgresDeadLetters: deadLetters
                    )
                )
            )
            return
        }
        Output.line(
            Report.summary(
                summary,
                directory: dir,
                firstTime: firstTime,
                lastTime: lastTime,
                lags: lags
            )
        )
        if let deadLetters {
            Output.line(
                "postgres dead letters: \(deadLetters.records) records refused, \(deadLetters.ranges) ranges not in "
                    + "the log (\(deadLetters.rangeSeqs) sequence numbers)"
            )
        }
    }

    /// The emit time of the last metric record, reading from `seq` (the last sealed) back a few frames at most.
    func lastEmitTime(from seq: UInt64) -> Int64? {
        var start = seq
        for _ in 0..<4 {
            var found: Int64?
            // Up to `seq` and no further: a live writer appends faster than a debug build reads, and reading on to
            // the end chased it for as long as it wrote (inspect never returned).
            try? MetricsReader(path: dir, from: start).read { entry in
                switch entry {
                case .metric(let record):
                    guard record.seq <= seq else { return false }
                    found = record.timestampNanos
                    return record.seq < seq
                case .gap(let gap): return gap.toSeq < seq
                case .undecodable(let at, _): return at < seq
                case .damage: return true
                }
            }
            if let found { return found }
            guard start > 1 else { return nil }
            start = start > 1024 ? start - 1024 : 1
        }
        return nil
    }

    /// Cursors committed in the sinks given on the command line.
    func sinkCursors(logID: LogID) throws -> [(String, String, UInt64)] {
        var result: [(String, String, UInt64)] = []
        if let postgres {
            do {
                for cursor in try PostgresSink.cursors(conninfo: postgres) where cursor.logID == logID.description {
                    result.append((cursor.shipper, "postgres", cursor.seq))
                }
            } catch {
                Output.error("walctl inspect: cannot read the PostgreSQL cursors: \(error)")
                throw ExitCode(1)
            }
        }
        if let kafka {
            var settings = KafkaSinkConfiguration(bootstrapServers: kafka, deadLetterFile: "/dev/null")
            settings.groupID = kafkaGroup
            settings.apply(environment: ProcessInfo.processInfo.environment)
            settings.properties += kafkaProperties.compactMap(KafkaProperty.init(assignment:))
            settings.requestTimeoutMilliseconds = 10_000
            do {
                let sink = KafkaSink(configuration: settings)
                if let seq = try sink.readCursor(logID: logID) {
                    result.append((settings.group(for: logID), "kafka", seq))
                } else {
                    Output.error("walctl inspect: no Kafka cursor: \(settings.cursorTopic) does not exist in \(kafka)")
                }
            } catch {
                Output.error("walctl inspect: cannot read the Kafka cursor: \(error)")
                throw ExitCode(1)
            }
        }
        return result
    }
}

// MARK: - Segments and frames

extension Inspect {
    func printSegments() throws {
        _ = try readMeta(dir, command: "inspect")
        let summary: LogSummary
        do {
            summary = try LogInspector.examine(path: dir)
        } catch {
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        if json {
            struct View: Encodable { var segments: [LogSummary.SegmentInfo] }
            Output.line(Output.json(View(segments: summary.segmentList)))
            return
        }
        var rows = [
            [
                "FILE", "FIRST SEQ", "LAST SEQ", "FRAMES", "RECORDS", "SEALED FROM", "SEALED TO", "ON DISK", "RAW",
                "STATE",
            ]
        ]
        for segment in summary.segmentList {
            rows.append([
                segment.file,
                String(segment.firstSeq),
                segment.lastSeq.map { String($0) } ?? "-",
                String(segment.frames),
                String(segment.records),
                segment.firstSealedAtNanos.map { rfc3339(Int64($0)) } ?? "-",
                segment.lastSealedAtNanos.map { rfc3339(Int64($0)) } ?? "-",
                String(segment.bytesOnDisk),
                String(segment.bytesRaw),
                segment.active ? "active" : "sealed",
            ])
        }
        Output.line(table(rows, rightAligned: [1, 2, 3, 4, 7, 8]))
    }

    func printFrames() throws {
        _ = try readMeta(dir, command: "inspect")
        let list: [FrameInfo]
        do {
            list = try LogInspector.frames(path: dir)
        } catch {
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        if json {
            struct View: Encodable { var frames: [FrameInfo] }
            Output.line(Output.json(View(frames: list)))
            return
        }
        var rows = [
            ["FILE", "OFFSET", "LENGTH", "KIND", "CODEC", "CHECKSUM", "FIRST SEQ", "LAST SEQ", "RECORDS", "SEALED AT"]
        ]
        for info in list {
            rows.append([
                info.file,
                String(info.offset),
                String(info.length),
                info.kind,
                info.codec ?? "-",
                info.checksum,
                info.firstSeq.map { String($0) } ?? "-",
                info.lastSeq.map { String($0) } ?? "-",
                info.records.map { String($0) } ?? "-",
                info.sealedAtNanos.map { rfc3339(Int64($0)) } ?? "-",
            ])
        }
        Output.line(table(rows, rightAligned: [1, 2, 6, 7, 8]))
    }
}

/// `SEGMENT:OFFSET` as given to `--frame`.
struct FrameAddress {
    var segment: String
    var offset: Int64

    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let offset = Int64(text[text.index(after: colon)...]), offset >= 0
        else { return nil }
        segment = String(text[..<colon])
        self.offset = offset
        if segment.isEmpty { return nil }
    }
}

extension Inspect {
    func printFrame(_ address: FrameAddress) throws {
        var path = address.segment
        if !path.contains("/") {
            if let seq = UInt64(path), !path.hasSuffix(LogFormat.segmentSuffix) {
                path = LogFormat.segmentFileName(firstSeq: seq)
            }
            path = LogDirectory(path: dir).path + "/" + path
        }
        let dump: FrameDump
        do {
            dump = try FrameDump.read(path: path, offset: address.offset, limit: hexdump ? 1 << 20 : 0)
        } catch {
            Output.error("walctl inspect: \(error)")
            Output.error("hint: walctl inspect \(dir) --frames lists every frame with its segment and offset")
            throw ExitCode(1)
        }
        if json {
            struct View: Encodable {
                var frame: FrameDump
                var hex: String?
            }
            var shown = dump
            let hex = hexdump ? shown.bytes.map(hexByte).joined() : nil
            shown.bytes = []
            Output.line(Output.json(View(frame: shown, hex: hex)))
            return
        }
        let hex32 = { (value: UInt32) in "0x" + String(value, radix: 16) }
        let type = dump.type == 1 ? "1 (data)" : dump.type == 2 ? "2 (gap)" : "\(dump.type) (unknown)"
        let codec = dump.codec == 0 ? "0 (none)" : dump.codec == 1 ? "1 (lz4)" : "\(dump.codec) (unknown)"
        let rows = [
            ["file", dump.file],
            ["offset", String(dump.offset)],
            ["magic", dump.magicOK ? "WFRM (ok)" : "bad"],
            ["type", type],
            ["codec", codec],
            ["first seq", String(dump.firstSeq)],
            ["records", String(dump.recordCount)],
            ["raw length", String(dump.rawLength)],
            ["stored length", String(dump.storedLength)],
            ["sealed at", dump.sealedAtNanos > 0 ? rfc3339(Int64(clamping: dump.sealedAtNanos)) : "0"],
            ["payload crc", hex32(dump.payloadCRC) + " (" + dump.payloadStatus + ")"],
            ["header crc", hex32(dump.headerCRC) + " (" + dump.headerStatus + ")"],
        ]
        Output.line(table(rows))
        if hexdump {
            Output.line("")
            Output.line(Report.hexdump(dump.bytes, startingAt: dump.offset))
        }
    }
}

// MARK: - Records

extension Inspect {
    func printRecords() throws {
        let meta = try readMeta(dir, command: "inspect")
        let filter = try filters.filter().endingAtTheLastSealedRecord(of: dir)
        var output = OutputBuffer()
        if !json { output.line(Report.recordHeader) }
        var counts = RecordScan.Counts()
        var printed = 0
        if limit == 0 { return }
        let scan = RecordScan.reportingToStderr
        do {
            if json {
                // Envelopes rendered straight from the log records (the fast path, as replay --to stdout).
                try scan.envelopes(
                    directory: dir,
                    filter: filter,
                    logID: meta.logID,
                    counts: &counts,
                    output: &output.bytes
                ) {
                    _,
                    bytes in
                    printed += 1
                    if bytes.count >= 1 << 16 {
                        Output.raw(bytes)
                        bytes.removeAll(keepingCapacity: true)
                    }
                    return limit.map { printed < $0 } ?? true
                }
            } else {
                try scan.run(directory: dir, filter: filter, counts: &counts) { record in
                    output.line(Report.recordRow(record))
                    printed += 1
                    output.flushIfLarge()
                    return limit.map { printed < $0 } ?? true
                }
            }
        } catch {
            output.flush()
            Output.error("walctl inspect: \(error)")
            throw ExitCode(1)
        }
        output.flush()
    }
}

/// Human-readable renderings shared by subcommands.
enum Report {
    static let recordHeader =
        "SEQ".padded(to: 10) + "  "
        + "TIME (UTC)".padded(to: 30) + "  "
        + "METRIC".padded(to: 32) + "  "
        + "VALUE".padded(to: 14) + "  AGENT / CORRELATION / TAGS"

    /// One record on one line; every string from the log goes through `terminalSafe`.
    static func recordRow(_ record: MetricRecord) -> String {
        let tags = record.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let value = "\(Envelope.numberText(record.value)) \(terminalSafe(record.unit))"
        return String(record.seq).padded(to: 10) + "  "
            + rfc3339(record.timestampNanos).padded(to: 30) + "  "
            + terminalSafe(record.name).padded(to: 32) + "  "
            + value.padded(to: 14) + "  "
            + terminalSafe("\(record.agentID ?? "-") / \(record.correlationID ?? "-") / \(tags)")
    }

    /// `xxd`-style lines: absolute offset, 16 bytes in hex, printable ASCII.
    static func hexdump(_ bytes: [UInt8], startingAt base: Int64) -> String {
        var lines: [String] = []
        var index = 0
        while index < bytes.count {
            let row = bytes[index..<min(index + 16, bytes.count)]
            var hex = ""
            for (position, byte) in row.enumerated() {
                hex += hexByte(byte) + (position % 2 == 1 ? " " : "")
            }
            let ascii = String(row.map { $0 >= 0x20 && $0 < 0x7F ? Character(UnicodeScalar($0)) : "." })
            let offset = String(base + Int64(index), radix: 16)
            lines.append(
                String(repeating: "0", count: max(0, 8 - offset.count)) + offset + ": "
                    + hex.padded(to: 40) + " " + ascii
            )
            index += 16
        }
        return lines.joined(separator: "\n")
    }

    static func summary(
        _ s: LogSummary,
        directory: String,
        firstTime: Int64? = nil,
        lastTime: Int64? = nil,
        lags: [CursorLag] = []
    ) -> String {
        var lines: [String] = []
        func row(_ key: String, _ value: String) {
            lines.append(key.padded(to: 18) + terminalSafe(value))
        }
        row("log", "\(directory)  (id \(s.logID))")
        row("writer", s.writerPID.map { "running, pid \($0)" } ?? "none")
        row("segments", "\(s.segments)")
        row("frames", "\(s.frames)")
        row("records", "\(s.records)")
        row("sequence", s.firstSeq.map { "\($0) ... \(s.lastSeq ?? $0)" } ?? "empty")
        if let firstTime, let lastTime {
            row("time", "\(rfc3339(firstTime)) ... \(rfc3339(lastTime))")
        }
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
            lines.append(
                terminalSafe("  \(problem.file) at byte \(problem.offset): \(problem.reason) (\(problem.length) bytes)")
            )
        }
        row("gaps", "\(s.gaps.count)")
        for gap in s.gaps {
            lines.append(terminalSafe("  \(gap.fromSeq) ... \(gap.toSeq): \(gap.reason)"))
        }
        row("cursors", lags.isEmpty ? "none" : "")
        for lag in lags {
            let behind =
                lag.recordsBehind == 0
                ? "at the end"
                : "\(lag.recordsBehind) records behind, oldest unshipped emitted \(humanDuration(nanos: Int64(lag.ageSeconds * 1e9))) ago"
            lines.append(
                "  \(terminalSafe(lag.name).padded(to: 28)) \(lag.source.padded(to: 9)) at \(lag.seq), \(behind)"
            )
        }
        return lines.joined(separator: "\n")
    }
}

// MARK: - Every log of a host

extension Inspect {
    /// The totals line of `--root`: host-wide disk use is the sum of allocated bytes.
    struct HostTotals: Encodable {
        var logs: Int
        var records: UInt64
        var stagedRecords: UInt64
        var bytesOnDisk: Int64
        var bytesAllocated: Int64
        var writersAlive: Int

        enum CodingKeys: String, CodingKey {
            case logs, records
            case stagedRecords = "staged_records"
            case bytesOnDisk = "bytes_on_disk"
            case bytesAllocated = "bytes_allocated"
            case writersAlive = "writers_alive"
        }
    }

    /// `--root` / `--logs`: one line per log (records, bytes, writer, staged, every cursor's lag), then totals.
    func printHost() throws {
        let directories = LogSelection(roots: root, patterns: logs).discover()
        var postgresCursors: [String: [CursorPosition]] = [:]
        if let postgres {
            do {
                // One query for every log's cursors.
                for cursor in try PostgresSink.cursors(conninfo: postgres) {
                    postgresCursors[cursor.logID, default: []].append(
                        CursorPosition(name: cursor.shipper, source: "postgres", seq: cursor.seq)
                    )
                }
            } catch {
                Output.error("walctl inspect: cannot read the PostgreSQL cursors: \(error)")
                throw ExitCode(1)
            }
        }
        var kafkaSink: KafkaSink?
        var kafkaSettings: KafkaSinkConfiguration?
        if let kafka {
            var settings = KafkaSinkConfiguration(bootstrapServers: kafka, deadLetterFile: "/dev/null")
            settings.groupID = kafkaGroup
            settings.apply(environment: ProcessInfo.processInfo.environment)
            settings.properties += kafkaProperties.compactMap(KafkaProperty.init(assignment:))
            settings.requestTimeoutMilliseconds = 10_000
            kafkaSink = KafkaSink(configuration: settings)
            kafkaSettings = settings
        }
        var kafkaFailure: (any Error)?
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        let standings = ShippingLag.standings(
            of: directories,
            sinks: { overview in
                var positions = postgresCursors[overview.logID] ?? []
                if let kafkaSink, let kafkaSettings, kafkaFailure == nil,
                    let logID = try? LogDirectory(path: overview.directory).readMeta().logID
                {
                    do {
                        if let seq = try kafkaSink.readCursor(logID: logID) {
                            positions.append(
                                CursorPosition(name: kafkaSettings.group(for: logID), source: "kafka", seq: seq)
                            )
                        }
                    } catch {
                        kafkaFailure = error
                    }
                }
                return positions
            },
            now: now,
            unreadable: { directory, error in Output.error("walctl inspect: \(directory): \(error)") }
        )
        if let kafkaFailure {
            Output.error("walctl inspect: cannot read the Kafka cursors: \(kafkaFailure)")
            throw ExitCode(1)
        }
        var totals = HostTotals(
            logs: standings.count,
            records: 0,
            stagedRecords: 0,
            bytesOnDisk: 0,
            bytesAllocated: 0,
            writersAlive: 0
        )
        for standing in standings {
            totals.records += standing.overview.records
            totals.stagedRecords += UInt64(standing.overview.stagedRecords)
            totals.bytesOnDisk += standing.overview.bytesOnDisk
            totals.bytesAllocated += standing.overview.bytesAllocated
            if standing.overview.writerPID != nil { totals.writersAlive += 1 }
        }
        if json {
            struct View: Encodable {
                var logs: [LogStanding]
                var total: HostTotals
            }
            Output.line(Output.json(View(logs: standings, total: totals)))
            return
        }
        var rows = [["DIR", "LOG ID", "RECORDS", "ON DISK", "WRITER", "STAGED", "LAG"]]
        for standing in standings {
            let overview = standing.overview
            let lags =
                standing.lags.isEmpty
                ? "no cursor"
                : standing.lags.map { lag in
                    let age = lag.recordsBehind > 0 ? " (\(humanDuration(nanos: Int64(lag.ageSeconds * 1e9))))" : ""
                    return "\(lag.name)@\(lag.source) \(lag.recordsBehind)\(age)"
                }.joined(separator: ", ")
            rows.append([
                terminalSafe(overview.directory),
                overview.logID,
                String(overview.records),
                String(overview.bytesOnDisk),
                overview.writerPID.map { "pid \($0)" } ?? "none",
                String(overview.stagedRecords),
                terminalSafe(lags),
            ])
        }
        rows.append([
            "total (\(totals.logs) logs)", "", String(totals.records), String(totals.bytesOnDisk),
            "\(totals.writersAlive) alive", String(totals.stagedRecords), "",
        ])
        Output.line(table(rows, rightAligned: [2, 3, 5]))
        Output.line("disk use: \(totals.bytesAllocated) bytes allocated (segments, staging files)")
    }
}
