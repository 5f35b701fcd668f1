/* links.c: data links: every worker's outgoing link to each peer, and inbound batches.
 *
 * DESIGN
 * Every worker keeps one outgoing data link to every other live worker and accepts one from
 * each (a full mesh of one-way links). A committed batch's route buffers for another worker
 * are queued per peer, then framed as DataBatch (one protobuf message per route buffer, with
 * a sequence number per (peer, thread)) into the peer's backlog and onto the socket; the
 * buffer goes home to its thread as soon as it is framed, its bytes left in the backlog
 * (sent from there, never copied) and a spare in their place. The backlog keeps every frame until
 * the peer acknowledges that the batch is committed on its side (DataAck); a new connection
 * begins by sending all of it again, and the receiver drops what it already applied (what a
 * receiver applied is committed with the state it changed, in the links database, and a
 * sender's restart is told apart by its random incarnation).
 *
 * Back-pressure: a backlog holds at most --link-backlog bytes (then routes wait, threads run
 * out of route buffers and stop reading their sources), and a receiver stops reading a link
 * while INBOUND_ROUTES_MAX of its buffers wait in its threads.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"

/* Tell a thread that a route buffer of its batch is committed where it went. */
static void route_done(struct roo__shard *origin, uint64_t batch_seq)
{
    roo__route_done *d = roo__xmalloc(sizeof(*d));

    d->node.kind = ROO__Q_ROUTE_DONE;
    d->batch_seq = batch_seq;
    roo__queue_push(&origin->inbox, &d->node);
}

/* A spare body for a route buffer going home (empty, often with room), or none. */
static roo__buf spare_take(peer *p)
{
    return p->nspares ? p->spares[--p->nspares] : (roo__buf){ 0 };
}

static void spare_put(peer *p, roo__buf *b)
{
    if (p->nspares < PEER_SPARES_MAX) {
        b->len = 0;
        p->spares[p->nspares++] = *b;
    } else {
        roo__buf_finish(b);
    }
    *b = (roo__buf){ 0 };
}

/* Frames [from, to) of the backlog onto the link: from where they lie, in as few calls as
 * the socket allows (what it does not take is copied into the connection's buffer). */
static void send_frames(peer *p, size_t from, size_t to)
{
    struct iovec iov[64];
    size_t n = 0;

    for (size_t i = from; i < to; i++) {
        struct sent_frame *f = &roo__ring_at(&p->frames, i);

        iov[n++] = (struct iovec){ f->head, f->head_len };
        iov[n++] = (struct iovec){ f->body.data, f->body.len };
        if (n == sizeof(iov) / sizeof(iov[0]) || i + 1 == to) {
            if (roo__fconn_sendv(&p->data, iov, n) < 0)
                return; /* the link closed (on_close ran): a new one sends them all */
            n = 0;
        }
    }
}

/*
 * Frame queued routes into the backlog (and onto the link when it is up), while the
 * backlog has room. A route buffer goes home as soon as it is framed: its bytes stay in the
 * backlog, which may have to send them again, and it takes a spare body instead. A full
 * backlog (the peer down or slow to commit) leaves routes queued, the shards run out of
 * route buffers, and sources pause.
 */
