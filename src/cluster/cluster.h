/* cluster.h: workers forming a cluster: control, data and external channels.
 *
 * DESIGN
 * The worker layer creates the cluster and installs it in the engine's io thread, where all
 * of it runs (see cluster.c for the rooms and how they talk to other threads).
 *
 * Channels (all length-prefixed protobuf frames, see proto/roo.proto and src/wire):
 *   control   joiner -> initializer, one connection per joiner (a star): Hello, Topology,
 *             ConnectionsReady, ClusterReady, Heartbeat, status queries, Migrate and
 *             MigrateReport, Shutdown, drain rounds, Exit.
 *   data      one outgoing connection from every worker to every other worker (a full
 *             mesh of one-way links): DataHello, then DataBatch frames, each carrying a
 *             whole route buffer of messages for one thread of the receiver, DataAck back,
 *             and StateChunks while partitions move.
 *   external  operator tools (roo-ctl): status, query, shrink and shutdown.
 *
 * Formation: the initializer waits for --worker-count workers (itself included), forms the
 * table (partition p -> worker p mod N) and sends it; each worker stores it, installs it in
 * its threads, connects its data links and reports; then ClusterReady opens every source.
 * Data path: a message whose partition another worker owns rides in a route buffer for
 * (worker, thread), is sent only after its batch's commit, and is acknowledged only after
 * the receiver's. Moves (grow: --join; shrink: roo-ctl shrink) run in phases driven by the
 * initializer (move.c, initializer.c, docs/architecture.md).
 */
#ifndef ROO_CLUSTER_H
#define ROO_CLUSTER_H

#include "common/hist.h"
#include "engine/engine.h"
#include "wire/wire.h"

typedef struct roo__cluster roo__cluster;

/*
 * Main thread, after roo__engine_create() and before roo__engine_start(): bind the
 * cluster's listeners (a taken port is an error now, not later). The topology saved in the
 * resilience directory, if any, is read from the engine. msg explains a failure.
 */
int roo__cluster_create(roo__engine *e, roo__cluster **ret_cluster, char *msg, size_t cap);

/*
 * Main thread, before roo__engine_start(): where this worker serves --metrics ("HOST:PORT"),
 * which roo-ctl status, top and targets show. Copied; an address longer than
 * ROO__STATS_ADDR_CAP - 1 bytes is refused with -ENAMETOOLONG (the worker runs without it).
 */
int roo__cluster_set_metrics_address(roo__cluster *cl, const char *addr);

/* Main thread, after roo__engine_join() (no io thread runs). Accepts NULL. */
void roo__cluster_destroy(roo__cluster *cl);

/* The cluster's part of the io thread: install with roo__engine_set_io_hooks(e, &.., cl). */
extern const roo__io_hooks roo__cluster_io_hooks;

/*
 * The cluster's figures for a metrics scrape (cluster-metrics.c): like the engine's
 * snapshot, relaxed atomic loads that the io thread publishes, taken on any thread without
 * a lock and without waking the io thread. Counters are exact as last stored; the figures
 * are not all of one instant.
 */
typedef struct roo__cluster_snapshot_peer {
    const char *name;           /* borrowed from the cluster: valid until roo__cluster_destroy() */
    uint64_t messages_sent;     /* DataBatch messages framed for it, once (not resends) */
    uint64_t messages_received; /* from it, passed to our threads (not resends) */
    uint64_t bytes_sent, bytes_received; /* those DataBatch frames, length prefix included */
    uint64_t backlog_bytes;              /* sent, not yet acknowledged, kept to resend */
    bool connected;                      /* our data link to it is up */
} roo__cluster_snapshot_peer;

typedef struct roo__cluster_snapshot_listener {
    const char *listener; /* "control", "data" or "external" (static) */
    uint64_t connections; /* open now */
    uint64_t accepted;    /* since the start */
    uint64_t refused;     /* --max-connections, handshakes failed, hellos refused */
} roo__cluster_snapshot_listener;

typedef struct roo__cluster_snapshot {
    uint64_t cluster_id;               /* 0 until this worker has the cluster's table */
    uint64_t workers;                  /* in the table, not left */
    roo__cluster_snapshot_peer *peers; /* every other worker this one has known, by index */
    size_t npeers;
    roo__cluster_snapshot_listener listeners[3]; /* the listeners this worker has */
    size_t nlisteners;
    uint64_t moves_done, moves_aborted, moves_abandoned; /* partition moves, as seen here */
    uint64_t partitions_moving;  /* coming here or leaving, in the move under way */
    roo__hist_counts move_pause; /* per move held here: from the hold to the switch */
} roo__cluster_snapshot;

/*
 * Any thread, while the cluster exists (the worker layer stops the metrics server before
 * it destroys the cluster); cannot fail. Release with roo__cluster_snapshot_finish().
 */
void roo__cluster_take_snapshot(roo__cluster *cl, roo__cluster_snapshot *ret_snapshot);
void roo__cluster_snapshot_finish(roo__cluster_snapshot *s);

#endif /* ROO_CLUSTER_H */
