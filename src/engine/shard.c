/* shard.c: a processing thread: runs the pipeline to completion for every frame its source
 * connections read (source.c), keeps its partitions' state and seals batches (its side of
 * partition tables and moves is partitions.c).
 *
 * The hot path per frame is: framer -> decode callback -> roo_emit -> (key, hash, table
 * lookup, state callback) -> roo_emit -> encode callback into the batch's output buffer.
 * No syscall, allocation, lock or protobuf message happens per frame: reads are 512 KiB,
 * buffers are reused from batch to batch, and the batch is handed on once per wakeup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/shard-int.h"
#include "wire/wire.h"

#define ROUTES_PER_DEST 4

static void run_stage(roo__shard *sh, uint32_t si, const void *msg, size_t len);

/* ---- callbacks' errors ---- */

void roo__shard_callback_error(roo__shard *sh, const roo__stage *st, const char *what, int rc)
{
    uint64_t suppressed;

    atomic_fetch_add_explicit(&sh->callback_errors, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->step_errors[st - sh->stages], 1, memory_order_relaxed);
    if (!roo__ratelimit_allow(&sh->cb_rl, &suppressed))
        return;
    roo__log_warn("step '%s' of pipeline '%s': %s failed: %s; message dropped%s", st->name,
                  sh->eng->app->pipelines[st->pipeline]->name, what, roo_strerror(rc),
                  suppressed ? " (earlier similar errors not logged)" : "");
}

/* ---- the pipeline ---- */

static inline void emit_run(roo_emitter *out, const void *msg, size_t len)
{
    if (ROO__UNLIKELY(out->test != NULL))
        roo__test_run(out->test, out->stage, msg, len);
    else
        run_stage(out->sh, out->stage, msg, len);
}

/* Callbacks are promised 8-byte aligned messages: copy the odd ones. Out of line, so that
 * roo_emit itself has no stack buffer (and no stack-protector check) on every call. */
static __attribute__((noinline)) void emit_unaligned(roo_emitter *out, const void *msg, size_t len)
{
    uint64_t small[64];
    void *copy = len <= sizeof(small) ? (void *)small : roo__xmalloc(len);

    memcpy(copy, msg, len);
    emit_run(out, copy, len);
    if (copy != small)
        free(copy);
}

int roo_emit(roo_emitter *out, const void *msg, size_t len)
{
    if (ROO__UNLIKELY(len > ROO_MSG_MAX))
        return ROO_EMSGSIZE;
    if (ROO__UNLIKELY(((uintptr_t)msg & 7) != 0 && len > 0))
        emit_unaligned(out, msg, len);
    else
        emit_run(out, msg, len);
    return 0;
}

static inline __attribute__((always_inline)) void sink_stage(roo__shard *sh, const roo__stage *st,
                                                             const void *msg, size_t len)
{
    roo__buf *ob = &sh->cur->out[st->sink_idx];
    size_t room;
    int n;

    roo__buf_reserve(ob, 256);
    room = ob->cap - ob->len;
    n = st->encode(msg, len, ob->data + ob->len, room, st->ctx);
    if (ROO__UNLIKELY(n < 0)) {
        roo__shard_callback_error(sh, st, "encode", n);
        return;
    }
    if (ROO__UNLIKELY((size_t)n > room)) {
        roo__buf_reserve(ob, (size_t)n);
        room = ob->cap - ob->len;
        n = st->encode(msg, len, ob->data + ob->len, room, st->ctx);
        if (n < 0 || (size_t)n > room) {
            roo__shard_callback_error(sh, st, "encode", n < 0 ? n : ROO_ECALLBACK);
            return;
        }
    }
    ob->len += (size_t)n;
    sh->cur->sink_nout[st->sink_idx]++; /* summed into nout when sealed */
}

