/// The 48-byte header in front of every frame of a segment. See `wal-format.md`, "Frames".
public struct FrameHeader: Sendable, Equatable {
    public var type: FrameType
    public var codec: FrameCodec
    public var firstSeq: UInt64
    public var recordCount: UInt32
    public var rawLength: UInt32
    public var storedLength: UInt32
    public var payloadCRC: UInt32
    public var sealedAtNanos: UInt64

    /// Last sequence number covered (inclusive).
    public var lastSeq: UInt64 { firstSeq &+ UInt64(recordCount) &- 1 }

    /// Bytes the whole frame occupies in the segment, padding included.
    public var frameLength: Int { align8(LogFormat.frameHeaderSize + Int(storedLength)) }

    /// The header of a gap marker frame covering `count` sequence numbers from `firstSeq`, whose payload is the
    /// reason (`payload`, stored uncompressed).
    static func gap(firstSeq: UInt64, count: UInt32, payload: UnsafeRawBufferPointer) -> FrameHeader {
        FrameHeader(
            type: .gap,
            codec: .none,
            firstSeq: firstSeq,
            recordCount: count,
            rawLength: UInt32(payload.count),
            storedLength: UInt32(payload.count),
            payloadCRC: CRC32C.checksum(payload),
            sealedAtNanos: wallClockNanos()
        )
    }

    /// Writes the header, its CRC last, into 48 bytes at `pointer`.
    func encode(into pointer: UnsafeMutableRawPointer) {
        pointer.putLE(LogFormat.frameMagic, at: 0)
        pointer.putLE(type.rawValue, at: 4)
        pointer.putLE(codec.rawValue, at: 5)
        pointer.putLE(UInt16(0), at: 6)
        pointer.putLE(firstSeq, at: 8)
        pointer.putLE(recordCount, at: 16)
        pointer.putLE(rawLength, at: 20)
        pointer.putLE(storedLength, at: 24)
        pointer.putLE(payloadCRC, at: 28)
        pointer.putLE(sealedAtNanos, at: 32)
        pointer.putLE(UInt32(0), at: 40)
        let crc = CRC32C.checksum(UnsafeRawPointer(pointer), count: 44)
        pointer.putLE(crc, at: 44)
    }

    /// Why a header was rejected.
    public enum Defect: String, Error, Sendable {
        case short = "fewer than 48 bytes"
        case zero = "all zero"
        case magic = "bad magic"
        case headerChecksum = "header checksum mismatch"
        case fields = "field out of range"
    }

    /// Decodes and validates a header; every field is range-checked before it is trusted.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<FrameHeader, Defect> {
        guard bytes.count >= LogFormat.frameHeaderSize,
            let magic = bytes.getLE(UInt32.self, at: 0),
            let storedCRC = bytes.getLE(UInt32.self, at: 44)
        else { return .failure(.short) }
        if magic != LogFormat.frameMagic {
            if bytes.prefix(LogFormat.frameHeaderSize).allSatisfy({ $0 == 0 }) { return .failure(.zero) }
            return .failure(.magic)
        }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes.prefix(44)))
        guard crc == storedCRC else { return .failure(.headerChecksum) }
        guard let type = FrameType(rawValue: bytes[4]),
            let codec = FrameCodec(rawValue: bytes[5]),
            let firstSeq = bytes.getLE(UInt64.self, at: 8),
            let count = bytes.getLE(UInt32.self, at: 16),
            let raw = bytes.getLE(UInt32.self, at: 20),
            let stored = bytes.getLE(UInt32.self, at: 24),
            let payloadCRC = bytes.getLE(UInt32.self, at: 28),
            let sealedAt = bytes.getLE(UInt64.self, at: 32),
            firstSeq > 0, count > 0,
            firstSeq <= UInt64.max - UInt64(count),
            Int(raw) <= LogFormat.maxFramePayload, Int(stored) <= LogFormat.maxFramePayload,
            codec != .none || raw == stored
        else { return .failure(.fields) }
        return .success(
            FrameHeader(
                type: type,
                codec: codec,
                firstSeq: firstSeq,
                recordCount: count,
                rawLength: raw,
                storedLength: stored,
                payloadCRC: payloadCRC,
                sealedAtNanos: sealedAt
            )
        )
    }
}
