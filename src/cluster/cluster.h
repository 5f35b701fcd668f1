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

#include "engine/engine.h"
#include "wire/wire.h"

typedef struct roo__cluster roo__cluster;

/*
 * Main thread, after roo__engine_create() and before roo__engine_start(): bind the
 * cluster's listeners (a taken port is an error now, not later). The topology saved in the
 * resilience directory, if any, is read from the engine. msg explains a failure.
 */
int roo__cluster_create(roo__engine *e, roo__cluster **ret_cluster, char *msg, size_t cap);

/* Main thread, after roo__engine_join() (no io thread runs). Accepts NULL. */
void roo__cluster_destroy(roo__cluster *cl);

/* The cluster's part of the io thread: install with roo__engine_set_io_hooks(e, &.., cl). */
extern const roo__io_hooks roo__cluster_io_hooks;

#endif /* ROO_CLUSTER_H */
