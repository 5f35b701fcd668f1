/* steps.c: running a processing thread's messages through the pipeline's steps: one
 * message through every step at once (depth first), or a read's frames and a peer's runs
 * stage by stage through per-stage queues, into the application's callbacks, its `_many`
 * callbacks where it has them.
 *
 * The depth-first path per message is: decode callback -> roo_emit -> (key callback, the
 * table's recent-key cache, else hash and lookup, state callback) -> roo_emit -> encode
 * callback into the batch's output buffer; each roo_emit enters its step by a tail call.
 * The queued path runs each stage's loop over a queue instead (see "a read's frames, stage
 * by stage" below). Either way no syscall, allocation, lock or protobuf message happens
 * per message. Everything here runs on the processing thread that owns `sh`.
 */
#include <stdlib.h>

#include "engine/shard-int.h"

/* ---- the pipeline ---- */

/* The rare case out of line: a message that is not 8-byte aligned (callbacks are promised
 * aligned ones: copied here, with no stack buffer in roo_emit itself). */
static __attribute__((noinline)) int emit_unaligned(roo_emitter *out, const void *msg, size_t len)
{
    uint64_t small[64];
    void *copy = len <= sizeof(small) ? (void *)small : roo__xmalloc(len);

    memcpy(copy, msg, len);
    out->step(out, copy, len);
    if (copy != small)
        free(copy);
    return 0;
}

/* The emitter holds the receiving stage's step (roo__shard_emitter): one indirect tail call,
 * no dispatch on the stage's kind, no test for the test driver or a timed message here. */
int roo_emit(roo_emitter *out, const void *msg, size_t len)
{
    if (ROO__UNLIKELY(len > ROO_MSG_MAX))
        return ROO_EMSGSIZE;
    if (ROO__UNLIKELY(((uintptr_t)msg & 7) != 0 && len > 0))
        return emit_unaligned(out, msg, len);
    return out->step(out, msg, len);
}

/* The rest of a sink step: a bigger buffer, a failed encode, the next sink of a fan-out. */
int roo__sink_encode(const roo__stage *st, roo__buf *ob, const void *msg, size_t len)
{
    size_t room;
    int n;

    roo__buf_reserve(ob, 256);
    room = ob->cap - ob->len;
    n = st->encode(msg, len, ob->data + ob->len, room, st->ctx);
    if (n >= 0 && (size_t)n > room) {
        roo__buf_reserve(ob, (size_t)n);
        room = ob->cap - ob->len;
        n = st->encode(msg, len, ob->data + ob->len, room, st->ctx);
        if (n >= 0 && (size_t)n > room)
            n = ROO_ECALLBACK; /* it asked for more room twice */
    }
    if (n >= 0)
        ob->len += (size_t)n;
    return n;
}

static __attribute__((noinline)) int sink_more(roo__shard *sh, const roo__stage *st,
                                               const void *msg, size_t len)
{
    roo__buf *ob = &sh->cur->out[st->sink_idx];
    const size_t hint = sh->out_hint[st->sink_idx];
    int n;

    /* Out of room: grow once to about what the last batches wrote, not by doubling, each
     * time a copy of everything so far into pages touched for the first time. */
    if (ob->cap - ob->len < 256 && ob->cap < hint)
        roo__buf_reserve(ob, hint + hint / 4 - ob->len);
    n = roo__sink_encode(st, ob, msg, len);

    if (n < 0)
        roo__shard_callback_error(sh, st, "encode", n);
    else
        sh->cur->sink_nout[st->sink_idx]++; /* summed into nout when sealed */
    if (st->next != UINT32_MAX)
        roo__shard_run(sh, st->next, msg, len); /* roo_pipeline_to_sinks: the next sink */
    return 0;
}

/*
 * The steps, one function per kind, each entered by a tail call from roo_emit: the decode ->
 * state -> sink chain then saves only the registers each step needs. A sink step encodes
 * straight into the batch's buffer when 256 bytes are free; sink_more does everything else.
 */
static int sink_step(roo_emitter *out, const void *msg, size_t len)
{
    roo__shard *sh = out->sh;
    const roo__stage *st = out->st;
    roo__batch *b = sh->cur;
    roo__buf *ob = &b->out[st->sink_idx];
    size_t room = ob->cap - ob->len;
    int n;

    if (ROO__UNLIKELY(room < 256 || st->next != UINT32_MAX))
        return sink_more(sh, st, msg, len);
    n = st->encode(msg, len, ob->data + ob->len, room, st->ctx);
    if (ROO__UNLIKELY((size_t)n > room)) /* failed (negative), or wants more room */
        return sink_more(sh, st, msg, len);
    ob->len += (size_t)n;
    b->sink_nout[st->sink_idx]++; /* summed into nout when sealed */
    return 0;
}

/*
 * Copy a message's len bytes into a route record, whose room is len rounded up to 8 bytes,
 * by words when it is short (most are): no call to memcpy for a few bytes. The padding
 * after the message is zeroed: no stale bytes go on the wire. in_slot: msg lies in a stage
 * queue, whose slots are whole words, so its last word may be read whole and masked.
 */