void roo__shard_route(roo__shard *sh, unsigned dest, uint32_t si, const void *msg, size_t len,
                      const roo__msg_id *id)
{
    roo__route *r = sh->route_out[dest];
    size_t idlen = id ? ROO__ROUTE_ID_LEN : 0;
    size_t rec = 8 + idlen + ROO__ALIGN8(len);
    uint8_t *p;

    if (!r) {
        r = sh->route_pool;
        if (r)
            sh->route_pool = (roo__route *)r->node.next;
        else
            r = roo__xcalloc(1, sizeof(*r));
        r->node.kind = ROO__Q_ROUTE;
        r->from = sh;
        r->data.len = 0;
        r->nmsgs = 0;
        r->id_stream = 0;
        r->worker = sh->dests[dest].worker;
        r->thread = sh->dests[dest].thread;
        r->held = sh->dests[dest].held;
        r->hold_gen = r->held ? sh->hold_gen : 0;
        r->read_ns = sh->lat_read_ns;
        r->pipeline = sh->lat_pipeline;
        sh->route_out[dest] = r;
    }
    if (id && (id->stream != r->id_stream || id->offset < r->id_base ||
               id->offset - r->id_base > UINT32_MAX)) {
        /* A stream record: the identities that follow are relative to it. */
        p = roo__buf_reserve(&r->data, 24);
        roo__store_le32(p, ROO__ROUTE_STREAM);
        roo__store_le32(p + 4, 16);
        roo__store_le32(p + 8, (uint32_t)id->stream);
        roo__store_le32(p + 12, (uint32_t)(id->stream >> 32));
        roo__store_le32(p + 16, (uint32_t)id->offset);
        roo__store_le32(p + 20, (uint32_t)(id->offset >> 32));
        r->data.len += 24;
        if (dest >= sh->eng->nshards)
            sh->remote_bytes += 24;
        r->id_stream = id->stream;
        r->id_base = id->offset;
    }
    /* Records are little-endian on the wire (they cross to other workers as they are). */
    p = roo__buf_reserve(&r->data, rec);
    if (dest >= sh->eng->nshards)
        sh->remote_bytes += rec;
    roo__store_le32(p, si | (id ? ROO__ROUTE_ID_FLAG : 0));
    roo__store_le32(p + 4, (uint32_t)len);
    if (id) {
        roo__store_le32(p + 8, (uint32_t)(id->offset - r->id_base));
        roo__store_le32(p + 12, id->sub);
    }
    memcpy(p + 8 + idlen, msg, len);
    memset(p + 8 + idlen + len, 0, rec - 8 - idlen - len); /* no stale bytes on the wire */
    r->data.len += rec;
    r->nmsgs++;
}

/* Pre-copy of a partition move: remember a key of a moving partition that changed. */
void roo__shard_track_note(roo__shard *sh, roo__entry *e)
{
    if (!sh->track[e->partition] || (e->flags & ROO__ENTRY_TRACKED))
        return;
    e->flags |= ROO__ENTRY_TRACKED;
    if (sh->ntracked == sh->tracked_cap) {
        sh->tracked_cap = sh->tracked_cap ? sh->tracked_cap * 2 : 1024;
        sh->tracked = roo__xrealloc(sh->tracked, sh->tracked_cap * sizeof(*sh->tracked));
    }
    sh->tracked[sh->ntracked++] = e;
}

void roo__shard_mark_dirty(roo__shard *sh, roo__entry *e)
{
    if (e->dirty_mark == sh->batch_seq)
        return;
    e->dirty_mark = sh->batch_seq;
    if (ROO__UNLIKELY(sh->track != NULL))
        roo__shard_track_note(sh, e);
    if (ROO__UNLIKELY(sh->ndirty == sh->dirty_cap)) {
        sh->dirty_cap = sh->dirty_cap ? sh->dirty_cap * 2 : 256;
        sh->dirty = roo__xrealloc(sh->dirty, sh->dirty_cap * sizeof(*sh->dirty));
    }
    sh->dirty[sh->ndirty++] = e;
}

