import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A fault-injection point under every system call the log makes that can change or lose data, in the manner of
/// SQLite's test VFS: a test arms it to make the Nth such call fail with an errno (ENOSPC, EIO, EINTR...) or to
/// kill the process at that call, then walks N over every call of a scenario and checks the log's invariants after
/// each failure and after a restart.
///
/// Unarmed (the normal state), each call costs one relaxed atomic load. Thread-safe; process-wide.
@_spi(Testing) public enum FaultInjection {
    /// The system calls that pass through the injection point.
    public enum Call: String, Sendable, CaseIterable {
        case open, write, fallocate, ftruncate, fsync, fdatasync, msync, rename, link, unlink, mkdir, mmap
    }

    /// What happens at the armed call.
    public enum Fault: Sendable, Equatable {
        /// The call fails with this errno and does nothing.
        case fail(Errno)
        /// The process is killed with SIGKILL just before the call (nothing of it happens).
        case kill
    }

    private struct Plan {
        var target: Int
        var fault: Fault
        var only: Set<Call>?
        var trace: Bool
        var repeating: Bool
    }

    private static let armed = Atomic<Bool>(false)
    private static let counted = Atomic<Int>(0)
    private static let plan = Mutex<Plan?>(nil)
    private static let traceLog = Mutex<[Call]>([])

    /// Makes the `n`th call (from 1, counted from now, among `calls` when given) fail with `fault`; the calls before
    /// and after it go through. `n` = 0 only counts (see `callCount`), which is how a sweep learns its length.
    /// With `repeating`, every call from the `n`th on fails (a disk that stays full), until `disarm`.
    public static func arm(
        at n: Int,
        _ fault: Fault,
        calls: Set<Call>? = nil,
        trace: Bool = false,
        repeating: Bool = false
    ) {
        counted.store(0, ordering: .sequentiallyConsistent)
        traceLog.withLock { $0.removeAll() }
        plan.withLock { $0 = Plan(target: n, fault: fault, only: calls, trace: trace, repeating: repeating) }
        armed.store(true, ordering: .sequentiallyConsistent)
    }

    /// Stops injecting; calls go through unobserved again.
    public static func disarm() {
        armed.store(false, ordering: .sequentiallyConsistent)
        plan.withLock { $0 = nil }
    }

    /// Calls counted since `arm`.
    public static var callCount: Int { counted.load(ordering: .sequentiallyConsistent) }

    /// The calls counted since `arm(trace: true)`, in order.
    public static var trace: [Call] { traceLog.withLock { $0 } }

    /// Arms from a specification such as `17:kill`, `3:ENOSPC`, `5:EIO`, `2:EINTR`, optionally restricted to calls:
    /// `4:EIO:write,fdatasync`. Returns false (and arms nothing) when the text does not parse. Used by test child
    /// processes through the `WALCTL_FAULT_INJECTION` environment variable of `walctl`.
    public static func arm(specification: String) -> Bool {
        let parts = specification.split(separator: ":").map(String.init)
        guard parts.count >= 2, let n = Int(parts[0]), n >= 0 else { return false }
        let fault: Fault
        switch parts[1].uppercased() {
        case "KILL": fault = .kill
        case "ENOSPC": fault = .fail(.noSpace)
        case "EIO": fault = .fail(.ioError)
        case "EINTR": fault = .fail(.interrupted)
        case "EDQUOT": fault = .fail(.diskQuotaExceeded)
        default: return false
        }
        var calls: Set<Call>?
        if parts.count >= 3 {
            var set = Set<Call>()
            for name in parts[2].split(separator: ",") {
                guard let call = Call(rawValue: String(name)) else { return false }
                set.insert(call)
            }
            calls = set
        }
        arm(at: n, fault, calls: calls)
        return true
    }

    /// The injection point: returns the errno the call must fail with, or nil to let it proceed.
    @inline(__always)
    package static func check(_ call: Call) -> Errno? {
        guard _slowPath(armed.load(ordering: .relaxed)) else { return nil }
        return checkArmed(call)
    }

    private static func checkArmed(_ call: Call) -> Errno? {
        let decision: Fault? = plan.withLock { plan in
            guard let current = plan else { return nil }
            if let only = current.only, !only.contains(call) { return nil }
            let n = counted.add(1, ordering: .sequentiallyConsistent).newValue
            if current.trace { traceLog.withLock { $0.append(call) } }
            let hit = current.repeating ? current.target > 0 && n >= current.target : n == current.target
            return hit ? current.fault : nil
        }
        switch decision {
        case nil: return nil
        case .kill:
            Glibc.kill(getpid(), SIGKILL)
            while true { pause() }
        case .fail(let error): return error
        }
    }
}

/// Runs `body` unless the injection point says the call fails; then sets errno and returns -1, like the C call.
@inline(__always)
func injectable<I: FixedWidthInteger>(_ call: FaultInjection.Call, _ body: () -> I) -> I {
    if let error = FaultInjection.check(call) {
        errno = error.rawValue
        return -1
    }
    return body()
}
