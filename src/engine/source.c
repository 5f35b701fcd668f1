/* source.c: a processing thread's source connections: reading and framing, the resumable
 * protocol's hello, welcome and acknowledgements, and forgetting idle streams.
 *
 * Runs on the shard's own thread (shard.c owns the loop, steps.c the pipeline, batch.c the
 * batches; they share shard-int.h). A connection belongs to the thread io handed it to, for its life.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/shard-int.h"
#include "wire/wire.h"

/* A source connection io handed us is gone: io counts the open ones (--max-connections). */
void roo__source_gone(roo__shard *sh, uint32_t pipeline)
{
    atomic_fetch_add_explicit(&sh->eng->source_closed[pipeline], 1, memory_order_relaxed);
}

void roo__source_close(roo__source_conn *c, bool log_it)
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
    roo__source_gone(sh, c->pipeline->index);
    if (c->claimed)
        roo__streams_release(sh->eng->streams, c->stream, roo__now_ns() / 1000000000);
    roo__buf_finish(&c->partial);
    roo__buf_finish(&c->wbuf);
    roo__ring_free(&c->marks);
    free(c);
}

/*
 * Close a connection whose bytes this worker will not take (a bad frame or hello, a stop):
 * with a reset, not a FIN, so that a plain client, which has no other channel, learns that
 * what it sent was not all read (roo-sender then exits 1).
 */
void roo__source_abort(roo__source_conn *c)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    (void)setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    roo__source_close(c, false);
}

/* The decoder rejected the frame after `frames` good ones in this read: count and log it. */
static __attribute__((noinline)) int rejected(roo__source_conn *c, roo__source_counts *counts,
                                              uint64_t frames, size_t payload_len, int drc)
{
    atomic_fetch_add_explicit(&counts->rejected, 1, memory_order_relaxed);
    roo__log_warn("source '%s': connection from %s: decoder rejected frame %llu "
                  "(%zu-byte payload): %s; closing the connection",
                  c->pipeline->name, c->peer, (unsigned long long)(c->frames + frames + 1),
                  payload_len, roo_strerror(drc));
    return drc;
}

/*
 * The common case with the source's decode_many: a read's frames (u32 BE lengths, no
 * identities) up to the next sampled one, FRAMES_MAX at a time, into the first stage's
 * queue (emq). Returns true when the read is done (*ret_rc: the framer's last answer, or
 * the rejection), false at the sampled frame. *off_io and *frames_io move past the frames
 * decoded.
 */
#define FRAMES_MAX 256
static bool fast_many(roo__source_conn *c, roo__source_counts *counts, const uint8_t *buf,
                      size_t len, uint64_t sample_at, roo_emitter *emq, size_t *off_io,
                      uint64_t *frames_io, int *ret_rc)
{
    roo_decode_many_fn decode_many = c->pipeline->source.decode_many;
    void *ctx = c->pipeline->source.ctx;
    const size_t max_frame = c->framer.max_frame;
    uint64_t frames = *frames_io;
    size_t off = *off_io;
    roo_frame frs[FRAMES_MAX];
    roo__frame fr;

    for (;;) {
        int rc = ROO__FRAME_OK;
        size_t k = 0;
        /* frames before the next sampled one (sample_at >= frames: it stops this loop) */
        const size_t lim = (size_t)ROO__MIN((uint64_t)FRAMES_MAX, sample_at - frames);

        while (k < lim) {
            rc = roo__framer_next_be32(max_frame, buf + off, len - off, &fr);
            if (rc != ROO__FRAME_OK)
                break;
            frs[k].payload = buf + off + fr.payload_off;
            frs[k].len = fr.payload_len;
            off += fr.frame_len;
            k++;
            /* the frames of the same length after it, at once (a fifth of the thread's time
             * went to reading them one by one) */
            size_t j = roo__framer_run_be32(buf + off, len - off, fr.payload_len, lim - k, frs + k);
            off += j * fr.frame_len;
            k += j;
        }
        if (k > 0) {
            size_t done = decode_many(frs, k, emq, ctx);
            if (ROO__UNLIKELY(done < k)) { /* frame `done` is malformed: stop before it */
                *off_io = (size_t)(frs[done].payload - buf) - 4;
                *frames_io = frames + done;
                *ret_rc = rejected(c, counts, frames + done, frs[done].len, ROO_EDECODE);
                return true;
            }
            frames += k;
        }
        *off_io = off;
        *frames_io = frames;
        if (rc != ROO__FRAME_OK) {
            *ret_rc = rc;
            return true;
        }
        if (frames == sample_at)
            return false;
    }
}