void roo__links_pump(peer *p)
{
    cluster *cl = p->cl;
    size_t first = p->frames.len, added = 0; /* frames from `first` on are new: sent at the end */

    while (p->q_head && p->backlog_bytes < cl->e->cfg.link_backlog_bytes &&
           (!p->data_open || roo__fconn_pending(&p->data) + added < PEER_OUT_HIGH)) {
        roo__route *r = p->q_head;
        struct sent_frame f = { .thread = r->thread, .origin = r->from, .batch_seq = r->batch_seq };
        size_t hl = 0;
        int rc;

        p->q_head = (roo__route *)r->node.next;
        if (!p->q_head)
            p->q_tail = NULL;
        f.seq = ++p->out_seq[r->thread];
        rc = roo__wire_data_batch_head(r->thread, f.seq, (uint32_t)r->nmsgs, r->read_ns,
                                       r->pipeline, r->data.len, f.head, &hl);
        if (rc < 0) {
            roo__log_error("peer %s: cannot frame %llu messages (%zu bytes): %s; dropped",
                           p->info.name, (unsigned long long)r->nmsgs, r->data.len,
                           roo_strerror(rc));
            p->out_seq[r->thread]--;
            route_done(r->from, r->batch_seq);
        } else {
            f.head_len = (uint8_t)hl;
            f.body = r->data;
            r->data = spare_take(p);
            roo__ring_push(&p->frames, f);
            p->backlog_bytes += hl + f.body.len;
            added += hl + f.body.len;
            p->sent += r->nmsgs;
            roo__clm_add(&cl->clm.peers[p->index].msgs_sent, r->nmsgs);
            roo__clm_add(&cl->clm.peers[p->index].bytes_sent, hl + f.body.len);
        }
        r->node.kind = ROO__Q_ROUTE_RETURN;
        roo__queue_push(&r->from->inbox, &r->node);
    }
    if (p->data_open && p->frames.len > first)
        send_frames(p, first, p->frames.len);
    /* Every change of the backlog ends here: framing, and acknowledgements (peer_acked). */
    roo__clm_set(&cl->clm.peers[p->index].backlog, p->backlog_bytes);
}

/* The peer committed everything for `thread` through `seq`: forget those frames. */
static void peer_acked(peer *p, uint32_t thread, uint64_t seq)
{
    if (thread >= p->out_threads || seq > p->out_seq[thread])
        return;
    if (seq > p->out_acked[thread])
        p->out_acked[thread] = seq;
    while (p->frames.len) {
        struct sent_frame *f = &roo__ring_at(&p->frames, 0);
        if (f->seq > p->out_acked[f->thread])
            break;
        route_done(f->origin, f->batch_seq);
        p->backlog_bytes -= f->head_len + f->body.len;
        spare_put(p, &f->body);
        roo__ring_pop(&p->frames);
    }
    roo__links_pump(p);
}

static void peer_data_drain(roo__fconn *fc)
{
    roo__links_pump(fc->data);
}

static void peer_data_frame(roo__fconn *fc, const uint8_t *payload, size_t len)
{
    peer *p = fc->data;
    roo__data_kind kind = ROO__DATA_NONE;
    roo__data_hello h;
    uint32_t thread = 0, count = 0;
    uint64_t seq = 0;

    if (roo__wire_data_decode(payload, len, &kind, &h, &thread, &seq, &count, NULL, NULL) == 0 &&
        kind == ROO__DATA_ACK) {
        peer_acked(p, thread, seq);
        return;
    }
    if (kind == ROO__DATA_STREAM_ANSWER) {
        roo__cl_stream_answered(p->cl, p, payload, len);
        return;
    }
    roo__log_warn("data link to %s: unexpected %zu-byte frame from the receiver; closing it",
                  p->info.name, len);
    roo__fconn_close(fc);
    p->data_open = false;
    p->data_active = false;
    roo__clm_peer_connected(p->cl, p->index, false);
    roo__links_connect(p);
}

static void peer_data_closed(roo__fconn *fc, int err)
{
    peer *p = fc->data;

    p->data_open = false;
    p->data_active = false;
    roo__clm_peer_connected(p->cl, p->index, false);
    if (roo__now_ns() - p->data_opened_ns < 1000000000 && !err)
        /* Closed by the peer right after it opened: it is not ready for us yet (forming,
         * restarting) or refused us, which it logs itself. */
        roo__log_debug("data link to %s (%s) closed right after it opened; reconnecting",
                       p->info.name, p->info.data_addr);
    else if (!p->cl->e->io_stopping || p->q_head)
        roo__log_warn("data link to %s (%s) lost%s%s; reconnecting", p->info.name,
                      p->info.data_addr, err ? ": " : "", err ? roo_strerror(err) : "");
    /* A link that lived a while reconnects at once; one closed right after it opened (the
     * peer refused it) backs off further, rather than reconnect every 50 ms. */
    if (roo__now_ns() - p->data_opened_ns >= 1000000000)
        roo__backoff_reset(&p->data_retry);
    roo__links_connect(p);
}

