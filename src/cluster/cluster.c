/* cluster.c: the cluster's lifecycle, its partition table and the connections it accepts.
 *
 * DESIGN
 * The cluster is a guest of the io thread. The worker layer creates it on the main thread
 * (binding the control, data and external listeners there, so that a taken port fails the
 * start) and installs roo__cluster_io_hooks in the engine; from then on the io thread calls
 * it, and everything in src/cluster runs on that thread: nothing here locks. Other threads
 * are reached through queues only: route tables, move steps and state imports to the
 * processing threads' inboxes, the identity record to the committer, a fatal error or the
 * cluster's own stop to the main thread (roo__engine_exit).
 *
 * This room holds what every worker does whatever its role: apply a table (the first one,
 * then every newer one, including the switch that ends a move), store it (the WorkerMeta
 * record, written by the committer before anything depends on it), give each thread its
 * route table (computed by placement.c), go ready, and accept connections on the three
 * listeners, handing each frame to the room of its kind:
 *
 *   links.c        data links: outgoing batches with their backlog, inbound batches
 *   move.c         every worker's part of a partition move
 *   initializer.c  formation, driving moves, the coordinated stop (control frames)
 *   joiner.c       a non-initializer's control link to the initializer
 *   external.c     roo-ctl: status, query, shrink
 *   placement.c    pure functions: who owns each partition, where its messages go
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster/cluster-int.h"

static void leave_cluster(cluster *cl);
static int join_abandoned(cluster *cl, const roo__topology *t);
static void conn_gone(aconn *c, int err);

/*
 * The protocol version this worker speaks. ROO_TEST_PROTOCOL_VERSION overrides it so the
 * tests can play a worker of another version; nothing else should set it.
 */
uint32_t roo__cl_protocol_version(void)
{
    static uint32_t v;
    if (!v) {
        const char *s = getenv("ROO_TEST_PROTOCOL_VERSION");
        uint64_t n;
        v = s && roo__parse_uint(s, 1, UINT32_MAX, &n) == 0 ? (uint32_t)n : ROO__PROTOCOL_VERSION;
    }
    return v;
}

void roo__cl_send_ctl(roo__fconn *fc, const roo__ctl *m)
{
    int rc;

    if (!fc->open)
        return;
    rc = roo__wire_ctl_encode(m, roo__fconn_outbuf(fc));
    if (rc < 0) {
        roo__log_error("cannot encode a %s message: %s", roo__wire_ctl_name(m->kind),
                       roo_strerror(rc));
        return;
    }
    roo__fconn_flush(fc);
}

/* Close an accepted connection ourselves, with the same bookkeeping as a peer's close. */
void roo__cl_conn_kill(aconn *c)
{
    if (c->dead)
        return;
    roo__fconn_close(&c->fc);
    conn_gone(c, 0);
}

int roo__cl_fatal(cluster *cl, const char *why)
{
    roo__log_error("%s", why);
    roo__engine_exit(cl->e, 1);
    return -1;
}

/* A live worker's index, in the table or in the one a move is heading for. */
int64_t roo__cl_worker_index(const cluster *cl, const char *name)
{
    for (size_t i = 0; i < cl->topo.nworkers; i++)
        if (!cl->topo.workers[i].left && strcmp(cl->topo.workers[i].name, name) == 0)
            return (int64_t)i;
    for (size_t i = cl->topo.nworkers; cl->mig.active && i < cl->mig.next.nworkers; i++)
        if (!cl->mig.next.workers[i].left && strcmp(cl->mig.next.workers[i].name, name) == 0)
            return (int64_t)i;
    return -1;
}

int roo__cluster_set_metrics_address(roo__cluster *cl, const char *addr)
{
    size_t n = strlen(addr);

    if (n >= sizeof(cl->metrics_address))
        return -ENAMETOOLONG;
    memcpy(cl->metrics_address, addr, n + 1);
    return 0;
}

/*
 * Give every thread its partition table. During a move (mig.active) partitions whose owner
 * changes go to "held" destinations: io keeps those messages until the switch. drop marks
 * partitions this worker just gave away.
 */
static void install_routes(cluster *cl, const uint8_t *drop, uint64_t unhold_epoch);

void roo__cl_install_routes(cluster *cl, const uint8_t *drop)
{
    install_routes(cl, drop, 0);
}

void roo__cl_install_unhold(cluster *cl, const uint8_t *drop, uint64_t epoch)
{
    install_routes(cl, drop, epoch);
}

