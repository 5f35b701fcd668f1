/* io.c: the io thread: accepts source connections and delivers committed output to sinks.
 *
 * Sources: the thread owns the --in listeners. Each accepted connection goes, round-robin,
 * to a shard's inbox; the shard owns it from then on.
 *
 * Sinks: one TCP client per --out address. Committed batches arrive in commit order; each
 * sink keeps a FIFO of the batches whose output it still has to write, and writes them with
 * one sendmsg() of up to 64 buffers at a time. A batch goes home to its shard when every
 * sink has written its part. While a sink is down (not started yet, restarting) the FIFO
 * grows until the shards run out of batches and stop reading: output waits, nothing is
 * dropped. Connecting retries with exponential backoff (50 ms doubling to 2 s).
 *
 * Resend after a reconnect: bytes handed to the kernel are not bytes the sink has read. A
 * sink that dies loses what was in flight and in its receive buffer, so each sink keeps the
 * last --sink-replay bytes it wrote in a ring, with the stream offsets where batches began.
 * After a reconnect it first resends from the oldest batch start still in the ring. The
 * sink may thus see up to --sink-replay bytes of output a second time (at least once).
 *
 *   ring: [ ...older output dropped... | batch k | batch k+1 | ... | last written ]
 *          ^ written - ring_len          ^ starts[0]                        ^ written
 */
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/ring.h"
#include "engine/engine-int.h"

#define MAX_IOV 64

struct roo__sink {
    roo__engine *eng;
    unsigned idx;
    char addr_str[300];
    roo__io io;
    int fd;
    bool connected;
    bool connecting;
    roo__backoff retry;
    bool ever_connected;

    /* FIFO of batches whose out[idx] is not fully written; head_off into the first. */
    ROO__RING(roo__batch *) fifo;
    size_t head_off;
    uint64_t pending_bytes;

    uint64_t written;   /* stream offset: bytes handed to the kernel, all connections */
    uint64_t conn_base; /* stream offset of this connection's first byte */

    /* Replay ring of the last ring_cap bytes written, and the offsets where batches began. */
    uint8_t *ring;
    size_t ring_cap;
    ROO__RING(uint64_t) starts;
    uint64_t replay_pos; /* < written while resending after a reconnect */

    /* For the metrics, published by this thread as they change (roo__io_sink_counts). */
    uint64_t records; /* records written: a batch's count once its part is written */
    _Atomic uint64_t pub_records, pub_written, pub_held, pub_unacked;
    _Atomic bool pub_connected;
};

/* ---- FIFO of batches ---- */

static void fifo_push(roo__sink *s, roo__batch *b)
{
    roo__ring_push(&s->fifo, b);
    s->pending_bytes += b->out[s->idx].len;
    atomic_store_explicit(&s->pub_held, s->pending_bytes, memory_order_relaxed);
}

/* ---- replay ring ---- */

static void ring_append(roo__sink *s, const uint8_t *p, size_t n)
{
    uint64_t oldest;

    if (!s->ring_cap)
        return;
    if (n > s->ring_cap) {
        p += n - s->ring_cap;
        n = s->ring_cap;
    }
    /* Offsets of the bytes are [written - n, written): place them by offset mod cap. */
    for (size_t done = 0; done < n;) {
        size_t pos = (size_t)((s->written - n + done) % s->ring_cap);
        size_t chunk = ROO__MIN(n - done, s->ring_cap - pos);
        memcpy(s->ring + pos, p + done, chunk);
        done += chunk;
    }
    oldest = s->written > s->ring_cap ? s->written - s->ring_cap : 0;
    while (s->starts.len && roo__ring_at(&s->starts, 0) < oldest)
        roo__ring_pop(&s->starts);
}

/* ---- writing ---- */

static void sink_schedule_connect(roo__sink *s);
static void sink_update_events(roo__sink *s);

/* A batch rebuilt from the outbox at start belongs to no thread: free it when written. */
static void free_recovered(roo__engine *e, roo__batch *b)
{
    for (size_t i = 0; i < e->nsinks; i++)
        roo__buf_finish(&b->out[i]);
    free(b);
}