static void peer_data_connected(roo__fconn *fc, int err)
{
    peer *p = fc->data;
    cluster *cl = p->cl;
    roo__data_hello h = { .protocol_version = ROO__PROTOCOL_VERSION };

    if (err) {
        p->data_active = false;
        if (roo__backoff_failed(&p->data_retry))
            roo__log_warn("data link to %s (%s): cannot connect: %s; retrying with backoff",
                          p->info.name, p->info.data_addr, roo_strerror(err));
        roo__links_connect(p);
        return;
    }
    if (p->data_retry.failures)
        roo__log_info("data link to %s (%s) connected", p->info.name, p->info.data_addr);
    p->data_retry.failures = 0;
    p->data_opened_ns = roo__now_ns();
    h.cluster_id = cl->topo.cluster_id;
    h.incarnation = cl->incarnation;
    snprintf(h.worker, sizeof(h.worker), "%s", cl->name);
    roo__wire_data_hello_encode(&h, roo__fconn_outbuf(fc));
    /* Everything not acknowledged goes again: the peer drops what it already applied. */
    for (size_t i = 0; i < p->frames.len; i++) {
        const struct sent_frame *f = &roo__ring_at(&p->frames, i);
        roo__buf_append(roo__fconn_outbuf(fc), f->head, f->head_len);
        roo__buf_append(roo__fconn_outbuf(fc), f->body.data, f->body.len);
    }
    p->data_open = true;
    roo__clm_peer_connected(cl, p->index, true);
    roo__links_pump(p);
    if (cl->mig.active) {
        /* What went on the old link may be lost: send it again. */
        p->chunks_epoch = p->precopy_epoch = 0;
        roo__move_send_precopy_all(cl);
        roo__move_send_all(cl);
    }
    roo__cl_check_conns_ready(cl);
}

static const roo__fconn_ops peer_data_ops = {
    .on_frame = peer_data_frame,
    .on_close = peer_data_closed,
    .on_connect = peer_data_connected,
    .on_drain = peer_data_drain,
};

static void peer_retry(roo__loop *loop, roo__timer *t)
{
    peer *p = t->data;
    roo__addr a;
    int rc;

    (void)loop;
    if (p->data_active || p->left || p->cl->e->exit_received)
        return;
    if (roo__addr_parse(p->info.data_addr, &a) < 0) {
        roo__log_error("worker %s has an unusable data address '%s'", p->info.name,
                       p->info.data_addr);
        return;
    }
    roo__fconn_finish(&p->data);
    rc = roo__fconn_connect(&p->data, p->cl->e->io_loop, &a, 64 * 1024, &peer_data_ops, p);
    if (rc == 0)
        roo__fconn_auth(&p->data, &p->cl->key, ROO__CHANNEL_DATA);
    if (rc < 0) {
        if (roo__backoff_failed(&p->data_retry))
            roo__log_warn("data link to %s (%s): cannot connect: %s; retrying with backoff",
                          p->info.name, p->info.data_addr, roo_strerror(rc));
        roo__links_connect(p);
        return;
    }
    p->data_active = true;
}

void roo__links_connect(peer *p)
{
    roo__backoff_schedule(p->cl->e->io_loop, &p->data_retry);
}

