/* cluster-metrics.c: the cluster's figures for a metrics scrape: published by the io thread
 * as it runs the cluster, read by any thread (roo__cluster_take_snapshot).
 *
 * DESIGN
 * The io thread is the only writer of `cl->clm` (cluster-int.h): it counts with a relaxed
 * load and a relaxed store, and a scrape on libmicrohttpd's thread reads with relaxed
 * loads, so the scrape neither locks nor wakes the io thread. Nothing a scrape reads is
 * ever moved or freed while the cluster exists: the peer slots are a fixed array inside the
 * cluster, and a peer's name is an immutable string published with release order (after
 * its slot's counters are reset) and read with acquire. When an index gets another worker
 * (a move that added workers was abandoned, and others took their indices), the old name
 * is kept on a list until the cluster is destroyed, since a scrape may still be reading it.
 */
#include <stdlib.h>

#include "cluster/cluster-int.h"

/* A name replaced in its slot, kept for a scrape that may still read it. */
struct clm_name {
    struct clm_name *next;
    char *name;
};

void roo__clm_peer_name(cluster *cl, uint32_t w, const char *name)
{
    clm_peer *s;
    char *old;

    if (w >= MAX_WORKERS)
        return;
    s = &cl->clm.peers[w];
    old = atomic_load_explicit(&s->name, memory_order_relaxed);
    if (old && name && strcmp(old, name) == 0)
        return; /* the same worker, its address refreshed: its figures go on */
    if (old) {
        struct clm_name *r = roo__xmalloc(sizeof(*r));
        atomic_store_explicit(&s->name, NULL, memory_order_relaxed);
        r->name = old;
        r->next = cl->clm.retired;
        cl->clm.retired = r;
    }
    /* Another worker (or none) from now on: its figures start at 0. */
    roo__clm_set(&s->msgs_sent, 0);
    roo__clm_set(&s->msgs_received, 0);
    roo__clm_set(&s->bytes_sent, 0);
    roo__clm_set(&s->bytes_received, 0);
    roo__clm_set(&s->backlog, 0);
    atomic_store_explicit(&s->connected, false, memory_order_relaxed);
    if (!name)
        return;
    atomic_store_explicit(&s->name, roo__xstrdup(name), memory_order_release);
    if (w >= atomic_load_explicit(&cl->clm.npeers, memory_order_relaxed))
        atomic_store_explicit(&cl->clm.npeers, w + 1, memory_order_release);
}

void roo__clm_peer_connected(cluster *cl, uint32_t w, bool connected)
{
    if (w < MAX_WORKERS)
        atomic_store_explicit(&cl->clm.peers[w].connected, connected, memory_order_relaxed);
}

void roo__clm_topology(cluster *cl)
{
    uint64_t live = 0;

    for (size_t w = 0; cl->has_topology && w < cl->topo.nworkers; w++)
        live += !cl->topo.workers[w].left;
    roo__clm_set(&cl->clm.workers, live);
    roo__clm_set(&cl->clm.cluster_id, cl->has_topology ? cl->topo.cluster_id : 0);
}

void roo__clm_listening(cluster *cl)
{
    atomic_store_explicit(&cl->clm.listening[CONN_CONTROL], cl->ctl_lfd >= 0, memory_order_relaxed);
    atomic_store_explicit(&cl->clm.listening[CONN_DATA], cl->data_lfd >= 0, memory_order_relaxed);
    atomic_store_explicit(&cl->clm.listening[CONN_EXTERNAL], cl->ext_lfd >= 0,
                          memory_order_relaxed);
}

void roo__clm_conns(cluster *cl, conn_kind kind, bool accepted)
{
    if (accepted)
        roo__clm_add(&cl->clm.accepted[kind], 1);
    roo__clm_set(&cl->clm.conns[kind], cl->nconns[kind]);
}

void roo__clm_refused(cluster *cl, conn_kind kind)
{
    roo__clm_add(&cl->clm.refused[kind], 1);
}

void roo__clm_move_ended(cluster *cl, int result)
{
    roo__clm_add(&cl->clm.moves[result], 1);
    if (result == CLM_MOVE_DONE && cl->mig.hold_ns)
        roo__hist_add(&cl->clm.pause, roo__now_ns() - cl->mig.hold_ns, 1);
}

void roo__clm_finish(cluster *cl)
{
    for (uint32_t w = 0; w < MAX_WORKERS; w++)
        free(atomic_load_explicit(&cl->clm.peers[w].name, memory_order_relaxed));
    while (cl->clm.retired) {
        struct clm_name *r = cl->clm.retired;
        cl->clm.retired = r->next;
        free(r->name);
        free(r);
    }
}

/* ---- any thread ---- */

static uint64_t load(const _Atomic uint64_t *f)
{
    return atomic_load_explicit(f, memory_order_relaxed);
}

void roo__cluster_take_snapshot(roo__cluster *cl, roo__cluster_snapshot *ret_snapshot)
{
    static const char *const kinds[] = { "control", "data", "external" };
    roo__cluster_snapshot s;
    uint32_t n = atomic_load_explicit(&cl->clm.npeers, memory_order_acquire);

    memset(&s, 0, sizeof(s));
    s.cluster_id = load(&cl->clm.cluster_id);
    s.workers = load(&cl->clm.workers);
    s.peers = roo__xcalloc(n ? n : 1, sizeof(*s.peers));
    for (uint32_t w = 0; w < n; w++) {
        clm_peer *p = &cl->clm.peers[w];
        roo__cluster_snapshot_peer *o = &s.peers[s.npeers];
        /* Acquire: the counters' reset for this name happened before we read them. */
        o->name = atomic_load_explicit(&p->name, memory_order_acquire);
        if (!o->name)
            continue;
        o->messages_sent = load(&p->msgs_sent);
        o->messages_received = load(&p->msgs_received);
        o->bytes_sent = load(&p->bytes_sent);
        o->bytes_received = load(&p->bytes_received);
        o->backlog_bytes = load(&p->backlog);
        o->connected = atomic_load_explicit(&p->connected, memory_order_relaxed);
        s.npeers++;
    }
    for (int k = 0; k < 3; k++) {
        roo__cluster_snapshot_listener *l = &s.listeners[s.nlisteners];
        if (!atomic_load_explicit(&cl->clm.listening[k], memory_order_relaxed))
            continue;
        l->listener = kinds[k];
        l->connections = load(&cl->clm.conns[k]);
        l->accepted = load(&cl->clm.accepted[k]);
        l->refused = load(&cl->clm.refused[k]);
        s.nlisteners++;
    }
    s.moves_done = load(&cl->clm.moves[CLM_MOVE_DONE]);
    s.moves_aborted = load(&cl->clm.moves[CLM_MOVE_ABORTED]);
    s.moves_abandoned = load(&cl->clm.moves[CLM_MOVE_ABANDONED]);
    s.partitions_moving = load(&cl->clm.moving);
    roo__hist_merge(&cl->clm.pause, &s.move_pause);
    *ret_snapshot = s;
}

void roo__cluster_snapshot_finish(roo__cluster_snapshot *s)
{
    free(s->peers);
    s->peers = NULL;
    s->npeers = 0;
}