/* Run every whole frame in buf through the pipeline; *ret_used gets the bytes consumed. */
static int conn_process(roo__source_conn *c, const uint8_t *buf, size_t len, size_t *ret_used)
{
    roo__shard *sh = c->sh;
    roo__source_counts *counts = &sh->source_counts[c->pipeline->index];
    roo_emitter em = roo__shard_emitter(sh, c->first_stage), em_timed = em;
    roo_decode_fn decode = c->pipeline->source.decode;
    void *ctx = c->pipeline->source.ctx;
    uint64_t frames = 0, sample_at = sh->sample_left;
    const bool resumable = c->resumable;
    /* A read's frames run stage by stage (steps.c) when its messages are plain bytes. */
    const bool queued = !sh->stages[c->first_stage].wire;
    roo_emitter emq = roo__shard_queue_emitter(sh, c->first_stage);
    /* In registers for the whole read: the decode callback could, for all the compiler
     * knows, change c->framer, which would reload its fields for every frame. */
    const bool be32 = c->framer.framing == ROO_FRAMING_LENGTH && c->framer.header_len == 4 &&
                      !c->framer.little_endian;
    const size_t max_frame = c->framer.max_frame;
    size_t off = 0;
    roo__frame fr;
    int rc;

    em_timed.step = roo__shard_step_timed; /* for the sampled frame */
    /* One clock read per read, for the latency histograms. */
    roo__shard_lat_open(sh, roo__wall_ns(), c->pipeline->index);
    for (;;) {
        bool timed;
        int drc;
        if (ROO__LIKELY(be32 && !resumable && queued && c->pipeline->source.decode_many)) {
            if (fast_many(c, counts, buf, len, sample_at, &emq, &off, &frames, &rc))
                goto out;
            roo__shard_drain(sh, c->first_stage); /* before a frame runs on its own */
        } else if (ROO__LIKELY(be32 && !resumable)) {
            /* The common case, up to the next sampled frame: u32 BE lengths, no identities. */
            roo_emitter *fast = queued ? &emq : &em;
            while (frames != sample_at) {
                rc = roo__framer_next_be32(max_frame, buf + off, len - off, &fr);
                if (rc != ROO__FRAME_OK)
                    goto out;
                drc = decode(buf + off + fr.payload_off, fr.payload_len, fast, ctx);
                if (ROO__UNLIKELY(drc < 0)) {
                    rc = rejected(c, counts, frames, fr.payload_len, drc);
                    goto out;
                }
                off += fr.frame_len;
                frames++;
            }
            roo__shard_drain(sh, c->first_stage); /* before a frame runs on its own */
        }
        timed = frames == sample_at;
        rc = ROO__LIKELY(be32) ? roo__framer_next_be32(max_frame, buf + off, len - off, &fr)
                               : roo__framer_next(&c->framer, buf + off, len - off, &fr);
        if (rc != ROO__FRAME_OK)
            break;
        if (ROO__UNLIKELY(timed)) {
            sh->timing = true; /* this frame's steps are timed (metrics) */
            sample_at += ROO__COMPUTE_SAMPLE_EVERY;
        }
        if (ROO__UNLIKELY(resumable)) {
            /* Messages of this frame get its identity, numbered as they reach state. */
            sh->id = (roo__msg_id){ c->stream, c->next_offset, 0 };
            sh->id_fixed = false;
        }
        drc = decode(buf + off + fr.payload_off, fr.payload_len, timed ? &em_timed : &em, ctx);
        if (ROO__UNLIKELY(timed))
            sh->timing = false;
        if (ROO__UNLIKELY(resumable)) {
            sh->id.stream = 0;
            if (drc >= 0)
                c->next_offset++;
        }
        if (ROO__UNLIKELY(drc < 0)) {
            rc = rejected(c, counts, frames, fr.payload_len, drc);
            break;
        }
        off += fr.frame_len;
        frames++;
    }
out:
    roo__shard_drain(sh, c->first_stage); /* frames decoded before an error are kept */
    /* A frame that ended the loop with an error may have been the sampled one: then the
     * next read times its first. */
    sh->sample_left = sample_at > frames ? sample_at - frames : 0;
    c->frames += frames;
    sh->cur->nin += frames;
    roo__shard_lat_close(sh, frames);
    /* Once per read, not per frame: the metrics' only cost on this path. */
    atomic_fetch_add_explicit(&counts->frames, frames, memory_order_relaxed);
    if (rc == ROO_EFRAMESIZE) {
        atomic_fetch_add_explicit(&counts->oversize, 1, memory_order_relaxed);
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
            roo__source_close(c, false);
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
    roo__source_close(c, true);
}

/* ---- resumable connections (docs/source-protocol.md) ---- */

/* Write a reply now; a client that does not read its acknowledgements only loses those. */
static int conn_reply(roo__source_conn *c, roo__source_reply_kind kind, uint64_t value,
                      const char *text)
{
    ssize_t n;

    c->wbuf.len = 0;
    roo__wire_source_reply_encode(kind, value, text, &c->wbuf);
    n = send(c->io.fd, c->wbuf.data, c->wbuf.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)c->wbuf.len)
        return 0;
    return n < 0 && errno != EAGAIN ? -errno : -EAGAIN;
}

