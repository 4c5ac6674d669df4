import SystemPackage
@_spi(Testing) import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `metrics.symbols`: the append-only symbol table of a log directory. See `wal-format.md`, "Metric records".
///
/// The writer (the collector, one per directory: it holds the log's writer lock) appends entries through a
/// `MAP_SHARED` mapping of a preallocated file, so an entry survives the process being killed as soon as it is
/// written, before any record that uses it is appended. Readers use `pread` and pick up new entries on demand.
enum SymbolFileFormat {
    static let fileName = "metrics.symbols"
    static let magic: [UInt8] = Array("WALCSYMS".utf8)
    static let headerSize = 64
    static let entryHeaderSize = 8
    /// Largest entry payload (a tag set of 64 pairs of 5-byte varints fits).
    static let maxEntry = 4096
    static let initialSize = 64 << 10
    static let maxSize = 256 << 20

    /// Bytes 32..59 of the header: the log's source service (a length byte, then up to 27 bytes of UTF-8). A
    /// length of 0 (every log written before it was recorded) means `Envelope.defaultSourceService`.
    static let sourceServiceOffset = 32
    static let maxSourceServiceBytes = 27

    static func header(logID: LogID, sourceService: String) -> [UInt8] {
        var bytes = magic
        bytes.append(contentsOf: [1, 0, 0, 0, 0, 0, 0, 0])  // version 1 (UInt16 LE), reserved
        bytes.append(contentsOf: logID.bytes)
        let service = Array(sourceService.utf8.prefix(maxSourceServiceBytes))
        bytes.append(UInt8(service.count))
        bytes.append(contentsOf: service)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 27 - service.count))
        let crc = CRC32C.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// The source service a (checked) header records.
    static func sourceService(_ header: UnsafeRawBufferPointer) -> String {
        let length = Int(header[sourceServiceOffset])
        guard length > 0, length <= maxSourceServiceBytes else { return Envelope.defaultSourceService }
        let start = sourceServiceOffset + 1
        return String(decoding: UnsafeRawBufferPointer(rebasing: header[start..<start + length]), as: UTF8.self)
    }

    /// Checks a header; returns nil when valid, else why not.
    static func checkHeader(_ bytes: UnsafeRawBufferPointer, logID: LogID?) -> String? {
        guard bytes.count >= headerSize, Array(bytes.prefix(8)) == magic else { return "not a symbols file" }
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 60, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes.prefix(60))) == crc else {
            return "symbols header checksum mismatch"
        }
        guard bytes[8] == 1, bytes[9] == 0 else { return "symbols format version is not 1" }
        if let logID, Array(bytes[16..<32]) != logID.bytes { return "symbols file belongs to another log" }
        return nil
    }

    /// Scans entries from `offset`; calls `body` with each valid payload; returns the end of the last valid one.
    static func scan(
        _ bytes: UnsafeRawBufferPointer,
        from offset: Int,
        _ body: (UnsafeRawBufferPointer) -> Bool
    ) -> Int {
        var offset = offset
        while offset + entryHeaderSize <= bytes.count {
            let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
            guard length > 0, length <= maxEntry, length <= bytes.count - offset - entryHeaderSize else { break }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[offset + 8..<offset + 8 + length])
            guard CRC32C.checksum(payload) == crc, body(payload) else { break }
            offset += (entryHeaderSize + length + 7) & ~7
        }
        return offset
    }
}

extension SymbolFileFormat {
    /// What a symbols file holds after its header.
    struct Contents {
        /// The readable entries, in id order (entry *i* has id *i* + 1).
        var symbols: [Symbol]
        /// The end of the last readable entry: where a reader stops.
        var end: Int
        var tail: Tail
    }

    /// What follows the readable entries.
    enum Tail: Equatable {
        /// Only zeros: the end of the table.
        case clean
        /// One entry that a writer was writing when it stopped, `bytes` long from `end`: its length field, which
        /// `SymbolFileWriter.append` stores last, is 0, no valid entry follows, and its bytes fit one entry. Its id
        /// was never returned, so no record refers to it.
        case torn(bytes: Int)
        /// Anything else: ids from the first unreadable one on may be referred to by stored records.
        case damaged(SymbolDamage)
    }

