/// Walks valid frames across the segments of a directory in sequence order, reporting what it cannot read.
///
/// Two modes, as in Prometheus' `reader.go` vs `live_reader.go`: a static walk treats the end of the last
/// segment as the end (and reports torn bytes there); a live walk treats "no more bytes yet" as a reason to wait,
/// and only calls something damage when a valid frame follows it.
final class FrameWalker {
    let directory: LogDirectory
    let live: Bool
    /// The next sequence number expected.
    private(set) var nextSeq: UInt64
    private var segment: SegmentFileReader?
    private var offset: Int64 = 0
    private var payload: [UInt8] = []
    private var heldFrame: FrameHeader?
    private var invalidSince: UInt64?
    /// Set when the walker left a segment: the next one is the first after it.
    private var finishedSegmentFirstSeq: UInt64?
    /// The log's id from `wal.meta`, read once (nil when it cannot be read: segments are then not checked).
    private lazy var logID: LogID? = try? directory.readMeta().logID
    /// After this long of an invalid frame at the live end with nothing after it, look for a valid frame beyond.
    var liveDamageGraceNanos: UInt64 = 1_000_000_000
    /// Where a suspended walk resumes: the segment it was in (by first seq) and the offset of its next frame, with the
    /// modification times of that segment and of the directory when it was suspended.
    private var suspendedAt:
        (firstSeq: UInt64, offset: Int64, segmentNanos: UInt64?, directoryNanos: UInt64?, atNanos: UInt64)?

    enum Step {
        /// A valid frame; its stored payload is in `storedPayload` until the next call.
        case frame(FrameHeader)
        /// Bytes that hold no valid frame, followed by a valid one (or by a newer segment).
        case damage(SegmentScan.Damage)
        /// Sequence numbers that are not in the log (segment deleted by retention, or lost in damage).
        case missing(from: UInt64, to: UInt64, reason: String)
        /// End of data (static), or nothing new yet (live). `tornTail` counts unreadable bytes at the very end.
        case end(tornTail: Int64)
    }

    init(directory: LogDirectory, from seq: UInt64, live: Bool) {
        self.directory = directory
        self.nextSeq = max(seq, 1)
        self.live = live
    }

    /// A whole segment file reported as damage (its header unreadable, or another log's).
    static func wholeFile(_ file: LogDirectory.SegmentFile, reason: String) -> SegmentScan.Damage {
        SegmentScan.Damage(path: file.path, offset: 0, length: FileSystem.size(file.path) ?? 0, reason: reason)
    }

