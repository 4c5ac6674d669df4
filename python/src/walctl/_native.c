/*
 * walctl._native: the CPython binding of libwalctl_c (walctl.h), the hot path of the Python package.
 *
 * Why an extension rather than ctypes or cffi (python/bench/bench_binding.py, mean per call on this project's 2-core
 * machine): by name with three tags and a correlation id, ctypes 7.4 us and cffi (ABI mode) 6.9 us, almost all of it
 * building the argument structures from the dict; this extension 0.39 us. Through a handle: ctypes 0.73 us, cffi
 * 0.59 us, this extension 0.19 us. Here the tags go from the dict to a stack array of (pointer, length) pairs with no
 * Python object made (PyUnicode_AsUTF8AndSize returns the string's own buffer for ASCII), and records by name reuse
 * cached handles (below).
 *
 * The GIL is held during a record (the work is well under a microsecond) except when the collector can wait
 * (METRICS_WHEN_FULL=block:MS or METRICS_DURABILITY=sync): then it is released around the call, with references
 * held on every string passed. sync/flush/close always release it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "walctl.h"

#define MAX_STACK_TAGS 32

static PyObject *MetricsError;  /* set by _set_exceptions */
static PyObject *RejectedError;
static PyObject *ForkedError;

/* ---------------------------------------------------------------- EmitResult */

typedef struct {
    PyObject_HEAD
    int status;
    unsigned long long seq;
} ResultObject;

static PyTypeObject ResultType;
static PyTypeObject AwaiterType;

typedef struct {
    PyObject_HEAD
    PyObject *result;
} AwaiterObject;

static PyObject *result_new(int status, unsigned long long seq) {
    ResultObject *r = PyObject_New(ResultObject, &ResultType);
    if (r == NULL) return NULL;
    r->status = status;
    r->seq = seq;
    return (PyObject *)r;
}

static PyObject *result_await(PyObject *self) {
    AwaiterObject *a = PyObject_New(AwaiterObject, &AwaiterType);
    if (a == NULL) return NULL;
    Py_INCREF(self);
    a->result = self;
    return (PyObject *)a;
}

static PyObject *result_get_status(ResultObject *self, void *closure) {
    return PyUnicode_FromString(walctl_status_name(self->status));
}
static PyObject *result_get_code(ResultObject *self, void *closure) { return PyLong_FromLong(self->status); }
static PyObject *result_get_seq(ResultObject *self, void *closure) {
    if (self->status == WALCTL_OK || self->status == WALCTL_DROPPED) return PyLong_FromUnsignedLongLong(self->seq);
    Py_RETURN_NONE;
}
static PyObject *result_get_recorded(ResultObject *self, void *closure) { return PyBool_FromLong(self->status == WALCTL_OK); }
static PyObject *result_get_reason(ResultObject *self, void *closure) {
    if (self->status >= 10) return PyUnicode_FromString(walctl_status_name(self->status));
    Py_RETURN_NONE;
}
static PyObject *result_repr(ResultObject *self) {
    if (self->status == WALCTL_OK || self->status == WALCTL_DROPPED)
        return PyUnicode_FromFormat("EmitResult(%s, seq=%llu)", walctl_status_name(self->status), self->seq);
    return PyUnicode_FromFormat("EmitResult(%s)", walctl_status_name(self->status));
}
static PyObject *result_richcompare(PyObject *a, PyObject *b, int op) {
    if (!PyObject_TypeCheck(b, &ResultType) || (op != Py_EQ && op != Py_NE)) Py_RETURN_NOTIMPLEMENTED;
    ResultObject *x = (ResultObject *)a, *y = (ResultObject *)b;
    int equal = x->status == y->status && x->seq == y->seq;
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static PyGetSetDef result_getset[] = {
    {"status", (getter)result_get_status, NULL,
     "'ok', 'dropped', 'disabled' or the rejection reason ('invalid_name', 'non_finite_value', ...).", NULL},
    {"code", (getter)result_get_code, NULL, "The walctl_status code (0 ok, 1 dropped, 2 disabled, 10.. rejected).", NULL},
    {"seq", (getter)result_get_seq, NULL, "The record's sequence number in the log (ok and dropped), else None.", NULL},
    {"recorded", (getter)result_get_recorded, NULL, "True when the record is durable in the log.", NULL},
    {"reason", (getter)result_get_reason, NULL, "The rejection reason, or None when not rejected.", NULL},
    {NULL},
};

static PyAsyncMethods result_async = {.am_await = result_await};

static PyTypeObject ResultType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "walctl.EmitResult",
    .tp_basicsize = sizeof(ResultObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What a record call did. Also awaitable (it is already complete): `await collector.record_gauge(...)` "
              "returns it.",
    .tp_getset = result_getset,
    .tp_as_async = &result_async,
    .tp_repr = (reprfunc)result_repr,
    .tp_richcompare = result_richcompare,
};

static void awaiter_dealloc(AwaiterObject *self) {
    Py_XDECREF(self->result);
    PyObject_Free(self);
}
static PyObject *awaiter_next(AwaiterObject *self) {
    if (self->result != NULL) {
        PyErr_SetObject(PyExc_StopIteration, self->result);
        Py_CLEAR(self->result);
    }
    return NULL;
}
static PyObject *awaiter_send(AwaiterObject *self, PyObject *arg) { return awaiter_next(self); }
static PyObject *awaiter_throw(AwaiterObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_CLEAR(self->result);
    if (nargs < 1) return NULL;
    PyObject *exc = args[0];
    if (PyExceptionInstance_Check(exc)) PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    else PyErr_SetObject(exc, nargs > 1 ? args[1] : NULL);
    return NULL;
}
static PyObject *awaiter_close(AwaiterObject *self, PyObject *unused) {
    Py_CLEAR(self->result);
    Py_RETURN_NONE;
}
static PyMethodDef awaiter_methods[] = {
    {"send", (PyCFunction)awaiter_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))awaiter_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)awaiter_close, METH_NOARGS, NULL},
    {NULL},
};
static PyTypeObject AwaiterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "walctl._native.ResultAwaiter",
    .tp_basicsize = sizeof(AwaiterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)awaiter_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)awaiter_next,
    .tp_methods = awaiter_methods,
};

