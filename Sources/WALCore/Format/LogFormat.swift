/// Constants of the on-disk format. `wal-format.md` is the normative description; keep the two in step.
public enum LogFormat {
    public static let version: UInt16 = 1

    // MARK: - Files
    public static let metaFileName = "wal.meta"
    public static let lockFileName = "wal.lock"
    public static let stagingFileName = "staging.wal"
    public static let cursorDirectoryName = "cursors"
    public static let segmentSuffix = ".seg"
    public static let cursorSuffix = ".cursor"

    /// `00000000000000000001.seg`: the first sequence number, 20 decimal digits.
    public static func segmentFileName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + segmentSuffix
    }

    /// The first sequence number encoded in a segment file name, or nil if the name is not a segment's.
    public static func parseSegmentFileName(_ name: String) -> UInt64? {
        guard name.count == 20 + segmentSuffix.count, name.hasSuffix(segmentSuffix) else { return nil }
        let digits = name.prefix(20)
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    // MARK: - Meta file (64 bytes)
    static let metaMagic: [UInt8] = Array("WALCMETA".utf8)
    static let metaSize = 64

    // MARK: - Segment header (64 bytes)
    static let segmentMagic: [UInt8] = Array("WALCSEG1".utf8)
    public static let segmentHeaderSize = 64

    // MARK: - Frame header (48 bytes)
    static let frameMagic: UInt32 = 0x4D52_4657  // "WFRM" as bytes W F R M
    public static let frameHeaderSize = 48
    /// Readers treat a frame claiming more than this many raw or stored bytes as corrupt.
    public static let maxFramePayload = 64 << 20

    // MARK: - Staging file
    static let stagingMagic: [UInt8] = Array("WALSTAGE".utf8)
    public static let stagingHeaderSize = 4096
    public static let stagedRecordHeaderSize = 16
    /// Low 28 bits of a staged record's first word: payload length; high 4 bits: kind.
    static let stagedLengthMask: UInt32 = 0x0FFF_FFFF

    // MARK: - Cursor file (32 bytes)
    static let cursorMagic: [UInt8] = Array("WALCCURS".utf8)
    static let cursorSize = 32
}

/// The kind of a frame in a segment.
public enum FrameType: UInt8, Sendable {
    /// Records, `recordCount` of them, numbered from `firstSeq`.
    case data = 1
    /// A gap marker: sequence numbers `firstSeq ..< firstSeq + recordCount` were lost; the payload is the reason.
    case gap = 2
}

/// How a frame's payload is stored.
public enum FrameCodec: UInt8, Sendable {
    case none = 0
    case lz4Block = 1
}

/// A range of sequence numbers the log does not hold, and why.
public struct GapMarker: Sendable, Equatable, Codable {
    public var fromSeq: UInt64
    public var toSeq: UInt64
    public var reason: String

    public init(fromSeq: UInt64, toSeq: UInt64, reason: String) {
        self.fromSeq = fromSeq
        self.toSeq = toSeq
        self.reason = reason
    }
}
