/* shard.c: a processing thread: reads its source connections, runs the pipeline to
 * completion for every frame, keeps its partitions' state and seals batches.
 *
 * The hot path per frame is: framer -> decode callback -> roo_emit -> (key, hash, table
 * lookup, state callback) -> roo_emit -> encode callback into the batch's output buffer.
 * No syscall, allocation, lock or protobuf message happens per frame: reads are 512 KiB,
 * buffers are reused from batch to batch, and the batch is handed on once per wakeup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/engine-int.h"

#define READ_CHUNK (512u * 1024u)
#define ROUTES_PER_DEST 4

struct roo__source_conn {
    roo__io io;
    roo__shard *sh;
    roo__source_conn *prev, *next;
    const roo_pipeline *pipeline;
    uint32_t first_stage;
    roo__framer framer;
    roo__buf partial; /* bytes of an incomplete frame, kept between reads */
    uint64_t frames;
    uint64_t bytes;
    char peer[64];
};

static void run_stage(roo__shard *sh, uint32_t si, const void *msg, size_t len);

/* ---- callbacks' errors ---- */

static void callback_error(roo__shard *sh, const roo__stage *st, const char *what, int rc)
{
    uint64_t suppressed;

    atomic_fetch_add_explicit(&sh->callback_errors, 1, memory_order_relaxed);
    if (!roo__ratelimit_allow(&sh->cb_rl, &suppressed))
        return;
    roo__log_warn("step '%s' of pipeline '%s': %s failed: %s; message dropped%s", st->name,
                  sh->eng->app->pipelines[st->pipeline]->name, what, roo_strerror(rc),
                  suppressed ? " (earlier similar errors not logged)" : "");
}

/* ---- the pipeline ---- */

int roo_emit(roo_emitter *out, const void *msg, size_t len)
{
    if (ROO__UNLIKELY(len > ROO_MSG_MAX))
        return ROO_EMSGSIZE;
    if (ROO__UNLIKELY(((uintptr_t)msg & 7) != 0 && len > 0)) {
        /* Callbacks are promised 8-byte aligned messages: copy the odd ones. */
        uint64_t small[64];
        void *copy = len <= sizeof(small) ? (void *)small : roo__xmalloc(len);
        memcpy(copy, msg, len);
        run_stage(out->sh, out->stage, copy, len);
        if (copy != small)
            free(copy);
        return 0;
    }
    run_stage(out->sh, out->stage, msg, len);
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
        callback_error(sh, st, "encode", n);
        return;
    }
    if (ROO__UNLIKELY((size_t)n > room)) {
        roo__buf_reserve(ob, (size_t)n);
        room = ob->cap - ob->len;
        n = st->encode(msg, len, ob->data + ob->len, room, st->ctx);
        if (n < 0 || (size_t)n > room) {
            callback_error(sh, st, "encode", n < 0 ? n : ROO_ECALLBACK);
            return;
        }
    }
    ob->len += (size_t)n;
    sh->cur->nout++;
}

static void route_msg(roo__shard *sh, unsigned dest, uint32_t si, const void *msg, size_t len)
{
    roo__route *r = sh->route_out[dest];
    size_t rec = 8 + ROO__ALIGN8(len);
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
        r->worker = sh->dests[dest].worker;
        r->thread = sh->dests[dest].thread;
        sh->route_out[dest] = r;
    }
    /* Records are little-endian on the wire (they cross to other workers as they are). */
    p = roo__buf_reserve(&r->data, rec);
    if (dest >= sh->eng->nshards)
        sh->remote_bytes += rec;
    roo__store_le32(p, si);
    roo__store_le32(p + 4, (uint32_t)len);
    memcpy(p + 8, msg, len);
    r->data.len += rec;
    r->nmsgs++;
}

static void mark_dirty(roo__shard *sh, roo__entry *e)
{
    if (e->dirty_mark == sh->batch_seq)
        return;
    e->dirty_mark = sh->batch_seq;
    if (ROO__UNLIKELY(sh->ndirty == sh->dirty_cap)) {
        sh->dirty_cap = sh->dirty_cap ? sh->dirty_cap * 2 : 256;
        sh->dirty = roo__xrealloc(sh->dirty, sh->dirty_cap * sizeof(*sh->dirty));
    }
    sh->dirty[sh->ndirty++] = e;
}

