/* move.c: every worker's part of a partition move (grow, shrink).
 *
 * DESIGN
 * The initializer drives a move (initializer.c) in phases (proto/roo.proto, Migrate); every
 * worker, the initializer too, does its part here and reports each phase (MigrateReport):
 *   PRECOPY   old owners' threads start noting which keys of the outgoing partitions
 *             change, then the committed state and stream marks of those partitions go to
 *             the new owners as StateChunks; nothing pauses yet.
 *   HOLD      every worker stores the table after the move ("pending", so a restart goes on
 *             holding), routes new messages for moving partitions to held destinations, and
 *             reports once everything it routed before is committed where it went (the
 *             fence: the old owners have applied all they will ever apply of them).
 *   TRANSFER  old owners wait until their sinks took the output queued so far, then send
 *             the committed values of the keys that changed since the pre-copy (all of a
 *             partition if they restarted since); new owners apply and commit them, and
 *             report.
 *   switch    the initializer stores the new table (the commit point) and sends it: each
 *             worker installs it, lets its held messages go to the new owners (in order, on
 *             the same links as what follows), and old owners drop the moved state.
 * A worker that restarts during a move finds the pending table and holds again; the
 * initializer repeats the current phase to it (every step can be repeated, and imports
 * overwrite). Before the switch the initializer may abort the move (roo__move_abort): held
 * messages are re-routed through the table before it, imports dropped.
 * docs/architecture.md explains why the result is exact.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"

static void mig_retry_later(cluster *cl, int64_t ms);

static void mig_report(cluster *cl, uint32_t phase)
{
    roo__ctl m = { .kind = ROO__CTL_MIGRATE_REPORT,
                   .epoch = cl->mig.epoch,
                   .phase = phase,
                   .worker_name = (char *)cl->name };

    cl->mig.reported[phase] = true;
    if (cl->mode == ROO__INITIALIZER) {
        roo__coord_report(cl, cl->self, cl->mig.epoch, phase);
        return;
    }
    /* Lost if the link is down: the initializer repeats the phase when we reconnect. */
    roo__cl_send_ctl(&cl->to_init, &m);
}

void roo__move_check(cluster *cl)
{
    struct mig_state *m = &cl->mig;
    bool sent_all = true;

    if (!m->active)
        return;
    if (m->precopy_started && !m->reported[ROO__MIG_PRECOPY]) {
        /* Old owner: pre-copy sent to every new owner; new owner: all of it committed. */
        for (uint32_t w = 0; w < cl->npeers && m->noutgoing; w++)
            for (uint32_t q = 0; q < cl->topo.partitions && sent_all; q++)
                if (m->outgoing[q] && m->next.owner[q] == w &&
                    cl->peers[w].precopy_epoch != m->epoch)
                    sent_all = false;
        if ((!m->noutgoing || (m->track_valid && sent_all)) && m->nprecopied == m->nincoming)
            mig_report(cl, ROO__MIG_PRECOPY);
    }
    if (m->holding && !m->reported[ROO__MIG_HOLD] && m->pending_stored &&
        m->shards_held == cl->e->nshards)
        mig_report(cl, ROO__MIG_HOLD);
    if (m->transfer_started && m->reported[ROO__MIG_HOLD] && !m->reported[ROO__MIG_TRANSFER] &&
        m->nimported == m->nincoming) {
        if (m->nincoming)
            roo__log_info("partition move %llu: the state of %u partition(s) is committed here "
                          "(%lld ms after the move began)",
                          (unsigned long long)m->epoch, m->nincoming,
                          (long long)((roo__now_ns() - m->started_ns) / 1000000));
        mig_report(cl, ROO__MIG_TRANSFER);
    }
}

/* The same table: same workers at the same addresses, same owners. */
static bool same_table(const roo__topology *a, const roo__topology *b)
{
    if (a->nworkers != b->nworkers || a->partitions != b->partitions)
        return false;
    for (size_t i = 0; i < a->nworkers; i++) {
        const roo__worker_info *x = &a->workers[i], *y = &b->workers[i];
        if (strcmp(x->name, y->name) || strcmp(x->control_addr, y->control_addr) ||
            strcmp(x->data_addr, y->data_addr) || x->threads != y->threads || x->left != y->left)
            return false;
    }
    return memcmp(a->owner, b->owner, a->partitions * sizeof(*a->owner)) == 0;
}