/*
 * Every sink has written the batch's output: its records' latencies end now. Each entry of
 * the batch stands for a read (or a route buffer) and the records it produced here.
 */
static void note_written(roo__engine *e, const roo__batch *b)
{
    int64_t now = roo__wall_ns();

    roo__hist_add(&e->committed_to_written, now - b->t_committed, b->nout);
    for (uint32_t i = 0; i < b->nlat; i++)
        if (b->lat[i].records)
            roo__hist_add(&e->e2e[b->lat[i].pipeline], now - b->lat[i].read_ns, b->lat[i].records);
}

static void sink_batch_done(roo__sink *s, roo__batch *b)
{
    if (--b->refs > 0)
        return;
    if (b->owner && b->nout)
        note_written(s->eng, b);
    if (b->owner)
        roo__batch_return(b);
    else
        free_recovered(s->eng, b);
}

/* Account for n bytes just written from the FIFO (not from the replay ring). */
static void sink_advance(roo__sink *s, size_t n)
{
    while (s->fifo.len) {
        roo__batch *b = roo__ring_at(&s->fifo, 0);
        roo__buf *ob = &b->out[s->idx];
        size_t take = ROO__MIN(n, ob->len - s->head_off);

        if (take) {
            if (s->head_off == 0 && s->ring_cap)
                roo__ring_push(&s->starts, s->written);
            s->written += take;
            ring_append(s, ob->data + s->head_off, take);
            s->head_off += take;
            s->pending_bytes -= take;
            n -= take;
        }
        if (s->head_off < ob->len)
            break;
        roo__ring_pop(&s->fifo);
        s->head_off = 0;
        if (b->sink_nout) /* unknown for output resent from the outbox after a restart */
            s->records += b->sink_nout[s->idx];
        sink_batch_done(s, b);
    }
    /* Only called once any resend is complete: nothing is owed from the ring. */
    s->replay_pos = s->written;
    atomic_store_explicit(&s->pub_records, s->records, memory_order_relaxed);
    atomic_store_explicit(&s->pub_written, s->written, memory_order_relaxed);
    atomic_store_explicit(&s->pub_held, s->pending_bytes, memory_order_relaxed);
}

/* Stream offset through which the sink's kernel acknowledged this connection's bytes. */
static uint64_t sink_acked(const roo__sink *s)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return s->conn_base;
    return s->conn_base + ti.tcpi_bytes_acked;
}

/*
 * The connection ended. What must be sent again? A sink that closed cleanly (we read EOF:
 * its kernel sent FIN, so its receive buffer was empty when it closed) had read every byte
 * its kernel acknowledged: resend from the batch holding the first unacknowledged byte, or
 * nothing. A connection that was reset (a sink killed with unread data, a network failure)
 * may have lost acknowledged bytes too: resend everything the ring still holds.
 */
static void sink_disconnect(roo__sink *s, const char *why, int err, bool clean)
{
    uint64_t sent_upto = s->replay_pos < s->written ? s->replay_pos : s->written;
    uint64_t acked = s->connected ? sink_acked(s) : s->conn_base;
    size_t resend = 0;

    roo__io_stop(s->eng->io_loop, &s->io);
    close(s->fd);
    s->fd = -1;
    s->connected = s->connecting = false;
    atomic_store_explicit(&s->pub_connected, false, memory_order_relaxed);
    if (clean && acked >= sent_upto && s->replay_pos >= s->written) {
        s->replay_pos = s->written;
    } else if (s->starts.len) {
        /* The last batch start at or before the first byte that may be unread. */
        uint64_t from = roo__ring_at(&s->starts, 0);
        if (clean) {
            for (size_t i = s->starts.len; i > 0; i--) {
                uint64_t st = roo__ring_at(&s->starts, i - 1);
                if (st <= acked) {
                    from = st;
                    break;
                }
            }
        }
        s->replay_pos = from;
        resend = (size_t)(s->written - s->replay_pos);
    } else {
        s->replay_pos = s->written;
    }
    if (!s->eng->io_stopping || s->pending_bytes) {
        char b1[32], b2[32];
        roo__log_warn("sink %s: %s%s%s; reconnecting, will resend the last %s written and "
                      "then %s of held output",
                      s->addr_str, why, err ? ": " : "", err ? roo_strerror(err) : "",
                      roo__fmt_bytes(resend, b1, sizeof(b1)),
                      roo__fmt_bytes(s->pending_bytes, b2, sizeof(b2)));
    }
    roo__backoff_reset(&s->retry);
    sink_schedule_connect(s);
}