static void install_routes(cluster *cl, const uint8_t *drop, uint64_t unhold_epoch)
{
    roo__engine *e = cl->e;
    const roo__topology *t = &cl->topo, *nx = cl->mig.active ? &cl->mig.next : NULL;
    uint32_t *threads = roo__xcalloc(t->nworkers, sizeof(uint32_t));
    uint32_t *nthreads = roo__xcalloc(nx ? nx->nworkers : 1, sizeof(uint32_t));
    roo__placement now = { t->partitions, (uint32_t)t->nworkers, t->owner, threads }, next;
    roo__route_table rt;
    int rc;

    for (size_t w = 0; w < t->nworkers; w++)
        threads[w] = t->workers[w].threads;
    for (size_t w = 0; nx && w < nx->nworkers; w++)
        nthreads[w] = nx->workers[w].threads;
    if (nx)
        next = (roo__placement){ nx->partitions, (uint32_t)nx->nworkers, nx->owner, nthreads };
    rc = roo__placement_routes(&now, nx ? &next : NULL, cl->self, e->nshards, &rt);
    free(threads);
    free(nthreads);
    if (rc < 0) {
        char why[200];
        snprintf(why, sizeof(why), "cannot route the cluster's partition table (%zu workers): %s",
                 nx ? nx->nworkers : t->nworkers, roo_strerror(rc));
        roo__cl_fatal(cl, why);
        return;
    }
    /* Every thread gets its own copy: it owns and replaces it whole. */
    for (unsigned i = 0; i < e->nshards; i++) {
        roo__routes_msg *m = roo__xcalloc(1, sizeof(*m));
        m->node.kind = ROO__Q_ROUTES;
        m->partitions = rt.partitions;
        m->ndests = rt.ndests;
        m->dests = roo__xmalloc(rt.ndests * sizeof(roo__dest));
        memcpy(m->dests, rt.dests, rt.ndests * sizeof(roo__dest));
        m->part_dest = roo__xmalloc(rt.partitions * sizeof(uint16_t));
        memcpy(m->part_dest, rt.part_dest, rt.partitions * sizeof(uint16_t));
        if (rt.part_old) {
            m->hold_epoch = cl->mig.epoch;
            m->hold_gen = cl->mig.hold_gen;
            m->part_old = roo__xmalloc(rt.partitions * sizeof(uint16_t));
            memcpy(m->part_old, rt.part_old, rt.partitions * sizeof(uint16_t));
        }
        m->unhold_epoch = unhold_epoch;
        if (drop) {
            m->drop = roo__xmalloc(t->partitions);
            memcpy(m->drop, drop, t->partitions);
        }
        roo__queue_push(&e->shards[i].inbox, &m->node);
    }
    roo__route_table_finish(&rt);
}

void roo__cl_persist_topology(cluster *cl)
{
    roo__engine *e = cl->e;
    roo__meta_msg *m = roo__xcalloc(1, sizeof(*m));
    int rc;

    m->node.kind = ROO__Q_META;
    m->seq = ++cl->meta_queued;
    roo__clm_topology(cl); /* every table this worker takes is stored: published here too */
    rc = roo__engine_encode_meta(e, cl->has_topology ? &cl->topo : NULL,
                                 cl->mig.active ? &cl->mig.next : NULL, &m->encoded);
    if (rc < 0) {
        roo__buf_finish(&m->encoded);
        free(m);
        roo__cl_fatal(cl, "cannot encode the cluster identity record");
        return;
    }
    cl->meta_pending = true;
    roo__queue_push(&e->commit_q, &m->node);
}

void roo__cl_go_ready(cluster *cl)
{
    uint32_t owned = 0;

    if (cl->ready)
        return;
    cl->ready = true;
    for (uint32_t p = 0; p < cl->topo.partitions; p++)
        owned += cl->topo.owner[p] == cl->self;
    if (cl->topo.nworkers > 1)
        roo__log_info("cluster %016llx ready: %zu workers, %u partitions, %u of them here",
                      (unsigned long long)cl->topo.cluster_id, cl->topo.nworkers,
                      cl->topo.partitions, owned);
    roo__io_open_sources(cl->e);
}

static bool all_links_open(const cluster *cl)
{
    for (uint32_t w = 0; w < cl->topo.nworkers; w++)
        if (w != cl->self && !cl->peers[w].left && !cl->peers[w].data_open)
            return false;
    return true;
}

/* Our links are up and the topology is stored: say so (once per topology). */
void roo__cl_check_conns_ready(cluster *cl)
{
    if (!cl->has_topology || !cl->meta_written || !all_links_open(cl))
        return;
    if (cl->mode == ROO__INITIALIZER || cl->mode == ROO__STANDALONE) {
        if (!cl->self_conns_ready) {
            cl->self_conns_ready = true;
            roo__coord_check_ready(cl);
        }
        return;
    }
    if (!cl->conns_ready_sent && cl->to_init_open) {
        roo__ctl m = { .kind = ROO__CTL_CONNECTIONS_READY, .worker_name = (char *)cl->name };
        roo__cl_send_ctl(&cl->to_init, &m);
        cl->conns_ready_sent = true;
    }
}

