import Foundation
import WALTraffic

/// A seeded random number generator for tests (SplitMix64, the generator of `AgentTraffic`), so that a failure can be
/// replayed: the seed comes from the environment variable `WALCTL_TEST_SEED` when set, else from the given default
/// (or the system generator), and is printed either way.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public let seed: UInt64
    private var generator: SplitMix

    /// A random seed, which `WALCTL_TEST_SEED` replaces; `label` names the test in the printed line.
    public init(_ label: String = #function) {
        var system = SystemRandomNumberGenerator()
        self.init(test: label, default: system.next())
    }

    /// A fixed default seed (reproducible runs), which `WALCTL_TEST_SEED` replaces; printed with `test`.
    public init(test: String, default seed: UInt64) {
        let chosen = ProcessInfo.processInfo.environment["WALCTL_TEST_SEED"].flatMap { UInt64($0) } ?? seed
        self.init(seed: chosen)
        FileHandle.standardError.write(Data("\(test): seed \(chosen) (WALCTL_TEST_SEED=\(chosen) replays it)\n".utf8))
    }

    public init(seed: UInt64) {
        self.seed = seed
        self.generator = SplitMix(seed: seed)
    }

    public mutating func next() -> UInt64 { generator.next() }
}
