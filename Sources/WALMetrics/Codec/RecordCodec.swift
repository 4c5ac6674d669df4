import WALCore

/// The binary form of a metric record inside a log record. See `wal-format.md`, "Metric records".
///
/// ```
/// kind      u8       1 (metric record, version 1)
/// flags     u8       bits 0-2 value encoding, bits 3-4 correlation encoding, bit 5 agent present
/// metric    varint   symbol id of the metric (type, name, unit)
/// tags      varint   symbol id of the tag set, 0 for none
/// agent     varint   symbol id of the agent id string (only when flag bit 5)
/// time      8 bytes  nanoseconds since the epoch, big-endian
/// value              per encoding: 0 f64 LE (8); 1 f32 LE (4, exact); 2 zigzag varint integer; 3 none (+0.0);
///                    4 decimal: scale byte k (1-9), zigzag varint m, value = m / 10^k (exact)
/// corr               per encoding: 0 none, 1 UUID (16 bytes), 2 varint length + UTF-8
/// ```
enum RecordCodec {
    static let kindMetric: UInt8 = 1
    /// Upper bound of an encoded record: 1 + 1 + 3 x 5 + 8 + 8 + 5 + 100.
    static let maxSize = 160

    enum ValueEncoding: UInt8 { case double = 0, float = 1, integer = 2, zero = 3, decimal = 4 }

