/// The exact sum of a sequence of doubles, and the averages and percentiles built on it: the one definition of
/// `avg`, `mean` and `pNN` that `walctl stats` and the alert evaluator share.
///
/// The sum is held as Shewchuk's non-overlapping partials (the algorithm of Python's `math.fsum`): adding and
/// subtracting values is exact, so a sliding window that adds each value once and subtracts it once when it
/// expires never drifts, whatever magnitudes pass through it (a 1e17 outlier leaves no trace once it is gone).
/// `rounded` is the exact sum correctly rounded to a double (ties to even), as `math.fsum` returns it.
///
/// Cost: a handful of partials (at most about 40 for any doubles), so `add` is O(1) in practice. A value type;
/// no locks.
package struct ExactSum: Sendable, Equatable {
    private var partials: [Double] = []
    /// True once an intermediate result overflowed (the exact sum left the range of doubles): the partials no longer
    /// hold the sum, and whoever needs it recomputes from the values (`ExactSum.mean` does).
    package private(set) var overflowed = false

    package init() {}

    package init(_ values: some Sequence<Double>) {
        for value in values { add(value) }
    }

    /// Adds `value` exactly. Non-finite values set `overflowed`.
    package mutating func add(_ value: Double) {
        guard !overflowed else { return }
        var x = value
        var kept = 0
        for index in partials.indices {
            var y = partials[index]
            if abs(x) < abs(y) { swap(&x, &y) }
            let high = x + y
            let low = y - (high - x)
            if low != 0 {
                partials[kept] = low
                kept += 1
            }
            x = high
        }
        partials.removeSubrange(kept...)
        partials.append(x)
        if !x.isFinite { overflowed = true }
    }

    /// The exact sum rounded to the nearest double, ties to even (infinite when it overflowed or exceeds the range
    /// of doubles).
    package var rounded: Double {
        if overflowed { return partials.reduce(0, +) }
        var count = partials.count
        guard count > 0 else { return 0 }
        count -= 1
        var high = partials[count]
        var low = 0.0
        while count > 0 {
            let x = high
            count -= 1
            let y = partials[count]
            high = x + y
            low = y - (high - x)
            if low != 0 { break }
        }
        // Half-way cases: the partials below decide whether the rounding of `high + low` goes up or down.
        if count > 0 && ((low < 0 && partials[count - 1] < 0) || (low > 0 && partials[count - 1] > 0)) {
            let y = low * 2
            let x = high + y
            if y == x - high { high = x }
        }
        return high
    }

    // MARK: - Statistics

    /// The mean of finite `values`: their exact sum, correctly rounded, divided by their count (Python's
    /// `math.fsum(values) / len(values)`). Never overflows: when the sum leaves the range of doubles, it is taken
    /// over the values scaled by 2^-64 and the quotient scaled back, which gives the same double (the mean of
    /// 1e308 and 1e308 is 1e308). NaN for no values.
    package static func mean(_ values: some Collection<Double>) -> Double {
        guard !values.isEmpty else { return .nan }
        let sum = ExactSum(values)
        return mean(sum: sum, values: values)
    }

    /// The mean of `values` whose exact sum `sum` is already known (a window that maintains it).
    package static func mean(sum: ExactSum, values: some Collection<Double>) -> Double {
        guard !values.isEmpty else { return .nan }
        let count = Double(values.count)
        if !sum.overflowed {
            let total = sum.rounded
            if total.isFinite { return total / count }
        }
        let scaled = ExactSum(values.lazy.map { $0 * 0x1p-64 })
        return scaled.rounded / count * 0x1p64
    }

    /// The nearest-rank percentile of `sorted` (ascending, finite): the value at 1-based rank ⌈p/100 × n⌉ (at
    /// least 1), the same rule for negative and positive values. p50 of {-1000, -1000, -1, -1} is -1000; p50 of
    /// 1...100 is 50. NaN for no values.
    package static func nearestRank(_ p: Double, sorted: some RandomAccessCollection<Double>) -> Double {
        guard !sorted.isEmpty else { return .nan }
        // p × n / 100 rather than p / 100 × n: exact whenever the rank is a whole number (p95 of 20 values is rank 19).
        let rank = Int((p * Double(sorted.count) / 100).rounded(.up))
        let index = sorted.index(sorted.startIndex, offsetBy: min(max(rank, 1), sorted.count) - 1)
        return sorted[index]
    }
}
