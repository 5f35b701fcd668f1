/* engine-int.h: the engine's internal structures: application graph, batches, threads.
 *
 * DESIGN
 *
 * Threads (one event loop or queue each; nothing shared without a named lock):
 *
 *   main        parses flags, builds the app, recovers state, starts the others, then
 *               waits for SIGTERM/SIGINT and drives the shutdown.
 *   shard i     (--threads of them) owns the source connections handed to it, the state
 *               of its partitions (partition p belongs to shard p % threads) and a pool
 *               of batches. It reads big chunks, runs every frame through the pipeline to
 *               completion (decode -> steps -> encode into the current batch), and seals
 *               the batch in its loop's prepare hook, i.e. once per wakeup, not per event.
 *   committer   takes every sealed batch queued (from all shards) and writes their state
 *               records in ONE LMDB write transaction (group commit), then writes their
 *               output to the sinks that are idle, and passes the rest on to io.
 *   io          owns the --in listeners and the --out sink connections. It hands accepted
 *               connections to shards, (re)connects the sinks, resends after a reconnect,
 *               and writes the output the committer left it, in commit order.
 *
 * Life of one batch:   shard --(sealed)--> committer --(committed, written)--> shard
 *   or, when a sink is busy, down or resending:  ... committer --> io --(written)--> shard
 * Every hop is a roo__queue push; a push that finds the queue empty wakes the consumer.
 * Output never leaves the worker before the state it depends on is durable. Each sink's
 * output state is shared by committer and io under the sink's lock (sink.c).
 *
 * Back-pressure: a shard has `batches_per_shard` batches. When all are in flight (commits
 * slow, sink slow or down) and the current one is full, the shard stops reading its
 * sources, so TCP pushes back on the senders. Memory stays bounded by
 * threads * batches_per_shard * (batch_bytes + one read chunk of output).
 *
 * Figures for the outside (roo-ctl status, --metrics) are relaxed atomics that each thread
 * publishes per read, per seal or per sink write, never per message; their readers (the
 * cluster's status, snapshot.c on the metrics thread) take no lock and make no one wait.
 *
 * Ordering: a connection is read by one shard, in order; a key's partition belongs to one
 * shard; a shard's batches are committed and written in the order sealed; messages a
 * shard routes to another shard travel in one FIFO route buffer per destination. So the
 * outputs of one key, for messages from one connection, reach the sink in input order.
 */
#ifndef ROO_ENGINE_INT_H
#define ROO_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/buf.h"
#include "common/queue.h"
#include "common/ring.h"
#include "engine/engine.h"
#include "engine/host.h"
#include "engine/resume.h"
#include "engine/routes.h"
#include "engine/streams.h"
#include "loop/loop.h"
#include "net/framer.h"
#include "state/keys.h"
#include "state/store.h"

#define ROO__OUTLOG_SIZE ((uint64_t)64 << 20) /* the outbox log's ring, bytes */
#include "state/table.h"
#include "wire/wire.h"

/* ---- application graph (built by roo_app_* / roo_pipeline_*, read-only once running) ---- */

typedef enum roo__stage_kind {
    ROO__STAGE_STATELESS,
    ROO__STAGE_STATE,
    ROO__STAGE_SINK,
} roo__stage_kind;

/* Runs the stage an emitter leads to (steps.c's step of the stage's kind, or the test driver's,
 * or the timed one); roo_emit tail-calls it. */
typedef int (*roo__step_fn)(struct roo_emitter *out, const void *msg, size_t len);

typedef struct roo__stage {
    roo__stage_kind kind;
    roo__step_fn step; /* set by roo__shard_steps_init when an engine is created */
    uint32_t next;     /* index of the stage after this one (unused for sinks) */
    uint32_t pipeline; /* owning pipeline */
    char *name;
    void *ctx;
    roo_compute_fn compute;                       /* STATELESS */
    roo_state_compute_fn state_compute;           /* STATE */
    roo_state_compute_many_fn state_compute_many; /* STATE, optional */
    roo_key_fn key;                               /* STATE */
    const roo_state_type *state;                  /* STATE */
    uint16_t state_id;                            /* STATE: index into app->state_types */
    roo_encode_fn encode;                         /* SINK */
    roo_encode_many_fn encode_many;               /* SINK, optional */
    uint32_t sink_idx;                            /* SINK: index into --out */
    const roo__msg_ops *wire;                     /* the pipeline's message ops (host.h), or NULL */
} roo__stage;

struct roo_pipeline {
    roo_app *app;
    uint32_t index;
    char *name;
    roo_source source;
    uint32_t first_stage; /* UINT32_MAX until the first step is added */
    uint32_t last_stage;
    bool ended;
    roo__msg_ops msg_ops; /* host.h; set when msg_ops.pack is; stages point here */
};

struct roo_app {
    char *name;
    roo_pipeline **pipelines;
    size_t npipelines;
    roo__stage *stages;
    size_t nstages;
    const roo_state_type **state_types; /* distinct by name; index = state id */
    size_t nstate_types;
    size_t nsinks;
    roo__thread_hooks thread_hooks; /* host.h; enter is NULL when unset */
};

/* Check a finished application (every pipeline ends in a sink, ...); msg explains. */
int roo__app_validate(const roo_app *app, char *msg, size_t cap);

/* ---- batches ---- */

