/* host.c: the roo callbacks of roo-python: each runs one user function of the Python
 * application (decoder, computation, partition, state computation, encoder, state class)
 * and turns its result, or its exception, into what roo expects.
 *
 * DESIGN
 * Threads and the GIL. roo calls these callbacks on its processing threads (--threads), on
 * the io thread (roo-ctl query: deserialize, format, finish) and on the main thread
 * (recovery: deserialize; the stop: finish). There is one interpreter; every callback takes
 * the GIL for its own duration (gil_take / PyGILState_Release). The stages a callback emits
 * to run inside roo_emit(), on the same thread, so they take the GIL again recursively,
 * which costs a counter increment. A thread gets one Python thread state the first time it
 * calls in, kept until the process ends, so that releasing the GIL never tears it down.
 * Everything mutable here (the error rate limit, each thread's caches) is used with the GIL
 * held or is thread-local.
 *
 * Messages. Into a stateless step or a sink the message is a borrowed PyObject * (8 bytes):
 * roo runs those stages before roo_emit() returns, while the emitting callback still holds
 * its reference. Into a state step the message is the object's serialized bytes (the
 * module's serialize, else pickle): the engine may copy it to another thread or worker.
 * The key callback deserializes it to call the partition function and leaves the object in
 * a per-thread cache, since the engine calls the state computation right after the key, on
 * the same thread and the same bytes, when the key is local.
 *
 * Errors. An exception or a result of the wrong shape is logged (rate-limited) with the
 * pipeline, the step, a short repr of the message and the traceback, and the callback
 * returns a negative code: roo counts it, drops the message, and closes the connection for
 * a decoder.
 */
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "python/pyhost.h"

#define ERRORS_PER_SECOND 10
#define LOG_TEXT_MAX 1500 /* roo's log lines hold 2 KiB: keep the end of a long traceback */

/* ---- the GIL ---- */

static _Thread_local bool thread_ready;

static PyGILState_STATE gil_take(void)
{
    if (!thread_ready) {
        /* A thread state of our own that outlives this call: PyGILState_Release frees the
         * one that PyGILState_Ensure made only when its count drops to zero, which this
         * extra count prevents. */
        PyGILState_Ensure();
        PyEval_SaveThread();
        thread_ready = true;
    }
    return PyGILState_Ensure();
}

/* ---- errors ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool error_allowed(roo__py_app *app, unsigned long long *ret_suppressed)
{
    int64_t now = now_ns();

    if (now - app->rl_window_ns >= 1000000000) {
        app->rl_window_ns = now;
        app->rl_in_window = 0;
    }
    if (app->rl_in_window >= ERRORS_PER_SECOND) {
        app->rl_suppressed++;
        return false;
    }
    app->rl_in_window++;
    *ret_suppressed = app->rl_suppressed;
    app->rl_suppressed = 0;
    return true;
}

/* UTF-8 text of fn(arg) (a str), or of a fallback; the caller frees it. Never raises. */
static char *text_of(PyObject *fn, PyObject *arg, const char *fallback)
{
    PyObject *s = fn && arg ? PyObject_CallOneArg(fn, arg) : NULL;
    const char *t = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
    char *copy = strdup(t ? t : fallback);

    PyErr_Clear();
    Py_XDECREF(s);
    return copy;
}

int roo__py_error(roo__py_app *app, const char *where, const char *what, PyObject *msg, int rc)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    unsigned long long suppressed;
    char *repr = NULL, *trace = NULL;
    size_t tlen;

    if (PyErr_Occurred()) {
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value && tb)
            PyException_SetTraceback(value, tb);
    }
    if (error_allowed(app, &suppressed)) {
        if (msg)
            repr = text_of(app->repr_fn, msg, "?");
        if (value)
            trace = text_of(app->traceback_fn, value, "(no traceback)");
        tlen = trace ? strlen(trace) : 0;
        roo_log(ROO_LOG_WARN, "%s: %s%s%s%s%s%s%s", where, what, repr ? " (message: " : "",
                repr ? repr : "", repr ? ")" : "",
                suppressed ? " (earlier errors not logged)" : "", trace ? "\n" : "",
                !trace                 ? ""
                : tlen > LOG_TEXT_MAX ? trace + tlen - LOG_TEXT_MAX
                                       : trace);
        free(repr);
        free(trace);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (app->errors_exit) {
        roo_log(ROO_LOG_ERROR, "stopping at the first Python error (--python-errors=exit)");
        _exit(1);
    }
    return rc;
}