/* The threads stop noting the moving partitions' changed keys (a TRACK without parts). */
static void stop_noting(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    for (unsigned i = 0; m->track_asked && !m->dump_asked && i < cl->e->nshards; i++) {
        roo__track_msg *t = roo__xcalloc(1, sizeof(*t));
        t->node.kind = ROO__Q_TRACK;
        t->epoch = m->epoch;
        roo__queue_push(&cl->e->shards[i].inbox, &t->node);
    }
}

/*
 * Forget a move this worker prepared but never held for: the initializer no longer runs it
 * (it restarted before storing the move, or began another). Nothing of it was switched to,
 * and a held move is never abandoned: the initializer stores a move before anyone holds.
 * Workers the move was adding are forgotten with it.
 */
bool roo__move_abandon(cluster *cl, const char *why)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || m->holding)
        return false;
    roo__log_info("partition move to table version %llu abandoned: %s",
                  (unsigned long long)m->epoch, why);
    roo__timer_stop(cl->e->io_loop, &m->retry);
    stop_noting(cl);
    roo__move_free(cl);
    roo__links_forget_from(cl, (uint32_t)cl->topo.nworkers);
    roo__cl_install_routes(cl, NULL);
    return true;
}

/*
 * The initializer aborted the move (roo-ctl move --abort), and it may be past the pre-copy:
 * we may hold. Nothing was switched to (the initializer aborts only before it stores the
 * next table). Back to the table before the move: the held messages go back to the threads
 * that routed them, which re-route them through that table in order (partitions.c,
 * unhold_check); what was imported for the move is dropped; the pending table is cleared
 * on disk first, so that nothing dropped here can be committed before it. Returns false
 * if no move was under way.
 */
bool roo__move_abort(cluster *cl, const char *why)
{
    struct mig_state *m = &cl->mig;
    uint64_t epoch = m->epoch;
    uint8_t *drop = NULL;
    roo__route *r, *next;
    unsigned held = 0;

    if (!m->active)
        return false;
    if (!m->holding)
        return roo__move_abandon(cl, why);
    roo__timer_stop(cl->e->io_loop, &m->retry);
    stop_noting(cl);
    cl->aborted_epoch = epoch;
    cl->aborted_gens =
        roo__xrealloc(cl->aborted_gens, (cl->naborted_gens + 1) * sizeof(*cl->aborted_gens));
    cl->aborted_gens[cl->naborted_gens++] = m->hold_gen;
    for (r = m->held_head; r; r = next) {
        next = (roo__route *)r->node.next;
        r->node.next = NULL;
        r->node.kind = ROO__Q_HELD_BACK;
        roo__queue_push(&r->from->inbox, &r->node);
        held++;
    }
    m->held_head = m->held_tail = NULL;
    if (m->nincoming) {
        drop = roo__xmalloc(cl->topo.partitions);
        memcpy(drop, m->incoming, cl->topo.partitions);
    }
    roo__log_warn("partition move to table version %llu aborted (%s) after %lld ms: back to table "
                  "version %llu; %u held buffer(s) here go back to their threads to be re-routed%s",
                  (unsigned long long)epoch, why,
                  (long long)((roo__now_ns() - m->started_ns) / 1000000),
                  (unsigned long long)cl->topo.version, held,
                  m->nincoming ? "; the state imported for it is dropped" : "");
    roo__move_free(cl);
    roo__cl_persist_topology(cl); /* no pending table any more; queued before any drop */
    roo__links_forget_from(cl, (uint32_t)cl->topo.nworkers);
    roo__cl_install_unhold(cl, drop, epoch);
    free(drop);
    m->hold_ns = 0;
    return true;
}

/*
 * ABORT from the initializer: it runs no move but keep_epoch to table keep (0: none; keep
 * is then its table). A move the initializer stored (its table is at our move's version) is
 * not aborted: the table it sent first switched it, or will.
 */
