/* shard-int.h: what shard.c (a processing thread's loop), steps.c (its pipeline steps),
 * batch.c (its batches), source.c (its source connections) and partitions.c share.
 * Everything here runs on the shard's own thread. */
#ifndef ROO_SHARD_INT_H
#define ROO_SHARD_INT_H

#include "engine/engine-int.h"

/* One read from a source connection: big, so that the hot path sees many frames per call. */
#define ROO__READ_CHUNK (512u * 1024u)

/* Has the client said it speaks the resumable protocol (docs/source-protocol.md)? */
typedef enum conn_kind {
    CONN_UNKNOWN, /* nothing read yet: it may start with the resumable magic */
    CONN_PLAIN,
    CONN_RESUMABLE,
    CONN_ASKING, /* a hello waits for the keeper of its stream's read position */
} conn_kind;

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
    /* resumable connections */
    conn_kind kind;
    bool resumable;
    char stream_name[ROO__STREAM_NAME_MAX + 1];
    uint64_t stream;      /* XXH3 of the name, never 0 */
    uint64_t next_offset; /* offset of the next frame to read */
    uint64_t acked;       /* acknowledged to the client */
    bool claimed;         /* holds its stream in the registry (streams.h) until closed */
    uint64_t ingress;     /* read position last put in a batch (an ingress record) */
    bool ack_owed;        /* an acknowledgement could not be written yet */
    uint64_t id;          /* unique on its thread, for answers that may outlive it */
    /* Per sealed batch: frames below `offset` were read by the end of batch `batch_seq`. */
    ROO__RING(struct conn_mark {
        uint64_t batch_seq;
        uint64_t offset;
    })
    marks;
    roo__buf wbuf;
};

/* ---- steps.c ---- */

/* Run stage si on a message (timed when sh->timing). */
void roo__shard_run(roo__shard *sh, uint32_t si, const void *msg, size_t len);
/* The step of emitters made while a sampled message runs: times stage out->stage. */
int roo__shard_step_timed(roo_emitter *out, const void *msg, size_t len);

/* An emitter that runs stage si's own step. */
static inline roo_emitter roo__shard_emitter_untimed(roo__shard *sh, uint32_t si)
{
    return (
        roo_emitter){ .step = sh->stages[si].step, .sh = sh, .st = &sh->stages[si], .stage = si };
}

#define ROO__MANY_MAX 256 /* messages per call of a `_many` callback (steps.c) */

/* Messages gathered for a stage's `_many` callback (steps.c): a state step's, with their
 * state objects, entries and answers, or a sink's. One per stage: while a stage's callback
 * runs, a full queue downstream drains the later stages, whose loops gather in their own. */
typedef struct roo__pending {
    const void *msgs[ROO__MANY_MAX];
    size_t lens[ROO__MANY_MAX];
    void *states[ROO__MANY_MAX];
    roo__entry *entries[ROO__MANY_MAX];
    int results[ROO__MANY_MAX]; /* ROO_SAVE between calls (the answer a callback leaves) */
} roo__pending;

/* A read's frames stage by stage (steps.c): an emitter that queues for stage si, and the
 * run of every queued message of stages si and after, in order. Drain before anything
 * else runs a step of this thread, so each stage keeps its messages' order. */
roo_emitter roo__shard_queue_emitter(roo__shard *sh, uint32_t si);
void roo__shard_drain(roo__shard *sh, uint32_t si);
/* Queue n messages of len bytes, stride bytes apart from msgs, for stage si (a peer's run). */
void roo__shard_enqueue(roo__shard *sh, uint32_t si, const void *msgs, size_t len, size_t stride,
                        size_t n);
/* Thread rule: sh's own thread. The route buffer holding msgs is the caller's, writable. */
void roo__shard_run_in_place(roo__shard *sh, uint32_t si, uint8_t *msgs, size_t len, size_t n);

