import Foundation
import Testing
import WALCore
import WALTestKit

@testable import WALMetrics

@Suite struct CodecTests {
    func roundTrip(_ value: Double, correlationID: String? = nil) -> RecordCodec.Fields? {
        withUnsafeTemporaryAllocation(byteCount: RecordCodec.maxSize, alignment: 8) { buffer in
            let count = RecordCodec.encode(
                into: buffer.baseAddress!,
                metric: 7,
                tagSet: 300,
                agent: 2,
                timestampNanos: 1_767_225_600_123_456_789,
                value: value,
                correlation: RecordCodec.Correlation(correlationID)
            )
            #expect(count <= RecordCodec.maxSize)
            return try? RecordCodec.decode(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)).get()
        }
    }

    @Test(arguments: [
        0.0, -0.0, 1, 42, -42, 12.5, 0.1, 0.001, 73.206, 97.55, 0.9417, 1e-9, 123456.789, -0.5, 3.14159265358979,
        1e300, -1e-300, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude, 9_007_199_254_740_992,
        Double(Float.pi), 1.0 / 3.0, 0.5, 2.5, -1_234_567.5, 2_251_799_813_685_247.5, 4_503_599_627_370_495.5,
        225_179_981_368_524.75, 0.1 + 0.2,
    ])
    func valuesRoundTripExactly(value: Double) throws {
        let fields = try #require(roundTrip(value))
        #expect(fields.value == value)
        #expect(fields.value.sign == value.sign)
        #expect(fields.metric == 7 && fields.tagSet == 300 && fields.agent == 2)
        #expect(fields.timestampNanos == 1_767_225_600_123_456_789)
    }

    /// Short decimals take the decimal encoding at their own scale (rounding without libm must not lose them).
    @Test func decimalsKeepTheirScale() {
        #expect(RecordCodec.valueEncoding(73.206) == (.decimal, 3))
        #expect(RecordCodec.valueEncoding(-12.5) == (.decimal, 1))
        #expect(RecordCodec.valueEncoding(0.9417) == (.decimal, 4))
        #expect(RecordCodec.valueEncoding(1e-9) == (.decimal, 9))
        #expect(RecordCodec.valueEncoding(42) == (.integer, 0))
        #expect(RecordCodec.valueEncoding(-0.0) == (.float, 0))
        #expect(RecordCodec.valueEncoding(0.1 + 0.2) == (.double, 0))
    }

    @Test func randomValuesRoundTripExactly() throws {
        var generator = SeededGenerator()
        for _ in 0..<20_000 {
            let bits = UInt64.random(in: 0...UInt64.max, using: &generator)
            let value = Double(bitPattern: bits)
            guard value.isFinite else { continue }
            #expect(roundTrip(value)?.value.bitPattern == value.bitPattern)
            let decimal = (Double(Int.random(in: -10_000_000...10_000_000, using: &generator)) / 1000)
            #expect(roundTrip(decimal)?.value == decimal)
        }
    }

    @Test(arguments: [
        nil, "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b", "3F2A9C1E-7B4D-4E8F-9A0B-1C2D3E4F5A6B", "req-17", "ünïcødé",
        "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6", "3f2a9c1e+7b4d-4e8f-9a0b-1c2d3e4f5a6b",
    ])
    func correlationIDsRoundTripAsText(correlationID: String?) throws {
        #expect(try #require(roundTrip(1, correlationID: correlationID)).correlationID == correlationID)
    }

    /// Golden bytes: the encoding is part of the on-disk contract (wal-format.md, "Metric records").
    @Test func goldenBytes() {
        let bytes: [UInt8] = withUnsafeTemporaryAllocation(byteCount: RecordCodec.maxSize, alignment: 8) { buffer in
            let count = RecordCodec.encode(
                into: buffer.baseAddress!,
                metric: 3,
                tagSet: 200,
                agent: 1,
                timestampNanos: 0x0102_0304_0506_0708,
                value: 12.5,
                correlation: RecordCodec.Correlation("00112233-4455-6677-8899-aabbccddeeff")
            )
            return Array(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
        }
        let expected: [UInt8] =
            [0x01, 0x2C, 0x03, 0xC8, 0x01, 0x01]  // kind, flags (decimal | uuid << 3 | agent), ids
            + [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]  // time, big-endian
            + [0x01, 0xFA, 0x01]  // scale 1, zigzag(125) = 250
            + [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF]
        #expect(bytes == expected)
    }

    /// Garbage never crashes the decoders, and they refuse what they must: a record whose kind byte is not 1, every
    /// strict prefix of a valid record, and a symbol entry cut short.
    @Test func garbageNeverDecodesIntoACrash() throws {
        var generator = SeededGenerator()
        var decoded = 0
        for length in 0..<200 {
            for _ in 0..<50 {
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if !bytes.isEmpty && Bool.random(using: &generator) { bytes[0] = 1 }
                let result = bytes.withUnsafeBytes { RecordCodec.decode($0) }
                if let kind = bytes.first, kind != 1, case .success = result {
                    Issue.record("a record of kind \(kind) decoded as a metric record")
                }
                if case .success(let fields) = result {
                    decoded += 1
                    #expect(fields.metric >= 1, "a decoded record names a metric")
                }
                _ = bytes.withUnsafeBytes { Symbol.decode($0, limit: 10) }
            }
        }
        #expect(decoded < 200 * 50 / 2, "most garbage is refused")
        for value in [0.0, 12.5, -1e300, 73.206] {
            for correlationID in [nil, "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b", "req-17"] {
                let bytes: [UInt8] = withUnsafeTemporaryAllocation(byteCount: RecordCodec.maxSize, alignment: 8) {
                    let count = RecordCodec.encode(
                        into: $0.baseAddress!,
                        metric: 7,
                        tagSet: 300,
                        agent: 2,
                        timestampNanos: 1_767_225_600_123_456_789,
                        value: value,
                        correlation: RecordCodec.Correlation(correlationID)
                    )
                    return Array(UnsafeRawBufferPointer(start: $0.baseAddress, count: count))
                }
                #expect(throws: Never.self) { try bytes.withUnsafeBytes { try RecordCodec.decode($0).get() } }
                for cut in 0..<bytes.count {
                    let prefix = Array(bytes.prefix(cut))
                    let result = prefix.withUnsafeBytes { RecordCodec.decode($0) }
                    guard case .failure = result else {
                        Issue.record("a record cut to \(cut) of \(bytes.count) bytes decoded")
                        continue
                    }
                }
            }
        }
        let entry = Symbol.string("routing_decision_time_ms").encode()
        for cut in 0..<entry.count - 1 {
            let decoded = Array(entry.prefix(cut)).withUnsafeBytes { Symbol.decode($0, limit: 10) }
            #expect(decoded != .string("routing_decision_time_ms"))
        }
    }

    @Test func symbolEntriesRoundTrip() {
        let symbols: [Symbol] = [
            .string("routing_decision_time_ms"), .string(""), .string("ünïcødé"),
            .metric(type: .rate, name: 1, unit: 2), .tagSet([(1, 2), (3, 3)]), .tagSet([]),
        ]
        for symbol in symbols {
            let encoded = symbol.encode()
            #expect(encoded.withUnsafeBytes { Symbol.decode($0, limit: 3) } == symbol)
        }
        #expect(
            Symbol.metric(type: .gauge, name: 4, unit: 1).encode().withUnsafeBytes { Symbol.decode($0, limit: 3) }
                == nil,
            "ids refer to earlier entries only"
        )
    }
}

