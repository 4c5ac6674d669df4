import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit
import WALTraffic

/// The bulk renderer of `replay --to stdout` must write exactly what `Envelope.render` (the Kafka shipper's
/// renderer) writes, and keep exactly the records `RecordFilter.matches` keeps.
@Suite struct EnvelopeStreamTests {
    @Test func rendersByteForByteWhatEnvelopeRenderWritesAndFiltersTheSame() throws {
        try withCollector(agentID: nil) { collector, path in
            let hostile = ["quote": "a\"b", "backslash": "c\\d", "newline": "e\nf", "unicode": "é✓", "ctl": "\u{1}"]
            for index in 0..<3000 {
                let event = AgentTraffic(thread: index % 2).event(UInt64(index))
                collector.record(
                    event.definition,
                    value: event.value,
                    tags: index % 7 == 0 ? hostile : event.tags,
                    correlationID: index % 5 == 0 ? "job \(index) \"quoted\"" : event.correlationID,
                    agentID: index % 3 == 0 ? nil : event.agentID
                )
            }
            collector.recordGauge("custom_big", value: 1e300, unit: "x")
            collector.recordGauge("custom_small", value: -0.000123, unit: "x")
            try collector.close()
            let logID = try LogDirectory(path: path).readMeta().logID
            let records = try readMetrics(path)

            var filters: [RecordFilter] = [RecordFilter()]
            var byMetric = RecordFilter()
            byMetric.metrics = ["state_*", "custom_big"]
            var byTag = RecordFilter()
            byTag.tags = ["quote": "a\"b"]
            var byAgent = RecordFilter()
            byAgent.agentID = records[1].agentID
            var byCorrelation = RecordFilter()
            byCorrelation.correlationID = records[10].correlationID
            var byRange = RecordFilter()
            byRange.fromSeq = 100
            byRange.toSeq = 2000
            byRange.sinceNanos = records[500].timestampNanos
            byRange.untilNanos = records[1500].timestampNanos
            filters += [byMetric, byTag, byAgent, byCorrelation, byRange]

            for filter in filters {
                var expected: [UInt8] = []
                for record in records where filter.matches(record) {
                    Envelope.render(record, logID: logID, into: &expected)
                    expected.append(0x0A)
                }
                let stream = EnvelopeStream(directory: path, logID: logID, filter: filter)
                var actual: [UInt8] = []
                try LogReader(path: path).read { entry in
                    if case .record(let seq, let bytes) = entry,
                        stream.render(seq: seq, bytes: bytes, into: &actual) == .rendered
                    {
                        actual.append(0x0A)
                    }
                    return true
                }
                #expect(!expected.isEmpty)
                #expect(actual == expected, "\(filter)")
            }

            // Decoded records (the Kafka shipper's path), and records changed after decoding (their symbols no
            // longer stand for them), render the same bytes as Envelope.render.
            let stream = EnvelopeStream(directory: path, logID: logID, sourceService: "svc")
            var changed = records[7]
            changed.tags["extra"] = "x"
            var renamed = records[8]
            renamed.name = "custom_renamed"
            #expect(records.allSatisfy { $0.symbols != nil } && changed.symbols == nil && renamed.symbols == nil)
            for record in records + [changed, renamed] {
                var expected: [UInt8] = []
                Envelope.render(record, logID: logID, sourceService: "svc", into: &expected)
                var actual: [UInt8] = []
                stream.render(record, into: &actual)
                #expect(actual == expected, "record \(record.seq)")
                if actual != expected { break }
            }
        }
    }

    @Test func theParallelReaderDeliversTheSameLinesInOrderAndStopsWhenAsked() throws {
        try withCollector { collector, path in
            for index in 0..<5000 { AgentTraffic(thread: index % 2).emit(UInt64(index), into: collector) }
            try collector.close()
            let logID = try LogDirectory(path: path).readMeta().logID
            let records = try readMetrics(path)
            var filter = RecordFilter()
            filter.metrics = ["routing_*", "workflow_*"]
            filter.fromSeq = 7
            filter.toSeq = 4900
            for threads in [1, 2, 3] {
                var expected: [UInt8] = []
                var expectedSeqs: [UInt64] = []
                for record in records where filter.matches(record) {
                    Envelope.render(record, logID: logID, into: &expected)
                    expected.append(0x0A)
                    expectedSeqs.append(record.seq)
                }
                let reader = EnvelopeReader(
                    directory: path,
                    logID: logID,
                    filter: filter,
                    threads: threads,
                    chunkRecords: 97
                )
                var actual: [UInt8] = []
                var seqs: [UInt64] = []
                var filtered = 0
                try reader.read(
                    passedOver: { entry in
                        if case .filteredOut = entry { filtered += 1 } else { Issue.record("\(entry)") }
                        return true
                    },
                    line: { seq, line in
                        seqs.append(seq)
                        actual.append(contentsOf: line)
                        return true
                    }
                )
                #expect(actual == expected, "threads \(threads)")
                #expect(seqs == expectedSeqs)
                #expect(filtered + seqs.count == 4900 - 7 + 1)

                var stoppedAfter: [UInt64] = []
                try EnvelopeReader(directory: path, logID: logID, filter: filter, threads: threads, chunkRecords: 50)
                    .read(
                        passedOver: { _ in true },
                        line: { seq, _ in
                            stoppedAfter.append(seq)
                            return stoppedAfter.count < 123
                        }
                    )
                #expect(stoppedAfter == Array(expectedSeqs.prefix(123)))
            }
        }
    }

    @Test func aRecordThatIsNotAMetricIsReportedNotRendered() throws {
        let stream = EnvelopeStream(directory: "/nonexistent", logID: LogID.random())
        var output: [UInt8] = []
        let outcome = [UInt8]([0x7F, 1, 2]).withUnsafeBytes { stream.render(seq: 1, bytes: $0, into: &output) }
        #expect(outcome == .undecodable(.notAMetricRecord("kind byte 127")))
        #expect(output.isEmpty)
    }
}