int roo__cl_apply_topology(cluster *cl, const roo__topology *t)
{
    int64_t self;
    bool first = !cl->has_topology;

    if (t->partitions != cl->e->cfg.partitions && !first) {
        return roo__cl_fatal(cl, "the cluster changed its partition count; refusing");
    }
    if (t->nworkers > MAX_WORKERS)
        return roo__cl_fatal(cl, "the cluster lists more workers than this build can follow");
    if (!first) {
        /* A newer table: addresses changed, or a move finished (the switch). */
        roo__topology old = cl->topo;
        uint8_t *drop = NULL;
        bool moved = false;

        if (cl->self >= t->nworkers || strcmp(t->workers[cl->self].name, cl->name) != 0)
            return join_abandoned(cl, t);
        if (t->nworkers < old.nworkers)
            return roo__cl_fatal(cl, "the cluster's worker list shrank; this build cannot follow");
        roo__topology_copy(t, &cl->topo);
        roo__links_update(cl, t, false);
        for (uint32_t p = 0; p < t->partitions; p++) {
            if (old.owner[p] == t->owner[p])
                continue;
            moved = true;
            if (old.owner[p] == cl->self) {
                if (!drop)
                    drop = roo__xcalloc(t->partitions, 1);
                drop[p] = 1;
            }
        }
        if (cl->mig.active && t->version >= cl->mig.epoch)
            roo__move_finish(cl);
        if (moved || t->nworkers != old.nworkers)
            roo__cl_install_routes(cl, drop);
        free(drop);
        roo__topology_finish(&old);
        roo__cl_persist_topology(cl);
        if (cl->topo.workers[cl->self].left)
            leave_cluster(cl);
        return 0;
    }
    self = roo__cl_worker_index(cl, cl->name);
    if (self < 0) {
        for (size_t i = 0; i < t->nworkers; i++)
            if (!t->workers[i].left && strcmp(t->workers[i].name, cl->name) == 0)
                self = (int64_t)i;
    }
    if (self < 0)
        return roo__cl_fatal(cl, "the cluster's topology does not list this worker");
    roo__topology_copy(t, &cl->topo);
    cl->has_topology = true;
    cl->self = (uint32_t)self;
    if (t->partitions != cl->e->cfg.partitions) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "the cluster uses %u partitions but this worker's state was "
                 "created with %u; refusing",
                 t->partitions, cl->e->cfg.partitions);
        if (roo__engine_has_state(cl->e))
            return roo__cl_fatal(cl, msg);
        /* Safe: no thread hashes keys before it gets the routes that follow. */
        cl->e->cfg.partitions = t->partitions;
    }
    cl->peers = roo__xcalloc(MAX_WORKERS, sizeof(peer));
    for (uint32_t w = 0; w < t->nworkers; w++)
        roo__links_peer_init(cl, w, &t->workers[w]);
    cl->npeers = (uint32_t)t->nworkers;
    /* What each peer's batches were applied through, as committed before a restart. */
    for (size_t i = 0; i < cl->e->nrecovered_links; i++) {
        const struct roo__link_state *l = &cl->e->recovered_links[i];
        int64_t w = roo__cl_worker_index(cl, l->peer);
        if (w < 0 || (uint32_t)w == cl->self || l->thread >= cl->e->nshards)
            continue;
        cl->peers[w].in_incarnation = l->incarnation;
        cl->peers[w].in_applied[l->thread] = l->seq;
        cl->peers[w].in_received[l->thread] = l->seq;
    }
    roo__cl_install_routes(cl, NULL);
    roo__cl_persist_topology(cl);
    for (uint32_t w = 0; w < t->nworkers; w++)
        if (w != cl->self && !t->workers[w].left)
            roo__backoff_now(cl->e->io_loop, &cl->peers[w].data_retry);
    roo__cl_check_conns_ready(cl);
    return 0;
}

static void send_topology_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;
    roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY, .topology = cl->topo };

    (void)loop;
    roo__coord_broadcast(cl, &tm);
}

/*
 * The initializer stored a new table: now the others may have it. ROO_TEST_SEND_DELAY_MS
 * holds it back, so that the tests can kill the initializer between storing a switch and
 * sending it; nothing else should set it.
 */
static void send_stored_topology(cluster *cl)
{
    const char *d = getenv("ROO_TEST_SEND_DELAY_MS");
    uint64_t ms = 0;

    cl->send_timer.cb = send_topology_cb;
    cl->send_timer.data = cl;
    if (d && roo__parse_uint(d, 0, 600000, &ms) == 0 && ms > 0) {
        roo__log_info("table version %llu stored; sending it in %llu ms (test delay)",
                      (unsigned long long)cl->topo.version, (unsigned long long)ms);
        roo__timer_start(cl->e->io_loop, &cl->send_timer, (int64_t)ms);
    } else
        send_topology_cb(cl->e->io_loop, &cl->send_timer);
}

