import Synchronization
import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What agent code calls: records timings, counters, gauges and rates into a durable log.
///
/// Every `record*` call is synchronous (usable from async code without `await`), thread-safe, and returns once the
/// record is durable per the log's `Durability` (by default: it survives the process being killed). Bad input never
/// throws and never crashes: it returns `.rejected(reason)` and is counted in `statistics`.
///
/// Cost: a call by name does two dictionary look-ups under a lock, then one log append. A `MetricHandle` skips the
/// look-ups and makes no heap allocation.
public final class MetricsCollector: @unchecked Sendable {
    public let configuration: MetricsConfiguration
    /// The log written to; nil when metrics are disabled.
    public let log: WAL?
    /// The log's identity (the envelope's event ids derive from it); nil when disabled.
    public var logID: LogID? { log?.logID }

    /// `log`, unretained: the emit path calls it without reference counting (`log` keeps it alive).
    private let appender: Unmanaged<WAL>?
    private let symbols: SymbolTable?
    private let defaultAgent: UInt32
    private let rejections = Mutex<[RejectionReason: UInt64]>([:])

    /// The interned symbols, behind a lock.
    final class SymbolTable: Sendable {
        let state: Mutex<SymbolState>
        init(_ state: consuming SymbolState) { self.state = Mutex(state) }

        func withLock<T, E: Error>(_ body: (inout sending SymbolState) throws(E) -> sending T) throws(E) -> sending T {
            try state.withLock(body)
        }
    }

    struct SymbolState: @unchecked Sendable {
        var writer: SymbolFileWriter
        var count: UInt32
        var strings: [String: UInt32] = [:]
        var metrics: [String: (id: UInt32, type: MetricType, unit: String)] = [:]
        var tagSets: [[String: String]: UInt32] = [:]
        let limit: UInt32

        /// The id of `symbol`, appending it to the file first.
        mutating func append(_ symbol: Symbol) throws(MetricsError) -> UInt32 {
            guard count < limit else {
                throw MetricsError(.symbolTableFull, "the symbol table holds \(limit) entries")
            }
            try writer.append(symbol.encode())
            count += 1
            return count
        }

        mutating func string(_ text: String) throws(MetricsError) -> UInt32 {
            if let id = strings[text] { return id }
            let id = try append(.string(text))
            strings[text] = id
            return id
        }
    }

    /// Most symbols one log may hold.
    public static let symbolLimit: UInt32 = 1_000_000

    // MARK: - Opening

    /// Opens (or creates) the log at `configuration.directory`, or does nothing when `enabled` is false.
    public init(configuration: MetricsConfiguration) throws(MetricsError) {
        self.configuration = configuration
        guard configuration.enabled else {
            log = nil
            appender = nil
            symbols = nil
            defaultAgent = 0
            return
        }
        if let agent = configuration.agentID, Validation.checkID(agent, reason: .invalidAgentID) != nil {
            throw MetricsError(.invalidConfiguration, "agent id must be 1 to 100 bytes without NUL")
        }
        guard Validation.isValidSourceService(configuration.sourceService) else {
            throw MetricsError(.invalidConfiguration, "source service must be 1 to 27 bytes without control characters")
        }
        let wal: WAL
        do {
            wal = try WAL.open(path: configuration.directory, configuration: configuration.log)
        } catch {
            throw MetricsError(.io, "cannot open the log: \(error)")
        }
        let state: SymbolState
        do {
            let (writer, loaded) = try SymbolFileWriter.open(
                directory: configuration.directory,
                logID: wal.logID,
                sourceService: configuration.sourceService
            )
            var loadedState = SymbolState(writer: writer, count: UInt32(loaded.count), limit: Self.symbolLimit)
            Self.index(loaded, into: &loadedState)
            state = loadedState
        } catch {
            try? wal.close()
            throw error
        }
        var agentID: UInt32 = 0
        let table = SymbolTable(state)
        if let agent = configuration.agentID {
            do {
                agentID = try table.withLock { state throws(MetricsError) in try state.string(agent) }
            } catch {
                try? wal.close()
                throw error
            }
        }
        // Every durability mode covers the symbols a record refers to: a sync flushes them first.
        wal.setSyncDependency { () throws(WALError) in
            do throws(MetricsError) {
                try table.withLock { state throws(MetricsError) in try state.writer.sync() }
            } catch {
                throw WALError(.io, error.message, path: configuration.directory + "/metrics.symbols")
            }
        }
        log = wal
        appender = Unmanaged.passUnretained(wal)
        symbols = table
        defaultAgent = agentID
    }

