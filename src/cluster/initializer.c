/* initializer.c: the initializer's part: formation, driving moves, the coordinated stop.
 *
 * DESIGN
 * One worker, the initializer, makes every decision that needs exactly one maker. Control
 * is a star around it: every other worker keeps one control link to it (joiner.c), and the
 * control frames that arrive on its listener are handled here.
 *   Formation  wait for --worker-count workers to say Hello; check protocol version,
 *              application and names; form the table (partition p -> worker p mod N), store
 *              it, then send it; when every worker has its data links up, ClusterReady.
 *              Later Hellos are members coming back (refreshed addresses, the table again)
 *              or --join workers, which wait until enough of them have asked.
 *   Moves      (co_*, roo__coord_*) compute the new table (placement.c), run the phases
 *              PRECOPY, HOLD, TRANSFER with every live worker reporting each, then store
 *              the new table (the commit point) and send it. A restarted initializer resumes
 *              from the pending table in its directory; a worker that comes back during a
 *              move is sent the current phase again. roo-ctl move --abort gives a move up
 *              before its commit point (roo__coord_abort).
 *   Stop       roo-ctl shutdown: Shutdown to every worker, then drain rounds every 50 ms
 *              until two in a row find every worker idle with unchanged counts, then Exit.
 * The initializer is also an ordinary worker: it takes part in moves (move.c) and its own
 * reports go straight to roo__coord_report.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "cluster/cluster-int.h"

static void refuse(aconn *c, const char *reason);
static void co_commit(cluster *cl);
static void co_maybe_grow(cluster *cl);

/* Send m to every worker with a live control link to us (the initializer). */
void roo__coord_broadcast(cluster *cl, const roo__ctl *m)
{
    for (uint32_t w = 1; cl->has_topology && w < cl->topo.nworkers; w++)
        if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
            roo__cl_send_ctl(&cl->peers[w].ctl->fc, m);
}

void roo__coord_check_ready(cluster *cl)
{
    roo__ctl m = { .kind = ROO__CTL_CLUSTER_READY };

    if (cl->ready || !cl->self_conns_ready)
        return;
    for (uint32_t w = 1; w < cl->topo.nworkers; w++)
        if (!cl->peers[w].conns_ready && !cl->peers[w].left)
            return;
    m.cluster_id = cl->topo.cluster_id;
    roo__coord_broadcast(cl, &m);
    if (!cl->topo.complete) {
        /* From now on a member without the cluster's id has lost its state: refuse it. */
        cl->topo.complete = true;
        roo__cl_persist_topology(cl);
    }
    roo__cl_go_ready(cl);
}

static void refuse(aconn *c, const char *reason)
{
    roo__ctl m = { .kind = ROO__CTL_REFUSE, .reason = (char *)reason };

    roo__log_warn("refused %s: %s", c->fc.peer, reason);
    roo__clm_refused(c->cl, CONN_CONTROL);
    roo__cl_send_ctl(&c->fc, &m);
    roo__fconn_close_after_flush(&c->fc);
}

static void form_cluster(cluster *cl)
{
    roo__topology t = { 0 };
    roo__ctl m = { .kind = ROO__CTL_TOPOLOGY };

    t.cluster_id = roo__cl_random_id();
    t.app_name = cl->e->app->name;
    t.partitions = cl->e->cfg.partitions;
    t.nworkers = cl->njoined;
    t.workers = roo__xcalloc(cl->njoined, sizeof(*t.workers));
    for (size_t i = 0; i < cl->njoined; i++)
        t.workers[i] = cl->joined[i].info;
    t.owner = roo__xcalloc(t.partitions, sizeof(uint32_t));
    roo__placement_form(t.partitions, (uint32_t)t.nworkers, t.owner);
    t.version = 1;
    roo__log_info("all %zu workers identified: forming cluster %016llx with %u partitions",
                  t.nworkers, (unsigned long long)t.cluster_id, t.partitions);
    if (roo__cl_apply_topology(cl, &t) < 0)
        goto out;
    for (size_t i = 1; i < cl->njoined; i++) {
        cl->peers[i].ctl = cl->joined[i].ctl;
        cl->joined[i].ctl->peer = (int)i;
    }
    /* Sent once stored here (roo__cluster_meta_done): a restarted initializer must know the
     * cluster any member may already have. */
    cl->send_topology_when_stored = true;
    cl->send_topology_seq = cl->meta_queued;
    (void)m;
out:
    free(t.workers);
    free(t.owner);
}

/* Takes part in the move under way: a live worker before it, or one it adds. */
static bool co_participant(const cluster *cl, uint32_t w)
{
    if (w < cl->topo.nworkers)
        return !cl->topo.workers[w].left;
    return w < cl->mig.next.nworkers && !cl->mig.next.workers[w].left;
}

static void co_send(cluster *cl, uint32_t w, uint32_t phase)
{
    roo__ctl m = { .kind = ROO__CTL_MIGRATE,
                   .epoch = cl->mig.epoch,
                   .phase = phase,
                   .topology = cl->mig.next,
                   .precopy_round = phase == ROO__MIG_PRECOPY ? cl->co.round : 0 };

    if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
        roo__cl_send_ctl(&cl->peers[w].ctl->fc, &m);
}

