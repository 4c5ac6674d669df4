import SystemPackage

/// Builds frames and writes them at the end of the active segment, rolling to a new segment when one is full.
///
/// Owned by one thread at a time (the sealer, or `open` during recovery); `ioLock` in the writer serialises it with
/// `sync()`. A frame is written with one `pwrite` into preallocated space, so it cannot fail with ENOSPC; ENOSPC can
/// only happen while preallocating (a new segment, or the next step of the active one), and is reported as a stall,
/// not a crash.
///
/// A segment does not start at its full size: it starts with `initialAllocation` bytes allocated and grows in steps
/// (`SegmentAllocation`) as frames fill it, up to `segmentSize`, so that a quiet log holds about 1 MiB of segment.
/// Every step is `fallocate`d before a frame is written into it.
final class SegmentWriter {
    let directory: LogDirectory
    let logID: LogID
    let segmentSize: Int64

    private(set) var fd: FileDescriptor
    private(set) var segmentPath: String
    private(set) var segmentFirstSeq: UInt64
    private(set) var writeOffset: Int64
    /// End of the allocated space of the active segment: every byte before it is preallocated (or written).
    private(set) var capacity: Int64
    /// Size of the active segment file (at least `capacity`).
    private var fileSize: Int64
    /// The last sequence number written to a segment.
    private(set) var sealedSeq: UInt64
    /// Bytes all segment files occupy (sizes as on disk, preallocation included).
    var segmentBytes: Int64
    /// Why the last frame could not be written (no room and no new segment possible), or nil.
    private(set) var stallReason: String?

    /// Asked before the segment files grow by this many bytes (a new segment, or a step of the active one); returns a
    /// reason to refuse (size budget exceeded).
    var admitAllocation: (Int64) -> String? = { _ in nil }

    private var raw: [UInt8] = []
    private var rawCount = 0
    private var pendingFirstSeq: UInt64 = 0
    private var pendingRecords: UInt32 = 0
    private var frameBuffer: [UInt8] = []

    init(
        directory: LogDirectory,
        logID: LogID,
        segmentSize: Int64,
        blockSize: Int,
        fd: FileDescriptor,
        segmentPath: String,
        segmentFirstSeq: UInt64,
        writeOffset: Int64,
        capacity: Int64,
        sealedSeq: UInt64,
        segmentBytes: Int64
    ) {
        self.directory = directory
        self.logID = logID
        self.segmentSize = segmentSize
        self.fd = fd
        self.segmentPath = segmentPath
        self.segmentFirstSeq = segmentFirstSeq
        self.writeOffset = writeOffset
        self.capacity = capacity
        self.fileSize = capacity
        self.sealedSeq = sealedSeq
        self.segmentBytes = segmentBytes
        self.raw = [UInt8](repeating: 0, count: blockSize + 64)
        self.frameBuffer = [UInt8](repeating: 0, count: LogFormat.frameHeaderSize + LZ4Codec.bound(blockSize + 64) + 8)
    }

    deinit { try? fd.close() }

    // MARK: - Creating segments

    /// Creates a new segment file whose first record will be `firstSeq`, with `size` bytes preallocated (its first
    /// allocation step, `SegmentAllocation`); returns its descriptor.
    /// On ENOSPC the half-made file is removed and the error is thrown with code `.io`, cause `.noSpace`.
    static func createSegment(
        directory: LogDirectory,
        logID: LogID,
        firstSeq: UInt64,
        size: Int64
    ) throws(WALError) -> (FileDescriptor, String) {
        let path = directory.segmentPath(firstSeq: firstSeq)
        let fd = try FileSystem.open(
            path,
            .readWrite,
            options: [.create, .exclusiveCreate],
            permissions: [.ownerReadWrite]
        )
        do {
            try fd.preallocate(offset: 0, length: size)
            let header = SegmentHeader(logID: logID, firstSeq: firstSeq, createdAtNanos: wallClockNanos()).encode()
            try header.withBytes { buffer throws(Errno) in try fd.writeFully(at: 0, from: buffer) }
        } catch {
            try? fd.close()
            try? FileSystem.remove(path)
            throw WALError.io("cannot create segment", path: path, error)
        }
        try FileSystem.syncDirectory(directory.path)
        return (fd, path)
    }

    // MARK: - Frames

