/* roo-sender-resumable.c: roo-sender --resumable, the client of docs/source-protocol.md. */
#include "roo-sender.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/buf.h"
#include "wire/wire.h"

/*
 * ---- --resumable: the client side of docs/source-protocol.md ----
 *
 * Every connection is one stream. Batches are generated in the same order as in plain
 * mode and handed round-robin to the streams; a stream keeps its frames until the worker
 * acknowledges them, so after a lost connection it reconnects (to the next --host address)
 * and sends again from the worker's welcome on. One poll loop drives every stream: no
 * socket ever blocks, so a stream that is reconnecting does not stall the others until
 * its turn in the round-robin comes and its backlog is full.
 */

#define BACKOFF_MIN_NS 100000000ULL
#define BACKOFF_MAX_NS 2000000000ULL
/* One TCP connect attempt; after it the next address is tried. */
#define ATTEMPT_NS 2000000000ULL
/* With --quiet, an outage is still reported once it lasts this long. */
#define SLOW_LOG_NS 2000000000ULL
#define REPLY_MAX (4u + ROO__SOURCE_FRAME_MAX)
#define NS_PER_S 1000000000ULL

enum stream_state {
    ST_WAIT,       /* disconnected; next attempt at retry_at */
    ST_CONNECTING, /* non-blocking connect() in progress */
    ST_HANDSHAKE,  /* magic + hello sent (or being sent), waiting for the welcome */
    ST_STREAMING,  /* welcomed: sending frames, reading acknowledgements */
};

struct stream {
    char name[ROO__STREAM_NAME_MAX + 1];
    /* Frames base..end-1 (acknowledged below base) are the bytes data[head..len). */
    uint8_t *data;
    size_t head, len, cap;
    uint64_t base, end;
    /*
     * Send cursor of the current connection: frames below wr_frame are written, frame
     * wr_frame starts at data[wr_pos] and wr_off of its bytes are written.
     */
    uint64_t wr_frame;
    size_t wr_pos, wr_off;
    uint64_t high; /* frames ever written completely, over all connections */

    enum stream_state state;
    int fd;
    size_t host; /* index into hosts: the address in use, or the one to try next */
    struct addrinfo *ai_list, *ai_cur;
    uint64_t deadline; /* ST_CONNECTING: attempt; ST_HANDSHAKE: welcome */
    uint64_t retry_at; /* ST_WAIT */
    uint64_t backoff;
    uint64_t down_since; /* without a welcomed connection since then; 0 while streaming */
    uint64_t ack_since;  /* ST_STREAMING: last acknowledgement progress */
    bool welcomed_once;
    bool tried; /* an attempt failed since down_since (giving up needs at least one) */
    bool lost;  /* a welcomed connection broke and the stream has not resumed yet */
    bool slow_logged;
    char lost_host[512];
    char lost_reason[256];
    char last_err[1024];

    uint8_t hello[ROO__SOURCE_MAGIC_LEN + 4 + ROO__SOURCE_FRAME_MAX];
    size_t hello_len, hello_off;
    uint8_t in[REPLY_MAX];
    size_t in_len;
};

static uint64_t ns_of(double seconds)
{
    return (uint64_t)(seconds * 1e9);
}

static const char *stream_host(const struct sender *s, const struct stream *st)
{
    return s->hosts[st->host];
}

static void stream_close(struct stream *st)
{
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
    if (st->ai_list)
        freeaddrinfo(st->ai_list);
    st->ai_list = NULL;
    st->ai_cur = NULL;
}

/* Byte position of frame k (base <= k <= end). */
static size_t stream_pos(const struct stream *st, uint64_t k, size_t frame_len)
{
    size_t pos = st->head;
    uint64_t f;

    if (frame_len)
        return pos + (size_t)(k - st->base) * frame_len;
    for (f = st->base; f < k; f++)
        pos += 4 + (size_t)tools_load_be32(st->data + pos);
    return pos;
}

