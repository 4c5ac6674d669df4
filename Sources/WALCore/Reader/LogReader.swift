/// What a reader meets in the log, in sequence order.
public enum LogEntry {
    /// A record. `bytes` is valid only during the callback.
    case record(seq: UInt64, bytes: UnsafeRawBufferPointer)
    /// A gap marker: sequence numbers the writer dropped, and why.
    case gap(GapMarker)
    /// Bytes that could not be read, with the sequence numbers lost in them when known.
    case damage(ReadDamage)
}

/// A region of a segment that could not be read.
public struct ReadDamage: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var offset: Int64
    public var length: Int64
    public var reason: String
    /// Sequence numbers the damage hides, when the frames around it tell.
    public var lostFromSeq: UInt64?
    public var lostToSeq: UInt64?

    public var description: String {
        var text = "\(path) at byte \(offset): \(reason) (\(length) bytes)"
        if let from = lostFromSeq, let to = lostToSeq { text += ", sequence numbers \(from)...\(to) lost" }
        return text
    }
}

/// Reads the sealed records of a log, from a sequence number to the current end. Takes no lock; works on a live
/// log (it sees what was sealed when it gets there), a crashed one, or a read-only copy.
///
/// Not thread-safe: one reader per thread.
public final class LogReader {
    public let directory: LogDirectory
    private let walker: FrameWalker
    private var decoder = FrameDecoder()
    private let from: UInt64
    private var pendingDamage: ReadDamage?
    /// Unreadable bytes found at the end of the last segment (a torn write, not yet cut by recovery).
    public private(set) var tornTailBytes: Int64 = 0

    public init(path: String, from seq: UInt64 = 1) {
        self.directory = LogDirectory(path: path)
        self.from = max(seq, 1)
        self.walker = FrameWalker(directory: directory, from: seq, live: false)
    }

    /// Calls `body` with each entry until the end of the log, or until `body` returns false.
    public func read(_ body: (LogEntry) throws -> Bool) throws {
        while true {
            switch try walker.step() {
            case .end(let torn):
                tornTailBytes = torn
                if let damage = pendingDamage {
                    pendingDamage = nil
                    _ = try body(.damage(damage))
                }
                return
            case .damage(let damage):
                if let previous = pendingDamage { guard try body(.damage(previous)) else { return } }
                pendingDamage = ReadDamage(
                    path: damage.path,
                    offset: damage.offset,
                    length: damage.length,
                    reason: damage.reason
                )
            case .missing(let lostFrom, let lostTo, let reason):
                if var damage = pendingDamage {
                    pendingDamage = nil
                    damage.lostFromSeq = lostFrom
                    damage.lostToSeq = lostTo
                    guard try body(.damage(damage)) else { return }
                } else {
                    let damage = ReadDamage(
                        path: directory.path,
                        offset: 0,
                        length: 0,
                        reason: reason,
                        lostFromSeq: lostFrom,
                        lostToSeq: lostTo
                    )
                    guard try body(.damage(damage)) else { return }
                }
            case .frame(let header):
                if let damage = pendingDamage {
                    pendingDamage = nil
                    guard try body(.damage(damage)) else { return }
                }
                guard try deliver(header, body) else { return }
            }
        }
    }

    /// Delivers one frame's entries; false when `body` asked to stop.
    private func deliver(_ header: FrameHeader, _ body: (LogEntry) throws -> Bool) throws -> Bool {
        switch header.type {
        case .gap:
            let reason = String(decoding: walker.storedPayload.prefix(Int(header.storedLength)), as: UTF8.self)
            return try body(.gap(GapMarker(fromSeq: header.firstSeq, toSeq: header.lastSeq, reason: reason)))
        case .data:
            var keepGoing = true
            let stored = UnsafeRawBufferPointer(rebasing: walker.storedPayload.prefix(Int(header.storedLength)))
            let problem = try decoder.forEachRecord(header: header, stored: stored, from: from) { seq, bytes in
                if keepGoing { keepGoing = try body(.record(seq: seq, bytes: bytes)) }
            }
            if let problem {
                let position = walker.position
                let damage = ReadDamage(
                    path: position?.path ?? directory.path,
                    offset: (position?.offset ?? 0) - Int64(header.frameLength),
                    length: Int64(header.frameLength),
                    reason: problem,
                    lostFromSeq: header.firstSeq,
                    lostToSeq: header.lastSeq
                )
                return try body(.damage(damage))
            }
            return keepGoing
        }
    }
}