/* ---------------------------------------------------------------- helpers */

/* Borrowed UTF-8 of a str (the object's own buffer); -1 with an exception otherwise. */
static inline int utf8_of(PyObject *text, walctl_string *out, const char *what) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(text)->tp_name);
        return -1;
    }
    Py_ssize_t length;
    const char *data = PyUnicode_AsUTF8AndSize(text, &length);
    if (data == NULL) return -1;
    out->data = data;
    out->length = (size_t)length;
    return 0;
}

/* Optional string: None is absent; other non-str objects are converted with str() into *hold. */
static inline int optional_utf8(PyObject *text, walctl_string *out, PyObject **hold, const char *what) {
    out->data = NULL;
    out->length = 0;
    if (text == NULL || text == Py_None) return 0;
    if (!PyUnicode_Check(text)) {
        *hold = PyObject_Str(text);
        if (*hold == NULL) return -1;
        text = *hold;
    }
    return utf8_of(text, out, what);
}

/* Fast argument parsing: positional then keywords into slots[0..count). Returns -1 with TypeError. */
static int parse_args(const char *function, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const char *const *names, int count, int required, PyObject **slots) {
    if (nargs > count) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", function, count, nargs);
        return -1;
    }
    for (int i = 0; i < count; i++) slots[i] = i < nargs ? args[i] : NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int found = -1;
            for (int i = 0; i < count; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) { found = i; break; }
            }
            if (found < 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", function, key);
                return -1;
            }
            if (slots[found] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", function, names[found]);
                return -1;
            }
            slots[found] = args[nargs + k];
        }
    }
    for (int i = 0; i < required; i++) {
        if (slots[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function, names[i]);
            return -1;
        }
    }
    return 0;
}

/* Tags as parallel arrays. Non-str values are converted with str() (held in `holds`). */
typedef struct {
    walctl_string keys_stack[MAX_STACK_TAGS];
    walctl_string values_stack[MAX_STACK_TAGS];
    walctl_string *keys;
    walctl_string *values;
    PyObject **holds; /* references to release: converted values, and every key/value when the GIL is released */
    Py_ssize_t hold_count;
    PyObject *holds_stack[2 * MAX_STACK_TAGS];
    size_t count;
    Py_hash_t hash; /* combined hash of the key and value objects (str hashes are cached by Python) */
} Tags;

static void tags_release(Tags *t) {
    for (Py_ssize_t i = 0; i < t->hold_count; i++) Py_DECREF(t->holds[i]);
    if (t->keys != t->keys_stack) PyMem_Free(t->keys);
    if (t->values != t->values_stack) PyMem_Free(t->values);
    if (t->holds != t->holds_stack) PyMem_Free(t->holds);
}