/* The identity record we queued is stored (or not). */
static void meta_stored(void *ctx, roo__meta_msg *m)
{
    cluster *cl = ctx;

    cl->meta_pending = false;
    if (m->result >= 0)
        roo__coord_meta_stored(cl, m->seq);
    if (m->result >= 0 && cl->mig.active && !cl->mig.pending_stored &&
        m->seq >= cl->mig.pending_meta) {
        cl->mig.pending_stored = true;
        roo__coord_pending_stored(cl);
        roo__move_check(cl);
    }
    if (m->result < 0) {
        roo__cl_fatal(cl, "cannot store the cluster topology; stopping");
    } else {
        cl->meta_written = true;
        if (cl->send_topology_when_stored && m->seq >= cl->send_topology_seq) {
            cl->send_topology_when_stored = false;
            send_stored_topology(cl);
        }
        roo__cl_check_conns_ready(cl);
    }
    roo__buf_finish(&m->encoded);
    free(m);
}

uint64_t roo__cl_random_id(void)
{
    uint64_t id = 0;

    if (getrandom(&id, sizeof(id), 0) != sizeof(id) || id == 0)
        id = (uint64_t)roo__now_ns() ^ ((uint64_t)getpid() << 32);
    return id ? id : 1;
}

bool roo__cl_local_idle(cluster *cl)
{
    return roo__io_shards_quiescent(cl->e) && roo__io_sinks_idle(cl->e) && roo__links_idle(cl);
}

void roo__cl_stop_locally(cluster *cl, const char *why)
{
    roo__engine *e = cl->e;

    if (e->cluster_stopping)
        return;
    roo__log_info("cluster shutdown: %s", why);
    e->cluster_stopping = true;
    roo__io_start_stop(e);
    /* The main thread waits for the drain. */
    roo__engine_exit(e, 0);
}

/*
 * The initializer's table does not list us where the move that added us put us: that move
 * was abandoned (the initializer restarted before it stored the move, so no worker switched
 * to it). Nothing of the cluster's is ours, so this worker stops, removes its directory and
 * joins again from the start (roo_main runs it again).
 */
static int join_abandoned(cluster *cl, const roo__topology *t)
{
    roo__engine *e = cl->e;

    if (e->join_abandoned || e->left_cluster)
        return 0;
    if (t->cluster_id != cl->topo.cluster_id)
        return roo__cl_fatal(cl, "the initializer now runs another cluster; refusing");
    roo__log_warn("the partition move that was adding this worker was abandoned (the initializer "
                  "restarted before it was stored; the cluster is at table version %llu without "
                  "this worker): starting the join again",
                  (unsigned long long)t->version);
    e->join_abandoned = true;
    e->exit_received = true; /* no coordinated Exit to wait for */
    roo__cl_stop_locally(cl, "the move that was adding this worker was abandoned");
    return 0;
}

/* The switch said we left (shrink): hand over the sources, deliver what is owed, exit. */
static void leave_cluster(cluster *cl)
{
    roo__engine *e = cl->e;

    if (e->left_cluster)
        return;
    e->left_cluster = true;
    e->exit_received = true; /* no coordinated Exit to wait for */
    roo__log_info("this worker left the cluster: closing its source connections (resumable "
                  "clients continue on another worker), delivering its output, then exiting");
    roo__cl_stop_locally(cl, "this worker left the cluster");
}

static void aconn_frame(roo__fconn *fc, const uint8_t *payload, size_t len)
{
    aconn *c = fc->data;

    switch (c->kind) {
    case CONN_CONTROL:
        roo__coord_on_frame(c->cl, c, payload, len);
        break;
    case CONN_DATA:
        roo__links_on_frame(c->cl, c, payload, len);
        break;
    case CONN_EXTERNAL:
        roo__ext_on_frame(c->cl, c, payload, len);
        break;
    }
}

static void aconn_closed(roo__fconn *fc, int err)
{
    aconn *c = fc->data;
    static const char *const kinds[] = { "control", "data", "external" };

    uint64_t suppressed = 0;
    bool refused = err == ROO_EAUTH || fc->auth_state;

    if (refused)
        roo__clm_refused(c->cl, c->kind);
    if (refused && roo__ratelimit_allow(&c->cl->refusals, &suppressed))
        /* Before the handshake: anyone can cause these, so they are rate-limited. */
        roo__log_warn("%s connection from %s did not prove the cluster secret (%s); closed "
                      "it%s",
                      kinds[c->kind], fc->peer,
                      err == ROO_EAUTH        ? "a wrong secret, or not a roo peer"
                      : err == -ETIMEDOUT     ? "no handshake in time"
                      : err == ROO_EFRAMESIZE ? "a frame too big for a handshake"
                                              : "it left during the handshake: another secret?",
                      suppressed ? " (more such connections were closed unlogged)" : "");
    else if (err == ROO_EFRAMESIZE && !refused)
        roo__log_warn("%s connection from %s: frame larger than the channel's limit; closed it",
                      kinds[c->kind], fc->peer);
    conn_gone(c, err);
}