    var storedPayload: UnsafeRawBufferPointer {
        payload.withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: $0.count) }
    }

    /// Where the walker is, for error messages.
    var position: (path: String, offset: Int64)? { segment.map { ($0.path, offset) } }

    /// Closes the current segment (its descriptor and mapping) and remembers where the walk stands; the next `step`
    /// reopens it there, or starts from `nextSeq` when retention deleted it meanwhile.
    func suspend() {
        guard let current = segment, heldFrame == nil else { return }
        // The stamps first, then a look for anything the walk has not read yet: a frame at the offset, or a newer
        // segment. Only when there is none do unchanged stamps later mean that nothing was written since.
        let segmentNanos = FileSystem.modificationNanos(current.path)
        let directoryNanos = FileSystem.modificationNanos(directory.path)
        var atEnd = false
        if case .frame = current.probe(at: offset, payload: &payload) {
            atEnd = false
        } else if let files = try? directory.segments() {
            atEnd = files.allSatisfy { $0.firstSeq <= current.header.firstSeq }
        }
        suspendedAt = (
            current.header.firstSeq, offset, atEnd ? segmentNanos : nil, atEnd ? directoryNanos : nil,
            wallClockNanos()
        )
        payload = []
        segment = nil
        invalidSince = nil
    }

    /// False when the walk was suspended at the end of the log and neither its segment nor the directory changed
    /// since (two `stat`s):
    /// the writer seals frames with `pwrite`, which moves the segment's modification time, and a new segment or a
    /// deletion moves the directory's. True when it cannot tell, which includes a modification time less than
    /// `mtimeTrustNanos` before the suspension: the kernel stamps files with a coarse clock (a tick of up to 10 ms),
    /// so a write in the same tick as the stamp leaves it unchanged.
    var mayHaveMore: Bool {
        guard segment == nil, let resume = suspendedAt, let segmentNanos = resume.segmentNanos,
            let directoryNanos = resume.directoryNanos,
            max(segmentNanos, directoryNanos) &+ Self.mtimeTrustNanos < resume.atNanos
        else { return true }
        return FileSystem.modificationNanos(directory.segmentPath(firstSeq: resume.firstSeq)) != segmentNanos
            || FileSystem.modificationNanos(directory.path) != directoryNanos
    }

    static let mtimeTrustNanos: UInt64 = 200_000_000

    /// Whether the walk holds a segment open.
    var isSuspended: Bool { segment == nil }

    func step() throws(WALError) -> Step {
        while true {
            if segment == nil, let resume = suspendedAt {
                suspendedAt = nil
                let path = directory.segmentPath(firstSeq: resume.firstSeq)
                if let reopened = try? SegmentFileReader(path: path), reopened.header.firstSeq == resume.firstSeq {
                    segment = reopened
                    finishedSegmentFirstSeq = nil
                    offset = resume.offset
                    continue
                }
            }
            if segment == nil {
                let files = try directory.segments()
                // After finishing a segment, the next is the first one after it; at the start, the one holding nextSeq.
                let chosen: Int?
                if let finished = finishedSegmentFirstSeq {
                    chosen = files.firstIndex { $0.firstSeq > finished }
                } else {
                    chosen = files.isEmpty ? nil : (files.lastIndex { $0.firstSeq <= nextSeq } ?? 0)
                }
                guard let index = chosen else { return .end(tornTail: 0) }
                let file = files[index]
                if file.firstSeq > nextSeq {
                    let from = nextSeq
                    nextSeq = file.firstSeq
                    let reason =
                        finishedSegmentFirstSeq == nil
                        ? "before the first segment (deleted by retention)"
                        : "missing between \(LogFormat.segmentFileName(firstSeq: finishedSegmentFirstSeq ?? 0)) and \(file.name)"
                    return .missing(from: from, to: file.firstSeq - 1, reason: reason)
                }
                do {
                    segment = try SegmentFileReader(path: file.path)
                } catch  where error.code == .notFound {
                    continue  // Deleted by retention between listing and opening.
                } catch {
                    if index + 1 < files.count {
                        // An unreadable segment header: report the whole file, move on.
                        finishedSegmentFirstSeq = file.firstSeq
                        return .damage(Self.wholeFile(file, reason: error.message))
                    }
                    // The last segment, never written (a crash while creating it): nothing in it yet.
                    if live || SegmentFileReader.isUnwritten(path: file.path) { return .end(tornTail: 0) }
                    throw error
                }
                if let opened = segment, let logID, opened.header.logID != logID {
                    // Another log's segment: its records are not this log's, whatever seqs they carry. A live
                    // reader waits (the directory was replaced: its owner notices and reads the new log anew)
                    // rather than passing over seqs of its log as damage.
                    segment = nil
                    if live { return .end(tornTail: 0) }
                    finishedSegmentFirstSeq = file.firstSeq
                    let reason = "segment belongs to another log (log id \(opened.header.logID))"
                    return .damage(Self.wholeFile(file, reason: reason))
                }
                finishedSegmentFirstSeq = nil
                offset = Int64(LogFormat.segmentHeaderSize)
            }
            guard let current = segment else { continue }
            if let header = heldFrame {
                heldFrame = nil
                return deliver(header)
            }
            let probe = current.probe(at: offset, payload: &payload)
            if case .frame(let header) = probe {
                invalidSince = nil
                offset += Int64(header.frameLength)
                if header.lastSeq < nextSeq { continue }  // Before the start position.
                if header.firstSeq > nextSeq {
                    heldFrame = header
                    let from = nextSeq
                    nextSeq = header.firstSeq
                    return .missing(from: from, to: header.firstSeq - 1, reason: "not found in \(current.path)")
                }
                return deliver(header)
            }
            let reason: String
            if case .invalid(let why) = probe {
                reason = why
            } else {
                reason = "zeroed bytes where a frame should start"
            }
            let newer = try directory.segments().first { $0.firstSeq > current.header.firstSeq }
            if live && newer == nil {
                // The writer may be in the middle of this write; only a valid frame after it proves damage.
                guard case .invalid = probe else { return .end(tornTail: 0) }
                let now = monotonicNanos()
                let since = invalidSince ?? now
                invalidSince = since
                guard now - since >= liveDamageGraceNanos else { return .end(tornTail: 0) }
            }
            let (next, nonZeroEnd) = current.resynchronize(after: offset)
            if next != nil, case .frame = current.probe(at: offset, payload: &payload) {
                continue  // The writer finished this frame while we looked past it: not damage.
            }
            if let next {
                let damage = SegmentScan.Damage(
                    path: current.path,
                    offset: offset,
                    length: next - offset,
                    reason: reason
                )
                offset = next
                invalidSince = nil
                return .damage(damage)
            }
            invalidSince = nil
            if newer != nil {
                finishedSegmentFirstSeq = current.header.firstSeq
                segment = nil
                if nonZeroEnd > offset {
                    return .damage(
                        SegmentScan.Damage(
                            path: current.path,
                            offset: offset,
                            length: nonZeroEnd - offset,
                            reason: reason + " (unreadable end of a sealed segment)"
                        )
                    )
                }
                continue
            }
            return .end(tornTail: live ? 0 : max(0, nonZeroEnd - offset))
        }
    }

    private func deliver(_ header: FrameHeader) -> Step {
        nextSeq = header.lastSeq + 1
        return .frame(header)
    }
}

