import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The writer of a log directory: an append-only, LZ4-compressed, CRC32C-checked segment log.
///
/// `append` copies a record into an mmap'd staging block under a mutex and returns its sequence number; a
/// background sealer thread compresses full (or `sealDelay`-aged) blocks into frames of the active segment.
/// One writer per directory (an advisory lock); readers need no lock.
///
/// Thread-safety: every method may be called from any thread. `append` and `sync` are synchronous.
///
/// Lifetime: call `close()`. Like an open file, a writer that is not closed keeps its sealer thread and its lock
/// until the process exits (whatever it staged is sealed by the next open).
public final class WAL: @unchecked Sendable {
    public let directory: LogDirectory
    public let configuration: WALConfiguration
    public let logID: LogID
    /// What opening the log found and repaired.
    public let recovery: RecoveryReport

    // Hot-path state, behind a pointer: no exclusivity checks, no retain/release.
    private let state: UnsafeMutablePointer<WriterState>
    private let lock = ConditionLock()
    private let staging: StagingArea
    private let blockSize: Int
    private let blockCount: Int
    private let synchronous: Bool

    /// Wakes the sealer. Appenders wake it after releasing `lock` (a full block to seal), so that neither the wake-up
    /// system call nor the sealer being scheduled happens while they hold the append lock; the sealer sleeps on it
    /// without holding `lock`.
    private let sealerWake = WakeSignal()

    // Sealer-side state: `segments` is touched by the sealer thread, and by `sync()` under `ioLock`.
    private let ioLock = ConditionLock()
    private let segments: SegmentWriter
    private var sealer: OSThread?
    /// Held from open to close; released (set to nil) by `close`.
    private var directoryLock: DirectoryLock?

    struct WriterState {
        var nextSeq: UInt64
        var writeBlock = 0
        var writeOffset = 0
        var sealBlock = 0
        var closedCount = 0
        var hasPendingGap = false
        var closed = false
        var draining = false
        var sealRequested = false
        /// Test hook: the sealer seals nothing while set.
        var sealingPaused = false
        /// Test hook: the sealer exits at once, leaving staging as a crash would.
        var abandoned = false
        var pendingGapFrom: UInt64 = 0
        var pendingGapTo: UInt64 = 0
        var pendingGapReason = ""
        var appended: UInt64 = 0
        var dropped: UInt64 = 0
        var sealedSeq: UInt64 = 0
        var durableSeq: UInt64 = 0
        var syncInProgress = false
        var segmentBytes: Int64 = 0
        var stallReason: String?
        var lastError: String?
        /// What the staging header records (high-water mark, unstaged gap); rewritten under `lock`.
        var recorded = WriterStateRecord()
    }

    // MARK: - Opening

    /// Opens (creating if needed) the log in `path` for writing, recovering what a crash left behind.
    ///
    /// Recovery cost is bounded by one segment plus the staging area, whatever the size of the log.
    /// Throws `.locked` when another process writes to the directory.
    public static func open(path: String, configuration: WALConfiguration = WALConfiguration()) throws(WALError) -> WAL
    {
        try configuration.validate()
        let started = monotonicNanos()
        let directory = LogDirectory(path: path)
        try FileSystem.makeDirectory(directory.path)
        let directoryLock = try DirectoryLock(directory: directory)
        // Cursors decide where the next seq starts (section 5, step 6): they must come from the log's own folder.
        try FileSystem.checkDirectoryIfPresent(directory.cursorDirectory)
        var report = RecoveryReport()

        // Identity.
        let meta: LogMeta
        if FileSystem.exists(directory.metaPath) {
            meta = try directory.readMeta()
        } else {
            guard try directory.segments().isEmpty else {
                throw WALError(.incompatible, "segments exist but \(LogFormat.metaFileName) is missing", path: path)
            }
            meta = LogMeta(logID: .random(), createdAtNanos: wallClockNanos())
            try FileSystem.writeAtomically(directory.metaPath, directory: directory.path, bytes: meta.encode())
            report.created = true
        }

        // What the previous writer recorded before it stopped: its high-water mark and an unstaged gap. Read before
        // anything is changed, whatever state the staging file is in.
        // A staging file of another log (copied in) holds neither records nor a state of this one.
        let foreignStaging = StagingArea.logID(path: directory.stagingPath).map { $0 != meta.logID } ?? false
        let prior = foreignStaging ? nil : WriterStateRecord.read(path: directory.stagingPath)

        // The active segment: the last one, scanned for its end.
        let (segments, sealedSeq) = try openActiveSegment(
            directory: directory,
            meta: meta,
            configuration: configuration,
            report: &report
        )

        // Staging: re-seal what was staged but not sealed, then start empty.
        let geometry = StagingGeometry(
            blockSize: configuration.blockSize,
            blockCount: configuration.blockCount,
            logID: meta.logID
        )
        let staging = try recoverStaging(
            directory: directory,
            geometry: geometry,
            segments: segments,
            prior: prior,
            report: &report
        )
        // A quiet log reopened keeps about 1 MiB of active segment, not what an earlier writer preallocated. (After
        // recovery: what it re-sealed went into the space the segment had.)
        segments.settleAllocation()
        // Everything up to the recovered end is in a segment and durable: the new state starts from there.
        var recorded = WriterStateRecord(generation: prior?.generation ?? 0, highWaterSeq: segments.sealedSeq)
        staging.storeWriterState(&recorded)
        try staging.sync()
        report.durationNanos = monotonicNanos() - started
        return WAL(
            directory: directory,
            configuration: configuration,
            logID: meta.logID,
            recovery: report,
            staging: staging,
            segments: segments,
            directoryLock: directoryLock,
            sealedSeq: max(sealedSeq, segments.sealedSeq),
            recorded: recorded
        )
    }

