/// Entry points for the libFuzzer harness (`Sources/walctl-fuzz`, `tools/fuzz.sh`): each feeds arbitrary bytes to
/// one of the log's readers the way a damaged or hostile file would, and must return without crashing, hanging or
/// allocating without bound. They return a small summary so that the work cannot be optimised away.
@_spi(Testing) public enum CoreFuzzEntryPoints {
    /// A frame as it would sit in a segment: header, then stored payload. Decodes the header, and the records of a
    /// data frame whose checksums hold (forced through even when the payload CRC is off, to reach the decoder).
    public static func frame(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard case .success(let header) = FrameHeader.decode(bytes) else { return 0 }
        let stored = UnsafeRawBufferPointer(rebasing: bytes.dropFirst(LogFormat.frameHeaderSize))
        guard header.type == .data, stored.count >= Int(header.storedLength) else { return 1 }
        var decoder = FrameDecoder()
        var count = 0
        let problem = decoder.forEachRecord(
            header: header,
            stored: UnsafeRawBufferPointer(rebasing: stored.prefix(Int(header.storedLength))),
            from: 0
        ) { _, record in count &+= record.count }
        return problem == nil ? count : -1
    }

    /// A staging block (records and gaps), and a staging header page (geometry and writer state).
    public static func staging(_ bytes: UnsafeRawBufferPointer) -> Int {
        var total = 0
        for record in StagedRecord.scan(block: bytes) { total &+= Int(truncatingIfNeeded: record.lastSeq(in: bytes)) }
        if let state = WriterStateRecord.load(bytes) { total &+= Int(truncatingIfNeeded: state.highWaterSeq) }
        if let geometry = try? StagingGeometry.decode(bytes, path: "fuzz") { total &+= geometry.blockCount }
        return total
    }

    /// A cursor file, a `wal.meta` file and a segment header.
    public static func smallFiles(_ bytes: UnsafeRawBufferPointer) -> Int {
        var total = 0
        if let cursor = try? CursorStore.decode(bytes, name: "fuzz", path: "fuzz") {
            total &+= Int(truncatingIfNeeded: cursor.seq)
        }
        if let meta = try? LogMeta.decode(bytes, path: "fuzz") {
            total &+= Int(truncatingIfNeeded: meta.createdAtNanos)
        }
        if let header = try? SegmentHeader.decode(bytes, path: "fuzz") {
            total &+= Int(truncatingIfNeeded: header.firstSeq)
        }
        return total
    }
}