static int stage_error(roo__py_stage *st, const char *what, PyObject *msg, int rc)
{
    char where[300];

    snprintf(where, sizeof(where), "pipeline '%s', step '%s'", st->pipeline, st->name);
    return roo__py_error(st->app, where, what, msg, rc);
}

static int state_error(roo__py_state *s, const char *what, PyObject *msg, int rc)
{
    char where[300];

    snprintf(where, sizeof(where), "state '%s'", s->label);
    return roo__py_error(s->app, where, what, msg, rc);
}

/* ---- messages ---- */

/* Bytes-like result -> a new bytes object; anything else -> NULL without an exception. */
static PyObject *as_bytes(PyObject *o)
{
    if (PyBytes_Check(o)) {
        Py_INCREF(o);
        return o;
    }
    if (PyByteArray_Check(o) || PyMemoryView_Check(o))
        return PyBytes_FromObject(o);
    return NULL;
}

PyObject *roo__py_dumps(roo__py_app *app, PyObject *obj)
{
    PyObject *b = PyObject_CallOneArg(app->serialize, obj);

    if (b && !PyBytes_Check(b)) {
        PyObject *c = as_bytes(b);
        if (!c)
            PyErr_Format(PyExc_TypeError, "serialize returned %.40s, not bytes",
                         Py_TYPE(b)->tp_name);
        Py_DECREF(b);
        b = c;
    }
    return b;
}

PyObject *roo__py_loads(roo__py_app *app, const void *buf, size_t len)
{
    PyObject *bs = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len), *obj;

    if (!bs)
        return NULL;
    obj = PyObject_CallOneArg(app->deserialize, bs);
    Py_DECREF(bs);
    return obj;
}

static inline PyObject *handle_of(const void *msg)
{
    PyObject *o;
    memcpy(&o, msg, sizeof(o));
    return o;
}

/* Send one output object to the stage after st. */
static int emit_obj(roo__py_stage *st, roo_emitter *out, PyObject *obj)
{
    PyObject *b;
    int rc;

    if (!st->emit_bytes)
        return roo_emit(out, &obj, sizeof(obj));
    b = roo__py_dumps(st->app, obj);
    if (!b)
        return stage_error(st, "cannot serialize its output for the next step; output dropped",
                           obj, ROO_ECALLBACK);
    rc = roo_emit(out, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    if (rc < 0)
        return stage_error(st, "its serialized output is larger than 16 MiB; output dropped", obj,
                           rc);
    return 0;
}

/* Send a step's result on: nothing for None, each element of a _multi step's list. */
static int emit_result(roo__py_stage *st, roo_emitter *out, PyObject *res, PyObject *in)
{
    char what[160];
    int rc = 0, r;

    if (res == Py_None)
        return 0;
    if (!st->multi)
        return emit_obj(st, out, res);
    if (!PyList_Check(res) && !PyTuple_Check(res)) {
        snprintf(what, sizeof(what), "a _multi step returned %.40s, not a list; message dropped",
                 Py_TYPE(res)->tp_name);
        return stage_error(st, what, in, ROO_ECALLBACK);
    }
    /* The size is read again each time: later steps run user code that could change it. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(res); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(res, i);
        if (item == Py_None)
            continue;
        Py_INCREF(item);
        r = emit_obj(st, out, item);
        Py_DECREF(item);
        if (r < 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* ---- decoder and stateless steps ---- */

int roo__py_decode(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx)
{
    roo__py_stage *st = ctx;
    PyGILState_STATE g = gil_take();
    PyObject *bs = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)len);
    PyObject *obj = bs ? PyObject_CallOneArg(st->fn, bs) : NULL;
    int rc = 0;

    if (!obj) {
        rc = stage_error(st, "the decoder raised; its connection is closed", bs, ROO_EDECODE);
    } else {
        /* An output the next step cannot take is logged and dropped; the frame itself was
         * good, so the connection stays open. */
        if (obj != Py_None)
            (void)emit_obj(st, out, obj);
        Py_DECREF(obj);
    }
    Py_XDECREF(bs);
    PyGILState_Release(g);
    return rc;
}