static void sink_flush(roo__sink *s)
{
    while (s->connected && (s->replay_pos < s->written || s->fifo.len)) {
        struct iovec iov[MAX_IOV];
        struct msghdr mh = { .msg_iov = iov };
        size_t niov = 0, replay_bytes = 0;
        ssize_t n;

        if (s->replay_pos < s->written) {
            /* Resend from the ring, in at most two pieces (it wraps). */
            uint64_t off = s->replay_pos;
            while (off < s->written && niov < 2) {
                size_t pos = (size_t)(off % s->ring_cap);
                size_t chunk = (size_t)ROO__MIN(s->written - off, (uint64_t)(s->ring_cap - pos));
                iov[niov].iov_base = s->ring + pos;
                iov[niov++].iov_len = chunk;
                off += chunk;
                replay_bytes += chunk;
            }
        } else {
            for (size_t i = 0; i < s->fifo.len && niov < MAX_IOV; i++) {
                roo__buf *ob = &roo__ring_at(&s->fifo, i)->out[s->idx];
                size_t skip = i == 0 ? s->head_off : 0;
                if (ob->len > skip) {
                    iov[niov].iov_base = ob->data + skip;
                    iov[niov++].iov_len = ob->len - skip;
                }
            }
            if (niov == 0) {
                /* Only empty outputs queued: retire them. */
                sink_advance(s, 0);
                continue;
            }
        }
        mh.msg_iovlen = niov;
        n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            sink_disconnect(s, "write failed", -errno, false);
            return;
        }
        if (replay_bytes)
            s->replay_pos += (uint64_t)n;
        else
            sink_advance(s, (size_t)n);
    }
    sink_update_events(s);
}

static void sink_update_events(roo__sink *s)
{
    uint32_t ev = EPOLLIN | EPOLLRDHUP;

    if (!s->connected)
        return;
    if (s->replay_pos < s->written || s->fifo.len)
        ev |= EPOLLOUT;
    roo__io_set_events(s->eng->io_loop, &s->io, ev);
}

static void sink_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__sink *s = io->data;

    (void)loop;
    if (s->connecting) {
        int rc = roo__tcp_connect_result(s->fd);
        if (rc < 0) {
            roo__io_stop(s->eng->io_loop, &s->io);
            close(s->fd);
            s->fd = -1;
            s->connecting = false;
            if (roo__backoff_failed(&s->retry))
                roo__log_warn("sink %s: cannot connect: %s; retrying with backoff and holding "
                              "output meanwhile",
                              s->addr_str, roo_strerror(rc));
            else
                roo__log_debug("sink %s: connect attempt %u failed: %s", s->addr_str,
                               s->retry.failures, roo_strerror(rc));
            sink_schedule_connect(s);
            return;
        }
        s->connecting = false;
        s->connected = true;
        atomic_store_explicit(&s->pub_connected, true, memory_order_relaxed);
        s->conn_base = s->replay_pos < s->written ? s->replay_pos : s->written;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
        if (s->replay_pos < s->written) {
            char b[32];
            roo__log_info("sink %s: connected; resending the last %s written before the "
                          "previous connection broke",
                          s->addr_str, roo__fmt_bytes(s->written - s->replay_pos, b, sizeof(b)));
        } else {
            roo__log_info("sink %s: connected", s->addr_str);
        }
        s->ever_connected = true;
        roo__backoff_reset(&s->retry);
        sink_flush(s);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* A sink has nothing to say to us: drain and detect its close. */
        uint8_t junk[4096];
        ssize_t n = recv(s->fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (n == 0) {
            sink_disconnect(s, "connection closed by the sink", 0, true);
            return;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            sink_disconnect(s, "connection lost", -errno, false);
            return;
        }
    }
    if (events & EPOLLOUT)
        sink_flush(s);
    roo__io_check_drained(s->eng);
}