/* An emitter to stage si: its step, or the timed one while a sampled message runs. */
static inline roo_emitter roo__shard_emitter(roo__shard *sh, uint32_t si)
{
    roo_emitter em = roo__shard_emitter_untimed(sh, si);

    if (ROO__UNLIKELY(sh->timing))
        em.step = roo__shard_step_timed;
    return em;
}

/* The batch being filled holds nothing to commit or send. */
bool roo__shard_batch_empty(const roo__shard *sh);
/* Seal the current batch: hand it to the committer (the caller checked it is not empty). */
void roo__shard_seal(roo__shard *sh);
/* Send the route buffers being filled to their threads; collect those for other workers. */
void roo__shard_flush_routes(roo__shard *sh);
void roo__shard_collect_remote(roo__shard *sh);
/* A state entry changed: save it with the current batch (and note it for a pre-copy). */
void roo__shard_mark_dirty(roo__shard *sh, roo__entry *e);
void roo__shard_track_note(roo__shard *sh, roo__entry *e);

/* ---- partitions.c ---- */

/* (roo__shard_set_routes, a new partition table, is declared in engine-int.h.) */
/* Pre-copy: start noting changed keys of the moving partitions (parts NULL: stop). */
void roo__shard_track_start(roo__shard *sh, roo__track_msg *m);
/* Transfer: hand the keys noted to io, and stop noting. */
void roo__shard_track_dump(roo__shard *sh, uint64_t epoch);
/* A batch committed: report noting started / imports committed once their batches are. */
void roo__shard_track_check(roo__shard *sh);
void roo__shard_imports_committed(roo__shard *sh);
/* Apply a piece of a partition moving here; record the partitions that moved away. */
void roo__shard_apply_import(roo__shard *sh, roo__import_msg *m);
void roo__shard_record_drops(roo__shard *sh);

/* Queue a message for another thread or worker (dest indexes the routing table's dests). */
void roo__shard_route(roo__shard *sh, unsigned dest, uint32_t si, const void *msg, size_t len,
                      const roo__msg_id *id);

/* A callback failed on a processing thread: count it for the step, log (rate-limited). */
void roo__shard_callback_error(roo__shard *sh, const roo__stage *st, const char *what, int rc);

/* host.c: message ops and thread hooks (host.h) on a processing thread. */
/* A packed message's record starts with its partition (u16 LE, then 6 zero bytes), so an
 * aborted move can re-route it without the host: the key is inside the packed bytes. */
#define ROO__PACKED_PREFIX 8
void roo__shard_route_packed(roo__shard *sh, const roo__stage *st, unsigned dest, uint32_t si,
                             const void *msg, size_t len, const roo__msg_id *id, uint16_t part);
void roo__shard_unpack_run(roo__shard *sh, const roo__stage *st, uint32_t si, const void *msg,
                           size_t len);
void roo__shard_host_sleep(roo__loop *loop, bool asleep, void *data);

/* Route a state step's message: as it is, or packed when the pipeline's messages are a
 * host's handles (host.h). */
static inline __attribute__((always_inline)) void
roo__shard_route_msg(roo__shard *sh, const roo__stage *st, unsigned dest, uint32_t si,
                     const void *msg, size_t len, const roo__msg_id *id, uint16_t part)
{
    if (ROO__UNLIKELY(st->wire != NULL))
        roo__shard_route_packed(sh, st, dest, si, msg, len, id, part);
    else
        roo__shard_route(sh, dest, si, msg, len, id);
}

/* batch.c: a committed batch's note (its applied routes are durable), and a batch back from
 * the sinks (reset, then current or free). */
void roo__shard_batch_committed(roo__shard *sh, struct roo__commit_note *note);
void roo__shard_batch_returned(roo__shard *sh, roo__batch *b);
/* Append a non-state record (link or stream bookkeeping) to the batch. */
void roo__shard_append_kv(roo__batch *b, uint16_t kind, const uint8_t *key, size_t klen,
                          const uint8_t *val, size_t vlen);
