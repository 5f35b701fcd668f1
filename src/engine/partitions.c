/* partitions.c: a processing thread's side of the partition table and of partition moves:
 * installing a table, holding and releasing messages of moving partitions (or re-routing
 * them when the move is aborted), noting changed keys for a pre-copy, applying state that
 * moves here, and dropping what moved away.
 *
 * Runs on the shard's own thread, like shard.c and source.c (they share shard-int.h);
 * cluster/move.c drives the steps and docs/architecture.md says why the result is exact.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine/shard-int.h"

/* Tell io that a step of a partition move is done on this thread. */
static roo__mig_note *mig_note_new(roo__shard *sh, uint64_t epoch, int kind)
{
    roo__mig_note *n = roo__xcalloc(1, sizeof(*n));

    n->node.kind = ROO__Q_MIGRATION;
    n->epoch = epoch;
    n->shard = sh->idx;
    n->kind = kind;
    return n;
}

static void mig_note(roo__shard *sh, uint64_t epoch, int kind, uint16_t partition, bool precopy,
                     uint32_t round)
{
    roo__mig_note *n = mig_note_new(sh, epoch, kind);

    n->partition = partition;
    n->precopy = precopy;
    n->round = round;
    roo__queue_push(&sh->eng->io_q, &n->node);
}

/* Pre-copy: tracking is on once every batch sealed before it began is committed. */
void roo__shard_track_check(roo__shard *sh)
{
    if (!sh->track || sh->track_reported || sh->committed_seq < sh->track_fence)
        return;
    sh->track_reported = true;
    mig_note(sh, sh->track_epoch, ROO__MIG_NOTE_TRACKING, 0, false, 0);
}

void roo__shard_track_start(roo__shard *sh, roo__track_msg *m)
{
    if (!m->parts) {
        /* The move was abandoned or aborted in its pre-copy: stop noting, forget the notes
         * (else every later change of those partitions was noted until the next move). */
        for (size_t i = 0; i < sh->ntracked; i++)
            sh->tracked[i]->flags &= (uint16_t)~ROO__ENTRY_TRACKED;
        sh->ntracked = 0;
        free(sh->track);
        sh->track = NULL;
        free(m);
        return;
    }
    if (sh->track && sh->track_epoch == m->epoch &&
        memcmp(sh->track, m->parts, sh->eng->cfg.partitions) == 0) {
        /* Repeated: keep what was noted, answer again. (The same epoch with other
         * partitions is another move: an abandoned one's number, used again.) */
        free(m->parts);
        sh->track_reported = false;
    } else {
        free(sh->track);
        sh->track = m->parts;
        sh->track_epoch = m->epoch;
        sh->track_reported = false;
        /* Entries saved in the batch being filled are noted now; the ones saved before are
         * in sealed batches, which the pre-copy reads once they are committed. */
        for (size_t i = 0; i < sh->ndirty; i++)
            roo__shard_track_note(sh, sh->dirty[i]);
    }
    sh->track_fence = sh->batch_seq - 1;
    free(m);
    roo__shard_track_check(sh);
}

/* Hand io the keys noted since the pre-copy began, and stop noting. */
void roo__shard_track_dump(roo__shard *sh, uint64_t epoch)
{
    roo__mig_note *n = mig_note_new(sh, epoch, ROO__MIG_NOTE_TRACKED);

    for (size_t i = 0; i < sh->ntracked; i++) {
        roo__entry *e = sh->tracked[i];
        uint16_t h[3] = { e->partition, e->state_id, e->key_len };
        roo__buf_append(&n->keys, h, sizeof(h));
        roo__buf_append(&n->keys, e->key, e->key_len);
        e->flags &= (uint16_t)~ROO__ENTRY_TRACKED;
    }
    n->precopy = sh->track != NULL && sh->track_epoch == epoch; /* false: nothing was noted */
    sh->ntracked = 0;
    free(sh->track);
    sh->track = NULL;
    roo__queue_push(&sh->eng->io_q, &n->node);
}