static inline __attribute__((always_inline)) void route_copy(uint8_t *dst, const void *msg,
                                                             size_t len, bool in_slot)
{
    const uint8_t *src = msg;
    size_t i = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (in_slot && len - 1 < 8) { /* 1 to 8 bytes: one word, masked */
        uint64_t w;
        memcpy(&w, src, 8);
        if (len < 8)
            w &= ~0ull >> (64 - 8 * len);
        memcpy(dst, &w, 8);
        return;
    }
#endif
    if (len > 64) {
        memset(dst + ROO__ALIGN8(len) - 8, 0, 8);
        memcpy(dst, src, len);
        return;
    }
    for (; i + 8 <= len; i += 8)
        memcpy(dst + i, src + i, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (in_slot && i < len) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w &= ~0ull >> (64 - 8 * (len - i));
        memcpy(dst + i, &w, 8);
        return;
    }
#else
    (void)in_slot;
#endif
    if (i < len) {
        uint8_t w[8] = { 0 };
        for (size_t j = 0; i + j < len; j++)
            w[j] = src[i + j];
        memcpy(dst + i, w, 8);
    }
}

/* A record of its own in r (not in a run): a message with identity, an empty one, a read
 * position, or a message unlike the one before; it ends r's run. */
static void route_record(roo__shard *sh, roo__route *r, uint32_t si, const void *msg, size_t len,
                         const roo__msg_id *id)
{
    size_t idlen = id ? ROO__ROUTE_ID_LEN : 0;
    size_t rec = 8 + idlen + ROO__ALIGN8(len);
    uint8_t *p;

    r->run_at = 0;
    r->run_key = 0;
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
        if (r->remote)
            sh->remote_bytes += 24;
        r->id_stream = id->stream;
        r->id_base = id->offset;
    }
    /* Records are little-endian on the wire (they cross to other workers as they are). */
    p = roo__buf_reserve(&r->data, rec);
    if (r->remote)
        sh->remote_bytes += rec;
    /* No stale bytes on the wire: zero the padding's word first, the payload overwrites the
     * rest of it (with no payload this word is the header's, written next). */
    memset(p + rec - 8, 0, 8);
    roo__store_le32(p, si | (id ? ROO__ROUTE_ID_FLAG : 0));
    roo__store_le32(p + 4, (uint32_t)len);
    if (id) {
        roo__store_le32(p + 8, (uint32_t)(id->offset - r->id_base));
        roo__store_le32(p + 12, id->sub);
    }
    memcpy(p + 8 + idlen, msg, len);
    r->data.len += rec;
    r->nmsgs++;
}

/* A message that does not continue r's last record: a plain record of its own, which the
 * next message of the same step and length turns into a run (route_run_start). An empty
 * message never joins a run: a run's messages have bytes. */
static __attribute__((noinline)) void route_single(roo__shard *sh, roo__route *r, uint32_t si,
                                                   const void *msg, size_t len)
{
    size_t at = r->data.len;

    route_record(sh, r, si, msg, len, NULL);
    if (len == 0)
        return;
    r->run_at = at + 1;
    r->run_stage = si;
    r->run_len = (uint32_t)len;
}

/*
 * The last record of r, a plain one, becomes a run of one: its message moves 8 bytes on
 * for the longer header. Once per run, so messages of varying sizes (which never repeat)
 * keep the plain record's 8-byte header and a run costs 8 bytes more only once.
 */
static __attribute__((noinline)) void route_run_start(roo__shard *sh, roo__route *r)
{
    size_t at = r->run_at - 1, padded = ROO__ALIGN8((size_t)r->run_len);
    uint8_t *p;

    roo__buf_reserve(&r->data, ROO__ROUTE_RUN_HDR - 8);
    p = r->data.data + at;
    memmove(p + ROO__ROUTE_RUN_HDR, p + 8, padded);
    roo__store_le32(p, ROO__ROUTE_RUN);
    roo__store_le32(p + 4, r->run_stage);
    roo__store_le32(p + 8, r->run_len);
    roo__store_le32(p + 12, 1);
    r->data.len += ROO__ROUTE_RUN_HDR - 8;
    if (r->remote)
        sh->remote_bytes += ROO__ROUTE_RUN_HDR - 8;
    r->run_key = (uint64_t)r->run_stage << 32 | r->run_len;
}

/* Make r's last record an open run of step si and length len (len > 0), so that messages
 * can be written straight after it: the run already there, a plain record of that step
 * and length turned into one, or a new run of none yet. */
static void route_run_ready(roo__shard *sh, roo__route *r, uint32_t si, uint32_t len)
{
    size_t at = r->data.len;
    uint8_t *p;

    if (r->run_key == ((uint64_t)si << 32 | len))
        return;
    if (r->run_at != 0 && r->run_stage == si && r->run_len == len) {
        route_run_start(sh, r);
        return;
    }
    p = roo__buf_reserve(&r->data, ROO__ROUTE_RUN_HDR);
    roo__store_le32(p, ROO__ROUTE_RUN);
    roo__store_le32(p + 4, si);
    roo__store_le32(p + 8, len);
    roo__store_le32(p + 12, 0);
    r->data.len += ROO__ROUTE_RUN_HDR;
    if (r->remote)
        sh->remote_bytes += ROO__ROUTE_RUN_HDR;
    r->run_at = at + 1;
    r->run_stage = si;
    r->run_len = len;
    r->run_key = (uint64_t)si << 32 | len;
}

/*
 * Append a message without identity for state step si to an open route buffer r
 * (roo__shard_route's common case, inline in the state step): into the run at r's end when
 * it has the same step and length (making the last record a run if it is not one yet),
 * else as a record of its own.
 */
