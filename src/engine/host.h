/* host.h: hooks for a host that runs another language's application on roo (roo-python):
 * messages that are live objects inside a thread, and a processing thread's working spans.
 *
 * DESIGN
 * A C application's messages are flat bytes that the engine copies freely. A host whose
 * messages are objects of its own runtime (a PyObject *) would have to serialize every one
 * at every step to fit that model. With message ops on a pipeline, a message of that
 * pipeline is an opaque handle (e.g. the 8 bytes of a pointer) that the engine passes from
 * step to step on one thread exactly as it passes bytes today; only when the engine routes
 * a message to another processing thread or another worker (roo__shard_route, for a state
 * step whose key lives elsewhere) does it call `pack` to turn the handle into bytes, and on
 * arrival `unpack` to turn the bytes back into a handle and emit it into the step. The
 * engine writes the message's partition in 8 bytes before the packed ones (shard-int.h,
 * ROO__PACKED_PREFIX): a move aborted while messages were held re-routes them through the
 * old table by that partition, since their keys are inside bytes only the host can read.
 *
 * Ownership: a handle passed to roo_emit() is borrowed for the duration of that call, like
 * any message; the engine never keeps it. `pack` must not consume it. `unpack` owns what
 * it makes: it emits it with roo_emit(out, ...) (which runs the step before returning) and
 * then releases it.
 *
 * Thread hooks: `enter` runs on a processing thread when it starts working (its start, and
 * each return from waiting for events), `leave` before it waits for events and when it
 * ends. Every callback of the application that runs on a processing thread runs between
 * the two, so a host with a global lock (Python's GIL) takes it once per wakeup, i.e. per
 * read buffer, route buffer and batch seal, instead of once per callback, and never holds
 * it while the thread sleeps in epoll. Callbacks on other threads (io thread: roo-ctl
 * query; main thread: recovery and the final finish) run outside any such span: the host
 * must still lock for those itself.
 *
 * Neither hook changes anything for applications that do not set them: one pointer test
 * per route and per loop wakeup.
 */
#ifndef ROO_ENGINE_HOST_H
#define ROO_ENGINE_HOST_H

#include <roo/roo.h>

typedef struct roo__msg_ops {
    /* Write the bytes of the message msg,len (a handle) into buf; return their length, or
     * more than cap (the engine calls again with a bigger buffer), or a negative code (the
     * message is dropped and counted as a callback error of the step it was going to). */
    int (*pack)(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx);
    /* Rebuild the message from bytes that pack wrote (on this or another worker running
     * the same application) and roo_emit() it to out; 0 or a negative code (dropped,
     * counted). */
    int (*unpack)(const uint8_t *buf, size_t len, roo_emitter *out, void *ctx);
    void *ctx;
} roo__msg_ops;

/* Messages of pipeline p, into every step, are handles (see DESIGN). Set-up only; the ops
 * are copied. Returns 0 or -EINVAL (pack or unpack missing). */
int roo__pipeline_set_msg_ops(roo_pipeline *p, const roo__msg_ops *ops);

typedef struct roo__thread_hooks {
    void (*enter)(void *ctx);
    void (*leave)(void *ctx);
    void *ctx;
} roo__thread_hooks;

/* Call enter/leave around every processing thread's working spans (see DESIGN). Set-up
 * only; copied. Returns 0 or -EINVAL (one of the two missing). */
int roo__app_set_thread_hooks(roo_app *app, const roo__thread_hooks *hooks);

#endif /* ROO_ENGINE_HOST_H */
