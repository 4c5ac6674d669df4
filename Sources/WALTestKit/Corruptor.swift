import Foundation

/// Damages files the way crashes and bad disks do, for the tear tests.
public enum Corruptor {
    /// Flips one bit at `offset`.
    public static func flipBit(_ path: String, at offset: Int64, bit: UInt8 = 0) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        guard var byte = try handle.read(upToCount: 1)?.first else { throw POSIXError(.EINVAL) }
        byte ^= 1 << bit
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data([byte]))
    }

    /// Overwrites `length` bytes at `offset` with zeroes.
    public static func zero(_ path: String, at offset: Int64, length: Int) throws {
        try overwrite(path, at: offset, with: [UInt8](repeating: 0, count: length))
    }

    /// Overwrites bytes at `offset`.
    public static func overwrite(_ path: String, at offset: Int64, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data(bytes))
    }

    /// Cuts the file to `size` bytes.
    public static func truncate(_ path: String, to size: Int64) throws {
        guard Foundation.truncate(path, off_t(size)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno)!) }
    }

    /// Deterministic pseudo-random bytes (never all zero).
    public static func garbage(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state) | 1
        }
    }

    public static func size(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value ?? 0
    }
}