int roo__py_compute(const void *msg, size_t len, roo_emitter *out, void *ctx)
{
    roo__py_stage *st = ctx;
    PyGILState_STATE g = gil_take();
    PyObject *in = handle_of(msg), *res;
    int rc;

    (void)len;
    res = PyObject_CallOneArg(st->fn, in);
    if (!res) {
        rc = stage_error(st, "the computation raised; message dropped", in, ROO_ECALLBACK);
    } else {
        rc = emit_result(st, out, res, in);
        Py_DECREF(res);
    }
    PyGILState_Release(g);
    return rc;
}

/* ---- state steps ---- */

/* The message the key callback last deserialized on this thread (see DESIGN). */
static _Thread_local struct {
    const roo__py_stage *st; /* the state step whose key callback it was */
    const void *msg;
    size_t len;
    PyObject *obj;
} key_cache;

static PyObject *message_of(roo__py_stage *st, const void *msg, size_t len)
{
    PyObject *obj;

    if (key_cache.obj && key_cache.st == st && key_cache.msg == msg && key_cache.len == len) {
        obj = key_cache.obj;
        key_cache.obj = NULL;
        return obj;
    }
    obj = roo__py_loads(st->app, msg, len);
    if (!obj)
        stage_error(st, "cannot deserialize a message for this step; message dropped", NULL, 0);
    return obj;
}

/* The key bytes of a partition function's result; -1 (logged) if it is not a key. */
static int key_bytes(roo__py_stage *st, PyObject *k, PyObject *in, uint8_t *key_buf)
{
    const char *p = NULL;
    Py_ssize_t n = 0;
    PyObject *chr = NULL;
    char what[200];
    int rc;

    if (st->key_kind == ROO__PY_KEY_U64) {
        unsigned long long v = PyLong_Check(k) ? PyLong_AsUnsignedLongLong(k) : 0;
        if (!PyLong_Check(k) || (v == (unsigned long long)-1 && PyErr_Occurred())) {
            snprintf(what, sizeof(what),
                     "the partition function returned %.40s, not an int in 0..2^64-1; message "
                     "dropped",
                     Py_TYPE(k)->tp_name);
            PyErr_Clear();
            return stage_error(st, what, in, ROO_ECALLBACK);
        }
        for (int i = 0; i < 8; i++)
            key_buf[i] = (uint8_t)(v >> (56 - 8 * i));
        return 8;
    }
    if (PyLong_Check(k)) {
        /* Wallaroo's rule: an int stands for a character (py3's bytes[0] is an int). */
        long v = PyLong_AsLong(k);
        chr = (v == -1 && PyErr_Occurred()) || v < 0 || v > 0x10ffff
                  ? NULL
                  : PyUnicode_FromOrdinal((int)v);
        if (!chr)
            return stage_error(st, "the partition function returned an int that is not a "
                                   "character; message dropped",
                               in, ROO_ECALLBACK);
        k = chr;
    }
    if (PyUnicode_Check(k)) {
        p = PyUnicode_AsUTF8AndSize(k, &n);
        if (!p) {
            Py_XDECREF(chr);
            return stage_error(st, "the partition function's key is not valid text; message "
                                   "dropped",
                               in, ROO_ECALLBACK);
        }
    } else if (PyBytes_Check(k)) {
        p = PyBytes_AS_STRING(k);
        n = PyBytes_GET_SIZE(k);
    } else {
        snprintf(what, sizeof(what),
                 "the partition function returned %.40s, not str or bytes; message dropped",
                 Py_TYPE(k)->tp_name);
        return stage_error(st, what, in, ROO_ECALLBACK);
    }
    if (n > ROO_KEY_MAX) {
        Py_XDECREF(chr);
        snprintf(what, sizeof(what), "a %zd-byte key is longer than roo's %d; message dropped", n,
                 ROO_KEY_MAX);
        return stage_error(st, what, in, ROO_EKEYSIZE);
    }
    memcpy(key_buf, p, (size_t)n);
    rc = (int)n;
    Py_XDECREF(chr);
    return rc;
}

