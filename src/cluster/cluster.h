/* cluster.h: workers forming a cluster: control, data and external channels.
 *
 * DESIGN
 * Everything here runs on the io thread of a worker (see engine-int.h), next to the
 * sources' listeners and the sinks; nothing here is touched by another thread except
 * through the queues named below.
 *
 * Channels (all length-prefixed protobuf frames, see proto/roo.proto and src/wire):
 *   control   joiner -> initializer, one connection per joiner (a star): Hello, Topology,
 *             ConnectionsReady, ClusterReady, Heartbeat, status queries, Shutdown, drain.
 *   data      one outgoing connection from every worker to every other worker (a full
 *             mesh of one-way links): DataHello, then DataBatch frames, each carrying a
 *             whole route buffer of messages for one thread of the receiver.
 *   external  operator tools (roo-ctl): status and shutdown requests.
 *
 * Formation: the initializer waits for --worker-count workers (itself included) to say
 * Hello, checks protocol version, application and names, computes the partition table
 * (partition p -> worker p % N) and sends the Topology to all. Each worker stores it in its
 * resilience directory (through the committer), installs it in its threads (ROO__Q_ROUTES),
 * connects its data links and reports ConnectionsReady. When all have, the initializer says
 * ClusterReady and every worker opens its sources.
 *
 * Data path: a message whose partition another worker owns is appended by the shard to a
 * route buffer for (worker, thread). Route buffers ride in the batch, are sent only after
 * the batch's commit, go into the peer's FIFO here, are framed as DataBatch (the shard gets
 * the buffer back once framed), and on the receiver become a route pushed to the owning
 * thread's inbox. Back-pressure: a shard holds a bounded number of route buffers; a peer's
 * FIFO only drains into a bounded socket buffer; a receiver stops reading a link while too
 * many of its buffers wait in its threads.
 *
 * Moves (grow: --join; shrink: roo-ctl shrink): the initializer drives them in phases
 * (Migrate HOLD, TRANSFER, then the new Topology), every worker answers with MigrateReport;
 * moving partitions' messages are held as route buffers in io (or in the thread, for our
 * own threads) until the switch, and their state crosses as StateChunks on the data links.
 * See "partition moves" in cluster.c and docs/architecture.md.
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