enum {
    ROO__Q_BATCH = 1,     /* a batch on its way through committer and io */
    ROO__Q_CONN,          /* io -> shard: a new source connection */
    ROO__Q_ROUTE,         /* shard -> shard: messages for the other shard's partitions */
    ROO__Q_ROUTE_RETURN,  /* shard -> shard: a processed route buffer going home */
    ROO__Q_STOP,          /* main -> io -> shards: stop reading sources, drain */
    ROO__Q_STATUS,        /* shard -> io: quiescent or busy again (while stopping) */
    ROO__Q_EXIT,          /* main -> everyone: leave the loop now */
    ROO__Q_ROUTES,        /* io -> shard: a new partition table (where each partition goes) */
    ROO__Q_META,          /* io -> committer -> io: write the identity record, then report */
    ROO__Q_ROUTE_DONE,    /* -> shard: a route buffer of one of its batches is committed there */
    ROO__Q_COMMITTED,     /* committer -> shard: this batch of yours is committed */
    ROO__Q_IMPORT,        /* io -> shard: a piece of a partition moving here (roo__import_msg) */
    ROO__Q_MIGRATION,     /* shard -> io: held (fence passed) or imported (roo__mig_note) */
    ROO__Q_TRACK,         /* io -> shard: note changes to these partitions (roo__track_msg) */
    ROO__Q_TRACK_DUMP,    /* io -> shard: hand over the keys noted, stop noting */
    ROO__Q_STREAM_ASK,    /* shard -> io: how far has another worker read this stream? */
    ROO__Q_STREAM_ANSWER, /* io -> shard: ... the answer (the same roo__stream_ask) */
    ROO__Q_HELD_BACK,     /* io -> shard: a held route buffer of an aborted move, to re-route */
    ROO__Q_SINK_KICK,     /* committer -> io: output left in an idle sink's FIFO (sink.c) */
};

/*
 * A resumable hello on this worker claims more of a stream than this worker knows was read:
 * the keeper of the stream's read position (streams.h), another worker, is asked. The shard
 * fills the question; the cluster (an io hook) the answer, and sends it back.
 */
typedef struct roo__stream_ask {
    roo__qnode node;
    unsigned shard;
    uint64_t conn_id; /* the connection waiting (it may be gone when the answer comes) */
    uint64_t stream;
    uint64_t next_offset;
    uint32_t worker; /* the keeper's index in the topology */
    /* the answer */
    bool reached;      /* false: the keeper could not be asked (down, no link, no answer) */
    uint64_t position; /* frames below it were read somewhere, by the keeper's records */
    char keeper[ROO__LINK_NAME_MAX + 1];
    /* the cluster's, while it waits */
    uint64_t ask_id;
    int64_t deadline_ns;
} roo__stream_ask;

/* io -> shard: start noting which keys of the moving partitions change (pre-copy); with
 * parts NULL, stop noting (the move was abandoned). */
typedef struct roo__track_msg {
    roo__qnode node;
    uint64_t epoch;
    uint8_t *parts; /* partitions entries; taken over by the shard */
} roo__track_msg;

/* io -> shard: state of a partition moving to this worker, one StateChunk's worth. */
typedef struct roo__import_msg {
    roo__qnode node;
    uint64_t epoch;
    uint16_t partition;
    bool last;
    bool precopy;
    uint32_t round;   /* precopy: the pre-copy round it belongs to */
    roo__buf records; /* StateChunk.records */
    roo__buf marks;   /* StateChunk.marks */
} roo__import_msg;

/* shard -> io: a step of a partition move is done on this thread. */
enum {
    ROO__MIG_NOTE_HELD = 1, /* everything routed before the hold is committed where it went */
    ROO__MIG_NOTE_IMPORTED, /* this partition's import (pre-copy or transfer) is committed */
    ROO__MIG_NOTE_TRACKING, /* changes are noted, and all saved before are committed */
    ROO__MIG_NOTE_TRACKED,  /* the keys that changed: records u16 partition | u16 state id |
                             * u16 key length | key (host order) */
};
typedef struct roo__mig_note {
    roo__qnode node;
    uint64_t epoch;
    unsigned shard;
    int kind;
    bool precopy;       /* IMPORTED */
    uint32_t round;     /* IMPORTED, precopy: the pre-copy round */
    uint16_t partition; /* IMPORTED */
    roo__buf keys;      /* TRACKED */
} roo__mig_note;

/* A route buffer of batch `batch_seq` is applied and committed where it went. */
typedef struct roo__route_done {
    roo__qnode node;
    uint64_t batch_seq;
} roo__route_done;

/* Identity of a message from a resumable stream (see resume.h); stream 0: none. */
typedef struct roo__msg_id {
    uint64_t stream;
    uint64_t offset;
    uint32_t sub;
} roo__msg_id;

/*
 * A record inside a batch, for the committer to write (host order; only committer and shard
 * read it):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       2     partition (STATE records)
 *   2       2     state id (STATE records)
 *   4       2     key length K
 *   6       2     kind: ROO__REC_*
 *   8       4     value length V
 *   12      K     key (the application's key, or the database key for other kinds)
 *   12+K    V     value
 */