    static let powersOfTen: [Double] = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]
    static let maxExactInteger = 9_007_199_254_740_992.0

    /// The smallest exact encoding of `value`, with the decimal scale when it is `.decimal`.
    ///
    /// No libm call on the emit path: the integer test converts, and the decimal test rounds with `roundToInteger`.
    /// Each candidate is checked exactly (the decoder's `m / 10^k` gives `value` back), so the rounding used only
    /// decides which encodings are tried, never whether a value round-trips.
    @inline(__always)
    static func valueEncoding(_ value: Double) -> (ValueEncoding, scale: Int) {
        if value == 0 && value.sign == .plus { return (.zero, 0) }
        guard value.isFinite, abs(value) < maxExactInteger else { return (.double, 0) }
        if Double(Int64(value)) == value && !(value == 0) { return (.integer, 0) }
        if value != 0 {
            for scale in 1...9 {
                let product = value * powersOfTen[scale]
                guard abs(product) < roundingLimit else { break }
                if roundToInteger(product) / powersOfTen[scale] == value { return (.decimal, scale) }
            }
        }
        if Double(Float(value)) == value { return (.float, 0) }
        return (.double, 0)
    }

    /// Below this magnitude `roundToInteger` is exact: 2^51.
    static let roundingLimit = 2_251_799_813_685_248.0

    /// `value` rounded to the nearest integer (ties to even), for `abs(value) < roundingLimit`: adding and removing
    /// 1.5 x 2^52 leaves no fraction bits (two additions instead of a call to libm's `round`).
    @inline(__always)
    static func roundToInteger(_ value: Double) -> Double {
        let magic = 6_755_399_441_055_744.0
        return (value + magic) - magic
    }

    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }

    @inline(__always)
    static func unzigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }

    /// A record's correlation id, as stored: none, a canonical UUID (its two big-endian halves), or other text
    /// (already validated).
    enum Correlation {
        case none
        case uuid(UInt64, UInt64)
        case text(String)

        /// The stored form of a correlation id: a canonical UUID as its halves, other text as it is.
        @inline(__always)
        init(_ text: String?) {
            guard let text else {
                self = .none
                return
            }
            if let uuid = RecordCodec.parseUUID(text) { self = .uuid(uuid.0, uuid.1) } else { self = .text(text) }
        }
    }

    /// Encodes into `buffer` (at least `maxSize` bytes); returns the length.
    @inline(__always)
    static func encode(
        into buffer: UnsafeMutableRawPointer,
        metric: UInt32,
        tagSet: UInt32,
        agent: UInt32,
        timestampNanos: Int64,
        value: Double,
        correlation: Correlation
    ) -> Int {
        var writer = ByteWriter(buffer)
        writer.byte(kindMetric)
        let (valueEncoding, scale) = valueEncoding(value)
        let correlationEncoding: UInt8
        switch correlation {
        case .none: correlationEncoding = 0
        case .uuid: correlationEncoding = 1
        case .text: correlationEncoding = 2
        }
        writer.byte(valueEncoding.rawValue | correlationEncoding << 3 | (agent != 0 ? 0x20 : 0))
        writer.varint(UInt64(metric))
        writer.varint(UInt64(tagSet))
        if agent != 0 { writer.varint(UInt64(agent)) }
        writer.bigEndian64(UInt64(bitPattern: timestampNanos))
        switch valueEncoding {
        case .double: writer.littleEndian64(value.bitPattern)
        case .float: writer.littleEndian32(Float(value).bitPattern)
        case .integer: writer.varint(zigzag(Int64(value)))
        case .zero: break
        case .decimal:
            writer.byte(UInt8(scale))
            writer.varint(zigzag(Int64(roundToInteger(value * powersOfTen[scale]))))
        }
        switch correlation {
        case .none: break
        case .uuid(let high, let low):
            writer.bigEndian64(high)
            writer.bigEndian64(low)
        case .text(var text):
            text.withUTF8 { bytes in
                let count = min(bytes.count, Validation.maxIDBytes)
                writer.varint(UInt64(count))
                writer.bytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes).prefix(count)))
            }
        }
        return writer.count
    }

    /// The fields of an encoded record, before symbol ids are resolved.
    struct Fields {
        var metric: UInt32
        var tagSet: UInt32
        var agent: UInt32
        var timestampNanos: Int64
        var value: Double
        /// A correlation id that is not a canonical UUID (kept as text).
        var correlationText: String?
        /// A canonical UUID correlation id, as its two halves (formatted only when asked).
        var correlationUUID: (UInt64, UInt64)?

        var correlationID: String? {
            if let correlationUUID { return RecordCodec.formatUUID(correlationUUID.0, correlationUUID.1) }
            return correlationText
        }
    }

    enum DecodeFailure: Error, Equatable {
        case notAMetricRecord(UInt8)
        case malformed(String)
    }

    /// The emit time of an encoded metric record, read without decoding the rest; nil when the bytes are not one.
    static func timestampNanos(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        var reader = ByteReader(bytes)
        guard reader.byte() == kindMetric, let flags = reader.byte(), flags & 0xC0 == 0,
            reader.varint() != nil, reader.varint() != nil
        else { return nil }
        if flags & 0x20 != 0 { guard reader.varint() != nil else { return nil } }
        return reader.bigEndian64().map { Int64(bitPattern: $0) }
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<Fields, DecodeFailure> {
        var reader = ByteReader(bytes)
        guard let kind = reader.byte() else { return .failure(.malformed("empty record")) }
        guard kind == kindMetric else { return .failure(.notAMetricRecord(kind)) }
        guard let flags = reader.byte(), flags & 0xC0 == 0 else { return .failure(.malformed("bad flags")) }
        guard let metric = reader.varint(), metric >= 1, metric <= UInt64(UInt32.max),
            let tagSet = reader.varint(), tagSet <= UInt64(UInt32.max)
        else { return .failure(.malformed("bad symbol id")) }
        var agent: UInt64 = 0
        if flags & 0x20 != 0 {
            guard let id = reader.varint(), id >= 1, id <= UInt64(UInt32.max) else {
                return .failure(.malformed("bad agent id"))
            }
            agent = id
        }
        guard let time = reader.bigEndian64() else { return .failure(.malformed("truncated timestamp")) }
        let value: Double
        switch ValueEncoding(rawValue: flags & 0x07) {
        case .double:
            guard let bits = reader.littleEndian64() else { return .failure(.malformed("truncated value")) }
            value = Double(bitPattern: bits)
        case .float:
            guard let bits = reader.littleEndian32() else { return .failure(.malformed("truncated value")) }
            value = Double(Float(bitPattern: bits))
        case .integer:
            guard let integer = reader.varint() else { return .failure(.malformed("truncated value")) }
            value = Double(unzigzag(integer))
        case .zero:
            value = 0
        case .decimal:
            guard let scale = reader.byte(), scale >= 1, scale <= 9, let mantissa = reader.varint() else {
                return .failure(.malformed("truncated decimal value"))
            }
            value = Double(unzigzag(mantissa)) / powersOfTen[Int(scale)]
        case .none:
            return .failure(.malformed("unknown value encoding"))
        }
        var correlationText: String?
        var correlationUUID: (UInt64, UInt64)?
        switch (flags >> 3) & 0x03 {
        case 0: break
        case 1:
            guard let high = reader.bigEndian64(), let low = reader.bigEndian64() else {
                return .failure(.malformed("truncated correlation id"))
            }
            correlationUUID = (high, low)
        case 2:
            guard let count = reader.varint(), count <= UInt64(Validation.maxIDBytes),
                let text = reader.slice(Int(count))
            else { return .failure(.malformed("truncated correlation id")) }
            correlationText = String(decoding: text, as: UTF8.self)
        default:
            return .failure(.malformed("bad correlation encoding"))
        }
        guard reader.isAtEnd else { return .failure(.malformed("trailing bytes")) }
        return .success(
            Fields(
                metric: UInt32(metric),
                tagSet: UInt32(tagSet),
                agent: UInt32(agent),
                timestampNanos: Int64(bitPattern: time),
                value: value,
                correlationText: correlationText,
                correlationUUID: correlationUUID
            )
        )
    }

    // MARK: - UUID text

    /// Parses a lower-case canonical UUID (`8-4-4-4-12` hex digits) without allocating; nil for anything else,
    /// so that text round-trips exactly.
    @inline(__always)
    static func parseUUID(_ text: String) -> (UInt64, UInt64)? {
        var text = text
        return text.withUTF8 { bytes -> (UInt64, UInt64)? in
            guard bytes.count == 36 else { return nil }
            var high: UInt64 = 0
            var low: UInt64 = 0
            var nibbles = 0
            for (index, byte) in bytes.enumerated() {
                if index == 8 || index == 13 || index == 18 || index == 23 {
                    guard byte == 0x2D else { return nil }
                    continue
                }
                let nibble: UInt64
                switch byte {
                case 0x30...0x39: nibble = UInt64(byte - 0x30)
                case 0x61...0x66: nibble = UInt64(byte - 0x61 + 10)
                default: return nil
                }
                if nibbles < 16 { high = high << 4 | nibble } else { low = low << 4 | nibble }
                nibbles += 1
            }
            return (high, low)
        }
    }

    static func formatUUID(_ high: UInt64, _ low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 36) { bytes in
            Envelope.writeUUID(high, low, into: bytes)
            return 36
        }
    }
}
