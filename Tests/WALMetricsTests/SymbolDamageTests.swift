import Foundation
import Testing
@_spi(Testing) import WALCore
import WALTestKit

@testable import WALMetrics

/// `metrics.symbols` damage: a symbol id that stored records may refer to is never given to another string, and
/// `walctl verify` reports the damage. A torn last entry (a crash while interning) is still cut.
@Suite struct SymbolDamageTests {
    /// The byte offsets of the entries of a symbols file, in id order (entry i has id i + 1).
    static func entryOffsets(_ bytes: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        var offset = SymbolFileFormat.headerSize
        while offset + 8 <= bytes.count {
            let length = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16
            guard length > 0 else { break }
            offsets.append(offset)
            offset += (8 + length + 7) & ~7
        }
        return offsets
    }

    static func symbolsPath(_ log: String) -> String { log + "/" + SymbolFileFormat.fileName }

    /// A log of one record (tag `agent_type=a`) in `directory`: its path, its symbols file and that file's bytes.
    static func logOfOneRecord(in directory: TemporaryDirectory) throws -> (String, URL, [UInt8]) {
        let path = directory.file("log")
        try withCollectorAt(path) {
            $0.record("routing_decision_time_ms", type: .timing, value: 1, unit: "ms", tags: ["agent_type": "a"])
        }
        let url = URL(fileURLWithPath: symbolsPath(path))
        return (path, url, try [UInt8](Data(contentsOf: url)))
    }

    /// Every record of a log by seq: decoded as (name, unit, tags, agent, value), or nil when it does not decode.
    static func decodedRecords(_ path: String) throws -> [UInt64: String?] {
        var records: [UInt64: String?] = [:]
        try MetricsReader(path: path).read { entry in
            switch entry {
            case .metric(let record):
                let tags = record.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                records[record.seq] =
                    "\(record.name) \(record.unit) \(tags) \(record.agentID ?? "-") \(record.value)"
            case .undecodable(let seq, _): records[seq] = String?.none
            default: Issue.record("unexpected entry \(entry)")
            }
            return true
        }
        return records
    }

