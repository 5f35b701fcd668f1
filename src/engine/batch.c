/* batch.c: a processing thread's batches: when one is empty or full, what goes into it when
 * it is sealed (state records, read positions, routes), and its return after the commit and
 * the sinks. Everything here runs on the shard's own thread.
 *
 * A batch's life: filled by the pipeline (steps.c) -> sealed here, pushed to the committer
 * -> committed (roo__shard_batch_committed: the routes it applied are durable here) ->
 * written to every sink -> returned (roo__shard_batch_returned: reset and reused).
 */
#include <stdlib.h>

#include "engine/shard-int.h"

static bool remote_pending(const roo__shard *sh)
{
    if (sh->remote_pending)
        return true;
    for (uint32_t d = sh->eng->nshards; d < sh->ndests; d++)
        if (sh->route_out[d])
            return true;
    return false;
}

/* Empty: nothing to commit or send, and no written outbox entries to let go of. */
bool roo__shard_batch_empty(const roo__shard *sh)
{
    return sh->cur->nin == 0 && roo__batch_records(sh->cur, sh->eng->app->nsinks) == 0 &&
           sh->ndirty == 0 && sh->cur->nrecs == 0 && sh->cur->ndone == 0 && !remote_pending(sh) &&
           sh->cur_routes == 0 && sh->outbox_written == sh->outbox_announced;
}

static size_t batch_out_bytes(const roo__batch *b, size_t nsinks)
{
    size_t n = 0;
    for (size_t i = 0; i < nsinks; i++)
        n += b->out[i].len;
    return n;
}

/* Full: its output, state records and the messages it holds for other workers. */
bool roo__shard_batch_full(const roo__shard *sh)
{
    const roo__batch *b = sh->cur;
    return batch_out_bytes(b, sh->eng->app->nsinks) + b->recs.len + sh->remote_bytes >=
           sh->eng->cfg.batch_bytes;
}

static void append_record(roo__shard *sh, roo__batch *b, roo__entry *e)
{
    const roo_state_type *t = sh->eng->app->state_types[e->state_id];
    size_t hdr = ROO__REC_HDR + e->key_len;
    size_t cap = t->serialize ? 256 : t->size;
    uint16_t h16[4] = { e->partition, e->state_id, e->key_len, 0 };
    uint32_t vlen;
    uint8_t *p;

    for (;;) {
        int n;
        p = roo__buf_reserve(&b->recs, hdr + cap);
        if (!t->serialize) {
            memcpy(p + hdr, roo__entry_state(e), t->size);
            vlen = (uint32_t)t->size;
            break;
        }
        n = t->serialize(roo__entry_state(e), p + hdr, cap, t->ctx);
        if (n < 0) {
            uint64_t suppressed;
            atomic_fetch_add_explicit(&sh->callback_errors, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&sh->serialize_errors[e->state_id], 1, memory_order_relaxed);
            if (roo__ratelimit_allow(&sh->cb_rl, &suppressed))
                roo__log_warn("state '%s': serialize failed: %s; this update is not saved", t->name,
                              roo_strerror(n));
            return;
        }
        if ((size_t)n <= cap) {
            vlen = (uint32_t)n;
            break;
        }
        cap = (size_t)n;
    }
    memcpy(p, h16, 8);
    memcpy(p + 8, &vlen, 4);
    memcpy(p + ROO__REC_HDR, e->key, e->key_len);
    b->recs.len += hdr + vlen;
    b->nrecs++;
}

/* Routes to local shards go now; routes to other workers wait for the batch's commit. */
void roo__shard_flush_routes(roo__shard *sh)
{
    for (unsigned d = 0; d < sh->eng->nshards && d < sh->ndests; d++) {
        roo__route *r = sh->route_out[d];
        if (!r)
            continue;
        sh->route_out[d] = NULL;
        sh->routes_inflight++;
        r->batch_seq = sh->batch_seq; /* the batch being filled: it is sealed with this seq */
        sh->cur_routes++;
        roo__queue_push(&sh->eng->shards[d].inbox, &r->node);
    }
}

/* Move filled remote routes to the pending list, in destination order. */
void roo__shard_collect_remote(roo__shard *sh)
{
    for (uint32_t d = sh->eng->nshards; d < sh->ndests; d++) {
        roo__route *r = sh->route_out[d];
        if (!r)
            continue;
        sh->route_out[d] = NULL;
        if (r->held && (r->worker == sh->dests[0].worker || sh->unhold)) {
            /* Held for a partition moving to one of our own threads, or after the move was
             * aborted: it stays here (see release_held, unhold_check), but counts for its
             * batch's durability like any route. */
            r->batch_seq = sh->batch_seq;
            sh->cur_routes++;
            r->node.next = NULL;
            if (sh->held_tail)
                sh->held_tail->node.next = &r->node;
            else
                sh->held_head = r;
            sh->held_tail = r;
            continue;
        }
        /* Held routes wait in io until a move's switch: they must not stall the sources. */
        if (!r->held)
            sh->routes_inflight++;
        else
            sh->held_out++; /* io keeps it; an abort waits until it is back */
        r->batch_seq = sh->batch_seq;
        sh->cur_routes++;
        atomic_fetch_add_explicit(&sh->routed_out, r->nmsgs, memory_order_relaxed);
        r->node.next = NULL;
        if (sh->remote_tail)
            sh->remote_tail->node.next = &r->node;
        else
            sh->remote_pending = r;
        sh->remote_tail = r;
    }
}

static void emit_stream_mark(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                             size_t vlen)
{
    roo__shard_append_kv(arg, ROO__REC_STREAM, key, klen, val, vlen);
}