static int tags_fill(Tags *t, PyObject *tags, int hold_all) {
    t->keys = t->keys_stack;
    t->values = t->values_stack;
    t->holds = t->holds_stack;
    t->hold_count = 0;
    t->count = 0;
    t->hash = 0;
    if (tags == NULL || tags == Py_None) return 0;
    if (!PyDict_Check(tags)) {
        PyErr_Format(PyExc_TypeError, "tags must be a dict of str to str, not %.100s", Py_TYPE(tags)->tp_name);
        return -1;
    }
    Py_ssize_t size = PyDict_GET_SIZE(tags);
    if (size > MAX_STACK_TAGS) {
        t->keys = PyMem_Malloc(sizeof(walctl_string) * size);
        t->values = PyMem_Malloc(sizeof(walctl_string) * size);
        t->holds = PyMem_Malloc(sizeof(PyObject *) * 2 * size);
        if (t->keys == NULL || t->values == NULL || t->holds == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(tags, &position, &key, &value)) {
        if ((size_t)size <= t->count) break;
        if (utf8_of(key, &t->keys[t->count], "a tag key") < 0) return -1;
        if (hold_all) {
            Py_INCREF(key);
            t->holds[t->hold_count++] = key;
        }
        if (!PyUnicode_Check(value)) {
            value = PyObject_Str(value);
            if (value == NULL) return -1;
            t->holds[t->hold_count++] = value;
        } else if (hold_all) {
            Py_INCREF(value);
            t->holds[t->hold_count++] = value;
        }
        if (utf8_of(value, &t->values[t->count], "a tag value") < 0) return -1;
        Py_hash_t key_hash = PyObject_Hash(key), value_hash = PyObject_Hash(value);
        if (key_hash == -1 || value_hash == -1) return -1;
        t->hash = (t->hash ^ key_hash) * 1000003 ^ value_hash;
        t->count++;
    }
    return 0;
}

/* ---------------------------------------------------------------- Collector */

enum { STATE_UNOPENED = 0, STATE_OPEN = 1, STATE_CLOSED = 2, STATE_FORKED = 3 };

/*
 * Records by name go through a small cache of handles, keyed by everything a handle resolves (type, name, unit, tags
 * in the dict's order, agent id): a hit costs a hash of cached str hashes, one memcmp and walctl_handle_record, where
 * walctl_record would build Swift strings and a tag dictionary and look them up under a lock. Outcomes are the same
 * (a refused metric is never cached; values and correlation ids are checked per record). Direct-mapped, 256 entries,
 * used with the GIL held only: collectors that may block (and release the GIL) bypass it.
 */
#define CACHE_SIZE 256
#define CACHE_KEY_MAX 1024

typedef struct {
    Py_hash_t hash;
    walctl_handle *handle;
    size_t key_length;
    char *key;
} CacheEntry;

typedef struct {
    PyObject_HEAD
    walctl_collector *collector;
    int state;
    int may_block;
    int raise_on_reject;
    unsigned long generation; /* bumped whenever `collector` is replaced (reopened after fork) */
    PyObject *weakreflist;
    CacheEntry *cache; /* CACHE_SIZE entries, allocated on first use */
} CollectorObject;

/* Drops the cached handles: released when they belong to this process, forgotten after fork(). */
static void cache_clear(CollectorObject *self, int release) {
    if (self->cache == NULL) return;
    for (int i = 0; i < CACHE_SIZE; i++) {
        CacheEntry *entry = &self->cache[i];
        if (entry->handle != NULL && release) walctl_handle_release(entry->handle);
        PyMem_Free(entry->key);
    }
    PyMem_Free(self->cache);
    self->cache = NULL;
}

static inline size_t key_put(char *out, size_t at, const void *data, size_t length) {
    if (at + sizeof(size_t) + length > CACHE_KEY_MAX) return CACHE_KEY_MAX + 1;
    memcpy(out + at, &length, sizeof(size_t));
    if (length) memcpy(out + at + sizeof(size_t), data, length);
    return at + sizeof(size_t) + length;
}

/* The cache key of a record's metric in `out`; its length, or 0 when too long to cache. */
static size_t cache_key(char *out, int type, walctl_string name, walctl_string unit, const Tags *t,
                        walctl_string agent) {
    size_t at = key_put(out, 0, &type, sizeof type);
    at = key_put(out, at, name.data, name.length);
    at = key_put(out, at, unit.data, unit.length);
    for (size_t i = 0; i < t->count && at <= CACHE_KEY_MAX; i++) {
        at = key_put(out, at, t->keys[i].data, t->keys[i].length);
        at = key_put(out, at, t->values[i].data, t->values[i].length);
    }
    if (agent.data != NULL) at = key_put(out, at, agent.data, agent.length);
    return at <= CACHE_KEY_MAX ? at : 0;
}

static PyTypeObject CollectorType;

static PyObject *error_from_status(int status) {
    const char *message = walctl_last_error();
    if (status == WALCTL_E_FORKED) {
        PyErr_SetString(ForkedError ? ForkedError : PyExc_RuntimeError, message);
    } else {
        PyErr_Format(MetricsError ? MetricsError : PyExc_RuntimeError, "%s: %s", walctl_status_name(status), message);
    }
    return NULL;
}

/* The Python outcome of a record: an EmitResult, or RejectedError / ForkedError / MetricsError. */
static inline PyObject *outcome(CollectorObject *owner, int status, unsigned long long seq) {
    if (status >= 0 && status < 10) return result_new(status, seq);
    if (status >= 10) {
        if (!owner->raise_on_reject) return result_new(status, 0);
        PyObject *error = PyObject_CallFunction(RejectedError ? RejectedError : PyExc_ValueError, "ssi",
                                                walctl_status_name(status), walctl_last_error(), status);
        if (error != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(error), error);
            Py_DECREF(error);
        }
        return NULL;
    }
    return error_from_status(status);
}

static inline int check_open(CollectorObject *self) {
    if (self->state == STATE_OPEN || self->state == STATE_CLOSED) return 0;
    if (self->state == STATE_FORKED) {
        PyErr_SetString(ForkedError ? ForkedError : PyExc_RuntimeError,
                        "forked: this collector was opened by the parent process and is not reopened in a child "
                        "(open it with per_process_root=..., or call init_metrics(...) in the child)");
    } else {
        PyErr_SetString(MetricsError ? MetricsError : PyExc_RuntimeError, "the collector is not open");
    }
    return -1;
}

