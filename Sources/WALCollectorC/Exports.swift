import CWALCollector
import WALCore
import WALMetrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The functions of walctl.h. Each converts its C arguments, calls the Swift collector, and maps the outcome to a
// walctl_status; none throws or traps on bad input (NULL pointers are WALCTL_E_ARGUMENT). Pointers received are
// only read during the call.

// MARK: - Version, status names, last error

@_cdecl("walctl_version")
public func walctlVersionString() -> UnsafePointer<CChar> { StaticStrings.version }

@_cdecl("walctl_abi_version")
public func walctlABIVersion() -> Int32 { abiVersion }

@_cdecl("walctl_status_name")
public func walctlStatusName(_ status: Int32) -> UnsafePointer<CChar> {
    StaticStrings.statusNames[status] ?? StaticStrings.unknown
}

@_cdecl("walctl_last_error")
public func walctlLastError() -> UnsafePointer<CChar> { LastError.pointer }

// MARK: - Open, close

@_cdecl("walctl_open")
public func walctlOpen(
    _ directory: UnsafePointer<CChar>?,
    _ agentID: UnsafePointer<CChar>?,
    _ settings: UnsafePointer<UnsafePointer<CChar>?>?,
    _ settingsCount: Int,
    _ useEnvironment: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let out, settingsCount == 0 || settings != nil else {
        return fail(Status.argument, "walctl_open: out is NULL, or settings is NULL with a count")
    }
    _ = ForkGeneration.installed
    var environment = useEnvironment != 0 ? currentEnvironment() : [:]
    for index in 0..<settingsCount {
        guard let entry = settings?[index] else {
            return fail(Status.argument, "walctl_open: settings[\(index)] is NULL")
        }
        let text = String(cString: entry)
        guard let equals = text.firstIndex(of: "="), text.hasPrefix("METRICS_") else {
            return fail(Status.configuration, "walctl_open: setting \(text) is not METRICS_NAME=value")
        }
        environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
    }
    if let directory { environment["METRICS_DIR"] = String(cString: directory) }
    if let agentID { environment["METRICS_AGENT_ID"] = String(cString: agentID) }
    do throws(MetricsError) {
        let configuration = try MetricsConfiguration.fromEnvironment(environment)
        let collector = try MetricsCollector(configuration: configuration)
        out.pointee = OpaquePointer(Unmanaged.passRetained(CollectorBox(collector: collector)).toOpaque())
        return Status.ok
    } catch {
        let status = error.code == .invalidConfiguration ? Status.configuration : Status.io
        return fail(status, error.message)
    }
}

@_cdecl("walctl_may_block")
public func walctlMayBlock(_ collector: OpaquePointer?) -> Int32 {
    guard let box = collectorBox(collector) else { return 0 }
    return box.mayBlock ? 1 : 0
}

@_cdecl("walctl_close")
public func walctlClose(_ collector: OpaquePointer?) -> Int32 {
    guard let box = collectorBox(collector) else { return fail(Status.argument, "walctl_close: collector is NULL") }
    guard box.isOwnedByThisProcess else { return forked() }
    guard !box.closed.exchange(true, ordering: .acquiringAndReleasing) else { return Status.ok }
    do throws(MetricsError) { try box.collector.close() } catch { return fail(Status.io, error.message) }
    return Status.ok
}

@_cdecl("walctl_release")
public func walctlRelease(_ collector: OpaquePointer?) {
    guard let collector, let box = collectorBox(collector) else { return }
    // In a child process the log is the parent's: neither close it nor run deinitializers that touch it.
    guard box.isOwnedByThisProcess else { return }
    _ = walctlClose(collector)
    Unmanaged<CollectorBox>.fromOpaque(UnsafeRawPointer(collector)).release()
}

// MARK: - Recording

@_cdecl("walctl_record")
public func walctlRecord(
    _ collector: OpaquePointer?,
    _ type: Int32,
    _ name: walctl_string,
    _ value: Double,
    _ unit: walctl_string,
    _ tagKeys: UnsafePointer<walctl_string>?,
    _ tagValues: UnsafePointer<walctl_string>?,
    _ tagCount: Int,
    _ correlationID: walctl_string,
    _ agentID: walctl_string,
    _ seqOut: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    guard let box = collectorBox(collector) else { return fail(Status.argument, "walctl_record: collector is NULL") }
    guard box.isOwnedByThisProcess else { return forked() }
    guard let metricType = metricType(type) else { return invalidType(type) }
    guard let tags = tags(tagKeys, tagValues, tagCount) else {
        return fail(Status.argument, "walctl_record: tag_count \(tagCount) without tag arrays")
    }
    let result = box.collector.record(
        string(name) ?? "",
        type: metricType,
        value: value,
        unit: string(unit) ?? "",
        tags: tags,
        correlationID: string(correlationID),
        agentID: string(agentID)
    )
    return status(of: result, seqOut, name: name)
}