#define ROO__REC_HDR 12
#define ROO__REC_STATE 0  /* -> state database */
#define ROO__REC_LINK 1   /* -> links: a peer's batches applied through seq */
#define ROO__REC_STREAM 2 /* -> streams: a source stream's messages applied through (offset, sub) */
#define ROO__REC_DROP 3   /* the partition moved away: delete its state and stream marks */
#define ROO__REC_STREAM_DEL 4 /* -> streams: delete a mark of a stream forgotten (idle) */

/* A peer's batch that this batch applied, to acknowledge once the batch is committed. */
typedef struct roo__link_ack {
    uint32_t peer;   /* topology index of the sender */
    uint32_t thread; /* our thread that applied it */
    uint64_t incarnation;
    uint64_t seq;
    uint64_t conn; /* the connection it came in on: the acknowledgement goes there */
} roo__link_ack;

/*
 * Where a batch's messages came from, for the latency histograms (engine.h): one entry per
 * read or route buffer applied in the batch, up to ROO__LAT_ENTS (then the last entry takes
 * the rest, keeping its older stamp).
 */
#define ROO__LAT_ENTS 64
typedef struct roo__lat_ent {
    int64_t read_ns;   /* wall clock of the read (for routed messages: of the first one's) */
    uint32_t pipeline; /* the pipeline whose source read it */
    uint32_t frames;   /* frames read here (0 for a route buffer) */
    uint64_t records;  /* output records it produced in this batch */
} roo__lat_ent;

typedef struct roo__batch {
    roo__qnode node;
    struct roo__shard *owner;
    uint64_t seq;        /* per shard, in seal order */
    uint64_t nin;        /* frames decoded into this batch */
    uint64_t nout;       /* records encoded for sinks (summed from sink_nout when sealed) */
    uint64_t *sink_nout; /* ... per sink, counted as encoded (NULL: rebuilt from the outbox) */
    roo__buf recs;       /* state records to commit */
    uint32_t nrecs;
    _Atomic unsigned refs;     /* sinks still writing this batch's output (sink.c) */
    struct roo__route *remote; /* routes to other workers, sent once the batch is committed */
    roo__link_ack *acks;       /* peers' batches applied here, acknowledged after the commit */
    uint32_t nacks, acks_cap;
    /* Local route buffers from other threads applied in this batch: tell them once committed. */
    struct roo__done_note {
        struct roo__shard *origin;
        uint64_t batch_seq;
    } * done;
    uint32_t ndone, done_cap;
    /* Sent by the committer to the owner right after the commit, while the batch itself goes
     * on to the io thread: only the sequence number is read from it. */
    struct roo__commit_note {
        roo__qnode node;
        uint64_t seq;
        struct roo__batch *batch;
    } commit_note;
    uint64_t outbox_seq;     /* committer: its output's key in the outbox (0: not stored) */
    uint64_t outbox_written; /* every outbox entry up to this one is written: delete them */
    uint64_t nrouted;        /* messages routed here (other threads, workers) applied */
    int64_t t_sealed;        /* wall clock ns, set by the shard at the seal */
    int64_t t_committed;     /* ... by the committer once durable */
    roo__lat_ent *lat;       /* ROO__LAT_ENTS entries (NULL: a batch rebuilt from the outbox) */
    uint32_t nlat;
    roo__buf out[]; /* one per sink */
} roo__batch;

/*
 * Messages routed to another thread or worker, little-endian records:
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       4     stage index; bit 31 set: an identity follows
 *   4       4     message length L
 *   8       8     (with identity) u32 frame offset - base | u32 position in the frame
 *   8 / 16  L     message, then padding to 8 bytes
 *
 * Identities are relative to the latest stream record in the same buffer:
 *
 *   0       4     0xFFFFFFFF (ROO__ROUTE_STREAM)
 *   4       4     16
 *   8       8     u64 stream
 *   16      8     u64 base frame offset
 */
#define ROO__ROUTE_ID_FLAG 0x80000000u
#define ROO__ROUTE_ID_LEN 8
#define ROO__ROUTE_STREAM 0xFFFFFFFFu
/*
 * A stream's read position for the keeper of its position (the owner of partition
 * partition_of(stream), see streams.h), one per stream per sealed batch that read it:
 *
 *   0       4     0xFFFFFFFE (ROO__ROUTE_INGRESS)
 *   4       4     16
 *   8       8     u64 stream
 *   16      8     u64 frames below this were read
 *
 * It counts as a message of its buffer.
 */
#define ROO__ROUTE_INGRESS 0xFFFFFFFEu
#define ROO__ROUTE_INGRESS_LEN 16
/*
 * A run: N messages without identity for one stage, all L bytes long (L >= 1), one header
 * for all of them. A thread's messages for one step are usually the same size (a struct),
 * so most of a route buffer is one run per step: 8 header bytes per message saved on every
 * copy, on the link and in every check. A message unlike the one before it is written as a
 * plain record, so messages of varying sizes cost no more than before.
 *
 *   0       4     0xFFFFFFFD (ROO__ROUTE_RUN)
 *   4       4     stage index
 *   8       4     message length L
 *   12      4     N, the messages in the run (>= 1)
 *   16      N*A   the messages, each padded to A = L rounded up to 8 bytes
 */
#define ROO__ROUTE_RUN 0xFFFFFFFDu
#define ROO__ROUTE_RUN_HDR 16
/*
 * Check a route buffer from another worker before any thread reads it (route_check.c): every
 * record fits, every stage index names a state step (is_state[stage]), identities follow a
 * stream record, and it holds exactly `count` messages. 0, or ROO_EWIRE with why filled in.
 * Pure; any thread.
 */