static inline __attribute__((always_inline)) void
state_stage(roo__shard *sh, const roo__stage *st, uint32_t si, const void *msg, size_t len)
{
    uint8_t key[ROO_KEY_MAX];
    roo_emitter em = { sh, st->next };
    roo__entry *e;
    uint64_t h;
    uint16_t part;
    unsigned owner;
    int kl, rc;

    kl = st->key(msg, len, key, st->ctx);
    if (ROO__UNLIKELY(kl < 0 || kl > ROO_KEY_MAX)) {
        roo__shard_callback_error(sh, st, "key", kl < 0 ? kl : ROO_EKEYSIZE);
        return;
    }
    h = roo__key_hash(key, (size_t)kl);
    part = roo__partition_of(h, sh->partitions);
    owner = sh->part_dest[part];
    if (ROO__UNLIKELY(sh->hold_epoch) && owner != sh->idx && sh->routed &&
        (sh->part_old[part] == sh->idx ||
         (sh->dests[owner].held && sh->dests[owner].worker == sh->dests[0].worker &&
          sh->dests[owner].thread == sh->idx)))
        /* Routed here during a move: sent before it began (we are the old owner) or after
         * the sender switched (we are the new owner, and hold the state already). */
        owner = sh->idx;
    sh->routed = false;
    if (ROO__UNLIKELY(sh->id.stream)) {
        /* From a resumable stream: number it, then apply it only once. */
        roo__msg_id id = sh->id;
        if (!sh->id_fixed)
            sh->id.sub++;
        if (owner != sh->idx) {
            roo__shard_route_msg(sh, st, owner, si, msg, len, &id, part);
            return;
        }
        if (roo__dedup_check(sh->dedup, id.stream, part, id.offset, id.sub)) {
            atomic_fetch_add_explicit(&sh->duplicates, 1, memory_order_relaxed);
            return;
        }
    } else if (owner != sh->idx) {
        roo__shard_route_msg(sh, st, owner, si, msg, len, NULL, part);
        return;
    }
    e = roo__table_find(sh->table, h, st->state_id, key, (size_t)kl);
    if (ROO__UNLIKELY(!e)) {
        e = roo__table_insert(sh->table, h, st->state_id, part, key, (size_t)kl, st->state->size);
    }
    if (ROO__UNLIKELY(!(e->flags & ROO__ENTRY_READY))) {
        if (st->state->init) {
            rc = st->state->init(roo__entry_state(e), key, (size_t)kl, st->state->ctx);
            if (rc < 0) {
                roo__shard_callback_error(sh, st, "state init", rc);
                return;
            }
        }
        e->flags |= ROO__ENTRY_READY;
    }
    rc = st->state_compute(msg, len, roo__entry_state(e), &em, st->ctx);
    if (rc == ROO_SAVE)
        roo__shard_mark_dirty(sh, e);
    else if (ROO__UNLIKELY(rc < 0))
        roo__shard_callback_error(sh, st, "state computation", rc);
}

static inline __attribute__((always_inline)) void run_step(roo__shard *sh, uint32_t si,
                                                           const void *msg, size_t len)
{
    const roo__stage *st = &sh->stages[si];

    switch (st->kind) {
    case ROO__STAGE_SINK:
        sink_stage(sh, st, msg, len);
        if (ROO__UNLIKELY(st->next != UINT32_MAX))
            run_stage(sh, st->next, msg, len); /* roo_pipeline_to_sinks: the next sink */
        return;
    case ROO__STAGE_STATE:
        state_stage(sh, st, si, msg, len);
        return;
    case ROO__STAGE_STATELESS: {
        roo_emitter em = { sh, st->next };
        int rc = st->compute(msg, len, &em, st->ctx);
        if (ROO__UNLIKELY(rc < 0))
            roo__shard_callback_error(sh, st, "computation", rc);
        return;
    }
    }
}

