/* fconn.c: framed non-blocking connections: size-checked reads, queued writes. */
#include "net/fconn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (256u * 1024u)
#define DRAIN_LOW_WATER (256u * 1024u)
#define SHRINK_ABOVE (4u << 20) /* an idle buffer bigger than this is given back */

/* Where a connection is in its opening handshake (auth.h), if it has one. */
enum {
    AUTH_NONE = 0,
    AUTH_CLIENT_CONNECTING, /* the TCP connect is under way */
    AUTH_CLIENT_REPLY,      /* hello sent, waiting for the server's proof */
    AUTH_SERVER_HELLO,      /* waiting for the client's hello */
    AUTH_SERVER_PROOF,      /* proof sent, waiting for the client's */
};

static void update_events(roo__fconn *c)
{
    uint32_t ev = EPOLLRDHUP;

    if (!c->open)
        return;
    if (c->connecting || roo__fconn_pending(c))
        ev |= EPOLLOUT;
    if (!c->connecting && !c->read_paused)
        ev |= EPOLLIN;
    roo__io_set_events(c->loop, &c->io, ev);
}

static void client_fail(roo__fconn *c, int err);

/* The connection ended. A client still in its handshake reports it as a failed connect. */
static void fail(roo__fconn *c, int err)
{
    if (c->auth_state == AUTH_CLIENT_CONNECTING || c->auth_state == AUTH_CLIENT_REPLY) {
        client_fail(c, err ? err : ROO_ECLOSED);
        return;
    }
    roo__fconn_close(c);
    if (c->ops->on_close)
        c->ops->on_close(c, err);
}

/* ---- the opening handshake (auth.h) ---- */

static void put_frame(roo__fconn *c, const uint8_t *p, size_t n)
{
    uint8_t *q = roo__buf_reserve(&c->out, 4 + n);

    roo__store_be32(q, (uint32_t)n);
    memcpy(q + 4, p, n);
    c->out.len += 4 + n;
}

static void auth_done(roo__fconn *c)
{
    c->auth_state = AUTH_NONE;
    c->max_frame = c->user_max_frame;
    roo__timer_stop(c->loop, &c->auth_timer);
}

/* The client side failed before on_connect: report it there, as a failed connect. */
static void client_fail(roo__fconn *c, int err)
{
    roo__fconn_close(c);
    if (c->ops->on_connect)
        c->ops->on_connect(c, err);
}

static void auth_timeout(roo__loop *loop, roo__timer *t)
{
    roo__fconn *c = t->data;

    (void)loop;
    if (!c->open || c->auth_state == AUTH_NONE)
        return;
    roo__log_debug("%s: no handshake within %d ms", c->peer, ROO__AUTH_TIMEOUT_MS);
    if (c->auth_state == AUTH_CLIENT_CONNECTING || c->auth_state == AUTH_CLIENT_REPLY)
        client_fail(c, -ETIMEDOUT);
    else
        fail(c, -ETIMEDOUT);
}

void roo__fconn_auth(roo__fconn *c, const roo__auth_key *key, uint8_t channel)
{
    c->auth.key = key;
    c->auth.channel = channel;
    c->auth_state = c->connecting ? AUTH_CLIENT_CONNECTING : AUTH_SERVER_HELLO;
    c->user_max_frame = c->max_frame;
    c->max_frame = ROO__AUTH_FRAME_MAX;
    c->auth_timer.cb = auth_timeout;
    c->auth_timer.data = c;
    roo__timer_start(c->loop, &c->auth_timer, ROO__AUTH_TIMEOUT_MS);
}

/* A frame while the handshake runs. False: the connection was closed. */
static bool auth_frame(roo__fconn *c, const uint8_t *p, size_t n)
{
    uint8_t out[ROO__AUTH_REPLY_LEN];

    switch (c->auth_state) {
    case AUTH_CLIENT_REPLY:
        if (roo__auth_client_proof(&c->auth, p, n, out) < 0) {
            client_fail(c, ROO_EAUTH);
            return false;
        }
        put_frame(c, out, ROO__AUTH_PROOF_LEN);
        auth_done(c);
        if (c->ops->on_connect)
            c->ops->on_connect(c, 0);
        if (c->open)
            roo__fconn_flush(c);
        return c->open;
    case AUTH_SERVER_HELLO:
        if (roo__auth_server_reply(&c->auth, p, n, out) < 0) {
            fail(c, ROO_EAUTH);
            return false;
        }
        put_frame(c, out, ROO__AUTH_REPLY_LEN);
        c->auth_state = AUTH_SERVER_PROOF;
        return roo__fconn_flush(c) == 0;
    case AUTH_SERVER_PROOF:
        if (roo__auth_server_check(&c->auth, p, n) < 0) {
            fail(c, ROO_EAUTH);
            return false;
        }
        auth_done(c);
        return true;
    default:
        fail(c, ROO_EAUTH);
        return false;
    }
}