static inline __attribute__((always_inline)) void
state_stage(roo__shard *sh, const roo__stage *st, uint32_t si, const void *msg, size_t len)
{
    roo__engine *eng = sh->eng;
    uint8_t key[ROO_KEY_MAX];
    roo_emitter em = { sh, st->next };
    roo__entry *e;
    uint64_t h;
    uint16_t part;
    unsigned owner;
    int kl, rc;

    kl = st->key(msg, len, key, st->ctx);
    if (ROO__UNLIKELY(kl < 0 || kl > ROO_KEY_MAX)) {
        callback_error(sh, st, "key", kl < 0 ? kl : ROO_EKEYSIZE);
        return;
    }
    h = roo__key_hash(key, (size_t)kl);
    part = roo__partition_of(h, sh->partitions);
    (void)eng;
    owner = sh->part_dest[part];
    if (owner != sh->idx) {
        route_msg(sh, owner, si, msg, len);
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
                callback_error(sh, st, "state init", rc);
                return;
            }
        }
        e->flags |= ROO__ENTRY_READY;
    }
    rc = st->state_compute(msg, len, roo__entry_state(e), &em, st->ctx);
    if (rc == ROO_SAVE)
        mark_dirty(sh, e);
    else if (ROO__UNLIKELY(rc < 0))
        callback_error(sh, st, "state computation", rc);
}

