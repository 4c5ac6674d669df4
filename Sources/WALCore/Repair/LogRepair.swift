import SystemPackage

/// What `LogRepair.repair` did, step by step, for the operator to read.
public struct RepairReport: Sendable, Codable, Equatable {
    public struct Action: Sendable, Codable, Equatable {
        /// `torn_tail_cut`, `quarantined`, `salvaged` or `gap_written`.
        public var kind: String
        public var file: String
        /// Where the original bytes were kept (quarantine), when they were moved or copied.
        public var keptAt: String?
        public var offset: Int64?
        public var bytes: Int64?
        public var frames: Int?
        public var records: UInt64?
        public var fromSeq: UInt64?
        public var toSeq: UInt64?
        public var detail: String

        /// A gap marker written for `from...to`: "[`lead` ]gap marker for sequence numbers from...to: `reason`".
        static func gapWritten(file: String, from: UInt64, to: UInt64, lead: String = "", _ reason: String) -> Self {
            let marker = "gap marker for sequence numbers \(from)...\(to): \(reason)"
            return Action(
                kind: "gap_written",
                file: file,
                fromSeq: from,
                toSeq: to,
                detail: lead.isEmpty ? marker : lead + " " + marker
            )
        }

        enum CodingKeys: String, CodingKey {
            case kind, file
            case keptAt = "kept_at"
            case offset, bytes, frames, records
            case fromSeq = "from_seq"
            case toSeq = "to_seq"
            case detail
        }
    }

    public var actions: [Action] = []

    /// True when the log needed nothing.
    public var clean: Bool { actions.isEmpty }
}

/// Repairs a log in place, never deleting data: a torn tail is cut (its bytes copied to `quarantine/` first), and
/// a segment with damage is moved to `quarantine/` after every intact frame of it was copied, byte for byte, into
/// a new segment of the same name. The sequence numbers lost in the damage are covered by gap markers that name
/// the quarantined file, so readers and shippers account for them instead of meeting damage.
///
/// Takes the writer's lock for the duration: refuses (`.locked`) while a writer runs, and no writer can start
/// meanwhile. On a clean log it changes nothing. Every new file is fsynced before the rename that publishes it.
public enum LogRepair {
    public static let quarantineDirectoryName = "quarantine"

    public static func repair(path: String) throws(WALError) -> RepairReport {
        let directory = LogDirectory(path: path)
        let meta = try directory.readMeta()
        let lock = try DirectoryLock(directory: directory, recordPID: false)
        defer { withExtendedLifetime(lock) {} }
        var report = RepairReport()
        let files = try directory.segments()
        for (index, file) in files.enumerated() {
            let nextFirstSeq = index + 1 < files.count ? files[index + 1].firstSeq : nil
            let end = try repairSegment(
                file,
                nextFirstSeq: nextFirstSeq,
                meta: meta,
                directory: directory,
                report: &report
            )
            if let end, let nextFirstSeq, end + 1 < nextFirstSeq {
                try writeGapSegment(
                    from: end + 1,
                    to: nextFirstSeq - 1,
                    meta: meta,
                    directory: directory,
                    report: &report
                )
            }
        }
        return report
    }

    /// The frames of a sealed segment end before the next segment begins (a segment after it was deleted, or it was
    /// cut at a frame boundary): the seqs in between are in no segment. A new segment named for the first of them,
    /// holding one gap marker, makes the loss durable and visible to every reader (it stayed damage for good).
    private static func writeGapSegment(
        from: UInt64,
        to: UInt64,
        meta: LogMeta,
        directory: LogDirectory,
        report: inout RepairReport
    ) throws(WALError) {
        let name = LogFormat.segmentFileName(firstSeq: from)
        let path = directory.segmentPath(firstSeq: from)
        let reason = "lost: no segment holds these seqs (a segment deleted?); walctl verify --repair recorded it"
        let bytes =
            SegmentHeader(logID: meta.logID, firstSeq: from, createdAtNanos: wallClockNanos()).encode()
            + gapFrame(from: from, to: to, reason: reason)
        let temporary = path + ".repair.tmp"
        try? FileSystem.remove(temporary)
        try writeNewFile(temporary, bytes: bytes)
        try FileSystem.rename(temporary, path)
        try FileSystem.syncDirectory(directory.path)
        report.actions.append(.gapWritten(file: name, from: from, to: to, lead: "new segment \(name) with a", reason))
    }

