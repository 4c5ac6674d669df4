import SystemPackage

/// The mmap'd staging file: a header page and a ring of fixed-size blocks into which `append` writes raw,
/// checksummed records. See `wal-format.md`, "Staging file".
///
/// Not thread-safe by itself: the writer serialises every store into it under its lock.
final class StagingArea {
    let path: String
    let blockSize: Int
    let blockCount: Int
    let logID: LogID
    let base: UnsafeMutableRawPointer
    private let region: MappedRegion
    private let fd: FileDescriptor

    var fileSize: Int { LogFormat.stagingHeaderSize + blockSize * blockCount }

    private init(path: String, fd: FileDescriptor, region: consuming MappedRegion, geometry: StagingGeometry) {
        self.path = path
        self.fd = fd
        self.base = region.base
        self.region = region
        self.blockSize = geometry.blockSize
        self.blockCount = geometry.blockCount
        self.logID = geometry.logID
    }

    deinit { try? fd.close() }

    /// Creates (or replaces) the staging file, fully preallocated so stores into the mapping can never hit ENOSPC
    /// (which would be a SIGBUS), and synced.
    static func create(path: String, geometry: StagingGeometry) throws(WALError) -> StagingArea {
        let fd = try FileSystem.open(
            path,
            .readWrite,
            options: [.create, .truncate, .noFollow],
            permissions: [.ownerReadWrite]
        )
        let size = LogFormat.stagingHeaderSize + geometry.blockSize * geometry.blockCount
        do {
            try fd.preallocate(offset: 0, length: Int64(size))
            let header = geometry.encode()
            try header.withBytes { buffer throws(Errno) in try fd.writeFully(at: 0, from: buffer) }
            try fd.fullSync()
        } catch {
            try? fd.close()
            try? FileSystem.remove(path)
            throw WALError.io("cannot create the staging file", path: path, error)
        }
        do {
            let region = try MappedRegion(fd: fd, length: size, path: path)
            return StagingArea(path: path, fd: fd, region: region, geometry: geometry)
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Opens an existing staging file read-write, validating its header.
    static func open(path: String) throws(WALError) -> StagingArea {
        let fd = try FileSystem.open(path, .readWrite, options: [.noFollow])
        do {
            try FileSystem.refuseHardLinks(fd, path: path)
            var header = [UInt8](repeating: 0, count: StagingGeometry.encodedSize)
            let n = try header.withMutableBytes { buffer throws(Errno) in try fd.readFully(at: 0, into: buffer) }
            let geometry = try header.withBytes { buffer throws(WALError) in
                try StagingGeometry.decode(UnsafeRawBufferPointer(rebasing: buffer.prefix(n)), path: path)
            }
            let size = try fd.size()
            guard size >= Int64(LogFormat.stagingHeaderSize + geometry.blockSize * geometry.blockCount) else {
                throw WALError(.corrupt, "staging file is shorter than its header says", path: path, offset: size)
            }
            let region = try MappedRegion(
                fd: fd,
                length: LogFormat.stagingHeaderSize + geometry.blockSize * geometry.blockCount,
                path: path
            )
            return StagingArea(path: path, fd: fd, region: region, geometry: geometry)
        } catch let error as WALError {
            try? fd.close()
            throw error
        } catch {
            try? fd.close()
            throw WALError(.io, "cannot open the staging file: \(error)", path: path)
        }
    }

    /// The log id in the header of the staging file at `path`, read with `pread`; nil when the header is unreadable.
    static func logID(path: String) -> LogID? {
        guard let bytes = try? FileSystem.readAll(path, limit: StagingGeometry.encodedSize, followLink: false) else {
            return nil
        }
        return bytes.withUnsafeBytes { try? StagingGeometry.decode($0, path: path).logID }
    }

    @inline(__always)
    func block(_ index: Int) -> UnsafeMutableRawPointer {
        base + LogFormat.stagingHeaderSize + index * blockSize
    }

    /// Writes one staged record at `pointer`: header (length and kind, checksum, sequence number), then payload.
    /// The checksum covers payload, then the first 4 header bytes, then the sequence number.
    @inline(__always)
    static func store(
        at pointer: UnsafeMutableRawPointer,
        kind: StagedRecord.Kind,
        seq: UInt64,
        payload: UnsafeRawPointer?,
        count: Int,
        payloadCRC: UInt32
    ) {
        let lengthAndKind = UInt32(count) | (UInt32(kind.rawValue) << 28)
        if count > 0, let payload { (pointer + 16).copyMemory(from: payload, byteCount: count) }
        var tail = (lengthAndKind.littleEndian, seq.littleEndian)
        let crc = withUnsafeBytes(of: &tail) { raw in
            let afterLength = CRC32C.checksum(raw.baseAddress!, count: 4, continuing: payloadCRC)
            return CRC32C.checksum(raw.baseAddress! + 8, count: 8, continuing: afterLength)
        }
        pointer.putLE(seq, at: 8)
        pointer.putLE(crc, at: 4)
        // The length word last: a record is only ever seen with its payload and checksum already in place.
        pointer.putLE(lengthAndKind, at: 0)
    }

    /// Marks a block empty (its first record slot reads as "no record").
    func clear(block index: Int) {
        block(index).initializeMemory(as: UInt8.self, repeating: 0, count: LogFormat.stagedRecordHeaderSize)
    }

    // MARK: - Writer state

    /// The writer state recorded in the header page (the newer valid slot), or nil when neither slot is valid.
    func loadWriterState() -> WriterStateRecord? {
        WriterStateRecord.load(UnsafeRawBufferPointer(start: base, count: LogFormat.stagingHeaderSize))
    }

    /// Records `state` in the header page: the older slot receives it with the next generation, its checksum
    /// stored last, so a store torn by a crash leaves the other slot (the previous state) valid. A store into the
    /// mapping: as durable as a staged record (section 10 of wal-format.md).
    func storeWriterState(_ state: inout WriterStateRecord) {
        state.generation &+= 1
        let slot = base + WriterStateRecord.slotOffsets[Int(state.generation % 2)]
        state.encode(into: slot)
    }

    /// msync of the whole mapping: staged records are on stable storage when this returns.
    func sync() throws(WALError) {
        do { try region.sync() } catch { throw WALError.io("msync of the staging file failed", path: path, error) }
    }
}

/// The shape of a staging file, from its header.
struct StagingGeometry: Equatable {
    static let encodedSize = 64
    var blockSize: Int
    var blockCount: Int
    var logID: LogID

    func encode() -> [UInt8] {
        var bytes = LogFormat.stagingMagic
        bytes.appendLE(LogFormat.version)
        bytes.appendLE(UInt16(0))
        bytes.appendLE(UInt32(blockSize))
        bytes.appendLE(UInt32(blockCount))
        bytes.appendLE(UInt32(0))
        bytes.append(contentsOf: logID.bytes)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 20))
        bytes.appendLE(CRC32C.checksum(bytes))
        return bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws(WALError) -> StagingGeometry {
        guard bytes.count >= encodedSize, Array(bytes.prefix(8)) == LogFormat.stagingMagic else {
            throw WALError(.corrupt, "not a staging file (bad magic)", path: path, offset: 0)
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes.prefix(60))) == bytes.getLE(UInt32.self, at: 60)
        else { throw WALError(.corrupt, "staging header checksum mismatch", path: path, offset: 60) }
        guard bytes.getLE(UInt16.self, at: 8) == LogFormat.version else {
            throw WALError(.incompatible, "staging format version is not \(LogFormat.version)", path: path, offset: 8)
        }
        guard let blockSize = bytes.getLE(UInt32.self, at: 12), let blockCount = bytes.getLE(UInt32.self, at: 16),
            blockSize >= 4096, blockSize <= 16 << 20, blockSize % 8 == 0, blockCount >= 2, blockCount <= 1024
        else { throw WALError(.corrupt, "staging geometry out of range", path: path, offset: 12) }
        return StagingGeometry(
            blockSize: Int(blockSize),
            blockCount: Int(blockCount),
            logID: LogID(bytes: Array(bytes[24..<40]))
        )
    }
}

