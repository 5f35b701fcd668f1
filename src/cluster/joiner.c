/* joiner.c: a joining worker's control link to the initializer.
 *
 * DESIGN
 * Every worker but the initializer keeps one control link to it and reconnects with backoff
 * for as long as it runs (the initializer may restart). It says Hello (protocol version,
 * application, name, addresses, and its cluster id once it has one), then follows what the
 * initializer says: the table, ClusterReady, a move's phases, status queries, Shutdown,
 * drain rounds, Exit. A --join worker may name any member: one that is not the initializer
 * refuses with the initializer's address and the joiner follows it. A joiner given no
 * --my-control/--my-data listens on the local address of this link once it is up. A
 * heartbeat every second carries the worker's figures to the initializer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"

/* Refused: follow the initializer it names (a --join asked another worker), or stop. */
static void on_refuse(cluster *cl, roo__fconn *fc, const roo__ctl *m)
{
    char msg[700];

    if (cl->e->cfg.join && m->initializer && m->initializer[0] &&
        roo__addr_parse(m->initializer, &cl->e->cfg.control) == 0) {
        roo__log_info("%s is not the initializer; asking the initializer at %s", fc->peer,
                      m->initializer);
        roo__fconn_close(fc);
        cl->to_init_open = cl->to_init_active = false;
        roo__backoff_now(cl->e->io_loop, &cl->ctl_retry);
        return;
    }
    roo__fconn_close(fc);
    cl->to_init_open = cl->to_init_active = false;
    cl->refused = true;
    snprintf(msg, sizeof(msg), "the initializer refused this worker: %s", m->reason);
    roo__cl_fatal(cl, msg);
}

/* A joiner's first table: the one after the move that adds it, minus what moves to it. */
static int join_table(cluster *cl, const roo__ctl *m)
{
    roo__topology t0;
    int64_t me = -1;
    int rc;

    roo__topology_copy(&m->topology, &t0);
    for (size_t i = 0; i < t0.nworkers; i++)
        if (!t0.workers[i].left && strcmp(t0.workers[i].name, cl->name) == 0)
            me = (int64_t)i;
    if (me < 0) {
        roo__topology_finish(&t0);
        return roo__cl_fatal(cl, "the initializer's partition move does not list this worker");
    }
    for (uint32_t p = 0; p < t0.partitions; p++)
        if (t0.owner[p] == (uint32_t)me)
            t0.owner[p] = 0;
    t0.version = m->epoch - 1;
    roo__log_info("joining cluster %016llx (%zu workers after the move, %u partitions)",
                  (unsigned long long)t0.cluster_id, t0.nworkers, t0.partitions);
    rc = roo__cl_apply_topology(cl, &t0);
    roo__topology_finish(&t0);
    return rc;
}

/* Migrate: take this worker's part in a phase of a partition move. */
static void on_migrate(cluster *cl, const roo__ctl *m)
{
    if (m->phase == ROO__MIG_ABORT) {
        if (cl->has_topology)
            roo__move_on_abort(cl, m->epoch, &m->topology);
        return;
    }
    if (!cl->has_topology && join_table(cl, m) < 0)
        return;
    if (m->phase == ROO__MIG_PRECOPY) {
        if (roo__move_prepare(cl, m->epoch, &m->topology))
            roo__move_precopy(cl, m->precopy_round);
    } else if (m->phase == ROO__MIG_HOLD) {
        roo__move_begin(cl, m->epoch, &m->topology);
    } else if (m->phase == ROO__MIG_TRANSFER && cl->mig.active && m->epoch == cl->mig.epoch) {
        roo__move_transfer(cl);
    }
}

/* The initializer's figures for every worker, for a status query we forwarded. */
static void on_status_reply(cluster *cl, const roo__ctl *m)
{
    query *q = roo__ext_status_find(cl, m->query_id);

    if (!q)
        return;
    for (size_t i = 0; i < m->nstats; i++) {
        int64_t w = roo__cl_worker_index(cl, m->stats[i].name);
        if (w >= 0 && (uint32_t)w != cl->self)
            roo__ext_status_set(q, (uint32_t)w, &m->stats[i]);
    }
    roo__ext_status_complete(cl, q);
}

