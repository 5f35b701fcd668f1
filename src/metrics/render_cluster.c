/* render_cluster.c: a cluster snapshot (cluster.h) as Prometheus text: the data links to
 * each peer worker, the cluster's listeners, partition moves, the table. Pure; unit-tested
 * in tests/metrics/test_render_cluster.c.
 *
 * Every family is written, even with no sample (a standalone worker has no peers), so that
 * every worker of any role lists the same names; a listener's samples appear only where
 * this worker has that listener. Every sample carries worker=, as in render.c.
 */
#include "cluster/cluster.h" /* the snapshot's type only: nothing here calls the cluster */
#include "metrics/metrics.h"
#include "metrics/prom.h"

enum peer_field { P_MSGS_SENT, P_MSGS_RECEIVED, P_BYTES_SENT, P_BYTES_RECEIVED, P_BACKLOG, P_UP };

static uint64_t peer_field(const roo__cluster_snapshot_peer *p, enum peer_field f)
{
    switch (f) {
    case P_MSGS_SENT:
        return p->messages_sent;
    case P_MSGS_RECEIVED:
        return p->messages_received;
    case P_BYTES_SENT:
        return p->bytes_sent;
    case P_BYTES_RECEIVED:
        return p->bytes_received;
    case P_BACKLOG:
        return p->backlog_bytes;
    case P_UP:
        return p->connected;
    }
    return 0;
}

static void per_peer(roo__buf *b, const roo__cluster_snapshot *c, const char *worker,
                     const char *name, const char *type, const char *help, enum peer_field f)
{
    roo__prom_family(b, name, type, help);
    for (size_t i = 0; i < c->npeers; i++) {
        const char *labels[] = { "peer", c->peers[i].name, NULL };
        roo__prom_sample_u64(b, worker, name, labels, peer_field(&c->peers[i], f));
    }
}

enum listener_field { L_OPEN, L_ACCEPTED, L_REFUSED };

static void per_listener(roo__buf *b, const roo__cluster_snapshot *c, const char *worker,
                         const char *name, const char *type, const char *help,
                         enum listener_field f)
{
    roo__prom_family(b, name, type, help);
    for (size_t i = 0; i < c->nlisteners; i++) {
        const roo__cluster_snapshot_listener *l = &c->listeners[i];
        const char *labels[] = { "listener", l->listener, NULL };
        roo__prom_sample_u64(b, worker, name, labels,
                             f == L_OPEN       ? l->connections
                             : f == L_ACCEPTED ? l->accepted
                                               : l->refused);
    }
}

void roo__metrics_render_cluster(const roo__cluster_snapshot *c, const char *worker, roo__buf *out)
{
    per_peer(out, c, worker, "roo_peer_messages_sent_total", "counter",
             "Messages sent to the peer worker on the data link (DataBatch), each counted once "
             "(resends after a reconnect are not).",
             P_MSGS_SENT);
    per_peer(out, c, worker, "roo_peer_messages_received_total", "counter",
             "Messages received from the peer worker's data link and passed to this worker's "
             "threads (resends already taken are not counted).",
             P_MSGS_RECEIVED);
    per_peer(out, c, worker, "roo_peer_bytes_sent_total", "counter",
             "Bytes of the DataBatch frames counted in roo_peer_messages_sent_total, length "
             "prefix included.",
             P_BYTES_SENT);
    per_peer(out, c, worker, "roo_peer_bytes_received_total", "counter",
             "Bytes of the DataBatch frames counted in roo_peer_messages_received_total, "
             "length prefix included.",
             P_BYTES_RECEIVED);
    per_peer(out, c, worker, "roo_peer_link_backlog_bytes", "gauge",
             "Bytes sent to the peer worker and not yet acknowledged as committed there, kept to "
             "send again (at most --link-backlog).",
             P_BACKLOG);
    per_peer(out, c, worker, "roo_peer_connected", "gauge",
             "1 while this worker's data link to the peer worker is up.", P_UP);

    per_listener(out, c, worker, "roo_listener_connections", "gauge",
                 "Connections open on the cluster listener (control, data or external).", L_OPEN);
    per_listener(out, c, worker, "roo_listener_connections_accepted_total", "counter",
                 "Connections accepted on the cluster listener (those refused at their "
                 "handshake or hello included).",
                 L_ACCEPTED);
    per_listener(out, c, worker, "roo_listener_connections_refused_total", "counter",
                 "Connections the cluster listener refused: over --max-connections, the "
                 "cluster secret not proved, a hello or first request refused.",
                 L_REFUSED);

    roo__prom_family(out, "roo_partition_moves_total", "counter",
                     "Partition moves this worker took part in, by how they ended: done (the "
                     "switch), aborted (roo-ctl move --abort, on the initializer) or abandoned "
                     "(given up before the hold; an abort, on the other workers).");
    {
        static const char *const results[] = { "done", "aborted", "abandoned" };
        const uint64_t n[] = { c->moves_done, c->moves_aborted, c->moves_abandoned };
        for (size_t i = 0; i < 3; i++) {
            const char *labels[] = { "result", results[i], NULL };
            roo__prom_sample_u64(out, worker, "roo_partition_moves_total", labels, n[i]);
        }
    }
    roo__prom_family(out, "roo_partition_move_pause_seconds", "histogram",
                     "Per move done here: how long messages of the moving partitions were held, "
                     "from the hold to the switch.");
    roo__prom_histogram(out, worker, "roo_partition_move_pause_seconds", NULL, &c->move_pause);
    roo__prom_family(out, "roo_partitions_moving", "gauge",
                     "Partitions coming to this worker or leaving it in the move under way.");
    roo__prom_sample_u64(out, worker, "roo_partitions_moving", NULL, c->partitions_moving);

    roo__prom_family(out, "roo_cluster_workers", "gauge",
                     "Workers in the cluster's table (those that left not counted).");
    roo__prom_sample_u64(out, worker, "roo_cluster_workers", NULL, c->workers);
    roo__prom_family(out, "roo_cluster_info", "gauge",
                     "Always 1 once this worker has the cluster's table; the label names the "
                     "cluster (as roo-ctl status does).");
    if (c->cluster_id) {
        char id[20];
        const char *labels[] = { "cluster_id", id, NULL };
        snprintf(id, sizeof(id), "%016" PRIx64, c->cluster_id);
        roo__prom_sample(out, worker, "roo_cluster_info", labels, "1");
    }
}