    private init(
        directory: LogDirectory,
        configuration: WALConfiguration,
        logID: LogID,
        recovery: RecoveryReport,
        staging: StagingArea,
        segments: SegmentWriter,
        directoryLock: DirectoryLock,
        sealedSeq: UInt64,
        recorded: WriterStateRecord
    ) {
        self.directory = directory
        self.configuration = configuration
        self.logID = logID
        self.recovery = recovery
        self.staging = staging
        self.blockSize = staging.blockSize
        self.blockCount = staging.blockCount
        self.segments = segments
        self.directoryLock = directoryLock
        self.synchronous = configuration.durability == .synchronous
        self.closedLengths = [Int](repeating: 0, count: staging.blockCount)
        self.sealLengths = [Int](repeating: 0, count: staging.blockCount)
        state = .allocate(capacity: 1)
        state.initialize(to: WriterState(nextSeq: sealedSeq + 1))
        state.pointee.sealedSeq = sealedSeq
        state.pointee.durableSeq = sealedSeq
        state.pointee.segmentBytes = segments.segmentBytes
        state.pointee.recorded = recorded
        segments.admitAllocation = { [unowned self] bytes in self.admitAllocation(bytes: bytes) }
        sealer = OSThread.start(name: "wal-sealer") { [self] in self.sealerLoop() }
    }