static void sink_try_connect(roo__sink *s)
{
    const roo__addr *a = &s->eng->cfg.out[s->idx];
    int rc, fd;

    rc = roo__tcp_connect_start(a, &fd);
    if (rc < 0) {
        if (roo__backoff_failed(&s->retry))
            roo__log_warn("sink %s: cannot connect: %s; retrying with backoff and holding "
                          "output meanwhile",
                          s->addr_str, roo_strerror(rc));
        sink_schedule_connect(s);
        return;
    }
    s->fd = fd;
    s->connecting = true;
    s->io.cb = sink_on_io;
    s->io.data = s;
    rc = roo__io_start(s->eng->io_loop, &s->io, fd, EPOLLOUT);
    if (rc < 0) {
        roo__log_error("sink %s: cannot watch socket: %s", s->addr_str, roo_strerror(rc));
        close(fd);
        s->fd = -1;
        s->connecting = false;
        sink_schedule_connect(s);
    }
}

static void sink_on_retry(roo__loop *loop, roo__timer *t)
{
    (void)loop;
    sink_try_connect(t->data);
}

static void sink_schedule_connect(roo__sink *s)
{
    roo__backoff_schedule(s->eng->io_loop, &s->retry);
}

/* ---- without a cluster (no hooks installed): nothing crosses workers ---- */

static bool links_idle(roo__engine *e)
{
    return !e->hooks.idle || e->hooks.idle(e->hooks_ctx);
}

static void free_route(roo__qnode *n)
{
    roo__buf_finish(&((roo__route *)n)->data);
    free(n);
}

static void free_meta(roo__qnode *n)
{
    roo__buf_finish(&((roo__meta_msg *)n)->encoded);
    free(n);
}

static void free_note(roo__qnode *n)
{
    if (((roo__mig_note *)n)->kind == ROO__MIG_NOTE_TRACKED)
        roo__buf_finish(&((roo__mig_note *)n)->keys);
    free(n);
}

/* ---- committed batches ---- */

static void batch_committed(roo__engine *e, roo__batch *b)
{
    if ((b->nacks || b->remote) && e->hooks.batch_committed)
        e->hooks.batch_committed(e->hooks_ctx, b);
    b->refs = 1; /* held by us until every sink has queued it */
    for (size_t i = 0; i < e->nsinks; i++) {
        if (b->out[i].len == 0)
            continue;
        b->refs++;
        fifo_push(&e->sinks[i], b);
    }
    if (--b->refs > 0)
        return;
    if (b->owner)
        roo__batch_return(b);
    else
        free_recovered(e, b);
}

void roo__engine_stream_answer(roo__engine *e, roo__stream_ask *ask)
{
    ask->node.kind = ROO__Q_STREAM_ANSWER;
    roo__queue_push(&e->shards[ask->shard].inbox, &ask->node);
}

/* ---- stopping ---- */

bool roo__io_sinks_idle(const roo__engine *e)
{
    for (size_t i = 0; i < e->nsinks; i++)
        if (e->sinks[i].fifo.len)
            return false;
    return true;
}

bool roo__io_shards_quiescent(const roo__engine *e)
{
    return e->io_stopping && e->quiescent_shards == e->nshards;
}

static void signal_done(roo__engine *e)
{
    pthread_mutex_lock(&e->done_lock);
    e->done = true;
    pthread_cond_broadcast(&e->done_cond);
    pthread_mutex_unlock(&e->done_lock);
}