void roo__links_peer_init(cluster *cl, uint32_t w, const roo__worker_info *info)
{
    peer *p = &cl->peers[w];

    p->cl = cl;
    p->index = w;
    roo__backoff_init(&p->data_retry, peer_retry, p);
    roo__worker_info_copy(info, &p->info);
    p->left = info->left;
    p->out_threads = info->threads ? info->threads : 1;
    p->out_seq = roo__xcalloc(p->out_threads, sizeof(uint64_t));
    p->out_acked = roo__xcalloc(p->out_threads, sizeof(uint64_t));
    p->in_received = roo__xcalloc(cl->e->nshards, sizeof(uint64_t));
    p->in_applied = roo__xcalloc(cl->e->nshards, sizeof(uint64_t));
    roo__clm_peer_name(cl, w, w != cl->self ? info->name : NULL);
}

/*
 * Follow a worker list that grew (new peers: connect to them), lost members (left: stop
 * linking to them) or moved addresses (reconnect). Before a move's switch (adding_only),
 * only new peers count: leaving workers still hold what the fence waits for.
 */
void roo__links_update(cluster *cl, const roo__topology *t, bool adding_only)
{
    for (uint32_t w = 0; w < t->nworkers; w++) {
        peer *p = &cl->peers[w];
        const roo__worker_info *wi = &t->workers[w];
        if (w >= cl->npeers) {
            roo__links_peer_init(cl, w, wi);
            cl->npeers = w + 1;
            if (w != cl->self && !p->left)
                roo__backoff_now(cl->e->io_loop, &p->data_retry);
            continue;
        }
        if (w == cl->self || adding_only)
            continue;
        if (wi->left && !p->left) {
            p->left = true;
            roo__backoff_stop(cl->e->io_loop, &p->data_retry);
            if (p->data_active)
                roo__fconn_close(&p->data);
            p->data_open = p->data_active = false;
            roo__clm_peer_connected(cl, w, false);
            continue;
        }
        if (p->left)
            continue;
        if (strcmp(p->info.data_addr, wi->data_addr) != 0 && p->data_active) {
            roo__log_info("worker %s moved its data address to %s; reconnecting", p->info.name,
                          wi->data_addr);
            roo__fconn_close(&p->data);
            p->data_open = p->data_active = false;
            roo__clm_peer_connected(cl, w, false);
            roo__backoff_reset(&p->data_retry);
            roo__worker_info_finish(&p->info);
            roo__worker_info_copy(wi, &p->info);
            roo__links_connect(p);
            continue;
        }
        roo__worker_info_finish(&p->info);
        roo__worker_info_copy(wi, &p->info);
    }
}

/* What roo__links_peer_init made (queued routes belong to the shards, which free them). */
void roo__links_peer_finish(peer *p)
{
    roo__fconn_finish(&p->data);
    roo__worker_info_finish(&p->info);
    free(p->stats.name);
    for (size_t i = 0; i < p->frames.len; i++)
        roo__buf_finish(&roo__ring_at(&p->frames, i).body);
    roo__ring_free(&p->frames);
    while (p->nspares)
        roo__buf_finish(&p->spares[--p->nspares]);
    free(p->out_seq);
    free(p->out_acked);
    free(p->in_received);
    free(p->in_applied);
}

/* Forget the peers from index first on: the move that was adding them was abandoned. */
void roo__links_forget_from(cluster *cl, uint32_t first)
{
    for (uint32_t w = first; w < cl->npeers; w++) {
        peer *p = &cl->peers[w];
        if (w == cl->self)
            continue;
        roo__backoff_stop(cl->e->io_loop, &p->data_retry);
        if (p->inbound && !p->inbound->dead)
            roo__cl_conn_kill(p->inbound);
        roo__links_peer_finish(p);
        memset(p, 0, sizeof(*p));
        roo__clm_peer_name(cl, w, NULL);
    }
    if (cl->npeers > first && cl->self < first)
        cl->npeers = first;
}

uint64_t roo__links_sent_total(const cluster *cl)
{
    uint64_t n = 0;
    for (uint32_t w = 0; cl->has_topology && w < cl->topo.nworkers; w++)
        n += cl->peers[w].sent;
    return n;
}