static inline __attribute__((always_inline)) void
route_append(roo__shard *sh, roo__route *r, uint32_t si, const void *msg, size_t len, bool in_slot)
{
    size_t rec = ROO__ALIGN8(len);
    uint8_t *p;

    /* The common case first: the last record is an open run of this stage and length (a
     * run's length is never 0, nor is run_key then). */
    if (ROO__UNLIKELY(r->run_key != ((uint64_t)si << 32 | len))) {
        if (r->run_at == 0 || r->run_stage != si || r->run_len != len) {
            route_single(sh, r, si, msg, len);
            return;
        }
        route_run_start(sh, r);
    }
    p = roo__buf_reserve(&r->data, rec);
    sh->remote_bytes += rec & -(size_t)r->remote; /* without a branch on the destination */
    route_copy(p, msg, len, in_slot);
    r->data.len += rec;
    r->nmsgs++;
    /* The run's count, in its header: the buffer is whole after every append. */
    p = r->data.data + r->run_at - 1 + 12;
    roo__store_le32(p, roo__load_le32(p) + 1);
}

/* The route buffer being filled for dest, opened (taken from the pool) if there is none. */
static roo__route *route_open(roo__shard *sh, unsigned dest)
{
    roo__route *r = sh->route_out[dest];

    if (!r) {
        r = roo__route_take(&sh->route_pool);
        r->from = sh;
        r->id_stream = 0;
        r->worker = sh->dests[dest].worker;
        r->thread = sh->dests[dest].thread;
        r->held = sh->dests[dest].held;
        r->hold_gen = r->held ? sh->hold_gen : 0;
        r->read_ns = sh->lat_read_ns;
        r->pipeline = sh->lat_pipeline;
        r->remote = dest >= sh->eng->nshards;
        sh->route_out[dest] = r;
    }
    return r;
}

void roo__shard_route(roo__shard *sh, unsigned dest, uint32_t si, const void *msg, size_t len,
                      const roo__msg_id *id)
{
    roo__route *r = route_open(sh, dest);

    if (!id && si < ROO__ROUTE_RUN)
        route_append(sh, r, si, msg, len, false);
    else
        route_record(sh, r, si, msg, len, id);
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

/* After the state computation: list a saved entry for the batch, count a failure. */
static inline __attribute__((always_inline)) void state_done(roo__shard *sh, const roo__stage *st,
                                                             roo__entry *e, int rc)
{
    if (rc == ROO_SAVE) {
        if (e->dirty_mark != sh->batch_seq) /* not listed yet in this batch */
            roo__shard_mark_dirty(sh, e);
    } else if (ROO__UNLIKELY(rc < 0))
        roo__shard_callback_error(sh, st, "state computation", rc);
}

/*
 * Every case but the common one: a key not in the recent-key cache (hash, partition, owner,
 * lookup or insert, init), a key kept by another thread or worker, a partition move, a
 * message from a resumable stream. key8 is roo__key8 of the key when kl <= 8.
 */
static __attribute__((noinline)) int state_stage_full(roo__shard *sh, const roo__stage *st,
                                                      uint32_t si, const void *msg, size_t len,
                                                      const uint8_t *key, int kl, uint64_t key8,
                                                      const roo__recent *r, roo_emitter *qem)
{
    roo_emitter em = qem ? *qem : roo__shard_emitter(sh, st->next);
    roo__entry *e = NULL;
    uint64_t h = 0;
    uint16_t part;
    unsigned owner;
    int rc;

    if (ROO__LIKELY(r != NULL)) {
        part = roo__recent_partition(r);
        e = r->e;
    } else {
        h = roo__key_hash(key, (size_t)kl);
        part = roo__partition_of(h, sh->partitions);
        if (kl <= 8)
            roo__table_remember(sh->table, st->state_id, key8, (size_t)kl, part, NULL);
    }
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
            return 0;
        }
        if (roo__dedup_check(sh->dedup, id.stream, part, id.offset, id.sub)) {
            atomic_fetch_add_explicit(&sh->duplicates, 1, memory_order_relaxed);
            return 0;
        }
    } else if (owner != sh->idx) {
        roo__shard_route_msg(sh, st, owner, si, msg, len, NULL, part);
        return 0;
    }
    if (!e) {
        if (r) /* known by its partition only: not hashed above */
            h = roo__key_hash(key, (size_t)kl);
        e = roo__table_find(sh->table, h, st->state_id, key, (size_t)kl);
        if (!e)
            e = roo__table_insert(sh->table, h, st->state_id, part, key, (size_t)kl,
                                  st->state->size);
    }
    if (!(e->flags & ROO__ENTRY_READY)) {
        if (st->state->init) {
            rc = st->state->init(roo__entry_state(e), key, (size_t)kl, st->state->ctx);
            if (rc < 0) {
                roo__shard_callback_error(sh, st, "state init", rc);
                return 0;
            }
        }
        e->flags |= ROO__ENTRY_READY;
    }
    /* The cache's fast path (state_step) skips the owner check and init: it may only see
     * ready entries of partitions that the thread's table gives it. */
    if (kl <= 8 && sh->part_dest[part] == sh->idx)
        roo__table_remember(sh->table, st->state_id, key8, (size_t)kl, part, e);
    rc = st->state_compute(msg, len, roo__entry_state(e), &em, st->ctx);
    state_done(sh, st, e, rc);
    return 0;
}

/*
 * The common cases after the key callback, inline: a short key met before, outside a
 * partition move and a resumable stream, whose ready entry this thread keeps (its cache
 * slot is returned: no hash, no owner check, no lookup), or that another thread or worker
 * keeps (the message is routed, *ret_routed set). Otherwise NULL, with the key's word and
 * slot in *ret_key8 and *ret_r for state_stage_full. (A slot holds an entry only under the
 * partition table it was cached with: take_table clears the cache.) in_loop: the caller
 * (state_loop_many) runs a whole stage queue, so msg lies in a queue's whole-word slot
 * (route_copy), and it has seen that no move holds messages and that they have no
 * identities, which cannot change while it runs; sh->routed, which only a hold reads, is
 * then left to it. table, mix and tag0: sh->table and roo__table_recent_in's step values.
 */
