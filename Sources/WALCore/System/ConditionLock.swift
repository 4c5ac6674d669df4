import CWALSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex with one condition variable on the monotonic clock.
///
/// Uncontended lock/unlock is two atomic operations and no system call. Used where waiting is needed
/// (full staging area, group commit, the sealer's wake-ups); everything else uses it as a plain mutex.
final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        // Adaptive: a thread that finds the mutex taken spins briefly before it sleeps in the kernel. The append
        // lock is held for a copy (tens of nanoseconds); sleeping and being woken costs tens of microseconds on a
        // busy machine, which was the tail of two appending threads (glibc's PTHREAD_MUTEX_ADAPTIVE_NP, 3, is
        // hidden from Swift with _GNU_SOURCE).
        var mutexAttributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&mutexAttributes)
        pthread_mutexattr_settype(&mutexAttributes, 3)
        pthread_mutex_init(mutex, &mutexAttributes)
        pthread_mutexattr_destroy(&mutexAttributes)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    /// Takes the mutex for a section of tens of nanoseconds (an append): when it is taken, spins (reading the lock
    /// word, trying when it looks free) for up to 20 µs before sleeping in the kernel. glibc's adaptive mutex gives
    /// up after about 100 spins; a thread that then sleeps is woken by a futex wake that, on a virtual machine, can
    /// take tens of microseconds, though the holder let go long before. Measured on 2 virtual CPUs with two threads
    /// appending at 1M records/s: p99.9 from 11-24 µs to 3.8-6.6 µs, the floor's in the same runs (README).
    @inline(__always)
    func lockSpinning() {
        if pthread_mutex_trylock(mutex) == 0 { return }
        lockSpinningSlowly()
    }

    @inline(never)
    private func lockSpinningSlowly() {
        let deadline = monotonicNanos() + 20_000
        repeat {
            for _ in 0..<64 {
                walsupport_cpu_relax()
                if walsupport_mutex_looks_locked(mutex) == 0 && pthread_mutex_trylock(mutex) == 0 { return }
            }
        } while monotonicNanos() < deadline
        pthread_mutex_lock(mutex)
    }

    @inline(__always)
    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (lock held) until signalled or until the monotonic deadline; returns false on timeout.
    @discardableResult
    func wait(untilMonotonicNanos deadline: UInt64) -> Bool {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &ts) == 0
    }

    /// Waits (lock held) until signalled.
    func wait() { pthread_cond_wait(condition, mutex) }

    func broadcast() { pthread_cond_broadcast(condition) }
}

/// A wake-up for one waiting thread that is never lost: `wake()` before `wait` makes the next `wait` return at once.
///
/// It has its own mutex, so that a thread can be woken without holding (or waiting for) any other lock: the writer's
/// appenders wake the sealer after releasing the append lock, and the sealer sleeps without holding it.
final class WakeSignal: @unchecked Sendable {
    private let lock = ConditionLock()
    private var pending = false

    /// Makes the current or next `wait` return. A system call (futex wake) only when a thread is waiting.
    func wake() {
        lock.lock()
        pending = true
        lock.broadcast()
        lock.unlock()
    }

    /// Returns when woken (since the last return) or at the monotonic deadline, whichever is first.
    func wait(untilMonotonicNanos deadline: UInt64) {
        lock.lock()
        while !pending {
            if !lock.wait(untilMonotonicNanos: deadline) && monotonicNanos() >= deadline { break }
        }
        pending = false
        lock.unlock()
    }
}

/// Starts a detached-from-the-cooperative-pool OS thread running `body`; returns a handle to join it.
package final class OSThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: () -> Void

    private init(body: @escaping () -> Void) { self.body = body }

    package static func start(name: String, _ body: @escaping () -> Void) -> OSThread {
        let handle = OSThread(body: body)
        let context = Unmanaged.passRetained(handle).toOpaque()
        pthread_create(
            &handle.thread,
            nil,
            { raw in
                guard let raw else { return nil }
                let handle = Unmanaged<OSThread>.fromOpaque(raw).takeRetainedValue()
                handle.body()
                return nil
            },
            context
        )
        walsupport_set_thread_name(handle.thread, String(name.prefix(15)))
        return handle
    }

    package func join() { pthread_join(thread, nil) }

    /// Lets the thread end on its own, without a join.
    package func detach() { pthread_detach(thread) }
}