/*
 * A worker stopping on its own is done when its threads are idle and its output and data
 * links are written. One stopping with its cluster also waits for the initializer's Exit,
 * which comes once every worker is idle and every message between workers has arrived.
 */
void roo__io_check_drained(roo__engine *e)
{
    if (!e->io_stopping || e->io_drained)
        return;
    if (e->cluster_stopping) {
        if (!e->exit_received || !roo__io_sinks_idle(e))
            return;
    } else if (!roo__io_shards_quiescent(e) || !roo__io_sinks_idle(e) || !links_idle(e)) {
        return;
    }
    roo__timer_stop(e->io_loop, &e->stop_timer);
    e->io_drained = true;
    signal_done(e);
}

static void on_stop_timeout(roo__loop *loop, roo__timer *t)
{
    roo__engine *e = t->data;

    (void)loop;
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        if (s->fifo.len) {
            char b[32];
            roo__log_warn("sink %s: stopping with %s of committed output not delivered "
                          "(the sink is not taking it)",
                          s->addr_str, roo__fmt_bytes(s->pending_bytes, b, sizeof(b)));
        }
    }
    if (e->quiescent_shards < e->nshards)
        roo__log_warn("stopping before all threads drained (timeout)");
    if (!links_idle(e))
        roo__log_warn("stopping with messages for other workers not yet sent (timeout)");
    signal_done(e);
}

void roo__io_start_stop(roo__engine *e)
{
    if (e->io_stopping)
        return;
    e->io_stopping = true;
    atomic_store_explicit(&e->ready_pub, false, memory_order_relaxed);
    for (size_t i = 0; i < e->nlisten; i++) {
        roo__io_stop(e->io_loop, &e->listen_ios[i]);
        if (e->listen_fds[i] >= 0)
            close(e->listen_fds[i]);
        e->listen_fds[i] = -1;
    }
    for (unsigned i = 0; i < e->nshards; i++) {
        roo__qnode *n = roo__xcalloc(1, sizeof(*n));
        n->kind = ROO__Q_STOP;
        roo__queue_push(&e->shards[i].inbox, n);
    }
    e->stop_timer.cb = on_stop_timeout;
    e->stop_timer.data = e;
    /* A coordinated stop gets extra time: the initializer's own drain timeout comes first. */
    roo__timer_start(e->io_loop, &e->stop_timer,
                     e->cfg.shutdown_timeout_ms + (e->cluster_stopping ? 3000 : 0));
}

/* ---- output marks (partition moves: the old owner's output goes first) ---- */

void roo__io_sinks_mark(const roo__engine *e, uint64_t *ret_marks)
{
    for (size_t i = 0; i < e->nsinks; i++)
        ret_marks[i] = e->sinks[i].written + e->sinks[i].pending_bytes;
}

bool roo__io_sinks_reached(const roo__engine *e, const uint64_t *marks)
{
    for (size_t i = 0; i < e->nsinks; i++)
        if (e->sinks[i].written < marks[i])
            return false;
    return true;
}

/* ---- loop callbacks ---- */

