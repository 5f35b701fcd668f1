/* fconn.h: a non-blocking TCP connection that carries length-prefixed frames, on a loop.
 *
 * Frames are a u32 big-endian length and that many bytes. Reading checks each length
 * against the connection's limit before buffering the frame, and hands whole frames to
 * the on_frame callback; writing queues bytes and flushes them as the socket allows.
 * Used for the control, data and external channels (sources have their own framer).
 *
 * Ownership: the owner allocates the roo__fconn and frees it after on_close has run (or
 * after it called roo__fconn_close itself), but not from inside a callback of this
 * connection: defer the free to the loop's prepare hook or later.
 */
#ifndef ROO_FCONN_H
#define ROO_FCONN_H

#include <sys/uio.h>

#include "common/buf.h"
#include "loop/loop.h"
#include "net/auth.h"
#include "net/net.h"

typedef struct roo__fconn roo__fconn;

typedef struct roo__fconn_ops {
    /* A whole frame's payload, valid during the call. May close the connection. */
    void (*on_frame)(roo__fconn *c, const uint8_t *payload, size_t len);
    /* The connection ended: 0 (peer closed), a negative errno, ROO_EFRAMESIZE. Not called
     * after roo__fconn_close(). */
    void (*on_close)(roo__fconn *c, int err);
    /* Optional: an outgoing connect finished (err 0) or failed (then on_close is not called). */
    void (*on_connect)(roo__fconn *c, int err);
    /* Optional: the write queue drained below the low-water mark. */
    void (*on_drain)(roo__fconn *c);
} roo__fconn_ops;

struct roo__fconn {
    roo__io io;
    roo__loop *loop;
    const roo__fconn_ops *ops;
    void *data;
    size_t max_frame;
    roo__buf in;
    size_t in_off; /* where in `in` the frames not yet handed out begin */
    roo__buf out;
    size_t out_off;
    bool connecting;
    bool open;
    bool read_paused;
    bool close_when_flushed;
    char peer[300];
    uint64_t frames_in;
    /* The opening handshake (auth.h), if roo__fconn_auth() asked for one. */
    uint8_t auth_state; /* 0: none or done */
    roo__auth auth;
    size_t user_max_frame; /* max_frame once the handshake is done */
    roo__timer auth_timer;
};

#define ROO__AUTH_TIMEOUT_MS 10000

/* Adopt a connected (accepted) non-blocking socket. */
int roo__fconn_accept(roo__fconn *c, roo__loop *loop, int fd, const char *peer, size_t max_frame,
                      const roo__fconn_ops *ops, void *data);

/* Start a non-blocking connect; ops->on_connect reports the outcome. */
int roo__fconn_connect(roo__fconn *c, roo__loop *loop, const roo__addr *addr, size_t max_frame,
                       const roo__fconn_ops *ops, void *data);

/* The buffer to append whole frames to, then call roo__fconn_flush. */
static inline roo__buf *roo__fconn_outbuf(roo__fconn *c)
{
    return &c->out;
}

/*
 * Open the connection with the cluster handshake (auth.h) on `channel`: right after
 * roo__fconn_accept() (we are the server) or roo__fconn_connect() (the client), before the
 * loop runs again. Until both ends proved the secret nothing reaches on_frame, a client's
 * on_connect waits (and reports ROO_EAUTH if the server proves another secret), frames over
 * ROO__AUTH_FRAME_MAX close the connection, and one that takes over ROO__AUTH_TIMEOUT_MS is
 * closed (-ETIMEDOUT). A server that refuses a client calls on_close(c, ROO_EAUTH). The key
 * must outlive the connection.
 */
void roo__fconn_auth(roo__fconn *c, const roo__auth_key *key, uint8_t channel);

/* Write what is queued; returns 0 or the error that closed the connection (on_close ran). */
int roo__fconn_flush(roo__fconn *c);

/*
 * Send n bytes of whole frames that the caller keeps: written straight from p while nothing
 * else is queued and the socket takes them (no copy into the connection's buffer); what the
 * socket does not take is appended to that buffer and flushed later. Returns what
 * roo__fconn_flush returns.
 */
int roo__fconn_send(roo__fconn *c, const uint8_t *p, size_t n);

/* roo__fconn_send of n pieces, in order, with as few system calls as the socket allows. */
int roo__fconn_sendv(roo__fconn *c, const struct iovec *iov, size_t n);

/* Bytes queued and not yet written. */
static inline size_t roo__fconn_pending(const roo__fconn *c)
{
    return c->out.len - c->out_off;
}

void roo__fconn_pause_read(roo__fconn *c, bool paused);

/* Close once everything queued is written (then on_close(c, 0) runs). */
void roo__fconn_close_after_flush(roo__fconn *c);

/* Close now (no callback); queued bytes are dropped. Safe to call twice. */
void roo__fconn_close(roo__fconn *c);

/* Release buffers (after close). */
void roo__fconn_finish(roo__fconn *c);

/* The local address of the socket ("ip:port"). */
int roo__fconn_local(const roo__fconn *c, char *buf, size_t cap);

#endif /* ROO_FCONN_H */
