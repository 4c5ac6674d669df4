import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A `MAP_SHARED` read-write mapping of a whole file; unmapped when the value is destroyed.
///
/// Stores into it land in the page cache immediately, so they survive the process being killed.
struct MappedRegion: ~Copyable {
    let base: UnsafeMutableRawPointer
    let length: Int

    /// Maps `length` bytes of `fd` from offset 0. The corresponding C function is `mmap`.
    init(fd: FileDescriptor, length: Int, path: String) throws(WALError) {
        if let injected = FaultInjection.check(.mmap) { throw WALError.io("cannot map", path: path, injected) }
        guard let pointer = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0),
            pointer != MAP_FAILED
        else {
            throw WALError.io("cannot map", path: path, Errno(rawValue: errno))
        }
        self.base = pointer
        self.length = length
    }

    /// Writes dirty pages of the range to stable storage and waits. The corresponding C function is `msync(MS_SYNC)`.
    func sync() throws(Errno) {
        _ = try valueOrErrno { injectable(.msync) { msync(base, length, MS_SYNC) } }.get()
    }

    deinit {
        munmap(base, length)
    }
}