static roo__route *route_get(cluster *cl)
{
    roo__route *r = roo__route_take(&cl->route_pool);

    r->from = NULL;
    r->link_seq = 0;
    return r;
}

static void route_put(cluster *cl, roo__route *r)
{
    r->node.next = (roo__qnode *)cl->route_pool;
    cl->route_pool = r;
}

/* DataHello: which worker sends on this link. False: not one of ours (close it). */
static bool on_data_hello(cluster *cl, aconn *c, const roo__data_hello *h)
{
    roo__engine *e = cl->e;
    peer *p;
    int64_t w;

    if (c->hello_seen || h->protocol_version != ROO__PROTOCOL_VERSION ||
        (cl->has_topology && h->cluster_id != cl->topo.cluster_id)) {
        roo__log_warn("data connection from %s (worker '%s'): wrong hello (protocol %u, "
                      "cluster %016llx); closing it",
                      c->fc.peer, h->worker, h->protocol_version,
                      (unsigned long long)h->cluster_id);
        roo__clm_refused(cl, CONN_DATA);
        return false;
    }
    if (!cl->has_topology) {
        /* Formation: a peer that already has the table links up before we have it. It
         * connects again with backoff; nothing is wrong. */
        roo__log_debug("data connection from %s (worker '%s') before this worker has the "
                       "table; closing it for now",
                       c->fc.peer, h->worker);
        return false;
    }
    w = roo__cl_worker_index(cl, h->worker);
    if (w < 0 || (uint32_t)w == cl->self) {
        roo__log_warn("data connection from %s: worker '%s' is not in this cluster; closing it",
                      c->fc.peer, h->worker);
        roo__clm_refused(cl, CONN_DATA);
        return false;
    }
    p = &cl->peers[w];
    if (p->inbound && !p->inbound->dead && p->inbound != c) {
        if (h->incarnation == p->in_incarnation) {
            /* Not a reason to start its sequence numbers again: refuse the second one. */
            roo__log_warn("data connection from %s claims to be worker '%s', which already has "
                          "a live data link (from %s); closing the new one",
                          c->fc.peer, h->worker, p->inbound->fc.peer);
            roo__clm_refused(cl, CONN_DATA);
            return false;
        }
        /* A new life of that worker (it restarted): its old link is dead even if this end
         * has not seen it close yet. */
        roo__log_info("worker '%s' is back (a new incarnation) from %s; closing its old data "
                      "link from %s",
                      h->worker, c->fc.peer, p->inbound->fc.peer);
        roo__cl_conn_kill(p->inbound);
    }
    c->hello_seen = true;
    c->peer = (int)w;
    p->inbound = c;
    if (h->incarnation != p->in_incarnation) {
        /* The sender restarted: its sequence numbers start again at 1. */
        if (p->in_incarnation)
            roo__log_info("worker '%s' restarted: accepting its new sequence numbers",
                          p->info.name);
        p->in_incarnation = h->incarnation;
        memset(p->in_received, 0, e->nshards * sizeof(uint64_t));
        memset(p->in_applied, 0, e->nshards * sizeof(uint64_t));
    }
    /* It is back: if our link to it is down, try now rather than after the backoff. */
    if (!p->data_active && p->data_retry.timer.active)
        roo__backoff_now(e->io_loop, &p->data_retry);
    return true;
}

/*
 * DataBatch: route buffer r holds `count` messages for our thread `thread`, the sender's
 * batch `seq` on that thread. It goes to the thread, or back to the pool if it was applied
 * before. False: the frame is wrong (close the link; r is still the caller's). frame_len
 * (the frame's payload) is for the byte counts of the link.
 */