static void run_stage(roo__shard *sh, uint32_t si, const void *msg, size_t len)
{
    const roo__stage *st = &sh->stages[si];

    switch (st->kind) {
    case ROO__STAGE_SINK:
        sink_stage(sh, st, msg, len);
        return;
    case ROO__STAGE_STATE:
        state_stage(sh, st, si, msg, len);
        return;
    case ROO__STAGE_STATELESS: {
        roo_emitter em = { sh, st->next };
        int rc = st->compute(msg, len, &em, st->ctx);
        if (ROO__UNLIKELY(rc < 0))
            callback_error(sh, st, "computation", rc);
        return;
    }
    }
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
static bool batch_empty(const roo__shard *sh)
{
    return sh->cur->nin == 0 && sh->cur->nout == 0 && sh->ndirty == 0 && sh->cur->nrecs == 0 &&
           !remote_pending(sh) && sh->outbox_written == sh->outbox_announced;
}

static size_t batch_out_bytes(const roo__batch *b, size_t nsinks)
{
    size_t n = 0;
    for (size_t i = 0; i < nsinks; i++)
        n += b->out[i].len;
    return n;
}

/* Full: its output, state records and the messages it holds for other workers. */
static bool batch_full(const roo__shard *sh)
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
static void flush_routes(roo__shard *sh)
{
    for (unsigned d = 0; d < sh->eng->nshards && d < sh->ndests; d++) {
        roo__route *r = sh->route_out[d];
        if (!r)
            continue;
        sh->route_out[d] = NULL;
        sh->routes_inflight++;
        roo__queue_push(&sh->eng->shards[d].inbox, &r->node);
    }
}

/* Move filled remote routes to the pending list, in destination order. */
static void collect_remote(roo__shard *sh)
{
    for (uint32_t d = sh->eng->nshards; d < sh->ndests; d++) {
        roo__route *r = sh->route_out[d];
        if (!r)
            continue;
        sh->route_out[d] = NULL;
        sh->routes_inflight++;
        atomic_fetch_add_explicit(&sh->routed_out, r->nmsgs, memory_order_relaxed);
        r->node.next = NULL;
        if (sh->remote_tail)
            sh->remote_tail->node.next = &r->node;
        else
            sh->remote_pending = r;
        sh->remote_tail = r;
    }
}

static void seal(roo__shard *sh)
{
    roo__batch *b = sh->cur;

    for (size_t i = 0; i < sh->ndirty; i++)
        append_record(sh, b, sh->dirty[i]);
    sh->ndirty = 0;
    collect_remote(sh);
    b->outbox_written = sh->outbox_written;
    sh->outbox_announced = sh->outbox_written;
    b->remote = sh->remote_pending;
    sh->remote_pending = sh->remote_tail = NULL;
    sh->remote_bytes = 0;
    b->seq = sh->batch_seq++;
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
    b->recs.len = 0;
    b->nrecs = 0;
    b->refs = 0;
    b->remote = NULL;
    b->nacks = 0;
    b->outbox_seq = 0;
    b->outbox_written = 0;
    for (size_t i = 0; i < nsinks; i++)
        b->out[i].len = 0;
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

/* ---- source connections ---- */

static void conn_close(roo__source_conn *c, bool log_it)
{
    roo__shard *sh = c->sh;

    if (log_it)
        roo__log_info("source '%s': connection from %s closed after %llu frames", c->pipeline->name,
                      c->peer, (unsigned long long)c->frames);
    roo__io_stop(sh->loop, &c->io);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        sh->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sh->nconns--;
    atomic_store_explicit(&sh->nconns_pub, sh->nconns, memory_order_relaxed);
    roo__buf_finish(&c->partial);
    free(c);
}

/* Run every whole frame in buf through the pipeline; *ret_used gets the bytes consumed. */
static int conn_process(roo__source_conn *c, const uint8_t *buf, size_t len, size_t *ret_used)
{
    roo__shard *sh = c->sh;
    roo_emitter em = { sh, c->first_stage };
    roo_decode_fn decode = c->pipeline->source.decode;
    void *ctx = c->pipeline->source.ctx;
    uint64_t frames = 0;
    size_t off = 0;
    roo__frame fr;
    int rc;

    while ((rc = roo__framer_next(&c->framer, buf + off, len - off, &fr)) == ROO__FRAME_OK) {
        int drc = decode(buf + off + fr.payload_off, fr.payload_len, &em, ctx);
        if (ROO__UNLIKELY(drc < 0)) {
            roo__log_warn("source '%s': connection from %s: decoder rejected frame %llu "
                          "(%zu-byte payload): %s; closing the connection",
                          c->pipeline->name, c->peer, (unsigned long long)(c->frames + frames + 1),
                          fr.payload_len, roo_strerror(drc));
            rc = drc;
            break;
        }
        off += fr.frame_len;
        frames++;
    }
    c->frames += frames;
    sh->cur->nin += frames;
    if (rc == ROO_EFRAMESIZE) {
        if (c->framer.framing == ROO_FRAMING_LENGTH)
            roo__log_warn("source '%s': connection from %s: frame %llu declares a %llu-byte "
                          "payload, over --max-frame %zu; closing the connection",
                          c->pipeline->name, c->peer, (unsigned long long)(c->frames + 1),
                          (unsigned long long)roo__framer_header_value(&c->framer, buf + off),
                          c->framer.max_frame);
        else
            roo__log_warn("source '%s': connection from %s: line %llu is longer than "
                          "--max-frame %zu; closing the connection",
                          c->pipeline->name, c->peer, (unsigned long long)(c->frames + 1),
                          c->framer.max_frame);
    }
    *ret_used = off;
    return rc < 0 ? rc : 0;
}

static void conn_eof(roo__source_conn *c, uint8_t *buf, size_t have)
{
    if (have > 0 && c->framer.framing == ROO_FRAMING_LINE) {
        /* A last line without '\n' is still a line. */
        size_t used;
        buf[have] = '\n';
        if (conn_process(c, buf, have + 1, &used) < 0) {
            conn_close(c, false);
            return;
        }
        have = 0;
    }
    if (have > 0) {
        if (have >= c->framer.header_len)
            roo__log_warn("source '%s': connection from %s closed in the middle of frame %llu "
                          "(%zu of %llu bytes); discarding the partial frame",
                          c->pipeline->name, c->peer, (unsigned long long)(c->frames + 1),
                          have - c->framer.header_len,
                          (unsigned long long)roo__framer_header_value(&c->framer, buf));
        else
            roo__log_warn("source '%s': connection from %s closed in the middle of a frame "
                          "header (%zu of %u bytes); discarding it",
                          c->pipeline->name, c->peer, have, c->framer.header_len);
    }
    conn_close(c, true);
}

static void conn_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__source_conn *c = ROO__CONTAINER_OF(io, roo__source_conn, io);
    roo__shard *sh = c->sh;
    uint8_t *buf = sh->rbuf.data;
    size_t have = c->partial.len, used;
    ssize_t n;

    (void)loop;
    (void)events;
    /* A full batch waits for the prepare hook to seal it; the socket stays readable. */
    if (!sh->cur || batch_full(sh))
        return;
    if (have)
        memcpy(buf, c->partial.data, have);
    n = read(io->fd, buf + have, READ_CHUNK);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        roo__log_warn("source '%s': connection from %s: read failed: %s; closing it",
                      c->pipeline->name, c->peer, strerror(errno));
        conn_close(c, true);
        return;
    }
    if (n == 0) {
        conn_eof(c, buf, have);
        return;
    }
    c->bytes += (uint64_t)n;
    have += (size_t)n;
    if (conn_process(c, buf, have, &used) < 0) {
        conn_close(c, false);
        return;
    }
    c->partial.len = 0;
    if (used < have)
        roo__buf_append(&c->partial, buf + used, have - used);
}