static void io_q_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__engine *e = io->data;
    roo__qnode *n = roo__queue_take_all(&e->io_q), *next;

    (void)events;
    for (; n; n = next) {
        next = n->next;
        switch (n->kind) {
        case ROO__Q_BATCH:
            batch_committed(e, (roo__batch *)n);
            break;
        case ROO__Q_STOP:
            free(n);
            roo__io_start_stop(e);
            break;
        case ROO__Q_ROUTE_RETURN:
            if (e->hooks.route_returned)
                e->hooks.route_returned(e->hooks_ctx, (roo__route *)n);
            else
                free_route(n);
            break;
        case ROO__Q_META:
            if (e->hooks.meta_stored)
                e->hooks.meta_stored(e->hooks_ctx, (roo__meta_msg *)n);
            else
                free_meta(n);
            break;
        case ROO__Q_MIGRATION:
            if (e->hooks.move_note)
                e->hooks.move_note(e->hooks_ctx, (roo__mig_note *)n);
            else
                free_note(n);
            break;
        case ROO__Q_STREAM_ASK:
            if (e->hooks.stream_ask) {
                e->hooks.stream_ask(e->hooks_ctx, (roo__stream_ask *)n);
            } else {
                ((roo__stream_ask *)n)->reached = false;
                roo__engine_stream_answer(e, (roo__stream_ask *)n);
            }
            break;
        case ROO__Q_STATUS: {
            roo__status_msg *m = (roo__status_msg *)n;
            if (m->quiescent != e->shard_quiescent[m->shard]) {
                e->shard_quiescent[m->shard] = m->quiescent;
                if (m->quiescent)
                    e->quiescent_shards++;
                else
                    e->quiescent_shards--;
            }
            free(m);
            break;
        }
        case ROO__Q_EXIT:
            free(n);
            roo__loop_stop(loop);
            break;
        default:
            roo__log_error("internal error: io thread got message kind %u", n->kind);
            abort();
        }
    }
    for (size_t i = 0; i < e->nsinks; i++)
        sink_flush(&e->sinks[i]);
    roo__io_check_drained(e);
}

static void listener_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__engine *e = io->data;
    uint32_t pipeline = (uint32_t)(io - e->listen_ios);

    (void)events;
    for (int i = 0; i < 64; i++) {
        roo__conn_msg *m;
        char peer[64];
        uint64_t open, suppressed = 0;
        int fd, rc = roo__tcp_accept(io->fd, &fd, peer, sizeof(peer));

        if (rc == -EAGAIN || rc == -EINTR)
            return;
        if (rc < 0) {
            /* EMFILE and friends: the listener would be ready again at once; rest it. */
            if (roo__ratelimit_allow(&e->accept_rl, &suppressed))
                roo__log_warn("source '%s': accept failed: %s; not accepting for 100 ms%s",
                              e->app->pipelines[pipeline]->name, roo_strerror(rc),
                              suppressed ? " (repeated failures not logged)" : "");
            roo__listener_pause(loop, io, &e->listen_resume[pipeline], 100);
            return;
        }
        open = atomic_load_explicit(&e->source_accepted[pipeline], memory_order_relaxed) -
               atomic_load_explicit(&e->source_closed[pipeline], memory_order_relaxed);
        if (open >= e->cfg.max_connections) {
            close(fd);
            if (roo__ratelimit_allow(&e->accept_rl, &suppressed))
                roo__log_warn("source '%s': %llu connections open (--max-connections); closed "
                              "the one from %s%s",
                              e->app->pipelines[pipeline]->name, (unsigned long long)open, peer,
                              suppressed ? " (more refusals not logged)" : "");
            continue;
        }
        atomic_fetch_add_explicit(&e->source_accepted[pipeline], 1, memory_order_relaxed);
        m = roo__xcalloc(1, sizeof(*m));
        m->node.kind = ROO__Q_CONN;
        m->fd = fd;
        m->pipeline = pipeline;
        snprintf(m->peer, sizeof(m->peer), "%s", peer);
        roo__queue_push(&e->shards[e->next_shard].inbox, &m->node);
        e->next_shard = (e->next_shard + 1) % e->nshards;
    }
}

/* ---- set-up ---- */