static bool on_data_batch(cluster *cl, aconn *c, roo__route *r, uint32_t thread, uint64_t seq,
                          uint32_t count, size_t frame_len)
{
    roo__engine *e = cl->e;
    peer *p = &cl->peers[c->peer];

    char why[200];

    if (thread >= e->nshards) {
        roo__log_warn("data connection from %s (worker '%s'): batch for thread %u, but this "
                      "worker has %u; closing it",
                      c->fc.peer, p->info.name, thread, e->nshards);
        return false;
    }
    if (roo__route_check(r->data.data, r->data.len, cl->stage_is_state, e->app->nstages, count, why,
                         sizeof(why)) < 0) {
        roo__log_warn("data connection from %s (worker '%s'): batch %llu for thread %u is "
                      "malformed: %s; closing it",
                      c->fc.peer, p->info.name, (unsigned long long)seq, thread, why);
        return false;
    }
    if (seq <= p->in_received[thread]) {
        /* Sent again after a reconnect: applied (acknowledge again) or still in a thread. */
        if (seq <= p->in_applied[thread]) {
            roo__wire_data_ack_encode(thread, p->in_applied[thread], roo__fconn_outbuf(&c->fc));
            roo__fconn_flush(&c->fc);
        }
        route_put(cl, r);
        return true;
    }
    p->in_received[thread] = seq;
    r->link_seq = seq;
    r->link_incarnation = p->in_incarnation;
    r->link_conn = c->id;
    snprintf(r->link_peer, sizeof(r->link_peer), "%s", p->info.name);
    r->nmsgs = count;
    r->worker = (uint32_t)c->peer;
    cl->received += count;
    atomic_fetch_add_explicit(&e->routed_in, count, memory_order_relaxed);
    roo__clm_add(&cl->clm.peers[c->peer].msgs_received, count);
    roo__clm_add(&cl->clm.peers[c->peer].bytes_received, ROO__FRAME_HDR + frame_len);
    if (++p->inbound_inflight >= INBOUND_ROUTES_MAX)
        roo__fconn_pause_read(&c->fc, true);
    roo__queue_push(&e->shards[thread].inbox, &r->node);
    return true;
}

void roo__links_on_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__data_kind kind = ROO__DATA_NONE;
    roo__data_hello h;
    uint32_t thread = 0, count = 0;
    uint64_t seq = 0;
    roo__route *r = route_get(cl);
    int64_t stamp[2] = { 0, 0 };
    int rc = roo__wire_data_decode(payload, len, &kind, &h, &thread, &seq, &count, stamp, &r->data);

    if (rc < 0) {
        roo__log_warn("data connection from %s: a %zu-byte frame is not a data message; "
                      "closing it",
                      c->fc.peer, len);
    } else if (kind == ROO__DATA_HELLO) {
        route_put(cl, r);
        if (!on_data_hello(cl, c, &h))
            roo__cl_conn_kill(c);
        return;
    } else if (!c->hello_seen) {
        roo__log_warn("data connection from %s: data before hello; closing it", c->fc.peer);
    } else if (kind == ROO__DATA_CHUNK) {
        route_put(cl, r);
        roo__move_on_chunk(cl, c, payload, len);
        return;
    } else if (kind == ROO__DATA_STREAM_ASK) {
        route_put(cl, r);
        roo__cl_stream_asked(cl, c, payload, len);
        return;
    } else {
        /* Checked where it is used: a pipeline index out of range counts as the first. */
        r->read_ns = stamp[0];
        r->pipeline = stamp[1] >= 0 && stamp[1] <= UINT32_MAX ? (uint32_t)stamp[1] : 0;
        if (on_data_batch(cl, c, r, thread, seq, count, len))
            return;
    }
    route_put(cl, r);
    roo__cl_conn_kill(c);
}

void roo__links_route_returned(cluster *cl, roo__route *r)
{
    peer *p = cl->has_topology && r->worker < cl->npeers ? &cl->peers[r->worker] : NULL;

    if (p && p->inbound_inflight > 0) {
        p->inbound_inflight--;
        if (p->inbound && !p->inbound->dead && p->inbound_inflight < INBOUND_ROUTES_MAX / 2)
            roo__fconn_pause_read(&p->inbound->fc, false);
    }
    r->node.next = (roo__qnode *)cl->route_pool;
    cl->route_pool = r;
}

