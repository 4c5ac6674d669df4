import SystemPackage

/// Reads frames of one segment file with `pread`, never `mmap`: a segment may be truncated (sealed) or deleted
/// (retention) while it is read, and a read past the end must be a short read, not a SIGBUS.
///
/// Every length and offset read from disk is bounds-checked before use.
public final class SegmentFileReader {
    public let path: String
    public let header: SegmentHeader
    let fd: FileDescriptor

    public init(path: String) throws(WALError) {
        let fd = try FileSystem.open(path, .readOnly)
        do {
            var bytes = [UInt8](repeating: 0, count: LogFormat.segmentHeaderSize)
            let n = try bytes.withMutableBytes { buffer throws(Errno) in try fd.readFully(at: 0, into: buffer) }
            self.header = try bytes.withBytes { buffer throws(WALError) in
                try SegmentHeader.decode(UnsafeRawBufferPointer(rebasing: buffer.prefix(n)), path: path)
            }
        } catch let error as WALError {
            try? fd.close()
            throw error
        } catch {
            try? fd.close()
            throw WALError(.io, "cannot read segment header: \(error)", path: path)
        }
        self.path = path
        self.fd = fd
    }

    /// True when the file at `path` is shorter than a segment header, or its header bytes are all zero and no valid
    /// frame follows them: what a crash while creating a segment leaves. Such a last segment holds nothing
    /// (wal-format.md section 5, step 3). A zeroed header with frames after it (a page lost over the header) is
    /// damage, not this: its frames are records that only `walctl verify --repair` may move.
    public static func isUnwritten(path: String) -> Bool {
        guard let bytes = try? FileSystem.readAll(path, limit: LogFormat.segmentHeaderSize) else { return false }
        guard bytes.count < LogFormat.segmentHeaderSize || bytes.allSatisfy({ $0 == 0 }) else { return false }
        guard bytes.count == LogFormat.segmentHeaderSize else { return true }
        return !hasFrame(afterZeroedHeaderOf: path)
    }

    /// Whether a valid frame lies anywhere after the header of the segment at `path` (read failures count as one:
    /// when in doubt the file is not taken for empty).
    static func hasFrame(afterZeroedHeaderOf path: String) -> Bool {
        guard
            let reader = try? SegmentFileReader(
                path: path,
                assumedHeader: SegmentHeader(
                    logID: LogID(bytes: [UInt8](repeating: 0, count: 16)),
                    firstSeq: 0,
                    createdAtNanos: 0
                )
            )
        else { return true }
        var payload: [UInt8] = []
        let first = Int64(LogFormat.segmentHeaderSize)
        switch reader.probe(at: first, payload: &payload) {
        case .frame: return true
        case .end, .invalid: return reader.resynchronize(after: first).next != nil
        }
    }

    /// Opens a segment whose header is unreadable, with the header the caller knows (repair salvages its frames).
    init(path: String, assumedHeader: SegmentHeader) throws(WALError) {
        self.fd = try FileSystem.open(path, .readOnly)
        self.path = path
        self.header = assumedHeader
    }

    deinit { try? fd.close() }

    /// Current size of the file (it changes while a writer runs).
    public func size() -> Int64 { (try? fd.size()) ?? 0 }

    /// Bytes the file occupies on disk.
    public func allocatedSize() -> Int64 { (try? fd.allocatedSize()) ?? 0 }

    /// What lies at an offset.
    public enum Probe {
        /// A frame whose header and payload checksums are good; the payload (stored form) is in the buffer.
        case frame(FrameHeader)
        /// End of written data: end of file, or a zero header (preallocated space never written).
        case end
        /// Something that is not a valid frame.
        case invalid(String)
    }

