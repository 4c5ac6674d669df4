import WALCore

/// The design's `OnexEnvelopeV1` JSON for a metric record, rendered by hand (fast, no Foundation) with keys in
/// the design's order:
///
/// ```json
/// {"event_type":"metric.recorded","event_version":"v1","event_id":"…","timestamp":"2026-11-29T11:20:27.123456789Z",
///  "source_service":"omninode-bridge","correlation_id":"…",
///  "payload":{"metric_id":"route_001","metric_name":"routing_decision_time_ms","metric_type":"timing",
///             "value":12.5,"unit":"ms","tags":{"agent_type":"router"},"agent_id":"agent-1","correlation_id":"…"}}
/// ```
///
/// `event_id` is deterministic: the UUID version 5 (SHA-1) of the decimal sequence number in the namespace of the
/// log id, so re-shipping a record yields the same id, and any consumer can recompute it
/// (`uuid.uuid5(UUID(log_id), str(seq))` in Python).
public enum Envelope {
    public static let defaultSourceService = "omninode-bridge"
    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Where the event id lies in every envelope `render` writes (after its fixed opening,
    /// `{"event_type":"metric.recorded","event_version":"v1","event_id":"`): a sink reuses those bytes.
    package static let eventIDRange = 65..<101

    /// The event id of record `seq` of log `logID`.
    public static func eventID(logID: LogID, seq: UInt64) -> String {
        let (high, low) = eventIDBits(logID: logID, seq: seq)
        return RecordCodec.formatUUID(high, low)
    }

    /// Appends the event id's 36 characters to `output` (no String made).
    static func appendEventID(logID: LogID, seq: UInt64, into output: inout [UInt8]) {
        let (high, low) = eventIDBits(logID: logID, seq: seq)
        appendUUID(high, low, into: &output)
    }

    /// Appends the canonical text of a UUID given as two halves (36 characters, lower case).
    static func appendUUID(_ high: UInt64, _ low: UInt64, into output: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 36) { text in
            writeUUID(high, low, into: text)
            output.append(contentsOf: UnsafeBufferPointer(text))
        }
    }

    /// Writes the 36 characters of a UUID's canonical text into `text` (at least 36 bytes).
    static func writeUUID(_ high: UInt64, _ low: UInt64, into text: UnsafeMutableBufferPointer<UInt8>) {
        @inline(__always) func hex(_ nibble: UInt64) -> UInt8 {
            nibble < 10 ? 0x30 + UInt8(nibble) : 0x57 + UInt8(nibble)
        }
        var position = 35
        var value = low
        for _ in 0..<16 {
            if position == 23 {
                text[position] = 0x2D
                position -= 1
            }
            text[position] = hex(value & 0xF)
            value >>= 4
            position -= 1
        }
        value = high
        for _ in 0..<16 {
            if position == 18 || position == 13 || position == 8 {
                text[position] = 0x2D
                position -= 1
            }
            text[position] = hex(value & 0xF)
            value >>= 4
            position -= 1
        }
    }

    /// A UUID version 5 (SHA-1) of `name` in the namespace of the log id, as canonical text: the event id scheme,
    /// for other names (alert ids).
    public static func uuid5(logID: LogID, name: String) -> String {
        let message = logID.bytes + Array(name.utf8)
        let (high, low) = message.withUnsafeBytes { bytes in
            uuid5Bits(bytes)
        }
        return RecordCodec.formatUUID(high, low)
    }

    /// The 128 bits of the UUID version 5 whose SHA-1 input is `message` (namespace bytes, then the name).
    static func uuid5Bits(_ message: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        SHA1.hash(message) { digest in
            digest[6] = (digest[6] & 0x0F) | 0x50
            digest[8] = (digest[8] & 0x3F) | 0x80
            var high: UInt64 = 0
            var low: UInt64 = 0
            for index in 0..<8 { high = high << 8 | UInt64(digest[index]) }
            for index in 8..<16 { low = low << 8 | UInt64(digest[index]) }
            return (high, low)
        }
    }

