// The few things WALCore needs that Swift cannot see or cannot do fast.
//
// - CRC32C (Castagnoli): the checksum of every on-disk structure. Swift has no
//   access to the SSE4.2 `crc32` instruction, so it lives here, with a portable
//   table-driven fallback chosen once at run time.
// - fallocate(2): glibc only declares it under _GNU_SOURCE, which Swift's Glibc
//   module does not define. We need the real call (not posix_fallocate's
//   write-zeroes emulation) to learn about ENOSPC up front.
//
// All names are prefixed `walsupport_`.
#ifndef CWALSUPPORT_H
#define CWALSUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Extends `crc` (a finished CRC32C value; 0 to start) over `length` bytes.
/// `walsupport_crc32c(walsupport_crc32c(0, a), b) == walsupport_crc32c(0, a ++ b)`.
uint32_t walsupport_crc32c(uint32_t crc, const void *bytes, size_t length);

/// 1 when the hardware (SSE4.2) implementation is in use, 0 for the table fallback.
int walsupport_crc32c_is_hardware(void);

/// fallocate(fd, 0, offset, length). Returns 0, or -1 with errno set
/// (ENOSPC when the file system is full, EOPNOTSUPP when it cannot preallocate).
int walsupport_fallocate(int fd, off_t offset, off_t length);

/// Names the thread (at most 15 characters), for ps/top/gdb. pthread_setname_np is _GNU_SOURCE-only.
void walsupport_set_thread_name(pthread_t thread, const char *name);

/// A spin-wait hint to the CPU (x86 `pause`): lets a sibling hyperthread run and saves power while spinning.
static inline void walsupport_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Whether `mutex` looks taken, by a plain load of glibc's lock word (no write, so spinning on it does not take the
/// cache line from the holder). A hint only; elsewhere than glibc it always says free and the caller just tries.
static inline int walsupport_mutex_looks_locked(pthread_mutex_t *mutex) {
#if defined(__GLIBC__)
    return __atomic_load_n(&mutex->__data.__lock, __ATOMIC_RELAXED) != 0;
#else
    (void)mutex;
    return 0;
#endif
}

#ifdef __cplusplus
}
#endif

#endif