/*
 * The switch: messages held for partitions that moved to our own threads go to them now,
 * ahead of anything read later (our own thread applies them before reading on).
 */
static void release_held(roo__shard *sh)
{
    roo__route *r = sh->held_head, *next;

    sh->held_head = sh->held_tail = NULL;
    for (; r; r = next) {
        next = (roo__route *)r->node.next;
        r->held = false;
        r->node.kind = ROO__Q_ROUTE;
        r->node.next = NULL;
        sh->routes_inflight++;
        if (r->thread == sh->idx) {
            if (sh->route_in_tail)
                sh->route_in_tail->next = &r->node;
            else
                sh->route_in_head = &r->node;
            sh->route_in_tail = &r->node;
            sh->routes_first = true;
        } else {
            roo__queue_push(&sh->eng->shards[r->thread].inbox, &r->node);
        }
    }
}

/* A dropped entry: release what its state object owns. */
static void drop_finish(roo__entry *e, void *arg)
{
    roo__shard *sh = arg;
    const roo_state_type *t = sh->eng->app->state_types[e->state_id];

    if (t->finish && (e->flags & ROO__ENTRY_READY))
        t->finish(roo__entry_state(e), t->ctx);
}

/* A hold's fence: every batch sealed before it is durable (committed, routes applied). */
void roo__shard_hold_check(roo__shard *sh)
{
    if (!sh->hold_epoch || sh->hold_reported)
        return;
    if (sh->dur.recs.len && roo__ring_at(&sh->dur.recs, 0).batch_seq <= sh->hold_fence) {
        const struct roo__dur_rec *r = &roo__ring_at(&sh->dur.recs, 0);
        atomic_store_explicit(&sh->fence_wait_routes, r->routes_pending, memory_order_relaxed);
        atomic_store_explicit(&sh->fence_wait_committed, r->returned, memory_order_relaxed);
        atomic_store_explicit(&sh->fence_wait_seq, r->batch_seq, memory_order_relaxed);
        return;
    }
    sh->hold_reported = true;
    mig_note(sh, sh->hold_epoch, ROO__MIG_NOTE_HELD, 0, false, 0);
}

/* For the metrics: the partitions whose state is here (until a move's switch, the old table's). */
static void publish_owned(roo__shard *sh)
{
    const uint16_t *t = sh->part_old ? sh->part_old : sh->part_dest;
    uint32_t n = 0;

    for (uint32_t p = 0; t && p < sh->partitions; p++)
        n += t[p] < sh->eng->nshards;
    atomic_store_explicit(&sh->parts_pub, sh->partitions, memory_order_relaxed);
    atomic_store_explicit(&sh->parts_owned_pub, n, memory_order_relaxed);
}

static void begin_unhold(roo__shard *sh, roo__routes_msg *m);

/* Forget m's dropped partitions here, and note the DROP records their rows need (written
 * with the next batch); m->drop is freed. */
static void drop_partitions(roo__shard *sh, roo__routes_msg *m)
{
    roo__table_drop(sh->table, m->drop, drop_finish, sh);
    if (!sh->drop_pending)
        sh->drop_pending = roo__xcalloc(m->partitions, 1);
    for (uint32_t p = 0; p < m->partitions; p++)
        if (m->drop[p] && p % sh->eng->nshards == sh->idx)
            sh->drop_pending[p] = 1;
    free(m->drop);
    m->drop = NULL;
    atomic_store_explicit(&sh->keys_pub, roo__table_count(sh->table), memory_order_relaxed);
}

/* The thread's table becomes m's (its arrays move here; the old ones are freed). */
static void take_table(roo__shard *sh, roo__routes_msg *m)
{
    if (m->ndests > sh->route_cap) {
        sh->route_out = roo__xrealloc(sh->route_out, m->ndests * sizeof(*sh->route_out));
        for (uint32_t d = sh->route_cap; d < m->ndests; d++)
            sh->route_out[d] = NULL;
        sh->route_cap = m->ndests;
    }
    free(sh->part_dest);
    free(sh->dests);
    free(sh->part_old);
    /* The cache's entries stand for partitions the old table gave this thread (and its
     * partitions may be of the old count). */
    roo__table_forget_recent(sh->table);
    sh->partitions = m->partitions;
    sh->part_dest = m->part_dest;
    sh->dests = m->dests;
    sh->ndests = m->ndests;
    sh->part_old = NULL;
}