static void co_send_all(cluster *cl, uint32_t phase)
{
    for (uint32_t w = 0; w < cl->mig.next.nworkers; w++)
        if (w != cl->self && co_participant(cl, w))
            co_send(cl, w, phase);
}

static void co_phase(cluster *cl, uint32_t phase)
{
    if (phase != cl->co.phase)
        cl->co.phase_ns = roo__now_ns();
    cl->co.phase = phase;
    memset(cl->co.reported, 0, cl->mig.next.nworkers * sizeof(bool));
    if (phase == ROO__MIG_HOLD) {
        /* Nobody holds before our own pending table is stored: a restarted initializer then
         * always finds the move that the others hold for, and resumes it (otherwise it
         * could start another move under the same version while they wait for ever). */
        roo__move_hold(cl);
        cl->co.hold_waiting = !cl->mig.pending_stored;
        if (!cl->co.hold_waiting)
            co_send_all(cl, phase);
        return;
    }
    if (phase == ROO__MIG_PRECOPY && ++cl->co.round == 0)
        cl->co.round = 1; /* a new run: chunks of an earlier one are told apart */
    co_send_all(cl, phase);
    if (phase == ROO__MIG_PRECOPY)
        roo__move_precopy(cl, cl->co.round);
    else
        roo__move_transfer(cl);
}

/* Worker w of `to` is added by the move (grow) or leaves in it (shrink). */
static bool moves_worker(const roo__topology *from, const roo__topology *to, size_t w, bool grow)
{
    if (grow)
        return w >= from->nworkers;
    return w < from->nworkers && !from->workers[w].left && to->workers[w].left;
}

void roo__coord_describe(const roo__topology *from, const roo__topology *to, char *buf, size_t cap)
{
    const size_t head = (size_t)snprintf(buf, cap, "resumed: ");
    size_t len = head;

    for (int grow = 1; grow >= 0; grow--) {
        unsigned n = 0;
        for (size_t w = 0; w < to->nworkers; w++)
            n += moves_worker(from, to, w, grow);
        if (!n || len >= cap)
            continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s by %u worker(s) (",
                                len > head ? ", " : "", grow ? "growing" : "shrinking", n);
        for (size_t w = 0, k = 0; w < to->nworkers && len < cap; w++)
            if (moves_worker(from, to, w, grow))
                len += (size_t)snprintf(buf + len, cap - len, "%s%s", k++ ? ", " : "",
                                        to->workers[w].name);
        if (len < cap)
            len += (size_t)snprintf(buf + len, cap - len, ")");
    }
    if (len == head && len < cap)
        snprintf(buf + len, cap - len, "partition move");
}

void roo__coord_watch(cluster *cl, int64_t secs)
{
    static const char *const phases[] = { "", "hold", "transfer", "pre-copy" };
    char names[300];
    size_t len = 0;

    if (!cl->co.running)
        return;
    names[0] = '\0';
    for (uint32_t w = 0; w < cl->mig.next.nworkers && len < sizeof(names); w++)
        if (co_participant(cl, w) && !cl->co.reported[w])
            len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", len ? ", " : "",
                                    cl->mig.next.workers[w].name);
    roo__log_warn("partition move %llu: after %lld s, waiting for the %s reports of: %s%s",
                  (unsigned long long)cl->mig.epoch, (long long)secs,
                  cl->co.phase < 4 ? phases[cl->co.phase] : "?", names,
                  cl->co.hold_waiting ? " (the table is not stored here yet)" : "");
}

void roo__coord_pending_stored(cluster *cl)
{
    if (!cl->co.running || !cl->co.hold_waiting || cl->co.phase != ROO__MIG_HOLD)
        return;
    cl->co.hold_waiting = false;
    co_send_all(cl, ROO__MIG_HOLD);
}

static void hold_timer_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;

    (void)loop;
    if (cl->co.running && cl->co.phase == ROO__MIG_PRECOPY)
        co_phase(cl, ROO__MIG_HOLD);
}

/*
 * The pre-copy is done: hold. ROO_TEST_HOLD_DELAY_MS waits first, so that the tests can
 * kill the initializer before it stores the move; nothing else should set it.
 */
static void hold_after_test_delay(cluster *cl)
{
    const char *d = getenv("ROO_TEST_HOLD_DELAY_MS");
    uint64_t ms = 0;

    if (!d || roo__parse_uint(d, 0, 600000, &ms) < 0 || ms == 0) {
        co_phase(cl, ROO__MIG_HOLD);
        return;
    }
    roo__log_info("partition move %llu: holding in %llu ms (test delay)",
                  (unsigned long long)cl->mig.epoch, (unsigned long long)ms);
    cl->co.hold_timer.cb = hold_timer_cb;
    cl->co.hold_timer.data = cl;
    roo__timer_start(cl->e->io_loop, &cl->co.hold_timer, (int64_t)ms);
}

