import SystemPackage

/// A read-only examination of a log directory: what `walctl inspect` and `walctl verify` print.
///
/// Never takes the writer's lock and never writes; safe on a live log, a crashed one, or a read-only copy.
public struct LogSummary: Sendable, Codable, Equatable {
    public struct SegmentInfo: Sendable, Codable, Equatable {
        public var file: String
        public var firstSeq: UInt64
        public var lastSeq: UInt64?
        public var frames: Int
        public var records: UInt64
        public var bytesOnDisk: Int64
        public var bytesAllocated: Int64
        public var bytesRaw: Int64
        public var active: Bool
        public var firstSealedAtNanos: UInt64?
        public var lastSealedAtNanos: UInt64?
    }

    public struct Problem: Sendable, Codable, Equatable {
        public var file: String
        public var offset: Int64
        public var length: Int64
        public var reason: String
    }

    public struct Staged: Sendable, Codable, Equatable {
        /// Records in the staging file not yet in a segment (a live writer seals them within its seal delay; after a
        /// crash the next open seals them).
        public var records: Int
        public var firstSeq: UInt64?
        public var lastSeq: UInt64?

        /// snake_case, like every other key of `inspect --json`.
        enum CodingKeys: String, CodingKey {
            case records
            case firstSeq = "first_seq"
            case lastSeq = "last_seq"
        }
    }

    public var logID: String
    public var segments: Int
    public var frames: Int
    public var records: UInt64
    public var firstSeq: UInt64?
    public var lastSeq: UInt64?
    public var bytesOnDisk: Int64
    public var bytesAllocated: Int64
    public var bytesRaw: Int64
    public var corruptFrames: Int
    public var tornTailBytes: Int64
    public var gaps: [GapMarker]
    public var cursors: [String: UInt64]
    public var staged: Staged
    public var writerPID: Int32?
    public var damage: [Problem]
    public var segmentList: [SegmentInfo]

    enum CodingKeys: String, CodingKey {
        case logID = "log_id"
        case segments, frames, records
        case firstSeq = "first_seq"
        case lastSeq = "last_seq"
        case bytesOnDisk = "bytes_on_disk"
        case bytesAllocated = "bytes_allocated"
        case bytesRaw = "bytes_raw"
        case corruptFrames = "corrupt_frames"
        case tornTailBytes = "torn_tail_bytes"
        case gaps, cursors, staged
        case writerPID = "writer_pid"
        case damage
        case segmentList = "segment_list"
    }
}

extension GapMarker {
    enum CodingKeys: String, CodingKey {
        case fromSeq = "from_seq"
        case toSeq = "to_seq"
        case reason
    }
}

extension LogSummary.SegmentInfo {
    enum CodingKeys: String, CodingKey {
        case file
        case firstSeq = "first_seq"
        case lastSeq = "last_seq"
        case frames, records
        case bytesOnDisk = "bytes_on_disk"
        case bytesAllocated = "bytes_allocated"
        case bytesRaw = "bytes_raw"
        case active
        case firstSealedAtNanos = "first_sealed_at_ns"
        case lastSealedAtNanos = "last_sealed_at_ns"
    }
}

