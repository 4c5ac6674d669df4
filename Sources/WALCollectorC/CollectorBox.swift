import CWALCollector
import Synchronization
import WALCore
import WALMetrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - Owned objects behind the opaque pointers

/// What a `walctl_collector *` points to (retained with `Unmanaged`; released by `walctl_release`).
final class CollectorBox: Sendable {
    let collector: MetricsCollector
    /// `ForkGeneration.current` when opened: a different value means this process is a child of the opener.
    let generation: Int
    /// A record call may wait (whenFull `block`, or `sync` durability).
    let mayBlock: Bool
    let closed = Atomic<Bool>(false)

    init(collector: MetricsCollector) {
        self.collector = collector
        self.generation = ForkGeneration.current
        let log = collector.configuration.log
        var blocks = log.durability == .synchronous
        if case .block(let milliseconds) = log.whenFull, milliseconds > 0 { blocks = true }
        self.mayBlock = collector.configuration.enabled && blocks
    }

    /// False (and the last error set) in a child process of the opener.
    @inline(__always)
    var isOwnedByThisProcess: Bool { generation == ForkGeneration.current }
}

/// What a `walctl_handle *` points to. It keeps its collector alive.
final class HandleBox: Sendable {
    let handle: MetricHandle
    let owner: CollectorBox

    init(handle: MetricHandle, owner: CollectorBox) {
        self.handle = handle
        self.owner = owner
    }
}

// MARK: - fork()

/// Counts the forks this process descends from (0 in the process that loaded the library), so that a collector
/// inherited through `fork()` is recognised by one atomic load per call (`getpid` is a system call).
enum ForkGeneration {
    private static let counter = Atomic<Int>(0)

    /// Installed once, before the first collector opens.
    static let installed: Bool = {
        pthread_atfork(nil, nil, { ForkGeneration.counter.add(1, ordering: .relaxed) }) == 0
    }()

    @inline(__always)
    static var current: Int { counter.load(ordering: .relaxed) }
}

// MARK: - Last error, per thread

/// The message of the last failed call on each thread: a `malloc`ed C string under one pthread key, or a static one
/// (no allocation: a drop on a full log costs no `strdup`) under another.
enum LastError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()
    private static let staticKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static func set(_ message: String) {
        let copy = strdup(message)
        free(pthread_getspecific(key))
        pthread_setspecific(key, copy)
    }

    /// A message that lives as long as the process (one of `StaticStrings`).
    static func set(static message: UnsafePointer<CChar>) {
        if let stored = pthread_getspecific(key) {
            free(stored)
            pthread_setspecific(key, nil)
        }
        pthread_setspecific(staticKey, message)
    }

    static var pointer: UnsafePointer<CChar> {
        if let stored = pthread_getspecific(key) { return UnsafePointer(stored.assumingMemoryBound(to: CChar.self)) }
        if let message = pthread_getspecific(staticKey) {
            return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
        }
        return StaticStrings.empty
    }
}

// MARK: - Static C strings

/// C strings that live as long as the process (returned by `walctl_version` and `walctl_status_name`). Written once
/// by the lazy initializer, never again, so sharing them across threads is safe.
enum StaticStrings {
    nonisolated(unsafe) static let version = UnsafePointer(strdup("walctl \(walctlVersion) (abi \(abiVersion))")!)
    nonisolated(unsafe) static let empty = UnsafePointer(strdup("")!)
    nonisolated(unsafe) static let unknown = UnsafePointer(strdup("unknown")!)
    nonisolated(unsafe) static let dropped = UnsafePointer(
        strdup("dropped: the log is full (METRICS_WHEN_FULL); a gap marker records the loss")!
    )
    nonisolated(unsafe) static let statusNames: [Int32: UnsafePointer<CChar>] = {
        var names: [Int32: UnsafePointer<CChar>] = [:]
        for status in Status.allNamed { names[status.code] = UnsafePointer(strdup(status.name)!) }
        return names
    }()
}

/// The library's version and `WALCTL_ABI_VERSION`.
let walctlVersion = "0.1.0"
let abiVersion: Int32 = 1