    /// Adds a record to the data frame being built. Records at or below `sealedSeq` are skipped (already written:
    /// a retry after a stall, or recovery re-reading staging). A record that does not follow the pending ones
    /// directly starts a frame of its own, so that a frame's seqs are always its records' seqs.
    ///
    /// Returns false on a stall; then nothing is pending any more (see `flush`), and the caller retries by adding
    /// the same records again.
    func add(seq: UInt64, bytes: UnsafeRawBufferPointer) throws(WALError) -> Bool {
        guard seq > sealedSeq else { return true }
        if pendingRecords > 0 {
            let next = pendingFirstSeq + UInt64(pendingRecords)
            if seq < next { return true }  // Already pending.
            if seq > next { guard try flush() else { return false } }
        }
        if rawCount + 4 + bytes.count > raw.count - 64 {
            guard try flush() else { return false }
        }
        if pendingRecords == 0 { pendingFirstSeq = seq }
        raw.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress! + rawCount
            base.putLE(UInt32(bytes.count), at: 0)
            if let source = bytes.baseAddress, bytes.count > 0 {
                (base + 4).copyMemory(from: source, byteCount: bytes.count)
            }
        }
        rawCount += 4 + bytes.count
        pendingRecords += 1
        return true
    }

    /// Writes the data frame being built, if any. Returns false on a stall.
    ///
    /// Whatever happens, the pending frame is gone afterwards: written, or discarded on a stall or an error. A
    /// retry must rebuild it from staging; keeping it and adding the same records again would put them in the
    /// frame twice, under the wrong sequence numbers.
    func flush() throws(WALError) -> Bool {
        guard pendingRecords > 0 else { return true }
        defer {
            pendingRecords = 0
            rawCount = 0
        }
        let count = rawCount
        let frameLength: Int = frameBuffer.withUnsafeMutableBytes { frame in
            let payloadArea = UnsafeMutableRawBufferPointer(rebasing: frame[LogFormat.frameHeaderSize...])
            let source = raw.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0.prefix(count)) }
            var stored = LZ4Codec.compress(source, into: payloadArea)
            var codec = FrameCodec.lz4Block
            if stored <= 0 || stored >= count {
                payloadArea.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: count)
                stored = count
                codec = .none
            }
            let header = FrameHeader(
                type: .data,
                codec: codec,
                firstSeq: pendingFirstSeq,
                recordCount: pendingRecords,
                rawLength: UInt32(count),
                storedLength: UInt32(stored),
                payloadCRC: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: payloadArea.prefix(stored))),
                sealedAtNanos: wallClockNanos()
            )
            header.encode(into: frame.baseAddress!)
            let total = header.frameLength
            frame.baseAddress!.advanced(by: LogFormat.frameHeaderSize + stored)
                .initializeMemory(as: UInt8.self, repeating: 0, count: total - LogFormat.frameHeaderSize - stored)
            return total
        }
        guard try writeFrame(length: frameLength, firstSeq: pendingFirstSeq) else { return false }
        sealedSeq = pendingFirstSeq + UInt64(pendingRecords) - 1
        return true
    }

    /// Writes a gap marker frame for `from...to` (after flushing pending records). Returns false on a stall.
    func gap(from: UInt64, to: UInt64, reason: String) throws(WALError) -> Bool {
        guard try flush() else { return false }
        var from = from
        if to <= sealedSeq { return true }
        from = max(from, sealedSeq + 1)
        while from <= to {
            let count = UInt32(min(to - from + 1, UInt64(UInt32.max)))
            let text = Array(reason.utf8.prefix(1024))
            let frameLength: Int = frameBuffer.withUnsafeMutableBytes { frame in
                let payload = frame.baseAddress! + LogFormat.frameHeaderSize
                text.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: text.count) }
                let header = FrameHeader.gap(
                    firstSeq: from,
                    count: count,
                    payload: UnsafeRawBufferPointer(start: payload, count: text.count)
                )
                header.encode(into: frame.baseAddress!)
                let total = header.frameLength
                (payload + text.count).initializeMemory(as: UInt8.self, repeating: 0, count: total - 48 - text.count)
                return total
            }
            guard try writeFrame(length: frameLength, firstSeq: from) else { return false }
            sealedSeq = from + UInt64(count) - 1
            from = sealedSeq + 1
        }
        return true
    }

    private func writeFrame(length: Int, firstSeq: UInt64) throws(WALError) -> Bool {
        // The log's first invariant, checked where it is made: frames follow each other seq by seq.
        guard firstSeq == sealedSeq + 1 else {
            throw WALError(
                .corrupt,
                "internal error: a frame starting at seq \(firstSeq) would follow seq \(sealedSeq); not written",
                path: segmentPath
            )
        }
        if writeOffset + Int64(length) > capacity {
            guard makeRoom(firstSeq: firstSeq, needing: Int64(length)) else { return false }
        }
        do {
            try frameBuffer.withBytes { buffer throws(Errno) in
                try fd.writeFully(at: writeOffset, from: UnsafeRawBufferPointer(rebasing: buffer.prefix(length)))
            }
        } catch {
            stallReason = "write failed: \(error)"
            throw WALError.io("cannot write frame", path: segmentPath, error)
        }
        writeOffset += Int64(length)
        stallReason = nil
        return true
    }

    /// Makes room for a frame of `needing` bytes that does not fit in the allocated space: grows the active segment
    /// by its next step while the frame fits in `segmentSize` (or while the segment holds no frame yet and starts where
    /// this frame does: a segment left with its header only, by a repair or a crash), else rolls to a new segment.
    /// Returns false on a stall (`stallReason` says why); nothing is written then, and the caller retries later.
    private func makeRoom(firstSeq: UInt64, needing: Int64) -> Bool {
        let end = writeOffset + needing
        let empty = writeOffset == Int64(LogFormat.segmentHeaderSize) && firstSeq == segmentFirstSeq
        if end <= segmentSize || empty {
            return grow(toHold: end)
        }
        return roll(firstSeq: firstSeq, needing: needing)
    }

    /// Allocates the active segment's next step (or, when the budget or the disk cannot give that much, only what
    /// `end` needs). The new range is `fallocate`d before anything is written into it.
    private func grow(toHold end: Int64) -> Bool {
        let preferred = SegmentAllocation.capacity(toHold: end, from: capacity, segmentSize: segmentSize)
        var reason = "no room"
        for target in preferred > end ? [preferred, end] : [end] {
            let added = max(0, target - fileSize)
            if let refusal = admitAllocation(added) {
                reason = refusal
                continue
            }
            do {
                try fd.preallocate(offset: capacity, length: target - capacity)
            } catch {
                reason = error == .noSpace ? "no space left on device" : "cannot grow segment: \(error)"
                continue
            }
            segmentBytes += added
            fileSize = max(fileSize, target)
            capacity = target
            return true
        }
        stallReason = reason
        return false
    }

    /// Seals the active segment (trimmed to its data, synced) and starts a new one beginning at `firstSeq`, with its
    /// first allocation step.
    private func roll(firstSeq: UInt64, needing: Int64) -> Bool {
        let size = SegmentAllocation.capacity(
            toHold: Int64(LogFormat.segmentHeaderSize) + needing,
            from: 0,
            segmentSize: segmentSize
        )
        if let refusal = admitAllocation(size) {
            stallReason = refusal
            return false
        }
        let created: (FileDescriptor, String)
        do {
            created = try Self.createSegment(directory: directory, logID: logID, firstSeq: firstSeq, size: size)
        } catch {
            stallReason =
                error.cause == .noSpace ? "no space left on device" : "cannot create segment: \(error.description)"
            return false
        }
        // The old segment is complete: trim its preallocated tail, make it durable, then switch.
        do {
            try fd.setSize(writeOffset)
            try fd.dataSync()
        } catch {
            // Trimming is an optimisation; a failure leaves zeroes that readers treat as the end.
        }
        try? fd.close()
        segmentBytes += size - (fileSize - writeOffset)
        fd = created.0
        segmentPath = created.1
        segmentFirstSeq = firstSeq
        writeOffset = Int64(LogFormat.segmentHeaderSize)
        capacity = size
        fileSize = size
        return true
    }

    /// Called once when a writer opens the log, on the (reopened) active segment whose data ends at `writeOffset`:
    /// keeps the allocation its data calls for (`SegmentAllocation`) and releases the rest (the 64 MiB a writer of an
    /// earlier version preallocated, whatever a quiet log never used), then makes sure the space left is allocated
    /// (a copy of the log may have made it sparse). Every failure here only costs room: the segment then grows from
    /// `writeOffset`, as the sealer's next frame needs it.
    func settleAllocation() {
        let wanted = SegmentAllocation.capacity(toHold: writeOffset, from: 0, segmentSize: segmentSize)
        if fileSize > wanted, (try? fd.setSize(wanted)) != nil {
            segmentBytes -= fileSize - wanted
            fileSize = wanted
        }
        capacity = writeOffset
        if fileSize > writeOffset, (try? fd.preallocate(offset: writeOffset, length: fileSize - writeOffset)) != nil {
            capacity = fileSize
        }
    }

    /// fdatasync of the active segment.
    func sync() throws(WALError) {
        do { try fd.dataSync() } catch { throw WALError.io("fdatasync failed", path: segmentPath, error) }
    }

    /// Syncs the active segment on a clean close. It keeps its allocated space, so that the next writer appends
    /// without creating a file.
    func syncForClose() {
        try? fd.dataSync()
    }
}

/// How much of a segment file the writer allocates: a pure rule, tested without I/O.
///
/// A segment starts with `initial` bytes (1 MiB) allocated. When a frame does not fit, the allocation grows by as much
/// again as it has (doubling), by at most `maximumStep` (8 MiB) at a time, never past the segment size (except for a
/// single frame larger than that). So an idle log holds 1 MiB of segment, and the preallocated but unused part of the
/// active segment is at most the data it already holds, and at most 8 MiB.
@_spi(Testing) public enum SegmentAllocation {
    /// What a new segment starts with: 1 MiB (or the segment size, when smaller).
    public static let initial: Int64 = 1 << 20
    /// The largest step the allocation grows by: 8 MiB.
    public static let maximumStep: Int64 = 8 << 20

    /// The allocation that holds `end` bytes, reached from an allocation of `current` bytes by the steps above.
    public static func capacity(toHold end: Int64, from current: Int64, segmentSize: Int64) -> Int64 {
        var capacity = max(current, min(initial, segmentSize))
        while capacity < end && capacity < segmentSize {
            capacity = min(segmentSize, capacity + min(capacity, maximumStep))
        }
        return max(capacity, end)
    }
}