void roo__move_on_abort(cluster *cl, uint64_t keep_epoch, const roo__topology *keep)
{
    if (!cl->mig.active ||
        (keep_epoch && cl->mig.epoch == keep_epoch && same_table(&cl->mig.next, keep)) ||
        (!keep_epoch && keep->version >= cl->mig.epoch))
        return;
    if (roo__move_abort(cl, "the initializer no longer runs it"))
        roo__clm_move_ended(cl, CLM_MOVE_ABORTED);
}

bool roo__move_gen_aborted(const cluster *cl, uint32_t gen)
{
    for (size_t i = 0; i < cl->naborted_gens; i++)
        if (cl->aborted_gens[i] == gen)
            return true;
    return false;
}

/* Take part in a move to `next`: peers for new workers, what comes and what goes. */
bool roo__move_prepare(cluster *cl, uint64_t epoch, const roo__topology *next)
{
    struct mig_state *m = &cl->mig;
    roo__engine *e = cl->e;

    if (m->active && m->epoch == epoch && same_table(&m->next, next))
        return true;
    if (m->active && cl->mode != ROO__INITIALIZER &&
        roo__move_abandon(cl, "the initializer began another move"))
        roo__clm_move_ended(cl, CLM_MOVE_ABANDONED);
    if (m->active || next->partitions != cl->topo.partitions ||
        next->nworkers < cl->topo.nworkers || next->nworkers > MAX_WORKERS ||
        epoch <= cl->topo.version) {
        roo__log_warn("ignoring a partition move to table version %llu (this worker has table "
                      "%llu%s)",
                      (unsigned long long)epoch, (unsigned long long)cl->topo.version,
                      m->active ? " and another move under way" : "");
        return false;
    }
    roo__topology_copy(next, &m->next);
    m->active = true;
    m->epoch = epoch;
    memset(m->reported, 0, sizeof(m->reported));
    m->precopy_started = m->holding = m->transfer_started = false;
    m->track_asked = m->track_valid = m->dump_asked = m->dump_done = false;
    m->shards_held = m->shards_tracking = m->shards_dumped = 0;
    m->shard_held = roo__xcalloc(e->nshards, sizeof(bool));
    m->shard_tracking = roo__xcalloc(e->nshards, sizeof(bool));
    m->incoming = roo__xcalloc(next->partitions, 1);
    m->imported = roo__xcalloc(next->partitions, 1);
    m->precopied = roo__xcalloc(next->partitions, 1);
    m->outgoing = roo__xcalloc(next->partitions, 1);
    m->nincoming = m->nimported = m->nprecopied = m->noutgoing = 0;
    m->started_ns = roo__now_ns();
    m->watch_ns = 0;
    for (uint32_t p = 0; p < next->partitions; p++) {
        if (next->owner[p] == cl->self && cl->topo.owner[p] != cl->self) {
            m->incoming[p] = 1;
            m->nincoming++;
        } else if (cl->topo.owner[p] == cl->self && next->owner[p] != cl->self) {
            m->outgoing[p] = 1;
            m->noutgoing++;
        }
    }
    roo__clm_set(&cl->clm.moving, m->nincoming + m->noutgoing);
    roo__links_update(cl, next, true);
    roo__log_info("partition move to table version %llu: %u partition(s) coming here, %u "
                  "leaving",
                  (unsigned long long)epoch, m->nincoming, m->noutgoing);
    return true;
}