@_cdecl("walctl_handle_open")
public func walctlHandleOpen(
    _ collector: OpaquePointer?,
    _ type: Int32,
    _ name: walctl_string,
    _ unit: walctl_string,
    _ tagKeys: UnsafePointer<walctl_string>?,
    _ tagValues: UnsafePointer<walctl_string>?,
    _ tagCount: Int,
    _ agentID: walctl_string,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guard let box = collectorBox(collector), let out else {
        return fail(Status.argument, "walctl_handle_open: collector or out is NULL")
    }
    guard box.isOwnedByThisProcess else { return forked() }
    guard let metricType = metricType(type) else { return invalidType(type) }
    guard let tags = tags(tagKeys, tagValues, tagCount) else {
        return fail(Status.argument, "walctl_handle_open: tag_count \(tagCount) without tag arrays")
    }
    do throws(MetricsError) {
        let handle = try box.collector.handle(
            string(name) ?? "",
            type: metricType,
            unit: string(unit) ?? "",
            tags: tags,
            agentID: string(agentID)
        )
        out.pointee = OpaquePointer(Unmanaged.passRetained(HandleBox(handle: handle, owner: box)).toOpaque())
        return Status.ok
    } catch {
        let code = error.rejection.map(Status.code) ?? Status.code(.logUnavailable)
        return fail(code, error.message)
    }
}

@_cdecl("walctl_handle_record")
public func walctlHandleRecord(
    _ handle: OpaquePointer?,
    _ value: Double,
    _ correlationID: walctl_string,
    _ seqOut: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    guard let handle else { return fail(Status.argument, "walctl_handle_record: handle is NULL") }
    let box = Unmanaged<HandleBox>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    guard box.owner.isOwnedByThisProcess else { return forked() }
    let result = box.handle.record(value, correlationID: string(correlationID))
    return status(of: result, seqOut, name: walctl_string(data: nil, length: 0), metric: box.handle.name)
}

@_cdecl("walctl_handle_release")
public func walctlHandleRelease(_ handle: OpaquePointer?) {
    guard let handle else { return }
    let box = Unmanaged<HandleBox>.fromOpaque(UnsafeRawPointer(handle))
    guard box.takeUnretainedValue().owner.isOwnedByThisProcess else { return }
    box.release()
}

// MARK: - Durability, statistics

@_cdecl("walctl_flush")
public func walctlFlush(_ collector: OpaquePointer?, _ timeoutMilliseconds: Int32) -> Int32 {
    guard let box = collectorBox(collector) else { return fail(Status.argument, "walctl_flush: collector is NULL") }
    guard box.isOwnedByThisProcess else { return forked() }
    box.collector.flush(timeoutMilliseconds: Int(max(0, timeoutMilliseconds)))
    return Status.ok
}

@_cdecl("walctl_sync")
public func walctlSync(_ collector: OpaquePointer?) -> Int32 {
    guard let box = collectorBox(collector) else { return fail(Status.argument, "walctl_sync: collector is NULL") }
    guard box.isOwnedByThisProcess else { return forked() }
    do throws(MetricsError) { try box.collector.sync() } catch { return fail(Status.io, error.message) }
    return Status.ok
}

@_cdecl("walctl_stats_get")
public func walctlStatsGet(_ collector: OpaquePointer?, _ out: UnsafeMutablePointer<walctl_stats>?) -> Int32 {
    guard let box = collectorBox(collector), let out else {
        return fail(Status.argument, "walctl_stats_get: collector or out is NULL")
    }
    let statistics = box.collector.statistics
    out.pointee = walctl_stats(
        emitted: statistics.emitted,
        rejected: statistics.rejectedTotal,
        dropped: statistics.dropped,
        symbols: UInt64(statistics.symbols)
    )
    return Status.ok
}

// MARK: - Conversions

@inline(__always)
private func collectorBox(_ pointer: OpaquePointer?) -> CollectorBox? {
    guard let pointer else { return nil }
    return Unmanaged<CollectorBox>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
}

/// The Swift string of a `walctl_string` (invalid UTF-8 repaired), nil when absent.
@inline(__always)
private func string(_ text: walctl_string) -> String? {
    guard let data = text.data else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: data, count: text.length), as: UTF8.self)
}

/// The tags of parallel arrays; nil when a count comes without arrays. A repeated key keeps its last value.
@inline(__always)
private func tags(
    _ keys: UnsafePointer<walctl_string>?,
    _ values: UnsafePointer<walctl_string>?,
    _ count: Int
) -> [String: String]? {
    guard count > 0 else { return [:] }
    guard let keys, let values else { return nil }
    var tags = [String: String](minimumCapacity: count)
    for index in 0..<count {
        tags[string(keys[index]) ?? ""] = string(values[index]) ?? ""
    }
    return tags
}

@inline(__always)
private func metricType(_ code: Int32) -> MetricType? {
    guard code >= 0, code <= 3 else { return nil }
    return MetricType(rawValue: UInt8(code))
}

private func status(
    of result: EmitResult,
    _ seqOut: UnsafeMutablePointer<UInt64>?,
    name: walctl_string,
    metric: String? = nil
) -> Int32 {
    switch result {
    case .recorded(let seq):
        seqOut?.pointee = seq
        return Status.ok
    case .dropped(let seq):
        seqOut?.pointee = seq
        LastError.set(static: StaticStrings.dropped)
        return Status.dropped
    case .disabled:
        return Status.disabled
    case .rejected(let reason):
        return fail(Status.code(reason), "\(reason.rawValue): metric \(metric ?? string(name) ?? "") refused")
    }
}

@inline(never)
private func invalidType(_ code: Int32) -> Int32 {
    fail(Status.invalidType, "invalid_type: \(code) is not a metric type (0 timing, 1 counter, 2 gauge, 3 rate)")
}

@inline(never)
private func forked() -> Int32 {
    fail(
        Status.forked,
        "forked: this collector was opened by the parent process; a child process must open its own collector "
            + "in its own directory"
    )
}

@inline(never)
private func fail(_ status: Int32, _ message: String) -> Int32 {
    LastError.set(message)
    return status
}
