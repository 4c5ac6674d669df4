/// Named consumer positions, one file each under `cursors/`, written atomically (temporary file, fsync, rename).
///
/// A cursor's value is the last sequence number its consumer has fully processed (0: nothing yet). Registered
/// cursors hold back retention: a sealed segment is deleted only when every cursor is past its last record.
/// Safe to use from several processes: each cursor file has one writer (its consumer); readers see either the old
/// or the new file, never a mix.
public struct CursorStore: Sendable {
    public let directory: LogDirectory

    public init(directory: LogDirectory) { self.directory = directory }

    public init(path: String) { self.directory = LogDirectory(path: path) }

    /// A cursor as stored.
    public struct Cursor: Sendable, Equatable {
        public var name: String
        public var seq: UInt64
        public var updatedAtNanos: UInt64
    }

    /// Valid names: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 64, name.first != "." else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
    }

    func path(of name: String) -> String { directory.cursorDirectory + "/" + name + LogFormat.cursorSuffix }

    /// Stores `seq` as the position of cursor `name`, creating (registering) it if needed. Durable on return, unless
    /// `durable` is false: then the file is replaced atomically (a temporary file renamed over it) without the two
    /// `fsync`s, so after a power loss it may hold an earlier position, never a torn one. That suits a shipper's
    /// local cursor, which only holds back retention: an earlier position holds back more, never less (register it
    /// durably first).
    public func store(_ name: String, seq: UInt64, durable: Bool = true) throws(WALError) {
        guard Self.isValidName(name) else {
            throw WALError(.invalidArgument, "invalid cursor name '\(name)' (use 1-64 of A-Z a-z 0-9 . _ -)")
        }
        try FileSystem.makeDirectory(directory.cursorDirectory, followLink: false)
        var bytes = LogFormat.cursorMagic
        bytes.appendLE(seq)
        bytes.appendLE(wallClockNanos())
        bytes.appendLE(UInt32(0))
        bytes.appendLE(CRC32C.checksum(bytes))
        try FileSystem.writeAtomically(
            path(of: name),
            directory: directory.cursorDirectory,
            bytes: bytes,
            sync: durable
        )
    }

    /// The cursor named `name`, or nil when it is not registered.
    public func load(_ name: String) throws(WALError) -> Cursor? {
        let file = path(of: name)
        guard FileSystem.exists(file) else { return nil }
        let bytes: [UInt8]
        do throws(WALError) {
            bytes = try FileSystem.readAll(file, limit: 64)
        } catch  where error.code == .notFound {
            return nil
        }
        return try bytes.withBytes { buffer throws(WALError) in try Self.decode(buffer, name: name, path: file) }
    }

    /// Decodes the bytes of a cursor file (section 6 of wal-format.md).
    static func decode(_ buffer: UnsafeRawBufferPointer, name: String, path: String) throws(WALError) -> Cursor {
        guard buffer.count == LogFormat.cursorSize, Array(buffer.prefix(8)) == LogFormat.cursorMagic,
            let seq = buffer.getLE(UInt64.self, at: 8),
            let updated = buffer.getLE(UInt64.self, at: 16),
            let crc = buffer.getLE(UInt32.self, at: 28),
            crc == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer.prefix(28)))
        else { throw WALError(.corrupt, "cursor file is damaged", path: path, offset: 0) }
        return Cursor(name: name, seq: seq, updatedAtNanos: updated)
    }

    /// Every registered cursor, by name. Damaged cursor files are reported in `damaged`, not skipped silently.
    public func all() throws(WALError) -> (cursors: [Cursor], damaged: [WALError]) {
        guard FileSystem.exists(directory.cursorDirectory) else { return ([], []) }
        var cursors: [Cursor] = []
        var damaged: [WALError] = []
        for name in try FileSystem.list(directory.cursorDirectory).sorted()
        where name.hasSuffix(LogFormat.cursorSuffix) {
            let cursorName = String(name.dropLast(LogFormat.cursorSuffix.count))
            do {
                if let cursor = try load(cursorName) { cursors.append(cursor) }
            } catch {
                damaged.append(error)
            }
        }
        return (cursors, damaged)
    }

    /// Unregisters a cursor, so it no longer holds back retention.
    public func remove(_ name: String) throws(WALError) {
        try FileSystem.remove(path(of: name))
    }
}