int roo__route_check(const uint8_t *data, size_t len, const bool *is_state, size_t nstages,
                     uint32_t count, char *why, size_t cap);

/* One record of a route buffer, as roo__route_next reads it. */
typedef struct roo__route_rec {
    uint32_t stage;     /* a stage index, or ROO__ROUTE_INGRESS */
    const uint8_t *msg; /* the message, or the ingress record's 16 bytes */
    uint32_t len;
    bool has_id;
    roo__msg_id id; /* with has_id: its identity, made absolute by the stream record */
} roo__route_rec;

typedef struct roo__route_iter {
    const uint8_t *p, *end;
    uint64_t stream, base; /* the latest stream record's */
    uint32_t run_left;     /* messages left in the run being read, */
    uint32_t run_stage;    /* its stage, */
    uint32_t run_len;      /* their length */
} roo__route_iter;

static inline roo__route_iter roo__route_iter_of(const uint8_t *data, size_t len)
{
    return (roo__route_iter){ data, data + len, 0, 0, 0, 0, 0 };
}

/*
 * The next message or ingress record of a route buffer this thread filled, or one that
 * roo__route_check passed (nothing here checks bounds); stream records and run headers
 * are taken in passing. false at the end. Inline: process_route runs it per routed message.
 */
static inline bool roo__route_next(roo__route_iter *it, roo__route_rec *ret)
{
    for (;;) {
        if (it->run_left) {
            ret->stage = it->run_stage;
            ret->msg = it->p;
            ret->len = it->run_len;
            ret->has_id = false;
            it->p += ROO__ALIGN8((size_t)it->run_len);
            it->run_left--;
            return true;
        }
        if (it->p >= it->end)
            return false;
        const uint8_t *p = it->p;
        uint32_t si = roo__load_le32(p), len = roo__load_le32(p + 4);
        size_t idlen = 0;

        if (si == ROO__ROUTE_RUN) {
            it->run_stage = len;
            it->run_len = roo__load_le32(p + 8);
            it->run_left = roo__load_le32(p + 12);
            it->p += ROO__ROUTE_RUN_HDR;
            continue;
        }
        if (si == ROO__ROUTE_STREAM) {
            it->stream = roo__load_le64(p + 8);
            it->base = roo__load_le64(p + 16);
            it->p += 24;
            continue;
        }
        if (si == ROO__ROUTE_INGRESS) {
            *ret = (roo__route_rec){ si, p + 8, ROO__ROUTE_INGRESS_LEN, false, { 0, 0, 0 } };
            it->p += 8 + ROO__ROUTE_INGRESS_LEN;
            return true;
        }
        ret->has_id = (si & ROO__ROUTE_ID_FLAG) != 0;
        if (ret->has_id) {
            idlen = ROO__ROUTE_ID_LEN;
            ret->id = (roo__msg_id){ it->stream, it->base + roo__load_le32(p + 8),
                                     roo__load_le32(p + 12) };
        }
        ret->stage = si & ~ROO__ROUTE_ID_FLAG;
        ret->msg = p + 8 + idlen;
        ret->len = len;
        it->p += 8 + idlen + ROO__ALIGN8(len);
        return true;
    }
}

typedef struct roo__route {
    roo__qnode node;
    struct roo__shard *from; /* the shard that filled it; NULL: the io thread (from a peer) */
    roo__buf data;
    uint64_t nmsgs;
    uint32_t worker;    /* destination worker index (remote routes); sender (from a peer) */
    uint32_t thread;    /* destination thread on that worker */
    uint64_t batch_seq; /* the origin thread's batch it belongs to (durability) */
    uint64_t id_stream; /* the stream record in force while filling (0: none yet) */
    uint64_t id_base;
    /* While filling: 1 + the offset of the last record when the next message of the same
     * stage and length may join it (0: it may not), and that stage and length. run_key is
     * stage << 32 | length once that record is a run (0: it is a plain record yet, made a
     * run by the second message), so that joining it takes one comparison. remote: the
     * destination is another worker (its bytes count in the shard's remote_bytes). */
    size_t run_at;
    uint32_t run_stage, run_len;
    bool remote;
    uint64_t run_key;
    /* From a peer: the link batch it came in, so its application can be acknowledged. */
    uint64_t link_seq; /* 0: not from a peer */
    uint64_t link_incarnation;
    uint64_t link_conn; /* the cluster's id of the connection it came in on */
    char link_peer[ROO__LINK_NAME_MAX + 1];
    bool held;         /* for a partition on the move: io keeps it until the switch */
    uint32_t hold_gen; /* ... the hold it was held in (an aborted one's go home to re-route) */
    /* The wall clock of the read of its first message and that read's pipeline (read_ns 0:
     * unknown), so the end-to-end latency counts from the read on the first worker. */
    int64_t read_ns;
    uint32_t pipeline;
} roo__route;

/* A route buffer from a pool (a list through node.next; the caller's thread's) or a new one,
 * emptied. */
