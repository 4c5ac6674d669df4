import SystemPackage

/// One frame, or one unreadable region, of a segment as `walctl inspect --frames` lists it.
public struct FrameInfo: Sendable, Codable, Equatable {
    /// `data`, `gap`, or `damaged` for a region that holds no valid frame.
    public var kind: String
    public var file: String
    public var offset: Int64
    /// Bytes the frame (or the damaged region) occupies, padding included.
    public var length: Int64
    /// `lz4` or `none`; nil for a damaged region.
    public var codec: String?
    /// `ok` for a frame whose header and payload checksums match; the reason otherwise.
    public var checksum: String
    public var firstSeq: UInt64?
    public var lastSeq: UInt64?
    public var records: UInt32?
    public var rawLength: UInt32?
    public var storedLength: UInt32?
    public var sealedAtNanos: UInt64?

    enum CodingKeys: String, CodingKey {
        case kind, file, offset, length, codec, checksum
        case firstSeq = "first_seq"
        case lastSeq = "last_seq"
        case records
        case rawLength = "raw_length"
        case storedLength = "stored_length"
        case sealedAtNanos = "sealed_at_ns"
    }
}

extension FrameCodec {
    /// The name `inspect` prints.
    public var name: String {
        switch self {
        case .none: return "none"
        case .lz4Block: return "lz4"
        }
    }
}

extension LogInspector {
    /// Every frame of every segment, in order, with the unreadable regions between them (and a torn tail) as
    /// `damaged` entries. Read-only, lock-free; a segment deleted while it is listed is skipped.
    public static func frames(path: String) throws(WALError) -> [FrameInfo] {
        var result: [FrameInfo] = []
        for file in try LogDirectory(path: path).segments() {
            let reader: SegmentFileReader
            do {
                reader = try SegmentFileReader(path: file.path)
            } catch  where error.code == .notFound {
                continue
            } catch {
                result.append(
                    FrameInfo(
                        kind: "damaged",
                        file: file.name,
                        offset: 0,
                        length: FileSystem.size(file.path) ?? 0,
                        checksum: error.message
                    )
                )
                continue
            }
            let scan = SegmentScan.scan(reader)
            var entries: [FrameInfo] = scan.frames.map { frame in
                let header = frame.header
                return FrameInfo(
                    kind: header.type == .data ? "data" : "gap",
                    file: file.name,
                    offset: frame.offset,
                    length: Int64(header.frameLength),
                    codec: header.codec.name,
                    checksum: "ok",
                    firstSeq: header.firstSeq,
                    lastSeq: header.lastSeq,
                    records: header.recordCount,
                    rawLength: header.rawLength,
                    storedLength: header.storedLength,
                    sealedAtNanos: header.sealedAtNanos
                )
            }
            for damage in scan.damage {
                entries.append(
                    FrameInfo(
                        kind: "damaged",
                        file: file.name,
                        offset: damage.offset,
                        length: damage.length,
                        checksum: damage.reason
                    )
                )
            }
            if let torn = scan.tornTailOffset, scan.tornTailBytes > 0 {
                entries.append(
                    FrameInfo(
                        kind: "damaged",
                        file: file.name,
                        offset: torn,
                        length: scan.tornTailBytes,
                        checksum: "torn tail: no valid frame follows"
                    )
                )
            }
            result.append(contentsOf: entries.sorted { $0.offset < $1.offset })
        }
        return result
    }
}

// MARK: - One frame, raw

/// The raw bytes at a position of a segment and what they say as a frame header, checked field by field but
/// decoded even when invalid: what an operator looks at when `verify` reports damage there.
public struct FrameDump: Sendable, Codable, Equatable {
    public var file: String
    public var offset: Int64
    /// Header fields as stored, whatever their validity.
    public var magicOK: Bool
    public var type: UInt8
    public var codec: UInt8
    public var firstSeq: UInt64
    public var recordCount: UInt32
    public var rawLength: UInt32
    public var storedLength: UInt32
    public var payloadCRC: UInt32
    public var sealedAtNanos: UInt64
    public var headerCRC: UInt32
    /// `ok` or why the header is rejected.
    public var headerStatus: String
    /// `ok`, `mismatch (computed ...)`, or why the payload could not be checked.
    public var payloadStatus: String
    /// The bytes shown: the header and up to `limit` bytes of payload.
    public var bytes: [UInt8]