/*
 * A resumable client reconnects after any break, and its stream stays claimed while this
 * end believes the old connection open: keepalives find a peer that vanished (host down,
 * network cut) within about 30 s instead of the kernel's two hours.
 */
static void conn_keepalive(roo__source_conn *c)
{
    int on = 1, idle = 10, intvl = 5, cnt = 4;

    (void)setsockopt(c->io.fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(c->io.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(c->io.fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(c->io.fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void conn_refuse(roo__source_conn *c, const char *why)
{
    roo__log_warn("source '%s': connection from %s: hello refused: %s; closing the connection",
                  c->pipeline->name, c->peer, why);
    conn_reply(c, ROO__SRC_REFUSED, 0, why);
}

/*
 * In a cluster, the other worker that keeps the stream's read position (streams.h), or
 * UINT32_MAX if this worker keeps it (then what it knows is all there is to know).
 */
static uint32_t stream_keeper(const roo__shard *sh, uint64_t stream)
{
    unsigned d;

    if (sh->eng->cfg.mode == ROO__STANDALONE)
        return UINT32_MAX;
    d = sh->part_dest[roo__partition_of(stream, sh->partitions)];
    return d < sh->eng->nshards ? UINT32_MAX : sh->dests[d].worker;
}

/*
 * Take the stream for this connection, or refuse the hello: another connection of the
 * stream is open, or next_offset is past what is known to have been read (here, or by
 * `known`: the keeper's answer), so the frames it claims applied never were. Returns 0,
 * 1 (the keeper was asked: the connection waits for roo__sources_stream_answer) or < 0.
 */
static int conn_claim(roo__source_conn *c, uint64_t next, uint64_t known, bool may_ask)
{
    roo__shard *sh = c->sh;
    char other[64] = "", why[ROO__STREAM_NAME_MAX + 160];
    uint64_t stored = 0;
    uint32_t keeper;
    roo__stream_refusal r;

    r = roo__streams_claim(sh->eng->streams, c->stream, next, c->peer, known,
                           roo__now_ns() / 1000000000, &stored, other, sizeof(other));
    if (r == ROO__STREAM_OK) {
        c->claimed = true;
        return 0;
    }
    if (r == ROO__STREAM_AHEAD && may_ask &&
        (keeper = stream_keeper(sh, c->stream)) != UINT32_MAX) {
        roo__stream_ask *a = roo__xcalloc(1, sizeof(*a));
        a->node.kind = ROO__Q_STREAM_ASK;
        a->shard = sh->idx;
        a->conn_id = c->id;
        a->stream = c->stream;
        a->next_offset = next;
        a->worker = keeper;
        roo__queue_push(&sh->eng->io_q, &a->node);
        return 1;
    }
    if (r == ROO__STREAM_LIVE)
        snprintf(why, sizeof(why), "stream '%s' is already connected (from %s)", c->stream_name,
                 other);
    else
        snprintf(why, sizeof(why),
                 "stream '%s' was read up to frame %llu, not %llu: frames the hello claims were "
                 "never read",
                 c->stream_name, (unsigned long long)stored, (unsigned long long)next);
    conn_refuse(c, why);
    return r == ROO__STREAM_LIVE ? -EBUSY : -ERANGE;
}

/* The stream is claimed: say welcome and read its frames from next on. */
static int conn_welcome(roo__source_conn *c, uint64_t next)
{
    int rc;

    c->kind = CONN_RESUMABLE;
    c->resumable = true;
    c->next_offset = c->acked = c->ingress = next;
    conn_keepalive(c);
    rc = conn_reply(c, ROO__SRC_WELCOME, next, NULL);
    if (rc < 0) {
        roo__log_warn("source '%s': connection from %s: cannot answer its hello: %s; closing "
                      "the connection",
                      c->pipeline->name, c->peer, roo_strerror(rc));
        return rc;
    }
    roo__log_info("source '%s': connection from %s continues stream '%s' at frame %llu",
                  c->pipeline->name, c->peer, c->stream_name, (unsigned long long)next);
    return 0;
}

/*
 * The first bytes of a connection: the resumable magic and a hello, or a plain stream.
 * Returns 1 (decided; *ret_skip = bytes of handshake to skip), 0 (need more) or < 0.
 */
static int conn_handshake(roo__source_conn *c, const uint8_t *buf, size_t have, size_t *ret_skip)
{
    uint64_t next;
    uint32_t hl;
    int rc;

    if (memcmp(buf, ROO__SOURCE_MAGIC, ROO__MIN(have, (size_t)ROO__SOURCE_MAGIC_LEN)) != 0) {
        c->kind = CONN_PLAIN;
        *ret_skip = 0;
        return 1;
    }
    if (have < ROO__SOURCE_MAGIC_LEN + 4)
        return 0;
    hl = roo__load_be32(buf + ROO__SOURCE_MAGIC_LEN);
    if (hl > ROO__SOURCE_FRAME_MAX) {
        roo__log_warn("source '%s': connection from %s: resumable hello of %u bytes is over "
                      "the limit of %u; closing the connection",
                      c->pipeline->name, c->peer, hl, ROO__SOURCE_FRAME_MAX);
        return ROO_EFRAMESIZE;
    }
    if (have < ROO__SOURCE_MAGIC_LEN + 4 + hl)
        return 0;
    rc = roo__wire_source_hello_decode(buf + ROO__SOURCE_MAGIC_LEN + 4, hl, c->stream_name,
                                       sizeof(c->stream_name), &next);
    if (rc < 0) {
        roo__log_warn("source '%s': connection from %s: malformed resumable hello; closing the "
                      "connection",
                      c->pipeline->name, c->peer);
        conn_reply(c, ROO__SRC_REFUSED, 0, "malformed hello");
        return rc;
    }
    c->stream = roo__key_hash(c->stream_name, strlen(c->stream_name)) | 1;
    *ret_skip = ROO__SOURCE_MAGIC_LEN + 4 + hl;
    rc = conn_claim(c, next, 0, true);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        c->kind = CONN_ASKING;
        return 2;
    }
    rc = conn_welcome(c, next);
    return rc < 0 ? rc : 1;
}

void roo__sources_stream_answer(roo__shard *sh, roo__stream_ask *a)
{
    roo__source_conn *c = sh->conns;
    char why[ROO__STREAM_NAME_MAX + ROO__LINK_NAME_MAX + 200];

    while (c && c->id != a->conn_id)
        c = c->next;
    if (!c || c->kind != CONN_ASKING) {
        free(a); /* closed meanwhile (a stop) */
        return;
    }
    if (!a->reached) {
        snprintf(why, sizeof(why),
                 "stream '%s' continues at frame %llu, more than this worker read of it, and "
                 "the worker that keeps its read position ('%s') cannot be asked now: try again",
                 c->stream_name, (unsigned long long)a->next_offset, a->keeper);
        conn_refuse(c, why);
        free(a);
        roo__source_abort(c);
        return;
    }
    roo__log_info("source '%s': connection from %s: worker '%s', which keeps the read position "
                  "of stream '%s', says it was read up to frame %llu",
                  c->pipeline->name, c->peer, a->keeper, c->stream_name,
                  (unsigned long long)a->position);
    if (conn_claim(c, a->next_offset, a->position, false) < 0 ||
        conn_welcome(c, a->next_offset) < 0) {
        free(a);
        roo__source_abort(c);
        return;
    }
    free(a);
    if (!sh->paused) {
        int rc = roo__io_start(sh->loop, &c->io, c->io.fd, EPOLLIN | EPOLLRDHUP);
        if (rc < 0) {
            roo__log_error("source '%s': cannot resume connection from %s: %s", c->pipeline->name,
                           c->peer, roo_strerror(rc));
            roo__source_abort(c);
        }
    }
}

/* At a seal: frames below next_offset were read by the end of batch batch_seq. */
static void conn_mark(roo__source_conn *c, uint64_t batch_seq)
{
    uint64_t last = c->marks.len ? roo__ring_last(&c->marks).offset : c->acked;

    if (c->next_offset <= last)
        return;
    roo__ring_push(&c->marks, (struct conn_mark){ batch_seq, c->next_offset });
}

/* Batches became durable: acknowledge what each resumable connection's frames reached. */
void roo__sources_ack(roo__shard *sh)
{
    bool moved = roo__dur_advance(&sh->dur);

    if (moved && sh->hold_epoch && !sh->hold_reported)
        roo__shard_hold_check(sh);

    sh->acks_owed = false;
    for (roo__source_conn *c = sh->conns; c; c = c->next) {
        if (!c->resumable)
            continue;
        while (moved && c->marks.len &&
               roo__ring_at(&c->marks, 0).batch_seq <= sh->dur.durable_seq) {
            c->acked = roo__ring_at(&c->marks, 0).offset;
            roo__ring_pop(&c->marks);
            c->ack_owed = true;
        }
        if (c->ack_owed) {
            int rc = conn_reply(c, ROO__SRC_ACK, c->acked, NULL);
            c->ack_owed = rc == -EAGAIN; /* try again on the next wakeup */
            sh->acks_owed |= c->ack_owed;
        }
    }
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
    if (!sh->cur || roo__shard_batch_full(sh))
        return;
    /* Messages held during a partition move come before anything read after it. */
    if (ROO__UNLIKELY(sh->routes_first) && sh->route_in_head)
        return;
    if (have)
        memcpy(buf, c->partial.data, have);
    n = read(io->fd, buf + have, ROO__READ_CHUNK);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        roo__log_warn("source '%s': connection from %s: read failed: %s; closing it",
                      c->pipeline->name, c->peer, strerror(errno));
        roo__source_close(c, true);
        return;
    }
    if (n == 0) {
        conn_eof(c, buf, have);
        return;
    }
    c->bytes += (uint64_t)n;
    atomic_fetch_add_explicit(&sh->source_counts[c->pipeline->index].bytes, (uint64_t)n,
                              memory_order_relaxed);
    have += (size_t)n;
    if (ROO__UNLIKELY(c->kind == CONN_UNKNOWN)) {
        size_t skip = 0;
        int hrc = conn_handshake(c, buf, have, &skip);
        if (hrc < 0) {
            roo__source_abort(c);
            return;
        }
        if (hrc == 0) {
            /* Not all of the hello yet: keep it for the next read. */
            c->partial.len = 0;
            roo__buf_append(&c->partial, buf, have);
            return;
        }
        buf += skip;
        have -= skip;
        if (hrc == 2) {
            /* The keeper is asked: read nothing more until it answers. */
            c->partial.len = 0;
            roo__buf_append(&c->partial, buf, have);
            roo__io_stop(sh->loop, &c->io);
            return;
        }
    }
    if (conn_process(c, buf, have, &used) < 0) {
        roo__source_abort(c);
        return;
    }
    c->partial.len = 0;
    if (used < have)
        roo__buf_append(&c->partial, buf + used, have - used);
}

void roo__source_add(roo__shard *sh, const roo__conn_msg *m)
{
    roo__source_conn *c = roo__xcalloc(1, sizeof(*c));
    const roo_pipeline *p = sh->eng->app->pipelines[m->pipeline];
    int rc;

    c->sh = sh;
    c->id = ++sh->conn_ids;
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
            roo__source_gone(sh, m->pipeline);
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

void roo__sources_pause(roo__shard *sh, bool paused)
{
    sh->paused = paused;
    for (roo__source_conn *c = sh->conns; c; c = c->next) {
        if (paused) {
            roo__io_stop(sh->loop, &c->io);
        } else if (c->kind != CONN_ASKING) {
            int rc = roo__io_start(sh->loop, &c->io, c->io.fd, EPOLLIN | EPOLLRDHUP);
            if (rc < 0)
                roo__log_error("source '%s': cannot resume connection from %s: %s",
                               c->pipeline->name, c->peer, roo_strerror(rc));
        }
    }
}

void roo__shard_apply_ingress(roo__shard *sh, uint64_t stream, uint64_t offset)
{
    uint16_t part = roo__partition_of(stream, sh->partitions);

    /* The mark of (stream with bit 0 clear, partition): stream ids are odd, so it is no
     * message's mark; it moves with the partition and ages with the stream's marks. */
    (void)roo__dedup_check(sh->dedup, stream & ~(uint64_t)1, part, offset, 0);
    roo__streams_advance(sh->eng->streams, stream | 1, offset, roo__now_ns() / 1000000000);
}

/*
 * A stream's read position goes in the batch that read its frames (see streams.h); in a
 * cluster also, in the same batch, to the thread that keeps it (the owner of the stream's
 * partition), so that a hello on any worker can be checked after this one is gone.
 */
static void conn_ingress(roo__shard *sh, roo__batch *b, roo__source_conn *c, int64_t now_s)
{
    uint8_t key[ROO__STREAM_KEY_LEN], val[ROO__STREAM_VAL_LEN];

    if (c->next_offset <= c->ingress)
        return;
    c->ingress = c->next_offset;
    roo__key_stream(key, val, &(roo__stream_mark){ c->stream, ROO__STREAM_INGRESS, c->ingress, 0 });
    roo__shard_append_kv(b, ROO__REC_STREAM, key, sizeof(key), val, sizeof(val));
    roo__streams_advance(sh->eng->streams, c->stream, c->ingress, now_s);
    if (sh->eng->cfg.mode != ROO__STANDALONE) {
        unsigned keeper = sh->part_dest[roo__partition_of(c->stream, sh->partitions)];
        if (keeper == sh->idx) {
            roo__shard_apply_ingress(sh, c->stream, c->ingress);
        } else {
            uint8_t msg[ROO__ROUTE_INGRESS_LEN];
            roo__store_le64(msg, c->stream);
            roo__store_le64(msg + 8, c->ingress);
            roo__shard_route(sh, keeper, ROO__ROUTE_INGRESS, msg, sizeof(msg), NULL);
        }
    }
}

/* ---- forgetting idle streams (--stream-max-idle) ---- */

static int64_t expire_interval_ms(const roo__engine *e)
{
    return ROO__MAX(1000, ROO__MIN(60000, (int64_t)e->cfg.stream_max_idle_s * 250));
}

static void expire_timer_cb(roo__loop *loop, roo__timer *t)
{
    roo__shard *sh = t->data;

    sh->expire_due = true; /* the prepare hook does it, in a batch */
    roo__timer_start(loop, t, expire_interval_ms(sh->eng));
}

static void append_stream_del(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                              size_t vlen)
{
    (void)val, (void)vlen;
    roo__shard_append_kv(arg, ROO__REC_STREAM_DEL, key, klen, NULL, 0);
}

static void forget_read_position(void *arg, uint64_t stream)
{
    uint8_t key[ROO__STREAM_KEY_LEN], val[ROO__STREAM_VAL_LEN];

    roo__key_stream(key, val, &(roo__stream_mark){ stream, ROO__STREAM_INGRESS, 0, 0 });
    roo__shard_append_kv(arg, ROO__REC_STREAM_DEL, key, sizeof(key), NULL, 0);
}

/*
 * Each thread forgets the marks of streams it has not seen for the age; thread 0 also the
 * read positions of streams no connection has read for it. Deleted in the current batch.
 */
void roo__sources_expire(roo__shard *sh)
{
    int64_t now_s = roo__now_ns() / 1000000000, age = sh->eng->cfg.stream_max_idle_s;
    size_t marks, positions = 0;

    sh->expire_due = false;
    marks = roo__dedup_expire(sh->dedup, now_s - age, append_stream_del, sh->cur);
    if (sh->idx == 0)
        positions =
            roo__streams_expire(sh->eng->streams, now_s, age, forget_read_position, sh->cur);
    if (marks || positions) {
        sh->forgot_marks += marks;
        sh->forgot_positions += positions;
        sh->forgot_seq = sh->batch_seq; /* the batch being filled is sealed with it */
    }
}

/*
 * The log line comes once the deletes are durable, not when they are appended: whoever reads
 * it may kill the worker and expect the streams to stay forgotten.
 */
void roo__sources_expired_committed(roo__shard *sh, uint64_t seq)
{
    size_t marks = sh->forgot_marks, positions = sh->forgot_positions;

    if ((!marks && !positions) || seq < sh->forgot_seq)
        return;
    roo__log_info("thread %u: forgot %zu resumable stream(s) idle for more than %u s "
                  "(%zu read position(s), the marks of %zu)",
                  sh->idx, ROO__MAX(marks, positions), sh->eng->cfg.stream_max_idle_s, positions,
                  marks);
    sh->forgot_marks = sh->forgot_positions = 0;
}

/* At a seal: each resumable connection's read position and acknowledgement mark. */
void roo__sources_seal(roo__shard *sh, roo__batch *b, int64_t now_s)
{
    for (roo__source_conn *c = sh->conns; c; c = c->next)
        if (c->resumable) {
            conn_ingress(sh, b, c, now_s);
            conn_mark(c, sh->batch_seq);
        }
}

void roo__sources_expire_start(roo__shard *sh)
{
    if (!sh->eng->cfg.stream_max_idle_s)
        return;
    sh->expire_timer.cb = expire_timer_cb;
    sh->expire_timer.data = sh;
    roo__timer_start(sh->loop, &sh->expire_timer, expire_interval_ms(sh->eng));
}