public enum LogInspector {
    /// Examines every segment. With `decodeRecords`, also decompresses every frame and checks its record layout
    /// (what `verify` does); otherwise checks checksums only.
    public static func examine(path: String, decodeRecords: Bool = false) throws(WALError) -> LogSummary {
        let directory = LogDirectory(path: path)
        let meta = try directory.readMeta()
        let files = try directory.segments()
        let writerActive = directory.isWriterActive()
        var summary = LogSummary(
            logID: meta.logID.description,
            segments: files.count,
            frames: 0,
            records: 0,
            bytesOnDisk: 0,
            bytesAllocated: 0,
            bytesRaw: 0,
            corruptFrames: 0,
            tornTailBytes: 0,
            gaps: [],
            cursors: [:],
            staged: .init(records: 0),
            writerPID: writerActive ? directory.lockHolderPID() : nil,
            damage: [],
            segmentList: []
        )
        var decoder = FrameDecoder()
        var lastSealed: UInt64 = 0
        var orderProblems: [LogSummary.Problem] = []
        for (index, file) in files.enumerated() {
            let reader: SegmentFileReader
            do {
                reader = try SegmentFileReader(path: file.path)
            } catch  where error.code == .notFound {
                continue  // Deleted by retention while we looked.
            } catch {
                // The last segment, never written (a crash while creating it): it holds nothing; the next writer
                // removes it. Not damage (seqs it should hold, if any, are checked against the high-water mark).
                if index == files.count - 1 && SegmentFileReader.isUnwritten(path: file.path) { continue }
                summary.corruptFrames += 1
                let size = FileSystem.size(file.path) ?? 0
                summary.damage.append(.init(file: file.path, offset: 0, length: size, reason: error.message))
                continue
            }
            if let problem = identityProblem(of: reader, named: file, logID: meta.logID) {
                // Its records are not this log's, or retention and readers would take them for other seqs.
                summary.corruptFrames += 1
                let size = FileSystem.size(file.path) ?? 0
                summary.damage.append(.init(file: file.path, offset: 0, length: size, reason: problem))
                if reader.header.logID != meta.logID { continue }
            }
            var info = LogSummary.SegmentInfo(
                file: file.name,
                firstSeq: reader.header.firstSeq,
                frames: 0,
                records: 0,
                bytesOnDisk: 0,
                bytesAllocated: 0,
                bytesRaw: 0,
                active: index == files.count - 1
            )
            var decodeProblems: [LogSummary.Problem] = []
            let scan = SegmentScan.scan(reader) { frame, stored in
                // Sequence numbers are strictly increasing and every one is a record or in a gap marker.
                if lastSealed > 0 && frame.header.firstSeq <= lastSealed {
                    orderProblems.append(
                        .init(
                            file: file.path,
                            offset: frame.offset,
                            length: Int64(frame.header.frameLength),
                            reason: "frame claims seqs \(frame.header.firstSeq)...\(frame.header.lastSeq), but the "
                                + "log already reached seq \(lastSealed) (overlapping or going backwards)"
                        )
                    )
                } else if lastSealed > 0 && frame.header.firstSeq > lastSealed + 1 {
                    orderProblems.append(
                        .init(
                            file: file.path,
                            offset: frame.offset,
                            length: 0,
                            reason: "seqs \(lastSealed + 1)...\(frame.header.firstSeq - 1) are missing "
                                + "(neither a record nor a gap marker)"
                        )
                    )
                }
                info.frames += 1
                info.firstSealedAtNanos = info.firstSealedAtNanos ?? frame.header.sealedAtNanos
                info.lastSealedAtNanos = frame.header.sealedAtNanos
                info.lastSeq = frame.header.lastSeq
                switch frame.header.type {
                case .gap:
                    let reason = String(decoding: stored, as: UTF8.self)
                    summary.gaps.append(
                        GapMarker(fromSeq: frame.header.firstSeq, toSeq: frame.header.lastSeq, reason: reason)
                    )
                case .data:
                    info.records += UInt64(frame.header.recordCount)
                    info.bytesRaw += Int64(frame.header.rawLength) - 4 * Int64(frame.header.recordCount)
                    if summary.firstSeq == nil { summary.firstSeq = frame.header.firstSeq }
                    if decodeRecords {
                        let problem = decoder.forEachRecord(header: frame.header, stored: stored, from: 0) { _, _ in }
                        if let problem {
                            decodeProblems.append(
                                .init(
                                    file: file.path,
                                    offset: frame.offset,
                                    length: Int64(frame.header.frameLength),
                                    reason: problem
                                )
                            )
                        }
                    }
                }
                lastSealed = max(lastSealed, frame.header.lastSeq)
            }
            info.bytesOnDisk = scan.dataEnd + scan.tornTailBytes
            info.bytesAllocated = scan.allocatedBytes
            summary.frames += info.frames
            summary.records += info.records
            summary.bytesRaw += info.bytesRaw
            summary.bytesOnDisk += info.bytesOnDisk
            summary.bytesAllocated += info.bytesAllocated
            for damage in scan.damage {
                summary.damage.append(
                    .init(file: damage.path, offset: damage.offset, length: damage.length, reason: damage.reason)
                )
            }
            summary.damage.append(contentsOf: decodeProblems)
            if scan.tornTailBytes > 0 {
                if info.active {
                    summary.tornTailBytes += scan.tornTailBytes
                } else {
                    summary.damage.append(
                        .init(
                            file: file.path,
                            offset: scan.tornTailOffset ?? scan.dataEnd,
                            length: scan.tornTailBytes,
                            reason: "unreadable bytes at the end of a sealed segment"
                        )
                    )
                }
            }
            summary.segmentList.append(info)
        }
        summary.damage.append(contentsOf: orderProblems)
        summary.corruptFrames = summary.damage.count
        summary.lastSeq = lastSealed > 0 ? lastSealed : nil
        summary.bytesAllocated += FileSystem.size(directory.stagingPath) ?? 0
        summary.staged = stagedRecords(directory: directory, after: lastSealed)
        let (cursors, damagedCursors) = try CursorStore(directory: directory).all()
        var logEnd = max(lastSealed, summary.staged.lastSeq ?? 0)
        let state = WriterStateRecord.read(path: directory.stagingPath)
        if let state, state.gapFirst > 0, state.gapLast > lastSealed {
            // Drops not sealed yet (the sealer is stalled, or the writer stopped): durable in the writer state, and
            // sealed as a gap marker as soon as it can be.
            summary.gaps.append(
                GapMarker(
                    fromSeq: max(state.gapFirst, lastSealed + 1),
                    toSeq: state.gapLast,
                    reason: "dropped by whenFull policy (not sealed yet: recorded in the staging file's writer state)"
                )
            )
        }
        if !writerActive, let state {
            // Drops the stopped writer had not staged yet: the next open seals their gap marker.
            if state.gapFirst > 0 && state.gapFirst <= logEnd + 1 { logEnd = max(logEnd, state.gapLast) }
            if state.highWaterSeq > logEnd {
                summary.damage.append(
                    .init(
                        file: directory.stagingPath,
                        offset: 0,
                        length: 0,
                        reason: "seqs \(logEnd + 1)...\(state.highWaterSeq) were assigned (the writer's high-water "
                            + "mark) but are not in the log: the active segment lost its end; the next writer "
                            + "records them as a gap"
                    )
                )
            }
        }
        for cursor in cursors {
            summary.cursors[cursor.name] = cursor.seq
            if cursor.seq > logEnd {
                summary.damage.append(
                    .init(
                        file: CursorStore(directory: directory).path(of: cursor.name),
                        offset: 0,
                        length: 0,
                        reason:
                            "cursor '\(cursor.name)' is at seq \(cursor.seq), ahead of the log's last seq \(logEnd) "
                            + "(the log lost records its consumers had seen; the next writer records them as a gap)"
                    )
                )
            }
        }
        for error in damagedCursors {
            summary.damage.append(.init(file: error.path ?? "", offset: 0, length: 0, reason: error.message))
        }
        summary.corruptFrames = summary.damage.count
        return summary
    }

