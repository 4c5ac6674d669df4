/*
 * A C program using walctl.h the way a C agent would, compiled and run by python/tests/test_c_abi.py:
 *   walctl_abi_test DIR
 * Records by name and through handles from 4 threads, checks each rejection code, the fork guard, sync, close,
 * and prints one line "emitted=N rejected=M" for the test to compare with `walctl inspect`. Exit 0 on success;
 * a failed check prints what failed and exits 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <math.h>

#include "walctl.h"

#define THREADS 4
#define PER_THREAD 5000

static int failures = 0;
#define CHECK(condition, ...)                                  \
    do {                                                       \
        if (!(condition)) {                                    \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                      \
            fprintf(stderr, " (last error: %s)\n", walctl_last_error()); \
            failures++;                                        \
        }                                                      \
    } while (0)

static walctl_string s(const char *text) { return (walctl_string){text, text ? strlen(text) : 0}; }
static const walctl_string none = {NULL, 0};

static walctl_collector *collector;
static walctl_handle *shared_handle;

static void *worker(void *arg) {
    long id = (long)arg;
    char value_text[32];
    snprintf(value_text, sizeof value_text, "t%ld", id);
    walctl_string keys[2] = {s("agent_type"), s("thread")};
    walctl_string values[2] = {s("router"), s(value_text)};
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t seq = 0;
        int status;
        if (i % 2 == 0) {
            status = walctl_record(collector, WALCTL_TIMING, s("routing_decision_time_ms"), (double)i, s("ms"), keys,
                                   values, 2, s("corr-c"), none, &seq);
        } else {
            status = walctl_handle_record(shared_handle, (double)i, none, &seq);
        }
        if (status != WALCTL_OK) {
            CHECK(0, "thread %ld record %d: status %d (%s)", id, i, status, walctl_status_name(status));
            return NULL;
        }
    }
    return NULL;
}

static int rejected_code(int type, const char *name, double value, const char *unit, walctl_string key,
                         walctl_string tag_value, size_t tag_count, walctl_string correlation, walctl_string agent) {
    uint64_t seq = 0;
    return walctl_record(collector, type, s(name), value, s(unit), tag_count ? &key : NULL,
                         tag_count ? &tag_value : NULL, tag_count, correlation, agent, &seq);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    CHECK(walctl_abi_version() == WALCTL_ABI_VERSION, "abi %d", walctl_abi_version());
    CHECK(strncmp(walctl_version(), "walctl ", 7) == 0, "version %s", walctl_version());

    /* A bad setting is a configuration error naming the variable. */
    const char *bad[] = {"METRICS_DURABILITY=sometimes"};
    walctl_collector *unused = NULL;
    CHECK(walctl_open(argv[1], "c-agent", bad, 1, 0, &unused) == WALCTL_E_CONFIGURATION, "bad setting accepted");
    CHECK(strstr(walctl_last_error(), "METRICS_DURABILITY") != NULL, "message does not name the variable");
    CHECK(unused == NULL, "out set on failure");

    const char *settings[] = {"METRICS_SOURCE_SERVICE=c-test"};
    CHECK(walctl_open(argv[1], "c-agent", settings, 1, 0, &collector) == WALCTL_OK, "open");
    if (collector == NULL) return 1;

    /* A second writer of the same directory is refused. */
    walctl_collector *second = NULL;
    CHECK(walctl_open(argv[1], "c-agent", NULL, 0, 0, &second) == WALCTL_E_IO, "second writer accepted");

    walctl_string hkeys[1] = {s("agent_type")};
    walctl_string hvalues[1] = {s("handle")};
    CHECK(walctl_handle_open(collector, WALCTL_TIMING, s("routing_decision_time_ms"), s("ms"), hkeys, hvalues, 1,
                             none, &shared_handle) == WALCTL_OK, "handle_open");

    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);

    /* Each rejection code, nothing written. */
    walctl_string k = s("agent_type"), v = s("x");
    CHECK(rejected_code(WALCTL_GAUGE, "Bad-Name", 1, "x", k, v, 0, none, none) == WALCTL_REJECTED_INVALID_NAME, "name");
    CHECK(rejected_code(WALCTL_GAUGE, "state_size_kb", NAN, "KB", k, v, 0, none, none) ==
              WALCTL_REJECTED_NON_FINITE_VALUE, "nan");
    CHECK(rejected_code(WALCTL_GAUGE, "state_size_kb", 1, "KB", s("Bad Key"), v, 1, none, none) ==
              WALCTL_REJECTED_INVALID_TAG_KEY, "tag key");
    CHECK(rejected_code(WALCTL_GAUGE, "state_other_kb", 1, "", k, v, 0, none, none) == WALCTL_REJECTED_INVALID_UNIT,
          "unit");
    CHECK(rejected_code(WALCTL_GAUGE, "state_size_kb", 1, "KB", k, v, 0, s(""), none) ==
              WALCTL_REJECTED_INVALID_CORRELATION_ID, "correlation");
    walctl_string nul = {"a\0b", 3};
    CHECK(rejected_code(WALCTL_GAUGE, "state_size_kb", 1, "KB", k, nul, 1, none, none) ==
              WALCTL_REJECTED_NUL_CHARACTER, "nul");
    CHECK(rejected_code(WALCTL_COUNTER, "routing_decision_time_ms", 1, "count", k, v, 0, none, none) ==
              WALCTL_REJECTED_CONFLICTING_DEFINITION, "conflict");
    CHECK(rejected_code(7, "state_size_kb", 1, "KB", k, v, 0, none, none) == WALCTL_REJECTED_INVALID_TYPE, "type");
    CHECK(strcmp(walctl_status_name(WALCTL_REJECTED_INVALID_NAME), "invalid_name") == 0, "status name");
    CHECK(walctl_record(NULL, 0, s("a_b"), 1, s("ms"), NULL, NULL, 0, none, none, NULL) == WALCTL_E_ARGUMENT, "null");
    CHECK(walctl_record(collector, 0, s("a_b"), 1, s("ms"), NULL, NULL, 3, none, none, NULL) == WALCTL_E_ARGUMENT,
          "count without arrays");

    /* fork(): the child cannot write the parent's log. */
    pid_t child = fork();
    if (child == 0) {
        uint64_t seq = 0;
        int by_name = walctl_record(collector, WALCTL_TIMING, s("routing_decision_time_ms"), 1, s("ms"), NULL, NULL,
                                    0, none, none, &seq);
        int by_handle = walctl_handle_record(shared_handle, 1, none, &seq);
        int closing = walctl_close(collector);
        walctl_release(collector);
        _exit(by_name == WALCTL_E_FORKED && by_handle == WALCTL_E_FORKED && closing == WALCTL_E_FORKED ? 0 : 1);
    }
    int child_status = 0;
    waitpid(child, &child_status, 0);
    CHECK(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0, "the forked child wrote or closed");

    CHECK(walctl_sync(collector) == WALCTL_OK, "sync");
    CHECK(walctl_flush(collector, 5000) == WALCTL_OK, "flush");
    walctl_stats stats;
    CHECK(walctl_stats_get(collector, &stats) == WALCTL_OK, "stats");
    CHECK(stats.emitted == THREADS * PER_THREAD, "emitted %llu", (unsigned long long)stats.emitted);
    CHECK(stats.rejected == 7, "rejected %llu", (unsigned long long)stats.rejected);
    CHECK(walctl_close(collector) == WALCTL_OK, "close");
    CHECK(walctl_close(collector) == WALCTL_OK, "close twice");
    uint64_t seq = 0;
    CHECK(walctl_handle_record(shared_handle, 1, none, &seq) == WALCTL_REJECTED_LOG_UNAVAILABLE, "after close");
    walctl_release(collector);
    /* The handle keeps the collector's memory alive: still safe after release. */
    CHECK(walctl_handle_record(shared_handle, 1, none, &seq) == WALCTL_REJECTED_LOG_UNAVAILABLE, "after release");
    walctl_handle_release(shared_handle);

    printf("emitted=%llu rejected=%llu\n", (unsigned long long)stats.emitted, (unsigned long long)stats.rejected);
    return failures == 0 ? 0 : 1;
}