    /// Reads every entry of a whole file (header included) and classifies what follows the readable ones.
    static func examine(_ bytes: UnsafeRawBufferPointer) -> Contents {
        var symbols: [Symbol] = []
        var malformed = false
        // (An entry's padding may reach past the end of a file whose size is not a multiple of 8.)
        let scanned = scan(bytes, from: min(headerSize, bytes.count)) { payload in
            guard let symbol = Symbol.decode(payload, limit: UInt32(symbols.count)) else {
                malformed = true
                return false
            }
            symbols.append(symbol)
            return true
        }
        let end = min(scanned, bytes.count)
        guard let last = bytes[end...].lastIndex(where: { $0 != 0 }) else {
            return Contents(symbols: symbols, end: end, tail: .clean)
        }
        let extent = last + 1 - end
        let length =
            end + entryHeaderSize <= bytes.count
            ? Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: end, as: UInt32.self))) : 0
        // A slot whose checksum holds is skipped whole (a malformed entry); any other slot by its header only.
        let next = malformed ? end + ((entryHeaderSize + length + 7) & ~7) : end + entryHeaderSize
        let entriesAfter = validEntries(bytes, from: next, to: last + 1)
        if !malformed, length == 0, entriesAfter == 0, extent <= entryHeaderSize + maxEntry {
            return Contents(symbols: symbols, end: end, tail: .torn(bytes: extent))
        }
        let reason: String
        if malformed {
            reason = "the entry's checksum holds but it does not decode (an unknown kind, or an id not before it)"
        } else if length == 0 {
            reason = "an entry length of 0 with stored bytes after it"
        } else if length > maxEntry || length > bytes.count - end - entryHeaderSize {
            reason = "entry length \(length) is out of range"
        } else {
            reason = "entry checksum mismatch"
        }
        let damage = SymbolDamage(
            offset: end,
            firstUnreadableID: UInt32(symbols.count + 1),
            reason: reason,
            entriesAfter: entriesAfter,
            bytesAfter: extent
        )
        return Contents(symbols: symbols, end: end, tail: .damaged(damage))
    }

    /// Entries whose length is in range and whose checksum holds, at multiples of 8 from `start` to `limit`,
    /// stepping over each one found (what a damaged region hides).
    static func validEntries(_ bytes: UnsafeRawBufferPointer, from start: Int, to limit: Int) -> Int {
        var count = 0
        var offset = start
        while offset + entryHeaderSize <= min(limit, bytes.count) {
            let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            if length > 0, length <= maxEntry, length <= bytes.count - offset - entryHeaderSize {
                let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                let payload = UnsafeRawBufferPointer(rebasing: bytes[offset + 8..<offset + 8 + length])
                if CRC32C.checksum(payload) == crc {
                    count += 1
                    offset += (entryHeaderSize + length + 7) & ~7
                    continue
                }
            }
            offset += 8
        }
        return count
    }
}

/// Damage in `metrics.symbols`: an unreadable entry that is not a torn last entry. Ids are positions, and readers
/// stop at the first unreadable entry, so no id from `firstUnreadableID` on resolves: records that refer to one do
/// not decode (they are counted as undecodable, never read as other strings), and a writer refuses to open the log
/// rather than give those ids to new strings.
public struct SymbolDamage: Sendable, Equatable, Encodable {
    /// The byte offset of the first unreadable entry in `metrics.symbols`.
    public var offset: Int
    /// The id of that entry: ids from it on cannot be resolved.
    public var firstUnreadableID: UInt32
    public var reason: String
    /// Entries after it whose checksums hold (hidden by it).
    public var entriesAfter: Int
    /// Bytes from the unreadable entry to the last non-zero byte.
    public var bytesAfter: Int

    enum CodingKeys: String, CodingKey {
        case offset, reason
        case firstUnreadableID = "first_unreadable_id"
        case entriesAfter = "entries_after"
        case bytesAfter = "bytes_after"
    }

    public var description: String {
        "\(SymbolFileFormat.fileName) is damaged at byte \(offset) (symbol id \(firstUnreadableID)): \(reason); "
            + "\(entriesAfter) stored entries after it cannot be read"
    }

    func refusal(path: String, directory: String) -> String {
        "\(description). Records that refer to symbol \(firstUnreadableID) or later cannot be decoded; a writer "
            + "would give those ids to other strings, so the log is not opened for writing. Its records stay "
            + "readable: see walctl verify \(directory). Restore \(path) from a copy, or write to another directory"
    }
}

/// The writing side: owned by the collector, used under its symbol lock.
final class SymbolFileWriter {
    let path: String
    private let fd: FileDescriptor
    private var base: UnsafeMutableRawPointer
    private var size: Int
    private(set) var end: Int