static PyObject *collector_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    CollectorObject *self = (CollectorObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->collector = NULL;
    self->state = STATE_UNOPENED;
    return (PyObject *)self;
}

static void collector_dealloc(CollectorObject *self) {
    /* Subclasses (walctl.MetricsCollector) come through subtype_dealloc, which clears their dict and drops the
     * reference to their type. */
    PyTypeObject *type = Py_TYPE(self);
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    cache_clear(self, self->state != STATE_FORKED);
    if (self->collector != NULL && self->state != STATE_FORKED) {
        walctl_collector *collector = self->collector;
        self->collector = NULL;
        Py_BEGIN_ALLOW_THREADS
        walctl_release(collector);
        Py_END_ALLOW_THREADS
    }
    type->tp_free((PyObject *)self);
}

/* _open(directory, agent_id, settings: list[str], use_environment: bool, raise_on_reject: bool) */
static PyObject *collector_open(CollectorObject *self, PyObject *args) {
    PyObject *directory, *agent_id, *settings;
    int use_environment, raise_on_reject;
    if (!PyArg_ParseTuple(args, "OOO!pp", &directory, &agent_id, &PyList_Type, &settings, &use_environment,
                          &raise_on_reject))
        return NULL;
    if (self->state == STATE_OPEN) {
        PyErr_SetString(MetricsError ? MetricsError : PyExc_RuntimeError, "the collector is already open");
        return NULL;
    }
    const char *directory_text = NULL, *agent_text = NULL;
    if (directory != Py_None && (directory_text = PyUnicode_AsUTF8(directory)) == NULL) return NULL;
    if (agent_id != Py_None && (agent_text = PyUnicode_AsUTF8(agent_id)) == NULL) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(settings);
    const char **entries = PyMem_Malloc(sizeof(char *) * (count + 1));
    if (entries == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < count; i++) {
        entries[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(settings, i));
        if (entries[i] == NULL) {
            PyMem_Free(entries);
            return NULL;
        }
    }
    cache_clear(self, self->state == STATE_CLOSED);
    if (self->collector != NULL && self->state == STATE_CLOSED) {
        walctl_collector *previous = self->collector; /* reopening after close(): free the closed one */
        self->collector = NULL;
        walctl_release(previous);
    }
    walctl_collector *collector = NULL;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walctl_open(directory_text, agent_text, entries, (size_t)count, use_environment, &collector);
    Py_END_ALLOW_THREADS
    PyMem_Free(entries);
    if (status != WALCTL_OK) {
        PyErr_SetString(MetricsError ? MetricsError : PyExc_RuntimeError, walctl_last_error());
        return NULL;
    }
    self->collector = collector;
    self->state = STATE_OPEN;
    self->may_block = walctl_may_block(collector);
    self->raise_on_reject = raise_on_reject;
    self->generation++;
    Py_RETURN_NONE;
}

/* _detach(): after fork() in the child: forget the parent's collector without touching it. */
static PyObject *collector_detach(CollectorObject *self, PyObject *unused) {
    if (self->state != STATE_UNOPENED) {
        cache_clear(self, 0); /* the parent's handles: never released here */
        self->collector = NULL; /* the parent's: never released here */
        self->state = STATE_FORKED;
        self->generation++;
    }
    Py_RETURN_NONE;
}

/* A record by name through the handle cache; -100 with an exception set on failure of Python itself. */
static int record_cached(CollectorObject *self, int type, PyObject *name, PyObject *unit_object, walctl_string name_s,
                         walctl_string unit_s, const Tags *t, PyObject *agent_id, walctl_string agent_s,
                         double number, walctl_string correlation_s, uint64_t *seq) {
    Py_hash_t hash = PyObject_Hash(name);
    if (hash == -1) return -100;
    if (unit_object != NULL) {
        Py_hash_t unit_hash = PyObject_Hash(unit_object);
        if (unit_hash == -1) return -100;
        hash = hash * 1000003 ^ unit_hash;
    }
    if (agent_s.data != NULL) {
        Py_hash_t agent_hash = PyObject_Hash(agent_id);
        if (agent_hash == -1) return -100;
        hash = hash * 1000003 ^ agent_hash;
    }
    hash = (hash * 1000003 ^ t->hash) * 31 + type;
    char key[CACHE_KEY_MAX];
    size_t length = cache_key(key, type, name_s, unit_s, t, agent_s);
    if (length == 0) {
        return walctl_record(self->collector, type, name_s, number, unit_s, t->keys, t->values, t->count,
                             correlation_s, agent_s, seq);
    }
    if (self->cache == NULL) {
        self->cache = PyMem_Calloc(CACHE_SIZE, sizeof(CacheEntry));
        if (self->cache == NULL) {
            PyErr_NoMemory();
            return -100;
        }
    }
    CacheEntry *entry = &self->cache[(size_t)hash & (CACHE_SIZE - 1)];
    if (entry->handle == NULL || entry->hash != hash || entry->key_length != length ||
        memcmp(entry->key, key, length) != 0) {
        walctl_handle *handle = NULL;
        int status = walctl_handle_open(self->collector, type, name_s, unit_s, t->keys, t->values, t->count, agent_s,
                                        &handle);
        if (status != WALCTL_OK) return status; /* refused (and counted) as walctl_record would */
        char *copy = PyMem_Malloc(length);
        if (copy == NULL) {
            walctl_handle_release(handle);
            PyErr_NoMemory();
            return -100;
        }
        memcpy(copy, key, length);
        if (entry->handle != NULL) walctl_handle_release(entry->handle);
        PyMem_Free(entry->key);
        entry->handle = handle;
        entry->hash = hash;
        entry->key = copy;
        entry->key_length = length;
    }
    return walctl_handle_record(entry->handle, number, correlation_s, seq);
}