int roo__py_key_of(const void *msg, size_t len, uint8_t *key_buf, void *ctx)
{
    roo__py_stage *st = ctx;
    PyGILState_STATE g;
    PyObject *obj, *k;
    int rc;

    if (st->key_kind == ROO__PY_KEY_CONST) {
        memcpy(key_buf, "key", 3);
        return 3;
    }
    g = gil_take();
    Py_CLEAR(key_cache.obj);
    obj = message_of(st, msg, len);
    if (!obj) {
        PyGILState_Release(g);
        return ROO_ECALLBACK;
    }
    k = PyObject_CallOneArg(st->key_fn, obj);
    if (!k) {
        rc = stage_error(st, "the partition function raised; message dropped", obj,
                         ROO_ECALLBACK);
    } else {
        rc = key_bytes(st, k, obj, key_buf);
        Py_DECREF(k);
    }
    if (rc >= 0) {
        key_cache.st = st;
        key_cache.msg = msg;
        key_cache.len = len;
        key_cache.obj = obj; /* the reference moves to the cache */
    } else {
        Py_DECREF(obj);
    }
    PyGILState_Release(g);
    return rc;
}

int roo__py_state_compute(const void *msg, size_t len, void *state, roo_emitter *out, void *ctx)
{
    roo__py_stage *st = ctx;
    PyObject **slot = state;
    PyGILState_STATE g = gil_take();
    PyObject *in = message_of(st, msg, len), *res = NULL, *args[2];
    char what[200];
    int rc, save;

    if (!in) {
        rc = ROO_ECALLBACK;
        goto out;
    }
    if (!*slot) {
        rc = stage_error(st, "the key has no state object; message dropped", in, ROO_ECALLBACK);
        goto out;
    }
    args[0] = in;
    args[1] = *slot;
    res = PyObject_Vectorcall(st->fn, args, 2, NULL);
    if (!res) {
        rc = stage_error(st,
                         "the state computation raised; message dropped (the state keeps what "
                         "it changed, unsaved)",
                         in, ROO_ECALLBACK);
        goto out;
    }
    if (!(PyTuple_Check(res) || PyList_Check(res)) || PySequence_Fast_GET_SIZE(res) != 2) {
        snprintf(what, sizeof(what),
                 "the state computation returned %.40s, not (output, save); message dropped",
                 Py_TYPE(res)->tp_name);
        rc = stage_error(st, what, in, ROO_ECALLBACK);
        goto out;
    }
    save = PyObject_IsTrue(PySequence_Fast_GET_ITEM(res, 1));
    if (save < 0) {
        rc = stage_error(st, "the state computation's save flag is not true or false; message "
                             "dropped",
                         in, ROO_ECALLBACK);
        goto out;
    }
    /* An output that cannot go on is logged and dropped, but the state change stands and is
     * saved as asked: the state must not depend on whether an output was deliverable. */
    (void)emit_result(st, out, PySequence_Fast_GET_ITEM(res, 0), in);
    rc = save ? ROO_SAVE : ROO_NO_SAVE;
out:
    Py_XDECREF(res);
    Py_XDECREF(in);
    PyGILState_Release(g);
    return rc;
}

/* ---- sinks ---- */

/* The bytes of a result that did not fit, for the engine's second call (same thread, same
 * object, a bigger buffer). `key` identifies the object; it holds no reference. */
typedef struct pending {
    const void *key;
    PyObject *bytes;
} pending;

static _Thread_local pending enc_pending, ser_pending, fmt_pending;

/* Copy b (a bytes object; the reference is taken) into buf, or keep it for the next call
 * if it does not fit. Returns its length. */
static int put_bytes(pending *pd, const void *key, PyObject *b, uint8_t *buf, size_t cap)
{
    size_t n = (size_t)PyBytes_GET_SIZE(b);

    if (n > cap) {
        Py_XSETREF(pd->bytes, b);
        pd->key = key;
        return (int)n;
    }
    memcpy(buf, PyBytes_AS_STRING(b), n);
    Py_DECREF(b);
    return (int)n;
}

static PyObject *take_pending(pending *pd, const void *key, size_t cap)
{
    PyObject *b = pd->bytes;

    if (!b || pd->key != key || (size_t)PyBytes_GET_SIZE(b) > cap) {
        Py_CLEAR(pd->bytes);
        return NULL;
    }
    pd->bytes = NULL;
    return b;
}