void roo__coord_report(cluster *cl, uint32_t w, uint64_t epoch, uint32_t phase)
{
    if (!cl->co.running || !cl->mig.active || epoch != cl->mig.epoch || phase != cl->co.phase ||
        w >= cl->mig.next.nworkers)
        return;
    cl->co.reported[w] = true;
    for (uint32_t k = 0; k < cl->mig.next.nworkers; k++)
        if (co_participant(cl, k) && !cl->co.reported[k])
            return;
    if (phase == ROO__MIG_PRECOPY) {
        roo__log_info("partition move %llu: pre-copy done (%lld ms); holding",
                      (unsigned long long)cl->mig.epoch,
                      (long long)((roo__now_ns() - cl->co.started_ns) / 1000000));
        hold_after_test_delay(cl);
    } else if (phase == ROO__MIG_HOLD) {
        roo__log_info("partition move %llu: every worker holds; transferring state",
                      (unsigned long long)cl->mig.epoch);
        co_phase(cl, ROO__MIG_TRANSFER);
    } else {
        co_commit(cl);
    }
}

/* Tell worker w (every worker: w UINT32_MAX) which move we run, so that it drops others. */
static void co_send_abort(cluster *cl, uint32_t w)
{
    roo__ctl m = { .kind = ROO__CTL_MIGRATE,
                   .phase = ROO__MIG_ABORT,
                   .epoch = cl->co.running ? cl->mig.epoch : 0,
                   .topology = cl->co.running ? cl->mig.next : cl->topo };

    if (w == UINT32_MAX)
        roo__coord_broadcast(cl, &m);
    else if (w < cl->npeers && cl->peers[w].ctl && !cl->peers[w].ctl->dead)
        roo__cl_send_ctl(&cl->peers[w].ctl->fc, &m);
}

/* An identity record is stored: an abort waiting for it goes out (see roo__coord_abort). */
void roo__coord_meta_stored(cluster *cl, uint64_t seq)
{
    json_t *root;

    if (!cl->co.abort_unsent || seq < cl->co.abort_seq)
        return;
    cl->co.abort_unsent = false;
    co_send_abort(cl, UINT32_MAX);
    if (!cl->co.abort_conn) {
        co_maybe_grow(cl);
        return;
    }
    root = roo__json_object();
    roo__json_set(root, "aborted", roo__json_str(cl->co.abort_what));
    roo__json_set(root, "table_version", roo__json_u64(cl->topo.version));
    roo__ext_reply_line(cl, cl->co.abort_conn, root);
    cl->co.abort_conn = 0;
    co_maybe_grow(cl); /* joiners that came meanwhile */
}

/*
 * roo-ctl move --abort: give up the move under way, so that a move waiting on a worker
 * that is gone (a joiner that vanished, a worker down for good) does not stall the cluster.
 * Only before the commit point: co.running ends when the next table is stored. Nothing
 * was switched to. In the pre-copy no worker holds yet: each drops the move when it gets
 * the current table (as after an initializer restart). Past it, workers hold: the abort is
 * made durable first (our pending table cleared on disk), then sent (Migrate ABORT), and
 * each worker re-routes what it held through the table before the move (move.c). Workers
 * the move was adding are refused. Returns 1 (aborted in the pre-copy: the caller
 * answers), 0 (reply_conn, if not 0, is answered once the abort is stored) or -ENOENT.
 */
int roo__coord_abort(cluster *cl, const char *why, uint64_t reply_conn)
{
    roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY, .topology = cl->topo };
    bool held = cl->co.phase != ROO__MIG_PRECOPY || cl->mig.holding;
    char msg[300];

    if (!cl->co.running)
        return -ENOENT;
    snprintf(msg, sizeof(msg), "the partition move that was adding this worker was aborted (%s)",
             why);
    for (uint32_t w = (uint32_t)cl->topo.nworkers; w < cl->mig.next.nworkers; w++)
        if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
            refuse(cl->peers[w].ctl, msg);
    roo__timer_stop(cl->e->io_loop, &cl->co.hold_timer);
    cl->co.running = false;
    snprintf(msg, sizeof(msg), "%s: aborted (%s); the table stays at version %llu", cl->co.what,
             why, (unsigned long long)cl->topo.version);
    for (unsigned i = 0; i < SHRINK_WAITERS; i++) {
        if (cl->co.ext_conns[i])
            roo__ext_reply(cl, cl->co.ext_conns[i], false, NULL, msg);
        cl->co.ext_conns[i] = 0;
    }
    roo__log_warn("%s", msg);
    if (!held) {
        if (roo__move_abandon(cl, why))
            roo__clm_move_ended(cl, CLM_MOVE_ABORTED);
        roo__coord_broadcast(cl, &tm);
        return 1;
    }
    /* Its transfer's chunks (told apart by their move's number only, unlike the pre-copy's
     * rounds) may still be on their way: the next move gets a higher number. */
    if (cl->mig.epoch > cl->co.min_version)
        cl->co.min_version = cl->mig.epoch;
    if (roo__move_abort(cl, why))
        roo__clm_move_ended(cl, CLM_MOVE_ABORTED);
    cl->co.abort_unsent = true;
    cl->co.abort_seq = cl->meta_queued;
    cl->co.abort_conn = reply_conn;
    snprintf(cl->co.abort_what, sizeof(cl->co.abort_what), "%s", cl->co.what);
    return 0;
}

