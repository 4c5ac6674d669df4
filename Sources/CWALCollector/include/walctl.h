/*
 * walctl.h: the C interface of the walctl metrics collector (libwalctl_c.so).
 *
 * A collector appends metric records to a durable walctl log (an mmap'd, LZ4-compressed segment log); when a record
 * call returns WALCTL_OK the record survives the process being killed (and power loss with METRICS_DURABILITY=sync).
 * `walctl ship` and `walctl inspect` read the log. This header is the whole interface: plain C, no Swift types.
 *
 * Threads: every function may be called from any thread, concurrently, on the same collector or handle, except
 * walctl_release / walctl_handle_release, which must be the last call made with their pointer.
 *
 * Strings: passed as walctl_string (pointer and byte length, UTF-8, not NUL-terminated; an embedded NUL is
 * refused with WALCTL_REJECTED_NUL_CHARACTER; invalid UTF-8 is repaired to U+FFFD). A walctl_string whose data is
 * NULL means "absent" (no correlation id, the collector's agent id). Every string and array a call receives is only
 * read during the call: the caller keeps ownership and may free it as soon as the call returns.
 *
 * Results: each call returns a walctl_status. WALCTL_OK (0) and WALCTL_DROPPED / WALCTL_DISABLED are the outcomes
 * of a well-formed record; the WALCTL_REJECTED_* codes are the Swift collector's RejectionReasons (nothing is
 * written); negative codes are errors of the call itself. walctl_last_error() then describes the failure.
 *
 * fork(): a collector belongs to the process that opened it. In a child process every call with an inherited
 * collector or handle returns WALCTL_E_FORKED and writes nothing (the child opens its own collector, in its own
 * directory; two processes never write one log). Releasing an inherited collector in the child frees nothing.
 *
 * Link: the library carries the Swift runtime (built with --static-swift-stdlib); at run time it needs only the C
 * library and liblz4 (Debian: liblz4-1).
 */
#ifndef WALCTL_H
#define WALCTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface: bumped on any incompatible change. */
#define WALCTL_ABI_VERSION 1

/* A UTF-8 string by pointer and length. data == NULL: absent. */
typedef struct walctl_string {
    const char *data;
    size_t length;
} walctl_string;

/* Opaque: a collector writing one log directory. */
typedef struct walctl_collector walctl_collector;
/* Opaque: a metric with its name, type, unit, tags and agent resolved once (the fast path). */
typedef struct walctl_handle walctl_handle;

/* The four metric types of the design. */
typedef enum walctl_metric_type {
    WALCTL_TIMING = 0,  /* a duration in milliseconds (unit "ms") */
    WALCTL_COUNTER = 1, /* a count of events (unit "count") */
    WALCTL_GAUGE = 2,   /* a value that goes up and down */
    WALCTL_RATE = 3,    /* a percentage (unit "%") */
} walctl_metric_type;

typedef enum walctl_status {
    WALCTL_OK = 0,       /* recorded; *seq_out is its sequence number in the log */
    WALCTL_DROPPED = 1,  /* the log is full and METRICS_WHEN_FULL dropped it (a gap marker records the loss) */
    WALCTL_DISABLED = 2, /* METRICS_ENABLED=false: nothing is written */

    /* Rejections: the Swift collector's RejectionReason, nothing written, counted in walctl_stats. */
    WALCTL_REJECTED_INVALID_NAME = 10,           /* invalid_name: not {category}_{metric}_{unit}, 3..100 bytes */
    WALCTL_REJECTED_NON_FINITE_VALUE = 11,       /* non_finite_value: NaN or infinity */
    WALCTL_REJECTED_TOO_MANY_TAGS = 12,          /* too_many_tags: more than 16 */
    WALCTL_REJECTED_INVALID_TAG_KEY = 13,        /* invalid_tag_key: not lower snake case, 1..64 bytes */
    WALCTL_REJECTED_TAG_VALUE_TOO_LONG = 14,     /* tag_value_too_long: more than 256 bytes */
    WALCTL_REJECTED_INVALID_UNIT = 15,           /* invalid_unit: empty or more than 20 bytes */
    WALCTL_REJECTED_INVALID_CORRELATION_ID = 16, /* invalid_correlation_id: empty or more than 100 bytes */
    WALCTL_REJECTED_INVALID_AGENT_ID = 17,       /* invalid_agent_id: empty or more than 100 bytes */
    WALCTL_REJECTED_NUL_CHARACTER = 18,          /* nul_character: a NUL byte in a string */
    WALCTL_REJECTED_CONFLICTING_DEFINITION = 19, /* conflicting_definition: name known with another type or unit */
    WALCTL_REJECTED_SYMBOL_TABLE_FULL = 20,      /* symbol_table_full */
    WALCTL_REJECTED_LOG_UNAVAILABLE = 21,        /* log_unavailable: closed, or an I/O error */
    WALCTL_REJECTED_INVALID_TYPE = 22,           /* invalid_type: not a walctl_metric_type (C callers only) */

    /* Errors of the call. */
    WALCTL_E_ARGUMENT = -1,      /* a required pointer is NULL, or a tag count without arrays */
    WALCTL_E_CONFIGURATION = -2, /* open: a METRICS_* setting is invalid (the message names it) */
    WALCTL_E_IO = -3,            /* open/sync/close: the log could not be opened, synced or closed */
    WALCTL_E_FORKED = -4,        /* the collector was opened by the parent of this process (see fork() above) */
} walctl_status;