static inline PyObject *record_common(CollectorObject *self, int type, PyObject *name, PyObject *value,
                                      PyObject *unit_object, const char *unit_literal, PyObject *tags,
                                      PyObject *correlation_id, PyObject *agent_id) {
    if (check_open(self) < 0) return NULL;
    walctl_string name_s, unit_s, correlation_s, agent_s;
    if (utf8_of(name, &name_s, "metric_name") < 0) return NULL;
    if (unit_object != NULL) {
        if (utf8_of(unit_object, &unit_s, "unit") < 0) return NULL;
    } else {
        unit_s.data = unit_literal;
        unit_s.length = strlen(unit_literal);
    }
    double number = PyFloat_AsDouble(value);
    if (number == -1.0 && PyErr_Occurred()) return NULL;
    PyObject *correlation_hold = NULL, *agent_hold = NULL;
    PyObject *result = NULL;
    Tags t;
    if (tags_fill(&t, tags, self->may_block) < 0) goto done;
    if (optional_utf8(correlation_id, &correlation_s, &correlation_hold, "correlation_id") < 0) goto done;
    if (optional_utf8(agent_id, &agent_s, &agent_hold, "agent_id") < 0) goto done;
    uint64_t seq = 0;
    int status;
    if (self->may_block) {
        Py_INCREF(name);
        Py_XINCREF(unit_object);
        Py_XINCREF(correlation_id);
        Py_XINCREF(agent_id);
        Py_BEGIN_ALLOW_THREADS
        status = walctl_record(self->collector, type, name_s, number, unit_s, t.keys, t.values, t.count,
                               correlation_s, agent_s, &seq);
        Py_END_ALLOW_THREADS
        Py_DECREF(name);
        Py_XDECREF(unit_object);
        Py_XDECREF(correlation_id);
        Py_XDECREF(agent_id);
    } else if (self->state == STATE_OPEN) {
        status = record_cached(self, type, name, unit_object, name_s, unit_s, &t, agent_id, agent_s, number,
                               correlation_s, &seq);
        if (status == -100) goto done;
    } else {
        status = walctl_record(self->collector, type, name_s, number, unit_s, t.keys, t.values, t.count,
                               correlation_s, agent_s, &seq);
    }
    result = outcome(self, status, seq);
done:
    tags_release(&t);
    Py_XDECREF(correlation_hold);
    Py_XDECREF(agent_hold);
    return result;
}

static const char *const timing_names[] = {"metric_name", "duration_ms", "tags", "correlation_id", "agent_id"};
static const char *const counter_names[] = {"metric_name", "count", "tags", "correlation_id", "agent_id"};
static const char *const gauge_names[] = {"metric_name", "value", "unit", "tags", "correlation_id", "agent_id"};
static const char *const rate_names[] = {"metric_name", "rate_percent", "tags", "correlation_id", "agent_id"};
static const char *const record_names[] = {"metric_type", "metric_name", "value", "unit",
                                           "tags", "correlation_id", "agent_id"};

static PyObject *collector_record_timing(CollectorObject *self, PyObject *const *args, Py_ssize_t nargs,
                                         PyObject *kwnames) {
    PyObject *a[5];
    if (parse_args("record_timing", args, nargs, kwnames, timing_names, 5, 2, a) < 0) return NULL;
    return record_common(self, WALCTL_TIMING, a[0], a[1], NULL, "ms", a[2], a[3], a[4]);
}

static PyObject *collector_record_counter(CollectorObject *self, PyObject *const *args, Py_ssize_t nargs,
                                          PyObject *kwnames) {
    PyObject *a[5];
    if (parse_args("record_counter", args, nargs, kwnames, counter_names, 5, 1, a) < 0) return NULL;
    static PyObject *one = NULL;
    if (a[1] == NULL) {
        if (one == NULL) one = PyLong_FromLong(1);
        a[1] = one;
    }
    return record_common(self, WALCTL_COUNTER, a[0], a[1], NULL, "count", a[2], a[3], a[4]);
}

static PyObject *collector_record_gauge(CollectorObject *self, PyObject *const *args, Py_ssize_t nargs,
                                        PyObject *kwnames) {
    PyObject *a[6];
    if (parse_args("record_gauge", args, nargs, kwnames, gauge_names, 6, 3, a) < 0) return NULL;
    return record_common(self, WALCTL_GAUGE, a[0], a[1], a[2], NULL, a[3], a[4], a[5]);
}