@Suite struct EnvelopeTests {
    let logID = LogID(bytes: [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
    ])

    /// Vectors from Python: `uuid.uuid5(UUID("00112233-4455-6677-8899-aabbccddeeff"), str(seq))`.
    @Test(arguments: [
        (UInt64(1), "2bb28c74-3668-5e67-b896-94fe3712f904"),
        (UInt64(1_234_567), "f22a0326-f442-593f-be8b-c13a3e5aa4fd"),
        (UInt64.max, "3740a6f7-2180-5c3b-a62f-ff9b60e081d1"),
    ])
    func eventIDsAreUUIDv5OfTheSequenceNumberInTheLogNamespace(seq: UInt64, expected: String) {
        #expect(Envelope.eventID(logID: logID, seq: seq) == expected)
    }

    /// Names whose SHA-1 input (namespace and name) spans the padding's edge cases and two blocks, against Python's
    /// `uuid.uuid5(UUID("00112233-4455-6677-8899-aabbccddeeff"), name)`.
    @Test(arguments: [
        (String(repeating: "a", count: 40), "0e775beb-1d15-5d07-b5d3-db215d6323c8"),
        (String(repeating: "b", count: 47), "8e68ca44-233d-536a-9aa2-bcd1dcc11142"),
        (String(repeating: "c", count: 48), "74cd9742-c2cd-59c0-b2ae-5d8be6f32dc5"),
        ("alert:" + String(repeating: "x", count: 100), "6aa6cf34-7ffe-5ce2-9072-a34f368ab44e"),
    ])
    func uuid5OfLongerNamesMatchesPython(name: String, expected: String) {
        #expect(Envelope.uuid5(logID: logID, name: name) == expected)
    }

    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000000000Z"),
        (Int64(951_782_400_123_456_789), "2000-02-29T00:00:00.123456789Z"),
        (Int64(1_767_225_600_000_000_001), "2026-01-01T00:00:00.000000001Z"),
        (Int64(-1), "1969-12-31T23:59:59.999999999Z"),
    ])
    func timestampsAreISO8601UTCWithNanoseconds(nanos: Int64, expected: String) {
        var bytes: [UInt8] = []
        Envelope.appendTimestamp(nanos, into: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
    }

    @Test func envelopeFieldsAreTheDesignsAndParseBack() throws {
        let record = MetricRecord(
            seq: 1,
            name: "routing_decision_time_ms",
            type: .timing,
            value: 12.5,
            unit: "ms",
            tags: ["routing_strategy": "smart", "agent_type": "router"],
            timestampNanos: 1_767_225_600_000_000_001,
            correlationID: "c-1",
            agentID: "agent-7"
        )
        let json = Envelope.json(record, logID: logID, sourceService: "svc")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(
            Set(object.keys) == [
                "event_type", "event_version", "event_id", "timestamp", "source_service", "correlation_id", "payload",
            ]
        )
        #expect(object["event_type"] as? String == "metric.recorded")
        #expect(object["event_version"] as? String == "v1")
        #expect(object["event_id"] as? String == "2bb28c74-3668-5e67-b896-94fe3712f904")
        #expect(object["timestamp"] as? String == "2026-01-01T00:00:00.000000001Z")
        #expect(object["source_service"] as? String == "svc")
        #expect(object["correlation_id"] as? String == "c-1")
        let payload = try #require(object["payload"] as? [String: Any])
        #expect(
            Set(payload.keys) == [
                "metric_id", "metric_name", "metric_type", "value", "unit", "tags", "agent_id", "correlation_id",
            ]
        )
        #expect(payload["metric_id"] as? String == "route_001")
        #expect(payload["metric_name"] as? String == "routing_decision_time_ms")
        #expect(payload["metric_type"] as? String == "timing")
        #expect(payload["value"] as? Double == 12.5)
        #expect(payload["unit"] as? String == "ms")
        #expect(payload["tags"] as? [String: String] == ["routing_strategy": "smart", "agent_type": "router"])
        #expect(payload["agent_id"] as? String == "agent-7")
        #expect(payload["correlation_id"] as? String == "c-1")
        // Keys in the design's order, and optional fields as null.
        #expect(json.hasPrefix(#"{"event_type":"metric.recorded","event_version":"v1","event_id":"#))
        var bare = record
        bare.correlationID = nil
        bare.agentID = nil
        let text = Envelope.json(bare, logID: logID)
        #expect(text.contains(#""correlation_id":null,"payload""#))
        #expect(text.contains(#""agent_id":null"#))
    }
}