static inline roo__route *roo__route_take(roo__route **pool)
{
    roo__route *r = *pool;

    if (r)
        *pool = (roo__route *)r->node.next;
    else
        r = roo__xcalloc(1, sizeof(*r));
    r->node.kind = ROO__Q_ROUTE;
    r->data.len = 0;
    r->nmsgs = 0;
    r->run_at = 0;
    r->run_key = 0;
    return r;
}

/*
 * A partition table for one shard. part_dest[p] < nshards is a local shard; anything else
 * indexes dests[] (a thread of another worker). Shards own their copy, replaced whole.
 */
typedef struct roo__routes_msg {
    roo__qnode node;
    uint32_t partitions;
    uint16_t *part_dest;
    roo__dest *dests;
    uint32_t ndests;
    /*
     * A partition move in progress (hold_epoch != 0): part_dest sends moving partitions to
     * held destinations, and part_old is the table before the move, by which messages that
     * arrive by route are still applied at their old owner. drop (partitions entries, or
     * NULL) marks partitions this worker no longer owns: their state is forgotten.
     */
    uint64_t hold_epoch;
    uint32_t hold_gen; /* this worker's number of the hold (route buffers carry it) */
    uint16_t *part_old;
    uint8_t *drop;
    /*
     * The move held for was aborted (unhold_epoch, its number): this is the table before
     * it. The thread re-routes its held messages through it once every held buffer it sent
     * to io is back (ROO__Q_HELD_BACK), and forgets the state imported for the move (drop).
     */
    uint64_t unhold_epoch;
} roo__routes_msg;

typedef struct roo__meta_msg {
    roo__qnode node;
    uint64_t seq;     /* cluster's count of identity records queued */
    roo__buf encoded; /* the WorkerMeta to store */
    int result;       /* set by the committer */
} roo__meta_msg;

typedef struct roo__conn_msg {
    roo__qnode node;
    int fd;
    uint32_t pipeline;
    char peer[64];
} roo__conn_msg;

typedef struct roo__status_msg {
    roo__qnode node;
    unsigned shard;
    bool quiescent;
} roo__status_msg;

/* ---- threads ---- */

struct roo_emitter {
    roo__step_fn step;     /* what roo_emit calls: runs `stage` on the message */
    struct roo__shard *sh; /* NULL for the test driver's */
    const roo__stage *st;  /* the stage that receives what is emitted (NULL: test driver) */
    uint32_t stage;        /* ... and its index */
    union {
        struct roo_test *test; /* the in-process test driver's (testdriver.c) */
        struct roo__stageq *q; /* a queue emitter's (steps.c): stage's queue */
    };
};

/* testdriver.c: run stage `stage` of the driver's application on msg (roo_emit's other half). */
void roo__test_run(struct roo_test *t, uint32_t stage, const void *msg, size_t len);
/* testdriver.c: the step of the test driver's emitters (out->test, out->stage). */
int roo__test_step(struct roo_emitter *out, const void *msg, size_t len);
/* steps.c: encode msg with sink stage st at the end of ob, growing ob once if the encoder
 * asks for more room; the bytes added, or a negative code (nothing added). */
int roo__sink_encode(const roo__stage *st, roo__buf *ob, const void *msg, size_t len);
/* steps.c: give every stage of app its step (called when an engine is created). */
void roo__shard_steps_init(roo_app *app);

typedef struct roo__source_conn roo__source_conn;

/* A thread's counts for one pipeline's source, for the metrics (written by the thread only). */
typedef struct roo__source_counts {
    _Atomic uint64_t frames;   /* decoded, counted once per read, not per frame */
    _Atomic uint64_t bytes;    /* read from the source's connections */
    _Atomic uint64_t rejected; /* frames the decoder refused (each closed its connection) */
    _Atomic uint64_t oversize; /* frames over --max-frame (each closed its connection) */
} roo__source_counts;

/*
 * Messages queued for one stage while a read's frames, or a peer's runs, go stage by stage
 * (steps.c): in data, one run of messages of one length after the other, each run:
 *
 *   WORDS              DESCRIPTION
 *   1                  the length in bytes (low 32 bits) and the count n >= 1 (high 32 bits)
 *   n * ceil(len / 8)  the messages, each 8-byte aligned, a last word's tail unspecified
 */
#define ROO__STAGEQ_WORDS 2048                      /* 16 KiB: see docs/performance.md */
#define ROO__STAGEQ_MSG_MAX (ROO__STAGEQ_WORDS * 2) /* bytes; a longer message runs at once */
typedef struct roo__stageq {
    uint32_t words; /* words of data used */
    uint32_t last;  /* 1 + the word index of the last run's header (0: none) */
    uint64_t *data;
} roo__stageq;