/* PRECOPY: threads note changes to the outgoing partitions, then their state is sent. */
void roo__move_precopy(cluster *cl, uint32_t round)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || m->holding || (m->precopy_started && m->precopy_round == round))
        return;
    m->precopy_started = true;
    m->precopy_round = round;
    m->reported[ROO__MIG_PRECOPY] = false;
    /* Repeated (someone came back): a new round, counted and sent again. Chunks of the
     * earlier round still in flight are told apart by their round and not counted. */
    memset(m->precopied, 0, cl->topo.partitions);
    m->nprecopied = 0;
    for (uint32_t w = 0; w < cl->npeers; w++)
        cl->peers[w].precopy_epoch = 0;
    if (m->noutgoing && !m->track_asked) {
        m->track_asked = true;
        for (unsigned i = 0; i < cl->e->nshards; i++) {
            roo__track_msg *t = roo__xcalloc(1, sizeof(*t));
            t->node.kind = ROO__Q_TRACK;
            t->epoch = m->epoch;
            t->parts = roo__xmalloc(cl->topo.partitions);
            memcpy(t->parts, m->outgoing, cl->topo.partitions);
            roo__queue_push(&cl->e->shards[i].inbox, &t->node);
        }
    }
    roo__move_send_precopy_all(cl);
    roo__move_check(cl);
}

/* HOLD: store the move (a restart holds again), hold the moving partitions' messages. */
void roo__move_hold(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active)
        return;
    if (m->holding) {
        /* Repeated (the initializer restarted, or we reconnected): answer again. */
        m->reported[ROO__MIG_HOLD] = false;
        roo__move_check(cl);
        return;
    }
    m->holding = true;
    m->hold_ns = roo__now_ns();
    m->hold_gen = ++cl->hold_gens;
    roo__cl_install_routes(cl, NULL);
    roo__cl_persist_topology(cl);
    m->pending_meta = cl->meta_queued;
    m->pending_stored = false;
    roo__log_info("partition move %llu: holding the moving partitions' messages until the "
                  "switch",
                  (unsigned long long)m->epoch);
}

/* A move found in the resilience directory (or joined late): no pre-copy, hold at once. */
void roo__move_begin(cluster *cl, uint64_t epoch, const roo__topology *next)
{
    if (roo__move_prepare(cl, epoch, next))
        roo__move_hold(cl);
}

void roo__move_transfer(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || !m->holding)
        return;
    m->transfer_started = true;
    m->reported[ROO__MIG_TRANSFER] = false;
    if (!m->sink_marks) {
        /* Our output for the moving partitions is all queued by now (the fence): it must
         * reach the sinks before the new owners write theirs. */
        m->sink_marks = roo__xcalloc(cl->e->nsinks ? cl->e->nsinks : 1, sizeof(uint64_t));
        roo__io_sinks_mark(cl->e, m->sink_marks);
    }
    for (uint32_t w = 0; w < cl->npeers; w++)
        cl->peers[w].chunks_epoch = 0;
    {
        /* ROO_TEST_TRANSFER_DELAY_MS widens the transfer phase so that tests can kill a
         * worker in the middle of a move; nothing else should set it. */
        const char *d = getenv("ROO_TEST_TRANSFER_DELAY_MS");
        uint64_t ms = 0;
        m->send_after_ns = 0;
        if (d && roo__parse_uint(d, 0, 600000, &ms) == 0)
            m->send_after_ns = roo__now_ns() + (int64_t)ms * 1000000;
    }
    if (m->noutgoing && m->track_valid && !m->dump_asked) {
        /* Only what changed since the pre-copy goes now: the threads say which keys. */
        m->dump_asked = true;
        for (unsigned i = 0; i < cl->e->nshards; i++) {
            roo__track_msg *t = roo__xcalloc(1, sizeof(*t));
            t->node.kind = ROO__Q_TRACK_DUMP;
            t->epoch = m->epoch;
            roo__queue_push(&cl->e->shards[i].inbox, &t->node);
        }
    }
    roo__move_send_all(cl);
    roo__move_check(cl);
}

typedef struct chunk_ctx {
    cluster *cl;
    peer *p;
    roo__state_chunk c;
    uint64_t keys;
} chunk_ctx;

static void chunk_flush(chunk_ctx *x)
{
    int rc = roo__wire_data_chunk_encode(&x->c, roo__fconn_outbuf(&x->p->data));

    if (rc < 0)
        roo__log_error("cannot frame the state of partition %u for %s: %s", x->c.partition,
                       x->p->info.name, roo_strerror(rc));
    x->c.records.len = 0;
    x->c.marks.len = 0;
}