static void conn_gone(aconn *c, int err)
{
    cluster *cl = c->cl;

    if (c->dead)
        return;
    c->dead = true;
    cl->nconns[c->kind]--;
    roo__clm_conns(cl, c->kind, false);
    for (size_t i = 0; c->kind == CONN_CONTROL && i < cl->co.njoiners; i++) {
        if (cl->co.joiners[i].ctl != c)
            continue;
        /* A worker waiting to join went away before the move began: forget it. */
        roo__log_warn("joining worker '%s' went away before it was added",
                      cl->co.joiners[i].info.name);
        roo__worker_info_finish(&cl->co.joiners[i].info);
        memmove(&cl->co.joiners[i], &cl->co.joiners[i + 1],
                (cl->co.njoiners - i - 1) * sizeof(joined));
        cl->co.njoiners--;
        break;
    }
    if (c->kind == CONN_CONTROL && c->peer >= 0 && cl->has_topology &&
        (uint32_t)c->peer < cl->npeers && cl->peers[c->peer].ctl == c) {
        if (!cl->e->io_stopping)
            roo__log_warn("worker '%s' disconnected from control%s%s", cl->peers[c->peer].info.name,
                          err ? ": " : "", err ? roo_strerror(err) : "");
        cl->peers[c->peer].ctl = NULL;
        cl->peers[c->peer].conns_ready = false;
        if (cl->draining)
            roo__coord_drain_evaluate(cl);
    }
    if (c->kind == CONN_CONTROL && !cl->has_topology && c->peer > 0 &&
        (size_t)c->peer < cl->njoined && cl->joined[c->peer].ctl == c) {
        /* A worker that identified itself went away before formation: forget it. */
        size_t i = (size_t)c->peer;
        roo__log_warn("worker '%s' left before the cluster formed", cl->joined[i].info.name);
        roo__worker_info_finish(&cl->joined[i].info);
        memmove(&cl->joined[i], &cl->joined[i + 1], (cl->njoined - i - 1) * sizeof(joined));
        cl->njoined--;
        for (size_t k = i; k < cl->njoined; k++)
            cl->joined[k].ctl->peer = (int)k;
    }
    if (c->kind == CONN_DATA && c->peer >= 0 && cl->has_topology && cl->peers[c->peer].inbound == c)
        cl->peers[c->peer].inbound = NULL;
}

static const roo__fconn_ops aconn_ops = {
    .on_frame = aconn_frame,
    .on_close = aconn_closed,
};

static void accept_on(cluster *cl, roo__io *lio, conn_kind kind)
{
    static const char *const kinds[] = { "control", "data", "external" };
    static const size_t limits[] = { ROO__CONTROL_FRAME_MAX, ROO__DATA_FRAME_MAX,
                                     ROO__EXTERNAL_FRAME_MAX };
    static const uint8_t channels[] = { ROO__CHANNEL_CONTROL, ROO__CHANNEL_DATA,
                                        ROO__CHANNEL_EXTERNAL };

    for (int i = 0; i < 16; i++) {
        char peer_addr[64];
        uint64_t suppressed = 0;
        int fd, rc = roo__tcp_accept(lio->fd, &fd, peer_addr, sizeof(peer_addr));
        aconn *c;

        if (rc == -EAGAIN || rc == -EINTR)
            return;
        if (rc < 0) {
            /* Out of descriptors: the listener would be ready again at once; rest it. */
            if (roo__ratelimit_allow(&cl->refusals, &suppressed))
                roo__log_warn("%s listener: accept failed: %s; not accepting for 100 ms",
                              kinds[kind], roo_strerror(rc));
            roo__listener_pause(cl->e->io_loop, lio, &cl->listen_resume[kind], 100);
            return;
        }
        if (cl->nconns[kind] >= cl->e->cfg.max_connections) {
            close(fd);
            roo__clm_refused(cl, kind);
            if (roo__ratelimit_allow(&cl->refusals, &suppressed))
                roo__log_warn("%s listener: %u connections open (--max-connections); closed the "
                              "one from %s%s",
                              kinds[kind], cl->nconns[kind], peer_addr,
                              suppressed ? " (more refusals not logged)" : "");
            continue;
        }
        c = roo__xcalloc(1, sizeof(*c));
        c->cl = cl;
        c->kind = kind;
        c->peer = -1;
        c->id = ++cl->next_conn_id;
        if (roo__fconn_accept(&c->fc, cl->e->io_loop, fd, peer_addr, limits[kind], &aconn_ops, c) <
            0) {
            free(c);
            continue;
        }
        /* Nothing is read from it, nor told to it, before it proves the secret. */
        roo__fconn_auth(&c->fc, &cl->key, channels[kind]);
        c->next = cl->conns;
        cl->conns = c;
        cl->nconns[kind]++;
        roo__clm_conns(cl, kind, true);
    }
}

void roo__cl_ctl_listen_cb(roo__loop *loop, roo__io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    accept_on(io->data, io, CONN_CONTROL);
}