/* Rebalance t for its live workers (placement.c); false if it cannot be done. */
bool roo__coord_rebalance(roo__topology *t)
{
    bool *left = roo__xcalloc(t->nworkers, sizeof(bool));
    int rc;

    for (size_t w = 0; w < t->nworkers; w++)
        left[w] = t->workers[w].left;
    rc = roo__placement_rebalance(t->partitions, (uint32_t)t->nworkers, left, t->owner);
    free(left);
    if (rc < 0)
        roo__log_error("cannot rebalance %u partitions over %zu workers: %s", t->partitions,
                       t->nworkers, roo_strerror(rc));
    return rc >= 0;
}

void roo__coord_begin(cluster *cl, roo__topology *t, const char *what)
{
    uint32_t moving = 0;

    for (uint32_t p = 0; p < t->partitions; p++)
        moving += t->owner[p] != (p < cl->topo.partitions ? cl->topo.owner[p] : UINT32_MAX);
    /* Above an aborted move's number too: chunks of it may still be on their way. */
    t->version =
        (cl->topo.version > cl->co.min_version ? cl->topo.version : cl->co.min_version) + 1;
    if (!roo__move_prepare(cl, t->version, t))
        return;
    cl->co.running = true;
    cl->co.started_ns = roo__now_ns();
    cl->co.phase = 0;
    /* Rounds start anywhere: a move abandoned by an earlier run of this initializer may have
     * had the same version, and its chunks may still be in flight. */
    if (getrandom(&cl->co.round, sizeof(cl->co.round), 0) != sizeof(cl->co.round))
        cl->co.round = (uint32_t)cl->co.started_ns;
    snprintf(cl->co.what, sizeof(cl->co.what), "%s", what);
    free(cl->co.reported);
    cl->co.reported = roo__xcalloc(t->nworkers, sizeof(bool));
    roo__log_info("%s: moving %u of %u partitions (table version %llu)", what, moving,
                  t->partitions, (unsigned long long)t->version);
    co_phase(cl, ROO__MIG_PRECOPY);
}

/* Enough joiners wait and nothing else moves: add them. */
static void co_maybe_grow(cluster *cl)
{
    roo__topology t;
    char what[160];
    size_t n = cl->co.njoiners, len;

    if (cl->co.running || cl->mig.active || cl->co.abort_unsent || !n || n < cl->co.want ||
        !cl->ready || cl->draining)
        return; /* (an abort not sent yet: the workers would take the next move for it) */
    if (cl->topo.nworkers + n > MAX_WORKERS) {
        for (size_t i = 0; i < n; i++)
            refuse(cl->co.joiners[i].ctl, "the cluster cannot list that many workers");
        return;
    }
    roo__topology_copy(&cl->topo, &t);
    t.workers = roo__xrealloc(t.workers, (t.nworkers + n) * sizeof(*t.workers));
    len = (size_t)snprintf(what, sizeof(what), "growing by %zu worker(s) (", n);
    for (size_t i = 0; i < n; i++) {
        t.workers[t.nworkers + i] = cl->co.joiners[i].info;
        if (len < sizeof(what))
            len += (size_t)snprintf(what + len, sizeof(what) - len, "%s%s", i ? ", " : "",
                                    cl->co.joiners[i].info.name);
    }
    if (len < sizeof(what))
        snprintf(what + len, sizeof(what) - len, ")");
    t.nworkers += n;
    if (roo__coord_rebalance(&t))
        roo__coord_begin(cl, &t, what);
    if (cl->mig.active) {
        for (size_t i = 0; i < n; i++) {
            uint32_t w = (uint32_t)(t.nworkers - n + i);
            cl->peers[w].ctl = cl->co.joiners[i].ctl;
            cl->co.joiners[i].ctl->peer = (int)w;
            co_send(cl, w, cl->co.phase);
        }
    }
    roo__topology_finish(&t); /* the joiners' infos went into it */
    cl->co.njoiners = 0;
    cl->co.want = 0;
}

static void co_commit(cluster *cl)
{
    roo__topology t;
    int64_t ms = (roo__now_ns() - cl->co.started_ns) / 1000000;

    roo__topology_copy(&cl->mig.next, &t);
    t.complete = true;
    cl->co.running = false;
    /* The commit point: stored here, then sent (roo__cluster_meta_done). */
    roo__cl_apply_topology(cl, &t);
    cl->send_topology_when_stored = true;
    cl->send_topology_seq = cl->meta_queued;
    roo__log_info("%s: done in %lld ms; table version %llu", cl->co.what, (long long)ms,
                  (unsigned long long)t.version);
    for (unsigned i = 0; i < SHRINK_WAITERS; i++) {
        if (cl->co.ext_conns[i]) {
            json_t *done = roo__json_object();
            roo__json_set(done, "done", json_true());
            roo__json_set(done, "table_version", roo__json_u64(t.version));
            roo__json_set(done, "ms", roo__json_u64((uint64_t)ms));
            roo__ext_reply_line(cl, cl->co.ext_conns[i], done);
        }
        cl->co.ext_conns[i] = 0;
    }
    roo__topology_finish(&t);
    co_maybe_grow(cl);
}