static int chunk_record(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                        size_t key_len, const uint8_t *val, size_t val_len)
{
    chunk_ctx *x = arg;
    uint8_t *q = roo__buf_reserve(&x->c.records, 8 + key_len + val_len);

    (void)partition;
    roo__store_le16(q, state_id);
    roo__store_le16(q + 2, (uint16_t)key_len);
    roo__store_le32(q + 4, (uint32_t)val_len);
    memcpy(q + 8, key, key_len);
    memcpy(q + 8 + key_len, val, val_len);
    x->c.records.len += 8 + key_len + val_len;
    x->keys++;
    if (x->c.records.len >= CHUNK_BYTES)
        chunk_flush(x);
    return 0;
}

static int chunk_mark(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    roo__buf *marks = arg;

    if (key_len == ROO__STREAM_KEY_LEN && val_len == ROO__STREAM_VAL_LEN) {
        roo__buf_append(marks, key, key_len);
        roo__buf_append(marks, val, val_len);
    }
    return 0;
}

enum { SEND_PRECOPY, SEND_FULL, SEND_CHANGES };

/* The committed values of the keys the threads noted as changed, in partition q. */
static int chunk_changes(cluster *cl, chunk_ctx *x, uint16_t q)
{
    const uint8_t *p = cl->mig.dumped.data, *end = p + cl->mig.dumped.len;
    roo__buf val = { 0 };
    int rc = 0;

    while (p + 6 <= end && rc == 0) {
        uint16_t h[3];
        memcpy(h, p, sizeof(h));
        if (h[0] == q) {
            val.len = 0;
            rc = roo__store_get_state(cl->e->store, q, h[1], p + 6, h[2], &val);
            if (rc == 0)
                rc = chunk_record(x, q, h[1], p + 6, h[2], val.data, val.len);
            else if (rc == -ENOENT)
                rc = 0; /* noted, never committed (its save failed): nothing to send */
        }
        p += 6 + h[2];
    }
    roo__buf_finish(&val);
    return rc;
}

/* Old owner: send p the partitions moving from us to it (see the SEND_* modes). */
static void mig_send_chunks(cluster *cl, peer *p, int mode)
{
    chunk_ctx x = { .cl = cl, .p = p };
    roo__buf marks = { 0 };
    uint32_t nparts = 0;
    int rc = 0;

    for (uint32_t q = 0; q < cl->topo.partitions && rc == 0; q++) {
        if (!cl->mig.outgoing[q] || cl->mig.next.owner[q] != p->index)
            continue;
        if (!nparts++)
            rc = roo__store_scan_db(cl->e->store, ROO__DB_STREAMS, chunk_mark, &marks);
        x.c.epoch = cl->mig.epoch;
        x.c.partition = q;
        x.c.last = false;
        x.c.precopy = mode == SEND_PRECOPY;
        x.c.round = x.c.precopy ? cl->mig.precopy_round : 0;
        if (rc == 0 && mode == SEND_CHANGES)
            rc = chunk_changes(cl, &x, (uint16_t)q);
        else if (rc == 0)
            rc = roo__store_scan_partition(cl->e->store, (uint16_t)q, chunk_record, &x);
        for (size_t off = 0; off + ROO__STREAM_MARK_LEN <= marks.len; off += ROO__STREAM_MARK_LEN)
            if (roo__key_stream_partition(marks.data + off) == q)
                roo__buf_append(&x.c.marks, marks.data + off, ROO__STREAM_MARK_LEN);
        x.c.last = true;
        chunk_flush(&x);
    }
    roo__buf_finish(&marks);
    roo__buf_finish(&x.c.records);
    roo__buf_finish(&x.c.marks);
    if (rc < 0) {
        roo__log_error("cannot read the state moving to %s: %s; trying again", p->info.name,
                       roo__store_errmsg(cl->e->store));
        mig_retry_later(cl, MIG_RETRY_MS);
        return;
    }
    if (mode == SEND_PRECOPY)
        p->precopy_epoch = cl->mig.epoch;
    else
        p->chunks_epoch = cl->mig.epoch;
    roo__fconn_flush(&p->data);
    if (nparts)
        roo__log_info("%s %u partition(s), %llu key(s), to %s",
                      mode == SEND_PRECOPY ? "pre-copied"
                      : mode == SEND_FULL  ? "sent"
                                           : "sent the changes since the pre-copy in",
                      nparts, (unsigned long long)x.keys, p->info.name);
}