    /// Opens a collector configured from the environment (see `MetricsConfiguration.fromEnvironment`).
    public static func fromEnvironment(
        _ environment: [String: String] = currentEnvironment()
    ) throws(MetricsError)
        -> MetricsCollector
    {
        try MetricsCollector(configuration: MetricsConfiguration.fromEnvironment(environment))
    }

    /// Rebuilds the look-up tables from the symbols already in the file.
    private static func index(_ loaded: [Symbol], into state: inout SymbolState) {
        func text(_ id: UInt32) -> String? {
            guard id >= 1, Int(id) <= loaded.count, case .string(let value) = loaded[Int(id) - 1] else { return nil }
            return value
        }
        for (offset, symbol) in loaded.enumerated() {
            let id = UInt32(offset + 1)
            switch symbol {
            case .string(let value):
                state.strings[value] = state.strings[value] ?? id
            case .metric(let type, let name, let unit):
                if let name = text(name), let unit = text(unit), state.metrics[name] == nil {
                    state.metrics[name] = (id, type, unit)
                }
            case .tagSet(let pairs):
                var tags: [String: String] = [:]
                for pair in pairs {
                    if let key = text(pair.key), let value = text(pair.value) { tags[key] = value }
                }
                if state.tagSets[tags] == nil { state.tagSets[tags] = id }
            }
        }
    }

    // MARK: - Recording by name

    /// Records a duration in milliseconds (unit `ms`).
    @discardableResult
    public func recordTiming(
        _ name: String,
        milliseconds: Double,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        agentID: String? = nil
    ) -> EmitResult {
        record(
            name,
            type: .timing,
            value: milliseconds,
            unit: "ms",
            tags: tags,
            correlationID: correlationID,
            agentID: agentID
        )
    }

    /// Records a count of events (unit `count`).
    @discardableResult
    public func recordCounter(
        _ name: String,
        count: Double = 1,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        agentID: String? = nil
    ) -> EmitResult {
        record(
            name,
            type: .counter,
            value: count,
            unit: "count",
            tags: tags,
            correlationID: correlationID,
            agentID: agentID
        )
    }

    /// Records a value that goes up and down, in `unit` (e.g. `KB`, `0-1`, `ratio`, `count`).
    @discardableResult
    public func recordGauge(
        _ name: String,
        value: Double,
        unit: String,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        agentID: String? = nil
    ) -> EmitResult {
        record(name, type: .gauge, value: value, unit: unit, tags: tags, correlationID: correlationID, agentID: agentID)
    }

    /// Records a percentage (unit `%`).
    @discardableResult
    public func recordRate(
        _ name: String,
        percent: Double,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        agentID: String? = nil
    ) -> EmitResult {
        record(name, type: .rate, value: percent, unit: "%", tags: tags, correlationID: correlationID, agentID: agentID)
    }

    /// Records a catalog metric with its own type and unit.
    @discardableResult
    public func record(
        _ definition: MetricDefinition,
        value: Double,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        agentID: String? = nil
    ) -> EmitResult {
        record(
            definition.name,
            type: definition.type,
            value: value,
            unit: definition.unit,
            tags: tags,
            correlationID: correlationID,
            agentID: agentID
        )
    }

    /// The general form: any name, type and unit.
    @discardableResult
    public func record(
        _ name: String,
        type: MetricType,
        value: Double,
        unit: String,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        agentID: String? = nil
    ) -> EmitResult {
        record(
            name,
            type: type,
            value: value,
            unit: unit,
            tags: tags,
            agentID: agentID,
            correlationID: correlationID,
            timestampNanos: nil
        )
    }

    // MARK: - Handles

    /// A handle for hot paths: name, type, unit, tags and agent resolved once; each `record` makes no allocation.
    public func handle(
        _ name: String,
        type: MetricType,
        unit: String,
        tags: [String: String] = [:],
        agentID: String? = nil
    ) throws(MetricsError) -> MetricHandle {
        guard log != nil else {
            return MetricHandle(collector: self, metric: 0, tagSet: 0, agent: 0, name: name, type: type)
        }
        switch resolve(name: name, type: type, unit: unit, tags: tags, agentID: agentID) {
        case .success(let ids):
            return MetricHandle(
                collector: self,
                metric: ids.metric,
                tagSet: ids.tagSet,
                agent: ids.agent,
                name: name,
                type: type
            )
        case .failure(let reason):
            _ = reject(reason)
            throw MetricsError(
                .invalidMetric,
                "cannot make a handle for \(name): \(reason.rawValue)",
                rejection: reason
            )
        }
    }