/* A worker came back (or a joiner reconnected) during a move: bring it up to date. */
static void co_rejoined(cluster *cl, uint32_t w)
{
    if (!cl->co.running)
        return;
    if (cl->co.phase == ROO__MIG_PRECOPY) {
        /* Whatever it had copied may be gone: the whole pre-copy runs again. */
        co_phase(cl, ROO__MIG_PRECOPY);
        return;
    }
    if (!cl->co.hold_waiting) /* else it goes to everyone once our pending table is stored */
        co_send(cl, w, ROO__MIG_HOLD);
    if (cl->co.phase == ROO__MIG_TRANSFER) {
        /* What it had received or sent may be gone: the whole transfer runs again. */
        roo__log_info("partition move %llu: worker %s is back; transferring again",
                      (unsigned long long)cl->mig.epoch, cl->peers[w].info.name);
        co_phase(cl, ROO__MIG_TRANSFER);
    }
}

/* A worker that is not the initializer was asked to take a joiner: name the initializer. */
static void redirect_to_initializer(cluster *cl, aconn *c, const roo__ctl *m)
{
    roo__ctl r = { .kind = ROO__CTL_REFUSE };
    char reason[512];

    snprintf(reason, sizeof(reason),
             "this worker (%s) is not the initializer; contact the "
             "initializer at %s",
             cl->name,
             cl->has_topology ? cl->topo.workers[0].control_addr : "its --control address");
    /* A joiner follows the hint by itself. */
    r.reason = reason;
    r.initializer = cl->has_topology ? cl->topo.workers[0].control_addr : "";
    roo__log_info("worker '%s' asked to join here; sent it to the initializer", m->worker.name);
    roo__cl_send_ctl(&c->fc, &r);
    roo__fconn_close_after_flush(&c->fc);
}

/* A new worker asks to join the running cluster (--join): wait for enough of them, then grow. */
static void hello_joiner(cluster *cl, aconn *c, const roo__ctl *m)
{
    char reason[512];
    int64_t w;

    if (!cl->has_topology || !cl->topo.complete || !cl->ready) {
        refuse(c, "the cluster is still forming; join once it is ready");
        return;
    }
    w = roo__cl_worker_index(cl, m->worker.name);
    if (w >= 0 && (uint32_t)w >= cl->topo.nworkers && cl->co.running &&
        !(cl->peers[w].ctl && !cl->peers[w].ctl->dead)) {
        /* Being added by the move under way, back before it stored anything. */
        c->peer = (int)w;
        cl->peers[w].ctl = c;
        roo__log_info("joining worker '%s' is back from %s", m->worker.name, c->fc.peer);
        co_rejoined(cl, (uint32_t)w);
        return;
    }
    if (w >= 0) {
        snprintf(reason, sizeof(reason), "a worker named '%s' is already in the cluster",
                 m->worker.name);
        refuse(c, reason);
        return;
    }
    if (m->join_count > MAX_WORKERS - cl->topo.nworkers || cl->co.njoiners >= MAX_WORKERS) {
        /* Waiting for more joiners than the cluster can list would stall every grow. */
        snprintf(reason, sizeof(reason),
                 "worker '%s' waits for %u joiners; the cluster can take at most %zu more",
                 m->worker.name, m->join_count, (size_t)MAX_WORKERS - cl->topo.nworkers);
        refuse(c, reason);
        return;
    }
    for (size_t i = 0; i < cl->co.njoiners; i++) {
        if (strcmp(cl->co.joiners[i].info.name, m->worker.name) == 0) {
            snprintf(reason, sizeof(reason), "a worker named '%s' is already waiting to join",
                     m->worker.name);
            refuse(c, reason);
            return;
        }
    }
    cl->co.joiners = roo__xrealloc(cl->co.joiners, (cl->co.njoiners + 1) * sizeof(*cl->co.joiners));
    roo__worker_info_copy(&m->worker, &cl->co.joiners[cl->co.njoiners].info);
    cl->co.joiners[cl->co.njoiners].info.left = false;
    cl->co.joiners[cl->co.njoiners].ctl = c;
    cl->co.njoiners++;
    if (m->join_count > cl->co.want)
        cl->co.want = m->join_count;
    roo__log_info("worker '%s' asks to join from %s (control %s, data %s): %zu of %u joiner(s) "
                  "waiting",
                  m->worker.name, c->fc.peer, m->worker.control_addr, m->worker.data_addr,
                  cl->co.njoiners, cl->co.want ? cl->co.want : 1);
    co_maybe_grow(cl);
}

