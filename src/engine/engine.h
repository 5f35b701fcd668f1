/* engine.h: how the worker layer runs an application: create, start, stop, destroy. */
#ifndef ROO_ENGINE_H
#define ROO_ENGINE_H

#include "common/common.h"
#include "common/hist.h"
#include "net/net.h"

typedef struct roo__engine roo__engine;

typedef enum roo__cluster_mode {
    ROO__STANDALONE,  /* one worker, no cluster flags */
    ROO__INITIALIZER, /* --cluster-initializer */
    ROO__JOINER,      /* --control without --cluster-initializer: an initial worker */
} roo__cluster_mode;

/* Everything the engine takes from the command line; see worker/config.h for defaults. */
typedef struct roo__engine_cfg {
    const char *program; /* argv[0] basename, for messages */
    const char *worker_name;
    const char *resilience_dir;
    const roo__addr *in; /* one per source, in pipeline order */
    size_t nin;
    const roo__addr *out; /* one per sink, in order */
    size_t nout;
    unsigned threads;
    uint32_t partitions;
    size_t max_frame;
    uint64_t map_size;
    size_t batch_bytes; /* seal a batch once its output reaches this */
    unsigned batches_per_shard;
    size_t sink_replay_bytes;   /* output kept to resend after a sink reconnect */
    int shutdown_timeout_ms;    /* how long a stop waits for a sink to take the output */
    size_t link_backlog_bytes;  /* per peer: sent and not yet acknowledged, kept to resend */
    unsigned max_connections;   /* per listener: open connections accepted */
    unsigned stream_max_idle_s; /* resumable streams idle longer are forgotten; 0: never */

    roo__cluster_mode mode;
    unsigned worker_count; /* initializer: workers in the cluster, itself included;
                            * --join: grow once this many joiners wait */
    bool join;             /* --join: a new worker for a running cluster (control = where) */
    bool has_control, has_data, has_my_control, has_my_data, has_external;
    roo__addr control;          /* initializer: listen; joiner: the initializer's address */
    roo__addr data;             /* initializer: data listen address */
    roo__addr my_control;       /* joiner: own control listen address */
    roo__addr my_data;          /* joiner: own data listen address */
    roo__addr external;         /* operator channel */
    const char *cluster_secret; /* the secret file (NULL: none; loopback only) */
} roo__engine_cfg;

/*
 * Open the resilience directory, check it belongs to this application and worker, and
 * recover its state. On error, msg holds one line of context for the log.
 */
int roo__engine_create(roo_app *app, const roo__engine_cfg *cfg, roo__engine **ret_engine,
                       char *msg, size_t cap);

/*
 * The io thread's calls into the layer above the engine (the cluster), so that the engine
 * never names it: the worker layer installs them before roo__engine_start(). Every hook
 * runs on the io thread and gets `ctx`; a hook left NULL does nothing (idle: true).
 */
struct roo__batch;
struct roo__route;
struct roo__meta_msg;
struct roo__mig_note;
struct roo__stream_ask;
typedef struct roo__io_hooks {
    /* The io thread starts (after resending the outbox, before its first poll). */
    void (*start)(void *ctx);
    /* Before each poll. */
    void (*prepare)(void *ctx);
    /* A batch is committed and carries acknowledgements or routes for other workers. */
    void (*batch_committed)(void *ctx, struct roo__batch *b);
    /* A thread is done with a route buffer that came from another worker. */
    void (*route_returned)(void *ctx, struct roo__route *r);
    /* The identity record queued with roo__engine_store_meta() is stored (or failed). */
    void (*meta_stored)(void *ctx, struct roo__meta_msg *m);
    /* A thread finished its part of a step of a partition move. */
    void (*move_note)(void *ctx, struct roo__mig_note *n);
    /* Nothing is queued for, or owed to, another worker. */
    bool (*idle)(void *ctx);
    /* Ask the worker that keeps a stream's read position; answer with
     * roo__engine_stream_answer() (now or later, on the io thread). */
    void (*stream_ask)(void *ctx, struct roo__stream_ask *ask);
} roo__io_hooks;

/* io thread: send the answer to the asking thread (the ask is theirs again). */
void roo__engine_stream_answer(roo__engine *e, struct roo__stream_ask *ask);

/* Main thread, before roo__engine_start(): install the io thread's hooks (copied). */
void roo__engine_set_io_hooks(roo__engine *e, const roo__io_hooks *hooks, void *ctx);

/* Bind the listeners and start the threads; msg explains a failure. */
int roo__engine_start(roo__engine *e, char *msg, size_t cap);
/* The threads were started (and must be stopped and joined). */
bool roo__engine_running(const roo__engine *e);

/*
 * Any thread: ask the main thread to stop the worker. status 0 is an orderly stop that the
 * cluster asked for (roo-ctl shutdown, this worker left); anything else is a fatal error,
 * already logged, and becomes the exit status. It travels through a queue whose eventfd,
 * roo__engine_exit_fd(), the main thread polls next to its signals.
 */
void roo__engine_exit(roo__engine *e, int status);
int roo__engine_exit_fd(const roo__engine *e);
/* Main thread: take what roo__engine_exit() queued; true if anything was. */
bool roo__engine_take_exit(roo__engine *e);

/* Ask for a clean stop: stop reading, commit, deliver output (bounded by the timeout). */
void roo__engine_request_stop(roo__engine *e);

/* Wait up to timeout_ms (-1: forever) for the drain to finish; true if it did. */
bool roo__engine_wait_done(roo__engine *e, int timeout_ms);

