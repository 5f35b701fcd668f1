/* pyhost.h: roo-python's internals shared by its files: the application built from a Python
 * module, its steps, its state types, and the callbacks that run the user's functions. */
#ifndef ROO_PYHOST_H
#define ROO_PYHOST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>

#include <roo/roo.h>

#include "engine/host.h"

/* What a stage is in the roo pipeline. */
typedef enum roo__py_kind {
    ROO__PY_DECODER = 0,
    ROO__PY_STATELESS,
    ROO__PY_STATE,
    ROO__PY_SINK,
    ROO__PY_WIRE, /* a pipeline's messages between threads and workers (engine/host.h) */
} roo__py_kind;

/* How a state step finds its key (the step kinds of wallaroo._roo_plan, minus stateless). */
typedef enum roo__py_key {
    ROO__PY_KEY_NONE = 0,
    ROO__PY_KEY_CONST = 1, /* to_stateful: one state object, under the key "key" */
    ROO__PY_KEY_TEXT = 2,  /* to_state_partition: str (UTF-8), bytes, or int as a character */
    ROO__PY_KEY_U64 = 3,   /* to_state_partition_u64: an int, as 8 big-endian bytes */
} roo__py_key;

typedef struct roo__py_app roo__py_app;

/* One state name of the application: a roo state type whose objects hold a PyObject *. */
typedef struct roo__py_state {
    roo_state_type type; /* .ctx is this struct; .name is `name` */
    char *name;          /* roo's name (sanitized) */
    char *label;         /* the application's name for it, for logs */
    PyObject *factory;   /* zero-argument callable: a fresh state object */
    roo__py_app *app;
} roo__py_state;

/*
 * One roo stage: the ctx of its callback. A message between stages is a borrowed
 * PyObject * (8 bytes), since roo runs the next stages before roo_emit() returns; the
 * engine asks for its serialized bytes only to send it to another thread or worker
 * (roo__py_pack/unpack, host.c's DESIGN).
 */
typedef struct roo__py_stage {
    roo__py_app *app;
    roo__py_kind kind;
    const char *pipeline; /* the pipeline's name (owned by app) */
    char *name;           /* the step's name, for logs */
    PyObject *fn;         /* decoder, computation, state computation or encoder */
    bool multi;           /* _multi: the result is a list of outputs */
    roo__py_key key_kind;
    PyObject *key_fn;     /* partition function (ROO__PY_KEY_TEXT, _U64) */
    roo__py_state *state; /* state steps */
} roo__py_stage;

/* The whole application. Every field is set at set-up and read-only afterwards; the mutable
 * bits (error rate limit) are only touched with the GIL held. */
struct roo__py_app {
    PyObject *module;                  /* the application module */
    PyObject *wallaroo;                /* the embedded wallaroo module */
    PyObject *serialize, *deserialize; /* the module's own, or wallaroo's pickle */
    PyObject *repr_fn, *traceback_fn, *state_json_fn;
    char **pipelines;
    size_t npipelines;
    roo__py_stage **stages;
    size_t nstages;
    roo__py_state **states;
    size_t nstates;
    bool errors_exit; /* --python-errors=exit */

    /* Error logs, rate-limited (GIL held). */
    int64_t rl_window_ns;
    unsigned rl_in_window;
    unsigned long long rl_suppressed;
};

/* host.c: the callbacks. */
int roo__py_decode(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx);
int roo__py_compute(const void *msg, size_t len, roo_emitter *out, void *ctx);
int roo__py_key_of(const void *msg, size_t len, uint8_t *key_buf, void *ctx);
int roo__py_state_compute(const void *msg, size_t len, void *state, roo_emitter *out, void *ctx);
int roo__py_encode(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx);
int roo__py_state_init(void *state, const void *key, size_t key_len, void *ctx);
void roo__py_state_finish(void *state, void *ctx);
int roo__py_state_serialize(const void *state, uint8_t *buf, size_t cap, void *ctx);
int roo__py_state_deserialize(void *state, const uint8_t *buf, size_t len, void *ctx);
int roo__py_state_format(const void *state, char *buf, size_t cap, void *ctx);

/* host.c: the engine's hooks (engine/host.h): messages to and from other threads and
 * workers (ctx: the pipeline's ROO__PY_WIRE stage), and a processing thread's working
 * spans, during which it holds the GIL. */
int roo__py_pack(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx);
int roo__py_unpack(const uint8_t *buf, size_t len, roo_emitter *out, void *ctx);
void roo__py_thread_enter(void *ctx);
void roo__py_thread_leave(void *ctx);

/* Log the pending Python exception (or, with none pending, `what` alone) for a stage or a
 * state type, rate-limited, and clear it. Returns rc. GIL held. */
int roo__py_error(roo__py_app *app, const char *where, const char *what, PyObject *msg, int rc);

/* Serialize a message or state object (new reference, bytes) and back; NULL with a Python
 * exception on failure. GIL held. */
PyObject *roo__py_dumps(roo__py_app *app, PyObject *obj);
PyObject *roo__py_loads(roo__py_app *app, const void *buf, size_t len);

/* build.c: the roo application from wallaroo._roo_plan's answer. GIL held. */
int roo__py_build(roo_app *app, roo__py_app *pa, PyObject *plan);
void roo__py_app_clear(roo__py_app *pa);

#endif /* ROO_PYHOST_H */