typedef struct roo__shard {
    roo__engine *eng;
    unsigned idx;
    const roo__stage *stages;     /* eng->app->stages, one load closer for the hot path */
    roo__stageq *queues;          /* per stage: a read's messages waiting for it */
    struct roo__pending *pending; /* per stage: messages gathered for its `_many` callback */
    uint32_t partitions;
    pthread_t thread;
    roo__loop *loop;
    roo__queue inbox; /* eventfd queue: CONN, BATCH (returns), ROUTE, ROUTE_RETURN, STOP, EXIT */
    roo__io inbox_io;

    roo__table *table;  /* state of this shard's partitions */
    roo__entry **dirty; /* entries saved since the current batch began */
    size_t ndirty, dirty_cap;

    roo__batch *cur;          /* batch being filled; NULL when none is free */
    roo__batch *free_batches; /* returned batches, linked through node.next */
    unsigned nfree;
    unsigned nbatches;
    roo__batch **all_batches; /* every batch of the pool, to free them wherever they are */
    uint64_t batch_seq;

    uint16_t *part_dest; /* partition -> destination (see roo__routes_msg) */
    roo__dest *dests;
    uint32_t ndests;
    roo__route **route_out; /* per destination: route buffer being filled */
    uint32_t route_cap;     /* entries in route_out */
    roo__route *route_pool; /* returned route buffers */
    unsigned routes_inflight;
    roo__route *remote_pending, *remote_tail; /* remote routes waiting for the next seal */
    size_t remote_bytes;                      /* their bytes, counted toward a full batch */
    size_t *out_hint;            /* per sink: its output of late (steps.c, sink_more) */
    uint64_t outbox_written;     /* highest outbox seq of a batch that came back written */
    uint32_t cur_routes;         /* route buffers sent since the current batch began */
    roo__dedup *dedup;           /* resumable streams: high-water marks per (stream, partition) */
    roo__timer expire_timer;     /* looks for idle streams to forget (--stream-max-idle) */
    bool expire_due;             /* ... and found it is time: done in the prepare hook */
    size_t forgot_marks;         /* streams whose marks it deleted, ... */
    size_t forgot_positions;     /* ... and whose read positions: logged once durable, */
    uint64_t forgot_seq;         /* ... when batch forgot_seq commits */
    roo__durability dur;         /* which sealed batches are durable everywhere */
    roo__msg_id id;              /* identity of the message being processed (stream 0: none) */
    bool id_fixed;               /* id came with a routed message: do not number it again */
    bool acks_owed;              /* a resumable client's acknowledgement waits for its socket */
    _Atomic uint64_t duplicates; /* resent messages recognised and skipped */
    uint64_t outbox_announced;   /* ... already passed to the committer for deletion */
    roo__qnode *route_in_head, *route_in_tail; /* inbound routes not processed yet */
    bool routed;                         /* the state step about to run got its message by route */
    bool routes_first;                   /* apply queued routes before reading sources again */
    roo__route *held_head, *held_tail;   /* held for a partition moving to this worker */
    uint64_t hold_epoch;                 /* a partition move holds messages (0: none) */
    uint32_t hold_gen;                   /* ... this worker's number of that hold */
    uint32_t held_out;                   /* held buffers sent on to io, not back yet */
    roo__routes_msg *unhold;             /* the move was aborted: the table to go back to */
    roo__route *back_head, *back_tail;   /* held buffers io gave back (aborted), in order */
    roo__qnode *later_head, *later_tail; /* tables that came while unholding, in order */
    uint16_t *part_old;                  /* ... and the table before it */
    uint64_t hold_fence;                 /* batches up to this one were sealed before the hold */
    bool hold_reported;
    uint8_t *drop_pending;                   /* partitions to record as dropped in the next batch */
    roo__qnode *imports_head, *imports_tail; /* partitions moving here, not applied yet */
    uint64_t committed_seq;                  /* newest of our batches known committed */
    uint8_t *track;                          /* pre-copy: partitions whose changed keys are noted */
    uint64_t track_epoch;
    uint64_t track_fence; /* ... reported once the batches sealed before it are committed */
    bool track_reported;
    roo__entry **tracked; /* the keys noted (ROO__ENTRY_TRACKED) */
    size_t ntracked, tracked_cap;
    struct roo__import_wait {
        uint64_t epoch;
        uint64_t batch_seq;
        uint16_t partition;
        bool precopy;
        uint32_t round;
    } * import_waits;
    size_t nimport_waits, import_waits_cap;

    roo__source_conn *conns; /* doubly linked */
    unsigned nconns;
    uint64_t conn_ids; /* the last connection's id */
    bool paused;       /* sources not being read */
    bool stopping;
    bool reported_quiescent;
    roo__buf rbuf;     /* read buffer: a connection's partial frame + new bytes */
    roo__buf pack_buf; /* a packed message on its way to a route buffer (host.h) */

    roo__ratelimit cb_rl; /* callback error log lines */

    /* Counters, written by this shard only, read racily by status reports. */
    _Atomic uint64_t frames_in;
    _Atomic uint64_t records_out;
    _Atomic uint64_t callback_errors;
    _Atomic uint64_t routed_out; /* messages sent to other workers */
    _Atomic uint64_t keys_pub;   /* table size, published at each seal */
    /* A hold's fence not passed yet, for the io thread's "still waiting" line: the first
     * batch not durable, whether it is committed, its route buffers not acknowledged. */
    _Atomic uint64_t fence_wait_seq;
    _Atomic uint32_t fence_wait_routes;
    _Atomic bool fence_wait_committed;
    _Atomic unsigned nconns_pub; /* source connections, published on change */
    /* For the metrics (engine.h, roo__engine_take_snapshot), written by this thread only. */
    roo__source_counts *source_counts;  /* per pipeline */
    _Atomic uint64_t *step_errors;      /* per stage: callbacks that failed */
    _Atomic uint64_t *serialize_errors; /* per state type */
    _Atomic uint32_t parts_pub;         /* partitions of the cluster, at the last table */
    _Atomic uint32_t parts_owned_pub;   /* ... and those this worker owns */
    /* Latency (written by this thread only; hist.h): the batch entry that output records
     * count for (UINT32_MAX: none), and the read it stands for, which route buffers carry. */
    uint32_t lat_cur;
    int64_t lat_read_ns;
    uint32_t lat_pipeline;
    uint64_t lat_base; /* the batch's records when the read began */
    roo__hist read_to_sealed;
    roo__hist *compute;   /* per stage: time in its callbacks, downstream steps excluded */
    bool timing;          /* the message being run is a sampled one: time every step */
    uint64_t sample_left; /* messages to go before the next sampled one */
    int64_t child_ns;     /* time of the steps a timed step ran (to subtract) */
} roo__shard;