    /// The 128 bits of the event id (UUID version 5 of the decimal seq in the log id's namespace).
    static func eventIDBits(logID: LogID, seq: UInt64) -> (UInt64, UInt64) {
        // The message: the 16 bytes of the namespace, then the decimal digits of seq (at most 20).
        withUnsafeTemporaryAllocation(byteCount: 36, alignment: 8) { message in
            var length = 0
            for byte in logID.bytes {
                message[length] = byte
                length += 1
            }
            var digits = 1
            var rest = seq / 10
            while rest > 0 {
                rest /= 10
                digits += 1
            }
            var value = seq
            for position in stride(from: length + digits - 1, through: length, by: -1) {
                message[position] = 0x30 + UInt8(value % 10)
                value /= 10
            }
            length += digits
            return uuid5Bits(UnsafeRawBufferPointer(rebasing: message[0..<length]))
        }
    }

    /// Appends the envelope JSON of `record` (no trailing newline) to `output`. `eventID`, when given, must be
    /// `eventID(logID:seq:)` of the record (a caller that needs it too computes it once).
    public static func render(
        _ record: MetricRecord,
        logID: LogID,
        sourceService: String = defaultSourceService,
        eventID precomputed: String? = nil,
        into output: inout [UInt8]
    ) {
        output.append(contentsOf: #"{"event_type":"metric.recorded","event_version":"v1","event_id":""#.utf8)
        if let precomputed {
            output.append(contentsOf: precomputed.utf8)
        } else {
            appendEventID(logID: logID, seq: record.seq, into: &output)
        }
        output.append(contentsOf: #"","timestamp":""#.utf8)
        appendTimestamp(record.timestampNanos, into: &output)
        output.append(contentsOf: #"","source_service":"#.utf8)
        appendString(sourceService, into: &output)
        output.append(contentsOf: #","correlation_id":"#.utf8)
        appendOptional(record.correlationID, into: &output)
        output.append(contentsOf: #","payload":{"metric_id":"#.utf8)
        appendString(record.metricID, into: &output)
        output.append(contentsOf: #","metric_name":"#.utf8)
        appendString(record.name, into: &output)
        output.append(contentsOf: #","metric_type":""#.utf8)
        output.append(contentsOf: record.type.description.utf8)
        output.append(contentsOf: #"","value":"#.utf8)
        appendNumber(record.value, into: &output)
        output.append(contentsOf: #","unit":"#.utf8)
        appendString(record.unit, into: &output)
        output.append(contentsOf: #","tags":{"#.utf8)
        for (index, pair) in record.tags.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { output.append(0x2C) }
            appendString(pair.key, into: &output)
            output.append(0x3A)
            appendString(pair.value, into: &output)
        }
        output.append(contentsOf: #"},"agent_id":"#.utf8)
        appendOptional(record.agentID, into: &output)
        output.append(contentsOf: #","correlation_id":"#.utf8)
        appendOptional(record.correlationID, into: &output)
        output.append(contentsOf: "}}".utf8)
    }

    /// The envelope as a String.
    public static func json(
        _ record: MetricRecord,
        logID: LogID,
        sourceService: String = defaultSourceService
    )
        -> String
    {
        var bytes: [UInt8] = []
        render(record, logID: logID, sourceService: sourceService, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - JSON pieces

    static func appendOptional(_ text: String?, into output: inout [UInt8]) {
        if let text { appendString(text, into: &output) } else { output.append(contentsOf: "null".utf8) }
    }

    /// A JSON string literal, for other renderers (the PostgreSQL `tags` column).
    public static func appendJSONString(_ text: String, into output: inout [UInt8]) {
        appendString(text, into: &output)
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped; other UTF-8 kept as is.
    static func appendString(_ text: String, into output: inout [UInt8]) {
        output.append(0x22)
        // Most strings need no escaping: copy them whole.
        let copied: Bool? = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) else { return false }
            output.append(contentsOf: bytes)
            return true
        }
        if copied == true {
            output.append(0x22)
            return
        }
        let hex = hexDigits
        for byte in text.utf8 {
            switch byte {
            case 0x22: output.append(contentsOf: [0x5C, 0x22])
            case 0x5C: output.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: output.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: output.append(contentsOf: [0x5C, 0x72])
            case 0x09: output.append(contentsOf: [0x5C, 0x74])
            case 0..<0x20:
                output.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: output.append(byte)
            }
        }
        output.append(0x22)
    }

    /// A JSON number (wal-format.md, section 13.4): an integral value of magnitude up to 2^53 as its integer
    /// digits (no `.0`; -0 as `0`), any other the shortest text that reads back as the same double (Swift's
    /// `description`: `12.5`, `1e-05`, `1e+16`). Values are finite by validation; a non-finite value read from a
    /// damaged log renders as `null`.
    static func appendNumber(_ value: Double, into output: inout [UInt8]) {
        guard value.isFinite else {
            output.append(contentsOf: "null".utf8)
            return
        }
        if value == 0 && value.sign == .minus {
            // Negative zero keeps its sign, as the log and PostgreSQL keep it ("-0" would read back as the integer 0).
            output.append(contentsOf: "-0.0".utf8)
        } else if value == value.rounded(), abs(value) <= 9_007_199_254_740_992 {
            appendInteger(Int64(value), into: &output)
        } else {
            output.append(contentsOf: value.description.utf8)
        }
    }

    /// The decimal digits of an integer, without an intermediate String.
    static func appendInteger(_ value: Int64, into output: inout [UInt8]) {
        if value < 0 { output.append(0x2D) }
        var magnitude = value.magnitude
        var digits = 1
        var scale: UInt64 = 1
        while magnitude / scale >= 10 {
            scale *= 10
            digits += 1
        }
        for _ in 0..<digits {
            output.append(0x30 + UInt8(magnitude / scale))
            magnitude %= scale
            scale /= 10
        }
    }

    /// The JSON number text of a value (what `render` writes).
    public static func numberText(_ value: Double) -> String {
        var bytes: [UInt8] = []
        appendNumber(value, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses RFC 3339 to nanoseconds since the epoch, the inverse of `appendTimestamp`: `2026-11-29T14:00:00Z`,
    /// `2026-11-29T14:00:00.123456789+01:00` (nanosecond precision kept; `t`, `z` and a space separator accepted,
    /// as RFC 3339 allows). Nil for anything else, and for times outside 1677-09-21 to 2262-04-11.
    public static func parseTimestamp(_ text: String) -> Int64? {
        let chars = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= chars.count else { return nil }
            var value = 0
            for index in range {
                guard chars[index] >= 0x30 && chars[index] <= 0x39 else { return nil }
                value = value * 10 + Int(chars[index] - 0x30)
            }
            return value
        }
        guard chars.count >= 20, chars[4] == 0x2D, chars[7] == 0x2D, [0x54, 0x74, 0x20].contains(chars[10]),
            chars[13] == 0x3A, chars[16] == 0x3A,
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var nanos: Int64 = 0
        if index < chars.count && chars[index] == 0x2E {
            index += 1
            var digits = 0
            while index < chars.count, chars[index] >= 0x30 && chars[index] <= 0x39 {
                if digits < 9 { nanos = nanos * 10 + Int64(chars[index] - 0x30) }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 9) { nanos *= 10 }
        }
        var offsetSeconds = 0
        guard index < chars.count else { return nil }
        if chars[index] == 0x5A || chars[index] == 0x7A {
            index += 1
        } else if chars[index] == 0x2B || chars[index] == 0x2D {
            guard chars.count == index + 6, chars[index + 3] == 0x3A, let hours = number(index + 1..<index + 3),
                let minutes = number(index + 4..<index + 6)
            else { return nil }
            offsetSeconds = (hours * 3600 + minutes * 60) * (chars[index] == 0x2D ? -1 : 1)
            index += 6
        }
        guard index == chars.count else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm), avoiding timegm's dependence on the C library.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetSeconds)
        // Nanoseconds in an Int64 reach from 1677-09-21 to 2262-04-11: a time outside is not a time of ours (nil),
        // never an overflow trap (a journal line or a `--since` naming the year 2263 crashed the process).
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (total, overflowAgain) = whole.addingReportingOverflow(nanos)
        return overflow || overflowAgain ? nil : total
    }

    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, nanoseconds).
    public static func appendTimestamp(_ nanos: Int64, into output: inout [UInt8]) {
        let seconds = nanos >= 0 ? nanos / 1_000_000_000 : (nanos - 999_999_999) / 1_000_000_000
        let fraction = nanos - seconds * 1_000_000_000
        var days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        // 30 bytes, written in place: YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ (Int64 nanoseconds span years 1677 to 2262).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 30) { text in
            func digits(_ value: Int64, _ width: Int, at start: Int) {
                var rest = value.magnitude
                for index in stride(from: start + width - 1, through: start, by: -1) {
                    text[index] = UInt8(0x30 + rest % 10)
                    rest /= 10
                }
            }
            digits(year, 4, at: 0)
            text[4] = 0x2D
            digits(month, 2, at: 5)
            text[7] = 0x2D
            digits(day, 2, at: 8)
            text[10] = 0x54
            digits(secondOfDay / 3600, 2, at: 11)
            text[13] = 0x3A
            digits(secondOfDay / 60 % 60, 2, at: 14)
            text[16] = 0x3A
            digits(secondOfDay % 60, 2, at: 17)
            text[19] = 0x2E
            digits(fraction, 9, at: 20)
            text[29] = 0x5A
            output.append(contentsOf: UnsafeBufferPointer(text))
        }
    }
}

/// SHA-1 (FIPS 180-4), for UUID version 5 event ids only (not for security), in stack buffers.
enum SHA1 {
    /// Hashes `message` and passes the 20-byte digest to `body`.
    static func hash<R>(_ message: UnsafeRawBufferPointer, _ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        let blocks = (message.count + 8) / 64 + 1
        return withUnsafeTemporaryAllocation(byteCount: blocks * 64 + 80 * 4 + 20, alignment: 8) { scratch in
            let padded = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(blocks * 64)])
            padded.initializeMemory(as: UInt8.self, repeating: 0)
            if let base = message.baseAddress, let target = padded.baseAddress {
                target.copyMemory(from: base, byteCount: message.count)
            }
            padded[message.count] = 0x80
            let bits = UInt64(message.count) * 8
            for index in 0..<8 {
                padded[blocks * 64 - 1 - index] = UInt8(truncatingIfNeeded: bits >> UInt64(index * 8))
            }
            let words = UnsafeMutableRawBufferPointer(rebasing: scratch[(blocks * 64)..<(blocks * 64 + 320)])
                .bindMemory(to: UInt32.self)
            var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (
                0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0
            )
            for chunk in stride(from: 0, to: blocks * 64, by: 64) {
                for i in 0..<16 {
                    let b = chunk + i * 4
                    words[i] =
                        UInt32(padded[b]) << 24 | UInt32(padded[b + 1]) << 16 | UInt32(padded[b + 2]) << 8
                        | UInt32(padded[b + 3])
                }
                for i in 16..<80 {
                    let x = words[i - 3] ^ words[i - 8] ^ words[i - 14] ^ words[i - 16]
                    words[i] = x << 1 | x >> 31
                }
                var (a, b, c, d, e) = h
                // Four loops of twenty rounds, one per round function (no per-round switch).
                @inline(__always) func round(_ f: UInt32, _ k: UInt32, _ w: UInt32) {
                    let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w
                    e = d
                    d = c
                    c = b << 30 | b >> 2
                    b = a
                    a = temp
                }
                for i in 0..<20 { round((b & c) | (~b & d), 0x5A82_7999, words[i]) }
                for i in 20..<40 { round(b ^ c ^ d, 0x6ED9_EBA1, words[i]) }
                for i in 40..<60 { round((b & c) | (b & d) | (c & d), 0x8F1B_BCDC, words[i]) }
                for i in 60..<80 { round(b ^ c ^ d, 0xCA62_C1D6, words[i]) }
                h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
            }
            let digest = UnsafeMutableRawBufferPointer(rebasing: scratch[(blocks * 64 + 320)...])
            for (index, word) in [h.0, h.1, h.2, h.3, h.4].enumerated() {
                digest[index * 4] = UInt8(word >> 24)
                digest[index * 4 + 1] = UInt8(word >> 16 & 0xFF)
                digest[index * 4 + 2] = UInt8(word >> 8 & 0xFF)
                digest[index * 4 + 3] = UInt8(word & 0xFF)
            }
            return body(digest)
        }
    }
}
