import Foundation
import Testing
import WALCore
import WALMetrics

@testable import WALAlerts

/// `avg` windows are exact: no running sum to overflow or to swallow small values.
@Suite struct WindowArithmeticTests {
    func rules(_ yaml: String) throws -> [ThresholdRule] {
        try ThresholdFile.parse(yaml: "version: 1\nmetrics:\n" + yaml, path: "t.yaml").rules
    }

    /// The case: after a 1e17 outlier leaves the window, [50, 50, 50] averages 50 (a running sum said 47,
    /// then 48.5, and missed three warnings at 49.5).
    @Test func anOutlierLeavesNoTraceOnceItExpires() throws {
        let rules = try rules(
            """
              state_get_time_ms:
                warning: 49.5
                window: {aggregate: avg, duration: 3s, min_samples: 3}
                cooldown: 0s
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        let values: [Double] = [1e17, 1, 1, 50, 50, 50, 49.75, 49.75, 49.75, 49.25]
        var fired: [Alert] = []
        for (index, value) in values.enumerated() {
            fired += evaluator.evaluate(
                record("state_get_time_ms", value, seq: UInt64(index + 1), seconds: Double(index))
            )
        }
        // Windows of three: {1e17,1,1} fires, {1,1,50} {1,50,50} do not, then 50, 149.75/3, 149.5/3, 49.75 fire,
        // and {49.75,49.75,49.25} = 49.583... fires too.
        #expect(fired.map(\.seq) == [3, 6, 7, 8, 9, 10])
        let expected: [Double] = [50, 149.75 / 3, 149.5 / 3, 49.75, 148.75 / 3]
        #expect(Array(fired.map(\.value).dropFirst()) == expected)
    }

    /// Two values of 1e308: the average is 1e308, not +inf (and not `"value": null` in the payload), and the
    /// window recovers once they leave it.
    @Test func averagesOfHugeValuesDoNotOverflow() throws {
        let rules = try rules(
            """
              state_get_time_ms:
                critical: 1e307
                warning: 10
                window: {aggregate: avg, duration: 2s, min_samples: 1}
                cooldown: 0s
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        let values: [Double] = [1e308, 1e308, .greatestFiniteMagnitude, 5, 5, 20]
        let fired = values.enumerated().map { index, value in
            evaluator.evaluate(record("state_get_time_ms", value, seq: UInt64(index + 1), seconds: Double(index)))
        }
        #expect(fired[0].map(\.value) == [1e308])
        #expect(fired[1].map(\.value) == [1e308], "the mean of 1e308 and 1e308")
        let halves: Double = 1e308 / 2 + Double.greatestFiniteMagnitude / 2  // Halving is exact: one rounding.
        #expect(fired[2].map(\.value) == [halves], "{1e308, max}")
        #expect(fired[2].first.map { $0.value.isFinite && $0.severity == .critical } == true)
        #expect(fired[3].map(\.severity) == [.critical], "{max, 5}: huge still")
        #expect(fired[4].isEmpty, "{5, 5}: the huge values are gone, the average is exactly 5")
        #expect(fired[5].map(\.value) == [12.5])
        #expect(fired.joined().allSatisfy { !$0.json().contains("null,\"threshold\"") })
    }

    /// NaN and infinities are not evaluated and never enter a window.
    @Test func nonFiniteValuesNeverEnterAWindow() throws {
        let rules = try rules(
            """
              state_get_time_ms:
                warning: 10
                window: {aggregate: avg, duration: 10s, min_samples: 2}
                cooldown: 0s
            """
        )
        var evaluator = AlertEvaluator(rules: rules, logID: logID)
        #expect(evaluator.evaluate(record("state_get_time_ms", 20, seq: 1, seconds: 0)).isEmpty)
        #expect(evaluator.evaluate(record("state_get_time_ms", .infinity, seq: 2, seconds: 1)).isEmpty)
        #expect(evaluator.evaluate(record("state_get_time_ms", .nan, seq: 3, seconds: 2)).isEmpty)
        #expect(evaluator.evaluate(record("state_get_time_ms", 30, seq: 4, seconds: 3)).map(\.value) == [25])
    }
}