    /// Records in the staging file after `lastSealed`, contiguous (read with pread, never mapped).
    static func stagedRecords(directory: LogDirectory, after lastSealed: UInt64) -> LogSummary.Staged {
        guard let bytes = try? FileSystem.readAll(directory.stagingPath, limit: 1 << 30) else {
            return .init(records: 0)
        }
        return bytes.withUnsafeBytes { file -> LogSummary.Staged in
            guard let geometry = try? StagingGeometry.decode(file, path: directory.stagingPath) else {
                return .init(records: 0)
            }
            var found: [(seq: UInt64, last: UInt64, data: Bool)] = []
            for index in 0..<geometry.blockCount {
                let start = LogFormat.stagingHeaderSize + index * geometry.blockSize
                guard start + geometry.blockSize <= file.count else { break }
                let block = UnsafeRawBufferPointer(rebasing: file[start..<start + geometry.blockSize])
                for record in StagedRecord.scan(block: block) {
                    let last = record.lastSeq(in: block)
                    if last > lastSealed { found.append((record.seq, last, record.kind == .data)) }
                }
            }
            found.sort { $0.seq < $1.seq }
            var expected = lastSealed + 1
            var result = LogSummary.Staged(records: 0)
            for item in found {
                if item.last < expected { continue }
                guard item.seq <= expected else { break }
                if item.data { result.records += 1 }
                result.firstSeq = result.firstSeq ?? item.seq
                result.lastSeq = item.last
                guard item.last < UInt64.max else { break }
                expected = item.last + 1
            }
            return result
        }
    }
}