/* A worker of this name was in the table and left it. */
static bool left_worker(const cluster *cl, const char *name)
{
    for (size_t i = 0; i < cl->topo.nworkers; i++)
        if (cl->topo.workers[i].left && strcmp(cl->topo.workers[i].name, name) == 0)
            return true;
    return false;
}

/* A member of the formed cluster says hello: it restarted, or it is being added by a move. */
static void hello_member(cluster *cl, aconn *c, const roo__ctl *m)
{
    char reason[512];
    int64_t w;

    w = roo__cl_worker_index(cl, m->worker.name);
    if (w < 0 && m->cluster_id == cl->topo.cluster_id) {
        /* Of this cluster but not in its table. It left in a shrink whose switch we stored
         * but lost us before it heard of the switch, or it was joining in a move that our
         * restart abandoned. Either way the table tells it so: it goes, or joins again. */
        roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY, .topology = cl->topo };
        roo__log_info("worker '%s' is back but not in the table (%s); sending it the table",
                      m->worker.name,
                      left_worker(cl, m->worker.name)
                          ? "it left, or it was joining in a move that was abandoned or aborted"
                          : "it was joining in a move that was abandoned or aborted");
        roo__cl_send_ctl(&c->fc, &tm);
        return;
    }
    if (w < 0 || w == cl->self) {
        snprintf(reason, sizeof(reason),
                 "the cluster is complete with %zu workers; worker "
                 "'%s' is not one of them",
                 cl->topo.nworkers, m->worker.name);
        refuse(c, reason);
        return;
    }
    if (m->cluster_id == 0 && !cl->topo.complete) {
        /* The initializer restarted before every member had the table: send it. */
    } else if (m->cluster_id != cl->topo.cluster_id) {
        snprintf(reason, sizeof(reason),
                 "worker '%s' belongs to cluster %016llx but has no "
                 "state for it (%s); was its resilience directory wiped?",
                 m->worker.name, (unsigned long long)cl->topo.cluster_id,
                 m->cluster_id ? "another cluster id" : "no cluster id");
        refuse(c, reason);
        return;
    }
    if (cl->peers[w].ctl && !cl->peers[w].ctl->dead) {
        snprintf(reason, sizeof(reason), "a worker named '%s' is already connected",
                 m->worker.name);
        refuse(c, reason);
        return;
    }
    if (cl->mig.active && (uint32_t)w < cl->topo.nworkers &&
        (strcmp(cl->topo.workers[w].control_addr, m->worker.control_addr) ||
         strcmp(cl->topo.workers[w].data_addr, m->worker.data_addr) ||
         cl->topo.workers[w].threads != m->worker.threads)) {
        /* A new table now would be taken for the move's switch. */
        snprintf(reason, sizeof(reason),
                 "a partition move is under way; start worker '%s' with its previous "
                 "addresses (control %s, data %s) and %u thread(s) until it is done",
                 m->worker.name, cl->topo.workers[w].control_addr, cl->topo.workers[w].data_addr,
                 cl->topo.workers[w].threads);
        refuse(c, reason);
        return;
    }
    /* A member comes back: refresh its addresses, send it the table. */
    c->peer = (int)w;
    cl->peers[w].ctl = c;
    cl->peers[w].conns_ready = false;
    roo__log_info("worker '%s' rejoined from %s", m->worker.name, c->fc.peer);
    if ((uint32_t)w >= cl->topo.nworkers) {
        /* Being added by the move under way: it has what it needs but the move's state. */
        co_rejoined(cl, (uint32_t)w);
        return;
    }
    if (strcmp(cl->topo.workers[w].control_addr, m->worker.control_addr) ||
        strcmp(cl->topo.workers[w].data_addr, m->worker.data_addr) ||
        cl->topo.workers[w].threads != m->worker.threads) {
        roo__topology t;
        roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY };
        roo__topology_copy(&cl->topo, &t);
        roo__worker_info_finish(&t.workers[w]);
        roo__worker_info_copy(&m->worker, &t.workers[w]);
        t.version++;
        roo__cl_apply_topology(cl, &t);
        tm.topology = cl->topo;
        roo__coord_broadcast(cl, &tm);
        roo__topology_finish(&t);
    } else {
        roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY, .topology = cl->topo };
        roo__cl_send_ctl(&c->fc, &tm);
    }
    /* It may hold a move that was aborted while it was away: it drops all but ours. After
     * the table, which switches it if its move was stored (committed) meanwhile. (While an
     * abort waits to be stored, it goes to everyone once it is.) */
    if (!cl->co.abort_unsent)
        co_send_abort(cl, (uint32_t)w);
    co_rejoined(cl, (uint32_t)w);
}