/* A committed batch's routes for other workers: onto their links (or held, during a move). */
static void send_routes(cluster *cl, roo__batch *b)
{
    roo__route *r = b->remote, *next;

    b->remote = NULL;
    for (; r; r = next) {
        peer *p;
        next = (roo__route *)r->node.next;
        r->node.next = NULL;
        if (r->held && cl->mig.active && cl->mig.holding && r->hold_gen == cl->mig.hold_gen) {
            /* For a partition on the move: kept, in order, until the switch. */
            roo__cl_route_append(&cl->mig.held_head, &cl->mig.held_tail, r);
            continue;
        }
        if (r->held && roo__move_gen_aborted(cl, r->hold_gen)) {
            /* Held for a move that was aborted: its thread re-routes it (in order). */
            r->node.kind = ROO__Q_HELD_BACK;
            roo__queue_push(&r->from->inbox, &r->node);
            continue;
        }
        if (!cl->has_topology || r->worker >= cl->npeers || r->worker == cl->self) {
            roo__log_error("internal error: route to unknown worker %u", r->worker);
            r->node.kind = ROO__Q_ROUTE_RETURN;
            roo__queue_push(&r->from->inbox, &r->node);
            continue;
        }
        p = &cl->peers[r->worker];
        roo__cl_route_append(&p->q_head, &p->q_tail, r);
        roo__links_pump(p);
    }
}

/* The peers' batches that a committed batch applied: acknowledge them. */
static void send_acks(cluster *cl, roo__batch *b)
{
    roo__engine *e = cl->e;

    for (uint32_t i = 0; i < b->nacks; i++) {
        const roo__link_ack *a = &b->acks[i];
        peer *p;
        aconn *c;
        bool last = true;
        if (!cl->has_topology || a->peer >= cl->npeers || a->thread >= e->nshards)
            continue;
        p = &cl->peers[a->peer];
        if (a->incarnation != p->in_incarnation)
            continue; /* from a previous life of the sender: it no longer waits for it */
        if (a->seq > p->in_applied[a->thread])
            p->in_applied[a->thread] = a->seq;
        /* One acknowledgement per (peer, thread) and batch: the highest, on the connection
         * the batch came in on, or, if that one is gone, on the peer's link now. (The
         * sender sent the batch again on its new link, but while the first copy was still
         * in a thread, so that copy was dropped unacknowledged: this is its only answer.
         * Without it a sender whose traffic stopped there would wait for ever, and a
         * move's hold could not pass its fence.) */
        for (uint32_t k = i + 1; k < b->nacks && last; k++)
            last = !(b->acks[k].peer == a->peer && b->acks[k].thread == a->thread &&
                     b->acks[k].conn == a->conn);
        c = last ? roo__cl_find_conn(cl, a->conn) : NULL;
        if (last && (!c || c->dead || c->kind != CONN_DATA || c->peer != (int)a->peer))
            c = p->inbound && !p->inbound->dead ? p->inbound : NULL;
        if (c && c->kind == CONN_DATA && c->peer == (int)a->peer) {
            roo__wire_data_ack_encode(a->thread, p->in_applied[a->thread],
                                      roo__fconn_outbuf(&c->fc));
            roo__fconn_flush(&c->fc);
        }
    }
    b->nacks = 0;
}

bool roo__links_idle(const cluster *cl)
{

    if (cl->mig.held_head)
        return false;
    for (uint32_t w = 0; cl->has_topology && w < cl->npeers; w++) {
        const peer *p = &cl->peers[w];
        if (w == cl->self)
            continue;
        if (p->q_head || p->frames.len || (p->data_open && roo__fconn_pending(&p->data)) ||
            p->inbound_inflight)
            return false;
    }
    return true;
}

void roo__links_committed(cluster *cl, roo__batch *b)
{
    if (b->nacks)
        send_acks(cl, b);
    if (b->remote)
        send_routes(cl, b);
}