    /// A handle for a catalog metric.
    public func handle(
        _ definition: MetricDefinition,
        tags: [String: String] = [:],
        agentID: String? = nil
    )
        throws(MetricsError) -> MetricHandle
    {
        try handle(definition.name, type: definition.type, unit: definition.unit, tags: tags, agentID: agentID)
    }

    // MARK: - Timing helpers

    /// Runs `body` and records its duration as a timing, also when it throws.
    @discardableResult
    public func measure<T>(
        _ name: String,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        _ body: () throws -> T
    ) rethrows -> T {
        let started = monotonicNow()
        defer {
            recordTiming(
                name,
                milliseconds: elapsedMilliseconds(since: started),
                tags: tags,
                correlationID: correlationID
            )
        }
        return try body()
    }

    /// Runs async `body` and records its duration as a timing, also when it throws.
    @discardableResult
    public func measure<T>(
        _ name: String,
        tags: [String: String] = [:],
        correlationID: String? = nil,
        _ body: () async throws -> T
    ) async rethrows -> T {
        let started = monotonicNow()
        defer {
            recordTiming(
                name,
                milliseconds: elapsedMilliseconds(since: started),
                tags: tags,
                correlationID: correlationID
            )
        }
        return try await body()
    }

    /// A running timer for code that cannot be wrapped in a closure: call `stop()` on it.
    public func startTimer(_ name: String, tags: [String: String] = [:], correlationID: String? = nil) -> MetricTimer {
        MetricTimer(started: monotonicNow()) { [self] milliseconds, override in
            recordTiming(name, milliseconds: milliseconds, tags: tags, correlationID: override ?? correlationID)
        }
    }

    // MARK: - Durability