    deinit {
        try? close()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Finds the end of the last segment (creating the first if there is none), cutting a torn tail.
    private static func openActiveSegment(
        directory: LogDirectory,
        meta: LogMeta,
        configuration: WALConfiguration,
        report: inout RecoveryReport
    ) throws(WALError) -> (SegmentWriter, UInt64) {
        var files = try directory.segments()
        var totalBytes: Int64 = 0
        for file in files { totalBytes += FileSystem.size(file.path) ?? 0 }
        // A crash while creating a segment can leave one whose header was never written: it holds nothing. (Its
        // name still tells where the log was; the seqs it may have held are accounted for by recovery.)
        var removedFirstSeq: UInt64?
        // Readers skip such a segment by the same rule (`SegmentFileReader.isUnwritten`); a non-zero invalid header
        // is an error, thrown with its reason below.
        while let last = files.last, SegmentFileReader.isUnwritten(path: last.path) {
            totalBytes -= FileSystem.size(last.path) ?? 0
            try FileSystem.remove(last.path)
            report.removedEmptySegments.append(last.name)
            removedFirstSeq = last.firstSeq
            files.removeLast()
        }
        guard let last = files.last else {
            // A new log, or one whose only segments were empty: the next seq is where the first of them began.
            let firstSeq = removedFirstSeq ?? 1
            let size = SegmentAllocation.capacity(toHold: 0, from: 0, segmentSize: Int64(configuration.segmentSize))
            let (fd, path) = try SegmentWriter.createSegment(
                directory: directory,
                logID: meta.logID,
                firstSeq: firstSeq,
                size: size
            )
            return (
                SegmentWriter(
                    directory: directory,
                    logID: meta.logID,
                    segmentSize: Int64(configuration.segmentSize),
                    blockSize: configuration.blockSize,
                    fd: fd,
                    segmentPath: path,
                    segmentFirstSeq: firstSeq,
                    writeOffset: Int64(LogFormat.segmentHeaderSize),
                    capacity: size,
                    sealedSeq: firstSeq - 1,
                    segmentBytes: totalBytes + size
                ), firstSeq - 1
            )
        }
        let reader: SegmentFileReader
        do {
            reader = try SegmentFileReader(path: last.path)
        } catch {
            let head = (try? FileSystem.readAll(last.path, limit: LogFormat.segmentHeaderSize)) ?? []
            guard !head.isEmpty && head.allSatisfy({ $0 == 0 }) else { throw error }
            throw WALError(
                .corrupt,
                "the last segment's header is zeroed but frames follow it (a lost page, not a segment a crash left "
                    + "empty); its records are kept: `walctl verify --repair` rebuilds the segment, then writing resumes",
                path: last.path
            )
        }
        guard reader.header.logID == meta.logID else {
            throw WALError(.incompatible, "segment belongs to another log (log id differs)", path: last.path)
        }
        let scan = SegmentScan.scan(reader)
        report.damage = scan.damage
        var sealedSeq = reader.header.firstSeq - 1
        // The highest seq of any frame, not the last frame's: a frame that went backwards (damage `verify` reports)
        // must not make the writer reuse the seqs after it.
        for frame in scan.frames { sealedSeq = max(sealedSeq, frame.header.lastSeq) }
        guard sealedSeq < UInt64.max - maxRecoveredGap else {
            throw WALError(
                .corrupt,
                "the log claims seq \(sealedSeq): the sequence numbers are exhausted (a damaged or forged frame?)",
                path: last.path
            )
        }
        let fd = try FileSystem.open(last.path, .readWrite, options: [.noFollow])
        do { try FileSystem.refuseHardLinks(fd, path: last.path) } catch {
            try? fd.close()
            throw error
        }
        if let torn = scan.tornTailOffset, scan.tornTailBytes > 0 {
            // Zero the torn bytes so that the frames written next are not followed by stale garbage.
            let zeros = [UInt8](repeating: 0, count: Int(scan.tornTailBytes))
            do {
                try zeros.withBytes { buffer throws(Errno) in try fd.writeFully(at: torn, from: buffer) }
                try fd.dataSync()
            } catch {
                try? fd.close()
                throw WALError.io("cannot cut the torn tail", path: last.path, error)
            }
            report.tornTailBytes = scan.tornTailBytes
        }
        let capacity: Int64
        do { capacity = try fd.size() } catch { throw WALError.io("cannot stat", path: last.path, error) }
        let writer = SegmentWriter(
            directory: directory,
            logID: meta.logID,
            segmentSize: Int64(configuration.segmentSize),
            blockSize: configuration.blockSize,
            fd: fd,
            segmentPath: last.path,
            segmentFirstSeq: reader.header.firstSeq,
            writeOffset: scan.dataEnd,
            capacity: capacity,
            sealedSeq: sealedSeq,
            segmentBytes: totalBytes
        )
        return (writer, sealedSeq)
    }

    /// Seals the records a crash left in staging (those after the last sealed one, contiguous), then returns a
    /// staging area with every block empty, in the configured geometry.
    private static func recoverStaging(
        directory: LogDirectory,
        geometry: StagingGeometry,
        segments: SegmentWriter,
        prior: WriterStateRecord?,
        report: inout RecoveryReport
    ) throws(WALError) -> StagingArea {
        let path = directory.stagingPath
        var old: StagingArea?
        if FileSystem.exists(path) {
            do {
                old = try StagingArea.open(path: path)
                if let staged = old, staged.logID != geometry.logID {
                    // Another log's staging file: its records would take this log's seqs. Kept aside, not read.
                    old = nil
                    let aside = path + ".foreign-\(wallClockNanos())"
                    try FileSystem.rename(path, aside)
                    report.quarantined.append(aside)
                }
            } catch  where error.code == .invalidArgument {
                throw error  // A symbolic link: not damage, and nothing to move aside.
            } catch {
                // Unreadable header: keep the file for forensics, start a new one.
                let aside = path + ".damaged-\(wallClockNanos())"
                try FileSystem.rename(path, aside)
                report.quarantined.append(aside)
            }
        }
        // Gather every valid record of every block, keep the contiguous run after the last sealed record. The
        // unstaged gap of the state record (drops the writer had not yet written into a block) joins them.
        enum Source {
            /// A record of a block of `old` (valid while `old` is).
            case staged(block: UnsafeRawBufferPointer, record: StagedRecord)
            case unstagedGap
        }
        var found: [(source: Source, first: UInt64, last: UInt64)] = []
        var highestStaged: UInt64 = 0
        if let old {
            for index in 0..<old.blockCount {
                let block = UnsafeRawBufferPointer(start: old.block(index), count: old.blockSize)
                for record in StagedRecord.scan(block: block) {
                    let last = record.lastSeq(in: block)
                    if last > segments.sealedSeq {
                        found.append((.staged(block: block, record: record), record.seq, last))
                        highestStaged = max(highestStaged, last)
                    }
                }
            }
        }
        if let prior, prior.gapFirst > 0, prior.gapLast > segments.sealedSeq,
            prior.gapLast - prior.gapFirst < maxRecoveredGap
        {
            found.append((.unstagedGap, prior.gapFirst, prior.gapLast))
        }
        found.sort { $0.first < $1.first }
        var expected = segments.sealedSeq + 1
        for item in found {
            if item.last < expected { continue }
            guard item.first <= expected else { break }
            let written: Bool
            switch item.source {
            case .staged(let block, let record):
                let payload = UnsafeRawBufferPointer(
                    rebasing: block[record.payloadOffset..<record.payloadOffset + record.count]
                )
                switch record.kind {
                case .data:
                    written = try segments.add(seq: record.seq, bytes: payload)
                    report.resealedRecords += 1
                case .gap:
                    let reason = String(decoding: payload.dropFirst(8), as: UTF8.self)
                    written = try segments.gap(from: record.seq, to: item.last, reason: reason)
                }
            case .unstagedGap:
                written = try segments.gap(
                    from: item.first,
                    to: item.last,
                    reason: "dropped by whenFull policy (the writer stopped before staging the gap record)"
                )
            }
            guard written else {
                throw WALError(
                    .io,
                    "cannot seal records recovered from staging: \(segments.stallReason ?? "no room")",
                    path: segments.segmentPath
                )
            }
            guard item.last < UInt64.max else { break }
            expected = item.last + 1
        }
        guard try segments.flush() else {
            throw WALError(.io, "cannot seal recovered records: \(segments.stallReason ?? "no room")", path: path)
        }
        try recordLostTail(
            directory: directory,
            segments: segments,
            highWater: max(prior?.highWaterSeq ?? 0, prior?.gapLast ?? 0, highestStaged),
            report: &report
        )
        try segments.sync()
        if let old,
            geometry.blockSize == old.blockSize && geometry.blockCount == old.blockCount
                && geometry.logID == old.logID
        {
            for index in 0..<old.blockCount { old.clear(block: index) }
            return old
        }
        return try StagingArea.create(path: path, geometry: geometry)
    }

    /// The most seqs one recovery covers with a gap (2^36, 16 gap frames). A high-water mark or cursor further
    /// ahead than this is not a loss but a damaged or foreign file: opening stops and says so.
    static let maxRecoveredGap: UInt64 = 1 << 36

    /// Never reuses a sequence number: when the log ends below a number that was assigned (the staging file's
    /// high-water mark) or that a consumer has seen (a cursor), the active segment lost its tail (emptied, zeroed,
    /// truncated, deleted). Those seqs get a gap marker, and the next record takes the number after them.
    private static func recordLostTail(
        directory: LogDirectory,
        segments: SegmentWriter,
        highWater: UInt64,
        report: inout RecoveryReport
    ) throws(WALError) {
        var end = highWater
        var witness = "the writer's high-water mark in \(LogFormat.stagingFileName)"
        if let (cursors, _) = try? CursorStore(directory: directory).all() {
            for cursor in cursors where cursor.seq > end {
                end = cursor.seq
                witness = "cursor '\(cursor.name)'"
            }
        }
        guard end > segments.sealedSeq else { return }
        let from = segments.sealedSeq + 1
        guard end - segments.sealedSeq <= maxRecoveredGap else {
            throw WALError(
                .corrupt,
                "the log ends at seq \(segments.sealedSeq) but \(witness) is at \(end), implausibly far ahead; "
                    + "check that file (walctl verify shows it) before writing to this log",
                path: directory.path
            )
        }
        var cause = "the active segment lost its end (truncated, zeroed or deleted)"
        if !report.removedEmptySegments.isEmpty {
            cause = "empty or zeroed segment \(report.removedEmptySegments.joined(separator: ", ")) removed"
        }
        let reason = "lost: seqs \(from)...\(end) were assigned (\(witness)) but are not in the log; \(cause)"
        guard try segments.gap(from: from, to: end, reason: reason) else {
            throw WALError(.io, "cannot record lost seqs: \(segments.stallReason ?? "no room")", path: directory.path)
        }
        report.lostSeqs = from...end
    }

    // MARK: - Appending

    /// Appends one record and returns its sequence number.
    ///
    /// On return the record is in the mmap'd staging file: it survives the process being killed. With
    /// `.synchronous` durability it is also on stable storage. Costs one mutex, one CRC32C and one `memcpy`; no
    /// system call (except `.synchronous`).
    ///
    /// Throws `.recordTooLarge` (no sequence number used), `.closed`, or `.dropped` when the `whenFull` policy
    /// dropped it (the sequence number is used, and covered by a gap marker in the log).
    @inline(__always)
    public func append(_ bytes: UnsafeRawBufferPointer) throws(WALError) -> UInt64 {
        let crc = CRC32C.checksum(bytes)
        let need = align8(LogFormat.stagedRecordHeaderSize + bytes.count)
        guard bytes.count <= configuration.maxRecordSize else {
            throw WALError(.recordTooLarge, "record of \(bytes.count) bytes exceeds \(configuration.maxRecordSize)")
        }
        lock.lockSpinning()
        let s = state
        let offset = s.pointee.writeOffset
        if _fastPath(!s.pointee.hasPendingGap && !s.pointee.closed && offset + need <= blockSize) {
            let seq = s.pointee.nextSeq
            s.pointee.nextSeq = seq &+ 1
            s.pointee.writeOffset = offset + need
            s.pointee.appended &+= 1
            StagingArea.store(
                at: staging.block(s.pointee.writeBlock) + offset,
                kind: .data,
                seq: seq,
                payload: bytes.baseAddress,
                count: bytes.count,
                payloadCRC: crc
            )
            lock.unlock()
            if synchronous { try sync() }
            return seq
        }
        let seq = try appendSlowPath(bytes, crc: crc, need: need)
        if synchronous { try sync() }
        return seq
    }

    /// Appends a record given as an array (convenience; same guarantees as the buffer form).
    @discardableResult
    public func append(_ bytes: [UInt8]) throws(WALError) -> UInt64 {
        try bytes.withBytes { buffer throws(WALError) in try append(buffer) }
    }

    /// Called with `lock` held; releases it.
    private func appendSlowPath(_ bytes: UnsafeRawBufferPointer, crc: UInt32, need: Int) throws(WALError) -> UInt64 {
        let s = state
        var deadline: UInt64?
        // A block closed here is sealed once the sealer is woken: after `lock` is released (every exit below).
        var rotated = false
        defer { if rotated { sealerWake.wake() } }
        while true {
            if s.pointee.closed {
                lock.unlock()
                throw WALError(.closed, "the log is closed", path: directory.path)
            }
            let gapNeed = s.pointee.hasPendingGap ? gapRecordSize(reason: s.pointee.pendingGapReason) : 0
            if s.pointee.writeOffset + gapNeed + need <= blockSize {
                if s.pointee.hasPendingGap { stagePendingGap() }
                let seq = s.pointee.nextSeq
                s.pointee.nextSeq = seq + 1
                s.pointee.appended += 1
                StagingArea.store(
                    at: staging.block(s.pointee.writeBlock) + s.pointee.writeOffset,
                    kind: .data,
                    seq: seq,
                    payload: bytes.baseAddress,
                    count: bytes.count,
                    payloadCRC: crc
                )
                s.pointee.writeOffset += need
                lock.unlock()
                return seq
            }
            if s.pointee.writeOffset > 0 && rotate() {
                rotated = true
                continue
            }
            // Staging is full. A healthy sealer that is merely behind frees a block within one frame's work: wait.
            // A stalled one (size limit, no space, I/O error) will not: apply the whenFull policy.
            if rotated {
                // Wake the sealer for what this call closed before sleeping, not when the call returns.
                rotated = false
                lock.unlock()
                sealerWake.wake()
                lock.lock()
                continue
            }
            if s.pointee.stallReason == nil && s.pointee.lastError == nil {
                lock.wait(untilMonotonicNanos: monotonicNanos() + 10_000_000)
                continue
            }
            switch configuration.whenFull {
            case .dropNewest:
                break
            case .block(let timeout):
                let now = monotonicNanos()
                let limit = deadline ?? now + UInt64(timeout) * 1_000_000
                deadline = limit
                if now < limit {
                    lock.wait(untilMonotonicNanos: limit)
                    continue
                }
            }
            let seq = s.pointee.nextSeq
            s.pointee.nextSeq = seq + 1
            s.pointee.dropped += 1
            if s.pointee.hasPendingGap {
                s.pointee.pendingGapTo = seq
            } else {
                s.pointee.hasPendingGap = true
                s.pointee.pendingGapFrom = seq
                s.pointee.pendingGapTo = seq
                s.pointee.pendingGapReason =
                    "dropped by whenFull policy: " + (s.pointee.stallReason ?? s.pointee.lastError ?? "log full")
            }
            // The drop is durable before the call returns (as a staged record would be): the state record in the
            // staging header holds the unstaged gap until its gap record reaches a block.
            s.pointee.recorded.highWaterSeq = max(s.pointee.recorded.highWaterSeq, seq)
            s.pointee.recorded.gapFirst = s.pointee.pendingGapFrom
            s.pointee.recorded.gapLast = seq
            staging.storeWriterState(&s.pointee.recorded)
            let reason = s.pointee.pendingGapReason
            lock.unlock()
            var error = WALError(.dropped, "record \(seq) dropped (\(reason))", path: directory.path)
            error.seq = seq
            throw error
        }
    }

    private func gapRecordSize(reason: String) -> Int {
        align8(LogFormat.stagedRecordHeaderSize + 8 + min(reason.utf8.count, configuration.gapRecordReserve - 32))
    }

    /// Writes the pending gap marker into the current block. Lock held; caller checked the room.
    private func stagePendingGap() {
        let s = state
        var payload: [UInt8] = []
        payload.appendLE(s.pointee.pendingGapTo)
        payload.append(contentsOf: s.pointee.pendingGapReason.utf8.prefix(configuration.gapRecordReserve - 32))
        payload.withUnsafeBytes { buffer in
            StagingArea.store(
                at: staging.block(s.pointee.writeBlock) + s.pointee.writeOffset,
                kind: .gap,
                seq: s.pointee.pendingGapFrom,
                payload: buffer.baseAddress,
                count: buffer.count,
                payloadCRC: CRC32C.checksum(buffer)
            )
        }
        s.pointee.writeOffset += align8(LogFormat.stagedRecordHeaderSize + payload.count)
        s.pointee.hasPendingGap = false
    }

    /// Closes the current block for the sealer and moves to the next free one. Lock held. Does not wake the sealer:
    /// an appender does that after releasing the lock.
    private func rotate() -> Bool {
        let s = state
        guard s.pointee.closedCount + 1 < blockCount else { return false }
        closedLengths[s.pointee.writeBlock] = s.pointee.writeOffset
        s.pointee.closedCount += 1
        s.pointee.writeBlock = (s.pointee.writeBlock + 1) % blockCount
        s.pointee.writeOffset = 0
        return true
    }

    /// Used length of each closed block, indexed by block. Guarded by `lock`.
    private var closedLengths: [Int]
    /// The sealer's copy of the lengths of the blocks it seals, in sealing order (no allocation under `lock`).
    private var sealLengths: [Int]

    // MARK: - Durability

    /// Returns once every record appended before the call is on stable storage: the staging file is `msync`ed and
    /// the active segment `fdatasync`ed. Concurrent callers are group-committed: one flush serves all whose records
    /// it covers.
    public func sync() throws(WALError) {
        lock.lock()
        let target = state.pointee.nextSeq - 1
        while state.pointee.durableSeq < target {
            if state.pointee.syncInProgress {
                lock.wait()
                continue
            }
            state.pointee.syncInProgress = true
            let covering = state.pointee.nextSeq - 1
            let dependency = syncDependency
            lock.unlock()
            var failure: WALError?
            do {
                try dependency?()
                try staging.sync()
                try ioLock.withLock { () throws(WALError) in try segments.sync() }
            } catch {
                failure = error
            }
            lock.lock()
            state.pointee.syncInProgress = false
            if failure == nil { state.pointee.durableSeq = max(state.pointee.durableSeq, covering) }
            lock.broadcast()
            if let failure {
                state.pointee.lastError = failure.description
                lock.unlock()
                throw failure
            }
        }
        lock.unlock()
    }

    /// Files the records depend on (the metrics symbol table), flushed by every `sync()` and periodic flush before
    /// the staging file, so that no durable record refers to something that is not durable. Guarded by `lock`.
    private var syncDependency: (() throws(WALError) -> Void)?

    /// Makes `sync()`, the `periodic` flush and `synchronous` appends run `body` first, before the staging file is
    /// flushed: `body` makes durable what the records appended so far depend on. Set it before appending. `body`
    /// runs on the syncing thread (an appender, or the sealer) and must not call back into this writer.
    public func setSyncDependency(_ body: @escaping @Sendable () throws(WALError) -> Void) {
        lock.withLock { syncDependency = body }
    }

    // MARK: - Sealer

    private func sealerLoop() {
        let sealDelay = UInt64(configuration.sealDelayMilliseconds) * 1_000_000
        let tick = max(sealDelay / 4, 1_000_000)
        let retentionEvery = UInt64(configuration.retentionIntervalMilliseconds) * 1_000_000
        var periodicEvery: UInt64?
        if case .periodic(let ms) = configuration.durability { periodicEvery = UInt64(ms) * 1_000_000 }
        var observedNonEmptyAt: UInt64?
        var lastRetention = monotonicNanos()
        var lastPeriodicSync = monotonicNanos()
        var stalledUntil: UInt64 = 0
        let s = state

        lock.lock()
        while true {
            let now = monotonicNanos()
            // Age out a partly filled block, or write a lone gap marker.
            if s.pointee.closedCount == 0 {
                if s.pointee.hasPendingGap,
                    s.pointee.writeOffset + gapRecordSize(reason: s.pointee.pendingGapReason) <= blockSize
                {
                    stagePendingGap()
                }
                if s.pointee.writeOffset > 0 {
                    let since = observedNonEmptyAt ?? now
                    observedNonEmptyAt = since
                    if now - since >= sealDelay || s.pointee.draining || s.pointee.sealRequested {
                        _ = rotate()
                        observedNonEmptyAt = nil
                        s.pointee.sealRequested = false
                    }
                } else {
                    observedNonEmptyAt = nil
                }
            }
            if s.pointee.abandoned { break }
            if s.pointee.sealingPaused {
                lock.unlock()
                sealerWake.wait(untilMonotonicNanos: monotonicNanos() + tick)
                lock.lock()
                continue
            }
            if s.pointee.closedCount > 0 && now >= stalledUntil {
                // Before any of these records can reach a segment (and a reader), the high-water mark covers them:
                // a writer that later finds the log shorter knows those seqs were used.
                if s.pointee.nextSeq - 1 > s.pointee.recorded.highWaterSeq {
                    s.pointee.recorded.highWaterSeq = s.pointee.nextSeq - 1
                    staging.storeWriterState(&s.pointee.recorded)
                }
                let first = s.pointee.sealBlock
                let count = s.pointee.closedCount
                for index in 0..<count { sealLengths[index] = closedLengths[(first + index) % blockCount] }
                lock.unlock()
                let (sealed, error) = sealBlocks(first: first, lengths: sealLengths.prefix(count))
                lock.lock()
                s.pointee.sealedSeq = segments.sealedSeq
                s.pointee.segmentBytes = segments.segmentBytes
                s.pointee.stallReason = segments.stallReason
                if let error {
                    s.pointee.lastError = error.description
                } else if sealed == count {
                    s.pointee.lastError = nil
                }
                if sealed > 0 {
                    s.pointee.closedCount -= sealed
                    s.pointee.sealBlock = (first + sealed) % blockCount
                    lock.broadcast()
                }
                if sealed < count {
                    // Stalled (size limit, no space, I/O error): retry soon, appenders apply whenFull meanwhile.
                    stalledUntil = monotonicNanos() + 50_000_000
                    lock.unlock()
                    runRetention(underPressure: true)
                    lock.lock()
                }
                continue
            }
            if s.pointee.draining && s.pointee.closedCount == 0 && s.pointee.writeOffset == 0
                && !s.pointee.hasPendingGap
            {
                break
            }
            if s.pointee.draining && s.pointee.closedCount > 0 && drainDeadlinePassed() {
                break  // Cannot seal (stalled): what is left stays in staging and is recovered on next open.
            }
            let periodicDue = periodicEvery.map { now - lastPeriodicSync >= $0 } ?? false
            let retentionDue = now - lastRetention >= retentionEvery
            if periodicDue || retentionDue {
                lock.unlock()
                if periodicDue {
                    try? sync()
                    lastPeriodicSync = monotonicNanos()
                }
                if retentionDue {
                    runRetention(underPressure: false)
                    lastRetention = monotonicNanos()
                }
                lock.lock()
                continue
            }
            // Sleep without the append lock: appenders wake the sealer (`sealerWake`) when they close a block.
            lock.unlock()
            sealerWake.wait(untilMonotonicNanos: monotonicNanos() + tick)
            lock.lock()
        }
        lock.unlock()
    }

    private var drainStarted: UInt64 = 0
    private func drainDeadlinePassed() -> Bool { monotonicNanos() - drainStarted > 1_000_000_000 }

    /// Seals closed blocks in order; returns how many were fully sealed, and the I/O error that stopped it.
    private func sealBlocks(first: Int, lengths: ArraySlice<Int>) -> (Int, WALError?) {
        var sealed = 0
        if configuration.durability != .processCrash {
            // What these records depend on (the metrics symbols they refer to) reaches the disk before they can:
            // a frame synced first would outlive its symbols in a power failure, and the next writer would give
            // their ids to other strings. Free when nothing new was added since the last time.
            let dependency = lock.withLock { syncDependency }
            do { try dependency?() } catch { return (0, error) }
        }
        for (index, length) in lengths.enumerated() {
            let blockIndex = (first + index) % blockCount
            let block = UnsafeRawBufferPointer(start: staging.block(blockIndex), count: blockSize)
            do {
                let done: Bool = try ioLock.withLock { () throws(WALError) -> Bool in
                    for record in StagedRecord.scan(block: block, limit: length) {
                        let payload = UnsafeRawBufferPointer(
                            rebasing: block[record.payloadOffset..<record.payloadOffset + record.count]
                        )
                        switch record.kind {
                        case .data:
                            guard try segments.add(seq: record.seq, bytes: payload) else { return false }
                        case .gap:
                            let reason = String(decoding: payload.dropFirst(8), as: UTF8.self)
                            guard try segments.gap(from: record.seq, to: record.lastSeq(in: block), reason: reason)
                            else { return false }
                        }
                    }
                    guard try segments.flush() else { return false }
                    if configuration.durability != .processCrash || durableCovers(block: block) {
                        // A block whose records were made durable in staging is reused only once its frames are.
                        try segments.sync()
                    }
                    return true
                }
                guard done else { return (sealed, nil) }
            } catch {
                return (sealed, error)
            }
            staging.clear(block: blockIndex)
            sealed += 1
        }
        return (sealed, nil)
    }

    /// True when records of the block were, or are being, made durable in staging by `sync()`: then the block may
    /// be reused only once its frames are durable too. A sync in progress counts, since its msync may already
    /// have covered the block.
    private func durableCovers(block: UnsafeRawBufferPointer) -> Bool {
        guard let firstSeq = block.getLE(UInt64.self, at: 8) else { return false }
        return lock.withLock { state.pointee.syncInProgress || state.pointee.durableSeq >= firstSeq }
    }

    // MARK: - Size limit and retention

    /// The size limit: segment files may grow by `bytes` (a new segment, or a step of the active one) only while they
    /// and the staging file stay within `maxTotalBytes`.
    private func admitAllocation(bytes: Int64) -> String? {
        guard let max = configuration.maxTotalBytes else { return nil }
        let total = segments.segmentBytes + Int64(staging.fileSize) + bytes
        if total <= max { return nil }
        return "size limit of \(max) bytes reached"
    }

    /// Deletes sealed segments every registered cursor has passed, honouring keep-for-replay unless under pressure.
    /// With no cursor registered nothing is deleted: nobody has consumed anything yet.
    private func runRetention(underPressure: Bool) {
        let store = CursorStore(directory: directory)
        guard let (cursors, damaged) = try? store.all(), !cursors.isEmpty else { return }
        if !damaged.isEmpty { return }  // A cursor we cannot read might be behind: delete nothing.
        let minimum = cursors.map(\.seq).min() ?? 0
        guard let files = try? directory.segments(), files.count > 1 else { return }
        let sealedFiles = Array(files.dropLast())
        var remainingSealedBytes = sealedFiles.reduce(Int64(0)) { $0 + (FileSystem.size($1.path) ?? 0) }
        let now = wallClockNanos()
        for (index, file) in sealedFiles.enumerated() {
            let lastSeq = files[index + 1].firstSeq - 1
            guard lastSeq <= minimum else { break }
            // Where a segment ends is told by the next one's name: both must be what their names say (a renamed
            // segment made retention delete records no consumer had read). In doubt, nothing is deleted.
            guard
                [file, files[index + 1]].allSatisfy({ candidate in
                    guard let reader = try? SegmentFileReader(path: candidate.path) else { return false }
                    return LogInspector.identityProblem(of: reader, named: candidate, logID: logID) == nil
                })
            else { break }
            let size = FileSystem.size(file.path) ?? 0
            if !underPressure {
                if let keepBytes = configuration.keepForReplayBytes, remainingSealedBytes - size < keepBytes { break }
                if let keepSeconds = configuration.keepForReplaySeconds,
                    let modified = FileSystem.modificationNanos(file.path),
                    now < modified + UInt64(keepSeconds) * 1_000_000_000
                {
                    break
                }
            }
            guard (try? FileSystem.remove(file.path)) != nil else { break }
            remainingSealedBytes -= size
            ioLock.withLock { segments.segmentBytes -= size }
        }
    }

    // MARK: - Closing

    /// Seals everything staged, syncs, stops the sealer and releases the directory lock. Appends after `close`
    /// throw `.closed`. Idempotent.
    public func close() throws(WALError) {
        lock.lock()
        if state.pointee.closed {
            lock.unlock()
            return
        }
        state.pointee.closed = true
        state.pointee.draining = true
        drainStarted = monotonicNanos()
        lock.broadcast()
        lock.unlock()
        sealerWake.wake()
        sealer?.join()
        sealer = nil
        try? staging.sync()
        ioLock.withLock { segments.syncForClose() }
        directoryLock = nil
        if let error = lock.withLock({ state.pointee.closedCount > 0 ? state.pointee.stallReason : nil }) {
            throw WALError(.io, "closed with records still in staging (\(error)); they are recovered on next open")
        }
    }

    // MARK: - Crash simulation (benchmarks and tests)

    /// Stops the sealer from sealing until `resumeSealingForTesting()`; appends keep filling staging.
    @_spi(Testing) public func pauseSealingForTesting() {
        lock.withLock { state.pointee.sealingPaused = true }
    }

    @_spi(Testing) public func resumeSealingForTesting() {
        lock.withLock {
            state.pointee.sealingPaused = false
            lock.broadcast()
        }
        sealerWake.wake()
    }

    /// Runs retention now, on the calling thread, as the sealer does every `retentionIntervalMilliseconds`.
    @_spi(Testing) public func runRetentionForTesting() {
        runRetention(underPressure: false)
    }

    /// Leaves the log as a killed process would: staged records unsealed, nothing synced, the lock released.
    /// The object is unusable afterwards (appends throw `.closed`).
    @_spi(Testing) public func abandonForTesting() {
        lock.withLock {
            state.pointee.closed = true
            state.pointee.abandoned = true
            lock.broadcast()
        }
        sealerWake.wake()
        sealer?.join()
        sealer = nil
        directoryLock = nil
    }

    // MARK: - Observing

    public var statistics: WALStatistics {
        lock.withLock {
            let s = state.pointee
            return WALStatistics(
                appended: s.appended,
                dropped: s.dropped,
                nextSeq: s.nextSeq,
                sealedSeq: s.sealedSeq,
                durableSeq: s.durableSeq,
                segmentBytes: s.segmentBytes,
                blocksWaiting: s.closedCount,
                stallReason: s.stallReason,
                lastError: s.lastError
            )
        }
    }

    /// Blocks until every record appended so far is sealed into a segment (visible to readers), or `timeout` passes.
    /// Returns true when sealed.
    @discardableResult
    public func waitUntilSealed(timeoutMilliseconds: Int = 5000) -> Bool {
        let deadline = monotonicNanos() + UInt64(timeoutMilliseconds) * 1_000_000
        lock.lock()
        defer { lock.unlock() }
        let target = state.pointee.nextSeq - 1
        state.pointee.sealRequested = true
        sealerWake.wake()
        while state.pointee.sealedSeq < target {
            if monotonicNanos() >= deadline { return false }
            lock.wait(untilMonotonicNanos: min(deadline, monotonicNanos() + 5_000_000))
        }
        return true
    }
}