    enum CodingKeys: String, CodingKey {
        case file, offset
        case magicOK = "magic_ok"
        case type, codec
        case firstSeq = "first_seq"
        case recordCount = "record_count"
        case rawLength = "raw_length"
        case storedLength = "stored_length"
        case payloadCRC = "payload_crc"
        case sealedAtNanos = "sealed_at_ns"
        case headerCRC = "header_crc"
        case headerStatus = "header_status"
        case payloadStatus = "payload_status"
        case bytes
    }

    /// Reads the frame at `offset` of the segment file `path`, showing at most `limit` payload bytes.
    public static func read(path: String, offset: Int64, limit: Int = 4096) throws(WALError) -> FrameDump {
        let fd = try FileSystem.open(path, .readOnly)
        defer { try? fd.close() }
        let fileSize: Int64
        do { fileSize = try fd.size() } catch { throw WALError.io("cannot stat", path: path, error) }
        guard offset >= 0, offset < fileSize else {
            throw WALError(.invalidArgument, "offset is past the end of the file (\(fileSize) bytes)", path: path)
        }
        var header = [UInt8](repeating: 0, count: LogFormat.frameHeaderSize)
        let n: Int
        do {
            n = try header.withMutableBytes { buffer throws(Errno) in try fd.readFully(at: offset, into: buffer) }
        } catch {
            throw WALError.io("cannot read", path: path, error)
        }
        header.removeSubrange(n...)
        let field = { (at: Int, size: Int) -> UInt64 in
            guard at + size <= header.count else { return 0 }
            var value: UInt64 = 0
            for index in (at..<at + size).reversed() { value = value << 8 | UInt64(header[index]) }
            return value
        }
        var dump = FrameDump(
            file: path,
            offset: offset,
            magicOK: field(0, 4) == UInt64(LogFormat.frameMagic),
            type: UInt8(truncatingIfNeeded: field(4, 1)),
            codec: UInt8(truncatingIfNeeded: field(5, 1)),
            firstSeq: field(8, 8),
            recordCount: UInt32(truncatingIfNeeded: field(16, 4)),
            rawLength: UInt32(truncatingIfNeeded: field(20, 4)),
            storedLength: UInt32(truncatingIfNeeded: field(24, 4)),
            payloadCRC: UInt32(truncatingIfNeeded: field(28, 4)),
            sealedAtNanos: field(32, 8),
            headerCRC: UInt32(truncatingIfNeeded: field(44, 4)),
            headerStatus: "ok",
            payloadStatus: "ok",
            bytes: header
        )
        switch header.withUnsafeBytes({ FrameHeader.decode($0) }) {
        case .success: break
        case .failure(let defect): dump.headerStatus = defect.rawValue
        }
        // The payload as the header's stored length says, bounded by the file and by the format's maximum.
        let available = max(0, fileSize - offset - Int64(LogFormat.frameHeaderSize))
        let claimed = Int64(min(Int(dump.storedLength), LogFormat.maxFramePayload))
        let payloadLength = Int(min(claimed, available))
        var payload = [UInt8](repeating: 0, count: payloadLength)
        let got =
            (try? payload.withMutableBytes { buffer throws(Errno) in
                try fd.readFully(at: offset + Int64(LogFormat.frameHeaderSize), into: buffer)
            }) ?? 0
        if Int64(got) < claimed {
            dump.payloadStatus = "truncated: \(got) of \(claimed) bytes in the file"
        } else {
            let crc = payload.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0.prefix(got))) }
            if crc != dump.payloadCRC {
                dump.payloadStatus = "mismatch (computed 0x\(String(crc, radix: 16)))"
            }
        }
        dump.bytes += payload.prefix(min(got, limit))
        return dump
    }
}