/*
 * A sampled message (sh->timing, see roo__shard_sample_next): the step's own time, without
 * the steps it emitted to, which are timed too and add theirs to child_ns. Two clock reads
 * per step, for one message in ROO__COMPUTE_SAMPLE_EVERY.
 */
static __attribute__((noinline)) void run_step_timed(roo__shard *sh, uint32_t si, const void *msg,
                                                     size_t len)
{
    int64_t saved = sh->child_ns, t0 = roo__now_ns(), d;

    sh->child_ns = 0;
    run_step(sh, si, msg, len);
    d = roo__now_ns() - t0;
    roo__hist_add(&sh->compute[si], d - sh->child_ns, 1);
    sh->child_ns = saved + d;
}

static void run_stage(roo__shard *sh, uint32_t si, const void *msg, size_t len)
{
    if (ROO__UNLIKELY(sh->timing))
        run_step_timed(sh, si, msg, len);
    else
        run_step(sh, si, msg, len);
}

/* ---- batches ---- */

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
 * committer or io: read only what we wrote before sealing it). Route buffers of other threads applied in it are durable here.
 */
static void batch_committed_note(roo__shard *sh, struct roo__commit_note *note)
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
}

static void batch_returned(roo__shard *sh, roo__batch *b)
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

/* ---- routes from other shards ---- */

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

/*
 * A peer's batch is applied in the current batch: record it (links database, same commit
 * as the state it changed) and remember to acknowledge it once committed.
 */
static void note_link_applied(roo__shard *sh, const roo__route *r)
{
    roo__batch *b = sh->cur;
    uint8_t key[ROO__LINK_KEY_MAX], val[ROO__LINK_VAL_LEN];
    size_t klen = roo__key_link(key, r->link_peer, sh->idx);

    roo__val_link(val, r->link_incarnation, r->link_seq);
    roo__shard_append_kv(b, ROO__REC_LINK, key, klen, val, sizeof(val));
    if (b->nacks == b->acks_cap) {
        b->acks_cap = b->acks_cap ? b->acks_cap * 2 : 8;
        b->acks = roo__xrealloc(b->acks, b->acks_cap * sizeof(*b->acks));
    }
    b->acks[b->nacks++] =
        (roo__link_ack){ r->worker, sh->idx, r->link_incarnation, r->link_seq, r->link_conn };
}

static inline __attribute__((always_inline)) void run_routed(roo__shard *sh, uint32_t si,
                                                             const void *msg, size_t len)
{
    const roo__stage *st = &sh->stages[si];

    if (ROO__UNLIKELY(st->wire != NULL))
        roo__shard_unpack_run(sh, st, si, msg, len);
    else
        run_stage(sh, si, msg, len);
}