/* Counters of a collector since it was opened. */
typedef struct walctl_stats {
    uint64_t emitted;  /* records written */
    uint64_t rejected; /* records refused, all reasons */
    uint64_t dropped;  /* records dropped by the whenFull policy */
    uint64_t symbols;  /* entries in the symbol table */
} walctl_stats;

/* "walctl X.Y.Z (abi N)": a static string, never freed. */
const char *walctl_version(void);
/* WALCTL_ABI_VERSION of the library loaded. */
int walctl_abi_version(void);

/* The snake_case name of a status ("ok", "invalid_name", "log_unavailable", "forked"...): a static string. */
const char *walctl_status_name(int status);

/* The message of the last call on this thread that did not return WALCTL_OK ("" when there was none). Owned by the
 * library, valid until the next walctl call on the same thread; copy it to keep it. */
const char *walctl_last_error(void);

/*
 * Opens (creating when needed) the log of a new collector and stores it in *out.
 *
 * The configuration is read like the Swift collector's MetricsConfiguration.fromEnvironment: the process
 * environment's METRICS_* variables when use_environment is non-zero, then `settings` ("METRICS_NAME=value" C strings,
 * `settings_count` of them; NULL when 0) over them, then `directory` (METRICS_DIR) and `agent_id` (METRICS_AGENT_ID)
 * when not NULL. Settings: METRICS_ENABLED, METRICS_DIR, METRICS_AGENT_ID, METRICS_DURABILITY (process,
 * periodic:MS, sync), METRICS_MAX_BYTES, METRICS_WHEN_FULL (drop-newest, block:MS), METRICS_BATCH_SIZE,
 * METRICS_FLUSH_INTERVAL_MS, METRICS_SOURCE_SERVICE.
 *
 * One process writes a log directory at a time: a directory another live collector holds fails with WALCTL_E_IO.
 * Returns WALCTL_OK, WALCTL_E_ARGUMENT, WALCTL_E_CONFIGURATION or WALCTL_E_IO (*out untouched on failure).
 * Release the collector with walctl_release.
 */
int walctl_open(
    const char *directory,
    const char *agent_id,
    const char *const *settings,
    size_t settings_count,
    int use_environment,
    walctl_collector **out
);

/* Non-zero when a record call may wait (METRICS_WHEN_FULL=block:MS or METRICS_DURABILITY=sync): callers holding a
 * lock of their own (an interpreter lock) should release it around record calls then. */
int walctl_may_block(const walctl_collector *collector);

/*
 * Records one metric. tag_keys and tag_values are parallel arrays of tag_count strings (NULL when 0).
 * correlation_id and agent_id may be absent (data NULL). *seq_out (if seq_out is not NULL) receives the sequence
 * number on WALCTL_OK and WALCTL_DROPPED. Cost: two hash look-ups under a lock and one append, no system call in
 * the default durability mode.
 */
int walctl_record(
    walctl_collector *collector,
    int type,
    walctl_string name,
    double value,
    walctl_string unit,
    const walctl_string *tag_keys,
    const walctl_string *tag_values,
    size_t tag_count,
    walctl_string correlation_id,
    walctl_string agent_id,
    uint64_t *seq_out
);

/*
 * Resolves a metric once (validating name, unit, tags and agent) and stores a handle in *out; recording through it
 * costs an encode and an append. Returns WALCTL_OK, a WALCTL_REJECTED_* code, WALCTL_E_ARGUMENT or WALCTL_E_FORKED.
 * The handle keeps the collector's memory alive: it stays safe to use (and returns log_unavailable) after the
 * collector is closed or released. Release it with walctl_handle_release.
 */
int walctl_handle_open(
    walctl_collector *collector,
    int type,
    walctl_string name,
    walctl_string unit,
    const walctl_string *tag_keys,
    const walctl_string *tag_values,
    size_t tag_count,
    walctl_string agent_id,
    walctl_handle **out
);

/* Records `value` through a handle; as walctl_record. */
int walctl_handle_record(walctl_handle *handle, double value, walctl_string correlation_id, uint64_t *seq_out);

/* Frees a handle. */
void walctl_handle_release(walctl_handle *handle);

/* Returns once everything recorded so far is sealed into segments, where shippers see it (or the timeout passed). */
int walctl_flush(walctl_collector *collector, int timeout_milliseconds);

/* Returns once everything recorded so far is on stable storage (survives power loss). WALCTL_OK or WALCTL_E_IO. */
int walctl_sync(walctl_collector *collector);

/* Seals everything and closes the log; later records return WALCTL_REJECTED_LOG_UNAVAILABLE. Idempotent. */
int walctl_close(walctl_collector *collector);

/* Fills *out with the collector's counters. */
int walctl_stats_get(const walctl_collector *collector, walctl_stats *out);

/* Closes the collector if still open and frees it; `collector` must not be used after. Handles stay valid. */
void walctl_release(walctl_collector *collector);

#ifdef __cplusplus
}
#endif

#endif /* WALCTL_H */