/// A record found in a staging block.
struct StagedRecord {
    enum Kind: UInt8 {
        case data = 0
        /// Payload: the last lost sequence number (UInt64 LE), then the reason in UTF-8.
        case gap = 1
    }

    var kind: Kind
    var seq: UInt64
    /// Offset of the payload within the block.
    var payloadOffset: Int
    var count: Int

    /// The last sequence number this record covers.
    func lastSeq(in block: UnsafeRawBufferPointer) -> UInt64 {
        guard kind == .gap, let to = block.getLE(UInt64.self, at: payloadOffset), to >= seq else { return seq }
        return to
    }

    /// Reads the valid records at the start of a block, stopping at the first slot that is empty, torn, or fails
    /// its checksum. Every length is bounds-checked against the block.
    static func scan(block: UnsafeRawBufferPointer, limit: Int? = nil) -> [StagedRecord] {
        var records: [StagedRecord] = []
        var offset = 0
        let end = min(limit ?? block.count, block.count)
        while offset + LogFormat.stagedRecordHeaderSize <= end {
            guard let word = block.getLE(UInt32.self, at: offset),
                let crc = block.getLE(UInt32.self, at: offset + 4),
                let seq = block.getLE(UInt64.self, at: offset + 8),
                seq != 0,
                let kind = Kind(rawValue: UInt8(word >> 28))
            else { break }
            let count = Int(word & LogFormat.stagedLengthMask)
            let payloadOffset = offset + LogFormat.stagedRecordHeaderSize
            guard count <= end - payloadOffset else { break }
            var expected = CRC32C.checksum(
                UnsafeRawBufferPointer(rebasing: block[payloadOffset..<payloadOffset + count])
            )
            expected = CRC32C.checksum(
                UnsafeRawBufferPointer(rebasing: block[offset..<offset + 4]),
                continuing: expected
            )
            expected = CRC32C.checksum(
                UnsafeRawBufferPointer(rebasing: block[offset + 8..<offset + 16]),
                continuing: expected
            )
            guard expected == crc else { break }
            if kind == .gap {
                // A gap record names its last seq; a writer never drops more than 2^36 records in one run, and never
                // reaches the last seq (a checksummed but absurd record is a forgery, not a loss).
                guard count >= 8, let last = block.getLE(UInt64.self, at: payloadOffset), last >= seq,
                    last - seq < WAL.maxRecoveredGap, last < UInt64.max - WAL.maxRecoveredGap
                else { break }
            }
            records.append(StagedRecord(kind: kind, seq: seq, payloadOffset: payloadOffset, count: count))
            offset = align8(payloadOffset + count)
        }
        return records
    }
}

