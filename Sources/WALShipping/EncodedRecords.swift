/// Records as the log holds them (the metrics encoding, undecoded), one after another in one buffer, with their
/// sequence numbers and emit times: what the engine hands a sink that renders records straight from their bytes
/// (`MetricSink.takesEncodedRecords`, the Kafka sink), so that no `MetricRecord` is built, copied or released per
/// record. Appending copies the bytes (a log's mapping may go away after the read).
public struct EncodedRecords: Sendable {
    /// The records' sequence numbers, in log order.
    public private(set) var seqs: [UInt64] = []
    /// The records' emit times (nanoseconds since the Unix epoch; 0 for bytes that are not a metric record).
    public private(set) var timestamps: [Int64] = []
    /// Where each record ends in `storage`.
    private var ends: [Int] = []
    private var storage: [UInt8] = []

    public init() {}

    public var count: Int { seqs.count }
    public var isEmpty: Bool { seqs.isEmpty }

    /// Appends one record (its bytes copied).
    public mutating func append(seq: UInt64, timestampNanos: Int64, bytes: UnsafeRawBufferPointer) {
        storage.append(contentsOf: bytes)
        ends.append(storage.count)
        seqs.append(seq)
        timestamps.append(timestampNanos)
    }

    /// Calls `body` with each record's index, sequence number and bytes, in order; stops at the first throw.
    public func forEach(_ body: (Int, UInt64, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try storage.withUnsafeBytes { all in
            var start = 0
            for index in seqs.indices {
                let end = ends[index]
                try body(index, seqs[index], UnsafeRawBufferPointer(rebasing: all[start..<end]))
                start = end
            }
        }
    }

    /// Calls `body` with the bytes of the record at `index`.
    public func withBytes<Result>(
        at index: Int,
        _ body: (UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        let start = index == 0 ? 0 : ends[index - 1]
        return try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<ends[index]])) }
    }

    /// A copy of the records in `range`.
    public subscript(range: Range<Int>) -> EncodedRecords {
        var copy = EncodedRecords()
        guard !range.isEmpty else { return copy }
        let start = range.lowerBound == 0 ? 0 : ends[range.lowerBound - 1]
        let end = ends[range.upperBound - 1]
        copy.storage = Array(storage[start..<end])
        copy.ends = ends[range].map { $0 - start }
        copy.seqs = Array(seqs[range])
        copy.timestamps = Array(timestamps[range])
        return copy
    }

    /// Removes the first `count` records.
    public mutating func removeFirst(_ count: Int) {
        guard count > 0 else { return }
        if count == seqs.count {
            storage.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true)
            seqs.removeAll(keepingCapacity: true)
            timestamps.removeAll(keepingCapacity: true)
            return
        }
        let cut = ends[count - 1]
        storage.removeFirst(cut)
        ends.removeFirst(count)
        for index in ends.indices { ends[index] -= cut }
        seqs.removeFirst(count)
        timestamps.removeFirst(count)
    }
}