static void process_route(roo__shard *sh, roo__route *r)
{
    const uint8_t *p = r->data.data, *end = p + r->data.len;

    uint64_t stream = 0, base = 0, i = 0, sample_at = sh->sample_left;

    /* From a peer that sent no stamp: count from now. */
    roo__shard_lat_open(sh, r->read_ns > 0 ? r->read_ns : roo__wall_ns(),
                        r->pipeline < sh->eng->app->npipelines ? r->pipeline : 0);
    sh->cur->nrouted += r->nmsgs;
    while (p < end) {
        uint32_t si = roo__load_le32(p), len = roo__load_le32(p + 4);
        size_t idlen = 0;
        if (si == ROO__ROUTE_INGRESS) {
            roo__shard_apply_ingress(sh, roo__load_le64(p + 8), roo__load_le64(p + 16));
            p += 8 + ROO__ROUTE_INGRESS_LEN;
            i++;
            continue;
        }
        if (si == ROO__ROUTE_STREAM) {
            stream = roo__load_le32(p + 8) | (uint64_t)roo__load_le32(p + 12) << 32;
            base = roo__load_le32(p + 16) | (uint64_t)roo__load_le32(p + 20) << 32;
            p += 24;
            continue;
        }
        if (si & ROO__ROUTE_ID_FLAG) {
            /* The message's identity travels with it; do not number it again here. */
            si &= ~ROO__ROUTE_ID_FLAG;
            idlen = ROO__ROUTE_ID_LEN;
            sh->id.stream = stream;
            sh->id.offset = base + roo__load_le32(p + 8);
            sh->id.sub = roo__load_le32(p + 12);
            sh->id_fixed = true;
        }
        sh->routed = true;
        if (ROO__UNLIKELY(i == sample_at)) {
            sh->timing = true; /* this message's steps are timed (metrics) */
            run_routed(sh, si, p + 8 + idlen, len);
            sh->timing = false;
            sample_at += ROO__COMPUTE_SAMPLE_EVERY;
        } else {
            run_routed(sh, si, p + 8 + idlen, len);
        }
        i++;
        sh->routed = false;
        sh->id.stream = 0;
        sh->id_fixed = false;
        p += 8 + idlen + ROO__ALIGN8(len);
    }
    sh->sample_left = sample_at - i;
    roo__shard_lat_close(sh, 0);
    if (r->link_seq)
        note_link_applied(sh, r);
    if (r->from) {
        /* Another thread's route buffer: tell it once this batch is committed. */
        roo__batch *b = sh->cur;
        if (b->ndone == b->done_cap) {
            b->done_cap = b->done_cap ? b->done_cap * 2 : 8;
            b->done = roo__xrealloc(b->done, b->done_cap * sizeof(*b->done));
        }
        b->done[b->ndone++] = (struct roo__done_note){ r->from, r->batch_seq };
    }
    r->node.kind = ROO__Q_ROUTE_RETURN;
    roo__queue_push(r->from ? &r->from->inbox : &sh->eng->io_q, &r->node);
}

/* ---- the loop ---- */

static void inbox_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__shard *sh = io->data;
    roo__qnode *n = roo__queue_take_all(&sh->inbox), *next;

    (void)events;
    for (; n; n = next) {
        next = n->next;
        switch (n->kind) {
        case ROO__Q_BATCH:
            batch_returned(sh, (roo__batch *)n);
            break;
        case ROO__Q_CONN: {
            roo__conn_msg *m = (roo__conn_msg *)n;
            if (sh->stopping) {
                close(m->fd);
                roo__source_gone(sh, m->pipeline);
            } else {
                roo__source_add(sh, m);
            }
            free(m);
            break;
        }
        case ROO__Q_ROUTE:
            n->next = NULL;
            if (sh->route_in_tail)
                sh->route_in_tail->next = n;
            else
                sh->route_in_head = n;
            sh->route_in_tail = n;
            break;
        case ROO__Q_ROUTE_RETURN: {
            roo__route *r = (roo__route *)n;
            if (!r->held)
                sh->routes_inflight--;
            else if (sh->held_out)
                sh->held_out--;                          /* sent on at a move's switch */
            r->node.next = (roo__qnode *)sh->route_pool; /* node is the first member */
            sh->route_pool = r;
            break;
        }
        case ROO__Q_ROUTES:
            roo__shard_set_routes(sh, (roo__routes_msg *)n);
            break;
        case ROO__Q_HELD_BACK:
            roo__shard_held_back(sh, (roo__route *)n);
            break;
        case ROO__Q_COMMITTED:
            batch_committed_note(sh, (struct roo__commit_note *)n);
            break;
        case ROO__Q_TRACK:
            roo__shard_track_start(sh, (roo__track_msg *)n);
            break;
        case ROO__Q_TRACK_DUMP:
            roo__shard_track_dump(sh, ((roo__track_msg *)n)->epoch);
            free(n);
            break;
        case ROO__Q_IMPORT:
            n->next = NULL;
            if (sh->imports_tail)
                sh->imports_tail->next = n;
            else
                sh->imports_head = n;
            sh->imports_tail = n;
            break;
        case ROO__Q_STREAM_ANSWER:
            roo__sources_stream_answer(sh, (roo__stream_ask *)n);
            break;
        case ROO__Q_ROUTE_DONE:
            roo__dur_route_done(&sh->dur, ((roo__route_done *)n)->batch_seq);
            free(n);
            roo__sources_ack(sh);
            break;
        case ROO__Q_STOP:
            sh->stopping = true;
            if (sh->nconns && !sh->eng->left_cluster)
                roo__log_info("thread %u: closing %u source connection(s) for shutdown", sh->idx,
                              sh->nconns);
            while (sh->conns) {
                /* Plain clients have no channel to be told on: the log says it, per client. */
                if (sh->eng->left_cluster)
                    roo__log_info("source '%s': closing the connection from %s: this worker "
                                  "left the cluster; the client should send to another worker",
                                  sh->conns->pipeline->name, sh->conns->peer);
                roo__source_abort(sh->conns);
            }
            free(n);
            break;
        case ROO__Q_EXIT:
            roo__loop_stop(loop);
            free(n);
            break;
        default:
            roo__log_error("internal error: shard got message kind %u", n->kind);
            abort();
        }
    }
}

