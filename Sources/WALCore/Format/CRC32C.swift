import CWALSupport

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF), as used by
/// iSCSI, ext4 and most log formats. Hardware-accelerated with SSE4.2 when available.
public enum CRC32C {
    /// The checksum of `bytes`, continuing from `crc` (the checksum of what came before; 0 to start).
    @inline(__always)
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return walsupport_crc32c(crc, base, bytes.count)
    }

    @inline(__always)
    static func checksum(_ pointer: UnsafeRawPointer, count: Int, continuing crc: UInt32 = 0) -> UInt32 {
        walsupport_crc32c(crc, pointer, count)
    }

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// True when the SSE4.2 instruction is used.
    public static var isHardwareAccelerated: Bool { walsupport_crc32c_is_hardware() != 0 }
}
