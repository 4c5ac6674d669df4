import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Removes a log whose writer is gone once everything in it is delivered: what a host shipper does with the logs of
/// agents that ended, so that a host running short-lived agents does not fill its disk.
///
/// The order makes "never before" hold:
/// 1. a log whose writer lock is held is left alone;
/// 2. recovery runs (the log is opened as a writer and closed), which seals what the dead writer had staged and the
///    gaps it had recorded but not sealed: after it, the segments hold every sequence number the log ever issued;
/// 3. the directory is locked the way a writer locks it (so no agent starts writing while it is removed), and
///    `isDelivered` is asked about the last sealed sequence number, which every sink must have committed;
/// 4. the directory is renamed to a hidden name beside it (`.retired-{name}-{log id}`, atomic: an agent starting
///    at the old path afterwards creates a new log) and removed.
public enum LogRetirement {
    public enum Outcome: Sendable, Equatable {
        /// Removed; everything through `lastSeq` was delivered.
        case retired(lastSeq: UInt64)
        /// A writer holds the log (or took it during the attempt).
        case writerAlive
        /// Recovery sealed records the sinks have not committed yet, or `isDelivered` said no for `lastSeq`.
        case undelivered(lastSeq: UInt64)
    }

    public static func retire(
        path: String,
        isDelivered: (_ lastSeq: UInt64, _ logID: LogID) -> Bool
    ) throws(WALError) -> Outcome {
        let directory = LogDirectory(path: path)
        if directory.isWriterActive() { return .writerAlive }
        let meta = try directory.readMeta()
        let before = try LogInspector.lastSealedSeqAcrossDamage(path: path)
        let staged = LogInspector.stagedRecords(directory: directory, after: before)
        if staged.records > 0 || staged.lastSeq != nil || directory.hasUnsealedWriterState(after: before) {
            do {
                let wal = try WAL.open(path: path)
                try wal.close()
            } catch  where error.code == .locked {
                return .writerAlive
            }
            return .undelivered(lastSeq: try LogInspector.lastSealedSeqAcrossDamage(path: path))
        }
        // Lock as a writer does: the directory, then wal.lock (writers of earlier versions lock only that).
        let directoryFD = try FileSystem.open(path, .readOnly, options: [.directory, .noFollow])
        defer { try? directoryFD.close() }
        guard (try? directoryFD.tryLockExclusive()) == true else { return .writerAlive }
        let lockFD = try? FileSystem.open(directory.lockPath, .readOnly, options: .noFollow)
        defer { try? lockFD?.close() }
        if let lockFD, (try? lockFD.tryLockExclusive()) != true { return .writerAlive }
        let last = try LogInspector.lastSealedSeqAcrossDamage(path: path)
        guard last == before, isDelivered(last, meta.logID) else { return .undelivered(lastSeq: last) }
        // Every registered consumer must have passed it too, as for retention (wal-format.md section 6): a shipper
        // to another sink, or another group, keeps its own cursor here. (Retirement consulted only the shippers
        // of this process, and deleted 5,000 records a Kafka shipper had not read.)
        guard let (cursors, damaged) = try? CursorStore(directory: directory).all(), damaged.isEmpty,
            cursors.allSatisfy({ $0.seq >= last })
        else { return .undelivered(lastSeq: last) }

        let (parent, name) = split(path)
        removeLeftovers(in: parent)
        let hidden = parent + "/.retired-" + name + "-" + meta.logID.description
        try FileSystem.rename(path, hidden)
        try FileSystem.syncDirectory(parent)
        try FileSystem.removeTree(hidden)
        try FileSystem.syncDirectory(parent)
        return .retired(lastSeq: last)
    }

    /// Removes what an interrupted retirement left (`.retired-*` folders under `parent`): done by every retirement
    /// in that folder.
    static func removeLeftovers(in parent: String) {
        for name in (try? FileSystem.list(parent)) ?? [] where name.hasPrefix(".retired-") {
            try? FileSystem.removeTree(parent + "/" + name)
        }
    }

    static func split(_ path: String) -> (parent: String, name: String) {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return (".", trimmed) }
        let parent = String(trimmed[..<slash])
        return (parent.isEmpty ? "/" : parent, String(trimmed[trimmed.index(after: slash)...]))
    }
}

extension FileSystem {
    /// Removes a directory and everything under it, without following symbolic links (a link is removed, never
    /// what it points to).
    static func removeTree(_ path: String) throws(WALError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw WALError.io("cannot examine", path: path, Errno(rawValue: errno))
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in try list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 || errno == ENOENT else {
                throw WALError.io("cannot remove directory", path: path, Errno(rawValue: errno))
            }
        } else {
            try remove(path)
        }
    }
}

extension LogDirectory {
    /// Whether the staging file's writer state (wal-format.md 4.4) names sequence numbers above `lastSealed`: a
    /// high-water mark or a gap the last writer did not seal before it stopped.
    func hasUnsealedWriterState(after lastSealed: UInt64) -> Bool {
        guard let state = WriterStateRecord.read(path: stagingPath) else { return false }
        return state.highWaterSeq > lastSealed || state.gapLast > lastSealed
    }
}

extension LogDirectory {
    /// Bytes allocated on disk by everything in the log directory (`st_blocks`, not the files' sizes), its folders
    /// included; symbolic links are not followed.
    public func allocatedBytes() -> Int64 { Self.allocated(path) }

    private static func allocated(_ path: String) -> Int64 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        var total = Int64(info.st_blocks) * 512
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in (try? FileSystem.list(path)) ?? [] { total += allocated(path + "/" + name) }
        }
        return total
    }
}