static inline __attribute__((always_inline)) const roo__recent *
state_fast(roo__shard *sh, const roo__stage *st, uint32_t si, const void *msg, size_t len,
           const uint8_t *key, int kl, uint64_t *ret_key8, const roo__recent **ret_r,
           bool *ret_routed, bool in_loop, roo__table *table, uint64_t mix, uint64_t tag0)
{
    const roo__recent *r;
    uint64_t key8;

    *ret_routed = false;
    if (ROO__UNLIKELY((unsigned)kl > 8))
        return NULL;
    key8 = roo__key8(key, (size_t)kl);
    r = roo__table_recent_in(table, mix, tag0, key8, (size_t)kl);
    *ret_key8 = key8;
    *ret_r = r;
    if (in_loop) {
        if (ROO__UNLIKELY(r == NULL))
            return NULL;
    } else {
        if (ROO__UNLIKELY(r == NULL || (sh->hold_epoch | sh->id.stream)))
            return NULL;
        sh->routed = false;
    }
    if (ROO__LIKELY(r->e != NULL))
        return r;
    /* A key another thread or worker keeps, met before: off it goes. */
    uint16_t part = roo__recent_partition(r);
    unsigned owner = sh->part_dest[part];
    if (ROO__LIKELY(owner != sh->idx)) {
        roo__route *rt = sh->route_out[owner];
        if (ROO__LIKELY(rt != NULL && st->wire == NULL))
            route_append(sh, rt, si, msg, len, in_loop);
        else
            roo__shard_route_msg(sh, st, owner, si, msg, len, NULL, part);
        *ret_routed = true;
    }
    return NULL;
}

/* A message whose key is in key[0, kl): its state computation, its route, or the full
 * path. qem is the emitter for the computation's outputs when they are queued (a read run
 * stage by stage), NULL to run the next step at once. */
static inline __attribute__((always_inline)) void state_keyed(roo__shard *sh, const roo__stage *st,
                                                              uint32_t si, const void *msg,
                                                              size_t len, const uint8_t *key,
                                                              int kl, roo_emitter *qem)
{
    const roo__recent *r = NULL, *hit;
    uint64_t key8 = 0;
    bool routed;
    int rc;

    hit = state_fast(sh, st, si, msg, len, key, kl, &key8, &r, &routed, false, sh->table,
                     (uint64_t)st->state_id << 56, ROO__RECENT_TAG(0, st->state_id));
    if (ROO__LIKELY(hit != NULL)) {
        if (qem) {
            rc = st->state_compute(msg, len, hit->state, qem, st->ctx);
        } else {
            roo_emitter em = roo__shard_emitter(sh, st->next);
            rc = st->state_compute(msg, len, hit->state, &em, st->ctx);
        }
        state_done(sh, st, hit->e, rc);
        return;
    }
    if (routed)
        return;
    if (ROO__UNLIKELY(kl < 0 || kl > ROO_KEY_MAX)) {
        roo__shard_callback_error(sh, st, "key", kl < 0 ? kl : ROO_EKEYSIZE);
        return;
    }
    state_stage_full(sh, st, si, msg, len, key, kl, key8, r, qem);
}

static int state_step(roo_emitter *out, const void *msg, size_t len)
{
    const roo__stage *st = out->st;
    uint8_t key[ROO_KEY_MAX];
    int kl = st->key(msg, len, key, st->ctx);

    state_keyed(out->sh, st, out->stage, msg, len, key, kl, NULL);
    return 0;
}

static int stateless_step(roo_emitter *out, const void *msg, size_t len)
{
    const roo__stage *st = out->st;
    roo_emitter em = roo__shard_emitter(out->sh, st->next);
    int rc = st->compute(msg, len, &em, st->ctx);

    if (ROO__UNLIKELY(rc < 0))
        roo__shard_callback_error(out->sh, st, "computation", rc);
    return 0;
}