static PyObject *collector_record_rate(CollectorObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
    PyObject *a[5];
    if (parse_args("record_rate", args, nargs, kwnames, rate_names, 5, 2, a) < 0) return NULL;
    return record_common(self, WALCTL_RATE, a[0], a[1], NULL, "%", a[2], a[3], a[4]);
}

/* _record(metric_type: int, metric_name, value, unit, tags=None, correlation_id=None, agent_id=None) */
static PyObject *collector_record_typed(CollectorObject *self, PyObject *const *args, Py_ssize_t nargs,
                                        PyObject *kwnames) {
    PyObject *a[7];
    if (parse_args("_record", args, nargs, kwnames, record_names, 7, 4, a) < 0) return NULL;
    int type = (int)PyLong_AsLong(a[0]);
    if (type == -1 && PyErr_Occurred()) return NULL;
    return record_common(self, type, a[1], a[2], a[3], NULL, a[4], a[5], a[6]);
}

static PyObject *collector_close(CollectorObject *self, PyObject *unused) {
    if (self->state != STATE_OPEN) Py_RETURN_NONE;
    cache_clear(self, 1);
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walctl_close(self->collector);
    Py_END_ALLOW_THREADS
    self->state = STATE_CLOSED;
    if (status != WALCTL_OK) return error_from_status(status);
    Py_RETURN_NONE;
}

static PyObject *collector_sync(CollectorObject *self, PyObject *unused) {
    if (check_open(self) < 0) return NULL;
    if (self->state != STATE_OPEN) Py_RETURN_NONE;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walctl_sync(self->collector);
    Py_END_ALLOW_THREADS
    if (status != WALCTL_OK) return error_from_status(status);
    Py_RETURN_NONE;
}

static PyObject *collector_flush(CollectorObject *self, PyObject *args) {
    int timeout = 5000;
    if (!PyArg_ParseTuple(args, "|i", &timeout)) return NULL;
    if (check_open(self) < 0) return NULL;
    if (self->state != STATE_OPEN) Py_RETURN_NONE;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walctl_flush(self->collector, timeout);
    Py_END_ALLOW_THREADS
    if (status != WALCTL_OK) return error_from_status(status);
    Py_RETURN_NONE;
}

static PyObject *collector_stats(CollectorObject *self, PyObject *unused) {
    if (check_open(self) < 0) return NULL;
    walctl_stats stats;
    int status = walctl_stats_get(self->collector, &stats);
    if (status != WALCTL_OK) return error_from_status(status);
    return Py_BuildValue("{sKsKsKsK}", "emitted", stats.emitted, "rejected", stats.rejected, "dropped",
                         stats.dropped, "symbols", stats.symbols);
}

static PyObject *collector_get_state(CollectorObject *self, void *closure) {
    static const char *names[] = {"unopened", "open", "closed", "forked"};
    return PyUnicode_FromString(names[self->state]);
}
static PyObject *collector_get_may_block(CollectorObject *self, void *closure) {
    return PyBool_FromLong(self->may_block);
}
static PyObject *collector_get_raise(CollectorObject *self, void *closure) {
    return PyBool_FromLong(self->raise_on_reject);
}
static int collector_set_raise(CollectorObject *self, PyObject *value, void *closure) {
    int flag = PyObject_IsTrue(value);
    if (flag < 0) return -1;
    self->raise_on_reject = flag;
    return 0;
}

/* Handle type declared below. */
static PyObject *handle_make(CollectorObject *owner, int type, PyObject *name, PyObject *unit, PyObject *tags,
                             PyObject *agent_id);

/* _handle(metric_type: int, metric_name, unit, tags, agent_id) */
static PyObject *collector_handle(CollectorObject *self, PyObject *args) {
    int type;
    PyObject *name, *unit, *tags, *agent_id;
    if (!PyArg_ParseTuple(args, "iUUOO", &type, &name, &unit, &tags, &agent_id)) return NULL;
    if (check_open(self) < 0) return NULL;
    return handle_make(self, type, name, unit, tags, agent_id);
}