void roo__shard_set_routes(roo__shard *sh, roo__routes_msg *m)
{
    if (sh->unhold) {
        /* An aborted move's messages are not re-routed yet: tables wait their turn. */
        m->node.next = NULL;
        if (sh->later_tail)
            sh->later_tail->next = &m->node;
        else
            sh->later_head = &m->node;
        sh->later_tail = &m->node;
        return;
    }
    /* Buffers in flight keep their destination; later messages use the new table. */
    roo__shard_collect_remote(sh);
    roo__shard_flush_routes(sh);
    if (m->unhold_epoch) {
        begin_unhold(sh, m);
        return;
    }
    if ((m->hold_epoch && m->hold_epoch != sh->hold_epoch) || m->drop) {
        /*
         * Everything read before a hold goes in batches sealed now; the fence waits for
         * them. Before a drop, no saved entry of a dropped partition may wait to be written.
         */
        if (sh->cur && !roo__shard_batch_empty(sh))
            roo__shard_seal(sh);
        sh->hold_fence = sh->batch_seq - 1;
    }
    if (m->hold_epoch)
        sh->hold_reported = false; /* a repeated Migrate is answered again */
    else if (sh->held_head)
        release_held(sh);
    take_table(sh, m);
    sh->hold_epoch = m->hold_epoch;
    sh->hold_gen = m->hold_gen;
    sh->part_old = m->part_old;
    if (m->drop)
        drop_partitions(sh, m);
    free(m);
    publish_owned(sh);
    roo__shard_hold_check(sh);
}

/* ---- an aborted move: back to the table before it ---- */

static void route_append(roo__route **head, roo__route **tail, roo__route *r)
{
    r->node.next = NULL;
    if (*tail)
        (*tail)->node.next = &r->node;
    else
        *head = r;
    *tail = r;
}

/*
 * Send the messages of held buffer r through the table now in force (the one before the
 * move), as they were routed: in order, with their identities. Every copy goes through a
 * route buffer, even to this thread, so that r's batch becomes durable only when each copy
 * is committed where it went: the copies count for r's batch, in place of r.
 */