    /// Returns once everything recorded so far is sealed into segments, where shippers see it.
    public func flush(timeoutMilliseconds: Int = 5000) {
        log?.waitUntilSealed(timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Returns once everything recorded so far is on stable storage (survives power loss).
    public func sync() throws(MetricsError) {
        guard let log else { return }
        do { try log.sync() } catch { throw MetricsError(.io, "sync failed: \(error)") }
    }

    /// Seals everything and closes the log. Later emits return `.rejected(.logUnavailable)`.
    public func close() throws(MetricsError) {
        guard let log else { return }
        try? symbols?.withLock { state throws(MetricsError) in try state.writer.sync() }
        do { try log.close() } catch { throw MetricsError(.io, "close: \(error)") }
    }

    // MARK: - Statistics

    /// The collector's own counts. `emitted` and `dropped` come from the log (no cost on the emit path).
    public var statistics: MetricsStatistics {
        let log = self.log?.statistics
        let rejected = rejections.withLock { $0 }
        let symbolCount = symbols?.withLock { Int($0.count) } ?? 0
        return MetricsStatistics(
            emitted: log?.appended ?? 0,
            rejected: rejected,
            dropped: log?.dropped ?? 0,
            symbols: symbolCount,
            log: log
        )
    }

    // MARK: - Internals

    /// Resolves (interning as needed) the symbol ids of a call; validates what it sees for the first time.
    private func resolve(
        name: String,
        type: MetricType,
        unit: String,
        tags: [String: String],
        agentID: String?
    ) -> Result<(metric: UInt32, tagSet: UInt32, agent: UInt32), RejectionReason> {
        guard let symbols else { return .failure(.logUnavailable) }
        return symbols.withLock { state -> Result<(metric: UInt32, tagSet: UInt32, agent: UInt32), RejectionReason> in
            do throws(MetricsError) {
                let metric: UInt32
                if let known = state.metrics[name] {
                    guard known.type == type, known.unit == unit else { return .failure(.conflictingDefinition) }
                    metric = known.id
                } else {
                    guard Validation.isValidName(name) else { return .failure(.invalidName) }
                    // A catalog name keeps its catalog type and unit: recorded first as anything else, the log would
                    // refuse the design's own calls under that name for good.
                    if let definition = MetricCatalog.byName[name], definition.type != type || definition.unit != unit {
                        return .failure(.conflictingDefinition)
                    }
                    if let reason = Validation.checkUnit(unit) { return .failure(reason) }
                    let nameID = try state.string(name)
                    let unitID = try state.string(unit)
                    metric = try state.append(.metric(type: type, name: nameID, unit: unitID))
                    state.metrics[name] = (metric, type, unit)
                }
                var tagSet: UInt32 = 0
                if !tags.isEmpty {
                    if let known = state.tagSets[tags] {
                        tagSet = known
                    } else {
                        if let reason = Validation.checkTags(tags) { return .failure(reason) }
                        var pairs: [(key: UInt32, value: UInt32)] = []
                        for key in tags.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                            pairs.append((try state.string(key), try state.string(tags[key] ?? "")))
                        }
                        tagSet = try state.append(.tagSet(pairs))
                        state.tagSets[tags] = tagSet
                    }
                }
                var agent = defaultAgent
                if let agentID {
                    if let reason = Validation.checkID(agentID, reason: .invalidAgentID) { return .failure(reason) }
                    agent = try state.string(agentID)
                }
                return .success((metric, tagSet, agent))
            } catch {
                return .failure(error.code == .symbolTableFull ? .symbolTableFull : .logUnavailable)
            }
        }
    }

    /// The general form behind every record by name. `timestampNanos` gives an emit time of the caller's choosing
    /// instead of the wall clock: tests and tools that build a log with a known timeline.
    @discardableResult
    @inline(__always)
    package func record(
        _ name: String,
        type: MetricType,
        value: Double,
        unit: String,
        tags: [String: String] = [:],
        agentID: String? = nil,
        correlationID: String? = nil,
        timestampNanos: Int64?
    ) -> EmitResult {
        guard log != nil else { return .disabled }
        switch resolve(name: name, type: type, unit: unit, tags: tags, agentID: agentID) {
        case .success(let ids):
            return emit(
                metric: ids.metric,
                tagSet: ids.tagSet,
                agent: ids.agent,
                value: value,
                correlationID: correlationID,
                timestampNanos: timestampNanos
            )
        case .failure(let reason): return reject(reason)
        }
    }

    /// Encodes and appends one record, emitted now unless `timestampNanos` is given. No allocation.
    @inline(__always)
    func emit(
        metric: UInt32,
        tagSet: UInt32,
        agent: UInt32,
        value: Double,
        correlationID: String?,
        timestampNanos: Int64? = nil
    ) -> EmitResult {
        let correlation = RecordCodec.Correlation(correlationID)
        // A canonical UUID (36 bytes of hex digits and dashes) is a valid id: only other text is checked.
        if case .text(let text) = correlation, let reason = Validation.checkID(text, reason: .invalidCorrelationID) {
            return reject(reason)
        }
        return emit(
            metric: metric,
            tagSet: tagSet,
            agent: agent,
            value: value,
            correlation: correlation,
            timestampNanos: timestampNanos
        )
    }

    /// `emit` with the correlation id already checked.
    @inline(__always)
    func emit(
        metric: UInt32,
        tagSet: UInt32,
        agent: UInt32,
        value: Double,
        correlation: RecordCodec.Correlation,
        timestampNanos: Int64? = nil
    ) -> EmitResult {
        guard let appender else { return .disabled }
        guard value.isFinite else { return reject(.nonFiniteValue) }
        let timestamp = timestampNanos ?? wallClockNow()
        return withUnsafeTemporaryAllocation(byteCount: RecordCodec.maxSize, alignment: 8) { buffer -> EmitResult in
            let count = RecordCodec.encode(
                into: buffer.baseAddress!,
                metric: metric,
                tagSet: tagSet,
                agent: agent,
                timestampNanos: timestamp,
                value: value,
                correlation: correlation
            )
            let bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)
            return appender._withUnsafeGuaranteedRef { log -> EmitResult in
                do throws(WALError) {
                    return .recorded(seq: try log.append(bytes))
                } catch {
                    if error.code == .dropped { return .dropped(seq: error.seq ?? 0) }
                    return reject(.logUnavailable)
                }
            }
        }
    }

    /// Records `value` for a handle of this collector given by its ids (`MetricHandle.ids`), with a UUID
    /// correlation id as its two big-endian halves. Makes no heap allocation.
    @inline(__always)
    package func record(
        _ ids: MetricHandle.IDs,
        value: Double,
        correlationUUID: (high: UInt64, low: UInt64)
    ) -> EmitResult {
        emit(
            metric: ids.metric,
            tagSet: ids.tagSet,
            agent: ids.agent,
            value: value,
            correlation: .uuid(correlationUUID.high, correlationUUID.low)
        )
    }

    @inline(never)
    func reject(_ reason: RejectionReason) -> EmitResult {
        rejections.withLock { $0[reason, default: 0] += 1 }
        return .rejected(reason)
    }
}

