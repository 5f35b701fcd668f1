/* io.c: the io thread: accepts source connections, keeps the sinks' connections and writes
 * what the committer left them, and runs the cluster's hooks.
 *
 * DESIGN
 *
 * Sources: the thread owns the --in listeners. Each accepted connection goes, round-robin,
 * to a shard's inbox; the shard owns it from then on.
 *
 * Sinks (sink.c): the committer writes a committed batch's output itself when its sinks are
 * idle. io connects and reconnects the sinks, resends from their replay rings, writes what
 * the committer could not (a ROO__Q_SINK_KICK on io_q says so) and the output of batches
 * the committer hands over on io_q: those with work for the cluster's hooks (only this
 * thread runs them) and every batch after one of those until io has queued it, so the
 * sinks get the batches in commit order. A batch goes home to its shard when every sink has
 * written its part, from whichever thread wrote the last byte.
 *
 * Stopping: the thread tells the shards to stop reading, then waits until they are
 * quiescent, the sinks have written everything and the links to other workers are idle
 * (or a timeout), and tells the main thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/engine-int.h"

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

/* io thread: a batch the committer left to us (hooks first: the sinks may return it). */
static void batch_committed(roo__engine *e, roo__batch *b)
{
    if ((b->nacks || b->remote) && e->hooks.batch_committed)
        e->hooks.batch_committed(e->hooks_ctx, b);
    roo__sinks_queue(e, b);
}

void roo__engine_stream_answer(roo__engine *e, roo__stream_ask *ask)
{
    ask->node.kind = ROO__Q_STREAM_ANSWER;
    roo__queue_push(&e->shards[ask->shard].inbox, &ask->node);
}

/* ---- stopping ---- */

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
    roo__sinks_warn_held(e);
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
            roo__sinks_handed_off(e);
            break;
        case ROO__Q_SINK_KICK:
            roo__sinks_kicked(n);
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
    roo__sinks_flush(e);
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
    roo__sinks_init(e);
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
    roo__sinks_connect(e);
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

void roo__io_finish(roo__engine *e)
{
    roo__sinks_finish(e);
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

    roo__sinks_publish_unacked(e);
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
    roo__sinks_handed_off(e); /* the committer may write to idle sinks from now on */
    if (e->hooks.start)
        e->hooks.start(e->hooks_ctx);
    rc = roo__loop_run(e->io_loop);

    if (rc < 0)
        roo__log_error("io thread: event loop failed: %s", roo_strerror(rc));
    return NULL;
}