/// The writer's durable state, kept in the staging file's header page (wal-format.md 4.4): the highest sequence
/// number the writer has assigned as of its last store (a high-water mark: no reader or sink can have seen a higher
/// one), and the range of a gap (dropped records) not yet staged as a gap record.
struct WriterStateRecord: Equatable {
    static let slotOffsets = [128, 64]
    static let slotSize = 64
    static let magic = Array("WALWSTAT".utf8)

    var generation: UInt64 = 0
    var highWaterSeq: UInt64 = 0
    /// First and last seq of the pending gap; 0 when there is none.
    var gapFirst: UInt64 = 0
    var gapLast: UInt64 = 0

    /// Stores the slot in place, the checksum last. No allocation: a drop stores the state under the append lock.
    func encode(into slot: UnsafeMutableRawPointer) {
        Self.magic.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        slot.putLE(generation, at: 8)
        slot.putLE(highWaterSeq, at: 16)
        slot.putLE(gapFirst, at: 24)
        slot.putLE(gapLast, at: 32)
        (slot + 40).initializeMemory(as: UInt8.self, repeating: 0, count: 20)
        slot.putLE(CRC32C.checksum(UnsafeRawPointer(slot), count: 60), at: 60)
    }

    static func decode(_ slot: UnsafeRawBufferPointer) -> WriterStateRecord? {
        guard slot.count >= slotSize, Array(slot.prefix(8)) == magic,
            let crc = slot.getLE(UInt32.self, at: 60),
            crc == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slot.prefix(60))),
            let generation = slot.getLE(UInt64.self, at: 8), generation > 0,
            let highWater = slot.getLE(UInt64.self, at: 16),
            let gapFirst = slot.getLE(UInt64.self, at: 24),
            let gapLast = slot.getLE(UInt64.self, at: 32),
            gapFirst <= gapLast, gapFirst == 0 || gapLast <= highWater
        else { return nil }
        return WriterStateRecord(generation: generation, highWaterSeq: highWater, gapFirst: gapFirst, gapLast: gapLast)
    }

    /// The newer valid slot of a header page (at least its first 192 bytes), or nil.
    static func load(_ header: UnsafeRawBufferPointer) -> WriterStateRecord? {
        var best: WriterStateRecord?
        for offset in slotOffsets where offset + slotSize <= header.count {
            guard let state = decode(UnsafeRawBufferPointer(rebasing: header[offset..<offset + slotSize])) else {
                continue
            }
            if best.map({ state.generation > $0.generation }) ?? true { best = state }
        }
        return best
    }

    /// The newer valid slot of the staging file at `path`, read with `pread` (whatever the rest of its header says).
    static func read(path: String) -> WriterStateRecord? {
        guard let bytes = try? FileSystem.readAll(path, limit: 256, followLink: false) else { return nil }
        return bytes.withUnsafeBytes { load($0) }
    }
}