typedef struct roo__sink roo__sink;

/* The threads that write output to sinks and complete batches (sink.c). */
typedef enum roo__writer {
    ROO__BY_IO,
    ROO__BY_COMMITTER,
    ROO__NWRITERS,
} roo__writer;

struct roo__engine {
    roo_app *app;
    roo__engine_cfg cfg;
    roo__store *store;
    unsigned nshards;
    roo__shard *shards;
    uint16_t *part_shard; /* partition -> shard */
    uint64_t recovered_keys;
    int64_t recovered_ms;

    /* committer */
    pthread_t committer_thread;
    roo__queue commit_q; /* condition-variable queue: BATCH, EXIT */
    _Atomic uint64_t commits;
    _Atomic uint64_t committed_batches;
    roo__hist sealed_to_committed, commit_duration; /* committer writes; hist.h */
    _Atomic uint64_t commit_messages, commit_bytes;
    _Atomic uint64_t map_used_pub, map_size_pub, outbox_bytes_pub;
    ROO__RING(struct roo__outbox_size {
        uint64_t seq;
        uint64_t bytes;
    })
    outbox_sizes;          /* committer: output stored in the outbox, by outbox seq */
    uint64_t outbox_bytes; /* committer */
    uint64_t outbox_next;  /* committer (set by recovery before it starts) */
    /* committer (outbox_mark set by recovery): entries through the mark were written to
     * every sink; per sink, entries through outbox_deleted_sink[i] are deleted (the rest it
     * may keep to resend: roo__sinks_kept_from); outbox_through_tmp: commit_once's. */
    uint64_t outbox_mark;
    uint64_t *outbox_deleted_sink, *outbox_through_tmp;
    /* Big outputs go to the outbox log (state/outlog.h), a ring of ROO__OUTLOG_SIZE bytes,
     * LMDB keeping references (a place is a position modulo that size, so a build with
     * another size cannot read a directory's live entries: change it only with a format
     * change). Its live
     * entries in ring order, and those a commit being tried appended (committer). */
    struct roo__outlog *outlog;
    ROO__RING(struct roo__outlog_entry {
        uint64_t end; /* the ring position after it */
        uint64_t seq;
        uint32_t sink;
    })
    outlog_live, outlog_new;
    bool outlog_warned;     /* committer: a write to the log failed (logged once) */
    bool outlog_filling;    /* committer: its first lap is still being filled ahead */
    bool outlog_in_use;     /* committer: the last commit put output into the log */
    int64_t last_commit_ns; /* committer: when the last commit ended */
    /* Taken off commit_q while a commit was failing; handled before the queue again. */
    roo__qnode *commit_deferred, *commit_deferred_tail; /* committer */
    /* Outbox entries found at start, to send again before new output (io thread). */
    struct roo__outbox_entry {
        uint32_t sink;
        uint64_t seq;
        roo__buf bytes;
    } * recovered_outbox;
    size_t nrecovered_outbox;
    uint64_t recovered_marks; /* dedup high-water marks loaded */
    roo__streams *streams;    /* resumable streams: read positions, live connections */

    /* io */
    pthread_t io_thread;
    roo__loop *io_loop;
    roo__queue io_q; /* eventfd queue: BATCH (committed), STOP, STATUS, EXIT */
    roo__io io_q_io;
    int *listen_fds;
    roo__io *listen_ios;
    roo__timer *listen_resume; /* a listener paused for lack of file descriptors */
    size_t nlisten;
    _Atomic uint64_t *source_accepted; /* io, per listener: connections handed to shards */
    _Atomic uint64_t *source_closed;   /* shards, per listener: ... and closed since */
    roo__ratelimit accept_rl;          /* io: accept failures and refusals */
    bool sources_open;                 /* io: listening (the cluster is ready) */
    _Atomic bool ready_pub;            /* io: sources open and not stopping (for /healthz) */
    roo__io_hooks hooks;               /* the cluster's part of the io thread (engine.h) */
    void *hooks_ctx;
    _Atomic uint64_t routed_in;
    /* Latencies of written output, one set per thread that completes batches (hist.h). */
    struct roo__written_hists {
        roo__hist committed_to_written;
        roo__hist *e2e; /* per pipeline, end to end */
    } written[ROO__NWRITERS];
    int64_t created_ns;            /* monotonic, at roo__engine_create() */
    _Atomic bool exit_requested;   /* the cluster asked this worker to stop (roo-ctl shutdown) */
    _Atomic int fatal_status;      /* non-zero: stop and exit with this status */
    roo__queue exit_q;             /* any thread -> main: stop the worker (roo__engine_exit) */
    roo__topology *saved_topology; /* from the resilience directory (NULL: none) */
    roo__topology *saved_pending;  /* ... and a partition move that was under way */
    bool left_cluster;             /* this worker left the cluster (shrink): remove its directory */
    bool join_abandoned; /* the move adding this worker was abandoned: remove it, join again */
    /* Links database at start: what each peer's batches were applied through. */
    struct roo__link_state {
        char peer[ROO__LINK_NAME_MAX + 1];
        uint32_t thread;
        uint64_t incarnation;
        uint64_t seq;
    } * recovered_links;
    size_t nrecovered_links;
    bool cluster_stopping; /* io: a coordinated stop is running: wait for Exit */
    bool exit_received;    /* io: the initializer said exit */
    unsigned next_shard;   /* round-robin for accepted connections */
    roo__sink *sinks;      /* sink.c: each guarded by its own lock */
    size_t nsinks;
    /* Committed batches on their way to io for their output, plus one until io has queued
     * the output recovered from the outbox: while non-zero, the committer hands every batch
     * to io, so the sinks get them in commit order (sink.c). */
    _Atomic unsigned sink_handoff;
    bool io_stopping;
    bool io_drained; /* io: the stop's drain finished and main was told */
    unsigned quiescent_shards;
    bool *shard_quiescent;
    int64_t stop_deadline_ns;
    roo__timer stop_timer;
    roo__timer unacked_timer; /* io: publishes the sinks' unacknowledged bytes */

