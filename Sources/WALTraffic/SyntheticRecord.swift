/// The self-checking records `walctl emit` writes: who wrote them, their place in that writer's sequence, and a
/// filler derived from both, so that a reader can tell a record is intact byte for byte.
///
/// Layout (little-endian): `"SYN1"`, thread (UInt32), counter (UInt64), then filler byte `i` (from 16) equal to
/// `(counter * 31 + thread * 7 + i) & 0xFF`.
public struct SyntheticRecord: Sendable {
    public static let minimumSize = 16
    static let magic: [UInt8] = Array("SYN1".utf8)

    public let thread: UInt32
    public private(set) var bytes: [UInt8]

    public init(thread: UInt32, size: Int) {
        precondition(size >= Self.minimumSize)
        self.thread = thread
        self.bytes = [UInt8](repeating: 0, count: size)
    }

    /// Rewrites the record for `counter`, in place (no allocation).
    public mutating func fill(counter: UInt64) {
        let thread = self.thread
        bytes.withUnsafeMutableBytes { buffer in
            buffer.copyBytes(from: Self.magic)
            buffer.storeBytes(of: thread.littleEndian, toByteOffset: 4, as: UInt32.self)
            buffer.storeBytes(of: counter.littleEndian, toByteOffset: 8, as: UInt64.self)
            let seed = counter &* 31 &+ UInt64(thread) &* 7
            for index in 16..<buffer.count {
                buffer[index] = UInt8(truncatingIfNeeded: seed &+ UInt64(index))
            }
        }
    }

    /// The writer thread and counter of an intact record, or nil when any byte is off.
    public static func check(_ bytes: UnsafeRawBufferPointer) -> (thread: UInt32, counter: UInt64)? {
        guard bytes.count >= minimumSize, Array(bytes.prefix(4)) == magic else { return nil }
        let thread = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let counter = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let seed = counter &* 31 &+ UInt64(thread) &* 7
        for index in 16..<bytes.count where bytes[index] != UInt8(truncatingIfNeeded: seed &+ UInt64(index)) {
            return nil
        }
        return (thread, counter)
    }
}