    /// The hostile tester's repro: one flipped bit in the payload of entry 40 of a 756-entry table. The writer
    /// used to cut the table there and give ids 40 and later to new strings, and 429 old records then decoded as
    /// other names and tags while verify said sound.
    @Test func aFlippedBitInTheMiddleNeverRenamesStoredRecords() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let emitted = try walctl(["emit", "--dir", path, "--count", "20000"])
            #expect(emitted.status == 0, "\(emitted.err)")
            let before = try Self.decodedRecords(path)
            #expect(before.count == 20000 && before.values.allSatisfy { $0 != nil })

            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.symbolsPath(path))))
            let offsets = Self.entryOffsets(bytes)
            try #require(offsets.count > 100, "the traffic interns many symbols (\(offsets.count))")
            bytes[offsets[40] + 9] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: Self.symbolsPath(path)))

            // verify reports the damage, what it hides, and is not "sound".
            let verify = try walctl(["verify", path])
            #expect(verify.status == 1, "\(verify.out)")
            #expect(verify.out.contains("DAMAGED metrics.symbols at byte \(offsets[40])"), "\(verify.out)")
            #expect(verify.out.contains("symbol id 41"), "\(verify.out)")
            #expect(!verify.out.split(separator: "\n").contains("sound"))
            let stats = try walctl(["stats", path, "--json"])
            let statsObject = try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [String: Any]
            let undecodable = try #require((statsObject?["scan"] as? [String: Any])?["undecodable"] as? Int)
            let json = try walctl(["verify", path, "--json"])
            #expect(json.status == 1)
            let object = try #require(JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
            #expect(object["sound"] as? Bool == false)
            let symbols = try #require(object["symbols"] as? [String: Any])
            let damage = try #require(symbols["damage"] as? [String: Any])
            #expect(damage["offset"] as? Int == offsets[40])
            #expect(damage["first_unreadable_id"] as? Int == 41)
            #expect(damage["entries_after"] as? Int == offsets.count - 41)
            #expect(symbols["entries"] as? Int == 40)
            let hidden = try #require(symbols["records_referring_to_unreadable_symbols"] as? Int)
            let stillDecoding = try Self.decodedRecords(path).values.count { $0 != nil }
            #expect(hidden > 0 && hidden == before.count - stillDecoding)
            #expect(undecodable == hidden, "stats and verify count the same records")

            // The writer refuses the log (CLI and library), with an error that says why and what to do.
            let emit = try walctl([
                "emit", "--dir", path, "--metric", "custom_other_metric_count", "--type", "gauge", "--unit", "count",
                "--value", "1", "--tag", "zone=eu1",
            ])
            #expect(emit.status != 0)
            #expect(emit.err.contains("damaged at byte \(offsets[40])") && emit.err.contains("walctl verify"))
            #expect {
                try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            } throws: { error in
                (error as? MetricsError)?.code == .corrupt
            }
            let after = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.symbolsPath(path))))
            #expect(after == bytes, "the symbols file is left exactly as found")

            // Every record decodes as before or not at all: never as other strings.
            let decoded = try Self.decodedRecords(path)
            #expect(decoded.count == before.count)
            for (seq, text) in decoded {
                if let text { #expect(text == before[seq], "record \(seq)") }
            }

            // --repair cannot restore a symbol: it changes nothing in the file and still reports the damage.
            let repair = try walctl(["verify", path, "--repair"])
            #expect(repair.status == 1)
            #expect(repair.out.contains("DAMAGED metrics.symbols"))
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.symbolsPath(path)))) == bytes)
        }
    }

    /// A crash while interning leaves the new entry's payload and checksum with a length of 0 (stored last). That
    /// entry's id was never returned, so the next writer cuts it and gives the id to the next string, as before.
    @Test func aTornLastEntryIsStillCut() throws {
        try withTemporaryDirectory { directory in
            var (path, url, bytes) = try Self.logOfOneRecord(in: directory)
            let offsets = Self.entryOffsets(bytes)
            let last = try #require(offsets.last)
            let lastLength = Int(bytes[last]) | Int(bytes[last + 1]) << 8
            let end = last + ((8 + lastLength + 7) & ~7)
            // The torn entry: checksum and payload of a string, length not stored.
            let payload = Symbol.string("torn_by_a_kill").encode()
            let crc = CRC32C.checksum(payload)
            withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange(end + 4..<end + 8, with: $0) }
            bytes.replaceSubrange(end + 8..<end + 8 + payload.count, with: payload)
            try Data(bytes).write(to: url)

            let verify = try walctl(["verify", path])
            #expect(verify.status == 0, "\(verify.out)")
            #expect(verify.out.contains("symbols: torn last entry"), "\(verify.out)")

            try withCollectorAt(path) {
                $0.record("routing_decision_time_ms", type: .timing, value: 2, unit: "ms", tags: ["agent_type": "b"])
            }
            let reopened = try [UInt8](Data(contentsOf: url))
            // The torn entry's id went to "b" (then its tag set): the slot holds the new string.
            let reopenedOffsets = Self.entryOffsets(reopened)
            #expect(reopenedOffsets.count == offsets.count + 2 && reopenedOffsets[offsets.count] == end)
            #expect(Array(reopened[end + 8..<end + 10]) == Symbol.string("b").encode())
            let records = try readMetrics(path)
            #expect(records.map { $0.tags["agent_type"] } == ["a", "b"])
            let clean = try walctl(["verify", path])
            #expect(clean.status == 0 && !clean.out.contains("symbols:"), "\(clean.out)")
        }
    }

    /// Damage in the last entry (its length is stored, its checksum fails) is not a crash: `append` stores the
    /// length last, so that entry's id was returned and records may use it. The writer refuses; it used to cut.
    @Test func aDamagedLastEntryIsNotCut() throws {
        try withTemporaryDirectory { directory in
            var (path, url, bytes) = try Self.logOfOneRecord(in: directory)
            let last = try #require(Self.entryOffsets(bytes).last)
            bytes[last + 9] ^= 0x40
            try Data(bytes).write(to: url)
            #expect(try readMetrics(path, expectingUndecodable: 1).isEmpty)

            #expect {
                try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            } throws: { error in
                let error = error as? MetricsError
                return error?.code == .corrupt && error?.message.contains("entry checksum mismatch") == true
            }
            #expect(try [UInt8](Data(contentsOf: url)) == bytes)
            let verify = try walctl(["verify", path])
            #expect(verify.status == 1 && verify.out.contains("1 records refer to symbol"), "\(verify.out)")
        }
    }

    /// The classification itself: clean, torn (length 0, within one entry, nothing valid after), and the damage
    /// shapes that a crash cannot leave.
    @Test func examineTellsATornEntryFromDamage() throws {
        var file = SymbolFileFormat.header(logID: LogID.random(), sourceService: "s")
        func entry(_ symbol: Symbol) -> [UInt8] {
            let payload = symbol.encode()
            var bytes: [UInt8] = []
            withUnsafeBytes(of: UInt32(payload.count).littleEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { bytes.append(contentsOf: $0) }
            bytes += payload
            bytes += [UInt8](repeating: 0, count: (8 - bytes.count % 8) % 8)
            return bytes
        }
        let first = entry(.string("a_name")), second = entry(.string("unit")), third = entry(.string("zone"))
        file += first + second + third
        let end = file.count
        file += [UInt8](repeating: 0, count: 16384 - file.count)
        func tail(_ bytes: [UInt8]) -> SymbolFileFormat.Tail {
            bytes.withUnsafeBytes { SymbolFileFormat.examine($0).tail }
        }
        #expect(tail(file) == .clean)

        var torn = file
        torn[end + 4] = 0x7F
        torn[end + 20] = 0x01
        #expect(tail(torn) == .torn(bytes: 21))

        var tooLong = file
        tooLong[end + 4] = 1
        tooLong[end + 8 + 4096 + 1] = 1
        guard case .damaged(let spread) = tail(tooLong) else { Issue.record("bytes past one entry: damage"); return }
        #expect(spread.firstUnreadableID == 4)

        var middle = file
        middle[64 + first.count + 9] ^= 0x01
        guard case .damaged(let damage) = tail(middle) else { Issue.record("a bad middle entry: damage"); return }
        #expect(damage.offset == 64 + first.count && damage.firstUnreadableID == 2 && damage.entriesAfter == 1)
        #expect(damage.reason == "entry checksum mismatch")

        var zeroedLength = file
        zeroedLength.replaceSubrange(64 + first.count..<64 + first.count + 4, with: [0, 0, 0, 0])
        guard case .damaged(let zeroed) = tail(zeroedLength) else { Issue.record("length 0, entry after"); return }
        #expect(zeroed.firstUnreadableID == 2 && zeroed.entriesAfter == 1)

        for size in [0, 7, 63, 64, end - 3, end + 5] {
            _ = Array(file.prefix(size)).withUnsafeBytes { SymbolFileFormat.examine($0) }  // no trap on odd sizes
        }
        #expect(tail(Array(file.prefix(end - 3))) == .clean, "only the padding of the last entry is cut")
        #expect(tail(Array(file.prefix(end - 4))) != .clean, "a cut last entry is not the clean end")

        var malformed = file
        let forward = entry(.metric(type: .gauge, name: 9, unit: 9))
        malformed.replaceSubrange(end..<end + forward.count, with: forward)
        guard case .damaged(let bad) = tail(malformed) else { Issue.record("a malformed entry: damage"); return }
        #expect(bad.firstUnreadableID == 4 && bad.entriesAfter == 0)
    }
}

private func withCollectorAt(_ path: String, _ body: (MetricsCollector) throws -> Void) throws {
    let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
    try body(collector)
    try collector.close()
}

/// The records of a log that decode, expecting `count` that do not.
private func readMetrics(_ path: String, expectingUndecodable count: Int) throws -> [MetricRecord] {
    var records: [MetricRecord] = []
    var undecodable = 0
    try MetricsReader(path: path).read { entry in
        switch entry {
        case .metric(let record): records.append(record)
        case .undecodable: undecodable += 1
        default: Issue.record("unexpected entry \(entry)")
        }
        return true
    }
    #expect(undecodable == count)
    return records
}