static void report_status(roo__shard *sh, bool quiescent)
{
    roo__status_msg *m = roo__xcalloc(1, sizeof(*m));

    m->node.kind = ROO__Q_STATUS;
    m->shard = sh->idx;
    m->quiescent = quiescent;
    sh->reported_quiescent = quiescent;
    roo__queue_push(&sh->eng->io_q, &m->node);
}

static bool shard_prepare(roo__loop *loop, void *data)
{
    roo__shard *sh = data;
    bool want_pause;

    (void)loop;
    if (sh->acks_owed)
        roo__sources_ack(sh);
    if (sh->drop_pending && sh->cur)
        roo__shard_record_drops(sh);
    if (sh->expire_due && sh->cur)
        roo__sources_expire(sh);
    /* One piece of a moving partition per pass: its commit overlaps the next piece. */
    if (sh->imports_head && sh->cur) {
        roo__qnode *n = sh->imports_head;
        sh->imports_head = n->next;
        if (!sh->imports_head)
            sh->imports_tail = NULL;
        roo__shard_apply_import(sh, (roo__import_msg *)n);
    }
    while (sh->route_in_head && sh->cur) {
        roo__route *r = (roo__route *)sh->route_in_head;
        sh->route_in_head = r->node.next;
        if (!sh->route_in_head)
            sh->route_in_tail = NULL;
        process_route(sh, r);
    }
    if (!sh->route_in_head)
        sh->routes_first = false;
    /*
     * Seal when there is a free batch to continue in (otherwise keep filling this one: a
     * bigger batch when commits lag is exactly the group commit we want), when it is full,
     * or when stopping.
     */
    if (sh->cur && !roo__shard_batch_empty(sh) &&
        (sh->nfree > 0 || roo__shard_batch_full(sh) || sh->stopping))
        roo__shard_seal(sh);
    roo__shard_flush_routes(sh);

    want_pause =
        !sh->stopping && (!sh->cur || roo__shard_batch_full(sh) ||
                          sh->routes_inflight >= ROUTES_PER_DEST * (sh->ndests ? sh->ndests : 1));
    if (want_pause != sh->paused)
        roo__sources_pause(sh, want_pause);

    if (sh->stopping) {
        bool q = sh->nconns == 0 && sh->cur && roo__shard_batch_empty(sh) &&
                 sh->nfree + 1 == sh->nbatches && sh->routes_inflight == 0 && !sh->route_in_head &&
                 !sh->unhold;
        if (q != sh->reported_quiescent)
            report_status(sh, q);
    }
    return (sh->route_in_head || sh->imports_head) && sh->cur;
}

