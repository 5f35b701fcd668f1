/* partitions.c: a processing thread's side of the partition table and of partition moves:
 * installing a table, holding and releasing messages of moving partitions, noting changed
 * keys for a pre-copy, applying state that moves here, and dropping what moved away.
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

void roo__shard_set_routes(roo__shard *sh, roo__routes_msg *m)
{
    /* Buffers in flight keep their destination; later messages use the new table. */
    roo__shard_collect_remote(sh);
    roo__shard_flush_routes(sh);
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
    if (m->ndests > sh->route_cap) {
        sh->route_out = roo__xrealloc(sh->route_out, m->ndests * sizeof(*sh->route_out));
        for (uint32_t d = sh->route_cap; d < m->ndests; d++)
            sh->route_out[d] = NULL;
        sh->route_cap = m->ndests;
    }
    free(sh->part_dest);
    free(sh->dests);
    free(sh->part_old);
    sh->partitions = m->partitions;
    sh->part_dest = m->part_dest;
    sh->dests = m->dests;
    sh->ndests = m->ndests;
    sh->hold_epoch = m->hold_epoch;
    sh->part_old = m->part_old;
    if (m->drop) {
        roo__table_drop(sh->table, m->drop, drop_finish, sh);
        if (!sh->drop_pending)
            sh->drop_pending = roo__xcalloc(m->partitions, 1);
        for (uint32_t p = 0; p < m->partitions; p++)
            if (m->drop[p] && p % sh->eng->nshards == sh->idx)
                sh->drop_pending[p] = 1;
        free(m->drop);
        atomic_store_explicit(&sh->keys_pub, roo__table_count(sh->table), memory_order_relaxed);
    }
    free(m);
    publish_owned(sh);
    roo__shard_hold_check(sh);
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