static void conn_add(roo__shard *sh, const roo__conn_msg *m)
{
    roo__source_conn *c = roo__xcalloc(1, sizeof(*c));
    const roo_pipeline *p = sh->eng->app->pipelines[m->pipeline];
    int rc;

    c->sh = sh;
    c->pipeline = p;
    c->first_stage = p->first_stage;
    roo__framer_init(&c->framer, &p->source, sh->eng->cfg.max_frame);
    snprintf(c->peer, sizeof(c->peer), "%s", m->peer);
    c->io.cb = conn_on_io;
    c->io.data = c;
    c->io.fd = m->fd;
    if (!sh->paused) {
        rc = roo__io_start(sh->loop, &c->io, m->fd, EPOLLIN | EPOLLRDHUP);
        if (rc < 0) {
            roo__log_error("source '%s': cannot watch connection from %s: %s", p->name, m->peer,
                           roo_strerror(rc));
            close(m->fd);
            free(c);
            return;
        }
    }
    c->next = sh->conns;
    if (sh->conns)
        sh->conns->prev = c;
    sh->conns = c;
    sh->nconns++;
    atomic_store_explicit(&sh->nconns_pub, sh->nconns, memory_order_relaxed);
    roo__log_info("source '%s': connection from %s (thread %u)", p->name, m->peer, sh->idx);
}

static void set_paused(roo__shard *sh, bool paused)
{
    sh->paused = paused;
    for (roo__source_conn *c = sh->conns; c; c = c->next) {
        if (paused) {
            roo__io_stop(sh->loop, &c->io);
        } else {
            int rc = roo__io_start(sh->loop, &c->io, c->io.fd, EPOLLIN | EPOLLRDHUP);
            if (rc < 0)
                roo__log_error("source '%s': cannot resume connection from %s: %s",
                               c->pipeline->name, c->peer, roo_strerror(rc));
        }
    }
}

/* ---- routes from other shards ---- */

/* Append a non-state record (link or stream bookkeeping) to the batch. */
static void append_kv(roo__batch *b, uint16_t kind, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    uint16_t h16[4] = { 0, 0, (uint16_t)klen, kind };
    uint32_t v32 = (uint32_t)vlen;
    uint8_t *p = roo__buf_reserve(&b->recs, ROO__REC_HDR + klen + vlen);

    memcpy(p, h16, 8);
    memcpy(p + 8, &v32, 4);
    memcpy(p + ROO__REC_HDR, key, klen);
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
    uint8_t key[80], val[16];
    size_t nlen = strnlen(r->link_peer, sizeof(r->link_peer));

    memcpy(key, r->link_peer, nlen);
    roo__store_be32(key + nlen, sh->idx);
    roo__store_be64(val, r->link_incarnation);
    roo__store_be64(val + 8, r->link_seq);
    append_kv(b, ROO__REC_LINK, key, nlen + 4, val, sizeof(val));
    if (b->nacks == b->acks_cap) {
        b->acks_cap = b->acks_cap ? b->acks_cap * 2 : 8;
        b->acks = roo__xrealloc(b->acks, b->acks_cap * sizeof(*b->acks));
    }
    b->acks[b->nacks++] = (roo__link_ack){ r->worker, sh->idx, r->link_incarnation, r->link_seq };
}

static void process_route(roo__shard *sh, roo__route *r)
{
    const uint8_t *p = r->data.data, *end = p + r->data.len;

    while (p < end) {
        uint32_t si = roo__load_le32(p), len = roo__load_le32(p + 4);
        run_stage(sh, si, p + 8, len);
        p += 8 + ROO__ALIGN8(len);
    }
    if (r->link_seq)
        note_link_applied(sh, r);
    r->node.kind = ROO__Q_ROUTE_RETURN;
    roo__queue_push(r->from ? &r->from->inbox : &sh->eng->io_q, &r->node);
}

/* ---- partition tables ---- */

