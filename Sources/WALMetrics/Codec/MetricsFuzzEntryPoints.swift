/// Entry points for the libFuzzer harness (`Sources/walctl-fuzz`, `tools/fuzz.sh`): arbitrary bytes as a metric
/// record and as a `metrics.symbols` file. Neither may crash, hang or allocate without bound.
@_spi(Testing) public enum MetricsFuzzEntryPoints {
    /// A metric record (section 13.2 of wal-format.md).
    public static func record(_ bytes: UnsafeRawBufferPointer) -> Int {
        switch RecordCodec.decode(bytes) {
        case .success(let fields): return Int(fields.metric) &+ Int(fields.tagSet)
        case .failure: return 0
        }
    }

    /// A symbols file: header check, then every entry decoded in order, and what follows them classified as a
    /// writer reopening it would (section 13.1).
    public static func symbols(_ bytes: UnsafeRawBufferPointer) -> Int {
        _ = SymbolFileFormat.checkHeader(bytes, logID: nil)
        _ = SymbolFileFormat.examine(bytes)
        var count: UInt32 = 0
        let start = min(SymbolFileFormat.headerSize, bytes.count)
        _ = SymbolFileFormat.scan(bytes, from: start) { payload in
            guard Symbol.decode(payload, limit: count) != nil else { return false }
            count += 1
            return true
        }
        return Int(count)
    }
}