/*
 * Parse whole frames from c->in, from in_off; returns false if the connection was closed
 * meanwhile. A frame cut off by the read stays where it is (a later read appends the rest
 * after it) rather than being moved to the front each time: do_read moves it only when
 * the buffer has no room left behind it. in_off moves past a frame before it is handed
 * out, so a call from inside on_frame would not hand it out again.
 */
static bool parse_frames(roo__fconn *c)
{
    while (c->open && c->in.len - c->in_off >= 4) {
        size_t off = c->in_off;
        uint32_t n = roo__load_be32(c->in.data + off);
        if (n > c->max_frame) {
            roo__log_debug("%s: frame of %u bytes over the limit of %zu", c->peer, n, c->max_frame);
            fail(c, ROO_EFRAMESIZE);
            return false;
        }
        if (c->in.len - off - 4 < n)
            break;
        c->in_off = off + 4 + (size_t)n;
        if (ROO__UNLIKELY(c->auth_state != AUTH_NONE)) {
            if (!auth_frame(c, c->in.data + off + 4, n))
                return false;
            continue;
        }
        c->frames_in++;
        c->ops->on_frame(c, c->in.data + off + 4, n);
        if (c->read_paused)
            break;
    }
    if (!c->open)
        return false;
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
        if (c->in.cap > SHRINK_ABOVE)
            roo__buf_finish(&c->in); /* one big frame does not pin its buffer for ever */
    }
    return true;
}

static void do_read(roo__fconn *c)
{
    for (int rounds = 0; rounds < 16 && c->open && !c->read_paused; rounds++) {
        ssize_t n;
        size_t want = READ_CHUNK, have = c->in.len - c->in_off;

        /* A frame in progress may need more room than one chunk: make it fit at once. */
        if (have >= 4) {
            uint32_t fl = roo__load_be32(c->in.data + c->in_off);
            if (fl <= c->max_frame && 4 + (size_t)fl > have)
                want = ROO__MAX(want, 4 + (size_t)fl - have);
        }
        if (c->in_off > 0 && c->in.cap - c->in.len < want) {
            /* No room behind what waits: move it to the front (rather than grow). */
            memmove(c->in.data, c->in.data + c->in_off, have);
            c->in.len = have;
            c->in_off = 0;
        }
        roo__buf_reserve(&c->in, want);
        n = read(c->io.fd, c->in.data + c->in.len, want);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            fail(c, -errno);
            return;
        }
        if (n == 0) {
            fail(c, 0);
            return;
        }
        c->in.len += (size_t)n;
        if (!parse_frames(c))
            return;
        if ((size_t)n < want)
            return;
    }
}

/*
 * Write the pieces iov[*at, n) (the first from byte *off on) until done or the socket is
 * full, moving *at and *off past what went. Returns 0 (all written), 1 (the socket is full)
 * or the error that closed the connection.
 */
#define SENDV_MAX 64 /* pieces per call (IOV_MAX is at least 1024 on Linux) */
static int writev_some(roo__fconn *c, const struct iovec *iov, size_t n, size_t *at, size_t *off)
{
    size_t i = *at, o = *off;
    int rc = 0;

    while (i < n && iov[i].iov_len == o) {
        i++;
        o = 0;
    }
    while (i < n) {
        struct iovec v[SENDV_MAX];
        struct msghdr mh = { .msg_iov = v };
        size_t k = 0, left;
        ssize_t w;

        for (size_t j = i; j < n && k < SENDV_MAX; j++, k++) {
            v[k].iov_base = (uint8_t *)iov[j].iov_base + (j == i ? o : 0);
            v[k].iov_len = iov[j].iov_len - (j == i ? o : 0);
        }
        mh.msg_iovlen = k;
        w = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                rc = 1;
                break;
            }
            rc = -errno;
            fail(c, rc);
            break;
        }
        /* Past what the socket took: whole pieces, then part of one. */
        for (left = (size_t)w; left > 0 && left >= iov[i].iov_len - o;) {
            left -= iov[i].iov_len - o;
            o = 0;
            i++;
        }
        o += left;
        while (i < n && iov[i].iov_len == o) {
            i++;
            o = 0;
        }
    }
    *at = i;
    *off = o;
    return rc;
}

/* writev_some of one piece; *ret_written gets what went. */
static int write_some(roo__fconn *c, const uint8_t *p, size_t n, size_t *ret_written)
{
    struct iovec v = { (void *)p, n };
    size_t at = 0, off = 0;
    int rc = writev_some(c, &v, 1, &at, &off);

    *ret_written = at ? n : off;
    return rc;
}

int roo__fconn_flush(roo__fconn *c)
{
    if (c->open && !c->connecting && roo__fconn_pending(c)) {
        size_t w;
        int rc = write_some(c, c->out.data + c->out_off, roo__fconn_pending(c), &w);
        if (rc < 0)
            return rc;
        c->out_off += w;
    }
    if (c->open && c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        if (c->out.cap > SHRINK_ABOVE)
            roo__buf_finish(&c->out);
        if (c->close_when_flushed) {
            fail(c, 0);
            return 0;
        }
    } else if (c->out_off > (1u << 20) && c->out_off * 2 > c->out.len) {
        roo__buf_consume(&c->out, c->out_off);
        c->out_off = 0;
    }
    update_events(c);
    return c->open ? 0 : -ECONNRESET;
}