/* The current batch is full: seal it before reading more. */
bool roo__shard_batch_full(const roo__shard *sh);
/* A move's hold: report once every batch sealed before it is durable. */
void roo__shard_hold_check(roo__shard *sh);
/* A held route buffer of an aborted move, back from io: re-routed once all of them are. */
void roo__shard_held_back(roo__shard *sh, roo__route *r);
/* At the thread's end: what an abort left (held buffers back, tables waiting). */
void roo__shard_moves_finish(roo__shard *sh);

/* Records encoded into the batch so far, for all its sinks. */
static inline uint64_t roo__batch_records(const roo__batch *b, size_t nsinks)
{
    uint64_t n = 0;

    for (size_t i = 0; i < nsinks; i++)
        n += b->sink_nout[i];
    return n;
}

/*
 * A read (or a route buffer) starts: output records until roo__shard_lat_close() count
 * from read_ns in the end-to-end latency, and the read's frames from it in read_to_sealed
 * (shard.c). Nothing is done per record: the records are the batch's count's growth.
 */
static inline void roo__shard_lat_open(roo__shard *sh, int64_t read_ns, uint32_t pipeline)
{
    roo__batch *b = sh->cur;

    sh->lat_read_ns = read_ns;
    sh->lat_pipeline = pipeline;
    sh->lat_base = roo__batch_records(b, sh->eng->app->nsinks);
    if (b->nlat < ROO__LAT_ENTS) {
        b->lat[b->nlat] = (roo__lat_ent){ read_ns, pipeline, 0, 0 };
        sh->lat_cur = b->nlat++;
    } else {
        sh->lat_cur = b->nlat - 1; /* full: the last entry takes the rest */
    }
}

/* The read (route buffer) is done: frames read here in it. */
static inline void roo__shard_lat_close(roo__shard *sh, uint64_t frames)
{
    roo__batch *b = sh->cur;
    roo__lat_ent *ent = &b->lat[sh->lat_cur];

    ent->frames += (uint32_t)frames;
    ent->records += roo__batch_records(b, sh->eng->app->nsinks) - sh->lat_base;
}

/* ---- source.c ---- */

/* The keeper of a stream's read position answered (or could not be asked): welcome or
 * refuse the connection that waits for it. Frees the ask. */
void roo__sources_stream_answer(roo__shard *sh, roo__stream_ask *ask);

/* This thread keeps stream's read position (it owns the stream's partition): frames below
 * `offset` were read, here or on another worker (ROO__ROUTE_INGRESS). */
void roo__shard_apply_ingress(roo__shard *sh, uint64_t stream, uint64_t offset);

/* A connection io accepted for us (ROO__Q_CONN). */
void roo__source_add(roo__shard *sh, const roo__conn_msg *m);
/* Close a connection (log_it: with its "closed after N frames" line). */
void roo__source_close(roo__source_conn *c, bool log_it);
/* Close it with a reset: this worker will not read its bytes to the end. */
void roo__source_abort(roo__source_conn *c);
/* A connection io handed us is gone (io counts the open ones for --max-connections). */
void roo__source_gone(roo__shard *sh, uint32_t pipeline);
/* Stop or resume reading every connection (back-pressure). */
void roo__sources_pause(roo__shard *sh, bool paused);
/* At a seal (now_s: monotonic seconds): resumable connections' read positions and
 * acknowledgement marks. */
void roo__sources_seal(roo__shard *sh, roo__batch *b, int64_t now_s);
/* Batches became durable: acknowledge what each resumable connection's frames reached. */
void roo__sources_ack(roo__shard *sh);
/* --stream-max-idle: start the timer; forget idle streams (in the current batch). */
void roo__sources_expire_start(roo__shard *sh);
void roo__sources_expire(roo__shard *sh);
/* Batch seq became durable: log the streams forgotten in it or before. */
void roo__sources_expired_committed(roo__shard *sh, uint64_t seq);

#endif /* ROO_SHARD_INT_H */