static PyMethodDef collector_methods[] = {
    {"_open", (PyCFunction)collector_open, METH_VARARGS, NULL},
    {"_detach", (PyCFunction)collector_detach, METH_NOARGS, NULL},
    {"_handle", (PyCFunction)collector_handle, METH_VARARGS, NULL},
    {"_record", (PyCFunction)(void (*)(void))collector_record_typed, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"record_timing", (PyCFunction)(void (*)(void))collector_record_timing, METH_FASTCALL | METH_KEYWORDS,
     "record_timing(metric_name, duration_ms, tags=None, correlation_id=None, agent_id=None) -> EmitResult\n\n"
     "Records a duration in milliseconds (unit 'ms'). Synchronous; the result is also awaitable."},
    {"record_counter", (PyCFunction)(void (*)(void))collector_record_counter, METH_FASTCALL | METH_KEYWORDS,
     "record_counter(metric_name, count=1, tags=None, correlation_id=None, agent_id=None) -> EmitResult\n\n"
     "Records a count of events (unit 'count'). Synchronous; the result is also awaitable."},
    {"record_gauge", (PyCFunction)(void (*)(void))collector_record_gauge, METH_FASTCALL | METH_KEYWORDS,
     "record_gauge(metric_name, value, unit, tags=None, correlation_id=None, agent_id=None) -> EmitResult\n\n"
     "Records a value that goes up and down, in `unit`. Synchronous; the result is also awaitable."},
    {"record_rate", (PyCFunction)(void (*)(void))collector_record_rate, METH_FASTCALL | METH_KEYWORDS,
     "record_rate(metric_name, rate_percent, tags=None, correlation_id=None, agent_id=None) -> EmitResult\n\n"
     "Records a percentage (unit '%'). Synchronous; the result is also awaitable."},
    {"_close", (PyCFunction)collector_close, METH_NOARGS, NULL},
    {"_sync", (PyCFunction)collector_sync, METH_NOARGS, NULL},
    {"_flush", (PyCFunction)collector_flush, METH_VARARGS, NULL},
    {"stats", (PyCFunction)collector_stats, METH_NOARGS,
     "stats() -> dict: records emitted, rejected, dropped, and symbols, since the collector opened."},
    {NULL},
};

static PyGetSetDef collector_getset[] = {
    {"state", (getter)collector_get_state, NULL, "'open', 'closed', 'forked' (inherited through fork()) or 'unopened'.",
     NULL},
    {"may_block", (getter)collector_get_may_block, NULL,
     "True when a record can wait (block policy or sync durability); the GIL is released around such calls.", NULL},
    {"raise_on_reject", (getter)collector_get_raise, (setter)collector_set_raise,
     "When True, a rejected record raises RejectedError instead of returning a rejected EmitResult.", NULL},
    {NULL},
};

static PyTypeObject CollectorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "walctl._native.Collector",
    .tp_basicsize = sizeof(CollectorObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = collector_new,
    .tp_dealloc = (destructor)collector_dealloc,
    .tp_methods = collector_methods,
    .tp_getset = collector_getset,
    .tp_weaklistoffset = offsetof(CollectorObject, weakreflist),
    .tp_doc = "The native collector (see walctl.MetricsCollector).",
};

/* ---------------------------------------------------------------- Handle */

typedef struct {
    PyObject_HEAD
    walctl_handle *handle;
    CollectorObject *owner;
    unsigned long generation;
    int type;
    PyObject *name, *unit, *tags, *agent_id;
} HandleObject;

static PyTypeObject HandleType;

static int handle_resolve(HandleObject *self) {
    CollectorObject *owner = self->owner;
    if (check_open(owner) < 0) return -1;
    Tags t;
    walctl_string name_s, unit_s, agent_s;
    PyObject *agent_hold = NULL;
    int result = -1;
    if (tags_fill(&t, self->tags, 0) < 0) goto done;
    if (utf8_of(self->name, &name_s, "metric_name") < 0 || utf8_of(self->unit, &unit_s, "unit") < 0) goto done;
    if (optional_utf8(self->agent_id, &agent_s, &agent_hold, "agent_id") < 0) goto done;
    walctl_handle *handle = NULL;
    int status = walctl_handle_open(owner->collector, self->type, name_s, unit_s, t.keys, t.values, t.count, agent_s,
                                    &handle);
    if (status != WALCTL_OK) {
        if (status > 0) {
            PyObject *error = PyObject_CallFunction(RejectedError ? RejectedError : PyExc_ValueError, "ssi",
                                                    walctl_status_name(status), walctl_last_error(), status);
            if (error != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(error), error);
                Py_DECREF(error);
            }
        } else {
            error_from_status(status);
        }
        goto done;
    }
    /* A handle of a replaced collector belongs to the parent process (fork): it is never released here. */
    if (self->handle != NULL && self->generation == owner->generation) walctl_handle_release(self->handle);
    self->handle = handle;
    self->generation = owner->generation;
    result = 0;
done:
    tags_release(&t);
    Py_XDECREF(agent_hold);
    return result;
}