static bool gets_from_us(const cluster *cl, uint32_t w)
{
    for (uint32_t q = 0; q < cl->topo.partitions; q++)
        if (cl->mig.outgoing[q] && cl->mig.next.owner[q] == w)
            return true;
    return false;
}

void roo__move_send_precopy_all(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || !m->precopy_started || m->holding || !m->track_valid)
        return;
    for (uint32_t w = 0; w < cl->npeers; w++) {
        peer *p = &cl->peers[w];
        if (w != cl->self && !p->left && p->data_open && p->precopy_epoch != m->epoch &&
            gets_from_us(cl, w))
            mig_send_chunks(cl, p, SEND_PRECOPY);
    }
    roo__move_check(cl);
}

static void mig_retry_cb(roo__loop *loop, roo__timer *t)
{
    (void)loop;
    roo__move_send_precopy_all(t->data);
    roo__move_send_all(t->data);
}

static void mig_retry_later(cluster *cl, int64_t ms)
{
    cl->mig.retry.cb = mig_retry_cb;
    cl->mig.retry.data = cl;
    roo__timer_start(cl->e->io_loop, &cl->mig.retry, ms);
}

void roo__move_send_all(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || !m->transfer_started)
        return;
    if (m->dump_asked && !m->dump_done)
        return; /* the threads' lists of changed keys come first */
    if (!roo__io_sinks_reached(cl->e, m->sink_marks) || roo__now_ns() < m->send_after_ns) {
        mig_retry_later(cl, MIG_RETRY_MS);
        return;
    }
    for (uint32_t w = 0; w < cl->npeers; w++) {
        peer *p = &cl->peers[w];
        if (w != cl->self && !p->left && p->data_open && p->chunks_epoch != m->epoch &&
            gets_from_us(cl, w))
            mig_send_chunks(cl, p, m->dump_done ? SEND_CHANGES : SEND_FULL);
    }
}

/*
 * A move whose phase has not been reported from here for 10 s says why, once every 10 s:
 * the kind of stall that otherwise shows only as a shrink that never ends.
 */
void roo__move_watch(cluster *cl)
{
    struct mig_state *m = &cl->mig;
    int64_t now = roo__now_ns(), since = m->hold_ns ? m->hold_ns : m->started_ns;
    const char *phase;
    char why[600];

    if (!m->active || now - since < 10 * 1000000000LL || now - m->watch_ns < 10 * 1000000000LL)
        return;
    m->watch_ns = now;
    phase = NULL;
    if (m->transfer_started && !m->reported[ROO__MIG_TRANSFER]) {
        phase = "transfer";
        snprintf(why, sizeof(why), "%u of %u incoming partition(s) committed; sending %s",
                 m->nimported, m->nincoming,
                 m->dump_asked && !m->dump_done ? "after the threads' lists of changed keys"
                                                : "when the sinks took the queued output");
    } else if (m->holding && !m->reported[ROO__MIG_HOLD]) {
        phase = "hold";
        size_t len = (size_t)snprintf(
            why, sizeof(why), "table %s; %u of %u thread(s) past the fence",
            m->pending_stored ? "stored" : "not stored yet", m->shards_held, cl->e->nshards);
        for (unsigned i = 0; i < cl->e->nshards && len < sizeof(why); i++) {
            roo__shard *sh = &cl->e->shards[i];
            if (m->shard_held[i])
                continue;
            len += (size_t)snprintf(
                why + len, sizeof(why) - len,
                "; thread %u waits for batch %llu (%s, %u route buffer(s) not acknowledged)", i,
                (unsigned long long)atomic_load_explicit(&sh->fence_wait_seq, memory_order_relaxed),
                atomic_load_explicit(&sh->fence_wait_committed, memory_order_relaxed)
                    ? "committed"
                    : "not committed",
                atomic_load_explicit(&sh->fence_wait_routes, memory_order_relaxed));
        }
    } else if (m->precopy_started && !m->reported[ROO__MIG_PRECOPY]) {
        phase = "pre-copy";
        snprintf(why, sizeof(why), "%u of %u incoming partition(s) committed; changes %s",
                 m->nprecopied, m->nincoming, m->track_valid ? "noted" : "not noted yet");
    }
    if (phase)
        roo__log_warn("partition move %llu: the %s is not done here after %lld s: %s",
                      (unsigned long long)m->epoch, phase,
                      (long long)((now - since) / 1000000000LL), why);
    if (cl->mode == ROO__INITIALIZER)
        roo__coord_watch(cl, (now - since) / 1000000000LL);
}