/* Formation: collect --worker-count workers, then form the cluster. */
static void hello_forming(cluster *cl, aconn *c, const roo__ctl *m)
{
    char reason[512];

    if (m->cluster_id != 0) {
        snprintf(reason, sizeof(reason),
                 "worker '%s' already belongs to cluster %016llx; start "
                 "it with a fresh --resilience-dir to join a new cluster",
                 m->worker.name, (unsigned long long)m->cluster_id);
        refuse(c, reason);
        return;
    }
    for (size_t i = 0; i < cl->njoined; i++) {
        if (strcmp(cl->joined[i].info.name, m->worker.name) == 0) {
            snprintf(reason, sizeof(reason),
                     "duplicate worker name '%s': a worker with that "
                     "name already joined",
                     m->worker.name);
            refuse(c, reason);
            return;
        }
    }

    if (cl->njoined >= cl->e->cfg.worker_count) {
        snprintf(reason, sizeof(reason), "the cluster already has its %u workers",
                 cl->e->cfg.worker_count);
        refuse(c, reason);
        return;
    }
    {
        /* An initializer listening on a wildcard: the joiners reached us at this address. */
        char local[300];
        roo__worker_info *me = &cl->joined[0].info;
        roo__fconn_local(&c->fc, local, sizeof(local));
        roo__cl_advertise_wild(cl->my_control, sizeof(cl->my_control), local);
        roo__cl_advertise_wild(cl->my_data, sizeof(cl->my_data), local);
        roo__cl_advertise_wild(cl->my_external, sizeof(cl->my_external), local);
        roo__worker_info_finish(me);
        *me = (roo__worker_info){ roo__xstrdup(cl->name), roo__xstrdup(cl->my_control),
                                  roo__xstrdup(cl->my_data), cl->e->nshards,
                                  roo__xstrdup(cl->my_external) };
    }
    cl->joined = roo__xrealloc(cl->joined, (cl->njoined + 1) * sizeof(*cl->joined));
    roo__worker_info_copy(&m->worker, &cl->joined[cl->njoined].info);
    cl->joined[cl->njoined].ctl = c;
    c->peer = (int)cl->njoined;
    cl->njoined++;
    roo__log_info("worker '%s' identified from %s (control %s, data %s): %zu of %u", m->worker.name,
                  c->fc.peer, m->worker.control_addr, m->worker.data_addr, cl->njoined,
                  cl->e->cfg.worker_count);
    if (cl->njoined == cl->e->cfg.worker_count)
        form_cluster(cl);
}

static void on_hello(cluster *cl, aconn *c, const roo__ctl *m)
{
    char reason[512];

    if (m->protocol_version != roo__cl_protocol_version()) {
        snprintf(reason, sizeof(reason),
                 "worker '%s' speaks protocol version %u (roo %s); this "
                 "cluster speaks version %u (roo %s)",
                 m->worker.name, m->protocol_version, m->roo_version, roo__cl_protocol_version(),
                 ROO_VERSION_STRING);
        refuse(c, reason);
        return;
    }
    if (strcmp(m->app_name, cl->e->app->name) != 0) {
        snprintf(reason, sizeof(reason),
                 "worker '%s' runs application '%s'; this cluster runs "
                 "'%s'",
                 m->worker.name, m->app_name, cl->e->app->name);
        refuse(c, reason);
        return;
    }
    if (cl->mode == ROO__JOINER)
        redirect_to_initializer(cl, c, m);
    else if (m->join && m->cluster_id == 0)
        hello_joiner(cl, c, m);
    else if (cl->has_topology)
        hello_member(cl, c, m);
    else
        hello_forming(cl, c, m);
}

static void send_exit_all(cluster *cl)
{
    roo__ctl m = { .kind = ROO__CTL_EXIT };

    if (cl->exit_sent)
        return;
    cl->exit_sent = true;
    roo__coord_broadcast(cl, &m);
    cl->e->exit_received = true;
    roo__io_check_drained(cl->e);
}

static void drain_round(cluster *cl)
{
    roo__ctl m = { .kind = ROO__CTL_DRAIN_QUERY };

    cl->drain_round++;
    m.round = cl->drain_round;
    for (uint32_t w = 1; w < cl->topo.nworkers; w++) {
        cl->peers[w].drain_reported = false;
        if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
            roo__cl_send_ctl(&cl->peers[w].ctl->fc, &m);
    }
}

void roo__coord_drain_evaluate(cluster *cl)
{
    uint64_t sent = roo__links_sent_total(cl), received = cl->received;
    bool all_idle = roo__cl_local_idle(cl);

    for (uint32_t w = 1; w < cl->topo.nworkers; w++) {
        peer *p = &cl->peers[w];
        if (!p->ctl || p->ctl->dead)
            continue; /* an unreachable worker cannot hold us up */
        if (!p->drain_reported)
            return;
        all_idle = all_idle && p->drain_idle;
        sent += p->drain_sent;
        received += p->drain_received;
    }
    /*
     * Two consecutive rounds, all idle, same counts. Idle includes "every frame sent to
     * another worker acknowledged" (a sender keeps each frame until the receiver committed
     * it), so nothing is in flight; the counts only show that nothing moved in between.
     * (Sent and received need not be equal: a worker that restarted counts from zero.)
     */
    if (all_idle && cl->prev_round_ok && sent == cl->prev_sent && received == cl->prev_received) {
        roo__log_info("cluster drained (%llu messages crossed workers); telling every worker "
                      "to exit",
                      (unsigned long long)sent);
        send_exit_all(cl);
        return;
    }
    cl->prev_round_ok = all_idle;
    cl->prev_sent = sent;
    cl->prev_received = received;
    drain_round(cl);
}