    /// Where damaged bytes go: `quarantine/` in the log directory.
    static func quarantinePath(_ directory: LogDirectory, name: String) throws(WALError) -> String {
        let folder = directory.path + "/" + quarantineDirectoryName
        try FileSystem.makeDirectory(folder, followLink: false)
        var candidate = folder + "/" + name
        var attempt = 1
        while FileSystem.exists(candidate) {
            attempt += 1
            candidate = folder + "/" + name + ".\(attempt)"
        }
        return candidate
    }

    /// Repairs one segment; returns the last seq its frames cover when it was left as it is (nil when it was rebuilt,
    /// which covers up to the next segment, or skipped).
    private static func repairSegment(
        _ file: LogDirectory.SegmentFile,
        nextFirstSeq: UInt64?,
        meta: LogMeta,
        directory: LogDirectory,
        report: inout RepairReport
    ) throws(WALError) -> UInt64? {
        let isActive = nextFirstSeq == nil
        var headerProblem: String?
        let reader: SegmentFileReader
        do {
            reader = try SegmentFileReader(path: file.path)
        } catch  where error.code == .notFound {
            return nil
        } catch {
            let size = FileSystem.size(file.path) ?? 0
            let head = (try? FileSystem.readAll(file.path, limit: LogFormat.segmentHeaderSize)) ?? []
            // A segment whose creation a crash interrupted holds nothing; the writer's open removes it.
            if isActive && head.allSatisfy({ $0 == 0 }) && size <= Int64(LogFormat.segmentHeaderSize) { return nil }
            headerProblem = error.message
            reader = try SegmentFileReader(
                path: file.path,
                assumedHeader: SegmentHeader(logID: meta.logID, firstSeq: file.firstSeq, createdAtNanos: 0)
            )
        }
        // Frames whose checksums match but whose records do not decode are damage too.
        var decoder = FrameDecoder()
        var undecodable: Set<Int64> = []
        let scan = SegmentScan.scan(reader) { frame, stored in
            guard frame.header.type == .data else { return }
            if decoder.forEachRecord(header: frame.header, stored: stored, from: 0, { _, _ in }) != nil {
                undecodable.insert(frame.offset)
            }
        }
        // A frame whose seqs are not above every earlier frame's (checksums intact: a copied or replayed frame) is
        // damage too; the rebuilt segment keeps the first frame holding each seq.
        let overlapping = zip(scan.frames, scan.frames.dropFirst()).contains {
            $1.header.firstSeq <= $0.header.lastSeq
        }
        let damaged =
            headerProblem != nil || !scan.damage.isEmpty || !undecodable.isEmpty || overlapping
            || (!isActive && scan.tornTailBytes > 0) || reader.header.logID != meta.logID
        if !damaged {
            if isActive, let torn = scan.tornTailOffset, scan.tornTailBytes > 0 {
                try cutTornTail(reader, at: torn, bytes: scan.tornTailBytes, directory: directory, report: &report)
            }
            return scan.frames.last.map(\.header.lastSeq) ?? reader.header.firstSeq - 1
        }
        try salvage(
            reader,
            scan: scan,
            skipping: undecodable,
            headerProblem: headerProblem,
            nextFirstSeq: nextFirstSeq,
            meta: meta,
            directory: directory,
            report: &report
        )
        return nil
    }