    /// Opens or creates the file; returns the writer and the entries already in it, in id order. A torn last entry
    /// (the previous writer was killed while writing it) is cut; any other damage is refused with `.corrupt`, the
    /// file left as it is (`SymbolFileFormat.examine`, wal-format.md section 13.1).
    ///
    /// The source service is a property of the log, recorded in the header when the file is created (so that
    /// every reader renders the envelopes the shippers rendered); opening an existing log with another one is
    /// refused.
    static func open(
        directory: String,
        logID: LogID,
        sourceService: String = Envelope.defaultSourceService
    ) throws(MetricsError) -> (SymbolFileWriter, [Symbol]) {
        let path = directory + "/" + SymbolFileFormat.fileName
        let fd: FileDescriptor
        do {
            fd = try FileSystem.openFile(
                path,
                .readWrite,
                options: [.create, .noFollow],
                permissions: [.ownerReadWrite]
            )
        } catch {
            throw MetricsError(.io, "cannot open \(path): \(error)")
        }
        do {
            var size = Int(try fd.seek(offset: 0, from: .end))
            if size == 0 {
                try preallocate(fd, size: SymbolFileFormat.initialSize)
                let header = SymbolFileFormat.header(logID: logID, sourceService: sourceService)
                _ = try header.withUnsafeBytes { try fd.write(toAbsoluteOffset: 0, $0) }
                guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
                size = SymbolFileFormat.initialSize
            }
            guard let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0),
                pointer != MAP_FAILED
            else { throw MetricsError(.io, "cannot map \(path)") }
            let bytes = UnsafeRawBufferPointer(start: pointer, count: size)
            if let problem = SymbolFileFormat.checkHeader(bytes, logID: logID) {
                munmap(pointer, size)
                throw MetricsError(.corrupt, "\(path): \(problem)")
            }
            let recorded = SymbolFileFormat.sourceService(bytes)
            guard recorded == sourceService else {
                munmap(pointer, size)
                throw MetricsError(
                    .invalidConfiguration,
                    "the log at \(directory) belongs to source service \"\(recorded)\", not \"\(sourceService)\" "
                        + "(METRICS_SOURCE_SERVICE): it is fixed when a log is created; use another directory"
                )
            }
            let contents = SymbolFileFormat.examine(bytes)
            switch contents.tail {
            case .clean:
                break
            case .torn(let count):
                // The entry the last writer was writing when it stopped: its length (stored last) is 0, so append
                // never returned its id and no record refers to it. Cut, as recovery cuts a torn log tail.
                (UnsafeMutableRawPointer(pointer) + contents.end).initializeMemory(
                    as: UInt8.self,
                    repeating: 0,
                    count: count
                )
            case .damaged(let damage):
                // Entries from the damaged one on may be referred to by stored records: cutting there would give
                // their ids to other strings, and those records would decode as other names and tags. Refuse.
                munmap(pointer, size)
                throw MetricsError(.corrupt, damage.refusal(path: path, directory: directory))
            }
            return (
                SymbolFileWriter(path: path, fd: fd, base: pointer, size: size, end: contents.end), contents.symbols
            )
        } catch let error as MetricsError {
            try? fd.close()
            throw error
        } catch {
            try? fd.close()
            throw MetricsError(.io, "\(path): \(error)")
        }
    }

    private init(path: String, fd: FileDescriptor, base: UnsafeMutableRawPointer, size: Int, end: Int) {
        self.path = path
        self.fd = fd
        self.base = base
        self.size = size
        self.end = end
    }

    deinit {
        munmap(base, size)
        try? fd.close()
    }

    private static func preallocate(_ fd: FileDescriptor, size: Int) throws {
        let rc = posix_fallocate(fd.rawValue, 0, off_t(size))
        if rc != 0 { throw Errno(rawValue: rc) }
    }

    /// Appends one entry. Its bytes are in the shared mapping (they survive a kill) when this returns.
    func append(_ payload: [UInt8]) throws(MetricsError) {
        let needed = (SymbolFileFormat.entryHeaderSize + payload.count + 7) & ~7
        if end + needed > size { try grow(to: end + needed) }
        let slot = base + end
        payload.withUnsafeBytes { bytes in
            (slot + 8).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            slot.storeBytes(of: CRC32C.checksum(bytes).littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        // The length last: a reader sees an entry only once it is complete.
        slot.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 0, as: UInt32.self)
        end += needed
    }

    private func grow(to minimum: Int) throws(MetricsError) {
        var newSize = size
        while newSize < minimum { newSize *= 2 }
        guard newSize <= SymbolFileFormat.maxSize else {
            throw MetricsError(.symbolTableFull, "the symbol table reached \(SymbolFileFormat.maxSize) bytes")
        }
        do {
            try Self.preallocate(fd, size: newSize)
        } catch {
            throw MetricsError(.io, "cannot grow \(path): \(error)")
        }
        guard let pointer = mmap(nil, newSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0),
            pointer != MAP_FAILED
        else { throw MetricsError(.io, "cannot map \(path)") }
        munmap(base, size)
        base = pointer
        size = newSize
    }

    /// The end of the entries known to be on stable storage.
    private var syncedEnd = 0

    /// msync: entries written so far are on stable storage. Costs nothing when no entry was added since the last.
    func sync() throws(MetricsError) {
        guard end > syncedEnd else { return }
        if let injected = FaultInjection.check(.msync) {
            throw MetricsError(.io, "msync of \(path) failed: \(injected)")
        }
        guard msync(base, end, MS_SYNC) == 0 else {
            throw MetricsError(.io, "msync of \(path) failed: \(Errno(rawValue: errno))")
        }
        syncedEnd = end
    }
}

