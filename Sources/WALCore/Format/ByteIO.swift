// Little-endian loads and stores. Every multi-byte integer in the format is little-endian.

extension UnsafeRawBufferPointer {
    /// Reads a little-endian integer at `offset`, or nil when it would run past the end.
    @inline(__always)
    func getLE<T: FixedWidthInteger>(_: T.Type = T.self, at offset: Int) -> T? {
        guard offset >= 0, offset <= count - MemoryLayout<T>.size else { return nil }
        return T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawPointer {
    @inline(__always)
    func putLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

/// Rounds up to a multiple of 8.
@inline(__always)
func align8(_ value: Int) -> Int { (value + 7) & ~7 }

// Typed-throws forms of the array buffer accessors (the standard library's are untyped `rethrows`).
extension Array where Element == UInt8 {
    @inline(__always)
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = withUnsafeBytes { buffer in Result { () throws(E) -> R in try body(buffer) } }
        return try result.get()
    }

    @inline(__always)
    mutating func withMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = withUnsafeMutableBytes { buffer in
            Result { () throws(E) -> R in try body(buffer) }
        }
        return try result.get()
    }
}