static inline void run_step(roo__shard *sh, uint32_t si, const void *msg, size_t len)
{
    roo_emitter em = roo__shard_emitter_untimed(sh, si);

    em.step(&em, msg, len);
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

int roo__shard_step_timed(roo_emitter *out, const void *msg, size_t len)
{
    run_step_timed(out->sh, out->stage, msg, len);
    return 0;
}

void roo__shard_run(roo__shard *sh, uint32_t si, const void *msg, size_t len)
{
    if (ROO__UNLIKELY(sh->timing))
        run_step_timed(sh, si, msg, len);
    else
        run_step(sh, si, msg, len);
}

/* The step of each stage, for emitters (engine create, before any thread runs). */
void roo__shard_steps_init(roo_app *app)
{
    for (size_t i = 0; i < app->nstages; i++) {
        roo__stage *st = &app->stages[i];
        st->step = st->kind == ROO__STAGE_SINK    ? sink_step
                   : st->kind == ROO__STAGE_STATE ? state_step
                                                  : stateless_step;
    }
}

/* ---- a read's frames, stage by stage ---- */

/*
 * The source's fast path (source.c) decodes a read's frames into the first stage's queue,
 * then each stage runs over its queue in one loop, its outputs queued for the next stage.
 * A stage's messages then reach the application's `_many` callbacks (roo.h) as arrays, and
 * steps without them still save a call and an emitter set-up per message. Each stage sees
 * its messages in the order they arrived, and each sink its outputs in the order that
 * running one message at a time gives (a stage's index is above those that feed it, so
 * draining in index order is enough). Only pipelines whose messages are plain bytes queue:
 * a host's handles (host.h) live only while roo_emit runs.
 */

static int queue_step(roo_emitter *out, const void *msg, size_t len);

static inline roo_emitter queue_emitter(roo__shard *sh, uint32_t si)
{
    return (roo_emitter){
        .step = queue_step, .sh = sh, .st = &sh->stages[si], .stage = si, .q = &sh->queues[si]
    };
}

/*
 * Visit a queue's messages in order as (const uint64_t *msg, size_t len): two nested
 * loops, over its runs and over each run's messages, so `continue` goes to the next
 * message. A run's header word holds the length (low half) and the count (high half).
 */
#define QUEUE_EACH(q, msg, len)                                                                    \
    for (uint32_t qw_ = 0, qn_ = 0, qs_ = 0; qw_ < (q)->words;)                                    \
        for ((len) = (uint32_t)(q)->data[qw_], qn_ = (uint32_t)((q)->data[qw_] >> 32),             \
            qs_ = (uint32_t)(((len) + 7) >> 3), (msg) = (q)->data + qw_ + 1, qw_ += 1 + qn_ * qs_; \
             qn_ > 0; qn_--, (msg) += qs_)

static void pending_run(roo__shard *sh, const roo__stage *st, roo__pending *p, size_t n,
                        roo_emitter *em)
{
    const uint64_t seq = sh->batch_seq; /* batches are sealed between reads, never in here */

    if (n == 0)
        return;
    sh->routed = false;
    /* results[] holds ROO_SAVE, the safe answer, wherever the callback leaves it */
    st->state_compute_many(p->msgs, p->lens, p->states, n, p->results, em, st->ctx);
    for (size_t i = 0; i < n; i++) {
        if (ROO__LIKELY(p->results[i] == ROO_SAVE)) {
            if (p->entries[i]->dirty_mark != seq) /* not listed yet in this batch */
                roo__shard_mark_dirty(sh, p->entries[i]);
        } else {
            state_done(sh, st, p->entries[i], p->results[i]);
            p->results[i] = ROO_SAVE;
        }
    }
}

/* A state step without compute_many: one call of compute per message. */
static void state_loop(roo__shard *sh, uint32_t si, const roo__stageq *q)
{
    const roo__stage *st = &sh->stages[si];
    roo_emitter em = queue_emitter(sh, st->next);
    uint8_t key[ROO_KEY_MAX];
    const uint64_t *msg;
    size_t len;

    QUEUE_EACH(q, msg, len)
    state_keyed(sh, st, si, msg, len, key, st->key(msg, len, key, st->ctx), &em);
}

/*
 * The messages of a state_loop_many that go to other threads or workers, gathered in
 * order and routed after the loop that sorts them (those of 1 to 8 bytes as words:
 * routed_words below).
 */
typedef struct routed_list {
    const uint64_t *msgs[ROO__MANY_MAX];
    uint32_t lens[ROO__MANY_MAX];
    uint16_t dests[ROO__MANY_MAX];
    uint16_t parts[ROO__MANY_MAX];
} routed_list;

static __attribute__((noinline)) void routed_flush(roo__shard *sh, const roo__stage *st,
                                                   uint32_t si, const routed_list *rl, size_t nr)
{
    for (size_t i = 0; i < nr; i++) {
        unsigned owner = rl->dests[i];
        roo__route *rt = sh->route_out[owner];

        if (ROO__LIKELY(rt != NULL))
            route_append(sh, rt, si, rl->msgs[i], rl->lens[i], true);
        else
            roo__shard_route_msg(sh, st, owner, si, rl->msgs[i], rl->lens[i], NULL, rl->parts[i]);
    }
}

/*
 * The routed messages of 1 to 8 bytes of a chunk of a run (a thread with at most 64
 * destinations): each one's word of its queue slot, masked to the message, and its
 * destination, written with no branch as the chunk is sorted.
 */
typedef struct routed_words {
    uint64_t words[ROO__MANY_MAX];
    uint8_t dests[ROO__MANY_MAX];
} routed_words;

/*
 * nr routed words of messages of len bytes for step si into their route buffers: for each
 * destination, its run made ready and room reserved, then one pass over the words that
 * writes every word and moves on only past those for it. The position stays in a register:
 * one pass for all destinations would carry each destination's position through memory
 * from one word to the next of the same destination.
 */
static __attribute__((noinline)) void routed_words_flush(roo__shard *sh, uint32_t si, uint32_t len,
                                                         const routed_words *rw, size_t nr)
{
    uint64_t touched = 0;

    for (size_t i = 0; i < nr; i++)
        touched |= 1ull << rw->dests[i];
    for (; touched; touched &= touched - 1) {
        const unsigned d = (unsigned)__builtin_ctzll(touched);
        roo__route *r = route_open(sh, d);
        uint8_t *at, *from, *count;
        size_t bytes;

        route_run_ready(sh, r, si, len);
        /* Room for all nr: a word for another destination is written too, where this one's
         * next goes, and is overwritten by it or left past the buffer's end (never sent). */
        at = from = roo__buf_reserve(&r->data, nr * 8);
        for (size_t i = 0; i < nr; i++) {
            memcpy(at, &rw->words[i], 8);
            at += (size_t)(rw->dests[i] == d) * 8;
        }
        bytes = (size_t)(at - from);
        count = r->data.data + r->run_at - 1 + 12;
        r->data.len += bytes;
        r->nmsgs += bytes / 8;
        roo__store_le32(count, roo__load_le32(count) + (uint32_t)(bytes / 8));
        sh->remote_bytes += bytes & -(size_t)r->remote;
    }
}

/*
 * state_loop_many for a thread whose table sends partitions elsewhere. Whether a message
 * stays or goes takes no branch: a third of the messages staying, at random, mispredicts
 * about as often as not, and each miss throws away the key, hash and lookup of the
 * messages behind it. Each message is written to both lists and only one count moves; the
 * routed ones go into their route buffers after the loop, in order per destination (the
 * order between a local key and a routed one does not matter, each key's does). A message
 * the cache does not know runs what both lists hold first, then takes the whole path.
 */
static void state_loop_split(roo__shard *sh, uint32_t si, const roo__stageq *q)
{
    const roo__stage *st = &sh->stages[si];
    roo_emitter em = queue_emitter(sh, st->next);
    roo_key_fn key_fn = st->key;
    void *ctx = st->ctx;
    uint8_t key[ROO_KEY_MAX];
    roo__pending *p = &sh->pending[si];
    roo__table *table = sh->table;
    const uint16_t *part_dest = sh->part_dest;
    const unsigned idx = sh->idx;
    const uint64_t mix = (uint64_t)st->state_id << 56, tag0 = ROO__RECENT_TAG(0, st->state_id);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const bool words_ok = sh->ndests <= 64;
#else
    const bool words_ok = false;
#endif
    routed_words rw;
    routed_list rl;
    size_t n = 0;

    sh->routed = false;
    for (uint32_t qw = 0; qw < q->words;) {
        const uint32_t len = (uint32_t)q->data[qw], qs = (len + 7) >> 3;
        const uint64_t *msg = q->data + qw + 1;
        uint32_t left = (uint32_t)(q->data[qw] >> 32);
        const bool words = words_ok && len - 1 < 8;
        const uint64_t mask = ~0ull >> (words ? 64 - 8 * len : 0);
        size_t nr = 0;

        qw += 1 + left * qs;
        for (; left > 0; left--, msg += qs) {
            int kl = key_fn(msg, len, key, ctx);
            const roo__recent *r;
            uint16_t part;
            unsigned owner;
            size_t local;

            if (ROO__UNLIKELY((unsigned)kl - 1 > 7))
                goto slow;
            r = roo__table_recent_in(table, mix, tag0, roo__key8(key, (size_t)kl), (size_t)kl);
            if (ROO__UNLIKELY(r == NULL))
                goto slow;
            part = roo__recent_partition(r);
            owner = part_dest[part];
            local = owner == idx;
            if (ROO__UNLIKELY(local != (r->e != NULL))) /* ours, but not at hand */
                goto slow;
            p->msgs[n] = msg;
            p->lens[n] = len;
            p->states[n] = r->state;
            p->entries[n] = r->e;
            n += local;
            if (words) {
                rw.words[nr] = *msg & mask;
                rw.dests[nr] = (uint8_t)owner;
            } else {
                rl.msgs[nr] = msg;
                rl.lens[nr] = len;
                rl.dests[nr] = (uint16_t)owner;
                rl.parts[nr] = part;
            }
            nr += local ^ 1;
            if (ROO__UNLIKELY(nr == ROO__MANY_MAX)) {
                if (words)
                    routed_words_flush(sh, si, len, &rw, nr);
                else
                    routed_flush(sh, st, si, &rl, nr);
                nr = 0;
            }
            if (ROO__UNLIKELY(n == ROO__MANY_MAX)) {
                pending_run(sh, st, p, n, &em);
                n = 0;
            }
            continue;
        slow:
            if (words)
                routed_words_flush(sh, si, len, &rw, nr);
            else
                routed_flush(sh, st, si, &rl, nr);
            nr = 0;
            pending_run(sh, st, p, n, &em);
            n = 0;
            state_keyed(sh, st, si, msg, len, key, kl, &em);
        }
        /* The next run may have another length: these runs end here. */
        if (words)
            routed_words_flush(sh, si, len, &rw, nr);
        else
            routed_flush(sh, st, si, &rl, nr);
    }
    pending_run(sh, st, p, n, &em);
}

/* A state step with compute_many: messages whose entry the recent-key cache has gather for
 * one call; any other message (a new key, a move, a key routed for the first time) first
 * runs those gathered before it, so each key's messages keep their order. */
static void state_loop_many(roo__shard *sh, uint32_t si, const roo__stageq *q, bool split)
{
    const roo__stage *st = &sh->stages[si];
    roo_emitter em = queue_emitter(sh, st->next);
    roo_key_fn key_fn = st->key;
    void *ctx = st->ctx;
    uint8_t key[ROO_KEY_MAX];
    roo__pending *p = &sh->pending[si];
    /* In locals: the callbacks could, for all the compiler knows, change sh and st, which
     * it would read again for every message. */
    roo__table *table = sh->table;
    const uint64_t mix = (uint64_t)st->state_id << 56, tag0 = ROO__RECENT_TAG(0, st->state_id);
    const uint64_t *msg;
    size_t len, n = 0;

    if (ROO__UNLIKELY(sh->hold_epoch | sh->id.stream)) {
        /* A move holds messages, or they carry identities: each takes the whole path. */
        state_loop(sh, si, q);
        return;
    }
    if (split && sh->ndests > 1 && st->wire == NULL) {
        /* Some partitions go to other threads or workers. */
        state_loop_split(sh, si, q);
        return;
    }
    sh->routed = false;
    QUEUE_EACH(q, msg, len)
    {
        int kl = key_fn(msg, len, key, ctx);
        const roo__recent *r, *hit;
        uint64_t key8;
        bool routed;

        hit = state_fast(sh, st, si, msg, len, key, kl, &key8, &r, &routed, true, table, mix, tag0);
        if (ROO__LIKELY(hit != NULL)) {
            p->msgs[n] = msg;
            p->lens[n] = len;
            p->states[n] = hit->state;
            p->entries[n] = hit->e;
            if (ROO__UNLIKELY(++n == ROO__MANY_MAX)) {
                pending_run(sh, st, p, n, &em);
                n = 0;
            }
        } else if (!routed) {
            pending_run(sh, st, p, n, &em);
            n = 0;
            state_keyed(sh, st, si, msg, len, key, kl, &em);
        }
    }
    pending_run(sh, st, p, n, &em);
}

static void stateless_loop(roo__shard *sh, uint32_t si, const roo__stageq *q)
{
    const roo__stage *st = &sh->stages[si];
    roo_emitter em = queue_emitter(sh, st->next);
    const uint64_t *msg;
    size_t len;

    QUEUE_EACH(q, msg, len)
    {
        int rc = st->compute(msg, len, &em, st->ctx);
        if (ROO__UNLIKELY(rc < 0))
            roo__shard_callback_error(sh, st, "computation", rc);
    }
}

/* A sink without encode_many, or the first of a fan-out: its buffer position stays in
 * registers between encodes (sink_more, for a bigger buffer or the next sink, works on the
 * buffer itself). */
static void sink_loop(roo__shard *sh, uint32_t si, const roo__stageq *q)
{
    const roo__stage *st = &sh->stages[si];
    roo__batch *b = sh->cur;
    roo__buf *ob = &b->out[st->sink_idx];
    roo_encode_fn encode = st->encode;
    void *ctx = st->ctx;
    const bool chained = st->next != UINT32_MAX;
    uint8_t *data = ob->data;
    size_t used = ob->len, cap = ob->cap;
    uint64_t nout = 0;
    const uint64_t *msg;
    size_t len;

    QUEUE_EACH(q, msg, len)
    {
        size_t room = cap - used;

        if (ROO__LIKELY(room >= 256 && !chained)) {
            int n = encode(msg, len, data + used, room, ctx);
            if (ROO__LIKELY((size_t)n <= room)) {
                used += (size_t)n;
                nout++;
                continue;
            }
        }
        ob->len = used;
        sink_more(sh, st, msg, len);
        data = ob->data;
        used = ob->len;
        cap = ob->cap;
    }
    ob->len = used;
    b->sink_nout[st->sink_idx] += nout;
}

/* n messages through encode_many; where it stops, one through encode (sink_more). */
static void sink_many_run(roo__shard *sh, const roo__stage *st, const void *const *msgs,
                          const size_t *lens, size_t n)
{
    roo__buf *ob = &sh->cur->out[st->sink_idx];
    uint64_t nout = 0;
    size_t i = 0;

    while (i < n) {
        size_t room = ob->cap - ob->len, got = 0;
        size_t k =
            st->encode_many(msgs + i, lens + i, n - i, ob->data + ob->len, room, &got, st->ctx);

        if (ROO__UNLIKELY(k > n - i || got > room)) {
            /* Claims more than it was given: nothing of this call is trusted. */
            roo__shard_callback_error(sh, st, "encode_many", ROO_ECALLBACK);
            k = 0;
            got = 0;
        }
        ob->len += got;
        nout += k;
        i += k;
        if (i < n) {
            sink_more(sh, st, msgs[i], lens[i]);
            i++;
        }
    }
    sh->cur->sink_nout[st->sink_idx] += nout;
}

static void sink_loop_many(roo__shard *sh, uint32_t si, const roo__stageq *q)
{
    const roo__stage *st = &sh->stages[si];
    roo__pending *p = &sh->pending[si]; /* its msgs and lens */
    const uint64_t *msg;
    size_t len, n = 0;

    QUEUE_EACH(q, msg, len)
    {
        p->msgs[n] = msg;
        p->lens[n] = len;
        if (ROO__UNLIKELY(++n == ROO__MANY_MAX)) {
            sink_many_run(sh, st, p->msgs, p->lens, n);
            n = 0;
        }
    }
    if (n > 0)
        sink_many_run(sh, st, p->msgs, p->lens, n);
}

/* Step si over the messages of q (its own queue, or a run read where it lies). */
static void stage_loop(roo__shard *sh, uint32_t si, const roo__stageq *q, bool split)
{
    const roo__stage *st = &sh->stages[si];

    switch (st->kind) {
    case ROO__STAGE_STATE:
        if (st->state_compute_many)
            state_loop_many(sh, si, q, split);
        else
            state_loop(sh, si, q);
        break;
    case ROO__STAGE_SINK:
        if (st->encode_many && st->next == UINT32_MAX)
            sink_loop_many(sh, si, q);
        else
            sink_loop(sh, si, q);
        break;
    default:
        stateless_loop(sh, si, q);
        break;
    }
}

void roo__shard_drain(roo__shard *sh, uint32_t from)
{
    size_t nstages = sh->eng->app->nstages;

    for (size_t si = from; si < nstages; si++) {
        roo__stageq *q = &sh->queues[si];

        if (q->words == 0)
            continue;
        stage_loop(sh, (uint32_t)si, q, true);
        q->words = 0;
        q->last = 0;
    }
}

/* No room in the queue, or the message is longer than a queue takes: run what waits, then
 * queue it, or run it at once when it is that long. */
static __attribute__((noinline)) int queue_full(roo_emitter *out, const void *msg, size_t len)
{
    roo__shard *sh = out->sh;

    roo__shard_drain(sh, out->stage);
    if (len > ROO__STAGEQ_MSG_MAX) {
        run_step(sh, out->stage, msg, len);
        return 0;
    }
    return queue_step(out, msg, len);
}

/*
 * Make room for k messages of len bytes at the end of q and return where they go: in the
 * last run when it has their length, else after a new run's header. An empty message
 * never joins a run (a run's words bound its count). The caller checked that 1 + k words
 * per message fit.
 */
static inline uint64_t *queue_append(roo__stageq *q, size_t len, size_t k)
{
    size_t w = q->words;

    if (q->last == 0 || len == 0 || (uint32_t)q->data[q->last - 1] != len) {
        q->data[w++] = len;
        q->last = (uint32_t)w;
    }
    q->data[q->last - 1] += (uint64_t)k << 32;
    q->words = (uint32_t)(w + k * ((len + 7) >> 3));
    return q->data + w;
}

static int queue_step(roo_emitter *out, const void *msg, size_t len)
{
    roo__stageq *q = out->q;
    size_t nw = (len + 7) >> 3;
    uint64_t *d;

    if (ROO__UNLIKELY(q->words + 1 + nw > ROO__STAGEQ_WORDS))
        return queue_full(out, msg, len);
    d = queue_append(q, len, 1);
    if (ROO__LIKELY((len & 7) == 0 && len <= 32)) /* whole words, no call to memcpy */
        for (size_t i = 0; i < nw; i++)
            memcpy(d + i, (const uint8_t *)msg + 8 * i, 8);
    else
        memcpy(d, msg, len);
    return 0;
}

/* n messages of size bytes, stride bytes apart from msgs, into a queue: as many as fit,
 * copied at once when they lie as they will in the queue; then what waits runs, and the
 * rest follows. (roo_emit_many, and the runs of a peer's route buffer.) */
static void queue_many(roo_emitter *out, const uint8_t *msgs, size_t size, size_t stride, size_t n)
{
    roo__stageq *q = out->q;
    size_t nw = (size + 7) >> 3;

    if (size == 0 || size > ROO__STAGEQ_MSG_MAX) {
        for (size_t i = 0; i < n; i++)
            queue_step(out, msgs + i * stride, size);
        return;
    }
    while (n > 0) {
        size_t room = ROO__STAGEQ_WORDS - q->words; /* one word of it for a run header */
        size_t k = room > 1 ? ROO__MIN((room - 1) / nw, n) : 0;
        uint64_t *d;

        if (k == 0) {
            roo__shard_drain(out->sh, out->stage);
            continue;
        }
        d = queue_append(q, size, k);
        if (stride == nw * 8) {
            memcpy(d, msgs, (k - 1) * stride + size);
        } else {
            for (size_t i = 0; i < k; i++)
                memcpy(d + i * nw, msgs + i * stride, size);
        }
        msgs += k * stride;
        n -= k;
    }
}

/*
 * Outputs for a sink with encode_many whose queue is empty, from roo_emit_many: encoded at
 * once, as the sink's loop would encode them after the queue (nothing waits before them, so
 * the sink keeps their order), without copying them into the queue and out again. They are
 * aligned like a queue's messages: the array and the size are multiples of 8 bytes.
 */
static void sink_direct(roo__shard *sh, uint32_t si, const uint8_t *msgs, size_t size, size_t n)
{
    const roo__stage *st = &sh->stages[si];
    roo__pending *p = &sh->pending[si];

    while (n > 0) {
        size_t k = ROO__MIN(n, (size_t)ROO__MANY_MAX);
        for (size_t i = 0; i < k; i++) {
            p->msgs[i] = msgs + i * size;
            p->lens[i] = size;
        }
        sink_many_run(sh, st, p->msgs, p->lens, k);
        msgs += k * size;
        n -= k;
    }
}

int roo_emit_many(roo_emitter *out, const void *msgs, size_t size, size_t n)
{
    if (ROO__UNLIKELY(size > ROO_MSG_MAX))
        return ROO_EMSGSIZE;
    if (out->step == queue_step) {
        const roo__stage *st = out->st;
        if (st->kind == ROO__STAGE_SINK && st->encode_many && st->next == UINT32_MAX &&
            out->q->words == 0 && size > 0 && ((uintptr_t)msgs & 7) == 0 && (size & 7) == 0)
            sink_direct(out->sh, out->stage, msgs, size, n);
        else
            queue_many(out, msgs, size, size, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        roo_emit(out, (const uint8_t *)msgs + i * size, size);
    return 0;
}

roo_emitter roo__shard_queue_emitter(roo__shard *sh, uint32_t si)
{
    return queue_emitter(sh, si);
}

void roo__shard_enqueue(roo__shard *sh, uint32_t si, const void *msgs, size_t len, size_t stride,
                        size_t n)
{
    roo_emitter em = queue_emitter(sh, si);

    queue_many(&em, msgs, len, stride, n);
}

/*
 * A long run of a route buffer (n messages of len bytes, each in ROO__ALIGN8(len) bytes
 * from msgs, zero-padded) through step si where it lies, instead of copied into the
 * stage's queue first: the stage's loop reads it as a queue of one run. That run's header
 * is the word before msgs, which is written here: it holds the route record's header, or
 * a message of the same run that already ran and is read no more (the buffer is the
 * caller's until it goes back). The caller drained every queue first, so nothing that came
 * before waits behind the run. Little-endian only (the caller's test): a route run's
 * header then already ends in this word (its length, then its count).
 */
void roo__shard_run_in_place(roo__shard *sh, uint32_t si, uint8_t *msgs, size_t len, size_t n)
{
    uint64_t *hdr = (uint64_t *)(void *)msgs - 1;
    roo__stageq run = { .words = (uint32_t)(1 + n * ((len + 7) >> 3)), .last = 1, .data = hdr };

    *hdr = (uint64_t)len | (uint64_t)n << 32;
    stage_loop(sh, si, &run, false);
    roo__shard_drain(sh, si + 1);
}