    /* main <-> io: the drain finished (or timed out) */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    bool done; /* guarded by done_lock */
    bool threads_started;
};

/* shard.c */
int roo__shard_init(roo__engine *e, roo__shard *sh, unsigned idx);
void roo__shard_finish(roo__shard *sh);
/* Install a partition table (takes ownership of m); shard thread, or before it starts. */
void roo__shard_set_routes(roo__shard *sh, roo__routes_msg *m);
void *roo__shard_main(void *arg);

/* engine.c */
int roo__engine_encode_meta(const roo__engine *e, const roo__topology *topo,
                            const roo__topology *pending, roo__buf *out);
bool roo__engine_has_state(const roo__engine *e);

/* committer.c */
void *roo__committer_main(void *arg);

/* io.c */
int roo__io_init(roo__engine *e);
int roo__io_listen(roo__engine *e, char *msg, size_t cap);
void roo__io_open_sources(roo__engine *e);
void roo__io_start_stop(roo__engine *e);
void roo__io_check_drained(roo__engine *e);
bool roo__io_sinks_idle(const roo__engine *e);
/* Where each sink's output queued so far ends; whether the sinks have written that far. */
void roo__io_sinks_mark(const roo__engine *e, uint64_t *ret_marks);
bool roo__io_sinks_reached(const roo__engine *e, const uint64_t *marks);
bool roo__io_shards_quiescent(const roo__engine *e);
void roo__io_finish(roo__engine *e);
void *roo__io_main(void *arg);

/* sink.c (roo__io_sinks_* above are there too: io thread, each takes the sinks' locks) */
/* At create (main thread): the sinks, not connected yet. */
void roo__sinks_init(roo__engine *e);
/* Main thread before the io thread runs, or io thread: start connecting every sink. */
void roo__sinks_connect(roo__engine *e);
/* After the threads are joined (main thread). */
void roo__sinks_finish(roo__engine *e);
/* io thread: queue committed batch b's output on its sinks, after the batches queued before
 * (the sinks' references to b are theirs until written; then b goes home, or is freed). */
void roo__sinks_queue(roo__engine *e, roo__batch *b);
/* Committer, once b is durable, in commit order: queue b's output and, with write_now, write
 * what the idle sinks take now (else io writes it, kicked); true: b is the sinks' from here
 * on. false: b is left to io (the caller pushes it on io_q, and io calls roo__sinks_queue,
 * then roo__sinks_handed_off). */
bool roo__sinks_write_committed(roo__engine *e, roo__batch *b, bool write_now);
/* io thread: a batch the committer left to io is queued on its sinks (or, once at start,
 * the output recovered from the outbox is). */
void roo__sinks_handed_off(roo__engine *e);
/* io thread: a ROO__Q_SINK_KICK node came (the flush that follows does the work). */
void roo__sinks_kicked(roo__qnode *n);
/* io thread: write what each connected sink is owed; arm EPOLLOUT for the rest. */
void roo__sinks_flush(roo__engine *e);
/* io thread: log the sinks still holding output (a stop timed out). */
void roo__sinks_warn_held(roo__engine *e);
/* io thread: publish each sink's written but unacknowledged bytes (a getsockopt each). */
void roo__sinks_publish_unacked(roo__engine *e);
/* The lowest outbox entry sink i keeps to resend after a reconnect (UINT64_MAX: none): the
 * committer deletes its entries only below it. Any thread. */
uint64_t roo__sinks_kept_from(roo__engine *e, size_t i);
/* Any thread: sink i's published figures (sink is left for the caller to fill). */
void roo__io_sink_counts(const roo__engine *e, size_t i, roo__snapshot_sink *ret_counts);

/* Returned to the shard that owns it (any thread). */
static inline void roo__batch_return(roo__batch *b)
{
    roo__queue_push(&b->owner->inbox, &b->node);
}

#endif /* ROO_ENGINE_INT_H */