/// Follows a log as it is written, for shippers and `walctl tail -f`: returns new sealed records as they appear.
///
/// Latency: a record is visible at most `sealDelay` plus the sealer's tick (50 ms with defaults) after `append`
/// returned, and a `poll` sees it on its next call. Takes no lock; tolerates segments deleted by retention (reported
/// as damage with the lost range) and a writer restarting.
///
/// Not thread-safe: one tail reader per consumer.
public final class TailReader {
    public let directory: LogDirectory
    private let walker: FrameWalker
    private var decoder = FrameDecoder()

    /// Starts after `seq` (the consumer's cursor: the last record it processed; 0 for the beginning).
    public init(path: String, after seq: UInt64) {
        self.directory = LogDirectory(path: path)
        self.walker = FrameWalker(directory: directory, from: seq + 1, live: true)
    }

    /// The next sequence number this reader will deliver.
    public var nextSeq: UInt64 { walker.nextSeq }

    /// Releases the segment's descriptor and the read buffers while the log is idle; the next `poll` reopens it where
    /// the reader stood (a host shipper keeps thousands of idle logs this way at no cost in descriptors).
    public func suspend() {
        walker.suspend()
        decoder = FrameDecoder()
    }

    /// Whether the reader holds no segment open (suspended, or never polled).
    public var isSuspended: Bool { walker.isSuspended }

    /// False only when the reader is suspended and the log has certainly not changed since (a `stat` of its segment
    /// and of the directory, nothing opened): how a host shipper looks at thousands of idle logs cheaply.
    public var mayHaveMore: Bool { walker.mayHaveMore }

    /// Delivers entries available now, frame by frame, until at least `maxEntries` were delivered or nothing more is
    /// sealed yet. Never waits. Returns the number of entries delivered.
    @discardableResult
    public func poll(maxEntries: Int = .max, _ body: (LogEntry) throws -> Void) throws -> Int {
        var delivered = 0
        while delivered < maxEntries {
            let from = walker.nextSeq
            switch try walker.step() {
            case .end:
                return delivered
            case .damage(let damage):
                try body(
                    .damage(
                        ReadDamage(
                            path: damage.path,
                            offset: damage.offset,
                            length: damage.length,
                            reason: damage.reason
                        )
                    )
                )
                delivered += 1
            case .missing(let lostFrom, let lostTo, let reason):
                try body(
                    .damage(
                        ReadDamage(
                            path: directory.path,
                            offset: 0,
                            length: 0,
                            reason: reason,
                            lostFromSeq: lostFrom,
                            lostToSeq: lostTo
                        )
                    )
                )
                delivered += 1
            case .frame(let header):
                let stored = UnsafeRawBufferPointer(rebasing: walker.storedPayload.prefix(Int(header.storedLength)))
                switch header.type {
                case .gap:
                    let reason = String(decoding: stored, as: UTF8.self)
                    try body(.gap(GapMarker(fromSeq: header.firstSeq, toSeq: header.lastSeq, reason: reason)))
                    delivered += 1
                case .data:
                    let problem = try decoder.forEachRecord(header: header, stored: stored, from: from) { seq, bytes in
                        try body(.record(seq: seq, bytes: bytes))
                        delivered += 1
                    }
                    if let problem {
                        let position = walker.position
                        try body(
                            .damage(
                                ReadDamage(
                                    path: position?.path ?? directory.path,
                                    offset: (position?.offset ?? 0) - Int64(header.frameLength),
                                    length: Int64(header.frameLength),
                                    reason: problem,
                                    lostFromSeq: header.firstSeq,
                                    lostToSeq: header.lastSeq
                                )
                            )
                        )
                        delivered += 1
                    }
                }
            }
        }
        return delivered
    }
}
