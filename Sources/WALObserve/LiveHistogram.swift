#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A mergeable log histogram (the DDSketch mapping of PostgreSQL's rollups, `walctl_hist_*`): bucket i holds
/// (γ^(i-1), γ^i] with γ = 1.01 / 0.99 and is read back as 2γ^i / (γ + 1), within 1 % of every value in it. Values
/// closer to 0 than 1e-9 share one bucket read back as 0.
///
/// The live view keeps one per metric and second: a percentile over a minute merges 60 of them (adding counts key
/// by key, exact and associative), so it costs the number of occupied buckets, never the number of records.
public struct LiveHistogram: Sendable, Equatable {
    /// γ = 1.01 / 0.99: the relative accuracy of a percentile read back is 1 %.
    public static let gamma = 1.01 / 0.99
    private static let logGamma = log(gamma)
    public static let zeroBand = 1e-9

    private(set) var positive: [Int32: UInt32] = [:]
    private(set) var negative: [Int32: UInt32] = [:]
    private(set) var zero: UInt64 = 0
    /// The number of values added (NaN is not counted).
    public private(set) var count: UInt64 = 0

    public init() {}

    /// The bucket index of a magnitude >= `zeroBand`.
    @inline(__always)
    static func index(_ magnitude: Double) -> Int32 {
        guard magnitude.isFinite else { return Int32.max }
        return Int32(clamping: Int((log(magnitude) / logGamma).rounded(.up)))
    }

    /// The value a bucket is read back as.
    static func value(ofIndex index: Int32) -> Double {
        if index == Int32.max { return .infinity }
        return 2 * pow(gamma, Double(index)) / (gamma + 1)
    }

    public mutating func add(_ value: Double) {
        guard !value.isNaN else { return }
        count += 1
        let magnitude = abs(value)
        if magnitude < Self.zeroBand {
            zero += 1
        } else if value > 0 {
            positive[Self.index(magnitude), default: 0] &+= 1
        } else {
            negative[Self.index(magnitude), default: 0] &+= 1
        }
    }

    /// Adds every value of `other` (the histogram of both sets of values).
    public mutating func merge(_ other: LiveHistogram) {
        count += other.count
        zero += other.zero
        for (key, n) in other.positive { positive[key, default: 0] &+= n }
        for (key, n) in other.negative { negative[key, default: 0] &+= n }
    }

    /// The nearest-rank q-percentile (0 < q <= 1), within 1 % of the raw values' one; nil when empty.
    public func percentile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        // Ascending values: the negatives from the largest magnitude down, the zero band, the positives up.
        for key in negative.keys.sorted(by: >) {
            seen += UInt64(negative[key]!)
            if seen >= rank { return -Self.value(ofIndex: key) }
        }
        seen += zero
        if seen >= rank { return 0 }
        for key in positive.keys.sorted() {
            seen += UInt64(positive[key]!)
            if seen >= rank { return Self.value(ofIndex: key) }
        }
        return positive.keys.max().map(Self.value(ofIndex:))
    }
}