extension LogInspector {
    /// The last sequence number sealed in the log, found by hopping over frame headers of the last segment (header
    /// checksums only; payloads are not read). For lag reporting; `examine` is the thorough check.
    public static func lastSealedSeqCheap(path: String) throws(WALError) -> UInt64 {
        try lastSegmentEnd(path: path).lastSeq
    }

    /// Where a reader of the log as it stands now can stop: the highest sequence number sealed in the last segment,
    /// hopping over its frame headers and past damage (zeros or bytes that are not a frame header, as a page lost to
    /// a power failure leaves) on from the next valid frame, as a reader resynchronises; nil when a read fails.
    /// Commands that read a log being written stop there instead of chasing the writer.
    public static func sealedEnd(path: String) throws(WALError) -> UInt64? {
        let end = try lastSegmentEnd(path: path, acrossHoles: true)
        return end.hop == .unreadable ? nil : end.lastSeq
    }

    /// Why the segment `reader` reads cannot be taken for what its file name says it is in this log: it belongs to
    /// another log (its header's log id), or its header's first seq is not the one its name gives (a renamed or
    /// copied file: retention and readers go by the name). Nil when it is what its name says.
    public static func identityProblem(
        of reader: SegmentFileReader,
        named file: LogDirectory.SegmentFile,
        logID: LogID
    ) -> String? {
        if reader.header.logID != logID {
            return "segment belongs to another log (log id \(reader.header.logID), this log is \(logID)); "
                + "its records are not this log's"
        }
        if reader.header.firstSeq != file.firstSeq {
            return "segment is named for seq \(file.firstSeq) but its header says it starts at seq "
                + "\(reader.header.firstSeq) (renamed or copied?): retention would take its records for other seqs"
        }
        return nil
    }

    /// The highest sequence number sealed in the log, past damage in the last segment (`sealedEnd`), falling back to
    /// `lastSealedSeqCheap` when a read across the damage fails: for what must not stop short of records the log
    /// holds, as a drain target or the check before a log is retired. (A drain target taken at the first damaged
    /// frame header let `ship --drain` exit 0 with 61,060 records unshipped.)
    public static func lastSealedSeqAcrossDamage(path: String) throws(WALError) -> UInt64 {
        if let end = try sealedEnd(path: path) { return end }
        return try lastSealedSeqCheap(path: path)
    }

    /// The highest sequence number in the last segment's frame headers (a damaged frame may go backwards: the writer's
    /// recovery takes the highest too), and why the hop stopped.
    private static func lastSegmentEnd(
        path: String,
        acrossHoles: Bool = false
    ) throws(WALError) -> (lastSeq: UInt64, hop: HopEnd) {
        let files = try LogDirectory(path: path).segments()
        guard let last = files.last else { return (0, .endOfFile) }
        let reader = try SegmentFileReader(path: last.path)
        var lastSeq = reader.header.firstSeq - 1
        let body: (FrameHeader) -> Bool = { frame in
            lastSeq = max(lastSeq, frame.lastSeq)
            return true
        }
        let hop = acrossHoles ? hopFrameHeadersAcrossHoles(reader, body) : hopFrameHeaders(reader, body)
        return (lastSeq, hop)
    }
}

extension LogInspector {
    /// When the first frame holding a record at or after `seq` was sealed (wall clock, nanoseconds), found by
    /// hopping over frame headers (across holes) from the segment that holds `seq`; nil when no frame holds one
    /// yet. A record is sealed after it was emitted, so an age measured from it falls short by at most the seal
    /// delay: how a shipper tells the age of records it has not read (its sink cannot be reached to learn where to
    /// read from).
    public static func sealedAtNanos(ofFirstRecordFrom seq: UInt64, path: String) throws(WALError) -> UInt64? {
        let files = try LogDirectory(path: path).segments()
        let start = files.lastIndex { $0.firstSeq <= seq } ?? 0
        return firstFrame(in: files[start...], acrossHoles: true) { $0.lastSeq >= seq }?.sealedAtNanos
    }

