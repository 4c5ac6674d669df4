import Dispatch
import WALCore

/// Reads a log's metric records as envelope JSON lines, in sequence order, rendering on several threads: the reader
/// copies records into chunks, and each batch of chunks is rendered in parallel (one `EnvelopeStream` per thread),
/// then handed to the caller in order. What `walctl replay --to stdout|file` and `inspect --records --json` use.
///
/// Lock-free and read-only like `LogReader`. Not thread-safe: one reader per caller; the callbacks run on the
/// caller's thread.
public final class EnvelopeReader {
    /// What the reader passes over, reported in reading order (a chunk's records may be delivered after it).
    public enum PassedOver {
        case gap(GapMarker)
        case damage(ReadDamage)
        case undecodable(seq: UInt64, MetricsDecoder.Failure)
        /// A record the filter leaves out.
        case filteredOut(seq: UInt64)
    }

    private let directory: String
    private let filter: RecordFilter
    private let streams: [EnvelopeStream]
    private let chunkRecords: Int

    /// Records of the log, copied for rendering elsewhere.
    final class Chunk: @unchecked Sendable {
        var seqs: [UInt64] = []
        var ends: [Int] = []
        var bytes: [UInt8] = []
        /// Filled by the rendering thread: each record's outcome and the end of its line in `output`.
        var outcomes: [EnvelopeStream.Outcome] = []
        var lineEnds: [Int] = []
        var output: [UInt8] = []

        var count: Int { seqs.count }

        func reset() {
            seqs.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true)
            bytes.removeAll(keepingCapacity: true)
            outcomes.removeAll(keepingCapacity: true)
            lineEnds.removeAll(keepingCapacity: true)
            output.removeAll(keepingCapacity: true)
        }

        func render(with stream: EnvelopeStream) {
            bytes.withUnsafeBytes { raw in
                var start = 0
                for (index, seq) in seqs.enumerated() {
                    let record = UnsafeRawBufferPointer(rebasing: raw[start..<ends[index]])
                    let outcome = stream.render(seq: seq, bytes: record, into: &output)
                    if outcome == .rendered { output.append(0x0A) }
                    outcomes.append(outcome)
                    lineEnds.append(output.count)
                    start = ends[index]
                }
            }
        }
    }

    /// `threads` rendering threads (default: the processors available), `chunkRecords` records per chunk.
    public init(
        directory: String,
        logID: LogID,
        filter: RecordFilter = RecordFilter(),
        threads: Int = EnvelopeReader.availableProcessors,
        chunkRecords: Int = 16_384
    ) {
        self.directory = directory
        self.filter = filter
        self.streams = (0..<max(threads, 1)).map { _ in
            EnvelopeStream(directory: directory, logID: logID, filter: filter)
        }
        self.chunkRecords = max(chunkRecords, 1)
    }

    /// Calls `line` with each rendered envelope (JSON and its newline) in sequence order, and `passedOver` with
    /// everything else, until the end of the log or of the filter's range, or until a callback returns false.
    public func read(
        passedOver: (PassedOver) throws -> Bool,
        line: (UInt64, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        let chunks = streams.map { _ in Chunk() }
        var filling = 0
        var stopped = false

        /// Renders the filled chunks in parallel, then delivers them in order; false when a callback stopped.
        func flush() throws -> Bool {
            let used = chunks[0...filling].filter { $0.count > 0 }
            if used.count > 1 {
                let streams = self.streams
                DispatchQueue.concurrentPerform(iterations: used.count) { index in
                    used[index].render(with: streams[index])
                }
            } else if let only = used.first {
                only.render(with: streams[0])
            }
            for chunk in used {
                let delivered = try chunk.output.withUnsafeBytes { output -> Bool in
                    var start = 0
                    for (index, outcome) in chunk.outcomes.enumerated() {
                        let end = chunk.lineEnds[index]
                        let seq = chunk.seqs[index]
                        switch outcome {
                        case .rendered:
                            guard try line(seq, UnsafeRawBufferPointer(rebasing: output[start..<end])) else {
                                return false
                            }
                        case .filteredOut:
                            guard try passedOver(.filteredOut(seq: seq)) else { return false }
                        case .undecodable(let failure):
                            guard try passedOver(.undecodable(seq: seq, failure)) else { return false }
                        }
                        start = end
                    }
                    return true
                }
                guard delivered else { return false }
            }
            for chunk in chunks { chunk.reset() }
            filling = 0
            return true
        }

        try LogReader(path: directory, from: filter.fromSeq).read { entry in
            switch entry {
            case .record(let seq, let bytes):
                if filter.isPast(seq) { return false }
                let chunk = chunks[filling]
                chunk.seqs.append(seq)
                chunk.bytes.append(contentsOf: bytes)
                chunk.ends.append(chunk.bytes.count)
                guard chunk.count >= chunkRecords else { return true }
                if filling + 1 < chunks.count {
                    filling += 1
                    return true
                }
                stopped = !(try flush())
                return !stopped
            case .gap(let gap):
                if filter.isPast(gap.fromSeq) { return false }
                stopped = !(try passedOver(.gap(gap)))
                return !stopped
            case .damage(let damage):
                stopped = !(try passedOver(.damage(damage)))
                return !stopped
            }
        }
        if !stopped { _ = try flush() }
    }
}

extension EnvelopeReader {
    /// Processors online: the default number of rendering threads.
    public static var availableProcessors: Int { max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