void roo__shard_set_routes(roo__shard *sh, roo__routes_msg *m)
{
    /* Buffers in flight keep their destination; later messages use the new table. */
    collect_remote(sh);
    flush_routes(sh);
    if (m->ndests > sh->route_cap) {
        sh->route_out = roo__xrealloc(sh->route_out, m->ndests * sizeof(*sh->route_out));
        for (uint32_t d = sh->route_cap; d < m->ndests; d++)
            sh->route_out[d] = NULL;
        sh->route_cap = m->ndests;
    }
    free(sh->part_dest);
    free(sh->dests);
    sh->partitions = m->partitions;
    sh->part_dest = m->part_dest;
    sh->dests = m->dests;
    sh->ndests = m->ndests;
    free(m);
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
            if (sh->stopping)
                close(m->fd);
            else
                conn_add(sh, m);
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
            sh->routes_inflight--;
            r->node.next = (roo__qnode *)sh->route_pool; /* node is the first member */
            sh->route_pool = r;
            break;
        }
        case ROO__Q_ROUTES:
            roo__shard_set_routes(sh, (roo__routes_msg *)n);
            break;
        case ROO__Q_STOP:
            sh->stopping = true;
            if (sh->nconns)
                roo__log_info("thread %u: closing %u source connection(s) for shutdown", sh->idx,
                              sh->nconns);
            while (sh->conns)
                conn_close(sh->conns, false);
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
    while (sh->route_in_head && sh->cur) {
        roo__route *r = (roo__route *)sh->route_in_head;
        sh->route_in_head = r->node.next;
        if (!sh->route_in_head)
            sh->route_in_tail = NULL;
        process_route(sh, r);
    }
    /*
     * Seal when there is a free batch to continue in (otherwise keep filling this one: a
     * bigger batch when commits lag is exactly the group commit we want), when it is full,
     * or when stopping.
     */
    if (sh->cur && !batch_empty(sh) && (sh->nfree > 0 || batch_full(sh) || sh->stopping))
        seal(sh);
    flush_routes(sh);

    want_pause =
        !sh->stopping && (!sh->cur || batch_full(sh) ||
                          sh->routes_inflight >= ROUTES_PER_DEST * (sh->ndests ? sh->ndests : 1));
    if (want_pause != sh->paused)
        set_paused(sh, want_pause);

    if (sh->stopping) {
        bool q = sh->nconns == 0 && sh->cur && batch_empty(sh) && sh->nfree + 1 == sh->nbatches &&
                 sh->routes_inflight == 0 && !sh->route_in_head;
        if (q != sh->reported_quiescent)
            report_status(sh, q);
    }
    return sh->route_in_head && sh->cur;
}

void *roo__shard_main(void *arg)
{
    roo__shard *sh = arg;
    int rc = roo__loop_run(sh->loop);

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
    sh->table = roo__table_create();
    sh->batch_seq = 1; /* 0 is the dirty mark of entries never saved */
    sh->cb_rl = (roo__ratelimit)ROO__RATELIMIT_INIT(10000, 5);
    sh->route_out = roo__xcalloc(e->nshards, sizeof(*sh->route_out));
    sh->route_cap = e->nshards;
    sh->ndests = 0;
    roo__buf_reserve(&sh->rbuf, READ_CHUNK + e->cfg.max_frame + 16);
    sh->nbatches = e->cfg.batches_per_shard;
    sh->all_batches = roo__xcalloc(sh->nbatches, sizeof(*sh->all_batches));
    for (unsigned i = 0; i < sh->nbatches; i++) {
        roo__batch *b = roo__xcalloc(1, sizeof(*b) + nsinks * sizeof(roo__buf));
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
    return 0;
}

static void free_batch(roo__batch *b, size_t nsinks)
{
    free(b->acks);
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
        conn_close(sh->conns, false);
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
    free(sh->part_dest);
    free(sh->dests);
    for (unsigned d = 0; sh->route_out && d < sh->route_cap; d++) {
        if (sh->route_out[d]) {
            roo__buf_finish(&sh->route_out[d]->data);
            free(sh->route_out[d]);
        }
    }
    free(sh->route_out);
    /* Messages still queued to us: batches are freed above, the rest here. */
    for (roo__qnode *n = roo__queue_take_all(&sh->inbox), *next; n; n = next) {
        next = n->next;
        if (n->kind == ROO__Q_BATCH)
            continue;
        if (n->kind == ROO__Q_ROUTE || n->kind == ROO__Q_ROUTE_RETURN)
            roo__buf_finish(&((roo__route *)n)->data);
        if (n->kind == ROO__Q_CONN)
            close(((roo__conn_msg *)n)->fd);
        free(n);
    }
    roo__table_destroy(sh->table, finish_entry, sh->eng);
    free(sh->dirty);
    roo__buf_finish(&sh->rbuf);
    roo__loop_destroy(sh->loop);
    roo__queue_finish(&sh->inbox);
}