static void reroute(roo__shard *sh, roo__route *r)
{
    roo__route_iter it = roo__route_iter_of(r->data.data, r->data.len);
    roo__route_rec rec;
    int64_t read_ns = sh->lat_read_ns;
    uint32_t pipeline = sh->lat_pipeline, n = 0;

    sh->lat_read_ns = r->read_ns;
    sh->lat_pipeline = r->pipeline;
    while (roo__route_next(&it, &rec)) {
        const roo__msg_id *id = rec.has_id ? &rec.id : NULL;
        uint8_t key[ROO_KEY_MAX];
        const roo__stage *st;
        int kl;

        if (rec.stage == ROO__ROUTE_INGRESS) {
            uint64_t s = roo__load_le64(rec.msg);
            roo__shard_route(sh, sh->part_dest[roo__partition_of(s, sh->partitions)], rec.stage,
                             rec.msg, rec.len, NULL);
            continue;
        }
        st = &sh->stages[rec.stage];
        if (st->wire && rec.len >= ROO__PACKED_PREFIX && roo__load_le16(rec.msg) < sh->partitions) {
            /* A host's packed message: its key is inside the packed bytes, its partition in
             * the prefix (roo__shard_route_packed). */
            roo__shard_route(sh, sh->part_dest[roo__load_le16(rec.msg)], rec.stage, rec.msg,
                             rec.len, id);
            continue;
        }
        kl = st->kind == ROO__STAGE_STATE && !st->wire ? st->key(rec.msg, rec.len, key, st->ctx)
                                                       : -1;
        if (kl < 0 || kl > ROO_KEY_MAX)
            roo__log_error("internal error: a held message for step %u has no key now; dropped",
                           rec.stage);
        else
            roo__shard_route(
                sh,
                sh->part_dest[roo__partition_of(roo__key_hash(key, (size_t)kl), sh->partitions)],
                rec.stage, rec.msg, rec.len, id);
    }
    sh->lat_read_ns = read_ns;
    sh->lat_pipeline = pipeline;
    for (uint32_t d = 0; d < sh->ndests; d++) {
        roo__route *q = sh->route_out[d];
        if (!q)
            continue;
        sh->route_out[d] = NULL;
        q->batch_seq = r->batch_seq;
        q->node.next = NULL;
        sh->routes_inflight++;
        n++;
        if (d == sh->idx) {
            /* Ours: applied before the sources are read again, like release_held's. */
            if (sh->route_in_tail)
                sh->route_in_tail->next = &q->node;
            else
                sh->route_in_head = &q->node;
            sh->route_in_tail = &q->node;
            sh->routes_first = true;
        } else if (d < sh->eng->nshards) {
            roo__queue_push(&sh->eng->shards[d].inbox, &q->node);
        } else {
            /* Sent with the batch being filled, after its commit, like what follows. */
            atomic_fetch_add_explicit(&sh->routed_out, q->nmsgs, memory_order_relaxed);
            if (sh->remote_tail)
                sh->remote_tail->node.next = &q->node;
            else
                sh->remote_pending = q;
            sh->remote_tail = q;
        }
    }
    if (r->batch_seq == sh->batch_seq) {
        sh->cur_routes += n;
        sh->cur_routes--;
    } else {
        roo__dur_add_routes(&sh->dur, r->batch_seq, n);
        roo__dur_route_done(&sh->dur, r->batch_seq);
    }
    r->held = false;
    r->node.next = (roo__qnode *)sh->route_pool;
    sh->route_pool = r;
}

/*
 * Every held buffer this thread sent to io is back: go back to the table before the move
 * and re-route, first what io gave back (held earliest), then what stayed here. A key's
 * held messages are all in one of the two lists (its partition has one new owner), so each
 * key's order is kept, and everything routed from now on follows them.
 */
static void unhold_check(roo__shard *sh)
{
    roo__routes_msg *m = sh->unhold;
    roo__route *lists[2], *r, *next;

    if (!m || sh->held_out)
        return;
    roo__shard_collect_remote(sh); /* buffers being filled: held ones stay here (unhold) */
    roo__shard_flush_routes(sh);
    lists[0] = sh->back_head;
    lists[1] = sh->held_head;
    sh->back_head = sh->back_tail = sh->held_head = sh->held_tail = NULL;
    take_table(sh, m);
    sh->hold_epoch = 0;
    sh->hold_gen = 0;
    sh->unhold = NULL;
    free(m);
    for (int i = 0; i < 2; i++)
        for (r = lists[i]; r; r = next) {
            next = (roo__route *)r->node.next;
            reroute(sh, r);
        }
    publish_owned(sh);
    roo__sources_ack(sh);
    while (!sh->unhold && sh->later_head) {
        roo__qnode *n = sh->later_head;
        sh->later_head = n->next;
        if (!sh->later_head)
            sh->later_tail = NULL;
        roo__shard_set_routes(sh, (roo__routes_msg *)n);
    }
}

/* Drop a queue of imports of move `epoch`, keeping the others in order. */
static void drop_imports(roo__shard *sh, uint64_t epoch)
{
    roo__qnode *n = sh->imports_head, *next;
    size_t k = 0;

    sh->imports_head = sh->imports_tail = NULL;
    for (; n; n = next) {
        roo__import_msg *im = (roo__import_msg *)n;
        next = n->next;
        if (im->epoch == epoch) {
            roo__buf_finish(&im->records);
            roo__buf_finish(&im->marks);
            free(im);
            continue;
        }
        n->next = NULL;
        if (sh->imports_tail)
            sh->imports_tail->next = n;
        else
            sh->imports_head = n;
        sh->imports_tail = n;
    }
    for (size_t i = 0; i < sh->nimport_waits; i++)
        if (sh->import_waits[i].epoch != epoch)
            sh->import_waits[k++] = sh->import_waits[i];
    sh->nimport_waits = k;
}