/* Forget a move's bookkeeping (the switch, or the worker's end). */
void roo__move_free(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    roo__topology_finish(&m->next);
    free(m->shard_held);
    free(m->shard_tracking);
    free(m->incoming);
    free(m->imported);
    free(m->precopied);
    free(m->outgoing);
    free(m->sink_marks);
    roo__buf_finish(&m->dumped);
    m->shard_held = m->shard_tracking = NULL;
    m->incoming = m->imported = m->precopied = m->outgoing = NULL;
    m->sink_marks = NULL;
    m->active = false;
    roo__clm_set(&cl->clm.moving, 0);
}

/* The switch: held messages go to their new owners; the move is over here. */
void roo__move_finish(cluster *cl)
{
    roo__route *r = cl->mig.held_head, *next;
    int64_t ms = (roo__now_ns() - cl->mig.started_ns) / 1000000;

    cl->mig.held_head = cl->mig.held_tail = NULL;
    for (; r; r = next) {
        peer *p;
        next = (roo__route *)r->node.next;
        r->node.next = NULL;
        if (r->worker >= cl->npeers || r->worker == cl->self || cl->peers[r->worker].left) {
            roo__log_error("internal error: held messages for worker %u have nowhere to go",
                           r->worker);
            r->node.kind = ROO__Q_ROUTE_RETURN;
            roo__queue_push(&r->from->inbox, &r->node);
            continue;
        }
        p = &cl->peers[r->worker];
        roo__cl_route_append(&p->q_head, &p->q_tail, r);
    }
    for (uint32_t w = 0; w < cl->npeers; w++)
        if (w != cl->self && cl->peers[w].q_head)
            roo__links_pump(&cl->peers[w]);
    roo__timer_stop(cl->e->io_loop, &cl->mig.retry);
    roo__move_free(cl);
    roo__log_info("partition move to table version %llu done here (%lld ms after it began; "
                  "messages held for %lld ms)",
                  (unsigned long long)cl->mig.epoch, (long long)ms,
                  (long long)(cl->mig.hold_ns ? (roo__now_ns() - cl->mig.hold_ns) / 1000000 : 0));
    roo__clm_move_ended(cl, CLM_MOVE_DONE);
    cl->mig.hold_ns = 0;
}

void roo__move_on_note(cluster *cl, roo__mig_note *n)
{
    roo__engine *e = cl->e;
    struct mig_state *m = cl ? &cl->mig : NULL;

    if (m && m->active && n->epoch == m->epoch && n->shard < e->nshards) {
        switch (n->kind) {
        case ROO__MIG_NOTE_HELD:
            if (!m->shard_held[n->shard]) {
                m->shard_held[n->shard] = true;
                m->shards_held++;
            }
            break;
        case ROO__MIG_NOTE_IMPORTED: {
            uint8_t *done = n->precopy ? m->precopied : m->imported;
            uint32_t *count = n->precopy ? &m->nprecopied : &m->nimported;
            if (n->partition < cl->topo.partitions && m->incoming[n->partition] &&
                !done[n->partition] && (!n->precopy || n->round == m->precopy_round)) {
                done[n->partition] = 1;
                (*count)++;
            }
            break;
        }
        case ROO__MIG_NOTE_TRACKING:
            if (!m->shard_tracking[n->shard]) {
                m->shard_tracking[n->shard] = true;
                if (++m->shards_tracking == e->nshards) {
                    m->track_valid = true; /* every change from now on is noted */
                    roo__move_send_precopy_all(cl);
                }
            }
            break;
        case ROO__MIG_NOTE_TRACKED:
            if (m->dump_asked && !m->dump_done) {
                roo__buf_append(&m->dumped, n->keys.data, n->keys.len);
                if (!n->precopy)
                    m->track_valid = false; /* a thread had nothing noted: send it all */
                if (++m->shards_dumped == e->nshards) {
                    m->dump_done = m->track_valid;
                    if (!m->dump_done)
                        m->dump_asked = false;
                    roo__move_send_all(cl);
                }
            }
            break;
        }
        roo__move_check(cl);
    }
    if (n->kind == ROO__MIG_NOTE_TRACKED)
        roo__buf_finish(&n->keys);
    free(n);
}