static PyObject *handle_make(CollectorObject *owner, int type, PyObject *name, PyObject *unit, PyObject *tags,
                             PyObject *agent_id) {
    HandleObject *self = PyObject_New(HandleObject, &HandleType);
    if (self == NULL) return NULL;
    self->handle = NULL;
    Py_INCREF(owner);
    self->owner = owner;
    self->generation = owner->generation;
    self->type = type;
    Py_INCREF(name);
    self->name = name;
    Py_INCREF(unit);
    self->unit = unit;
    self->tags = (tags == Py_None) ? (Py_INCREF(Py_None), Py_None) : PyDict_Copy(tags);
    Py_INCREF(agent_id);
    self->agent_id = agent_id;
    if (self->tags == NULL || handle_resolve(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void handle_dealloc(HandleObject *self) {
    if (self->handle != NULL && self->owner != NULL && self->generation == self->owner->generation &&
        self->owner->state != STATE_FORKED)
        walctl_handle_release(self->handle);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->name);
    Py_XDECREF(self->unit);
    Py_XDECREF(self->tags);
    Py_XDECREF(self->agent_id);
    PyObject_Free(self);
}

static const char *const handle_record_names[] = {"value", "correlation_id"};

static PyObject *handle_record(HandleObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *value, *correlation_id = NULL;
    if (nargs == 1 && kwnames == NULL) {
        value = args[0];
    } else {
        PyObject *a[2];
        if (parse_args("record", args, nargs, kwnames, handle_record_names, 2, 1, a) < 0) return NULL;
        value = a[0];
        correlation_id = a[1];
    }
    CollectorObject *owner = self->owner;
    if (self->generation != owner->generation && handle_resolve(self) < 0) return NULL;
    double number = PyFloat_AsDouble(value);
    if (number == -1.0 && PyErr_Occurred()) return NULL;
    walctl_string correlation_s;
    PyObject *hold = NULL;
    if (optional_utf8(correlation_id, &correlation_s, &hold, "correlation_id") < 0) return NULL;
    uint64_t seq = 0;
    int status;
    if (owner->may_block) {
        Py_XINCREF(correlation_id);
        Py_BEGIN_ALLOW_THREADS
        status = walctl_handle_record(self->handle, number, correlation_s, &seq);
        Py_END_ALLOW_THREADS
        Py_XDECREF(correlation_id);
    } else {
        status = walctl_handle_record(self->handle, number, correlation_s, &seq);
    }
    Py_XDECREF(hold);
    return outcome(owner, status, seq);
}

static PyObject *handle_get_name(HandleObject *self, void *closure) { Py_INCREF(self->name); return self->name; }
static PyObject *handle_get_unit(HandleObject *self, void *closure) { Py_INCREF(self->unit); return self->unit; }
static PyObject *handle_get_type(HandleObject *self, void *closure) { return PyLong_FromLong(self->type); }
static PyObject *handle_get_tags(HandleObject *self, void *closure) {
    if (self->tags == Py_None) return PyDict_New();
    return PyDict_Copy(self->tags);
}

static PyMethodDef handle_methods[] = {
    {"record", (PyCFunction)(void (*)(void))handle_record, METH_FASTCALL | METH_KEYWORDS,
     "record(value, correlation_id=None) -> EmitResult\n\n"
     "Records `value` with the handle's name, type, unit, tags and agent (resolved once). The fast path."},
    {NULL},
};

static PyGetSetDef handle_getset[] = {
    {"name", (getter)handle_get_name, NULL, "The metric name.", NULL},
    {"unit", (getter)handle_get_unit, NULL, "The unit.", NULL},
    {"type_code", (getter)handle_get_type, NULL, "The metric type (0 timing, 1 counter, 2 gauge, 3 rate).", NULL},
    {"tags", (getter)handle_get_tags, NULL, "A copy of the tags.", NULL},
    {NULL},
};

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "walctl.MetricHandle",
    .tp_basicsize = sizeof(HandleObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_methods = handle_methods,
    .tp_getset = handle_getset,
    .tp_doc = "A metric resolved once (name, type, unit, tags, agent): `record(value)` is the fast path. Made by "
              "MetricsCollector.handle(). After fork() it follows its collector into the child's own log.",
};

/* ---------------------------------------------------------------- module */

static PyObject *module_set_exceptions(PyObject *module, PyObject *args) {
    PyObject *base, *rejected, *forked;
    if (!PyArg_ParseTuple(args, "OOO", &base, &rejected, &forked)) return NULL;
    Py_XSETREF(MetricsError, Py_NewRef(base));
    Py_XSETREF(RejectedError, Py_NewRef(rejected));
    Py_XSETREF(ForkedError, Py_NewRef(forked));
    Py_RETURN_NONE;
}

static PyObject *module_version(PyObject *module, PyObject *unused) { return PyUnicode_FromString(walctl_version()); }

static PyObject *module_status_name(PyObject *module, PyObject *arg) {
    long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred()) return NULL;
    return PyUnicode_FromString(walctl_status_name((int)code));
}

static PyMethodDef module_methods[] = {
    {"_set_exceptions", module_set_exceptions, METH_VARARGS, NULL},
    {"library_version", module_version, METH_NOARGS, "The version string of libwalctl_c."},
    {"status_name", module_status_name, METH_O, "The name of a walctl_status code."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "walctl._native", "CPython binding of libwalctl_c (walctl.h).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&ResultType) < 0 || PyType_Ready(&AwaiterType) < 0 || PyType_Ready(&CollectorType) < 0 ||
        PyType_Ready(&HandleType) < 0)
        return NULL;
    if (walctl_abi_version() != WALCTL_ABI_VERSION) {
        PyErr_Format(PyExc_ImportError, "libwalctl_c has ABI %d, this binding needs %d", walctl_abi_version(),
                     WALCTL_ABI_VERSION);
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    PyModule_AddObjectRef(module, "Collector", (PyObject *)&CollectorType);
    PyModule_AddObjectRef(module, "MetricHandle", (PyObject *)&HandleType);
    PyModule_AddObjectRef(module, "EmitResult", (PyObject *)&ResultType);
    PyModule_AddIntConstant(module, "ABI_VERSION", WALCTL_ABI_VERSION);
    return module;
}