void roo__shard_seal(roo__shard *sh)
{
    roo__batch *b = sh->cur;
    int64_t now_s = roo__now_ns() / 1000000000; /* one clock read per seal, for the streams */

    /* Read positions first: those for other threads go with this batch's routes. */
    roo__sources_seal(sh, b, now_s);
    for (size_t i = 0; i < sh->ndirty; i++)
        append_record(sh, b, sh->dirty[i]);
    sh->ndirty = 0;
    /* Resumable streams' high-water marks go in the same commit as the state they guard. */
    roo__dedup_flush(sh->dedup, emit_stream_mark, b);
    roo__dedup_tick(sh->dedup, now_s);
    roo__shard_flush_routes(sh);
    roo__shard_collect_remote(sh);
    /* Durable once committed and every route buffer it sent is committed where it went. */
    roo__dur_sealed(&sh->dur, sh->batch_seq, sh->cur_routes);
    b->commit_note.seq = sh->batch_seq;
    sh->cur_routes = 0;
    b->outbox_written = sh->outbox_written;
    sh->outbox_announced = sh->outbox_written;
    b->remote = sh->remote_pending;
    sh->remote_pending = sh->remote_tail = NULL;
    sh->remote_bytes = 0;
    b->seq = sh->batch_seq++;
    b->nout = roo__batch_records(b, sh->eng->app->nsinks);
    /* What a sink's buffer grows to at once in the batches after this (steps.c, sink_more):
     * its biggest output of late, forgotten by an eighth per batch. */
    for (size_t i = 0; i < sh->eng->app->nsinks; i++)
        sh->out_hint[i] = ROO__MAX(sh->out_hint[i] - sh->out_hint[i] / 8, b->out[i].len);
    b->t_sealed = roo__wall_ns();
    for (uint32_t i = 0; i < b->nlat; i++)
        if (b->lat[i].frames)
            roo__hist_add(&sh->read_to_sealed, b->t_sealed - b->lat[i].read_ns, b->lat[i].frames);
    sh->lat_cur = UINT32_MAX;
    atomic_fetch_add_explicit(&sh->frames_in, b->nin, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->records_out, b->nout, memory_order_relaxed);
    atomic_store_explicit(&sh->keys_pub, roo__table_count(sh->table), memory_order_relaxed);
    roo__queue_push(&sh->eng->commit_q, &b->node);
    sh->cur = NULL;
    if (sh->free_batches) {
        sh->cur = sh->free_batches;
        sh->free_batches = (roo__batch *)sh->cur->node.next;
        sh->nfree--;
    }
}

static void batch_reset(roo__batch *b, size_t nsinks)
{
    b->nin = b->nout = 0;
    b->nrouted = 0;
    b->nlat = 0;
    memset(b->sink_nout, 0, nsinks * sizeof(*b->sink_nout));
    b->recs.len = 0;
    b->nrecs = 0;
    b->refs = 0;
    b->remote = NULL;
    b->nacks = 0;
    b->outbox_seq = 0;
    b->outbox_written = 0;
    b->ndone = 0;
    for (size_t i = 0; i < nsinks; i++)
        b->out[i].len = 0;
}

/*
 * The committer committed batch b (which is now on its way to the sinks, written by the
 * committer or io: read only what we wrote before sealing it). Route buffers of other
 * threads applied in it are durable here.
 */
void roo__shard_batch_committed(roo__shard *sh, struct roo__commit_note *note)
{
    roo__batch *b = note->batch;

    for (uint32_t i = 0; i < b->ndone; i++) {
        roo__route_done *d = roo__xmalloc(sizeof(*d));
        d->node.kind = ROO__Q_ROUTE_DONE;
        d->batch_seq = b->done[i].batch_seq;
        roo__queue_push(&b->done[i].origin->inbox, &d->node);
    }
    roo__dur_returned(&sh->dur, note->seq);
    if (note->seq > sh->committed_seq)
        sh->committed_seq = note->seq;
    if (sh->nimport_waits)
        roo__shard_imports_committed(sh);
    if (sh->track && !sh->track_reported)
        roo__shard_track_check(sh);
    roo__sources_ack(sh);
    roo__sources_expired_committed(sh, sh->committed_seq);
}

void roo__shard_batch_returned(roo__shard *sh, roo__batch *b)
{
    /* Written to every sink: it, and every outbox entry before it, may be deleted. */
    if (b->outbox_seq > sh->outbox_written)
        sh->outbox_written = b->outbox_seq;
    batch_reset(b, sh->eng->app->nsinks);
    if (!sh->cur) {
        sh->cur = b;
        return;
    }
    b->node.next = (roo__qnode *)sh->free_batches; /* node is the first member */
    sh->free_batches = b;
    sh->nfree++;
}

/* Append a non-state record (link or stream bookkeeping) to the batch. */
void roo__shard_append_kv(roo__batch *b, uint16_t kind, const uint8_t *key, size_t klen,
                          const uint8_t *val, size_t vlen)
{
    uint16_t h16[4] = { 0, 0, (uint16_t)klen, kind };
    uint32_t v32 = (uint32_t)vlen;
    uint8_t *p = roo__buf_reserve(&b->recs, ROO__REC_HDR + klen + vlen);

    memcpy(p, h16, 8);
    memcpy(p + 8, &v32, 4);
    memcpy(p + ROO__REC_HDR, key, klen);
    if (vlen) /* a deletion has no value */
        memcpy(p + ROO__REC_HDR + klen, val, vlen);
    b->recs.len += ROO__REC_HDR + klen + vlen;
    b->nrecs++;
}