/* A StateChunk arrived on a data link: a piece of a partition moving here, for its thread. */
void roo__move_on_chunk(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__engine *e = cl->e;
    roo__import_msg *im;
    roo__state_chunk ch = { 0 };

    if (roo__wire_data_chunk_decode(payload, len, &ch) < 0) {
        roo__log_warn("data connection from %s: malformed state chunk; closing it", c->fc.peer);
        roo__cl_conn_kill(c);
        return;
    }
    if (ch.epoch == cl->aborted_epoch && !(cl->mig.active && ch.epoch == cl->mig.epoch)) {
        /* Of a move aborted here: it was still on its way. */
        roo__buf_finish(&ch.records);
        roo__buf_finish(&ch.marks);
        return;
    }
    if (ch.epoch > (cl->mig.active ? cl->mig.epoch : cl->topo.version)) {
        /* The sender heard of this move before we did (control and data are separate
         * connections). Dropping the chunk would stall the move; closing the link makes
         * the sender connect again and send its move's state again (peer_data_connected),
         * by when we know the move. */
        roo__log_info("state chunk of move %llu from %s arrived before this worker heard of "
                      "the move; closing that link so that it is sent again",
                      (unsigned long long)ch.epoch, cl->peers[c->peer].info.name);
        roo__buf_finish(&ch.records);
        roo__buf_finish(&ch.marks);
        roo__cl_conn_kill(c);
        return;
    }
    if (!cl->mig.active || ch.epoch != cl->mig.epoch || ch.partition >= cl->topo.partitions ||
        !cl->mig.incoming[ch.partition]) {
        roo__log_debug("state chunk of partition %u (move %llu) from %s is not for us now; "
                       "ignored",
                       ch.partition, (unsigned long long)ch.epoch, cl->peers[c->peer].info.name);
        roo__buf_finish(&ch.records);
        roo__buf_finish(&ch.marks);
        return;
    }
    if (ch.precopy && ch.round != cl->mig.precopy_round) {
        bool ahead = !cl->mig.holding &&
                     (!cl->mig.precopy_started || (int32_t)(ch.round - cl->mig.precopy_round) > 0);
        /* Ahead: the sender heard of a repeated pre-copy before we did; as above, the link
         * is closed and the sender sends it again. Behind: a round that was repeated. */
        if (ahead)
            roo__log_info("pre-copy chunk of move %llu from %s is of a round this worker has "
                          "not heard of yet; closing that link so that it is sent again",
                          (unsigned long long)ch.epoch, cl->peers[c->peer].info.name);
        roo__buf_finish(&ch.records);
        roo__buf_finish(&ch.marks);
        if (ahead)
            roo__cl_conn_kill(c);
        return;
    }
    im = roo__xcalloc(1, sizeof(*im));
    im->node.kind = ROO__Q_IMPORT;
    im->epoch = ch.epoch;
    im->partition = (uint16_t)ch.partition;
    im->last = ch.last;
    im->precopy = ch.precopy;
    im->round = ch.round;
    im->records = ch.records;
    im->marks = ch.marks;
    roo__queue_push(&e->shards[ch.partition % e->nshards].inbox, &im->node);
}
