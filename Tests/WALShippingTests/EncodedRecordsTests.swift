import Testing
import WALShipping

/// `EncodedRecords`: the undecoded records the engine hands a sink that renders from the log's bytes.
@Suite struct EncodedRecordsTests {
    /// Records of different lengths (one empty), seq `10 + i`, bytes `i` repeated `i` times.
    func sample(_ count: Int) -> EncodedRecords {
        var records = EncodedRecords()
        for index in 0..<count {
            let bytes = [UInt8](repeating: UInt8(index), count: index)
            bytes.withUnsafeBytes {
                records.append(seq: UInt64(10 + index), timestampNanos: Int64(1000 * index), bytes: $0)
            }
        }
        return records
    }

    func contents(_ records: EncodedRecords) -> [(index: Int, seq: UInt64, bytes: [UInt8])] {
        var seen: [(Int, UInt64, [UInt8])] = []
        records.forEach { index, seq, bytes in seen.append((index, seq, Array(bytes))) }
        return seen
    }

    @Test func eachRecordKeepsItsSeqTimeAndBytes() {
        let records = sample(5)
        #expect(records.count == 5)
        #expect(records.seqs == [10, 11, 12, 13, 14])
        #expect(records.timestamps == [0, 1000, 2000, 3000, 4000])
        let seen = contents(records)
        #expect(seen.map(\.index) == [0, 1, 2, 3, 4])
        #expect(seen.map(\.bytes) == (0..<5).map { [UInt8](repeating: UInt8($0), count: $0) })
        #expect(records.withBytes(at: 3) { Array($0) } == [3, 3, 3])
        #expect(records.withBytes(at: 0) { $0.count } == 0)
    }

    @Test func aSliceIsACopyOfItsRecordsAlone() {
        let records = sample(6)
        let slice = records[2..<5]
        #expect(slice.seqs == [12, 13, 14])
        #expect(slice.timestamps == [2000, 3000, 4000])
        #expect(contents(slice).map(\.bytes) == [[2, 2], [3, 3, 3], [4, 4, 4, 4]])
        #expect(contents(slice).map(\.index) == [0, 1, 2])
        #expect(records[3..<3].isEmpty)
        #expect(records.count == 6)
    }

    @Test func removingTheFirstRecordsKeepsTheRestIntact() {
        var records = sample(6)
        records.removeFirst(0)
        #expect(records.count == 6)
        records.removeFirst(4)
        #expect(records.seqs == [14, 15])
        #expect(records.timestamps == [4000, 5000])
        #expect(contents(records).map(\.bytes) == [[4, 4, 4, 4], [5, 5, 5, 5, 5]])
        [UInt8]([9]).withUnsafeBytes { records.append(seq: 16, timestampNanos: 6000, bytes: $0) }
        #expect(records.withBytes(at: 2) { Array($0) } == [9])
        records.removeFirst(3)
        #expect(records.isEmpty)
        #expect(contents(records).isEmpty)
    }
}
