/* host.c: the roo callbacks of roo-python: each runs one user function of the Python
 * application (decoder, computation, partition, state computation, encoder, state class)
 * and turns its result, or its exception, into what roo expects.
 *
 * DESIGN
 * Threads and the GIL. roo calls these callbacks on its processing threads (--threads), on
 * the io thread (roo-ctl query: deserialize, format, finish) and on the main thread
 * (recovery: deserialize; the stop: finish). There is one interpreter. A processing thread
 * takes the GIL once per wakeup: the engine calls roo__py_thread_enter when the thread
 * starts working and roo__py_thread_leave before it waits in epoll (engine/host.h), so
 * every callback in between finds the GIL held and only checks a thread-local flag. That
 * span covers a whole read buffer (up to 512 KiB of frames), a route buffer and the
 * batch's seal, where each dirty key's state is serialized once. Callbacks on the other
 * threads run outside such a span and take the GIL for their own duration (gil_take). A
 * thread gets one Python thread state the first time it calls in, kept until the process
 * ends. Another thread that wants the GIL while a processing thread works gets it at the
 * interpreter's switch interval (5 ms), as between Python threads. Everything mutable here
 * (the error rate limit, each thread's caches) is used with the GIL held or is
 * thread-local.
 *
 * Messages are live objects: between steps a message is a PyObject * handle (8 bytes),
 * borrowed from the callback that emitted it, which holds its reference until roo_emit()
 * returns, since roo runs the next steps within that call on the same thread. Only when
 * the engine routes a message to a state step on another thread or worker does it ask
 * roo__py_pack for bytes (the module's serialize, else pickle), and roo__py_unpack turns
 * them back into an object on arrival (engine/host.h, message ops).
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

static _Thread_local PyThreadState *thread_ts; /* this thread's own, made on first use */
static _Thread_local bool thread_working;      /* in a working span: the GIL is held */

/* Callbacks pair gil_take with gil_give; inside a working span both do nothing. */
typedef struct gil {
    bool taken;
    PyGILState_STATE state;
} gil;

static void thread_state_make(void)
{
    /* A thread state of our own that outlives every call: PyGILState_Release frees the one
     * that PyGILState_Ensure made only when its count drops to zero, which this extra
     * count prevents. */
    PyGILState_Ensure();
    thread_ts = PyEval_SaveThread();
}

static inline gil gil_take(void)
{
    if (thread_working)
        return (gil){ false, PyGILState_UNLOCKED };
    if (!thread_ts)
        thread_state_make();
    return (gil){ true, PyGILState_Ensure() };
}

static inline void gil_give(gil g)
{
    if (g.taken)
        PyGILState_Release(g.state);
}

void roo__py_thread_enter(void *ctx)
{
    (void)ctx;
    if (!thread_ts)
        thread_state_make();
    PyEval_RestoreThread(thread_ts);
    thread_working = true;
}

void roo__py_thread_leave(void *ctx)
{
    (void)ctx;
    thread_working = false;
    thread_ts = PyEval_SaveThread();
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
                repr ? repr : "", repr ? ")" : "", suppressed ? " (earlier errors not logged)" : "",
                trace ? "\n" : "",
                !trace                ? ""
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

/* Send one output object to the stage after st: its handle, borrowed until roo_emit()
 * returns (see DESIGN). */
static inline int emit_obj(roo_emitter *out, PyObject *obj)
{
    return roo_emit(out, &obj, sizeof(obj));
}

/* ---- messages between threads and workers (engine/host.h) ---- */

static _Thread_local struct pending_pack {
    PyObject *obj; /* identifies the message; no reference */
    PyObject *bytes;
} pack_pending;

int roo__py_pack(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    roo__py_stage *st = ctx;
    PyObject *obj = handle_of(msg), *b = NULL;
    gil g = gil_take();
    size_t n;
    int rc;

    (void)len;
    if (pack_pending.bytes && pack_pending.obj == obj &&
        (size_t)PyBytes_GET_SIZE(pack_pending.bytes) <= cap) {
        b = pack_pending.bytes; /* the engine's second call, with room for what we said */
        pack_pending.bytes = NULL;
    }
    Py_CLEAR(pack_pending.bytes);
    if (!b)
        b = roo__py_dumps(st->app, obj);
    if (!b) {
        rc = stage_error(st,
                         "cannot serialize a message to send it to another thread or "
                         "worker; message dropped",
                         obj, ROO_ECALLBACK);
        goto out;
    }
    n = (size_t)PyBytes_GET_SIZE(b);
    if (n > ROO_MSG_MAX) {
        Py_DECREF(b);
        rc = stage_error(st, "a serialized message is larger than 16 MiB; message dropped", obj,
                         ROO_EMSGSIZE);
        goto out;
    }
    if (n > cap) {
        pack_pending.obj = obj;
        pack_pending.bytes = b;
    } else {
        memcpy(buf, PyBytes_AS_STRING(b), n);
        Py_DECREF(b);
    }
    rc = (int)n;
out:
    gil_give(g);
    return rc;
}

int roo__py_unpack(const uint8_t *buf, size_t len, roo_emitter *out, void *ctx)
{
    roo__py_stage *st = ctx;
    gil g = gil_take();
    PyObject *obj = roo__py_loads(st->app, buf, len);
    int rc = 0;

    if (!obj) {
        rc = stage_error(st,
                         "cannot deserialize a message from another thread or worker; "
                         "message dropped",
                         NULL, ROO_ECALLBACK);
    } else {
        (void)emit_obj(out, obj); /* runs the step, which reports its own errors */
        Py_DECREF(obj);
    }
    gil_give(g);
    return rc;
}

/* Send a step's result on: nothing for None, each element of a _multi step's list. */
static int emit_result(roo__py_stage *st, roo_emitter *out, PyObject *res, PyObject *in)
{
    char what[160];
    int rc = 0, r;

    if (res == Py_None)
        return 0;
    if (!st->multi)
        return emit_obj(out, res);
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
        r = emit_obj(out, item);
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
    gil g = gil_take();
    PyObject *bs = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)len);
    PyObject *obj = bs ? PyObject_CallOneArg(st->fn, bs) : NULL;
    int rc = 0;

    if (!obj) {
        rc = stage_error(st, "the decoder raised; its connection is closed", bs, ROO_EDECODE);
    } else {
        /* An output the next step cannot take is logged and dropped; the frame itself was
         * good, so the connection stays open. */
        if (obj != Py_None)
            (void)emit_obj(out, obj);
        Py_DECREF(obj);
    }
    Py_XDECREF(bs);
    gil_give(g);
    return rc;
}

