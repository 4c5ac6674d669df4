#include "CWALSupport.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>

// MARK: - CRC32C, software

static uint32_t crc32c_table[8][256];
static int crc32c_table_ready = 0;

static void crc32c_init_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
        }
        crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc32c_table[0][c & 0xff] ^ (c >> 8);
            crc32c_table[k][n] = c;
        }
    }
    __atomic_store_n(&crc32c_table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_software(uint32_t crc, const unsigned char *p, size_t n) {
    if (!__atomic_load_n(&crc32c_table_ready, __ATOMIC_ACQUIRE)) {
        crc32c_init_table();
    }
    crc = ~crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = crc32c_table[7][word & 0xff] ^ crc32c_table[6][(word >> 8) & 0xff] ^
              crc32c_table[5][(word >> 16) & 0xff] ^ crc32c_table[4][(word >> 24) & 0xff] ^
              crc32c_table[3][(word >> 32) & 0xff] ^ crc32c_table[2][(word >> 40) & 0xff] ^
              crc32c_table[1][(word >> 48) & 0xff] ^ crc32c_table[0][word >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

// MARK: - CRC32C, SSE4.2

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hardware(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return ~c32;
}
#endif

typedef uint32_t (*crc32c_fn)(uint32_t, const unsigned char *, size_t);
static crc32c_fn crc32c_impl = 0;

static crc32c_fn crc32c_select(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        return crc32c_hardware;
    }
#endif
    return crc32c_software;
}

uint32_t walsupport_crc32c(uint32_t crc, const void *bytes, size_t length) {
    crc32c_fn fn = __atomic_load_n(&crc32c_impl, __ATOMIC_RELAXED);
    if (fn == 0) {
        fn = crc32c_select();
        __atomic_store_n(&crc32c_impl, fn, __ATOMIC_RELAXED);
    }
    return fn(crc, (const unsigned char *)bytes, length);
}

int walsupport_crc32c_is_hardware(void) {
#if defined(__x86_64__)
    return crc32c_select() == crc32c_hardware;
#else
    return 0;
#endif
}

// MARK: - fallocate

int walsupport_fallocate(int fd, off_t offset, off_t length) {
    return fallocate(fd, 0, offset, length);
}

// MARK: - Thread names

void walsupport_set_thread_name(pthread_t thread, const char *name) {
    pthread_setname_np(thread, name);
}