static void drain_timer_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;

    (void)loop;
    if (cl->exit_sent)
        return;
    if (roo__now_ns() >= cl->drain_deadline_ns) {
        roo__log_warn("cluster did not drain within %d s; telling every worker to exit anyway",
                      cl->e->cfg.shutdown_timeout_ms / 1000);
        send_exit_all(cl);
        return;
    }
    roo__coord_drain_evaluate(cl);
    roo__timer_start(cl->e->io_loop, &cl->drain_timer, DRAIN_INTERVAL_MS);
}

void roo__coord_shutdown(cluster *cl, const char *why)
{
    roo__ctl m = { .kind = ROO__CTL_SHUTDOWN, .reason = (char *)why };

    if (cl->draining)
        return;
    cl->draining = true;
    roo__coord_broadcast(cl, &m);
    roo__cl_stop_locally(cl, why);
    cl->drain_deadline_ns = roo__now_ns() + (int64_t)cl->e->cfg.shutdown_timeout_ms * 1000000;
    cl->drain_timer.cb = drain_timer_cb;
    cl->drain_timer.data = cl;
    if (!cl->has_topology || cl->topo.nworkers == 1) {
        send_exit_all(cl);
        return;
    }
    drain_round(cl);
    roo__timer_start(cl->e->io_loop, &cl->drain_timer, DRAIN_INTERVAL_MS);
}

static void ctl_frame_initializer(cluster *cl, aconn *c, roo__ctl *m)
{
    peer *p = c->peer >= 0 && cl->has_topology && (uint32_t)c->peer < cl->npeers &&
                      cl->peers[c->peer].ctl == c
                  ? &cl->peers[c->peer]
                  : NULL;
    query *q;

    switch (m->kind) {
    case ROO__CTL_HELLO:
        on_hello(cl, c, m);
        return;
    case ROO__CTL_CONNECTIONS_READY:
        if (!p)
            break;
        p->conns_ready = true;
        roo__log_info("worker '%s' has its data links up", p->info.name);
        if (!cl->topo.complete) {
            bool all = true;
            for (uint32_t w = 1; w < cl->topo.nworkers; w++)
                all = all && cl->peers[w].conns_ready;
            if (all && cl->ready) {
                cl->topo.complete = true;
                roo__cl_persist_topology(cl);
            }
        }
        if (cl->ready) {
            roo__ctl r = { .kind = ROO__CTL_CLUSTER_READY, .cluster_id = cl->topo.cluster_id };
            roo__cl_send_ctl(&c->fc, &r);
        } else {
            roo__coord_check_ready(cl);
        }
        return;
    case ROO__CTL_HEARTBEAT:
        if (!p && c->peer >= 0 && !cl->has_topology)
            return; /* identified, cluster still forming: nothing to record yet */
        if (!p || !m->nstats)
            break;
        free(p->stats.name);
        p->stats = m->stats[0];
        p->stats.name = roo__xstrdup(m->stats[0].name ? m->stats[0].name : "");
        p->has_stats = true;
        return;
    case ROO__CTL_STATUS_QUERY:
        if (!p)
            break;
        roo__ext_status_start(cl, 0, (int)p->index, m->query_id);
        return;
    case ROO__CTL_STATUS_REPLY:
        if (!p || !m->nstats)
            break;
        q = roo__ext_status_find(cl, m->query_id);
        if (q) {
            roo__ext_status_set(q, p->index, &m->stats[0]);
            roo__ext_status_check(cl, q);
        }
        return;
    case ROO__CTL_SHUTDOWN:
        if (!p)
            break;
        roo__coord_shutdown(cl, m->reason[0] ? m->reason : "requested by a worker");
        return;
    case ROO__CTL_MIGRATE_REPORT:
        if (!p)
            break;
        roo__coord_report(cl, p->index, m->epoch, m->phase);
        return;
    case ROO__CTL_DRAIN_REPORT:
        if (!p || m->round != cl->drain_round)
            return;
        p->drain_reported = true;
        p->drain_idle = m->idle;
        p->drain_sent = m->sent;
        p->drain_received = m->received;
        return;
    default:
        break;
    }
    roo__log_warn("control connection from %s: unexpected %s message%s; closing it", c->fc.peer,
                  roo__wire_ctl_name(m->kind), p ? "" : " before Hello");
    roo__cl_conn_kill(c);
}

void roo__coord_on_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__ctl m;
    int rc = roo__wire_ctl_decode(payload, len, &m);

    if (rc < 0) {
        roo__log_warn("control connection from %s: a %zu-byte frame is not a control message; "
                      "closing it",
                      c->fc.peer, len);
        roo__cl_conn_kill(c);
        return;
    }
    ctl_frame_initializer(cl, c, &m);
    roo__wire_ctl_finish(&m);
}