/*
 * The move this thread holds for was aborted. Held buffers of the batch being filled are
 * still here: they join the ones that stay (so only those io has are waited for). What was
 * imported for the move is forgotten: the old owners' state is the one that counts.
 */
static void begin_unhold(roo__shard *sh, roo__routes_msg *m)
{
    roo__route *r = sh->remote_pending, *next;

    sh->remote_pending = sh->remote_tail = NULL;
    for (; r; r = next) {
        next = (roo__route *)r->node.next;
        r->node.next = NULL;
        if (r->held) {
            if (sh->held_out)
                sh->held_out--;
            atomic_fetch_sub_explicit(&sh->routed_out, r->nmsgs, memory_order_relaxed);
            route_append(&sh->held_head, &sh->held_tail, r);
        } else {
            route_append(&sh->remote_pending, &sh->remote_tail, r);
        }
    }
    drop_imports(sh, m->unhold_epoch);
    if (m->drop) {
        /* No saved entry of a dropped partition may wait to be written. */
        if (sh->cur && !roo__shard_batch_empty(sh))
            roo__shard_seal(sh);
        drop_partitions(sh, m);
    }
    free(m->part_old);
    m->part_old = NULL;
    sh->unhold = m;
    sh->hold_reported = true; /* the aborted hold is not reported */
    unhold_check(sh);
}

void roo__shard_held_back(roo__shard *sh, roo__route *r)
{
    if (sh->held_out)
        sh->held_out--;
    if (!sh->unhold && !sh->hold_epoch) {
        /* Not expected (every held buffer is counted until it is back): route it now. */
        roo__shard_collect_remote(sh);
        roo__shard_flush_routes(sh);
        reroute(sh, r);
        return;
    }
    r->node.next = NULL;
    if (sh->back_tail)
        sh->back_tail->node.next = &r->node;
    else
        sh->back_head = r;
    sh->back_tail = r;
    unhold_check(sh);
}

static void free_routes_msg(roo__routes_msg *m)
{
    free(m->part_dest);
    free(m->dests);
    free(m->part_old);
    free(m->drop);
    free(m);
}

