import Foundation

/// A seeded random number generator for tests (SplitMix64), so that a failure can be replayed: the seed comes from
/// the environment variable `WALCTL_TEST_SEED` when set, else from the system generator, and is printed either way.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public let seed: UInt64
    private var state: UInt64

    /// `label` names the test in the printed line (`#function` by default).
    public init(_ label: String = #function) {
        let fromEnvironment = ProcessInfo.processInfo.environment["WALCTL_TEST_SEED"].flatMap { UInt64($0) }
        var system = SystemRandomNumberGenerator()
        self.init(seed: fromEnvironment ?? system.next())
        FileHandle.standardError.write(Data("\(label): seed \(seed) (WALCTL_TEST_SEED=\(seed) replays it)\n".utf8))
    }

    /// A fixed default seed (reproducible runs), which `WALCTL_TEST_SEED` replaces; printed with `test`.
    public init(test: String, default seed: UInt64) {
        let chosen = ProcessInfo.processInfo.environment["WALCTL_TEST_SEED"].flatMap { UInt64($0) } ?? seed
        self.init(seed: chosen)
        FileHandle.standardError.write(Data("\(test): seed \(chosen) (WALCTL_TEST_SEED=\(chosen) replays it)\n".utf8))
    }

    public init(seed: UInt64) {
        self.seed = seed
        self.state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