/// Decodes the records of a data frame.
struct FrameDecoder {
    private var raw: [UInt8] = []

    /// Calls `body` with each record of the frame whose sequence number is at least `from`.
    /// Returns a reason when the payload does not decode exactly as its header says.
    mutating func forEachRecord(
        header: FrameHeader,
        stored: UnsafeRawBufferPointer,
        from: UInt64,
        _ body: (UInt64, UnsafeRawBufferPointer) throws -> Void
    ) rethrows -> String? {
        let rawCount = Int(header.rawLength)
        let data: UnsafeRawBufferPointer
        switch header.codec {
        case .none:
            guard stored.count >= rawCount else { return "stored payload shorter than its raw length" }
            data = UnsafeRawBufferPointer(rebasing: stored.prefix(rawCount))
        case .lz4Block:
            if raw.count < rawCount { raw = [UInt8](repeating: 0, count: rawCount) }
            let ok = raw.withUnsafeMutableBytes { buffer in
                LZ4Codec.decompress(stored, into: UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(rawCount)))
            }
            guard ok else { return "LZ4 payload does not decompress to \(rawCount) bytes" }
            data = raw.withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: rawCount) }
        }
        // Validate the whole layout before delivering anything.
        var offset = 0
        for _ in 0..<header.recordCount {
            guard let length = data.getLE(UInt32.self, at: offset), Int(length) <= data.count - offset - 4 else {
                return "record lengths run past the frame"
            }
            offset += 4 + Int(length)
        }
        guard offset == data.count else { return "frame has \(data.count - offset) bytes after its last record" }
        offset = 0
        var seq = header.firstSeq
        for _ in 0..<header.recordCount {
            let length = Int(data.getLE(UInt32.self, at: offset) ?? 0)
            if seq >= from {
                try body(seq, UnsafeRawBufferPointer(rebasing: data[offset + 4..<offset + 4 + length]))
            }
            offset += 4 + length
            seq += 1
        }
        return nil
    }
}