int roo__io_init(roo__engine *e)
{
    int rc;

    rc = roo__loop_create(&e->io_loop);
    if (rc < 0)
        return rc;
    e->io_q_io.cb = io_q_on_io;
    e->io_q_io.data = e;
    rc = roo__io_start(e->io_loop, &e->io_q_io, roo__queue_fd(&e->io_q), EPOLLIN);
    if (rc < 0)
        return rc;
    e->shard_quiescent = roo__xcalloc(e->nshards, sizeof(bool));
    e->nsinks = e->app->nsinks;
    e->sinks = roo__xcalloc(e->nsinks, sizeof(roo__sink));
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        s->eng = e;
        s->idx = (unsigned)i;
        s->fd = -1;
        roo__backoff_init(&s->retry, sink_on_retry, s);
        roo__addr_str(&e->cfg.out[i], s->addr_str, sizeof(s->addr_str));
        s->ring_cap = e->cfg.sink_replay_bytes;
        if (s->ring_cap)
            s->ring = roo__xmalloc(s->ring_cap);
    }
    e->listen_fds = roo__xcalloc(e->nlisten ? e->nlisten : 1, sizeof(int));
    e->listen_ios = roo__xcalloc(e->nlisten ? e->nlisten : 1, sizeof(roo__io));
    e->listen_resume = roo__xcalloc(e->nlisten ? e->nlisten : 1, sizeof(roo__timer));
    e->source_accepted = roo__xcalloc(e->nlisten ? e->nlisten : 1, sizeof(*e->source_accepted));
    e->source_closed = roo__xcalloc(e->nlisten ? e->nlisten : 1, sizeof(*e->source_closed));
    e->accept_rl = (roo__ratelimit)ROO__RATELIMIT_INIT(10000, 3);
    for (size_t i = 0; i < e->nlisten; i++)
        e->listen_fds[i] = -1;
    return 0;
}

/*
 * Called from roo__engine_start on the main thread, before the io thread runs: bind the
 * sources' addresses now (so a taken port is an error at start), but listen only when the
 * cluster is ready: until then senders are refused and retry, rather than wait unserved.
 * Workers on one host may share a source address (Wallaroo's recipes give them all the
 * same --in): the listeners are SO_REUSEPORT, and the kernel spreads the connections.
 */
int roo__io_listen(roo__engine *e, char *msg, size_t cap)
{
    for (size_t i = 0; i < e->nlisten; i++) {
        char a[300];
        int rc = roo__tcp_bind_shared(&e->cfg.in[i], true, &e->listen_fds[i]);
        if (rc < 0) {
            snprintf(msg, cap, "cannot listen on --in %s for source '%s': %s",
                     roo__addr_str(&e->cfg.in[i], a, sizeof(a)), e->app->pipelines[i]->name,
                     roo_strerror(rc));
            return rc;
        }
    }
    for (size_t i = 0; i < e->nsinks; i++)
        sink_try_connect(&e->sinks[i]);
    return 0;
}

static void join_addrs(const roo__addr *a, size_t n, char *buf, size_t cap)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && off < cap; i++) {
        char one[300];
        int w = snprintf(buf + off, cap - off, "%s%s", i ? "," : "",
                         roo__addr_str(&a[i], one, sizeof(one)));
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

void roo__io_open_sources(roo__engine *e)
{
    char ins[512], outs[512];

    if (e->sources_open || e->io_stopping)
        return;
    for (size_t i = 0; i < e->nlisten; i++) {
        int rc = roo__tcp_listen_fd(e->listen_fds[i], 1024);
        if (rc == 0) {
            e->listen_ios[i].cb = listener_on_io;
            e->listen_ios[i].data = e;
            rc = roo__io_start(e->io_loop, &e->listen_ios[i], e->listen_fds[i], EPOLLIN);
        }
        if (rc < 0) {
            roo__log_error("source '%s': cannot listen: %s", e->app->pipelines[i]->name,
                           roo_strerror(rc));
            roo__engine_exit(e, 1);
            return;
        }
    }
    e->sources_open = true;
    atomic_store_explicit(&e->ready_pub, true, memory_order_relaxed);
    join_addrs(e->cfg.in, e->cfg.nin, ins, sizeof(ins));
    join_addrs(e->cfg.out, e->cfg.nout, outs, sizeof(outs));
    roo__log_info("ready: application '%s', worker '%s', %u thread(s), sources on %s, sinks at "
                  "%s, state in %s",
                  e->app->name, e->cfg.worker_name, e->nshards, ins, outs, e->cfg.resilience_dir);
}

void roo__io_sink_counts(const roo__engine *e, size_t i, roo__snapshot_sink *ret_counts)
{
    roo__sink *s = &e->sinks[i];

    ret_counts->records = atomic_load_explicit(&s->pub_records, memory_order_relaxed);
    ret_counts->bytes = atomic_load_explicit(&s->pub_written, memory_order_relaxed);
    ret_counts->held = atomic_load_explicit(&s->pub_held, memory_order_relaxed);
    ret_counts->unacked = atomic_load_explicit(&s->pub_unacked, memory_order_relaxed);
    ret_counts->connected = atomic_load_explicit(&s->pub_connected, memory_order_relaxed);
}

void roo__io_finish(roo__engine *e)
{
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        if (s->fd >= 0)
            close(s->fd);
        roo__ring_free(&s->fifo);
        free(s->ring);
        roo__ring_free(&s->starts);
    }
    free(e->sinks);
    for (size_t i = 0; e->listen_fds && i < e->nlisten; i++)
        if (e->listen_fds[i] >= 0)
            close(e->listen_fds[i]);
    free(e->listen_fds);
    free(e->listen_ios);
    free(e->listen_resume);
    free((void *)e->source_accepted);
    free((void *)e->source_closed);
    free(e->shard_quiescent);
    roo__loop_destroy(e->io_loop);
}

