import WALCore
import WALMetrics

/// A consumer's position in a log (a local cursor, or the position a sink committed) and how far it is behind.
public struct CursorLag: Sendable, Equatable, Encodable {
    /// The cursor's name (`postgres`, `kafka`, a consumer group, a local cursor file).
    public var name: String
    /// Where the position was read: `local` (the log's `cursors/` folder), `postgres` or `kafka`.
    public var source: String
    public var seq: UInt64
    /// Sequence numbers sealed in the log after `seq`.
    public var recordsBehind: UInt64
    /// Emit age of the oldest record the position has not passed, in seconds; 0 when caught up.
    public var ageSeconds: Double

    public init(name: String, source: String, seq: UInt64, recordsBehind: UInt64, ageSeconds: Double) {
        self.name = name
        self.source = source
        self.seq = seq
        self.recordsBehind = recordsBehind
        self.ageSeconds = ageSeconds
    }

    enum CodingKeys: String, CodingKey {
        case name, source, seq
        case recordsBehind = "lag_records"
        case ageSeconds = "lag_seconds"
    }
}

/// A position to measure: who holds it, where it was read, the sequence number.
public struct CursorPosition: Sendable, Equatable {
    public var name: String
    public var source: String
    public var seq: UInt64

    public init(name: String, source: String, seq: UInt64) {
        self.name = name
        self.source = source
        self.seq = seq
    }
}

/// One log of a host and where every consumer stands in it.
public struct LogStanding: Sendable, Equatable, Encodable {
    public var overview: LogOverview
    public var lags: [CursorLag]

    enum CodingKeys: String, CodingKey {
        case overview
        case lags = "cursor_lags"
    }
}

/// Cursor lag as a library: how far local cursors and sinks' committed positions are behind a log's end, for
/// one log (`walctl inspect DIR`) or every log of a `LogSelection` (`walctl inspect --root`). Read-only and
/// lock-free; the age costs one frame decode per position that lags (none for one that is caught up).
public enum ShippingLag {
    /// The lag of each position against `lastSeq` (the log's last sealed sequence number), in the given order.
    /// `now` is wall-clock nanoseconds since the epoch.
    public static func measure(
        directory: String,
        lastSeq: UInt64,
        positions: [CursorPosition],
        now: Int64
    ) -> [CursorLag] {
        var ages: [UInt64: Double] = [:]
        return positions.map { position in
            let behind = lastSeq > position.seq ? lastSeq - position.seq : 0
            var age = 0.0
            if behind > 0 {
                if let known = ages[position.seq] {
                    age = known
                } else {
                    let emitted = emitTime(directory: directory, atOrAfter: position.seq + 1)
                    age = emitted.map { Double(max(0, now - $0)) / 1e9 } ?? 0
                    ages[position.seq] = age
                }
            }
            return CursorLag(
                name: position.name,
                source: position.source,
                seq: position.seq,
                recordsBehind: behind,
                ageSeconds: age
            )
        }
    }

    /// The emit time of the first metric record at or after `seq` (nanoseconds since the epoch), nil when none.
    public static func emitTime(directory: String, atOrAfter seq: UInt64) -> Int64? {
        var found: Int64?
        try? MetricsReader(path: directory, from: seq).read { entry in
            if case .metric(let record) = entry {
                found = record.timestampNanos
                return false
            }
            return true
        }
        return found
    }

    /// Every log of `selection` with its local cursors' lag and the lag of the positions `sinks` holds for it
    /// (by log id, as read from the sinks in one go: `PostgresSink.cursors`, `KafkaSink.readCursor`). A
    /// directory that cannot be read is passed to `unreadable` and left out.
    public static func standings(
        of directories: [String],
        sinks: (LogOverview) -> [CursorPosition] = { _ in [] },
        now: Int64,
        unreadable: (String, any Error) -> Void = { _, _ in }
    ) -> [LogStanding] {
        directories.compactMap { directory in
            let overview: LogOverview
            do {
                overview = try LogInspector.overview(path: directory)
            } catch {
                unreadable(directory, error)
                return nil
            }
            let local = overview.cursors.sorted { $0.key < $1.key }.map {
                CursorPosition(name: $0.key, source: "local", seq: $0.value)
            }
            let lags = measure(
                directory: directory,
                lastSeq: overview.lastSeq ?? 0,
                positions: local + sinks(overview),
                now: now
            )
            return LogStanding(overview: overview, lags: lags)
        }
    }
}
