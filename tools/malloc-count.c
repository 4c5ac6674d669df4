// LD_PRELOAD counter of allocation calls (malloc, calloc, realloc, aligned_alloc, posix_memalign) of a process, all
// threads; prints "mallocs N" to stderr at exit. Built and used by tools/bench-postgres.sh --allocations.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static atomic_ulong calls;
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
void *malloc(size_t n) { atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed); return __libc_realloc(p, n); }
void *aligned_alloc(size_t a, size_t n) { atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;
}
__attribute__((destructor)) static void report(void) {
    char line[64];
    int len = snprintf(line, sizeof line, "mallocs %lu\n", (unsigned long)atomic_load(&calls));
    write(2, line, len);
}