    /// The first frame header, in sequence order over `files`, that `matches` (unreadable segments are passed over).
    static func firstFrame(
        in files: ArraySlice<LogDirectory.SegmentFile>,
        acrossHoles: Bool,
        where matches: (FrameHeader) -> Bool
    ) -> FrameHeader? {
        for file in files {
            guard let reader = try? SegmentFileReader(path: file.path) else { continue }
            var found: FrameHeader?
            let body: (FrameHeader) -> Bool = { frame in
                if matches(frame) { found = frame }
                return found == nil
            }
            if acrossHoles { hopFrameHeadersAcrossHoles(reader, body) } else { hopFrameHeaders(reader, body) }
            if let found { return found }
        }
        return nil
    }
}

extension LogInspector {
    /// The first sequence number of the first frame sealed at or after `nanos` (wall clock), found by hopping over
    /// frame headers (header checksums only); 0 when every frame was sealed before. A record emitted at or after
    /// `nanos` is in such a frame (a frame is sealed after its records were appended), so reading from here sees
    /// every record of a time window: how an alert evaluator rebuilds its windows after a restart.
    public static func firstSeq(sealedAtOrAfter nanos: UInt64, path: String) throws(WALError) -> UInt64 {
        let files = try LogDirectory(path: path).segments()
        // Segments are in seq order, and so are the frames within one: the first match is the answer.
        return firstFrame(in: files[...], acrossHoles: false) { $0.sealedAtNanos >= nanos }?.firstSeq ?? 0
    }
}

extension LogInspector {
    /// Why `hopFrameHeaders` stopped.
    enum HopEnd: Equatable {
        /// The end of the file.
        case endOfFile
        /// Zeros at this offset where a header was due: the rest a writer preallocated, or a hole.
        case zeros(at: Int64)
        /// `body` returned false.
        case stopped
        /// Bytes at this offset that are not a valid frame header (damage, a torn frame).
        case notAFrame(at: Int64)
        /// A read failed.
        case unreadable
    }

    /// Calls `body` with each frame header of a segment from `offset` (the first frame by default), hopping by frame
    /// lengths (header checksums only; payloads are not read), until the first invalid header or until `body`
    /// returns false.
    @discardableResult
    static func hopFrameHeaders(
        _ reader: SegmentFileReader,
        from start: Int64 = Int64(LogFormat.segmentHeaderSize),
        _ body: (FrameHeader) -> Bool
    ) -> HopEnd {
        var offset = start
        var header = [UInt8](repeating: 0, count: LogFormat.frameHeaderSize)
        while true {
            let read = try? header.withMutableBytes { buffer throws(Errno) in
                try reader.fd.readFully(at: offset, into: buffer)
            }
            guard let n = read else { return .unreadable }
            guard n == LogFormat.frameHeaderSize else { return .endOfFile }
            guard case .success(let frame) = header.withUnsafeBytes({ FrameHeader.decode($0) }) else {
                return header.allSatisfy { $0 == 0 } ? .zeros(at: offset) : .notAFrame(at: offset)
            }
            guard body(frame) else { return .stopped }
            offset += Int64(frame.frameLength)
        }
    }

    /// As `hopFrameHeaders`, and past damage (zeros or bytes that are not a frame header, as a page lost to a power
    /// failure leaves) on from the next valid frame, as a reader resynchronises. The chain ends where no valid frame
    /// follows, or where the writer appended a frame meanwhile (it writes frames in order: the chain as it stood
    /// ends there). Reads the rest of the segment when it meets zeros (a writer's preallocated space).
    @discardableResult
    static func hopFrameHeadersAcrossHoles(_ reader: SegmentFileReader, _ body: (FrameHeader) -> Bool) -> HopEnd {
        var offset = Int64(LogFormat.segmentHeaderSize)
        while true {
            let end = hopFrameHeaders(reader, from: offset, body)
            let at: Int64
            switch end {
            case .zeros(let offset), .notAFrame(let offset): at = offset
            case .endOfFile, .stopped, .unreadable: return end
            }
            guard let next = reader.resynchronize(after: at).next else { return end }
            var scratch: [UInt8] = []
            if case .frame = reader.probe(at: at, payload: &scratch) { return end }
            offset = next
        }
    }
}