void roo__shard_moves_finish(roo__shard *sh)
{
    while (sh->back_head) {
        roo__route *r = sh->back_head;
        sh->back_head = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    if (sh->unhold)
        free_routes_msg(sh->unhold);
    sh->unhold = NULL;
    while (sh->later_head) {
        roo__qnode *n = sh->later_head;
        sh->later_head = n->next;
        free_routes_msg((roo__routes_msg *)n);
    }
}

/* ---- partitions moving here ---- */

/* Apply one StateChunk: its records become (dirty) entries, its marks our marks. */
void roo__shard_apply_import(roo__shard *sh, roo__import_msg *m)
{
    const roo_app *app = sh->eng->app;
    const uint8_t *p = m->records.data, *end = p + m->records.len;
    uint64_t target;

    while (end - p >= 8) {
        uint16_t sid = roo__load_le16(p), klen = roo__load_le16(p + 2);
        uint32_t vlen = roo__load_le32(p + 4);
        const uint8_t *key = p + 8, *val = key + klen;
        const roo_state_type *t;
        roo__entry *e;
        uint64_t h;

        if ((size_t)(end - key) < (size_t)klen + vlen || sid >= app->nstate_types ||
            klen > ROO_KEY_MAX) {
            roo__log_error("partition %u moving here: a malformed state record; the rest of "
                           "this piece is dropped",
                           m->partition);
            break;
        }
        p = val + vlen;
        t = app->state_types[sid];
        h = roo__key_hash(key, klen);
        if (roo__partition_of(h, sh->partitions) != m->partition)
            continue;
        e = roo__table_find(sh->table, h, sid, key, klen);
        if (!e)
            e = roo__table_insert(sh->table, h, sid, m->partition, key, klen, t->size);
        if (t->deserialize) {
            if (e->flags & ROO__ENTRY_READY) {
                if (t->finish)
                    t->finish(roo__entry_state(e), t->ctx);
                memset(roo__entry_state(e), 0, t->size);
            }
            if (t->deserialize(roo__entry_state(e), val, vlen, t->ctx) < 0) {
                roo__log_error("partition %u moving here: state '%s' cannot be read back; key "
                               "skipped",
                               m->partition, t->name);
                continue;
            }
        } else if (vlen == t->size) {
            memcpy(roo__entry_state(e), val, vlen);
        } else {
            continue;
        }
        e->flags |= ROO__ENTRY_READY;
        roo__shard_mark_dirty(sh, e);
    }
    for (size_t off = 0; off + ROO__STREAM_MARK_LEN <= m->marks.len; off += ROO__STREAM_MARK_LEN) {
        const uint8_t *k = m->marks.data + off;
        roo__stream_mark mk;
        if (roo__key_stream_parse(k, ROO__STREAM_KEY_LEN, k + ROO__STREAM_KEY_LEN,
                                  ROO__STREAM_VAL_LEN, &mk) &&
            mk.partition == m->partition) {
            roo__dedup_check(sh->dedup, mk.stream, mk.partition, mk.offset, mk.sub);
            if (!(mk.stream & 1)) /* a read position this worker keeps from now on */
                roo__streams_advance(sh->eng->streams, mk.stream | 1, mk.offset,
                                     roo__now_ns() / 1000000000);
        }
    }
    if (m->last) {
        /* Reported once the batch holding the partition's last records is committed. */
        target = roo__shard_batch_empty(sh) ? sh->batch_seq - 1 : sh->batch_seq;
        if (sh->committed_seq >= target) {
            mig_note(sh, m->epoch, ROO__MIG_NOTE_IMPORTED, m->partition, m->precopy, m->round);
        } else {
            if (sh->nimport_waits == sh->import_waits_cap) {
                sh->import_waits_cap = sh->import_waits_cap ? sh->import_waits_cap * 2 : 16;
                sh->import_waits = roo__xrealloc(sh->import_waits,
                                                 sh->import_waits_cap * sizeof(*sh->import_waits));
            }
            sh->import_waits[sh->nimport_waits++] =
                (struct roo__import_wait){ m->epoch, target, m->partition, m->precopy, m->round };
        }
    }
    atomic_store_explicit(&sh->keys_pub, roo__table_count(sh->table), memory_order_relaxed);
    roo__buf_finish(&m->records);
    roo__buf_finish(&m->marks);
    free(m);
}

void roo__shard_imports_committed(roo__shard *sh)
{
    size_t k = 0;

    for (size_t i = 0; i < sh->nimport_waits; i++) {
        struct roo__import_wait *w = &sh->import_waits[i];
        if (w->batch_seq <= sh->committed_seq)
            mig_note(sh, w->epoch, ROO__MIG_NOTE_IMPORTED, w->partition, w->precopy, w->round);
        else
            sh->import_waits[k++] = *w;
    }
    sh->nimport_waits = k;
}

/* Partitions that left: record the deletion of their state in the current batch. */
void roo__shard_record_drops(roo__shard *sh)
{
    for (uint32_t p = 0; p < sh->partitions; p++) {
        if (!sh->drop_pending[p])
            continue;
        uint16_t h16[4] = { (uint16_t)p, 0, 0, ROO__REC_DROP };
        uint32_t v32 = 0;
        uint8_t *q = roo__buf_reserve(&sh->cur->recs, ROO__REC_HDR);
        memcpy(q, h16, 8);
        memcpy(q + 8, &v32, 4);
        sh->cur->recs.len += ROO__REC_HDR;
        sh->cur->nrecs++;
    }
    free(sh->drop_pending);
    sh->drop_pending = NULL;
}