/*
 * Output committed before the last stop or crash that was not known written to its sink
 * goes first, ahead of anything new, so each key's outputs stay in order. The sink may have
 * seen some of it already (written, but the deletion not yet committed): at least once.
 */
static void resend_recovered_outbox(roo__engine *e)
{
    uint64_t bytes = 0;

    for (size_t k = 0; k < e->nrecovered_outbox; k++) {
        struct roo__outbox_entry *o = &e->recovered_outbox[k];
        roo__batch *b;
        if (o->sink >= e->nsinks) {
            roo__buf_finish(&o->bytes);
            continue;
        }
        b = roo__xcalloc(1, sizeof(*b) + e->nsinks * sizeof(roo__buf));
        b->node.kind = ROO__Q_BATCH;
        b->out[o->sink] = o->bytes; /* ownership moves to the batch */
        bytes += o->bytes.len;
        batch_committed(e, b);
    }
    if (e->nrecovered_outbox) {
        char buf[32];
        roo__log_info("sending %s of output committed before the restart again (at least once)",
                      roo__fmt_bytes(bytes, buf, sizeof(buf)));
    }
    free(e->recovered_outbox);
    e->recovered_outbox = NULL;
    e->nrecovered_outbox = 0;
}

static bool io_prepare(roo__loop *loop, void *data)
{
    roo__engine *e = data;

    (void)loop;
    if (e->hooks.prepare)
        e->hooks.prepare(e->hooks_ctx);
    /* Whatever changed in this pass (an acknowledgement from a peer, a socket written) may
     * have been the last thing a stop was waiting for. */
    roo__io_check_drained(e);
    return false;
}

/*
 * Written but not delivered: while connected, what the sink's host has not acknowledged
 * (a getsockopt, hence a timer rather than every write); while down, what will be resent.
 */
static void on_unacked_timer(roo__loop *loop, roo__timer *t)
{
    roo__engine *e = t->data;

    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        uint64_t from = s->connected ? ROO__MIN(sink_acked(s), s->written)
                                     : ROO__MIN(s->replay_pos, s->written);
        atomic_store_explicit(&s->pub_unacked, s->written - from, memory_order_relaxed);
    }
    roo__timer_start(loop, t, 250);
}

void *roo__io_main(void *arg)
{
    roo__engine *e = arg;
    int rc;

    e->unacked_timer.cb = on_unacked_timer;
    e->unacked_timer.data = e;
    roo__timer_start(e->io_loop, &e->unacked_timer, 250);
    roo__loop_set_prepare(e->io_loop, io_prepare, e);
    resend_recovered_outbox(e);
    if (e->hooks.start)
        e->hooks.start(e->hooks_ctx);
    rc = roo__loop_run(e->io_loop);

    if (rc < 0)
        roo__log_error("io thread: event loop failed: %s", roo_strerror(rc));
    return NULL;
}