int roo__py_compute(const void *msg, size_t len, roo_emitter *out, void *ctx)
{
    roo__py_stage *st = ctx;
    gil g = gil_take();
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
    gil_give(g);
    return rc;
}

/* ---- state steps ---- */

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
            return stage_error(st,
                               "the partition function returned an int that is not a "
                               "character; message dropped",
                               in, ROO_ECALLBACK);
        k = chr;
    }
    if (PyUnicode_Check(k)) {
        p = PyUnicode_AsUTF8AndSize(k, &n);
        if (!p) {
            Py_XDECREF(chr);
            return stage_error(st,
                               "the partition function's key is not valid text; message "
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
    PyObject *obj = handle_of(msg), *k;
    gil g;
    int rc;

    (void)len;
    if (st->key_kind == ROO__PY_KEY_CONST) {
        memcpy(key_buf, "key", 3);
        return 3;
    }
    g = gil_take();
    k = PyObject_CallOneArg(st->key_fn, obj);
    if (!k) {
        rc = stage_error(st, "the partition function raised; message dropped", obj, ROO_ECALLBACK);
    } else {
        rc = key_bytes(st, k, obj, key_buf);
        Py_DECREF(k);
    }
    gil_give(g);
    return rc;
}

int roo__py_state_compute(const void *msg, size_t len, void *state, roo_emitter *out, void *ctx)
{
    roo__py_stage *st = ctx;
    PyObject **slot = state;
    gil g = gil_take();
    PyObject *in = handle_of(msg), *res = NULL, *args[2];
    char what[200];
    int rc, save;

    (void)len;
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
        rc = stage_error(st,
                         "the state computation's save flag is not true or false; message "
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
    gil_give(g);
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
    gil g = gil_take();
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
    gil_give(g);
    return rc;
}

/* ---- state objects ---- */

int roo__py_state_init(void *state, const void *key, size_t key_len, void *ctx)
{
    roo__py_state *s = ctx;
    gil g = gil_take();
    PyObject *obj = PyObject_CallNoArgs(s->factory), *k;
    int rc = 0;

    if (!obj) {
        k = PyBytes_FromStringAndSize(key, (Py_ssize_t)key_len);
        rc = state_error(s,
                         "the state class raised making the state of a new key; message "
                         "dropped",
                         k, ROO_ECALLBACK);
        Py_XDECREF(k);
    } else {
        *(PyObject **)state = obj;
    }
    gil_give(g);
    return rc;
}

void roo__py_state_finish(void *state, void *ctx)
{
    PyObject **slot = state;
    gil g;

    (void)ctx;
    if (!*slot)
        return;
    g = gil_take();
    Py_CLEAR(*slot);
    gil_give(g);
}

int roo__py_state_serialize(const void *state, uint8_t *buf, size_t cap, void *ctx)
{
    roo__py_state *s = ctx;
    PyObject *obj = *(PyObject *const *)state, *b;
    gil g = gil_take();
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
            rc = state_error(s,
                             "a serialized state object is larger than 16 MiB; this update "
                             "is not saved",
                             obj, ROO_ECALLBACK);
            goto out;
        }
    }
    rc = put_bytes(&ser_pending, state, b, buf, cap);
out:
    gil_give(g);
    return rc;
}

int roo__py_state_deserialize(void *state, const uint8_t *buf, size_t len, void *ctx)
{
    roo__py_state *s = ctx;
    gil g = gil_take();
    PyObject *obj = roo__py_loads(s->app, buf, len);
    int rc = 0;

    if (!obj)
        rc = state_error(s,
                         "cannot rebuild a saved state object (was its class renamed or moved "
                         "since it was saved?)",
                         NULL, ROO_ESTATE);
    else
        *(PyObject **)state = obj;
    gil_give(g);
    return rc;
}

int roo__py_state_format(const void *state, char *buf, size_t cap, void *ctx)
{
    roo__py_state *s = ctx;
    PyObject *obj = *(PyObject *const *)state, *res, *b;
    gil g = gil_take();
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
    gil_give(g);
    return rc;
}