void roo__cl_data_listen_cb(roo__loop *loop, roo__io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    accept_on(io->data, io, CONN_DATA);
}

static void ext_listen_cb(roo__loop *loop, roo__io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    accept_on(io->data, io, CONN_EXTERNAL);
}

/* The open accepted connection with this id, or NULL. */
aconn *roo__cl_find_conn(cluster *cl, uint64_t id)
{
    for (aconn *c = cl->conns; c; c = c->next)
        if (c->id == id && !c->dead)
            return c;
    return NULL;
}

/* Before each poll: free the accepted connections that closed. */
static void prepare(void *ctx)
{
    cluster *cl = ctx;
    aconn **pp = &cl->conns;

    if (!cl)
        return;
    roo__cl_stream_asks_tick(cl);
    while (*pp) {
        aconn *c = *pp;
        if (c->dead && !c->fc.open) {
            *pp = c->next;
            roo__fconn_finish(&c->fc);
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

/*
 * Listen on a and say (in adv, if given) the address others should use: what the user named
 * (a host name stays a host name) with the real port, or the bound address if a was a
 * wildcard. msg explains a failure.
 */
int roo__cl_listen_at(cluster *cl, const roo__addr *a, int *fd, char *adv, size_t advcap,
                      const char *what, char *msg, size_t cap)
{
    char local[300], addr[300];
    int rc = roo__tcp_listen(a, 128, fd);

    if (rc < 0) {
        snprintf(msg, cap, "cannot listen on %s %s: %s", what, roo__addr_str(a, addr, sizeof(addr)),
                 roo_strerror(rc));
        return rc;
    }
    if (!cl->key.secret && !roo__tcp_is_loopback(*fd, true)) {
        /* Redis's protected mode: an open port must not mean an open cluster. */
        snprintf(msg, cap,
                 "refusing to listen on %s %s without a cluster secret: anyone who reaches it "
                 "could read the state and stop the cluster; give every worker and roo-ctl the "
                 "same --cluster-secret FILE (README, Security), or listen on 127.0.0.1",
                 what, roo__addr_str(a, addr, sizeof(addr)));
        close(*fd);
        *fd = -1;
        return ROO_EUSAGE;
    }
    roo__tcp_local_str(*fd, local, sizeof(local));
    if (!adv)
        return 0;
    if (a->host[0] && strcmp(a->host, "0.0.0.0") && strcmp(a->host, "::")) {
        const char *colon = strrchr(local, ':');
        roo__addr b = *a;
        snprintf(b.port, sizeof(b.port), "%s", colon ? colon + 1 : a->port);
        roo__addr_str(&b, adv, advcap);
    } else {
        snprintf(adv, advcap, "%s", local);
    }
    return 0;
}

/*
 * adv is an address we listen on; if its host is a wildcard, put the host of `local` (the
 * local end of a connection that another worker made or took) in its place.
 */
void roo__cl_advertise_wild(char *adv, size_t cap, const char *local)
{
    roo__addr a, l;

    if (!adv[0] || roo__addr_parse(adv, &a) < 0 || roo__addr_parse(local, &l) < 0)
        return;
    if (strcmp(a.host, "0.0.0.0") != 0 && strcmp(a.host, "::") != 0)
        return;
    snprintf(a.host, sizeof(a.host), "%s", l.host);
    roo__addr_str(&a, adv, cap);
}

int roo__cluster_create(roo__engine *e, roo__cluster **ret_cluster, char *msg, size_t cap)
{
    const roo__topology *saved = e->saved_topology;
    const roo__engine_cfg *cfg = &e->cfg;
    cluster *cl = roo__xcalloc(1, sizeof(*cl));
    int rc;

    cl->e = e;
    cl->mode = cfg->mode;
    cl->name = cfg->worker_name;
    cl->ctl_lfd = cl->data_lfd = cl->ext_lfd = -1;
    roo__backoff_init(&cl->ctl_retry, roo__joiner_retry_cb, cl);
    cl->incarnation = roo__cl_random_id();
    cl->refusals = (roo__ratelimit)ROO__RATELIMIT_INIT(10000, 5);
    cl->format_rl = (roo__ratelimit)ROO__RATELIMIT_INIT(10000, 1);
    if (cfg->cluster_secret) {
        bool loose = false;
        char why[600] = "";
        rc = roo__auth_key_load(cfg->cluster_secret, &cl->key, &loose, why, sizeof(why));
        if (rc < 0) {
            snprintf(msg, cap, "%s", why);
            goto err;
        }
        if (loose)
            roo__log_warn("%s", why);
    } else {
        roo__auth_key_none(&cl->key);
    }
    cl->stage_is_state = roo__xcalloc(e->app->nstages ? e->app->nstages : 1, sizeof(bool));
    for (size_t i = 0; i < e->app->nstages; i++)
        cl->stage_is_state[i] = e->app->stages[i].kind == ROO__STAGE_STATE;
    if (saved && saved->nworkers == 1 && roo__engine_has_state(e) &&
        (cl->mode == ROO__JOINER || (cl->mode == ROO__INITIALIZER && cfg->worker_count > 1))) {
        /* Its keys would be counted twice: once here, once at the partition's owner. */
        snprintf(msg, cap,
                 "%s holds the state of a worker that ran alone; a member of a %s cluster needs "
                 "a directory of its own: give it a fresh --resilience-dir",
                 cfg->resilience_dir, cl->mode == ROO__JOINER ? "running" : "new");
        rc = ROO_EAPPMISMATCH;
        goto err;
    }
    if (cfg->has_external) {
        rc = roo__cl_listen_at(cl, &cfg->external, &cl->ext_lfd, cl->my_external,
                               sizeof(cl->my_external), "--external", msg, cap);
        if (rc < 0)
            goto err;
    }
    if (cl->mode == ROO__INITIALIZER && cfg->worker_count > 1) {
        roo__addr data = cfg->control;
        rc = roo__cl_listen_at(cl, &cfg->control, &cl->ctl_lfd, cl->my_control,
                               sizeof(cl->my_control), "--control", msg, cap);
        if (rc < 0)
            goto err;
        if (cfg->has_data)
            data = cfg->data;
        else
            snprintf(data.port, sizeof(data.port), "0");
        rc = roo__cl_listen_at(cl, &data, &cl->data_lfd, cl->my_data, sizeof(cl->my_data), "--data",
                               msg, cap);
        if (rc < 0)
            goto err;
    } else if (cl->mode == ROO__JOINER) {
        const roo__worker_info *me = NULL;
        roo__addr a;
        /* A member restarting keeps its old addresses, so peers find it again. */
        for (size_t i = 0; saved && i < saved->nworkers; i++)
            if (strcmp(saved->workers[i].name, cfg->worker_name) == 0)
                me = &saved->workers[i];
        if (cfg->has_my_control || (me && roo__addr_parse(me->control_addr, &a) == 0)) {
            rc =
                roo__cl_listen_at(cl, cfg->has_my_control ? &cfg->my_control : &a, &cl->ctl_lfd,
                                  cl->my_control, sizeof(cl->my_control), "--my-control", msg, cap);
            if (rc < 0 && cfg->has_my_control)
                goto err;
        }
        if (cfg->has_my_data || (me && roo__addr_parse(me->data_addr, &a) == 0)) {
            rc = roo__cl_listen_at(cl, cfg->has_my_data ? &cfg->my_data : &a, &cl->data_lfd,
                                   cl->my_data, sizeof(cl->my_data), "--my-data", msg, cap);
            if (rc < 0 && cfg->has_my_data)
                goto err;
        }
        cl->need_bind_local = cl->ctl_lfd < 0 || cl->data_lfd < 0;
    }
    *ret_cluster = cl;
    return 0;

err:
    roo__cluster_destroy(cl);
    return rc;
}

/* The io thread starts: listen, and form, join or rejoin the cluster. */
static void start(void *ctx)
{
    cluster *cl = ctx;
    roo__engine *e = cl->e;

    if (cl->ext_lfd >= 0) {
        cl->ext_lio.cb = ext_listen_cb;
        cl->ext_lio.data = cl;
        roo__io_start(e->io_loop, &cl->ext_lio, cl->ext_lfd, EPOLLIN);
    }
    if (cl->ctl_lfd >= 0) {
        cl->ctl_lio.cb = roo__cl_ctl_listen_cb;
        cl->ctl_lio.data = cl;
        roo__io_start(e->io_loop, &cl->ctl_lio, cl->ctl_lfd, EPOLLIN);
    }
    if (cl->data_lfd >= 0) {
        cl->data_lio.cb = roo__cl_data_listen_cb;
        cl->data_lio.data = cl;
        roo__io_start(e->io_loop, &cl->data_lio, cl->data_lfd, EPOLLIN);
    }
    roo__clm_listening(cl);

    if (e->saved_topology && cl->mode != ROO__STANDALONE && e->saved_topology->nworkers > 1) {
        /* A member restarting: it knows the table; serve at once, reconnect in the background. */
        roo__log_info("rejoining cluster %016llx (%zu workers) from the saved topology",
                      (unsigned long long)e->saved_topology->cluster_id,
                      e->saved_topology->nworkers);
        if (roo__cl_apply_topology(cl, e->saved_topology) < 0)
            return;
        if (e->cfg.join) {
            /* Once a member, talk to the initializer directly. */
            roo__addr a;
            if (roo__addr_parse(cl->topo.workers[0].control_addr, &a) == 0)
                e->cfg.control = a;
        }
        if (e->saved_pending && e->saved_pending->version > cl->topo.version) {
            /* A move was under way when we stopped: hold again, take part again. */
            roo__log_info("a partition move to table version %llu was under way; resuming it",
                          (unsigned long long)e->saved_pending->version);
            roo__move_begin(cl, e->saved_pending->version, e->saved_pending);
            if (cl->mode == ROO__INITIALIZER && cl->mig.active) {
                cl->co.running = true;
                cl->co.started_ns = roo__now_ns();
                roo__coord_describe(&cl->topo, &cl->mig.next, cl->co.what, sizeof(cl->co.what));
                cl->co.reported = roo__xcalloc(cl->mig.next.nworkers, sizeof(bool));
                cl->co.phase = ROO__MIG_HOLD;
                cl->co.phase_ns = roo__now_ns();
            }
        }
        if (cl->mode == ROO__INITIALIZER)
            cl->self_conns_ready = true;
        roo__cl_go_ready(cl);
    } else if (cl->mode == ROO__STANDALONE ||
               (cl->mode == ROO__INITIALIZER && e->cfg.worker_count == 1)) {
        roo__topology t = { 0 };
        roo__worker_info me = { (char *)cl->name, cl->my_control, cl->my_data, e->nshards,
                                cl->my_external };
        t.cluster_id = e->saved_topology ? e->saved_topology->cluster_id : roo__cl_random_id();
        t.app_name = e->app->name;
        t.partitions = e->cfg.partitions;
        t.nworkers = 1;
        t.workers = &me;
        t.owner = roo__xcalloc(t.partitions, sizeof(uint32_t));
        t.version = 1;
        roo__cl_apply_topology(cl, &t);
        free(t.owner);
        cl->self_conns_ready = true;
        roo__cl_go_ready(cl);
    } else if (cl->mode == ROO__INITIALIZER) {
        cl->joined = roo__xcalloc(1, sizeof(*cl->joined));
        cl->joined[0].info =
            (roo__worker_info){ roo__xstrdup(cl->name), roo__xstrdup(cl->my_control),
                                roo__xstrdup(cl->my_data), e->nshards,
                                roo__xstrdup(cl->my_external) };
        cl->njoined = 1;
        roo__log_info("initializer: waiting for %u more worker(s) on control %s (data %s)",
                      e->cfg.worker_count - 1, cl->my_control, cl->my_data);
    }
    if (cl->mode == ROO__JOINER)
        roo__backoff_now(e->io_loop, &cl->ctl_retry);
    cl->heartbeat.cb = roo__joiner_heartbeat_cb;
    cl->heartbeat.data = cl;
    roo__timer_start(e->io_loop, &cl->heartbeat, HEARTBEAT_MS);
}

void roo__cluster_destroy(roo__cluster *cl)
{
    if (!cl)
        return;
    for (aconn *c = cl->conns, *next; c; c = next) {
        next = c->next;
        roo__fconn_finish(&c->fc);
        free(c);
    }
    roo__cl_stream_asks_finish(cl);
    for (uint32_t w = 0; cl->peers && w < cl->npeers; w++)
        roo__links_peer_finish(&cl->peers[w]);
    free(cl->peers);
    for (size_t i = 0; i < cl->njoined; i++)
        roo__worker_info_finish(&cl->joined[i].info);
    free(cl->joined);
    roo__fconn_finish(&cl->to_init);
    for (int i = 0; i < MAX_QUERIES; i++)
        if (cl->queries[i].used)
            roo__ext_status_free(&cl->queries[i], cl->has_topology ? cl->topo.nworkers : 1);
    while (cl->route_pool) {
        roo__route *r = cl->route_pool;
        cl->route_pool = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    if (cl->ctl_lfd >= 0)
        close(cl->ctl_lfd);
    if (cl->data_lfd >= 0)
        close(cl->data_lfd);
    if (cl->ext_lfd >= 0)
        close(cl->ext_lfd);
    roo__topology_finish(&cl->topo);
    roo__move_free(cl);
    free(cl->aborted_gens);
    free(cl->co.reported);
    for (size_t i = 0; i < cl->co.njoiners; i++)
        roo__worker_info_finish(&cl->co.joiners[i].info);
    free(cl->co.joiners);
    free(cl->stage_is_state);
    roo__clm_finish(cl);
    free(cl);
}

static bool links_idle(void *ctx)
{
    return roo__links_idle(ctx);
}

static void batch_committed(void *ctx, roo__batch *b)
{
    roo__links_committed(ctx, b);
}

static void route_returned(void *ctx, roo__route *r)
{
    roo__links_route_returned(ctx, r);
}

static void move_note(void *ctx, roo__mig_note *n)
{
    roo__move_on_note(ctx, n);
}

static void stream_ask(void *ctx, roo__stream_ask *a)
{
    roo__cl_stream_ask(ctx, a);
}

const roo__io_hooks roo__cluster_io_hooks = {
    .start = start,
    .prepare = prepare,
    .batch_committed = batch_committed,
    .route_returned = route_returned,
    .meta_stored = meta_stored,
    .move_note = move_note,
    .idle = links_idle,
    .stream_ask = stream_ask,
};
