import Foundation
import Testing
import WALMetrics
import WALTestKit

/// The exact sum, mean and nearest-rank percentile shared by `stats` and the alert evaluator.
@Suite struct ExactSumTests {
    @Test func sumsAreExactAndCorrectlyRounded() {
        #expect(ExactSum([1e100, 1, -1e100]).rounded == 1)
        #expect(ExactSum([Double](repeating: 0.1, count: 10)).rounded == 1)
        #expect(ExactSum([1e17, 50, 50, 50, -1e17]).rounded == 150)
        var sum = ExactSum()
        for value in [1e16, 1, 1, 1, 1] { sum.add(value) }
        sum.add(-1e16)
        #expect(sum.rounded == 4)
        #expect(ExactSum([]).rounded == 0)
    }

    @Test func meansNeverOverflow() {
        #expect(ExactSum.mean([1e308, 1e308]) == 1e308)
        #expect(ExactSum.mean([.greatestFiniteMagnitude, .greatestFiniteMagnitude]) == .greatestFiniteMagnitude)
        #expect(ExactSum.mean([-1e308, -1e308, -1e308]) == -1e308)
        let expected: Double = (1e308 + 2) / 4
        #expect(ExactSum.mean([1e308, 1e308, -1e308, 2]) == expected)
        #expect(ExactSum.mean([50, 50, 50]) == 50)
        #expect(ExactSum.mean([Double]()).isNaN)
    }

    /// The examples: one nearest-rank rule for negative and positive values.
    @Test func percentilesAreNearestRankOnBothSidesOfZero() {
        #expect(ExactSum.nearestRank(50, sorted: [-1000, -1000, -1, -1]) == -1000)
        #expect(ExactSum.nearestRank(50, sorted: (1...100).map { -Double(101 - $0) }) == -51)
        #expect(ExactSum.nearestRank(50, sorted: (1...100).map(Double.init)) == 50)
        #expect(ExactSum.nearestRank(95, sorted: (1...20).map(Double.init)) == 19)
        #expect(ExactSum.nearestRank(99, sorted: [1e20]) == 1e20)
        #expect(ExactSum.nearestRank(0, sorted: [3, 4]) == 3)
        #expect(ExactSum.nearestRank(100, sorted: [3, 4]) == 4)
    }

    /// Against Python's `math.fsum` on seeded random values of every magnitude, with values added and removed.
    @Test func slidingSumsMatchPythonsFsum() throws {
        var generator = SeededGenerator(test: "slidingSumsMatchPythonsFsum", default: 1414)
        var values: [Double] = []
        for _ in 0..<400 {
            let exponent = Int.random(in: -60...300, using: &generator)
            let sign: Double = Bool.random(using: &generator) ? 1 : -1
            values.append(sign * Double.random(in: 1..<2, using: &generator) * pow(2, Double(exponent)))
        }
        // Windows of 25 values sliding over the list: add the new value, subtract the one that leaves.
        var sum = ExactSum()
        var ours: [String] = []
        var script = "import math\nv = [" + values.map { "float.fromhex('\(hex($0))')" }.joined(separator: ",") + "]\n"
        script += "for i in range(len(v)):\n    print(math.fsum(v[max(0, i - 24):i + 1]).hex())\n"
        for (index, value) in values.enumerated() {
            sum.add(value)
            if index >= 25 { sum.add(-values[index - 25]) }
            ours.append(hex(sum.rounded))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        let theirs = String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            hex(Double(String($0)) ?? .nan)
        }
        #expect(ours == theirs)
    }

    func hex(_ value: Double) -> String {
        if value == 0 { return "0x0.0p+0" }
        let magnitude = abs(value)
        let digits = String(magnitude.significandBitPattern, radix: 16)
        let padded = String(repeating: "0", count: 13 - digits.count) + digits
        return (value < 0 ? "-" : "") + "0x1." + padded + "p" + (magnitude.exponent >= 0 ? "+" : "")
            + String(magnitude.exponent)
    }

}
