import Foundation
import Synchronization

/// The physical floor of an append, for benchmarks: take a mutex, memcpy the bytes into a `MAP_SHARED` mapping of a
/// preallocated file (wrapping at its end), release. What any durable-on-return log must at least do.
public final class MappingCopier: @unchecked Sendable {
    private let mutex = Mutex<Int>(0)
    private let base: UnsafeMutableRawPointer
    private let size: Int
    private let path: String

    public init(size: Int) throws {
        path = NSTemporaryDirectory() + "walctl-floor-\(UUID().uuidString)"
        let fd = open(path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0, posix_fallocate(fd, 0, off_t(size)) == 0 else { throw POSIXError(.EIO) }
        guard let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), pointer != MAP_FAILED else {
            throw POSIXError(.EIO)
        }
        Foundation.close(fd)
        base = pointer
        self.size = size
    }

    /// Copies `bytes` under the mutex; returns the offset after them.
    @inline(__always)
    public func copy(_ bytes: UnsafeRawBufferPointer) -> Int {
        mutex.withLock { offset in
            if offset + bytes.count > size { offset = 0 }
            (base + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            offset += bytes.count
            return offset
        }
    }

    deinit {
        munmap(base, size)
        unlink(path)
    }
}