void *roo__shard_main(void *arg)
{
    roo__shard *sh = arg;
    const roo__thread_hooks *h = &sh->eng->app->thread_hooks;
    int rc;

    if (h->enter)
        h->enter(h->ctx);
    rc = roo__loop_run(sh->loop);
    if (h->enter)
        h->leave(h->ctx);

    if (rc < 0)
        roo__log_error("thread %u: event loop failed: %s", sh->idx, roo_strerror(rc));
    return NULL;
}

int roo__shard_init(roo__engine *e, roo__shard *sh, unsigned idx)
{
    size_t nsinks = e->app->nsinks;
    int rc;

    sh->eng = e;
    sh->idx = idx;
    sh->stages = e->app->stages;
    sh->partitions = e->cfg.partitions;
    atomic_store_explicit(&sh->parts_pub, sh->partitions, memory_order_relaxed);
    sh->dedup = roo__dedup_create();
    sh->table = roo__table_create();
    sh->batch_seq = 1; /* 0 is the dirty mark of entries never saved */
    sh->cb_rl = (roo__ratelimit)ROO__RATELIMIT_INIT(10000, 5);
    sh->route_out = roo__xcalloc(e->nshards, sizeof(*sh->route_out));
    sh->route_cap = e->nshards;
    sh->ndests = 0;
    roo__buf_reserve(&sh->rbuf, ROO__READ_CHUNK + e->cfg.max_frame + 16);
    sh->source_counts = roo__xcalloc(e->app->npipelines, sizeof(*sh->source_counts));
    sh->step_errors = roo__xcalloc(e->app->nstages, sizeof(*sh->step_errors));
    sh->compute = roo__xcalloc(e->app->nstages, sizeof(*sh->compute));
    sh->lat_cur = UINT32_MAX;
    sh->sample_left = 0; /* the first message is timed, so even a short run shows its steps */
    sh->serialize_errors = roo__xcalloc(e->app->nstate_types ? e->app->nstate_types : 1,
                                        sizeof(*sh->serialize_errors));
    sh->nbatches = e->cfg.batches_per_shard;
    sh->all_batches = roo__xcalloc(sh->nbatches, sizeof(*sh->all_batches));
    for (unsigned i = 0; i < sh->nbatches; i++) {
        /* One allocation: the batch, its output buffers, then its per-sink record counts. */
        roo__batch *b =
            roo__xcalloc(1, sizeof(*b) + nsinks * (sizeof(roo__buf) + sizeof(*b->sink_nout)));
        b->sink_nout = (uint64_t *)&b->out[nsinks];
        b->lat = roo__xcalloc(ROO__LAT_ENTS, sizeof(*b->lat));
        b->node.kind = ROO__Q_BATCH;
        b->owner = sh;
        sh->all_batches[i] = b;
        if (i == 0) {
            sh->cur = b;
        } else {
            b->node.next = (roo__qnode *)sh->free_batches; /* node is the first member */
            sh->free_batches = b;
            sh->nfree++;
        }
    }
    rc = roo__queue_init(&sh->inbox, true);
    if (rc < 0)
        return rc;
    rc = roo__loop_create(&sh->loop);
    if (rc < 0)
        return rc;
    sh->inbox_io.cb = inbox_on_io;
    sh->inbox_io.data = sh;
    rc = roo__io_start(sh->loop, &sh->inbox_io, roo__queue_fd(&sh->inbox), EPOLLIN);
    if (rc < 0)
        return rc;
    roo__loop_set_prepare(sh->loop, shard_prepare, sh);
    if (e->app->thread_hooks.enter)
        roo__loop_set_sleep(sh->loop, roo__shard_host_sleep, sh);
    roo__sources_expire_start(sh);
    return 0;
}