static void to_init_frame(roo__fconn *fc, const uint8_t *payload, size_t len)
{
    cluster *cl = fc->data;
    roo__ctl m, r = { .worker_name = (char *)cl->name };
    roo__worker_stats mine;

    if (roo__wire_ctl_decode(payload, len, &m) < 0) {
        roo__log_warn("control link to the initializer: malformed frame; reconnecting");
        roo__fconn_close(fc);
        cl->to_init_open = cl->to_init_active = false;
        roo__joiner_connect_later(cl);
        return;
    }
    switch (m.kind) {
    case ROO__CTL_REFUSE:
        on_refuse(cl, fc, &m);
        break;
    case ROO__CTL_TOPOLOGY:
        /* A table older than our move from the initializer: it does not run that move (it
         * restarted before storing it). If it still does, the Migrate that follows says so.
         * (A move aborted with roo-ctl looks the same from here: it counts as abandoned.) */
        if (cl->has_topology && cl->mig.active && m.topology.version < cl->mig.epoch &&
            roo__move_abandon(cl, "the initializer restarted before it was stored"))
            roo__clm_move_ended(cl, CLM_MOVE_ABANDONED);
        if (!cl->has_topology)
            roo__log_info("received the topology of cluster %016llx: %zu workers, %u partitions",
                          (unsigned long long)m.topology.cluster_id, m.topology.nworkers,
                          m.topology.partitions);
        roo__cl_apply_topology(cl, &m.topology);
        break;
    case ROO__CTL_CLUSTER_READY:
        roo__cl_go_ready(cl);
        break;
    case ROO__CTL_MIGRATE:
        on_migrate(cl, &m);
        break;
    case ROO__CTL_STATUS_QUERY:
        roo__cl_own_stats(cl, &mine);
        r.kind = ROO__CTL_STATUS_REPLY;
        r.query_id = m.query_id;
        r.stats = &mine;
        r.nstats = 1;
        roo__cl_send_ctl(fc, &r);
        break;
    case ROO__CTL_STATUS_REPLY:
        on_status_reply(cl, &m);
        break;
    case ROO__CTL_SHUTDOWN:
        roo__cl_stop_locally(cl, m.reason[0] ? m.reason : "requested by the initializer");
        break;
    case ROO__CTL_DRAIN_QUERY:
        r.kind = ROO__CTL_DRAIN_REPORT;
        r.round = m.round;
        r.idle = roo__cl_local_idle(cl);
        r.sent = roo__links_sent_total(cl);
        r.received = cl->received;
        roo__cl_send_ctl(fc, &r);
        break;
    case ROO__CTL_EXIT:
        cl->e->exit_received = true;
        if (!cl->e->cluster_stopping)
            roo__cl_stop_locally(cl, "the initializer said exit");
        roo__io_check_drained(cl->e);
        break;
    default:
        roo__log_warn("control link to the initializer: unexpected %s message; ignored",
                      roo__wire_ctl_name(m.kind));
        break;
    }
    roo__wire_ctl_finish(&m);
}

static void to_init_closed(roo__fconn *fc, int err)
{
    cluster *cl = fc->data;

    cl->to_init_open = cl->to_init_active = false;
    cl->conns_ready_sent = false;
    if (cl->refused || cl->e->exit_received)
        return;
    roo__log_warn("control link to the initializer lost%s%s; reconnecting", err ? ": " : "",
                  err ? roo_strerror(err) : "");
    roo__backoff_reset(&cl->ctl_retry);
    roo__joiner_connect_later(cl);
}

/* roo__cl_listen_at, on the io thread: also watch the listener. */
static int bind_local(cluster *cl, const roo__addr *a, int *fd, roo__io *io, roo__io_cb cb,
                      char *adv, size_t advcap, const char *what)
{
    char msg[512];
    int rc = roo__cl_listen_at(cl, a, fd, adv, advcap, what, msg, sizeof(msg));

    if (rc < 0) {
        roo__log_error("%s", msg);
        return rc;
    }
    io->cb = cb;
    io->data = cl;
    roo__io_start(cl->e->io_loop, io, *fd, EPOLLIN);
    roo__clm_listening(cl);
    return 0;
}