    /// Reads and checks the frame at `offset`; on success `payload` holds its stored bytes.
    public func probe(at offset: Int64, payload: inout [UInt8]) -> Probe {
        var headerBytes = [UInt8](repeating: 0, count: LogFormat.frameHeaderSize)
        let n: Int
        do {
            n = try headerBytes.withMutableBytes { buffer throws(Errno) in
                try fd.readFully(at: offset, into: buffer)
            }
        } catch {
            return .invalid("read error: \(error)")
        }
        if n < LogFormat.frameHeaderSize {
            return headerBytes[0..<n].allSatisfy { $0 == 0 } ? .end : .invalid("truncated frame header")
        }
        let decoded = headerBytes.withUnsafeBytes { FrameHeader.decode($0) }
        let header: FrameHeader
        switch decoded {
        case .failure(.zero): return .end
        case .failure(let defect): return .invalid(defect.rawValue)
        case .success(let value): header = value
        }
        let stored = Int(header.storedLength)
        if payload.count < stored { payload = [UInt8](repeating: 0, count: stored) }
        let got: Int
        do {
            got = try payload.withMutableBytes { buffer throws(Errno) in
                try fd.readFully(
                    at: offset + Int64(LogFormat.frameHeaderSize),
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(stored))
                )
            }
        } catch {
            return .invalid("read error: \(error)")
        }
        guard got == stored else { return .invalid("frame payload is truncated (\(got) of \(stored) bytes)") }
        let crc = payload.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0.prefix(stored))) }
        guard crc == header.payloadCRC else { return .invalid("payload checksum mismatch") }
        return .frame(header)
    }

    /// After an invalid frame at `offset`: the offset of the next valid frame (searching 8-byte aligned positions),
    /// and the end of the last non-zero byte before it (or before end of file when none is found).
    public func resynchronize(after offset: Int64) -> (next: Int64?, nonZeroEnd: Int64) {
        let fileSize = size()
        var position = offset + 8
        var nonZeroEnd = offset
        var scratch: [UInt8] = []
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        // Count non-zero bytes at `offset` itself (the invalid header).
        nonZeroEnd = lastNonZero(from: offset, to: min(offset + 8, fileSize), buffer: &buffer) ?? offset
        while position < fileSize {
            let length = Int(min(Int64(chunk), fileSize - position))
            let n =
                (try? buffer.withMutableBytes { raw throws(Errno) in
                    try fd.readFully(at: position, into: UnsafeMutableRawBufferPointer(rebasing: raw.prefix(length)))
                }) ?? 0
            if n == 0 { break }
            // Preallocated space is zeros: skip an all-zero chunk without looking for a magic in it.
            if Self.isAllZero(buffer, count: n) {
                position += Int64(n)
                continue
            }
            var index = 0
            while index + 4 <= n {
                let isMagic =
                    buffer[index] == 0x57 && buffer[index + 1] == 0x46 && buffer[index + 2] == 0x52
                    && buffer[index + 3] == 0x4D
                if isMagic, case .frame = probe(at: position + Int64(index), payload: &scratch) {
                    return (position + Int64(index), max(nonZeroEnd, position + Int64(index)))
                }
                index += 8
            }
            if let last = buffer[0..<n].lastIndex(where: { $0 != 0 }) {
                nonZeroEnd = max(nonZeroEnd, position + Int64(last) + 1)
            }
            position += Int64(n)
        }
        return (nil, nonZeroEnd)
    }

    /// True when the first `count` bytes are zero (eight at a time).
    static func isAllZero(_ buffer: [UInt8], count: Int) -> Bool {
        buffer.withUnsafeBytes { raw in
            var index = 0
            while index + 8 <= count {
                if raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) != 0 { return false }
                index += 8
            }
            while index < count {
                if raw[index] != 0 { return false }
                index += 1
            }
            return true
        }
    }

    private func lastNonZero(from start: Int64, to end: Int64, buffer: inout [UInt8]) -> Int64? {
        guard end > start else { return nil }
        let length = Int(end - start)
        let n =
            (try? buffer.withMutableBytes { raw throws(Errno) in
                try fd.readFully(at: start, into: UnsafeMutableRawBufferPointer(rebasing: raw.prefix(length)))
            }) ?? 0
        guard let last = buffer[0..<n].lastIndex(where: { $0 != 0 }) else { return nil }
        return start + Int64(last) + 1
    }
}

// MARK: - Whole-segment scan

/// The result of checking every frame of one segment.
public struct SegmentScan: Sendable {
    public struct Frame: Sendable {
        public var offset: Int64
        public var header: FrameHeader
    }

    /// A region that holds no valid frame, followed by a valid one.
    public struct Damage: Sendable, Equatable {
        public var path: String
        public var offset: Int64
        public var length: Int64
        public var reason: String
    }

    public var path: String
    public var header: SegmentHeader
    public var frames: [Frame] = []
    public var damage: [Damage] = []
    /// Non-zero bytes after the last valid frame with no valid frame after them: a write torn by a crash.
    public var tornTailOffset: Int64?
    public var tornTailBytes: Int64 = 0
    /// End of the last valid frame.
    public var dataEnd: Int64
    public var fileSize: Int64
    public var allocatedBytes: Int64

    /// Checks every frame of a segment, from its header to the end of the file.
    /// `visit` is called with each valid frame and its stored payload.
    public static func scan(
        _ reader: SegmentFileReader,
        visit: ((Frame, UnsafeRawBufferPointer) -> Void)? = nil
    ) -> SegmentScan {
        var result = SegmentScan(
            path: reader.path,
            header: reader.header,
            dataEnd: Int64(LogFormat.segmentHeaderSize),
            fileSize: reader.size(),
            allocatedBytes: reader.allocatedSize()
        )
        var offset = Int64(LogFormat.segmentHeaderSize)
        var payload: [UInt8] = []
        while true {
            let reason: String
            switch reader.probe(at: offset, payload: &payload) {
            case .frame(let header):
                let frame = Frame(offset: offset, header: header)
                result.frames.append(frame)
                if let visit {
                    payload.withUnsafeBytes { raw in
                        visit(frame, UnsafeRawBufferPointer(rebasing: raw.prefix(Int(header.storedLength))))
                    }
                }
                offset += Int64(header.frameLength)
                result.dataEnd = offset
                continue
            case .end:
                reason = "zeroed bytes where a frame should start"
            case .invalid(let why):
                reason = why
            }
            let (next, nonZeroEnd) = reader.resynchronize(after: offset)
            if next != nil, case .frame = reader.probe(at: offset, payload: &payload) {
                continue  // A frame the writer was still writing when first probed (a live log): read it now.
            }
            if let next {
                result.damage.append(Damage(path: reader.path, offset: offset, length: next - offset, reason: reason))
                offset = next
                continue
            }
            if nonZeroEnd > offset {
                result.tornTailOffset = offset
                result.tornTailBytes = nonZeroEnd - offset
            }
            return result
        }
    }
}