    /// Copies the torn bytes to quarantine, then zeroes them (as the writer's recovery would).
    private static func cutTornTail(
        _ reader: SegmentFileReader,
        at offset: Int64,
        bytes length: Int64,
        directory: LogDirectory,
        report: inout RepairReport
    ) throws(WALError) {
        let name = String(reader.path.split(separator: "/").last ?? "segment")
        let kept = try quarantinePath(directory, name: name + ".torn-at-\(offset)")
        var torn = [UInt8](repeating: 0, count: Int(length))
        let fd = try FileSystem.open(reader.path, .readWrite)
        defer { try? fd.close() }
        do {
            let n = try torn.withMutableBytes { buffer throws(Errno) in try fd.readFully(at: offset, into: buffer) }
            torn.removeSubrange(n...)
        } catch {
            throw WALError.io("cannot read the torn tail", path: reader.path, error)
        }
        try writeNewFile(kept, bytes: torn)
        try FileSystem.syncDirectory(directory.path + "/" + quarantineDirectoryName)
        let zeros = [UInt8](repeating: 0, count: torn.count)
        do {
            try zeros.withBytes { buffer throws(Errno) in try fd.writeFully(at: offset, from: buffer) }
            try fd.dataSync()
        } catch {
            throw WALError.io("cannot cut the torn tail", path: reader.path, error)
        }
        report.actions.append(
            .init(
                kind: "torn_tail_cut",
                file: name,
                keptAt: relative(kept, directory),
                offset: offset,
                bytes: Int64(torn.count),
                detail:
                    "zeroed \(torn.count) bytes at byte \(offset) that hold no complete frame (a write torn by a crash)"
            )
        )
    }

    /// Writes a new segment with every intact frame and gap markers for what is lost, moves the original to
    /// quarantine and puts the new one in its place.
    private static func salvage(
        _ reader: SegmentFileReader,
        scan: SegmentScan,
        skipping undecodable: Set<Int64>,
        headerProblem: String?,
        nextFirstSeq: UInt64?,
        meta: LogMeta,
        directory: LogDirectory,
        report: inout RepairReport
    ) throws(WALError) {
        let name = String(reader.path.split(separator: "/").last ?? "segment")
        let kept = try quarantinePath(directory, name: name)
        let reason =
            "lost to damage in \(name); walctl verify --repair kept the original as \(relative(kept, directory))"
        let firstSeq = reader.header.firstSeq
        var bytes = SegmentHeader(
            logID: meta.logID,
            firstSeq: firstSeq,
            createdAtNanos: reader.header.createdAtNanos == 0 ? wallClockNanos() : reader.header.createdAtNanos
        ).encode()
        var expected = firstSeq
        var frames = 0
        var records: UInt64 = 0
        var gaps: [(UInt64, UInt64)] = []
        var frameBytes: [UInt8] = []
        // Another log's segment: none of its frames are this log's records (they are kept in quarantine only).
        let ownFrames = reader.header.logID == meta.logID ? scan.frames : []
        for frame in ownFrames where !undecodable.contains(frame.offset) && frame.header.lastSeq >= expected {
            guard frame.header.firstSeq >= expected else { continue }  // Overlaps what was kept: not trusted.
            if frame.header.firstSeq > expected {
                bytes += gapFrame(from: expected, to: frame.header.firstSeq - 1, reason: reason)
                gaps.append((expected, frame.header.firstSeq - 1))
            }
            let length = frame.header.frameLength
            frameBytes = [UInt8](repeating: 0, count: length)
            let n =
                (try? frameBytes.withMutableBytes { buffer throws(Errno) in
                    try reader.fd.readFully(at: frame.offset, into: buffer)
                }) ?? 0
            guard n == length else {
                throw WALError(.io, "cannot re-read an intact frame", path: reader.path, offset: frame.offset)
            }
            bytes += frameBytes
            frames += 1
            if frame.header.type == .data { records += UInt64(frame.header.recordCount) }
            expected = frame.header.lastSeq + 1
        }
        if let nextFirstSeq, expected < nextFirstSeq {
            bytes += gapFrame(from: expected, to: nextFirstSeq - 1, reason: reason)
            gaps.append((expected, nextFirstSeq - 1))
        }
        let temporary = reader.path + ".repair.tmp"
        try? FileSystem.remove(temporary)
        try writeNewFile(temporary, bytes: bytes)
        // Publish without a moment where the segment is missing: the original gets its second name in quarantine/
        // first (a hard link), then the rebuilt file replaces it in one rename. A failure in between leaves the
        // original in place, and the next repair starts over.
        try FileSystem.link(reader.path, kept)
        try FileSystem.rename(temporary, reader.path)
        try FileSystem.syncDirectory(directory.path + "/" + quarantineDirectoryName)
        try FileSystem.syncDirectory(directory.path)

        var problems: [String] = []
        if let headerProblem { problems.append("segment header: \(headerProblem)") }
        for damage in scan.damage {
            problems.append("byte \(damage.offset): \(damage.reason) (\(damage.length) bytes)")
        }
        for offset in undecodable.sorted() { problems.append("byte \(offset): records do not decode") }
        if let torn = scan.tornTailOffset, scan.tornTailBytes > 0 {
            problems.append(
                "byte \(torn): \(scan.tornTailBytes) unreadable bytes at the end"
                    + (nextFirstSeq == nil ? " (a torn tail, not copied)" : " of a sealed segment")
            )
        }
        if reader.header.logID != meta.logID { problems.append("segment header names another log") }
        if zip(scan.frames, scan.frames.dropFirst()).contains(where: { $1.header.firstSeq <= $0.header.lastSeq }) {
            problems.append("a frame repeats sequence numbers of an earlier one")
        }
        report.actions.append(
            .init(
                kind: "quarantined",
                file: name,
                keptAt: relative(kept, directory),
                bytes: scan.fileSize,
                detail: problems.joined(separator: "; ")
            )
        )
        report.actions.append(
            .init(
                kind: "salvaged",
                file: name,
                bytes: Int64(bytes.count),
                frames: frames,
                records: records,
                detail: "\(frames) intact frames (\(records) records) copied into a new \(name)"
            )
        )
        for (from, to) in gaps {
            report.actions.append(.gapWritten(file: name, from: from, to: to, reason))
        }
    }

