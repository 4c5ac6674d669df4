/// The 64-byte header at offset 0 of every segment file. See `wal-format.md`, "Segment files".
public struct SegmentHeader: Sendable, Equatable {
    public var logID: LogID
    public var firstSeq: UInt64
    public var createdAtNanos: UInt64

    func encode() -> [UInt8] {
        var bytes = LogFormat.segmentMagic
        bytes.appendLE(LogFormat.version)
        bytes.appendLE(UInt16(LogFormat.segmentHeaderSize))
        bytes.appendLE(UInt32(0))
        bytes.append(contentsOf: logID.bytes)
        bytes.appendLE(firstSeq)
        bytes.appendLE(createdAtNanos)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 12))
        bytes.appendLE(CRC32C.checksum(bytes))
        return bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws(WALError) -> SegmentHeader {
        guard bytes.count >= LogFormat.segmentHeaderSize else {
            throw WALError(.corrupt, "segment header is truncated", path: path, offset: 0)
        }
        guard Array(bytes.prefix(8)) == LogFormat.segmentMagic else {
            throw WALError(.corrupt, "not a segment file (bad magic)", path: path, offset: 0)
        }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes.prefix(60)))
        guard crc == bytes.getLE(UInt32.self, at: 60) else {
            throw WALError(.corrupt, "segment header checksum mismatch", path: path, offset: 0)
        }
        guard let version = bytes.getLE(UInt16.self, at: 8), version == LogFormat.version else {
            throw WALError(.incompatible, "segment format version is not \(LogFormat.version)", path: path, offset: 8)
        }
        guard let firstSeq = bytes.getLE(UInt64.self, at: 32), let created = bytes.getLE(UInt64.self, at: 40) else {
            throw WALError(.corrupt, "segment header is truncated", path: path, offset: 0)
        }
        return SegmentHeader(
            logID: LogID(bytes: Array(bytes[16..<32])),
            firstSeq: firstSeq,
            createdAtNanos: created
        )
    }
}

/// A log's identity: 16 random bytes (a version 4 UUID), fixed when the log is created.
public struct LogID: Sendable, Hashable, CustomStringConvertible, Codable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a LogID is 16 bytes")
        self.bytes = bytes
    }

    /// A new random version 4 UUID.
    public static func random() -> LogID {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return LogID(bytes: bytes)
    }

    /// Canonical lower-case UUID text, e.g. `8f14e45f-ceea-467f-a0e6-3b5d2b6c9e11`.
    public var description: String {
        let hex = bytes.map { byte -> String in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }
        return hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-"
            + hex[8..<10].joined() + "-" + hex[10..<16].joined()
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        let hex = text.filter { $0 != "-" }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            guard let byte = UInt8(hex[index..<next], radix: 16) else { break }
            bytes.append(byte)
            index = next
        }
        guard bytes.count == 16 else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a UUID"))
        }
        self.bytes = bytes
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
