/// An entry of the symbol table. Ids are positions in `metrics.symbols`, from 1.
public enum Symbol: Sendable, Equatable {
    /// A string: a metric name, a unit, a tag key or value, an agent id.
    case string(String)
    /// A metric: its type and the ids of its name and unit strings.
    case metric(type: MetricType, name: UInt32, unit: UInt32)
    /// A set of tags: pairs of string ids (key, value), sorted by key.
    case tagSet([(key: UInt32, value: UInt32)])

    public static func == (lhs: Symbol, rhs: Symbol) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): return a == b
        case (.metric(let t1, let n1, let u1), .metric(let t2, let n2, let u2)): return t1 == t2 && n1 == n2 && u1 == u2
        case (.tagSet(let a), .tagSet(let b)): return a.elementsEqual(b, by: { $0 == $1 })
        default: return false
        }
    }

    static let stringKind: UInt8 = 1
    static let metricKind: UInt8 = 2
    static let tagSetKind: UInt8 = 3

    /// The entry payload: kind byte, then the body.
    func encode() -> [UInt8] {
        var bytes: [UInt8] = []
        func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            bytes.append(UInt8(value))
        }
        switch self {
        case .string(let text):
            bytes.append(Self.stringKind)
            bytes.append(contentsOf: text.utf8)
        case .metric(let type, let name, let unit):
            bytes.append(Self.metricKind)
            bytes.append(type.rawValue)
            varint(UInt64(name))
            varint(UInt64(unit))
        case .tagSet(let pairs):
            bytes.append(Self.tagSetKind)
            varint(UInt64(pairs.count))
            for pair in pairs {
                varint(UInt64(pair.key))
                varint(UInt64(pair.value))
            }
        }
        return bytes
    }

    /// Decodes an entry payload; nil when it is malformed. `limit` is the largest id that may be referenced
    /// (entries only refer to earlier entries).
    static func decode(_ payload: UnsafeRawBufferPointer, limit: UInt32) -> Symbol? {
        var reader = ByteReader(payload)
        guard let kind = reader.byte() else { return nil }
        func id() -> UInt32? {
            guard let value = reader.varint(), value >= 1, value <= UInt64(limit) else { return nil }
            return UInt32(value)
        }
        switch kind {
        case stringKind:
            guard let rest = reader.slice(payload.count - 1) else { return nil }
            guard let text = String(validating: rest, as: UTF8.self) else { return nil }
            return .string(text)
        case metricKind:
            guard let raw = reader.byte(), let type = MetricType(rawValue: raw), let name = id(), let unit = id(),
                reader.isAtEnd
            else { return nil }
            return .metric(type: type, name: name, unit: unit)
        case tagSetKind:
            guard let count = reader.varint(), count <= 64 else { return nil }
            var pairs: [(key: UInt32, value: UInt32)] = []
            for _ in 0..<count {
                guard let key = id(), let value = id() else { return nil }
                pairs.append((key, value))
            }
            guard reader.isAtEnd else { return nil }
            return .tagSet(pairs)
        default:
            return nil
        }
    }
}