static void free_batch(roo__batch *b, size_t nsinks)
{
    free(b->lat);
    free(b->acks);
    free(b->done);
    roo__buf_finish(&b->recs);
    for (size_t i = 0; i < nsinks; i++)
        roo__buf_finish(&b->out[i]);
    free(b);
}

static void finish_entry(roo__entry *en, void *arg)
{
    roo__engine *e = arg;
    const roo_state_type *t = e->app->state_types[en->state_id];

    if (t->finish && (en->flags & ROO__ENTRY_READY))
        t->finish(roo__entry_state(en), t->ctx);
}

void roo__shard_finish(roo__shard *sh)
{
    size_t nsinks;

    if (!sh->eng)
        return;
    nsinks = sh->eng->app->nsinks;
    while (sh->conns)
        roo__source_close(sh->conns, false);
    /* Messages still queued to us (before the batches go: commit notes live in them). */
    for (roo__qnode *n = roo__queue_take_all(&sh->inbox), *next; n; n = next) {
        next = n->next;
        if (n->kind == ROO__Q_BATCH || n->kind == ROO__Q_COMMITTED)
            continue; /* both live inside batches, freed below */
        if (n->kind == ROO__Q_ROUTE || n->kind == ROO__Q_ROUTE_RETURN ||
            n->kind == ROO__Q_HELD_BACK)
            roo__buf_finish(&((roo__route *)n)->data);
        if (n->kind == ROO__Q_CONN)
            close(((roo__conn_msg *)n)->fd);
        if (n->kind == ROO__Q_IMPORT) {
            roo__buf_finish(&((roo__import_msg *)n)->records);
            roo__buf_finish(&((roo__import_msg *)n)->marks);
        }
        if (n->kind == ROO__Q_TRACK)
            free(((roo__track_msg *)n)->parts);
        if (n->kind == ROO__Q_ROUTES) {
            roo__routes_msg *m = (roo__routes_msg *)n;
            free(m->part_dest);
            free(m->dests);
            free(m->part_old);
            free(m->drop);
        }
        free(n);
    }
    for (unsigned i = 0; sh->all_batches && i < sh->nbatches; i++)
        free_batch(sh->all_batches[i], nsinks);
    free(sh->all_batches);
    /* Inbound routes never processed (a stop that timed out) are ours to free now. */
    while (sh->route_in_head) {
        roo__route *r = (roo__route *)sh->route_in_head;
        sh->route_in_head = r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    while (sh->route_pool) {
        roo__route *r = sh->route_pool;
        sh->route_pool = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    while (sh->remote_pending) {
        roo__route *r = sh->remote_pending;
        sh->remote_pending = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    roo__shard_moves_finish(sh);
    free(sh->part_dest);
    free(sh->dests);
    free(sh->part_old);
    free(sh->drop_pending);
    free(sh->import_waits);
    free(sh->track);
    free(sh->tracked);
    while (sh->held_head) {
        roo__route *r = sh->held_head;
        sh->held_head = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    while (sh->imports_head) {
        roo__import_msg *im = (roo__import_msg *)sh->imports_head;
        sh->imports_head = im->node.next;
        roo__buf_finish(&im->records);
        roo__buf_finish(&im->marks);
        free(im);
    }
    for (unsigned d = 0; sh->route_out && d < sh->route_cap; d++) {
        if (sh->route_out[d]) {
            roo__buf_finish(&sh->route_out[d]->data);
            free(sh->route_out[d]);
        }
    }
    free(sh->route_out);
    roo__dedup_destroy(sh->dedup);
    roo__dur_finish(&sh->dur);
    roo__table_destroy(sh->table, finish_entry, sh->eng);
    free(sh->dirty);
    free(sh->source_counts);
    free((void *)sh->step_errors);
    free(sh->compute);
    free((void *)sh->serialize_errors);
    roo__buf_finish(&sh->rbuf);
    roo__buf_finish(&sh->pack_buf);
    roo__loop_destroy(sh->loop);
    roo__queue_finish(&sh->inbox);
}