/* A connect attempt (TCP, hello or welcome) failed: the next address, after a longer pause. */
static void attempt_failed(struct sender *s, struct stream *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void attempt_failed(struct sender *s, struct stream *st, const char *fmt, ...)
{
    char why[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(st->last_err, sizeof(st->last_err), "%s: %s", stream_host(s, st), why);
    st->tried = true;
    stream_close(st);
    st->backoff = st->backoff ? st->backoff * 2 : BACKOFF_MIN_NS;
    if (st->backoff > BACKOFF_MAX_NS)
        st->backoff = BACKOFF_MAX_NS;
    st->retry_at = tools_now_ns() + st->backoff;
    st->host = (st->host + 1) % s->nhosts;
    st->state = ST_WAIT;
}

/* A welcomed connection broke: remember why (logged once the stream resumes), then reconnect. */
static void stream_lost(struct sender *s, struct stream *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stream_lost(struct sender *s, struct stream *st, const char *fmt, ...)
{
    va_list ap;
    uint64_t now = tools_now_ns();

    va_start(ap, fmt);
    vsnprintf(st->lost_reason, sizeof(st->lost_reason), fmt, ap);
    va_end(ap);
    snprintf(st->lost_host, sizeof(st->lost_host), "%s", stream_host(s, st));
    snprintf(st->last_err, sizeof(st->last_err), "%s: %s", st->lost_host, st->lost_reason);
    stream_close(st);
    st->lost = true;
    st->tried = false;
    st->slow_logged = false;
    st->down_since = now;
    st->backoff = BACKOFF_MIN_NS;
    st->retry_at = now + st->backoff;
    st->host = (st->host + 1) % s->nhosts;
    st->state = ST_WAIT;
}

/* A failure in ST_HANDSHAKE is a failed attempt; in ST_STREAMING the loss of the connection. */
#define stream_broken(s, st, ...)                                                                  \
    ((st)->state == ST_STREAMING ? stream_lost((s), (st), __VA_ARGS__)                             \
                                 : attempt_failed((s), (st), __VA_ARGS__))

/* Writes the hello, then (welcomed) frames, until done or the socket is full. */
static void stream_flush(struct sender *s, struct stream *st)
{
    uint64_t old, upto;
    size_t fl;
    ssize_t n;

    while (st->hello_off < st->hello_len) {
        n = write(st->fd, st->hello + st->hello_off, st->hello_len - st->hello_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                attempt_failed(s, st, "sending the hello: %s", strerror(errno));
            return;
        }
        st->hello_off += (size_t)n;
    }
    if (st->state != ST_STREAMING)
        return;
    while (st->wr_pos + st->wr_off < st->len) {
        n = write(st->fd, st->data + st->wr_pos + st->wr_off, st->len - st->wr_pos - st->wr_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                stream_lost(s, st, "write: %s", strerror(errno));
            return;
        }
        /* Nothing was outstanding: the acknowledgement clock starts now. */
        if (st->wr_frame == st->base && st->wr_off == 0)
            st->ack_since = tools_now_ns();
        st->wr_off += (size_t)n;
        old = st->wr_frame;
        if (s->frame_len) {
            uint64_t whole = st->wr_off / s->frame_len;
            if (whole > st->end - st->wr_frame)
                whole = st->end - st->wr_frame;
            st->wr_pos += (size_t)whole * s->frame_len;
            st->wr_off -= (size_t)whole * s->frame_len;
            st->wr_frame += whole;
        }
        while (st->wr_frame < st->end) {
            fl = 4 + (size_t)tools_load_be32(st->data + st->wr_pos);
            if (st->wr_off < fl)
                break;
            st->wr_pos += fl;
            st->wr_off -= fl;
            st->wr_frame++;
        }
        if (old < st->high) {
            upto = st->wr_frame < st->high ? st->wr_frame : st->high;
            s->resent += upto - old;
        }
        if (st->wr_frame > st->high)
            st->high = st->wr_frame;
    }
}

/* Appends n whole frames (len bytes) to the stream's backlog. */
static int stream_append(struct stream *st, const uint8_t *p, size_t len, uint64_t n)
{
    size_t live = st->len - st->head, cap;
    uint8_t *nd;

    if (st->cap - st->len < len && st->head > 0) {
        memmove(st->data, st->data + st->head, live);
        if (st->wr_pos >= st->head)
            st->wr_pos -= st->head;
        else
            st->wr_pos = 0; /* stale: set again by the next welcome */
        st->len = live;
        st->head = 0;
    }
    /* Keep at least half the buffer free after a compaction so moving bytes stays amortised. */
    if (st->cap - st->len < len || (st->head == 0 && st->cap < 2 * (live + len))) {
        cap = st->cap ? st->cap : 65536;
        while (cap < 2 * (live + len))
            cap *= 2;
        if (cap != st->cap) {
            nd = realloc(st->data, cap);
            if (!nd)
                return -ENOMEM;
            /* Huge pages: a page fault per 4 KiB of backlog is dear on a VM. */
            if (cap >= (2u << 20))
                madvise((void *)((uintptr_t)nd & ~(uintptr_t)4095), cap, MADV_HUGEPAGE);
            st->data = nd;
            st->cap = cap;
        }
    }
    memcpy(st->data + st->len, p, len);
    st->len += len;
    st->end += n;
    return 0;
}

static void log_resumed(struct sender *s, struct stream *st, uint64_t from)
{
    if (!s->opt.quiet || st->slow_logged)
        tools_log(PROG,
                  "stream %s: connection to %s lost (%s); resuming at frame %" PRIu64 " on %s",
                  st->name, st->lost_host, st->lost_reason, from, stream_host(s, st));
}

/* One SourceReply. Returns <0 on a fatal inconsistency (logged), 0 otherwise. */
static int stream_reply(struct sender *s, struct stream *st, const uint8_t *p, size_t len)
{
    roo__source_reply_kind kind;
    uint64_t v;
    char text[ROO__SOURCE_FRAME_MAX + 1];
    size_t pos;

    if (roo__wire_source_reply_decode(p, len, &kind, &v, text, sizeof(text)) < 0) {
        stream_broken(s, st, "undecodable reply of %zu bytes", len);
        return 0;
    }
    switch (kind) {
    case ROO__SRC_WELCOME:
        if (st->state != ST_HANDSHAKE) {
            stream_lost(s, st, "a second welcome");
            return 0;
        }
        if (v < st->base) {
            tools_log(PROG,
                      "stream %s: %s asks to resume at frame %" PRIu64 ", but frames below %" PRIu64
                      " were acknowledged and are no longer kept",
                      st->name, stream_host(s, st), v, st->base);
            return -EPROTO;
        }
        if (v > st->high) {
            tools_log(PROG,
                      "stream %s: %s says the stream continues at frame %" PRIu64
                      ", but only %" PRIu64
                      " frames were ever sent on it (is the name used by another sender?)",
                      st->name, stream_host(s, st), v, st->high);
            return -EPROTO;
        }
        pos = stream_pos(st, v, s->frame_len);
        st->wr_frame = v;
        st->wr_pos = pos;
        st->wr_off = 0;
        st->state = ST_STREAMING;
        st->ack_since = tools_now_ns();
        st->backoff = 0;
        st->down_since = 0;
        st->welcomed_once = true;
        if (st->lost) {
            s->reconnects++;
            log_resumed(s, st, v);
            st->lost = false;
        }
        st->slow_logged = false;
        return 0;
    case ROO__SRC_ACK:
        if (st->state != ST_STREAMING) {
            attempt_failed(s, st, "an acknowledgement before the welcome");
            return 0;
        }
        if (v > st->wr_frame) {
            stream_lost(s, st,
                        "acknowledged frame %" PRIu64 " but only frames below %" PRIu64
                        " were sent on this connection",
                        v, st->wr_frame);
            return 0;
        }
        if (v > st->base) {
            pos = stream_pos(st, v, s->frame_len);
            st->head = pos;
            st->base = v;
            st->ack_since = tools_now_ns();
            if (st->head == st->len && st->wr_pos == st->len && st->wr_off == 0) {
                st->head = st->len = st->wr_pos = 0;
            }
        }
        return 0;
    case ROO__SRC_REFUSED:
        tools_log(PROG, "stream %s: %s refused the stream: %s", st->name, stream_host(s, st), text);
        if (st->state == ST_STREAMING)
            stream_lost(s, st, "refused: %s", text);
        else
            attempt_failed(s, st, "refused: %s", text);
        return 0;
    }
    return 0;
}

/* Reads and handles whatever replies arrived. Returns <0 on a fatal inconsistency. */
static int stream_read(struct sender *s, struct stream *st)
{
    size_t off;
    uint32_t len;
    ssize_t n;
    int rc;

    for (;;) {
        n = read(st->fd, st->in + st->in_len, sizeof(st->in) - st->in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                stream_broken(s, st, "read: %s", strerror(errno));
            return 0;
        }
        if (n == 0) {
            stream_broken(s, st, "closed by the worker");
            return 0;
        }
        st->in_len += (size_t)n;
        off = 0;
        while (st->in_len - off >= 4) {
            len = tools_load_be32(st->in + off);
            if (len > ROO__SOURCE_FRAME_MAX) {
                stream_broken(s, st, "bad reply: length %u", len);
                return 0;
            }
            if (st->in_len - off - 4 < len)
                break;
            rc = stream_reply(s, st, st->in + off + 4, len);
            if (rc < 0)
                return rc;
            if (st->state != ST_STREAMING && st->state != ST_HANDSHAKE)
                return 0; /* closed (refused, protocol error) */
            off += 4 + len;
        }
        memmove(st->in, st->in + off, st->in_len - off);
        st->in_len -= off;
    }
}

/* TCP is up: send the magic and the hello, then wait for the welcome. */
static void stream_connected(struct sender *s, struct stream *st)
{
    roo__buf b = { 0 };
    int one = 1, rc;

    freeaddrinfo(st->ai_list);
    st->ai_list = NULL;
    st->ai_cur = NULL;
    setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rc = roo__wire_source_hello_encode(st->name, st->base, &b);
    if (rc < 0 || b.len > sizeof(st->hello)) {
        roo__buf_finish(&b);
        attempt_failed(s, st, "cannot encode the hello");
        return;
    }
    memcpy(st->hello, b.data, b.len);
    st->hello_len = b.len;
    st->hello_off = 0;
    roo__buf_finish(&b);
    st->in_len = 0;
    st->state = ST_HANDSHAKE;
    st->deadline =
        tools_now_ns() + ns_of(s->opt.ack_timeout > 0 ? s->opt.ack_timeout : DEFAULT_ACK_TIMEOUT);
    stream_flush(s, st);
}

/* Tries the resolved addresses from ai_cur on until one connects or is in progress. */
static void stream_try_addrs(struct sender *s, struct stream *st)
{
    int fd, err = EHOSTUNREACH;

    for (; st->ai_cur; st->ai_cur = st->ai_cur->ai_next) {
        const struct addrinfo *ai = st->ai_cur;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        st->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            stream_connected(s, st);
            return;
        }
        if (errno == EINPROGRESS) {
            st->state = ST_CONNECTING;
            st->deadline = tools_now_ns() + ATTEMPT_NS;
            return;
        }
        err = errno;
        close(fd);
        st->fd = -1;
    }
    attempt_failed(s, st, "%s", strerror(err));
}

static void stream_connect(struct sender *s, struct stream *st)
{
    char err[512];

    if (tools_resolve(stream_host(s, st), false, &st->ai_list, err, sizeof(err)) < 0) {
        st->ai_list = NULL;
        attempt_failed(s, st, "%s", err);
        return;
    }
    st->ai_cur = st->ai_list;
    stream_try_addrs(s, st);
}

/* The connect in progress finished (or timed out when err is ETIMEDOUT). */
static void stream_connect_done(struct sender *s, struct stream *st, int err)
{
    socklen_t len = sizeof(err);

    if (!err && getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (!err) {
        stream_connected(s, st);
        return;
    }
    close(st->fd);
    st->fd = -1;
    st->ai_cur = st->ai_cur->ai_next;
    if (st->ai_cur) {
        stream_try_addrs(s, st);
        return;
    }
    attempt_failed(s, st, "%s", strerror(err));
}

static int split_hosts(struct sender *s)
{
    const char *p = s->opt.hosts, *comma;
    size_t n;

    s->nhosts = 1;
    for (comma = p; (comma = strchr(comma, ',')); comma++)
        s->nhosts++;
    s->hosts = calloc(s->nhosts, sizeof(*s->hosts));
    if (!s->hosts)
        return -ENOMEM;
    for (n = 0; n < s->nhosts; n++) {
        comma = strchr(p, ',');
        s->hosts[n] = comma ? strndup(p, (size_t)(comma - p)) : strdup(p);
        if (!s->hosts[n])
            return -ENOMEM;
        p = comma ? comma + 1 : p;
    }
    return 0;
}

static int streams_init(struct sender *s)
{
    char base[ROO__STREAM_NAME_MAX + 64];
    struct stream *st;
    uint64_t now = tools_now_ns();
    size_t k;
    int n;

    if (split_hosts(s) < 0)
        return -ENOMEM;
    if (s->opt.stream)
        snprintf(base, sizeof(base), "%s", s->opt.stream);
    else
        snprintf(base, sizeof(base), "roo-sender-%" PRIu64 "-%ld", s->opt.seed, (long)getpid());
    s->nstreams = s->nhosts * (size_t)s->opt.conns_per_addr;
    s->streams = calloc(s->nstreams, sizeof(*s->streams));
    if (!s->streams)
        return -ENOMEM;
    for (k = 0; k < s->nstreams; k++) {
        st = &s->streams[k];
        st->fd = -1;
        if (s->nstreams == 1)
            n = snprintf(st->name, sizeof(st->name), "%s", base);
        else
            n = snprintf(st->name, sizeof(st->name), "%s-%zu", base, k + 1);
        if (n < 0 || (size_t)n >= sizeof(st->name))
            tools_usage_error(PROG, "--stream: '%s-%zu' is longer than %d bytes", base, k + 1,
                              ROO__STREAM_NAME_MAX);
        /* Connection k goes to the address plain mode would use; later ones rotate. */
        st->host = k / (size_t)s->opt.conns_per_addr;
        st->state = ST_WAIT;
        st->retry_at = now;
        st->down_since = now;
    }
    return 0;
}

void streams_free(struct sender *s)
{
    size_t k;

    for (k = 0; k < s->nstreams; k++) {
        stream_close(&s->streams[k]);
        free(s->streams[k].data);
    }
    free(s->streams);
    s->streams = NULL;
    for (k = 0; k < s->nhosts; k++)
        free(s->hosts[k]);
    free(s->hosts);
    s->hosts = NULL;
}

/* Timers of one stream: connect attempts, welcome and acknowledgement waits, giving up. */
static int stream_timers(struct sender *s, struct stream *st, uint64_t now, uint64_t *wake)
{
    const struct options *o = &s->opt;
    uint64_t t;

#define WAKE_AT(x)                                                                                 \
    do {                                                                                           \
        if ((x) < *wake)                                                                           \
            *wake = (x);                                                                           \
    } while (0)

    if (st->state == ST_STREAMING) {
        if (o->ack_timeout > 0 && (st->wr_frame > st->base || st->wr_off > 0)) {
            t = st->ack_since + ns_of(o->ack_timeout);
            if (now >= t) {
                stream_lost(s, st, "no acknowledgement for %g s", o->ack_timeout);
                /* falls through to the ST_WAIT handling below */
            } else {
                WAKE_AT(t);
                return 0;
            }
        } else {
            return 0;
        }
    }
    /* Not connected: give up after --connect-timeout without a welcomed connection. */
    t = st->down_since + ns_of(o->connect_timeout);
    if (now >= t && st->tried) {
        if (st->lost)
            tools_log(PROG,
                      "stream %s: no connection for %g s since the connection to %s was lost (%s); "
                      "last attempt: %s",
                      st->name, o->connect_timeout, st->lost_host, st->lost_reason, st->last_err);
        else
            tools_log(PROG, "stream %s: cannot connect for %g s; last attempt: %s", st->name,
                      o->connect_timeout, st->last_err[0] ? st->last_err : "none");
        return -ETIMEDOUT;
    }
    WAKE_AT(t);
    if (st->lost && !st->slow_logged) {
        t = st->down_since + SLOW_LOG_NS;
        if (now >= t) {
            tools_log(PROG,
                      "stream %s: connection to %s lost (%s); still reconnecting after %.1f s "
                      "(last attempt: %s)",
                      st->name, st->lost_host, st->lost_reason,
                      (double)(now - st->down_since) / 1e9, st->last_err);
            st->slow_logged = true;
        } else {
            WAKE_AT(t);
        }
    }
    switch (st->state) {
    case ST_WAIT:
        if (now >= st->retry_at) {
            stream_connect(s, st);
            if (st->state == ST_WAIT)
                WAKE_AT(st->retry_at);
            else if (st->state != ST_STREAMING)
                WAKE_AT(st->deadline);
        } else {
            WAKE_AT(st->retry_at);
        }
        break;
    case ST_CONNECTING:
        if (now >= st->deadline)
            stream_connect_done(s, st, ETIMEDOUT);
        if (st->state == ST_WAIT)
            WAKE_AT(st->retry_at);
        else
            WAKE_AT(st->deadline);
        break;
    case ST_HANDSHAKE:
        if (now >= st->deadline) {
            attempt_failed(s, st, "no welcome within %g s",
                           o->ack_timeout > 0 ? o->ack_timeout : DEFAULT_ACK_TIMEOUT);
            WAKE_AT(st->retry_at);
        } else {
            WAKE_AT(st->deadline);
        }
        break;
    case ST_STREAMING:
        break;
    }
#undef WAKE_AT
    return 0;
}

static int write_expected(const struct sender *s)
{
    int rc = tools_totals_write(s->opt.expected, &s->totals);

    if (rc < 0)
        tools_log(PROG, "cannot write %s: %s", s->opt.expected, strerror(-rc));
    return rc;
}

/* One line a second while messages are sent or acknowledged. */
static void progress_resumable(const struct sender *s, uint64_t *prev, uint64_t *prev_acked,
                               uint64_t *prev_t, uint64_t now)
{
    char a[32], b[32], c[32];
    uint64_t sent = 0, acked = 0;
    double dt = (double)(now - *prev_t) / 1e9;
    size_t k;

    for (k = 0; k < s->nstreams; k++) {
        sent += s->streams[k].high;
        acked += s->streams[k].base;
    }
    if (sent == *prev && acked == *prev_acked) {
        *prev_t = now;
        return;
    }
    *prev_acked = acked;
    tools_format_si((double)sent, a, sizeof(a));
    tools_format_si(dt > 0 ? (double)(sent - *prev) / dt : 0, b, sizeof(b));
    tools_format_si((double)acked, c, sizeof(c));
    tools_log(PROG, "%s msgs sent, %s msgs/s, %s acknowledged", a, b, c);
    *prev = sent;
    *prev_t = now;
}

/*
 * Generates and sends every message, keeping each stream's frames until acknowledged.
 * Returns 0 once every message is acknowledged, <0 after logging why not.
 */
int send_resumable(struct sender *s, uint64_t *sent_out, uint64_t *bytes_out, uint64_t *t0_out)
{
    const struct options *o = &s->opt;
    uint64_t total = o->messages, gen = 0, bytes = 0, per_batch = o->batch, n, got;
    uint64_t t0 = 0, now, wake, next_progress = 0, prog_sent = 0, prog_acked = 0, prog_t = 0, due;
    struct pollfd *pfds;
    size_t *pidx, np, k, gi = 0, len, rounds;
    bool started = false, gen_done = total == 0, expected_written = false, done;
    struct stream *st;
    int rc = 0, timeout;

    if (o->rate > 0) {
        double slice = o->rate * PACING_SLICE_S;

        if (slice < 1)
            slice = 1;
        if ((double)per_batch > slice)
            per_batch = (uint64_t)slice;
    }
    if (per_batch > o->backlog)
        per_batch = o->backlog;
    if (!o->file) {
        rc = sender_ensure_buf(s, (size_t)per_batch * VOTE_BYTES);
        if (rc < 0)
            return rc;
    }
    rc = streams_init(s);
    pfds = rc < 0 ? NULL : calloc(s->nstreams, sizeof(*pfds));
    pidx = rc < 0 ? NULL : calloc(s->nstreams, sizeof(*pidx));
    if (!pfds || !pidx) {
        tools_log(PROG, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        now = tools_now_ns();
        wake = UINT64_MAX;

        /* Every stream welcomed once: the run starts (and only now touches --save). */
        if (!started) {
            for (k = 0; k < s->nstreams && s->streams[k].welcomed_once; k++)
                ;
            if (k == s->nstreams) {
                started = true;
                if (o->save) {
                    s->save_fd = open(o->save, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                    if (s->save_fd < 0) {
                        rc = -errno;
                        tools_log(PROG, "cannot create %s: %s", o->save, strerror(errno));
                        goto out;
                    }
                }
                t0 = now;
                prog_t = now;
                next_progress = now + NS_PER_S;
            }
        }

        /* New batches, round-robin; at most one round per pass so replies get read. */
        for (rounds = 0; started && !gen_done && rounds < s->nstreams; rounds++) {
            st = &s->streams[gi];
            /* A connected stream writes its previous batch before it gets another. */
            if (st->state == ST_STREAMING && st->wr_pos + st->wr_off < st->len)
                break;
            n = total - gen < per_batch ? total - gen : per_batch;
            if (st->end - st->base + n > o->backlog)
                break;
            if (o->rate > 0) {
                due = t0 + (uint64_t)((double)gen / o->rate * 1e9);
                if (now < due) {
                    if (due < wake)
                        wake = due;
                    break;
                }
            }
            if (o->file) {
                rc = sender_fill_from_file(s, n, &got, &len);
                if (rc < 0)
                    goto out;
                if (got == 0) {
                    gen_done = true;
                    break;
                }
                n = got;
            } else {
                len = sender_fill_generated(s, n);
            }
            /* Written before the last batch leaves, as in plain mode. */
            if (o->expected && gen + n == total) {
                rc = write_expected(s);
                if (rc < 0)
                    goto out;
                expected_written = true;
            }
            if (s->save_fd >= 0) {
                rc = tools_write_all(s->save_fd, s->buf, len);
                if (rc < 0) {
                    tools_log(PROG, "cannot write %s: %s", o->save, strerror(-rc));
                    goto out;
                }
            }
            rc = stream_append(st, s->buf, len, n);
            if (rc < 0) {
                tools_log(PROG, "stream %s: out of memory for %" PRIu64 " unacknowledged messages",
                          st->name, st->end - st->base + n);
                goto out;
            }
            gen += n;
            bytes += len;
            gi = gi + 1 == s->nstreams ? 0 : gi + 1;
            if (gen == total)
                gen_done = true;
            if (st->state == ST_STREAMING)
                stream_flush(s, st);
            if (rounds + 1 == s->nstreams)
                wake = now; /* more to generate at once */
        }
        /* A file that ran out before --messages: nothing more will come. */
        if (o->file && !gen_done && !o->repeat && s->src.pos == s->src.size && started)
            gen_done = true;

        if (started && gen_done) {
            done = true;
            for (k = 0; k < s->nstreams && done; k++)
                done = s->streams[k].base == s->streams[k].end;
            if (done)
                break;
        }

        if (started && !o->quiet && now >= next_progress) {
            progress_resumable(s, &prog_sent, &prog_acked, &prog_t, now);
            next_progress = now + NS_PER_S;
        }
        if (started && !o->quiet && next_progress < wake)
            wake = next_progress;

        for (k = 0; k < s->nstreams; k++) {
            rc = stream_timers(s, &s->streams[k], now, &wake);
            if (rc < 0)
                goto out;
        }

        np = 0;
        for (k = 0; k < s->nstreams; k++) {
            st = &s->streams[k];
            if (st->fd < 0)
                continue;
            pfds[np].fd = st->fd;
            pfds[np].revents = 0;
            if (st->state == ST_CONNECTING)
                pfds[np].events = POLLOUT;
            else if (st->hello_off < st->hello_len ||
                     (st->state == ST_STREAMING && st->wr_pos + st->wr_off < st->len))
                pfds[np].events = POLLIN | POLLOUT;
            else
                pfds[np].events = POLLIN;
            pidx[np++] = k;
        }
        now = tools_now_ns();
        if (wake == UINT64_MAX)
            timeout = 1000;
        else if (wake <= now)
            timeout = 0;
        else
            timeout = (int)((wake - now + 999999) / 1000000);
        if (timeout > 1000)
            timeout = 1000;
        if (poll(pfds, np, timeout) < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            tools_log(PROG, "poll: %s", strerror(errno));
            goto out;
        }
        for (k = 0; k < np; k++) {
            short re = pfds[k].revents;

            st = &s->streams[pidx[k]];
            if (!re || st->fd != pfds[k].fd)
                continue;
            if (st->state == ST_CONNECTING) {
                stream_connect_done(s, st, 0);
                continue;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                rc = stream_read(s, st);
                if (rc < 0)
                    goto out;
            }
            if (st->fd == pfds[k].fd && (st->state == ST_HANDSHAKE || st->state == ST_STREAMING))
                stream_flush(s, st);
        }
    }
    /* Everything is acknowledged: close cleanly. */
    for (k = 0; k < s->nstreams; k++) {
        st = &s->streams[k];
        if (st->fd >= 0)
            shutdown(st->fd, SHUT_WR);
        stream_close(st);
    }
    if (o->expected && !expected_written) {
        rc = write_expected(s);
        if (rc < 0)
            goto out;
    }
    *sent_out = gen;
    *bytes_out = bytes;
    *t0_out = t0;
    rc = 0;
out:
    free(pfds);
    free(pidx);
    return rc;
}