/// The reading side, for decoders in any process: loads entries with `pread`, and more on demand.
final class SymbolFileReader: @unchecked Sendable {
    let path: String
    private(set) var symbols: [Symbol] = []
    /// The log's source service, from the header (the default until the header has been read).
    private(set) var sourceService = Envelope.defaultSourceService
    private var offset = SymbolFileFormat.headerSize
    private var checkedHeader = false

    init(directory: String) {
        path = directory + "/" + SymbolFileFormat.fileName
    }

    /// Reads entries appended since the last call (only the new bytes). Returns false when the file cannot be read.
    @discardableResult
    func refresh() -> Bool {
        guard let fd = try? FileSystem.openFile(path, .readOnly) else {
            return false
        }
        defer { try? fd.close() }
        guard let size = try? fd.seek(offset: 0, from: .end), size > 0 else { return false }
        if !checkedHeader {
            guard let service = Self.sourceService(checkingHeaderOf: fd) else { return false }
            sourceService = service
            checkedHeader = true
        }
        let remaining = Int(size) - offset
        guard remaining > 0 else { return true }
        var bytes = [UInt8](repeating: 0, count: remaining)
        let count =
            (try? bytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: Int64(offset), into: $0) }) ?? 0
        let consumed = bytes.withUnsafeBytes { raw -> Int in
            SymbolFileFormat.scan(UnsafeRawBufferPointer(rebasing: raw.prefix(count)), from: 0) { payload in
                guard let symbol = Symbol.decode(payload, limit: UInt32(symbols.count)) else { return false }
                symbols.append(symbol)
                return true
            }
        }
        offset += consumed
        return true
    }
}

extension SymbolFileReader {
    /// The source service the header of the open symbols file records, or nil when the header is not valid.
    static func sourceService(checkingHeaderOf fd: FileDescriptor) -> String? {
        var header = [UInt8](repeating: 0, count: SymbolFileFormat.headerSize)
        let n = (try? header.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
        return header.withUnsafeBytes { raw in
            let read = UnsafeRawBufferPointer(rebasing: raw.prefix(n))
            return SymbolFileFormat.checkHeader(read, logID: nil) == nil ? SymbolFileFormat.sourceService(read) : nil
        }
    }
}

extension Envelope {
    /// The `source_service` of the log at `directory`: what its writer recorded in `metrics.symbols` when it created
    /// the log (`METRICS_SOURCE_SERVICE`, default `omninode-bridge`). Shippers, replay, tail and inspect all render
    /// it, so every envelope of a record is the same bytes whoever renders it. The default when the log has no
    /// symbols file yet. Reads the file's 64-byte header only.
    public static func sourceService(directory: String) -> String {
        let path = directory + "/" + SymbolFileFormat.fileName
        guard let fd = try? FileSystem.openFile(path, .readOnly) else {
            return defaultSourceService
        }
        defer { try? fd.close() }
        return SymbolFileReader.sourceService(checkingHeaderOf: fd) ?? defaultSourceService
    }
}