int roo__py_encode(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    roo__py_stage *st = ctx;
    PyObject *in = handle_of(msg), *res, *b;
    PyGILState_STATE g = gil_take();
    char what[160];
    int rc;

    (void)len;
    b = take_pending(&enc_pending, in, cap);
    if (!b) {
        res = PyObject_CallOneArg(st->fn, in);
        if (!res) {
            rc = stage_error(st, "the encoder raised; message dropped", in, ROO_ECALLBACK);
            goto out;
        }
        if (res == Py_None) {
            Py_DECREF(res);
            rc = 0;
            goto out;
        }
        b = PyUnicode_Check(res) ? PyUnicode_AsUTF8String(res) : as_bytes(res);
        if (!b) {
            snprintf(what, sizeof(what),
                     "the encoder returned %.40s, not bytes or str; message dropped",
                     Py_TYPE(res)->tp_name);
            rc = stage_error(st, what, in, ROO_ECALLBACK);
            Py_DECREF(res);
            goto out;
        }
        Py_DECREF(res);
        if (PyBytes_GET_SIZE(b) > INT_MAX / 2) {
            Py_DECREF(b);
            rc = stage_error(st, "the encoder's output is too large; message dropped", in,
                             ROO_EMSGSIZE);
            goto out;
        }
    }
    rc = put_bytes(&enc_pending, in, b, buf, cap);
out:
    PyGILState_Release(g);
    return rc;
}

/* ---- state objects ---- */

int roo__py_state_init(void *state, const void *key, size_t key_len, void *ctx)
{
    roo__py_state *s = ctx;
    PyGILState_STATE g = gil_take();
    PyObject *obj = PyObject_CallNoArgs(s->factory), *k;
    int rc = 0;

    if (!obj) {
        k = PyBytes_FromStringAndSize(key, (Py_ssize_t)key_len);
        rc = state_error(s, "the state class raised making the state of a new key; message "
                            "dropped",
                         k, ROO_ECALLBACK);
        Py_XDECREF(k);
    } else {
        *(PyObject **)state = obj;
    }
    PyGILState_Release(g);
    return rc;
}

void roo__py_state_finish(void *state, void *ctx)
{
    PyObject **slot = state;
    PyGILState_STATE g;

    (void)ctx;
    if (!*slot)
        return;
    g = gil_take();
    Py_CLEAR(*slot);
    PyGILState_Release(g);
}

int roo__py_state_serialize(const void *state, uint8_t *buf, size_t cap, void *ctx)
{
    roo__py_state *s = ctx;
    PyObject *obj = *(PyObject *const *)state, *b;
    PyGILState_STATE g = gil_take();
    int rc;

    b = take_pending(&ser_pending, state, cap);
    if (!b) {
        b = roo__py_dumps(s->app, obj ? obj : Py_None);
        if (!b) {
            rc = state_error(s, "cannot serialize a state object; this update is not saved", obj,
                             ROO_ECALLBACK);
            goto out;
        }
        if (PyBytes_GET_SIZE(b) > ROO_MSG_MAX) {
            Py_DECREF(b);
            rc = state_error(s, "a serialized state object is larger than 16 MiB; this update "
                                "is not saved",
                             obj, ROO_ECALLBACK);
            goto out;
        }
    }
    rc = put_bytes(&ser_pending, state, b, buf, cap);
out:
    PyGILState_Release(g);
    return rc;
}

int roo__py_state_deserialize(void *state, const uint8_t *buf, size_t len, void *ctx)
{
    roo__py_state *s = ctx;
    PyGILState_STATE g = gil_take();
    PyObject *obj = roo__py_loads(s->app, buf, len);
    int rc = 0;

    if (!obj)
        rc = state_error(s,
                         "cannot rebuild a saved state object (was its class renamed or moved "
                         "since it was saved?)",
                         NULL, ROO_ESTATE);
    else
        *(PyObject **)state = obj;
    PyGILState_Release(g);
    return rc;
}

int roo__py_state_format(const void *state, char *buf, size_t cap, void *ctx)
{
    roo__py_state *s = ctx;
    PyObject *obj = *(PyObject *const *)state, *res, *b;
    PyGILState_STATE g = gil_take();
    int rc;

    b = take_pending(&fmt_pending, state, cap);
    if (!b) {
        res = PyObject_CallOneArg(s->app->state_json_fn, obj ? obj : Py_None);
        b = res && PyUnicode_Check(res) ? PyUnicode_AsUTF8String(res) : NULL;
        Py_XDECREF(res);
        if (!b) {
            rc = state_error(s, "cannot show a state object as JSON", obj, ROO_ECALLBACK);
            goto out;
        }
    }
    rc = put_bytes(&fmt_pending, state, b, (uint8_t *)buf, cap);
out:
    PyGILState_Release(g);
    return rc;
}