int roo__fconn_sendv(roo__fconn *c, const struct iovec *iov, size_t n)
{
    size_t at = 0, off = 0;
    int rc = 0;

    if (c->open && !c->connecting && !roo__fconn_pending(c)) {
        rc = writev_some(c, iov, n, &at, &off);
        if (rc < 0)
            return rc;
    }
    if (c->open)
        for (; at < n; at++, off = 0)
            roo__buf_append(&c->out, (const uint8_t *)iov[at].iov_base + off,
                            iov[at].iov_len - off);
    if (rc == 1) { /* the socket is full: no second try now, EPOLLOUT resumes */
        update_events(c);
        return 0;
    }
    return roo__fconn_flush(c);
}

int roo__fconn_send(roo__fconn *c, const uint8_t *p, size_t n)
{
    const struct iovec v = { (void *)p, n };

    return roo__fconn_sendv(c, &v, 1);
}

static void on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__fconn *c = io->data;

    (void)loop;
    if (c->connecting) {
        int rc = roo__tcp_connect_result(io->fd);
        c->connecting = false;
        if (rc < 0) {
            client_fail(c, rc);
            return;
        }
        update_events(c);
        if (c->auth_state == AUTH_CLIENT_CONNECTING) {
            uint8_t hello[ROO__AUTH_HELLO_LEN];
            roo__auth_client_hello(&c->auth, hello);
            put_frame(c, hello, sizeof(hello));
            c->auth_state = AUTH_CLIENT_REPLY;
            roo__fconn_flush(c);
            return;
        }
        if (c->ops->on_connect)
            c->ops->on_connect(c, 0);
        if (c->open)
            roo__fconn_flush(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (!c->read_paused || (events & (EPOLLHUP | EPOLLERR)))
            do_read(c);
        if (!c->open)
            return;
    }
    if (events & EPOLLOUT) {
        size_t before = roo__fconn_pending(c);
        if (roo__fconn_flush(c) < 0)
            return;
        if (before >= DRAIN_LOW_WATER && roo__fconn_pending(c) < DRAIN_LOW_WATER &&
            c->ops->on_drain)
            c->ops->on_drain(c);
    }
}

/*
 * Keepalive: a peer that vanished without a FIN or RST (its host died, a network split) is
 * noticed in about 30 s even when nothing is being written to it, so that a link it opens
 * again is not refused for ever as a second one.
 */
static void keepalive(int fd)
{
    int on = 1, idle = 15, intvl = 5, cnt = 3;

    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int setup(roo__fconn *c, roo__loop *loop, int fd, size_t max_frame,
                 const roo__fconn_ops *ops, void *data, bool connecting)
{
    keepalive(fd);
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->ops = ops;
    c->data = data;
    c->max_frame = max_frame;
    c->connecting = connecting;
    c->io.cb = on_io;
    c->io.data = c;
    c->open = true;
    return roo__io_start(loop, &c->io, fd, connecting ? EPOLLOUT : (EPOLLIN | EPOLLRDHUP));
}

int roo__fconn_accept(roo__fconn *c, roo__loop *loop, int fd, const char *peer, size_t max_frame,
                      const roo__fconn_ops *ops, void *data)
{
    int rc = setup(c, loop, fd, max_frame, ops, data, false);

    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    if (rc < 0) {
        c->open = false;
        close(fd);
    }
    return rc;
}

int roo__fconn_connect(roo__fconn *c, roo__loop *loop, const roo__addr *addr, size_t max_frame,
                       const roo__fconn_ops *ops, void *data)
{
    int fd, rc = roo__tcp_connect_start(addr, &fd);

    if (rc < 0)
        return rc;
    rc = setup(c, loop, fd, max_frame, ops, data, true);
    roo__addr_str(addr, c->peer, sizeof(c->peer));
    if (rc < 0) {
        c->open = false;
        close(fd);
    }
    return rc;
}

void roo__fconn_pause_read(roo__fconn *c, bool paused)
{
    if (c->read_paused == paused)
        return;
    c->read_paused = paused;
    update_events(c);
    /* Frames already buffered while paused are handed out on resume. */
    if (!paused && c->open && c->in.len - c->in_off >= 4)
        parse_frames(c);
}

void roo__fconn_close_after_flush(roo__fconn *c)
{
    c->close_when_flushed = true;
    c->read_paused = true;
    roo__fconn_flush(c);
}

void roo__fconn_close(roo__fconn *c)
{
    if (c->auth_timer.active)
        roo__timer_stop(c->loop, &c->auth_timer);
    if (!c->open)
        return;
    c->open = false;
    roo__io_stop(c->loop, &c->io);
    close(c->io.fd);
}

void roo__fconn_finish(roo__fconn *c)
{
    roo__fconn_close(c);
    roo__buf_finish(&c->in);
    roo__buf_finish(&c->out);
}

int roo__fconn_local(const roo__fconn *c, char *buf, size_t cap)
{
    return roo__tcp_local_str(c->io.fd, buf, cap);
}