static void to_init_connected(roo__fconn *fc, int err)
{
    cluster *cl = fc->data;
    roo__ctl m = { .kind = ROO__CTL_HELLO };

    if (err == ROO_EAUTH && !cl->has_topology) {
        /* A new worker with the wrong secret (or none): nothing will change by waiting. */
        char why[700];
        cl->to_init_active = false;
        snprintf(why, sizeof(why),
                 "the worker at %s does not prove this worker's cluster secret: give every "
                 "worker the same --cluster-secret FILE (or none, on loopback)",
                 fc->peer);
        roo__cl_fatal(cl, why);
        return;
    }
    if (err) {
        cl->to_init_active = false;
        if (roo__backoff_failed(&cl->ctl_retry))
            roo__log_info("initializer at %s not reachable yet (%s); retrying with backoff",
                          fc->peer, roo_strerror(err));
        roo__joiner_connect_later(cl);
        return;
    }
    if (!cl->key.secret && !roo__tcp_is_loopback(fc->io.fd, false)) {
        char why[700];
        snprintf(why, sizeof(why),
                 "refusing to join the cluster at %s without a cluster secret: it is not on "
                 "this host; give every worker and roo-ctl the same --cluster-secret FILE "
                 "(README, Security)",
                 fc->peer);
        roo__cl_fatal(cl, why);
        return;
    }
    roo__backoff_reset(&cl->ctl_retry);
    cl->to_init_open = true;
    if (cl->need_bind_local) {
        /* No --my-control/--my-data: listen on the address we reach the initializer from. */
        char local[300];
        roo__addr a;
        roo__fconn_local(fc, local, sizeof(local));
        if (roo__addr_parse(local, &a) < 0) {
            roo__cl_fatal(cl, "cannot determine this worker's own address");
            return;
        }
        snprintf(a.port, sizeof(a.port), "0");
        if (cl->ctl_lfd < 0 &&
            bind_local(cl, &a, &cl->ctl_lfd, &cl->ctl_lio, roo__cl_ctl_listen_cb, cl->my_control,
                       sizeof(cl->my_control), "--my-control") < 0) {
            roo__cl_fatal(cl, "cannot listen for control connections");
            return;
        }
        if (cl->data_lfd < 0 &&
            bind_local(cl, &a, &cl->data_lfd, &cl->data_lio, roo__cl_data_listen_cb, cl->my_data,
                       sizeof(cl->my_data), "--my-data") < 0) {
            roo__cl_fatal(cl, "cannot listen for data connections");
            return;
        }
        cl->need_bind_local = false;
    }
    {
        /* Listening on a wildcard (0.0.0.0 / ::): others reach us at the address we reach
         * the initializer from. */
        char local[300];
        roo__fconn_local(fc, local, sizeof(local));
        roo__cl_advertise_wild(cl->my_control, sizeof(cl->my_control), local);
        roo__cl_advertise_wild(cl->my_data, sizeof(cl->my_data), local);
        roo__cl_advertise_wild(cl->my_external, sizeof(cl->my_external), local);
    }
    m.protocol_version = roo__cl_protocol_version();
    m.app_name = cl->e->app->name;
    m.roo_version = ROO_VERSION_STRING;
    m.worker.name = (char *)cl->name;
    m.worker.control_addr = cl->my_control;
    m.worker.data_addr = cl->my_data;
    m.worker.threads = cl->e->nshards;
    m.worker.external_addr = cl->my_external;
    m.cluster_id = cl->has_topology ? cl->topo.cluster_id : 0;
    m.join = cl->e->cfg.join;
    m.join_count = cl->e->cfg.worker_count;
    roo__log_info("connected to %s at %s; identifying as '%s' (control %s, data %s)",
                  cl->e->cfg.join && !cl->has_topology ? "the cluster" : "the initializer",
                  fc->peer, cl->name, cl->my_control, cl->my_data);
    roo__cl_send_ctl(fc, &m);
    roo__cl_check_conns_ready(cl);
}

static const roo__fconn_ops to_init_ops = {
    .on_frame = to_init_frame,
    .on_close = to_init_closed,
    .on_connect = to_init_connected,
};

void roo__joiner_retry_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;
    int rc;

    (void)loop;
    if (cl->to_init_active || cl->refused || cl->e->exit_received)
        return;
    roo__fconn_finish(&cl->to_init);
    rc = roo__fconn_connect(&cl->to_init, cl->e->io_loop, &cl->e->cfg.control,
                            ROO__CONTROL_FRAME_MAX, &to_init_ops, cl);
    if (rc == 0)
        roo__fconn_auth(&cl->to_init, &cl->key, ROO__CHANNEL_CONTROL);
    if (rc == ROO_ENONAME && !cl->has_topology) {
        /* A new worker with a name that does not resolve: waiting will not fix a typo. */
        char why[400], a[300];
        snprintf(why, sizeof(why), "cannot resolve '%s' (%s): %s",
                 roo__addr_str(&cl->e->cfg.control, a, sizeof(a)),
                 cl->e->cfg.join ? "--join" : "--control", roo_strerror(rc));
        roo__cl_fatal(cl, why);
        return;
    }
    if (rc < 0) {
        if (roo__backoff_failed(&cl->ctl_retry))
            roo__log_info("initializer not reachable yet (%s); retrying with backoff",
                          roo_strerror(rc));
        roo__joiner_connect_later(cl);
        return;
    }
    cl->to_init_active = true;
}

void roo__joiner_connect_later(cluster *cl)
{
    roo__backoff_schedule(cl->e->io_loop, &cl->ctl_retry);
}

void roo__joiner_heartbeat_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;

    (void)loop;
    roo__move_watch(cl);
    roo__cl_sample_rates(cl); /* every worker, the initializer too: each reports its rates */
    if (cl->to_init_open) {
        roo__worker_stats mine;
        roo__ctl m = { .kind = ROO__CTL_HEARTBEAT, .nstats = 1 };
        roo__cl_own_stats(cl, &mine);
        m.stats = &mine;
        roo__cl_send_ctl(&cl->to_init, &m);
    }
    roo__timer_start(cl->e->io_loop, &cl->heartbeat, HEARTBEAT_MS);
}