/* Stop and join the threads (after a stop; idempotent), so that the layer above can go. */
void roo__engine_join(roo__engine *e);
/* Join the threads if still running and release everything. Accepts NULL. */
void roo__engine_destroy(roo__engine *e);

/* 0, or the exit status the worker must end with (the cluster refused it, ...). */
int roo__engine_fatal_status(roo__engine *e);
/* True if the stop was asked for by the cluster (roo-ctl shutdown), not by a signal. */
bool roo__engine_cluster_exit(roo__engine *e);
/* The worker left its cluster (shrink): its resilience directory may be removed. */
bool roo__engine_left_cluster(const roo__engine *e);
/* The move that was adding this worker was abandoned: remove the directory, join again. */
bool roo__engine_join_abandoned(const roo__engine *e);

/* Counters for the stop summary. */
typedef struct roo__engine_stats {
    uint64_t frames_in;
    uint64_t records_out;
    uint64_t callback_errors;
    uint64_t commits;
    uint64_t keys;
} roo__engine_stats;
void roo__engine_get_stats(roo__engine *e, roo__engine_stats *ret_stats);

/*
 * What a metrics scrape reads: counts since this process started, from relaxed atomics
 * that the threads publish (per read, per batch, per sink write; never per message), so
 * that any thread may take one at any time between roo__engine_create() and
 * roo__engine_destroy() without making a processing thread wait. Each figure is exact as
 * published; they are not all of one instant. Labels are unique within their list (a name
 * that repeats gets "#2", "#3"). Everything is owned by the snapshot:
 * roo__engine_snapshot_finish() frees it.
 */
typedef struct roo__snapshot_source {
    char *pipeline;
    uint64_t frames, bytes;        /* frames decoded, bytes read */
    uint64_t rejected, oversize;   /* frames refused by the decoder, frames over --max-frame */
    uint64_t connections;          /* open now */
    uint64_t connections_accepted; /* since the start */
    /* End to end: a frame read here to its output handed to the sink's kernel, one sample
     * per output record written by this worker (a record from a message routed here from
     * another worker counts from the read there; clocks of other hosts may be off). */
    roo__hist_counts latency;
} roo__snapshot_source;

typedef struct roo__snapshot_sink {
    char *sink;       /* its --out address */
    uint64_t records; /* records written to the sink (handed to the kernel) */
    uint64_t bytes;   /* bytes written, not counting resends after a reconnect */
    uint64_t held;    /* committed output bytes not yet written */
    uint64_t unacked; /* written but not yet acknowledged by the sink's host (TCP), as of
                       * the io thread's last look (every 250 ms and at each write) */
    bool connected;
} roo__snapshot_sink;

typedef struct roo__snapshot_step {
    char *pipeline, *step;
    uint64_t errors; /* callbacks of this step that failed (the message was dropped) */
    /* Time in the step's callbacks (computation; key and state computation for a state
     * step; encode for a sink), one message in ROO__COMPUTE_SAMPLE_EVERY timed. */
    roo__hist_counts compute;
} roo__snapshot_step;

#define ROO__COMPUTE_SAMPLE_EVERY 1024

typedef struct roo__snapshot_state {
    char *state;
    uint64_t serialize_errors;
} roo__snapshot_state;

typedef struct roo__engine_snapshot {
    char *worker, *app;
    bool ready; /* sources open, not stopping */
    unsigned threads;
    uint32_t partitions, partitions_owned;
    uint64_t keys, commits, committed_batches;
    uint64_t duplicates;            /* resumable streams' resent messages skipped */
    uint64_t routed_out, routed_in; /* messages sent to / received from other workers */
    uint64_t recovered_keys;
    double recovery_seconds;
    roo__snapshot_source *sources; /* one per pipeline */
    size_t nsources;
    roo__snapshot_sink *sinks; /* one per --out */
    size_t nsinks;
    roo__snapshot_step *steps; /* one per step (a sink's encoder is the step "sink") */
    size_t nsteps;
    roo__snapshot_state *states; /* one per state type */
    size_t nstates;

    double uptime_seconds;       /* since roo__engine_create() */
    uint64_t callback_errors;    /* the steps' errors, summed */
    uint64_t decoder_rejections; /* the sources' rejected frames, summed */
    /* Stages of the way to the sink, one sample per message (weights): read to its batch
     * sealed (frames read here), sealed to committed (messages of the batch: frames read
     * here and messages routed here), committed to written (records, once every sink has
     * written the batch's output). */
    roo__hist_counts read_to_sealed, sealed_to_committed, committed_to_written;
    roo__hist_counts commit_duration; /* one sample per LMDB commit: begin to synced */
    uint64_t commit_messages;         /* messages of the committed batches */
    uint64_t commit_bytes;            /* state and output bytes written by the commits */
    uint64_t map_size, map_used;      /* LMDB: the map's size and the bytes of its used pages */
    uint64_t outbox_bytes;            /* committed output kept in LMDB until written */
} roo__engine_snapshot;

/* Any thread (see above); cannot fail. */
void roo__engine_take_snapshot(roo__engine *e, roo__engine_snapshot *ret_snap);
/* Free what a snapshot holds; accepts a zeroed one. */
void roo__engine_snapshot_finish(roo__engine_snapshot *s);

/* What recovery found, for the start-up log line. */
void roo__engine_recovery_info(const roo__engine *e, uint64_t *ret_keys, int64_t *ret_ms);

#endif /* ROO_ENGINE_H */
