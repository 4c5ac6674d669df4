import CLZ4

/// LZ4 block format (not the LZ4 frame format): the frame header of the log carries the sizes.
enum LZ4Codec {
    /// Upper bound of the compressed size of `count` bytes.
    static func bound(_ count: Int) -> Int { Int(LZ4_compressBound(Int32(count))) }

    /// Compresses `source` into `destination`; returns the compressed size, or 0 when it does not fit.
    static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return 0 }
        return Int(
            LZ4_compress_default(
                src.assumingMemoryBound(to: CChar.self),
                dst.assumingMemoryBound(to: CChar.self),
                Int32(source.count),
                Int32(destination.count)
            )
        )
    }

    /// Decompresses exactly `destination.count` bytes; returns false when the input is malformed or the sizes
    /// disagree. Never reads or writes out of bounds (LZ4_decompress_safe).
    static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard let src = source.baseAddress, let dst = destination.baseAddress else {
            return source.count == 0 && destination.count == 0
        }
        let n = LZ4_decompress_safe(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count),
            Int32(destination.count)
        )
        return Int(n) == destination.count
    }
}