/// The collector's counts.
public struct MetricsStatistics: Sendable, Equatable {
    /// Records written to the log.
    public var emitted: UInt64
    /// Refused emits, by reason.
    public var rejected: [RejectionReason: UInt64]
    /// Records dropped by the log's whenFull policy (each covered by a gap marker in the log).
    public var dropped: UInt64
    /// Entries in the symbol table.
    public var symbols: Int
    /// The log's own counters.
    public var log: WALStatistics?

    public var rejectedTotal: UInt64 { rejected.values.reduce(0, +) }
}

/// A metric with its name, type, unit, tags and agent resolved: each `record` is an encode and an append.
public struct MetricHandle: Sendable {
    let collector: MetricsCollector
    let metric: UInt32
    let tagSet: UInt32
    let agent: UInt32
    public let name: String
    public let type: MetricType

    init(collector: MetricsCollector, metric: UInt32, tagSet: UInt32, agent: UInt32, name: String, type: MetricType) {
        self.collector = collector
        self.metric = metric
        self.tagSet = tagSet
        self.agent = agent
        self.name = name
        self.type = type
    }

    /// Records `value` (milliseconds for a timing, a percentage for a rate). Makes no heap allocation.
    @discardableResult
    @inline(__always)
    public func record(_ value: Double, correlationID: String? = nil) -> EmitResult {
        collector.emit(metric: metric, tagSet: tagSet, agent: agent, value: value, correlationID: correlationID)
    }

    /// The symbol ids a handle stands for, for callers that keep many handles of one collector and want no
    /// reference counting per record (see `MetricsCollector.record(_:value:correlationUUID:)`).
    package struct IDs: Sendable {
        let metric: UInt32
        let tagSet: UInt32
        let agent: UInt32
    }

    package var ids: IDs { IDs(metric: metric, tagSet: tagSet, agent: agent) }

    /// Records `value` with a UUID correlation id given as its two big-endian halves (what the text
    /// `8-4-4-4-12` spells, most significant first): no parsing. Makes no heap allocation.
    @discardableResult
    @inline(__always)
    package func record(_ value: Double, correlationUUID: (high: UInt64, low: UInt64)) -> EmitResult {
        collector.emit(
            metric: metric,
            tagSet: tagSet,
            agent: agent,
            value: value,
            correlation: .uuid(correlationUUID.high, correlationUUID.low)
        )
    }

    /// Runs `body` and records its duration in milliseconds, also when it throws.
    @discardableResult
    public func measure<T>(correlationID: String? = nil, _ body: () throws -> T) rethrows -> T {
        let started = monotonicNow()
        defer { record(elapsedMilliseconds(since: started), correlationID: correlationID) }
        return try body()
    }

    /// Runs async `body` and records its duration in milliseconds, also when it throws.
    @discardableResult
    public func measure<T>(correlationID: String? = nil, _ body: () async throws -> T) async rethrows -> T {
        let started = monotonicNow()
        defer { record(elapsedMilliseconds(since: started), correlationID: correlationID) }
        return try await body()
    }

    /// A running timer recording into this handle on `stop()`.
    public func startTimer(correlationID: String? = nil) -> MetricTimer {
        MetricTimer(started: monotonicNow()) { [self] milliseconds, override in
            record(milliseconds, correlationID: override ?? correlationID)
        }
    }
}

/// A started timing. `stop()` records the elapsed milliseconds once; later calls do nothing.
public final class MetricTimer: Sendable {
    let started: UInt64
    private let recorder: @Sendable (Double, String?) -> EmitResult
    private let stopped = Atomic<Bool>(false)

    init(started: UInt64, recorder: @escaping @Sendable (Double, String?) -> EmitResult) {
        self.started = started
        self.recorder = recorder
    }

    /// Records the time since the timer started. Returns nil when it was already stopped.
    @discardableResult
    public func stop(correlationID: String? = nil) -> EmitResult? {
        guard !stopped.exchange(true, ordering: .relaxed) else { return nil }
        return recorder(elapsedMilliseconds(since: started), correlationID)
    }

    /// Milliseconds since the timer started.
    public var elapsed: Double { elapsedMilliseconds(since: started) }
}

@inline(__always)
func monotonicNow() -> UInt64 { monotonicNanos() }

@inline(__always)
func wallClockNow() -> Int64 { Int64(bitPattern: wallClockNanos()) }

@inline(__always)
func elapsedMilliseconds(since started: UInt64) -> Double {
    Double(monotonicNanos() &- started) / 1_000_000
}
