import SystemPackage
import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The state of a log's `metrics.symbols`, for `walctl verify`: read-only, takes no lock, safe while a writer runs.
public struct SymbolTableCheck: Sendable, Encodable {
    /// Readable entries (ids 1 through `entries`).
    public var entries: Int
    /// A torn last entry (a writer stopped while writing it; the next writer cuts it): not damage.
    public var tornTailBytes: Int
    /// Damage: ids from `damage.firstUnreadableID` on cannot be resolved, and writers refuse the log.
    public var damage: SymbolDamage?
    /// With damage (when counted): records that refer to an id the damage made unreadable; they do not decode.
    public var recordsReferringToUnreadableSymbols: UInt64?

    enum CodingKeys: String, CodingKey {
        case entries, damage
        case tornTailBytes = "torn_tail_bytes"
        case recordsReferringToUnreadableSymbols = "records_referring_to_unreadable_symbols"
    }

    /// Checks the symbols file of the log at `directory`; nil when it has none (a log without metric records). With
    /// `countingRecords`, a damaged file's unreadable ids are looked up in every record of the log.
    public static func check(directory: String, countingRecords: Bool = true) throws(MetricsError) -> Self? {
        let path = directory + "/" + SymbolFileFormat.fileName
        let fd: FileDescriptor
        do {
            // The log's checked open: never waits on a FIFO planted there, refuses anything but a regular file.
            fd = try FileSystem.openFile(path, .readOnly)
        } catch  where error.code == .notFound {
            return nil
        } catch {
            throw MetricsError(.io, "cannot open \(path): \(error.message)")
        }
        defer { try? fd.close() }
        var check = try classify(read(fd, path: path))
        // A writer may append while the file is read: a copy that takes the length of one entry before the writer
        // stored it and the next entry after it was complete looks like damage. Damage counts once two reads 100 ms
        // apart find it the same (an append takes microseconds), as a live reader waits before calling bytes damage.
        for _ in 0..<5 {
            guard let damage = check.damage else { break }
            usleep(100_000)
            let again = try classify(read(fd, path: path))
            if again.damage == damage { break }
            check = again
        }
        if let damage = check.damage, countingRecords {
            var count: UInt64 = 0
            do {
                try MetricsReader(path: directory).read { entry in
                    if case .undecodable(_, .unknownSymbol(let id)) = entry, id >= damage.firstUnreadableID {
                        count += 1
                    }
                    return true
                }
            } catch {
                throw MetricsError(.io, "cannot read the records of \(directory): \(error)")
            }
            check.recordsReferringToUnreadableSymbols = count
        }
        return check
    }

    /// The whole file.
    private static func read(_ fd: FileDescriptor, path: String) throws(MetricsError) -> [UInt8] {
        do {
            let size = Int(try fd.seek(offset: 0, from: .end))
            var buffer = [UInt8](repeating: 0, count: size)
            var done = 0
            while done < size {
                let n = try buffer.withUnsafeMutableBytes {
                    try fd.read(
                        fromAbsoluteOffset: Int64(done),
                        into: UnsafeMutableRawBufferPointer(rebasing: $0[done...])
                    )
                }
                if n == 0 { break }
                done += n
            }
            return Array(buffer.prefix(done))
        } catch {
            throw MetricsError(.io, "cannot read \(path): \(error)")
        }
    }

    private static func classify(_ bytes: [UInt8]) -> Self {
        bytes.withUnsafeBytes { raw -> Self in
            if let problem = SymbolFileFormat.checkHeader(raw, logID: nil) {
                let damage = SymbolDamage(
                    offset: 0,
                    firstUnreadableID: 1,
                    reason: problem,
                    entriesAfter: SymbolFileFormat.validEntries(raw, from: SymbolFileFormat.headerSize, to: raw.count),
                    bytesAfter: raw.count
                )
                return Self(entries: 0, tornTailBytes: 0, damage: damage)
            }
            let contents = SymbolFileFormat.examine(raw)
            switch contents.tail {
            case .clean: return Self(entries: contents.symbols.count, tornTailBytes: 0)
            case .torn(let count): return Self(entries: contents.symbols.count, tornTailBytes: count)
            case .damaged(let damage): return Self(entries: contents.symbols.count, tornTailBytes: 0, damage: damage)
            }
        }
    }
}