    /// A gap frame (section 5 of wal-format.md), padded to 8 bytes.
    static func gapFrame(from: UInt64, to: UInt64, reason: String) -> [UInt8] {
        var result: [UInt8] = []
        var from = from
        while from <= to {
            let count = UInt32(min(to - from + 1, UInt64(UInt32.max)))
            let text = Array(reason.utf8.prefix(1024))
            let header = text.withUnsafeBytes { FrameHeader.gap(firstSeq: from, count: count, payload: $0) }
            var frame = [UInt8](repeating: 0, count: header.frameLength)
            frame.withUnsafeMutableBytes { buffer in
                guard let base = buffer.baseAddress else { return }
                header.encode(into: base)
            }
            frame.replaceSubrange(LogFormat.frameHeaderSize..<LogFormat.frameHeaderSize + text.count, with: text)
            result += frame
            from += UInt64(count)
        }
        return result
    }

    private static func writeNewFile(_ path: String, bytes: [UInt8]) throws(WALError) {
        let fd = try FileSystem.open(
            path,
            .writeOnly,
            options: [.create, .exclusiveCreate, .noFollow],
            permissions: [.ownerReadWrite]
        )
        do {
            try bytes.withBytes { buffer throws(Errno) in try fd.writeFully(at: 0, from: buffer) }
            try fd.fullSync()
            try fd.close()
        } catch {
            try? fd.close()
            throw WALError.io("cannot write", path: path, error as? Errno ?? .ioError)
        }
    }

    private static func relative(_ path: String, _ directory: LogDirectory) -> String {
        path.hasPrefix(directory.path + "/") ? String(path.dropFirst(directory.path.count + 1)) : path
    }
}
