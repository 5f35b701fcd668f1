/* cluster.c: formation, partition table, data links, status and coordinated shutdown.
 * See cluster.h for the design; everything here runs on the io thread. */
#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "engine/engine-int.h"
#include "net/fconn.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define HEARTBEAT_MS 1000
#define STATUS_TIMEOUT_MS 1500
#define DRAIN_INTERVAL_MS 50
#define PEER_OUT_HIGH (8u * 1024u * 1024u) /* framed bytes queued on a data link */
#define INBOUND_ROUTES_MAX 16              /* route buffers from one peer waiting in threads */
#define MAX_WORKERS 1024                   /* peers[] capacity: indices never move */
#define CHUNK_BYTES (1u << 20)             /* state bytes per StateChunk */
#define MIG_RETRY_MS 10

typedef enum conn_kind {
    CONN_CONTROL, /* accepted on our control listener */
    CONN_DATA,    /* accepted on our data listener */
    CONN_EXTERNAL,
} conn_kind;

typedef struct roo__cluster cluster;

/* An accepted connection of any kind. Freed in the prepare hook after it closed. */
typedef struct aconn {
    roo__fconn fc;
    cluster *cl;
    conn_kind kind;
    uint64_t id;
    int peer;        /* control: identified worker index; data: sending worker index */
    bool hello_seen; /* data: DataHello received */
    bool dead;
    struct aconn *next;
} aconn;

typedef struct peer {
    cluster *cl;
    uint32_t index;
    roo__worker_info info;
    /* outgoing data link */
    roo__fconn data;
    bool data_open;   /* connected, DataHello queued */
    bool data_active; /* fconn initialized (connecting or open) */
    roo__timer data_retry;
    int data_backoff;
    unsigned data_failures;
    roo__route *q_head, *q_tail;
    uint64_t sent;
    /*
     * Upstream backup: every frame sent to this peer stays in `backlog` (in send order)
     * until the peer acknowledges that the batch is committed on its side; a new connection
     * starts by sending all of it again. sent_frames[] says where each frame ends.
     */
    roo__buf backlog;
    size_t backlog_head;
    struct sent_frame {
        uint32_t thread;
        uint64_t seq;
        size_t end;
        struct roo__shard *origin; /* told when the peer has committed it */
        uint64_t batch_seq;
    } * frames;
    size_t frames_cap, frames_head, frames_len;
    uint64_t *out_seq;   /* per thread of the peer: last sequence number used */
    uint64_t *out_acked; /* per thread of the peer: acknowledged through */
    uint32_t out_threads;
    /* receiving from this peer */
    unsigned inbound_inflight; /* route buffers from this peer in our threads */
    aconn *inbound;            /* its data link to us, for pausing reads and acknowledging */
    uint64_t in_incarnation;
    uint64_t *in_received;  /* per thread of ours: highest sequence number taken */
    uint64_t *in_applied;   /* per thread of ours: committed through */
    bool left;              /* it left the cluster: no link */
    uint64_t chunks_epoch;  /* a move's state was sent on the current link */
    uint64_t precopy_epoch; /* ... and its pre-copy */
    /* initializer only */
    aconn *ctl;
    bool conns_ready;
    bool has_stats;
    roo__worker_stats stats;
    bool drain_reported;
    bool drain_idle;
    uint64_t drain_sent, drain_received;
} peer;

typedef struct joined {
    roo__worker_info info;
    aconn *ctl;
} joined;

typedef struct query {
    uint64_t id;       /* ours */
    uint64_t reply_id; /* the id the requester used (joiner asking the initializer) */
    uint64_t ext_conn; /* external connection id waiting, or 0 */
    int for_peer;      /* joiner waiting for the aggregate, or -1 */
    int64_t deadline_ns;
    bool *have;
    roo__worker_stats *stats;
    bool used;
} query;

#define MAX_QUERIES 16

struct roo__cluster {
    roo__engine *e;
    roo__cluster_mode mode;
    const char *name;

    int ctl_lfd, data_lfd, ext_lfd;
    roo__io ctl_lio, data_lio, ext_lio;
    char my_control[300], my_data[300], my_external[300];

    bool has_topology;
    roo__topology topo;
    uint32_t self;
    peer *peers;
    bool meta_pending;
    bool meta_written;
    bool send_topology_when_stored;
    uint64_t send_topology_seq; /* ... once this identity record is stored */
    bool conns_ready_sent;
    bool self_conns_ready;
    bool ready;

    /* initializer: workers identified during formation (index 0 is us) */
    joined *joined;
    size_t njoined;

    /* joiner: the control link to the initializer */
    roo__fconn to_init;
    bool to_init_active, to_init_open;
    roo__timer ctl_retry;
    int ctl_backoff;
    unsigned ctl_failures;
    bool refused;
    bool need_bind_local; /* bind my-control/my-data once the local IP is known */

    roo__timer heartbeat;
    aconn *conns;
    uint64_t next_conn_id;

    query queries[MAX_QUERIES];
    uint64_t next_query;
    roo__timer query_timer;

    /* coordinated shutdown (initializer) */
    bool draining;
    uint64_t drain_round;
    bool prev_round_ok;
    uint64_t prev_sent, prev_received;
    int64_t drain_deadline_ns;
    roo__timer drain_timer;
    bool exit_sent;

    uint32_t npeers;      /* peers[] in use (allocated for MAX_WORKERS) */
    uint64_t meta_queued; /* identity records queued for the committer */

    /* A partition move, as every worker takes part in it (see "partition moves" below). */
    struct mig_state {
        bool active;
        uint64_t epoch; /* next.version */
        roo__topology next;
        uint64_t pending_meta;
        bool pending_stored;
        unsigned shards_held;
        bool *shard_held;
        uint8_t *incoming; /* partitions moving here */
        uint8_t *imported;
        uint32_t nincoming, nimported;
        bool reported[4]; /* by phase */
        bool precopy_started, holding, transfer_started;
        uint8_t *outgoing; /* partitions moving away from here */
        uint32_t noutgoing;
        uint8_t *precopied; /* new owner: pre-copies committed */
        uint32_t nprecopied;
        bool track_asked, track_valid; /* old owner: threads note changes since the pre-copy */
        unsigned shards_tracking;
        bool *shard_tracking;
        bool dump_asked, dump_done; /* ... and hand them over for the transfer */
        unsigned shards_dumped;
        roo__buf dumped;
        int64_t hold_ns;
        roo__route *held_head, *held_tail; /* messages for moving partitions, until the switch */
        uint64_t *sink_marks;              /* old owner: output to flush before sending state */
        int64_t send_after_ns;             /* tests: hold the transfer back (see below) */
        roo__timer retry;
        int64_t started_ns;
    } mig;
    /* The initializer drives moves. */
    struct {
        bool running;
        uint32_t phase;
        bool *reported; /* per worker of mig.next */
        joined *joiners;
        size_t njoiners;
        uint32_t want;     /* joiners to wait for */
        uint64_t ext_conn; /* roo-ctl shrink waiting for the end (0: none) */
        char what[160];
        int64_t started_ns;
    } co;

    roo__route *route_pool;
    uint64_t received;    /* messages received from other workers */
    uint64_t incarnation; /* random, new at every start: peers restart our sequence numbers */
};

/*
 * The protocol version this worker speaks. ROO_TEST_PROTOCOL_VERSION overrides it so the
 * tests can play a worker of another version; nothing else should set it.
 */
static uint32_t protocol_version(void)
{
    static uint32_t v;
    if (!v) {
        const char *s = getenv("ROO_TEST_PROTOCOL_VERSION");
        uint64_t n;
        v = s && roo__parse_uint(s, 1, UINT32_MAX, &n) == 0 ? (uint32_t)n : ROO__PROTOCOL_VERSION;
    }
    return v;
}

static void send_ctl(roo__fconn *fc, const roo__ctl *m)
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

static void conn_gone(aconn *c, int err);
static void mig_send_all(cluster *cl);
static void mig_send_precopy_all(cluster *cl);
static void mig_retry_later(cluster *cl, int64_t ms);
static void advertise_wild(char *adv, size_t cap, const char *local);
static void ext_reply(cluster *cl, uint64_t conn_id, bool ok, const char *json, const char *error);

/* Close an accepted connection ourselves, with the same bookkeeping as a peer's close. */
static void conn_kill(aconn *c)
{
    if (c->dead)
        return;
    roo__fconn_close(&c->fc);
    conn_gone(c, 0);
}

static int fatal(cluster *cl, const char *why)
{
    roo__log_error("%s", why);
    atomic_store(&cl->e->fatal_status, 1);
    kill(getpid(), SIGTERM);
    return -1;
}

/* A live worker's index, in the table or in the one a move is heading for. */
static int64_t worker_index(const cluster *cl, const char *name)
{
    for (size_t i = 0; i < cl->topo.nworkers; i++)
        if (!cl->topo.workers[i].left && strcmp(cl->topo.workers[i].name, name) == 0)
            return (int64_t)i;
    for (size_t i = cl->topo.nworkers; cl->mig.active && i < cl->mig.next.nworkers; i++)
        if (!cl->mig.next.workers[i].left && strcmp(cl->mig.next.workers[i].name, name) == 0)
            return (int64_t)i;
    return -1;
}

static uint32_t threads_of(const cluster *cl, const roo__topology *t, uint32_t w)
{
    if (w == cl->self)
        return cl->e->nshards;
    return t->workers[w].threads ? t->workers[w].threads : 1;
}

/* ---- statistics ---- */

static void own_stats(cluster *cl, roo__worker_stats *st)
{
    roo__engine *e = cl->e;
    roo__engine_stats es;
    uint64_t routed_out = 0;
    uint32_t owned = 0;
    unsigned conns = 0;

    roo__engine_get_stats(e, &es);
    uint64_t keys = 0;
    for (unsigned i = 0; i < e->nshards; i++) {
        routed_out += atomic_load_explicit(&e->shards[i].routed_out, memory_order_relaxed);
        conns += atomic_load_explicit(&e->shards[i].nconns_pub, memory_order_relaxed);
        keys += atomic_load_explicit(&e->shards[i].keys_pub, memory_order_relaxed);
    }
    for (uint32_t p = 0; cl->has_topology && p < cl->topo.partitions; p++)
        owned += cl->topo.owner[p] == cl->self;
    memset(st, 0, sizeof(*st));
    st->name = (char *)cl->name;
    st->frames_in = es.frames_in;
    st->records_out = es.records_out;
    st->routed_out = routed_out;
    st->routed_in = atomic_load_explicit(&e->routed_in, memory_order_relaxed);
    st->keys = keys;
    st->commits = es.commits;
    st->ready = cl->ready;
    st->partitions_owned = owned;
    st->source_connections = conns;
}

/* ---- routes to threads ---- */

/*
 * Give every thread its partition table. During a move (mig.active) partitions whose owner
 * changes go to "held" destinations: io keeps those messages until the switch. drop marks
 * partitions this worker just gave away.
 */
static void install_routes(cluster *cl, const uint8_t *drop)
{
    roo__engine *e = cl->e;
    const roo__topology *t = &cl->topo, *nx = cl->mig.active ? &cl->mig.next : NULL;
    size_t nw = nx ? nx->nworkers : t->nworkers;
    uint32_t *base = roo__xcalloc(nw, sizeof(uint32_t));
    uint32_t *hbase = roo__xcalloc(nw, sizeof(uint32_t));
    uint32_t ndests = e->nshards;

    for (uint32_t w = 0; w < t->nworkers; w++) {
        if (w == cl->self)
            continue;
        base[w] = ndests;
        ndests += threads_of(cl, t, w);
    }
    for (uint32_t w = 0; nx && w < nw; w++) {
        hbase[w] = ndests;
        ndests += threads_of(cl, nx, w);
    }
    for (unsigned i = 0; i < e->nshards; i++) {
        roo__routes_msg *m = roo__xcalloc(1, sizeof(*m));
        m->node.kind = ROO__Q_ROUTES;
        m->partitions = t->partitions;
        m->ndests = ndests;
        m->dests = roo__xcalloc(ndests, sizeof(roo__dest));
        m->part_dest = roo__xcalloc(t->partitions, sizeof(uint16_t));
        for (uint32_t d = 0; d < e->nshards; d++)
            m->dests[d] = (roo__dest){ cl->self, d, false };
        for (uint32_t w = 0; w < t->nworkers; w++) {
            if (w == cl->self)
                continue;
            for (uint32_t k = 0; k < threads_of(cl, t, w); k++)
                m->dests[base[w] + k] = (roo__dest){ w, k, false };
        }
        for (uint32_t w = 0; nx && w < nw; w++)
            for (uint32_t k = 0; k < threads_of(cl, nx, w); k++)
                m->dests[hbase[w] + k] = (roo__dest){ w, k, true };
        for (uint32_t p = 0; p < t->partitions; p++) {
            uint32_t w = t->owner[p];
            if (w == cl->self)
                m->part_dest[p] = (uint16_t)(p % e->nshards);
            else
                m->part_dest[p] = (uint16_t)(base[w] + p % threads_of(cl, t, w));
        }
        if (nx) {
            m->hold_epoch = cl->mig.epoch;
            m->part_old = roo__xmalloc(t->partitions * sizeof(uint16_t));
            memcpy(m->part_old, m->part_dest, t->partitions * sizeof(uint16_t));
            for (uint32_t p = 0; p < t->partitions; p++) {
                uint32_t w = nx->owner[p];
                if (w != t->owner[p])
                    m->part_dest[p] = (uint16_t)(hbase[w] + p % threads_of(cl, nx, w));
            }
        }
        if (drop) {
            m->drop = roo__xmalloc(t->partitions);
            memcpy(m->drop, drop, t->partitions);
        }
        roo__queue_push(&e->shards[i].inbox, &m->node);
    }
    free(base);
    free(hbase);
}

/* ---- persisting the topology ---- */

static void persist_topology(cluster *cl)
{
    roo__engine *e = cl->e;
    roo__meta_msg *m = roo__xcalloc(1, sizeof(*m));
    int rc;

    m->node.kind = ROO__Q_META;
    m->seq = ++cl->meta_queued;
    rc = roo__engine_encode_meta(e, cl->has_topology ? &cl->topo : NULL,
                                 cl->mig.active ? &cl->mig.next : NULL, &m->encoded);
    if (rc < 0) {
        roo__buf_finish(&m->encoded);
        free(m);
        fatal(cl, "cannot encode the cluster identity record");
        return;
    }
    cl->meta_pending = true;
    roo__queue_push(&e->commit_q, &m->node);
}

/* ---- going ready ---- */

static void go_ready(cluster *cl)
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

static void initializer_check_ready(cluster *cl)
{
    roo__ctl m = { .kind = ROO__CTL_CLUSTER_READY };

    if (cl->ready || !cl->self_conns_ready)
        return;
    for (uint32_t w = 1; w < cl->topo.nworkers; w++)
        if (!cl->peers[w].conns_ready && !cl->peers[w].left)
            return;
    m.cluster_id = cl->topo.cluster_id;
    for (uint32_t w = 1; w < cl->topo.nworkers; w++)
        if (cl->peers[w].ctl)
            send_ctl(&cl->peers[w].ctl->fc, &m);
    if (!cl->topo.complete) {
        /* From now on a member without the cluster's id has lost its state: refuse it. */
        cl->topo.complete = true;
        persist_topology(cl);
    }
    go_ready(cl);
}

/* Our links are up and the topology is stored: say so (once per topology). */
static void check_conns_ready(cluster *cl)
{
    if (!cl->has_topology || !cl->meta_written || !all_links_open(cl))
        return;
    if (cl->mode == ROO__INITIALIZER || cl->mode == ROO__STANDALONE) {
        if (!cl->self_conns_ready) {
            cl->self_conns_ready = true;
            initializer_check_ready(cl);
        }
        return;
    }
    if (!cl->conns_ready_sent && cl->to_init_open) {
        roo__ctl m = { .kind = ROO__CTL_CONNECTIONS_READY, .worker_name = (char *)cl->name };
        send_ctl(&cl->to_init, &m);
        cl->conns_ready_sent = true;
    }
}

/* ---- outgoing data links ---- */

static void peer_connect(peer *p);

/* Tell a thread that a route buffer of its batch is committed where it went. */
static void route_done(struct roo__shard *origin, uint64_t batch_seq)
{
    roo__route_done *d = roo__xmalloc(sizeof(*d));

    d->node.kind = ROO__Q_ROUTE_DONE;
    d->batch_seq = batch_seq;
    roo__queue_push(&origin->inbox, &d->node);
}

static size_t backlog_live(const peer *p)
{
    return p->backlog.len - p->backlog_head;
}

/*
 * Frame queued routes into the backlog (and onto the link when it is up), while the
 * backlog has room. A route buffer goes home as soon as it is framed: the backlog holds the
 * copy that may have to be sent again. A full backlog (the peer down or slow to commit)
 * leaves routes queued, the shards run out of route buffers, and sources pause.
 */
static void peer_pump(peer *p)
{
    cluster *cl = p->cl;

    while (p->q_head && backlog_live(p) < cl->e->cfg.link_backlog_bytes &&
           (!p->data_open || roo__fconn_pending(&p->data) < PEER_OUT_HIGH)) {
        roo__route *r = p->q_head;
        size_t before = p->backlog.len;
        uint64_t seq;
        int rc;

        p->q_head = (roo__route *)r->node.next;
        if (!p->q_head)
            p->q_tail = NULL;
        seq = ++p->out_seq[r->thread];
        rc = roo__wire_data_batch_encode(r->thread, seq, (uint32_t)r->nmsgs, r->data.data,
                                         r->data.len, &p->backlog);
        if (rc < 0) {
            roo__log_error("peer %s: cannot frame %llu messages (%zu bytes): %s; dropped",
                           p->info.name, (unsigned long long)r->nmsgs, r->data.len,
                           roo_strerror(rc));
            p->out_seq[r->thread]--;
            route_done(r->from, r->batch_seq);
        } else {
            if (p->frames_len == p->frames_cap) {
                size_t ncap = p->frames_cap ? p->frames_cap * 2 : 64;
                struct sent_frame *nf = roo__xmalloc(ncap * sizeof(*nf));
                for (size_t i = 0; i < p->frames_len; i++)
                    nf[i] = p->frames[(p->frames_head + i) % p->frames_cap];
                free(p->frames);
                p->frames = nf;
                p->frames_cap = ncap;
                p->frames_head = 0;
            }
            p->frames[(p->frames_head + p->frames_len++) % p->frames_cap] =
                (struct sent_frame){ r->thread, seq, p->backlog.len, r->from, r->batch_seq };
            p->sent += r->nmsgs;
            if (p->data_open)
                roo__buf_append(roo__fconn_outbuf(&p->data), p->backlog.data + before,
                                p->backlog.len - before);
        }
        r->node.kind = ROO__Q_ROUTE_RETURN;
        roo__queue_push(&r->from->inbox, &r->node);
    }
    if (p->data_open)
        roo__fconn_flush(&p->data);
}

/* The peer committed everything for `thread` through `seq`: forget those frames. */
static void peer_acked(peer *p, uint32_t thread, uint64_t seq)
{
    if (thread >= p->out_threads || seq > p->out_seq[thread])
        return;
    if (seq > p->out_acked[thread])
        p->out_acked[thread] = seq;
    while (p->frames_len) {
        struct sent_frame *f = &p->frames[p->frames_head];
        if (f->seq > p->out_acked[f->thread])
            break;
        route_done(f->origin, f->batch_seq);
        p->backlog_head = f->end;
        p->frames_head = (p->frames_head + 1) % p->frames_cap;
        p->frames_len--;
    }
    if (!p->frames_len) {
        p->backlog.len = p->backlog_head = 0;
    } else if (p->backlog_head > (4u << 20) && p->backlog_head * 2 > p->backlog.len) {
        size_t shift = p->backlog_head;
        roo__buf_consume(&p->backlog, shift);
        p->backlog_head = 0;
        for (size_t i = 0; i < p->frames_len; i++)
            p->frames[(p->frames_head + i) % p->frames_cap].end -= shift;
    }
    peer_pump(p);
}

static void peer_data_drain(roo__fconn *fc)
{
    peer_pump(fc->data);
}

static void peer_data_frame(roo__fconn *fc, const uint8_t *payload, size_t len)
{
    peer *p = fc->data;
    roo__data_kind kind = ROO__DATA_NONE;
    roo__data_hello h;
    uint32_t thread = 0, count = 0;
    uint64_t seq = 0;
    roo__buf none = { 0 };

    if (roo__wire_data_decode(payload, len, &kind, &h, &thread, &seq, &count, &none) == 0 &&
        kind == ROO__DATA_ACK) {
        peer_acked(p, thread, seq);
        return;
    }
    roo__buf_finish(&none);
    roo__log_warn("data link to %s: unexpected %zu-byte frame from the receiver; closing it",
                  p->info.name, len);
    roo__fconn_close(fc);
    p->data_open = false;
    p->data_active = false;
    peer_connect(p);
}

static void peer_data_closed(roo__fconn *fc, int err)
{
    peer *p = fc->data;

    p->data_open = false;
    p->data_active = false;
    if (!p->cl->e->io_stopping || p->q_head)
        roo__log_warn("data link to %s (%s) lost%s%s; reconnecting", p->info.name,
                      p->info.data_addr, err ? ": " : "", err ? roo_strerror(err) : "");
    p->data_backoff = BACKOFF_MIN_MS;
    peer_connect(p);
}

static void peer_data_connected(roo__fconn *fc, int err)
{
    peer *p = fc->data;
    cluster *cl = p->cl;
    roo__data_hello h = { .protocol_version = ROO__PROTOCOL_VERSION };

    if (err) {
        p->data_active = false;
        if (p->data_failures++ == 0)
            roo__log_warn("data link to %s (%s): cannot connect: %s; retrying with backoff",
                          p->info.name, p->info.data_addr, roo_strerror(err));
        peer_connect(p);
        return;
    }
    if (p->data_failures)
        roo__log_info("data link to %s (%s) connected", p->info.name, p->info.data_addr);
    p->data_failures = 0;
    p->data_backoff = BACKOFF_MIN_MS;
    h.cluster_id = cl->topo.cluster_id;
    h.incarnation = cl->incarnation;
    snprintf(h.worker, sizeof(h.worker), "%s", cl->name);
    roo__wire_data_hello_encode(&h, roo__fconn_outbuf(fc));
    /* Everything not acknowledged goes again: the peer drops what it already applied. */
    if (backlog_live(p))
        roo__buf_append(roo__fconn_outbuf(fc), p->backlog.data + p->backlog_head, backlog_live(p));
    p->data_open = true;
    peer_pump(p);
    if (cl->mig.active) {
        /* What went on the old link may be lost: send it again. */
        p->chunks_epoch = p->precopy_epoch = 0;
        mig_send_precopy_all(cl);
        mig_send_all(cl);
    }
    check_conns_ready(cl);
}

static const roo__fconn_ops peer_data_ops = {
    .on_frame = peer_data_frame,
    .on_close = peer_data_closed,
    .on_connect = peer_data_connected,
    .on_drain = peer_data_drain,
};

static void peer_retry(roo__loop *loop, roo__timer *t)
{
    peer *p = t->data;
    roo__addr a;
    int rc;

    (void)loop;
    if (p->data_active || p->left || p->cl->e->exit_received)
        return;
    if (roo__addr_parse(p->info.data_addr, &a) < 0) {
        roo__log_error("worker %s has an unusable data address '%s'", p->info.name,
                       p->info.data_addr);
        return;
    }
    roo__fconn_finish(&p->data);
    rc = roo__fconn_connect(&p->data, p->cl->e->io_loop, &a, 64 * 1024, &peer_data_ops, p);
    if (rc < 0) {
        if (p->data_failures++ == 0)
            roo__log_warn("data link to %s (%s): cannot connect: %s; retrying with backoff",
                          p->info.name, p->info.data_addr, roo_strerror(rc));
        peer_connect(p);
        return;
    }
    p->data_active = true;
}

static void peer_connect(peer *p)
{
    p->data_retry.cb = peer_retry;
    p->data_retry.data = p;
    roo__timer_start(p->cl->e->io_loop, &p->data_retry, p->data_backoff);
    p->data_backoff = ROO__MIN(p->data_backoff * 2, BACKOFF_MAX_MS);
}

/* ---- peers ---- */

static void peer_init(cluster *cl, uint32_t w, const roo__worker_info *info)
{
    peer *p = &cl->peers[w];

    p->cl = cl;
    p->index = w;
    p->data_backoff = BACKOFF_MIN_MS;
    roo__worker_info_copy(info, &p->info);
    p->left = info->left;
    p->out_threads = info->threads ? info->threads : 1;
    p->out_seq = roo__xcalloc(p->out_threads, sizeof(uint64_t));
    p->out_acked = roo__xcalloc(p->out_threads, sizeof(uint64_t));
    p->in_received = roo__xcalloc(cl->e->nshards, sizeof(uint64_t));
    p->in_applied = roo__xcalloc(cl->e->nshards, sizeof(uint64_t));
}

/*
 * Follow a worker list that grew (new peers: connect to them), lost members (left: stop
 * linking to them) or moved addresses (reconnect). Before a move's switch (adding_only),
 * only new peers count: leaving workers still hold what the fence waits for.
 */
static void peers_update(cluster *cl, const roo__topology *t, bool adding_only)
{
    for (uint32_t w = 0; w < t->nworkers; w++) {
        peer *p = &cl->peers[w];
        const roo__worker_info *wi = &t->workers[w];
        if (w >= cl->npeers) {
            peer_init(cl, w, wi);
            cl->npeers = w + 1;
            if (w != cl->self && !p->left) {
                p->data_backoff = 0;
                peer_connect(p);
                p->data_backoff = BACKOFF_MIN_MS;
            }
            continue;
        }
        if (w == cl->self || adding_only)
            continue;
        if (wi->left && !p->left) {
            p->left = true;
            roo__timer_stop(cl->e->io_loop, &p->data_retry);
            if (p->data_active)
                roo__fconn_close(&p->data);
            p->data_open = p->data_active = false;
            continue;
        }
        if (p->left)
            continue;
        if (strcmp(p->info.data_addr, wi->data_addr) != 0 && p->data_active) {
            roo__log_info("worker %s moved its data address to %s; reconnecting", p->info.name,
                          wi->data_addr);
            roo__fconn_close(&p->data);
            p->data_open = p->data_active = false;
            p->data_backoff = BACKOFF_MIN_MS;
            roo__worker_info_finish(&p->info);
            roo__worker_info_copy(wi, &p->info);
            peer_connect(p);
            continue;
        }
        roo__worker_info_finish(&p->info);
        roo__worker_info_copy(wi, &p->info);
    }
}

static void mig_finish(cluster *cl);
static void leave_cluster(cluster *cl);

/* ---- applying a topology ---- */

static int apply_topology(cluster *cl, const roo__topology *t)
{
    int64_t self;
    bool first = !cl->has_topology;

    if (t->partitions != cl->e->cfg.partitions && !first) {
        return fatal(cl, "the cluster changed its partition count; refusing");
    }
    if (t->nworkers > MAX_WORKERS)
        return fatal(cl, "the cluster lists more workers than this build can follow");
    if (!first) {
        /* A newer table: addresses changed, or a move finished (the switch). */
        roo__topology old = cl->topo;
        uint8_t *drop = NULL;
        bool moved = false;

        if (t->nworkers < old.nworkers)
            return fatal(cl, "the cluster's worker list shrank; this build cannot follow");
        roo__topology_copy(t, &cl->topo);
        peers_update(cl, t, false);
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
            mig_finish(cl);
        if (moved || t->nworkers != old.nworkers)
            install_routes(cl, drop);
        free(drop);
        roo__topology_finish(&old);
        persist_topology(cl);
        if (cl->topo.workers[cl->self].left)
            leave_cluster(cl);
        return 0;
    }
    self = worker_index(cl, cl->name);
    if (self < 0) {
        for (size_t i = 0; i < t->nworkers; i++)
            if (!t->workers[i].left && strcmp(t->workers[i].name, cl->name) == 0)
                self = (int64_t)i;
    }
    if (self < 0)
        return fatal(cl, "the cluster's topology does not list this worker");
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
            return fatal(cl, msg);
        /* Safe: no thread hashes keys before it gets the routes that follow. */
        cl->e->cfg.partitions = t->partitions;
    }
    cl->peers = roo__xcalloc(MAX_WORKERS, sizeof(peer));
    for (uint32_t w = 0; w < t->nworkers; w++)
        peer_init(cl, w, &t->workers[w]);
    cl->npeers = (uint32_t)t->nworkers;
    /* What each peer's batches were applied through, as committed before a restart. */
    for (size_t i = 0; i < cl->e->nrecovered_links; i++) {
        const struct roo__link_state *l = &cl->e->recovered_links[i];
        int64_t w = worker_index(cl, l->peer);
        if (w < 0 || (uint32_t)w == cl->self || l->thread >= cl->e->nshards)
            continue;
        cl->peers[w].in_incarnation = l->incarnation;
        cl->peers[w].in_applied[l->thread] = l->seq;
        cl->peers[w].in_received[l->thread] = l->seq;
    }
    install_routes(cl, NULL);
    persist_topology(cl);
    for (uint32_t w = 0; w < t->nworkers; w++)
        if (w != cl->self && !t->workers[w].left) {
            cl->peers[w].data_backoff = 0;
            peer_connect(&cl->peers[w]);
            cl->peers[w].data_backoff = BACKOFF_MIN_MS;
        }
    check_conns_ready(cl);
    return 0;
}

/* ---- partition moves: every worker's part ----
 *
 * The initializer drives a move (grow, shrink) in phases (proto/roo.proto, Migrate):
 *   HOLD      every worker stores the table after the move ("pending", so a restart goes on
 *             holding), routes new messages for moving partitions to held destinations, and
 *             reports once everything it routed before is committed where it went (the
 *             fence: the old owners have applied all they will ever apply of them).
 *   TRANSFER  old owners wait until their sinks took the output queued so far, then send
 *             each moving partition's committed state and stream marks as StateChunks on
 *             their data links; new owners apply and commit them, and report.
 *   switch    the initializer stores the new table (the commit point) and sends it: each
 *             worker installs it, lets its held messages go to the new owners (in order, on
 *             the same links as what follows), and old owners drop the moved state.
 * A worker that restarts during a move finds the pending table and holds again; the
 * initializer repeats the current phase to it (every step can be repeated).
 */

static void co_report(cluster *cl, uint32_t w, uint64_t epoch, uint32_t phase);

static void mig_report(cluster *cl, uint32_t phase)
{
    roo__ctl m = { .kind = ROO__CTL_MIGRATE_REPORT,
                   .epoch = cl->mig.epoch,
                   .phase = phase,
                   .worker_name = (char *)cl->name };

    cl->mig.reported[phase] = true;
    if (cl->mode == ROO__INITIALIZER) {
        co_report(cl, cl->self, cl->mig.epoch, phase);
        return;
    }
    /* Lost if the link is down: the initializer repeats the phase when we reconnect. */
    send_ctl(&cl->to_init, &m);
}

static void mig_check(cluster *cl)
{
    struct mig_state *m = &cl->mig;
    bool sent_all = true;

    if (!m->active)
        return;
    if (m->precopy_started && !m->reported[ROO__MIG_PRECOPY]) {
        /* Old owner: pre-copy sent to every new owner; new owner: all of it committed. */
        for (uint32_t w = 0; w < cl->npeers && m->noutgoing; w++)
            for (uint32_t q = 0; q < cl->topo.partitions && sent_all; q++)
                if (m->outgoing[q] && m->next.owner[q] == w &&
                    cl->peers[w].precopy_epoch != m->epoch)
                    sent_all = false;
        if ((!m->noutgoing || (m->track_valid && sent_all)) && m->nprecopied == m->nincoming)
            mig_report(cl, ROO__MIG_PRECOPY);
    }
    if (m->holding && !m->reported[ROO__MIG_HOLD] && m->pending_stored &&
        m->shards_held == cl->e->nshards)
        mig_report(cl, ROO__MIG_HOLD);
    if (m->transfer_started && m->reported[ROO__MIG_HOLD] && !m->reported[ROO__MIG_TRANSFER] &&
        m->nimported == m->nincoming) {
        if (m->nincoming)
            roo__log_info("partition move %llu: the state of %u partition(s) is committed here "
                          "(%lld ms after the move began)",
                          (unsigned long long)m->epoch, m->nincoming,
                          (long long)((roo__now_ns() - m->started_ns) / 1000000));
        mig_report(cl, ROO__MIG_TRANSFER);
    }
}

/* Take part in a move to `next`: peers for new workers, what comes and what goes. */
static bool mig_prepare(cluster *cl, uint64_t epoch, const roo__topology *next)
{
    struct mig_state *m = &cl->mig;
    roo__engine *e = cl->e;

    if (m->active && m->epoch == epoch)
        return true;
    if (m->active || next->partitions != cl->topo.partitions ||
        next->nworkers < cl->topo.nworkers || next->nworkers > MAX_WORKERS ||
        epoch <= cl->topo.version) {
        roo__log_warn("ignoring a partition move to table version %llu (this worker has table "
                      "%llu%s)",
                      (unsigned long long)epoch, (unsigned long long)cl->topo.version,
                      m->active ? " and another move under way" : "");
        return false;
    }
    roo__topology_copy(next, &m->next);
    m->active = true;
    m->epoch = epoch;
    memset(m->reported, 0, sizeof(m->reported));
    m->precopy_started = m->holding = m->transfer_started = false;
    m->track_asked = m->track_valid = m->dump_asked = m->dump_done = false;
    m->shards_held = m->shards_tracking = m->shards_dumped = 0;
    m->shard_held = roo__xcalloc(e->nshards, sizeof(bool));
    m->shard_tracking = roo__xcalloc(e->nshards, sizeof(bool));
    m->incoming = roo__xcalloc(next->partitions, 1);
    m->imported = roo__xcalloc(next->partitions, 1);
    m->precopied = roo__xcalloc(next->partitions, 1);
    m->outgoing = roo__xcalloc(next->partitions, 1);
    m->nincoming = m->nimported = m->nprecopied = m->noutgoing = 0;
    m->started_ns = roo__now_ns();
    for (uint32_t p = 0; p < next->partitions; p++) {
        if (next->owner[p] == cl->self && cl->topo.owner[p] != cl->self) {
            m->incoming[p] = 1;
            m->nincoming++;
        } else if (cl->topo.owner[p] == cl->self && next->owner[p] != cl->self) {
            m->outgoing[p] = 1;
            m->noutgoing++;
        }
    }
    peers_update(cl, next, true);
    roo__log_info("partition move to table version %llu: %u partition(s) coming here, %u "
                  "leaving",
                  (unsigned long long)epoch, m->nincoming, m->noutgoing);
    return true;
}

/* PRECOPY: threads note changes to the outgoing partitions, then their state is sent. */
static void mig_precopy(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || m->holding)
        return;
    m->precopy_started = true;
    m->reported[ROO__MIG_PRECOPY] = false;
    /* Repeated (someone came back): count and send again. */
    memset(m->precopied, 0, cl->topo.partitions);
    m->nprecopied = 0;
    for (uint32_t w = 0; w < cl->npeers; w++)
        cl->peers[w].precopy_epoch = 0;
    if (m->noutgoing && !m->track_asked) {
        m->track_asked = true;
        for (unsigned i = 0; i < cl->e->nshards; i++) {
            roo__track_msg *t = roo__xcalloc(1, sizeof(*t));
            t->node.kind = ROO__Q_TRACK;
            t->epoch = m->epoch;
            t->parts = roo__xmalloc(cl->topo.partitions);
            memcpy(t->parts, m->outgoing, cl->topo.partitions);
            roo__queue_push(&cl->e->shards[i].inbox, &t->node);
        }
    }
    mig_send_precopy_all(cl);
    mig_check(cl);
}

/* HOLD: store the move (a restart holds again), hold the moving partitions' messages. */
static void mig_hold(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active)
        return;
    if (m->holding) {
        /* Repeated (the initializer restarted, or we reconnected): answer again. */
        m->reported[ROO__MIG_HOLD] = false;
        mig_check(cl);
        return;
    }
    m->holding = true;
    m->hold_ns = roo__now_ns();
    install_routes(cl, NULL);
    persist_topology(cl);
    m->pending_meta = cl->meta_queued;
    m->pending_stored = false;
    roo__log_info("partition move %llu: holding the moving partitions' messages until the "
                  "switch",
                  (unsigned long long)m->epoch);
}

/* A move found in the resilience directory (or joined late): no pre-copy, hold at once. */
static void mig_begin(cluster *cl, uint64_t epoch, const roo__topology *next)
{
    if (mig_prepare(cl, epoch, next))
        mig_hold(cl);
}

static void mig_transfer(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || !m->holding)
        return;
    m->transfer_started = true;
    m->reported[ROO__MIG_TRANSFER] = false;
    if (!m->sink_marks) {
        /* Our output for the moving partitions is all queued by now (the fence): it must
         * reach the sinks before the new owners write theirs. */
        m->sink_marks = roo__xcalloc(cl->e->nsinks ? cl->e->nsinks : 1, sizeof(uint64_t));
        roo__io_sinks_mark(cl->e, m->sink_marks);
    }
    for (uint32_t w = 0; w < cl->npeers; w++)
        cl->peers[w].chunks_epoch = 0;
    {
        /* ROO_TEST_TRANSFER_DELAY_MS widens the transfer phase so that tests can kill a
         * worker in the middle of a move; nothing else should set it. */
        const char *d = getenv("ROO_TEST_TRANSFER_DELAY_MS");
        uint64_t ms = 0;
        m->send_after_ns = 0;
        if (d && roo__parse_uint(d, 0, 600000, &ms) == 0)
            m->send_after_ns = roo__now_ns() + (int64_t)ms * 1000000;
    }
    if (m->noutgoing && m->track_valid && !m->dump_asked) {
        /* Only what changed since the pre-copy goes now: the threads say which keys. */
        m->dump_asked = true;
        for (unsigned i = 0; i < cl->e->nshards; i++) {
            roo__track_msg *t = roo__xcalloc(1, sizeof(*t));
            t->node.kind = ROO__Q_TRACK_DUMP;
            t->epoch = m->epoch;
            roo__queue_push(&cl->e->shards[i].inbox, &t->node);
        }
    }
    mig_send_all(cl);
    mig_check(cl);
}

typedef struct chunk_ctx {
    cluster *cl;
    peer *p;
    roo__state_chunk c;
    uint64_t keys;
} chunk_ctx;

static void chunk_flush(chunk_ctx *x)
{
    int rc = roo__wire_data_chunk_encode(&x->c, roo__fconn_outbuf(&x->p->data));

    if (rc < 0)
        roo__log_error("cannot frame the state of partition %u for %s: %s", x->c.partition,
                       x->p->info.name, roo_strerror(rc));
    x->c.records.len = 0;
    x->c.marks.len = 0;
}

static int chunk_record(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                        size_t key_len, const uint8_t *val, size_t val_len)
{
    chunk_ctx *x = arg;
    uint8_t *q = roo__buf_reserve(&x->c.records, 8 + key_len + val_len);

    (void)partition;
    roo__store_le16(q, state_id);
    roo__store_le16(q + 2, (uint16_t)key_len);
    roo__store_le32(q + 4, (uint32_t)val_len);
    memcpy(q + 8, key, key_len);
    memcpy(q + 8 + key_len, val, val_len);
    x->c.records.len += 8 + key_len + val_len;
    x->keys++;
    if (x->c.records.len >= CHUNK_BYTES)
        chunk_flush(x);
    return 0;
}

static int chunk_mark(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    roo__buf *marks = arg;

    if (key_len == ROO__STREAM_KEY_LEN && val_len == ROO__STREAM_VAL_LEN) {
        roo__buf_append(marks, key, key_len);
        roo__buf_append(marks, val, val_len);
    }
    return 0;
}

enum { SEND_PRECOPY, SEND_FULL, SEND_CHANGES };

/* The committed values of the keys the threads noted as changed, in partition q. */
static int chunk_changes(cluster *cl, chunk_ctx *x, uint16_t q)
{
    const uint8_t *p = cl->mig.dumped.data, *end = p + cl->mig.dumped.len;
    roo__buf val = { 0 };
    int rc = 0;

    while (p + 6 <= end && rc == 0) {
        uint16_t h[3];
        memcpy(h, p, sizeof(h));
        if (h[0] == q) {
            val.len = 0;
            rc = roo__store_get_state(cl->e->store, q, h[1], p + 6, h[2], &val);
            if (rc == 0)
                rc = chunk_record(x, q, h[1], p + 6, h[2], val.data, val.len);
            else if (rc == -ENOENT)
                rc = 0; /* noted, never committed (its save failed): nothing to send */
        }
        p += 6 + h[2];
    }
    roo__buf_finish(&val);
    return rc;
}

/* Old owner: send p the partitions moving from us to it (see the SEND_* modes). */
static void mig_send_chunks(cluster *cl, peer *p, int mode)
{
    chunk_ctx x = { .cl = cl, .p = p };
    roo__buf marks = { 0 };
    uint32_t nparts = 0;
    int rc = 0;

    for (uint32_t q = 0; q < cl->topo.partitions && rc == 0; q++) {
        if (!cl->mig.outgoing[q] || cl->mig.next.owner[q] != p->index)
            continue;
        if (!nparts++)
            rc = roo__store_scan_db(cl->e->store, ROO__DB_STREAMS, chunk_mark, &marks);
        x.c.epoch = cl->mig.epoch;
        x.c.partition = q;
        x.c.last = false;
        x.c.precopy = mode == SEND_PRECOPY;
        if (rc == 0 && mode == SEND_CHANGES)
            rc = chunk_changes(cl, &x, (uint16_t)q);
        else if (rc == 0)
            rc = roo__store_scan_partition(cl->e->store, (uint16_t)q, chunk_record, &x);
        for (size_t off = 0; off + 22 <= marks.len; off += 22)
            if (roo__load_be16(marks.data + off + 8) == q)
                roo__buf_append(&x.c.marks, marks.data + off, 22);
        x.c.last = true;
        chunk_flush(&x);
    }
    roo__buf_finish(&marks);
    roo__buf_finish(&x.c.records);
    roo__buf_finish(&x.c.marks);
    if (rc < 0) {
        roo__log_error("cannot read the state moving to %s: %s; trying again", p->info.name,
                       roo__store_errmsg(cl->e->store));
        mig_retry_later(cl, MIG_RETRY_MS);
        return;
    }
    if (mode == SEND_PRECOPY)
        p->precopy_epoch = cl->mig.epoch;
    else
        p->chunks_epoch = cl->mig.epoch;
    roo__fconn_flush(&p->data);
    if (nparts)
        roo__log_info("%s %u partition(s), %llu key(s), to %s",
                      mode == SEND_PRECOPY ? "pre-copied"
                      : mode == SEND_FULL  ? "sent"
                                           : "sent the changes since the pre-copy in",
                      nparts, (unsigned long long)x.keys, p->info.name);
}

static bool gets_from_us(const cluster *cl, uint32_t w)
{
    for (uint32_t q = 0; q < cl->topo.partitions; q++)
        if (cl->mig.outgoing[q] && cl->mig.next.owner[q] == w)
            return true;
    return false;
}

static void mig_send_precopy_all(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || !m->precopy_started || m->holding || !m->track_valid)
        return;
    for (uint32_t w = 0; w < cl->npeers; w++) {
        peer *p = &cl->peers[w];
        if (w != cl->self && !p->left && p->data_open && p->precopy_epoch != m->epoch &&
            gets_from_us(cl, w))
            mig_send_chunks(cl, p, SEND_PRECOPY);
    }
    mig_check(cl);
}

static void mig_retry_cb(roo__loop *loop, roo__timer *t)
{
    (void)loop;
    mig_send_precopy_all(t->data);
    mig_send_all(t->data);
}

static void mig_retry_later(cluster *cl, int64_t ms)
{
    cl->mig.retry.cb = mig_retry_cb;
    cl->mig.retry.data = cl;
    roo__timer_start(cl->e->io_loop, &cl->mig.retry, ms);
}

static void mig_send_all(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    if (!m->active || !m->transfer_started)
        return;
    if (m->dump_asked && !m->dump_done)
        return; /* the threads' lists of changed keys come first */
    if (!roo__io_sinks_reached(cl->e, m->sink_marks) || roo__now_ns() < m->send_after_ns) {
        mig_retry_later(cl, MIG_RETRY_MS);
        return;
    }
    for (uint32_t w = 0; w < cl->npeers; w++) {
        peer *p = &cl->peers[w];
        if (w != cl->self && !p->left && p->data_open && p->chunks_epoch != m->epoch &&
            gets_from_us(cl, w))
            mig_send_chunks(cl, p, m->dump_done ? SEND_CHANGES : SEND_FULL);
    }
}

/* Forget a move's bookkeeping (the switch, or the worker's end). */
static void mig_free(cluster *cl)
{
    struct mig_state *m = &cl->mig;

    roo__topology_finish(&m->next);
    free(m->shard_held);
    free(m->shard_tracking);
    free(m->incoming);
    free(m->imported);
    free(m->precopied);
    free(m->outgoing);
    free(m->sink_marks);
    roo__buf_finish(&m->dumped);
    m->shard_held = m->shard_tracking = NULL;
    m->incoming = m->imported = m->precopied = m->outgoing = NULL;
    m->sink_marks = NULL;
    m->active = false;
}

/* The switch: held messages go to their new owners; the move is over here. */
static void mig_finish(cluster *cl)
{
    roo__route *r = cl->mig.held_head, *next;
    int64_t ms = (roo__now_ns() - cl->mig.started_ns) / 1000000;

    cl->mig.held_head = cl->mig.held_tail = NULL;
    for (; r; r = next) {
        peer *p;
        next = (roo__route *)r->node.next;
        r->node.next = NULL;
        if (r->worker >= cl->npeers || r->worker == cl->self || cl->peers[r->worker].left) {
            roo__log_error("internal error: held messages for worker %u have nowhere to go",
                           r->worker);
            r->node.kind = ROO__Q_ROUTE_RETURN;
            roo__queue_push(&r->from->inbox, &r->node);
            continue;
        }
        p = &cl->peers[r->worker];
        if (p->q_tail)
            p->q_tail->node.next = &r->node;
        else
            p->q_head = r;
        p->q_tail = r;
    }
    for (uint32_t w = 0; w < cl->npeers; w++)
        if (w != cl->self && cl->peers[w].q_head)
            peer_pump(&cl->peers[w]);
    roo__timer_stop(cl->e->io_loop, &cl->mig.retry);
    mig_free(cl);
    roo__log_info("partition move to table version %llu done here (%lld ms after it began; "
                  "messages held for %lld ms)",
                  (unsigned long long)cl->mig.epoch, (long long)ms,
                  (long long)(cl->mig.hold_ns ? (roo__now_ns() - cl->mig.hold_ns) / 1000000 : 0));
    cl->mig.hold_ns = 0;
}

void roo__cluster_mig_note(roo__engine *e, roo__mig_note *n)
{
    cluster *cl = e->cluster;
    struct mig_state *m = cl ? &cl->mig : NULL;

    if (m && m->active && n->epoch == m->epoch && n->shard < e->nshards) {
        switch (n->kind) {
        case ROO__MIG_NOTE_HELD:
            if (!m->shard_held[n->shard]) {
                m->shard_held[n->shard] = true;
                m->shards_held++;
            }
            break;
        case ROO__MIG_NOTE_IMPORTED: {
            uint8_t *done = n->precopy ? m->precopied : m->imported;
            uint32_t *count = n->precopy ? &m->nprecopied : &m->nimported;
            if (n->partition < cl->topo.partitions && m->incoming[n->partition] &&
                !done[n->partition]) {
                done[n->partition] = 1;
                (*count)++;
            }
            break;
        }
        case ROO__MIG_NOTE_TRACKING:
            if (!m->shard_tracking[n->shard]) {
                m->shard_tracking[n->shard] = true;
                if (++m->shards_tracking == e->nshards) {
                    m->track_valid = true; /* every change from now on is noted */
                    mig_send_precopy_all(cl);
                }
            }
            break;
        case ROO__MIG_NOTE_TRACKED:
            if (m->dump_asked && !m->dump_done) {
                roo__buf_append(&m->dumped, n->keys.data, n->keys.len);
                if (!n->precopy)
                    m->track_valid = false; /* a thread had nothing noted: send it all */
                if (++m->shards_dumped == e->nshards) {
                    m->dump_done = m->track_valid;
                    if (!m->dump_done)
                        m->dump_asked = false;
                    mig_send_all(cl);
                }
            }
            break;
        }
        mig_check(cl);
    }
    if (n->kind == ROO__MIG_NOTE_TRACKED)
        roo__buf_finish(&n->keys);
    free(n);
}

void roo__cluster_meta_done(roo__engine *e, roo__meta_msg *m)
{
    cluster *cl = e->cluster;

    cl->meta_pending = false;
    if (m->result >= 0 && cl->mig.active && !cl->mig.pending_stored &&
        m->seq >= cl->mig.pending_meta) {
        cl->mig.pending_stored = true;
        mig_check(cl);
    }
    if (m->result < 0) {
        fatal(cl, "cannot store the cluster topology; stopping");
    } else {
        cl->meta_written = true;
        if (cl->send_topology_when_stored && m->seq >= cl->send_topology_seq) {
            roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY, .topology = cl->topo };
            cl->send_topology_when_stored = false;
            for (uint32_t w = 1; w < cl->topo.nworkers; w++)
                if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
                    send_ctl(&cl->peers[w].ctl->fc, &tm);
        }
        check_conns_ready(cl);
    }
    roo__buf_finish(&m->encoded);
    free(m);
}

/* ---- initializer: formation ---- */

static uint64_t random_id(void)
{
    uint64_t id = 0;

    if (getrandom(&id, sizeof(id), 0) != sizeof(id) || id == 0)
        id = (uint64_t)roo__now_ns() ^ ((uint64_t)getpid() << 32);
    return id ? id : 1;
}

static void refuse(aconn *c, const char *reason)
{
    roo__ctl m = { .kind = ROO__CTL_REFUSE, .reason = (char *)reason };

    roo__log_warn("refused %s: %s", c->fc.peer, reason);
    send_ctl(&c->fc, &m);
    roo__fconn_close_after_flush(&c->fc);
}

static void form_cluster(cluster *cl)
{
    roo__topology t = { 0 };
    roo__ctl m = { .kind = ROO__CTL_TOPOLOGY };

    t.cluster_id = random_id();
    t.app_name = cl->e->app->name;
    t.partitions = cl->e->cfg.partitions;
    t.nworkers = cl->njoined;
    t.workers = roo__xcalloc(cl->njoined, sizeof(*t.workers));
    for (size_t i = 0; i < cl->njoined; i++)
        t.workers[i] = cl->joined[i].info;
    t.owner = roo__xcalloc(t.partitions, sizeof(uint32_t));
    for (uint32_t p = 0; p < t.partitions; p++)
        t.owner[p] = p % (uint32_t)t.nworkers;
    t.version = 1;
    roo__log_info("all %zu workers identified: forming cluster %016llx with %u partitions",
                  t.nworkers, (unsigned long long)t.cluster_id, t.partitions);
    if (apply_topology(cl, &t) < 0)
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

/* ---- the initializer drives partition moves ---- */

/* Takes part in the move under way: a live worker before it, or one it adds. */
static bool co_participant(const cluster *cl, uint32_t w)
{
    if (w < cl->topo.nworkers)
        return !cl->topo.workers[w].left;
    return w < cl->mig.next.nworkers && !cl->mig.next.workers[w].left;
}

static void co_send(cluster *cl, uint32_t w, uint32_t phase)
{
    roo__ctl m = {
        .kind = ROO__CTL_MIGRATE, .epoch = cl->mig.epoch, .phase = phase, .topology = cl->mig.next
    };

    if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
        send_ctl(&cl->peers[w].ctl->fc, &m);
}

static void co_phase(cluster *cl, uint32_t phase)
{
    cl->co.phase = phase;
    memset(cl->co.reported, 0, cl->mig.next.nworkers * sizeof(bool));
    for (uint32_t w = 0; w < cl->mig.next.nworkers; w++)
        if (w != cl->self && co_participant(cl, w))
            co_send(cl, w, phase);
    if (phase == ROO__MIG_PRECOPY)
        mig_precopy(cl);
    else if (phase == ROO__MIG_HOLD)
        mig_hold(cl);
    else
        mig_transfer(cl);
}

static void co_commit(cluster *cl);

static void co_report(cluster *cl, uint32_t w, uint64_t epoch, uint32_t phase)
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
        co_phase(cl, ROO__MIG_HOLD);
    } else if (phase == ROO__MIG_HOLD) {
        roo__log_info("partition move %llu: every worker holds; transferring state",
                      (unsigned long long)cl->mig.epoch);
        co_phase(cl, ROO__MIG_TRANSFER);
    } else {
        co_commit(cl);
    }
}

/*
 * Give every live worker P/n partitions (the first P mod n of them, by how many they own
 * now, one more), moving as few as possible: only partitions of workers that leave or own
 * more than their share change hands.
 */
static void rebalance(roo__topology *t)
{
    uint32_t n = 0, P = t->partitions, *count = roo__xcalloc(t->nworkers, sizeof(uint32_t));
    uint32_t *target = roo__xcalloc(t->nworkers, sizeof(uint32_t));
    uint32_t *order = roo__xcalloc(t->nworkers, sizeof(uint32_t));
    uint8_t *move = roo__xcalloc(P, 1);
    uint32_t next = 0;

    for (uint32_t p = 0; p < P; p++)
        count[t->owner[p]]++;
    for (uint32_t w = 0; w < t->nworkers; w++)
        if (!t->workers[w].left)
            order[n++] = w;
    /* Stable sort of live workers by partitions owned, most first. */
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && count[order[j]] > count[order[j - 1]]; j--) {
            uint32_t tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (uint32_t i = 0; i < n; i++)
        target[order[i]] = P / n + (i < P % n ? 1 : 0);
    for (uint32_t p = P; p-- > 0;) {
        uint32_t w = t->owner[p];
        if (t->workers[w].left || count[w] > target[w]) {
            move[p] = 1;
            count[w]--;
        }
    }
    for (uint32_t p = 0; p < P; p++) {
        if (!move[p])
            continue;
        while (count[order[next % n]] >= target[order[next % n]])
            next++;
        t->owner[p] = order[next % n];
        count[order[next % n]]++;
        next++;
    }
    free(count);
    free(target);
    free(order);
    free(move);
}

static void co_begin(cluster *cl, roo__topology *t, const char *what)
{
    uint32_t moving = 0;

    for (uint32_t p = 0; p < t->partitions; p++)
        moving += t->owner[p] != (p < cl->topo.partitions ? cl->topo.owner[p] : UINT32_MAX);
    t->version = cl->topo.version + 1;
    if (!mig_prepare(cl, t->version, t))
        return;
    cl->co.running = true;
    cl->co.started_ns = roo__now_ns();
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

    if (cl->co.running || cl->mig.active || !n || n < cl->co.want || !cl->ready || cl->draining)
        return;
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
    rebalance(&t);
    co_begin(cl, &t, what);
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
    char json[300];

    roo__topology_copy(&cl->mig.next, &t);
    t.complete = true;
    cl->co.running = false;
    /* The commit point: stored here, then sent (roo__cluster_meta_done). */
    apply_topology(cl, &t);
    cl->send_topology_when_stored = true;
    cl->send_topology_seq = cl->meta_queued;
    roo__log_info("%s: done in %lld ms; table version %llu", cl->co.what, (long long)ms,
                  (unsigned long long)t.version);
    if (cl->co.ext_conn) {
        snprintf(json, sizeof(json), "{\"done\": true, \"table_version\": %llu, \"ms\": %lld}\n",
                 (unsigned long long)t.version, (long long)ms);
        ext_reply(cl, cl->co.ext_conn, true, json, NULL);
        cl->co.ext_conn = 0;
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
    co_send(cl, w, ROO__MIG_HOLD);
    if (cl->co.phase == ROO__MIG_TRANSFER) {
        /* What it had received or sent may be gone: the whole transfer runs again. */
        roo__log_info("partition move %llu: worker %s is back; transferring again",
                      (unsigned long long)cl->mig.epoch, cl->peers[w].info.name);
        co_phase(cl, ROO__MIG_TRANSFER);
    }
}

static void on_hello(cluster *cl, aconn *c, const roo__ctl *m)
{
    char reason[512];
    int64_t w;

    if (m->protocol_version != protocol_version()) {
        snprintf(reason, sizeof(reason),
                 "worker '%s' speaks protocol version %u (roo %s); this "
                 "cluster speaks version %u (roo %s)",
                 m->worker.name, m->protocol_version, m->roo_version, protocol_version(),
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
    if (cl->mode == ROO__JOINER) {
        roo__ctl r = { .kind = ROO__CTL_REFUSE };
        snprintf(reason, sizeof(reason),
                 "this worker (%s) is not the initializer; contact the "
                 "initializer at %s",
                 cl->name,
                 cl->has_topology ? cl->topo.workers[0].control_addr : "its --control address");
        /* A joiner follows the hint by itself. */
        r.reason = reason;
        r.initializer = cl->has_topology ? cl->topo.workers[0].control_addr : "";
        roo__log_info("worker '%s' asked to join here; sent it to the initializer", m->worker.name);
        send_ctl(&c->fc, &r);
        roo__fconn_close_after_flush(&c->fc);
        return;
    }
    if (m->join && m->cluster_id == 0) {
        if (!cl->has_topology || !cl->topo.complete || !cl->ready) {
            refuse(c, "the cluster is still forming; join once it is ready");
            return;
        }
        w = worker_index(cl, m->worker.name);
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
        for (size_t i = 0; i < cl->co.njoiners; i++) {
            if (strcmp(cl->co.joiners[i].info.name, m->worker.name) == 0) {
                snprintf(reason, sizeof(reason), "a worker named '%s' is already waiting to join",
                         m->worker.name);
                refuse(c, reason);
                return;
            }
        }
        cl->co.joiners =
            roo__xrealloc(cl->co.joiners, (cl->co.njoiners + 1) * sizeof(*cl->co.joiners));
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
        return;
    }
    if (cl->has_topology) {
        w = worker_index(cl, m->worker.name);
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
            apply_topology(cl, &t);
            tm.topology = cl->topo;
            for (uint32_t i = 1; i < cl->topo.nworkers; i++)
                if (cl->peers[i].ctl && !cl->peers[i].ctl->dead)
                    send_ctl(&cl->peers[i].ctl->fc, &tm);
            roo__topology_finish(&t);
        } else {
            roo__ctl tm = { .kind = ROO__CTL_TOPOLOGY, .topology = cl->topo };
            send_ctl(&c->fc, &tm);
        }
        co_rejoined(cl, (uint32_t)w);
        return;
    }
    /* Formation. */
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
        advertise_wild(cl->my_control, sizeof(cl->my_control), local);
        advertise_wild(cl->my_data, sizeof(cl->my_data), local);
        advertise_wild(cl->my_external, sizeof(cl->my_external), local);
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

/* ---- status ---- */

static void json_str(roo__buf *b, const char *s)
{
    roo__buf_append(b, "\"", 1);
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = *s;
            roo__buf_append(b, esc, 2);
        } else if ((unsigned char)*s < 0x20) {
            int n = snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*s);
            roo__buf_append(b, esc, (size_t)n);
        } else {
            roo__buf_append(b, s, 1);
        }
    }
    roo__buf_append(b, "\"", 1);
}

static void json_fmt(roo__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void json_fmt(roo__buf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[512];
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        roo__buf_append(b, tmp, ROO__MIN((size_t)n, sizeof(tmp) - 1));
}

static void build_status_json(cluster *cl, const roo__worker_stats *stats, const bool *have,
                              bool init_reachable, roo__buf *out)
{
    roo__engine *e = cl->e;
    bool all_ready = cl->has_topology;
    size_t n = cl->has_topology ? cl->topo.nworkers : 1, live = 0;
    bool firstw = true;

    for (size_t w = 0; w < n; w++) {
        if (cl->has_topology && cl->topo.workers[w].left)
            continue;
        live++;
        all_ready = all_ready && have[w] && stats[w].ready;
    }
    json_fmt(out, "{\n  \"application\": ");
    json_str(out, e->app->name);
    json_fmt(out, ",\n  \"cluster_id\": \"%016llx\",\n  \"answered_by\": ",
             (unsigned long long)(cl->has_topology ? cl->topo.cluster_id : 0));
    json_str(out, cl->name);
    json_fmt(out, ",\n  \"ready\": %s,\n  \"partitions\": %u,\n  \"worker_count\": %zu,\n",
             all_ready ? "true" : "false", e->cfg.partitions, live);
    if (!init_reachable)
        json_fmt(out, "  \"warning\": \"the initializer is unreachable: other workers' figures "
                      "are missing\",\n");
    json_fmt(out, "  \"workers\": [");
    for (size_t w = 0; w < n; w++) {
        const roo__worker_info *wi = cl->has_topology ? &cl->topo.workers[w] : NULL;
        const roo__worker_stats *s = &stats[w];
        uint32_t owned = 0;
        if (wi && wi->left)
            continue;
        for (uint32_t p = 0; cl->has_topology && p < cl->topo.partitions; p++)
            owned += cl->topo.owner[p] == w;
        json_fmt(out, "%s\n    {\"name\": ", firstw ? "" : ",");
        firstw = false;
        json_str(out, wi ? wi->name : cl->name);
        json_fmt(out, ", \"index\": %zu, \"control\": ", w);
        json_str(out, wi ? wi->control_addr : "");
        json_fmt(out, ", \"data\": ");
        json_str(out, wi ? wi->data_addr : "");
        json_fmt(out, ", \"external\": ");
        json_str(out, wi && wi->external_addr ? wi->external_addr : cl->my_external);
        json_fmt(out, ", \"threads\": %u, \"partitions\": %u, \"reachable\": %s, \"ready\": %s",
                 wi ? wi->threads : e->nshards, owned, have[w] ? "true" : "false",
                 have[w] && s->ready ? "true" : "false");
        if (have[w])
            json_fmt(out,
                     ", \"frames_in\": %llu, \"records_out\": %llu, \"routed_out\": %llu, "
                     "\"routed_in\": %llu, \"keys\": %llu, \"commits\": %llu, "
                     "\"source_connections\": %u",
                     (unsigned long long)s->frames_in, (unsigned long long)s->records_out,
                     (unsigned long long)s->routed_out, (unsigned long long)s->routed_in,
                     (unsigned long long)s->keys, (unsigned long long)s->commits,
                     s->source_connections);
        json_fmt(out, "}");
    }
    json_fmt(out, "\n  ]\n}\n");
}

static aconn *find_conn(cluster *cl, uint64_t id)
{
    for (aconn *c = cl->conns; c; c = c->next)
        if (c->id == id && !c->dead)
            return c;
    return NULL;
}

static void ext_reply(cluster *cl, uint64_t conn_id, bool ok, const char *json, const char *error)
{
    aconn *c = find_conn(cl, conn_id);

    if (!c)
        return;
    roo__wire_ext_reply_encode(ok, json, error, roo__fconn_outbuf(&c->fc));
    roo__fconn_flush(&c->fc);
}

static query *query_new(cluster *cl)
{
    for (int i = 0; i < MAX_QUERIES; i++) {
        query *q = &cl->queries[i];
        if (!q->used) {
            size_t n = cl->has_topology ? cl->topo.nworkers : 1;
            memset(q, 0, sizeof(*q));
            q->used = true;
            q->id = ++cl->next_query;
            q->for_peer = -1;
            q->have = roo__xcalloc(n, sizeof(bool));
            q->stats = roo__xcalloc(n, sizeof(roo__worker_stats));
            q->deadline_ns = roo__now_ns() + (int64_t)STATUS_TIMEOUT_MS * 1000000;
            return q;
        }
    }
    return NULL;
}

static void query_free(query *q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (q->have[i])
            free(q->stats[i].name);
    free(q->have);
    free(q->stats);
    q->used = false;
}

static void query_complete(cluster *cl, query *q)
{
    size_t n = cl->has_topology ? cl->topo.nworkers : 1;

    if (q->ext_conn) {
        roo__buf b = { 0 };
        bool init_ok = cl->mode != ROO__JOINER || n == 0 || q->have[0];
        build_status_json(cl, q->stats, q->have, init_ok, &b);
        roo__buf_append(&b, "", 1);
        ext_reply(cl, q->ext_conn, true, (const char *)b.data, NULL);
        roo__buf_finish(&b);
    } else if (q->for_peer >= 0) {
        peer *p = &cl->peers[q->for_peer];
        roo__worker_stats *all = roo__xcalloc(n, sizeof(*all));
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (q->have[i])
                all[k++] = q->stats[i];
        roo__ctl m = {
            .kind = ROO__CTL_STATUS_REPLY, .query_id = q->reply_id, .stats = all, .nstats = k
        };
        if (p->ctl && !p->ctl->dead)
            send_ctl(&p->ctl->fc, &m);
        free(all);
    }
    query_free(q, n);
}

static void query_check(cluster *cl, query *q)
{
    size_t n = cl->has_topology ? cl->topo.nworkers : 1;
    bool done = true;

    for (size_t i = 0; i < n; i++)
        done = done && q->have[i];
    if (done || roo__now_ns() >= q->deadline_ns)
        query_complete(cl, q);
}

static void query_timer_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;
    bool any = false;

    (void)loop;
    for (int i = 0; i < MAX_QUERIES; i++) {
        if (cl->queries[i].used)
            query_check(cl, &cl->queries[i]);
        any = any || cl->queries[i].used;
    }
    if (any)
        roo__timer_start(cl->e->io_loop, &cl->query_timer, 100);
}

static void query_arm(cluster *cl)
{
    cl->query_timer.cb = query_timer_cb;
    cl->query_timer.data = cl;
    roo__timer_start(cl->e->io_loop, &cl->query_timer, 100);
}

static void set_stats(query *q, uint32_t w, const roo__worker_stats *s)
{
    if (q->have[w])
        free(q->stats[w].name);
    q->stats[w] = *s;
    q->stats[w].name = roo__xstrdup(s->name ? s->name : "");
    q->have[w] = true;
}

/* Start gathering everyone's figures (initializer) or ask the initializer (joiner). */
static void status_start(cluster *cl, uint64_t ext_conn, int for_peer, uint64_t reply_id)
{
    query *q = query_new(cl);
    roo__worker_stats mine;

    if (!q) {
        if (ext_conn)
            ext_reply(cl, ext_conn, false, NULL, "too many status queries at once");
        return;
    }
    q->ext_conn = ext_conn;
    q->for_peer = for_peer;
    q->reply_id = reply_id;
    own_stats(cl, &mine);
    set_stats(q, cl->has_topology ? cl->self : 0, &mine);
    if (cl->mode == ROO__JOINER) {
        if (cl->to_init_open) {
            roo__ctl m = { .kind = ROO__CTL_STATUS_QUERY, .query_id = q->id };
            send_ctl(&cl->to_init, &m);
        } else {
            q->deadline_ns = 0; /* answer with what we know */
        }
    } else if (cl->has_topology) {
        roo__ctl m = { .kind = ROO__CTL_STATUS_QUERY, .query_id = q->id };
        for (uint32_t w = 0; w < cl->topo.nworkers; w++) {
            if (w == cl->self)
                continue;
            if (cl->topo.workers[w].left) {
                q->have[w] = true; /* gone: nothing to wait for */
                continue;
            }
            if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
                send_ctl(&cl->peers[w].ctl->fc, &m);
        }
    }
    query_check(cl, q);
    query_arm(cl);
}

static query *query_find(cluster *cl, uint64_t id)
{
    for (int i = 0; i < MAX_QUERIES; i++)
        if (cl->queries[i].used && cl->queries[i].id == id)
            return &cl->queries[i];
    return NULL;
}

/* ---- coordinated shutdown ---- */

static bool local_idle(cluster *cl)
{
    return roo__io_shards_quiescent(cl->e) && roo__io_sinks_idle(cl->e) && roo__cluster_idle(cl->e);
}

static uint64_t total_sent(const cluster *cl)
{
    uint64_t n = 0;
    for (uint32_t w = 0; cl->has_topology && w < cl->topo.nworkers; w++)
        n += cl->peers[w].sent;
    return n;
}

static void stop_locally(cluster *cl, const char *why)
{
    roo__engine *e = cl->e;

    if (e->cluster_stopping)
        return;
    roo__log_info("cluster shutdown: %s", why);
    e->cluster_stopping = true;
    atomic_store(&e->exit_requested, true);
    roo__io_start_stop(e);
    /* Wake the main thread so it waits for the drain. */
    kill(getpid(), SIGTERM);
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
    stop_locally(cl, "this worker left the cluster");
}

static void send_exit_all(cluster *cl)
{
    roo__ctl m = { .kind = ROO__CTL_EXIT };

    if (cl->exit_sent)
        return;
    cl->exit_sent = true;
    for (uint32_t w = 1; cl->has_topology && w < cl->topo.nworkers; w++)
        if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
            send_ctl(&cl->peers[w].ctl->fc, &m);
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
            send_ctl(&cl->peers[w].ctl->fc, &m);
    }
}

static void drain_evaluate(cluster *cl)
{
    uint64_t sent = total_sent(cl), received = cl->received;
    bool all_idle = local_idle(cl);

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
    drain_evaluate(cl);
    roo__timer_start(cl->e->io_loop, &cl->drain_timer, DRAIN_INTERVAL_MS);
}

static void begin_cluster_shutdown(cluster *cl, const char *why)
{
    roo__ctl m = { .kind = ROO__CTL_SHUTDOWN, .reason = (char *)why };

    if (cl->draining)
        return;
    cl->draining = true;
    for (uint32_t w = 1; cl->has_topology && w < cl->topo.nworkers; w++)
        if (cl->peers[w].ctl && !cl->peers[w].ctl->dead)
            send_ctl(&cl->peers[w].ctl->fc, &m);
    stop_locally(cl, why);
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

/* ---- control frames ---- */

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
                persist_topology(cl);
            }
        }
        if (cl->ready) {
            roo__ctl r = { .kind = ROO__CTL_CLUSTER_READY, .cluster_id = cl->topo.cluster_id };
            send_ctl(&c->fc, &r);
        } else {
            initializer_check_ready(cl);
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
        status_start(cl, 0, (int)p->index, m->query_id);
        return;
    case ROO__CTL_STATUS_REPLY:
        if (!p || !m->nstats)
            break;
        q = query_find(cl, m->query_id);
        if (q) {
            set_stats(q, p->index, &m->stats[0]);
            query_check(cl, q);
        }
        return;
    case ROO__CTL_SHUTDOWN:
        if (!p)
            break;
        begin_cluster_shutdown(cl, m->reason[0] ? m->reason : "requested by a worker");
        return;
    case ROO__CTL_MIGRATE_REPORT:
        if (!p)
            break;
        co_report(cl, p->index, m->epoch, m->phase);
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
    conn_kill(c);
}

static void aconn_frame(roo__fconn *fc, const uint8_t *payload, size_t len);

static void ctl_conn_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__ctl m;
    int rc = roo__wire_ctl_decode(payload, len, &m);

    if (rc < 0) {
        roo__log_warn("control connection from %s: a %zu-byte frame is not a control message; "
                      "closing it",
                      c->fc.peer, len);
        conn_kill(c);
        return;
    }
    ctl_frame_initializer(cl, c, &m);
    roo__wire_ctl_finish(&m);
}

/* ---- data frames (inbound) ---- */

static roo__route *route_get(cluster *cl)
{
    roo__route *r = cl->route_pool;

    if (r)
        cl->route_pool = (roo__route *)r->node.next;
    else
        r = roo__xcalloc(1, sizeof(*r));
    r->node.kind = ROO__Q_ROUTE;
    r->from = NULL;
    r->data.len = 0;
    r->nmsgs = 0;
    r->link_seq = 0;
    return r;
}

static void data_conn_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__engine *e = cl->e;
    roo__data_kind kind = ROO__DATA_NONE;
    roo__data_hello h;
    uint32_t thread = 0, count = 0;
    uint64_t seq = 0;
    roo__route *r = route_get(cl);
    int rc = roo__wire_data_decode(payload, len, &kind, &h, &thread, &seq, &count, &r->data);

    if (rc < 0) {
        roo__log_warn("data connection from %s: a %zu-byte frame is not a data message; "
                      "closing it",
                      c->fc.peer, len);
        goto bad;
    }
    if (kind == ROO__DATA_HELLO) {
        int64_t w;
        if (c->hello_seen || h.protocol_version != ROO__PROTOCOL_VERSION ||
            (cl->has_topology && h.cluster_id != cl->topo.cluster_id)) {
            roo__log_warn("data connection from %s (worker '%s'): wrong hello (protocol %u, "
                          "cluster %016llx); closing it",
                          c->fc.peer, h.worker, h.protocol_version,
                          (unsigned long long)h.cluster_id);
            goto bad;
        }
        w = cl->has_topology ? worker_index(cl, h.worker) : -1;
        if (w < 0 || (uint32_t)w == cl->self) {
            roo__log_warn("data connection from %s: worker '%s' is not in this cluster; "
                          "closing it",
                          c->fc.peer, h.worker);
            goto bad;
        }
        c->hello_seen = true;
        c->peer = (int)w;
        cl->peers[w].inbound = c;
        if (h.incarnation != cl->peers[w].in_incarnation) {
            /* The sender restarted: its sequence numbers start again at 1. */
            peer *p = &cl->peers[w];
            if (p->in_incarnation)
                roo__log_info("worker '%s' restarted: accepting its new sequence numbers",
                              p->info.name);
            p->in_incarnation = h.incarnation;
            memset(p->in_received, 0, e->nshards * sizeof(uint64_t));
            memset(p->in_applied, 0, e->nshards * sizeof(uint64_t));
        }
        /* It is back: if our link to it is down, try now rather than after the backoff. */
        if (!cl->peers[w].data_active && cl->peers[w].data_retry.active) {
            cl->peers[w].data_backoff = BACKOFF_MIN_MS;
            roo__timer_start(e->io_loop, &cl->peers[w].data_retry, 0);
        }
        r->node.next = (roo__qnode *)cl->route_pool;
        cl->route_pool = r;
        return;
    }
    if (!c->hello_seen) {
        roo__log_warn("data connection from %s: data before hello; closing it", c->fc.peer);
        goto bad;
    }
    if (kind == ROO__DATA_CHUNK) {
        /* State of a partition moving here. */
        roo__import_msg *im = roo__xcalloc(1, sizeof(*im));
        roo__state_chunk ch = { 0 };
        r->node.next = (roo__qnode *)cl->route_pool;
        cl->route_pool = r;
        if (roo__wire_data_chunk_decode(payload, len, &ch) < 0) {
            free(im);
            roo__log_warn("data connection from %s: malformed state chunk; closing it", c->fc.peer);
            conn_kill(c);
            return;
        }
        if (!cl->mig.active || ch.epoch != cl->mig.epoch || ch.partition >= cl->topo.partitions ||
            !cl->mig.incoming[ch.partition]) {
            roo__log_debug("state chunk of partition %u (move %llu) from %s is not for us now; "
                           "ignored",
                           ch.partition, (unsigned long long)ch.epoch,
                           cl->peers[c->peer].info.name);
            roo__buf_finish(&ch.records);
            roo__buf_finish(&ch.marks);
            free(im);
            return;
        }
        im->node.kind = ROO__Q_IMPORT;
        im->epoch = ch.epoch;
        im->partition = (uint16_t)ch.partition;
        im->last = ch.last;
        im->precopy = ch.precopy;
        im->records = ch.records;
        im->marks = ch.marks;
        roo__queue_push(&e->shards[ch.partition % e->nshards].inbox, &im->node);
        return;
    }
    if (thread >= e->nshards) {
        roo__log_warn("data connection from %s (worker '%s'): batch for thread %u, but this "
                      "worker has %u; closing it",
                      c->fc.peer, cl->peers[c->peer].info.name, thread, e->nshards);
        goto bad;
    }
    {
        peer *p = &cl->peers[c->peer];
        if (seq <= p->in_received[thread]) {
            /* Sent again after a reconnect: applied (acknowledge again) or still in a thread. */
            if (seq <= p->in_applied[thread]) {
                roo__wire_data_ack_encode(thread, p->in_applied[thread], roo__fconn_outbuf(&c->fc));
                roo__fconn_flush(&c->fc);
            }
            r->node.next = (roo__qnode *)cl->route_pool;
            cl->route_pool = r;
            return;
        }
        p->in_received[thread] = seq;
        r->link_seq = seq;
        r->link_incarnation = p->in_incarnation;
        snprintf(r->link_peer, sizeof(r->link_peer), "%s", p->info.name);
    }
    r->nmsgs = count;
    r->worker = (uint32_t)c->peer;
    cl->received += count;
    atomic_fetch_add_explicit(&e->routed_in, count, memory_order_relaxed);
    if (++cl->peers[c->peer].inbound_inflight >= INBOUND_ROUTES_MAX)
        roo__fconn_pause_read(&c->fc, true);
    roo__queue_push(&e->shards[thread].inbox, &r->node);
    return;

bad:
    r->node.next = (roo__qnode *)cl->route_pool;
    cl->route_pool = r;
    conn_kill(c);
}

void roo__cluster_route_returned(roo__engine *e, roo__route *r)
{
    cluster *cl = e->cluster;
    peer *p = cl->has_topology && r->worker < cl->npeers ? &cl->peers[r->worker] : NULL;

    if (p && p->inbound_inflight > 0) {
        p->inbound_inflight--;
        if (p->inbound && !p->inbound->dead && p->inbound_inflight < INBOUND_ROUTES_MAX / 2)
            roo__fconn_pause_read(&p->inbound->fc, false);
    }
    r->node.next = (roo__qnode *)cl->route_pool;
    cl->route_pool = r;
}

/* ---- external frames ---- */

/* A key as a JSON string: bytes outside printable ASCII become \u00XX. */
static void json_bytes(roo__buf *b, const uint8_t *p, size_t n)
{
    roo__buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            roo__buf_append(b, esc, 2);
        } else if (p[i] < 0x20 || p[i] > 0x7e) {
            int k = snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
            roo__buf_append(b, esc, (size_t)k);
        } else {
            roo__buf_append(b, &p[i], 1);
        }
    }
    roo__buf_append(b, "\"", 1);
}

typedef struct query_out {
    cluster *cl;
    const roo_state_type *t;
    uint16_t state_id;
    roo__buf *json;
    size_t n;
    size_t limit;
    bool truncated;
    void *scratch; /* a state object to deserialize into */
} query_out;

/* One key's committed value, as `"key": value`. */
static void query_emit(query_out *q, const uint8_t *key, size_t klen, const uint8_t *val,
                       size_t vlen)
{
    const roo_state_type *t = q->t;
    char small[256];
    int n = -1;

    json_fmt(q->json, "%s\n    ", q->n ? "," : "");
    json_bytes(q->json, key, klen);
    json_fmt(q->json, ": ");
    q->n++;
    if (t->format) {
        /* The callback gets an aligned object, as everywhere else: never LMDB's bytes. */
        const void *obj = NULL;
        if (t->deserialize) {
            memset(q->scratch, 0, t->size);
            obj = t->deserialize(q->scratch, val, vlen, t->ctx) == 0 ? q->scratch : NULL;
        } else if (vlen == t->size) {
            memcpy(q->scratch, val, vlen);
            obj = q->scratch;
        }
        if (obj) {
            n = t->format(obj, small, sizeof(small), t->ctx);
            if (n >= (int)sizeof(small)) {
                char *big = roo__xmalloc((size_t)n + 1);
                n = t->format(obj, big, (size_t)n + 1, t->ctx);
                if (n > 0)
                    roo__buf_append(q->json, big, (size_t)n);
                free(big);
                if (t->finish && t->deserialize)
                    t->finish(q->scratch, t->ctx);
                return;
            }
            if (t->finish && t->deserialize)
                t->finish(q->scratch, t->ctx);
        }
    }
    if (n > 0) {
        roo__buf_append(q->json, small, (size_t)n);
        return;
    }
    /* No formatter (or it failed): the saved bytes in hex. */
    roo__buf_append(q->json, "\"", 1);
    for (size_t i = 0; i < vlen; i++) {
        char hx[3];
        snprintf(hx, sizeof(hx), "%02x", val[i]);
        roo__buf_append(q->json, hx, 2);
    }
    roo__buf_append(q->json, "\"", 1);
}

static int query_scan_cb(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                         size_t key_len, const uint8_t *val, size_t val_len)
{
    query_out *q = arg;

    (void)partition;
    if (state_id != q->state_id)
        return 0;
    if (q->n >= q->limit) {
        q->truncated = true;
        return -1;
    }
    query_emit(q, key, key_len, val, val_len);
    return 0;
}

/* This worker's committed values: the keys asked for, or all of them (up to a limit). */
static void ext_query(cluster *cl, aconn *c, const roo__ext_request *req)
{
    roo__engine *e = cl->e;
    roo__buf json = { 0 };
    query_out q = { .cl = cl, .json = &json, .limit = 1000000 };
    size_t sid;

    for (sid = 0; sid < e->app->nstate_types; sid++)
        if (!req->state[0] || strcmp(e->app->state_types[sid]->name, req->state) == 0)
            break;
    if (sid == e->app->nstate_types) {
        char why[200];
        snprintf(why, sizeof(why), "no state named '%s' in application '%s'", req->state,
                 e->app->name);
        ext_reply(cl, c->id, false, NULL, why);
        return;
    }
    q.t = e->app->state_types[sid];
    q.state_id = (uint16_t)sid;
    q.scratch = roo__xcalloc(1, q.t->size);
    json_fmt(&json, "{\n  \"worker\": ");
    json_str(&json, cl->name);
    json_fmt(&json, ",\n  \"state\": ");
    json_str(&json, q.t->name);
    json_fmt(&json, ",\n  \"values\": {");
    if (req->nkeys) {
        roo__buf val = { 0 };
        for (size_t i = 0; i < req->nkeys; i++) {
            const roo__buf *k = &req->keys[i];
            uint16_t part;
            if (k->len > ROO_KEY_MAX)
                continue;
            part = roo__partition_of(roo__key_hash(k->data, k->len), e->cfg.partitions);
            val.len = 0;
            if (roo__store_get_state(e->store, part, (uint16_t)sid, k->data, k->len, &val) == 0)
                query_emit(&q, k->data, k->len, val.data, val.len);
        }
        roo__buf_finish(&val);
    } else {
        roo__store_scan(e->store, query_scan_cb, &q);
    }
    json_fmt(&json, "\n  },\n  \"count\": %zu,\n  \"truncated\": %s\n}\n", q.n,
             q.truncated ? "true" : "false");
    roo__buf_append(&json, "", 1);
    ext_reply(cl, c->id, true, (const char *)json.data, NULL);
    roo__buf_finish(&json);
    free(q.scratch);
}

/* roo-ctl shrink: remove workers (by name or count), or say which could leave. */
static void ext_shrink(cluster *cl, aconn *c, const roo__ext_request *req)
{
    roo__topology t;
    roo__buf out = { 0 };
    char err[512], what[160];
    uint32_t live = 0, nleave = 0;
    uint8_t *leave = NULL;
    size_t len;

    if (cl->mode != ROO__INITIALIZER || !cl->has_topology) {
        const char *ext = cl->has_topology ? cl->topo.workers[0].external_addr : "";
        snprintf(err, sizeof(err), "only the initializer can shrink the cluster: ask %s%s",
                 ext && ext[0] ? "its --external address " : "the initializer's --external address",
                 ext && ext[0] ? ext : "");
        ext_reply(cl, c->id, false, NULL, err);
        return;
    }
    for (uint32_t w = 0; w < cl->topo.nworkers; w++)
        live += !cl->topo.workers[w].left;
    leave = roo__xcalloc(cl->topo.nworkers, 1);
    for (size_t i = 0; i < req->nworkers; i++) {
        int64_t w = worker_index(cl, req->workers[i]);
        if (w < 0 || (uint32_t)w >= cl->topo.nworkers) {
            snprintf(err, sizeof(err), "no worker named '%s' in the cluster", req->workers[i]);
            goto fail;
        }
        if ((uint32_t)w == cl->self) {
            snprintf(err, sizeof(err),
                     "the initializer (%s) cannot leave: it coordinates the cluster and its "
                     "moves; remove other workers",
                     cl->name);
            goto fail;
        }
        if (!leave[w])
            nleave++;
        leave[w] = 1;
    }
    if (!req->nworkers && req->count) {
        for (uint32_t w = cl->topo.nworkers; w-- > 1 && nleave < req->count;) {
            if (!cl->topo.workers[w].left && w != cl->self) {
                leave[w] = 1;
                nleave++;
            }
        }
        if (nleave < req->count) {
            snprintf(err, sizeof(err),
                     "cannot remove %u of %u workers: the initializer stays, so at most %u can "
                     "leave",
                     req->count, live, live - 1);
            goto fail;
        }
    }
    if (req->dry_run) {
        json_fmt(&out, "{\n  \"workers\": %u,\n  \"can_leave\": [", live);
        for (uint32_t w = 0, k = 0; w < cl->topo.nworkers; w++)
            if (!cl->topo.workers[w].left && w != cl->self) {
                json_fmt(&out, "%s", k++ ? ", " : "");
                json_str(&out, cl->topo.workers[w].name);
            }
        json_fmt(&out, "],\n  \"cannot_leave\": [");
        json_str(&out, cl->name);
        json_fmt(&out, "],\n  \"would_leave\": [");
        for (uint32_t w = 0, k = 0; w < cl->topo.nworkers; w++)
            if (leave[w]) {
                json_fmt(&out, "%s", k++ ? ", " : "");
                json_str(&out, cl->topo.workers[w].name);
            }
        json_fmt(&out, "],\n  \"busy\": %s\n}\n",
                 cl->co.running || cl->mig.active ? "true" : "false");
        roo__buf_append(&out, "", 1);
        ext_reply(cl, c->id, true, (const char *)out.data, NULL);
        roo__buf_finish(&out);
        free(leave);
        return;
    }
    if (!nleave) {
        snprintf(err, sizeof(err), "name the workers to remove (--workers) or how many (--count)");
        goto fail;
    }
    if (cl->co.running || cl->mig.active || cl->draining) {
        snprintf(err, sizeof(err), "a partition move is under way; try again when it is done");
        goto fail;
    }
    roo__topology_copy(&cl->topo, &t);
    len = (size_t)snprintf(what, sizeof(what), "shrinking by %u worker(s) (", nleave);
    for (uint32_t w = 0, k = 0; w < t.nworkers; w++) {
        if (!leave[w])
            continue;
        t.workers[w].left = true;
        if (len < sizeof(what))
            len += (size_t)snprintf(what + len, sizeof(what) - len, "%s%s", k++ ? ", " : "",
                                    t.workers[w].name);
    }
    if (len < sizeof(what))
        snprintf(what + len, sizeof(what) - len, ")");
    rebalance(&t);
    co_begin(cl, &t, what);
    roo__topology_finish(&t);
    free(leave);
    if (!cl->co.running) {
        ext_reply(cl, c->id, false, NULL, "the partition move could not start (see the log)");
        return;
    }
    cl->co.ext_conn = c->id;
    return;

fail:
    free(leave);
    ext_reply(cl, c->id, false, NULL, err);
}

static void ext_conn_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__ext_request req;
    roo__ext_command cmd;

    if (roo__wire_ext_request_decode(payload, len, &req) < 0) {
        roo__log_warn("external connection from %s: a %zu-byte frame is not a request; closing "
                      "it",
                      c->fc.peer, len);
        conn_kill(c);
        return;
    }
    cmd = req.cmd;
    if (cmd == ROO__EXT_QUERY)
        ext_query(cl, c, &req);
    else if (cmd == ROO__EXT_SHRINK)
        ext_shrink(cl, c, &req);
    roo__wire_ext_request_finish(&req);
    switch (cmd) {
    case ROO__EXT_QUERY:
    case ROO__EXT_SHRINK:
        break;
    case ROO__EXT_STATUS:
        status_start(cl, c->id, -1, 0);
        break;
    case ROO__EXT_SHUTDOWN:
        if (cl->mode == ROO__JOINER) {
            roo__ctl m = { .kind = ROO__CTL_SHUTDOWN, .reason = "requested with roo-ctl" };
            if (!cl->to_init_open) {
                ext_reply(cl, c->id, false, NULL,
                          "the initializer is unreachable: cannot stop the cluster from here");
                break;
            }
            send_ctl(&cl->to_init, &m);
        } else {
            begin_cluster_shutdown(cl, "requested with roo-ctl");
        }
        ext_reply(cl, c->id, true, "{\"shutting_down\": true}\n", NULL);
        break;
    }
}

/* ---- accepted connections ---- */

static void aconn_frame(roo__fconn *fc, const uint8_t *payload, size_t len)
{
    aconn *c = fc->data;

    switch (c->kind) {
    case CONN_CONTROL:
        ctl_conn_frame(c->cl, c, payload, len);
        break;
    case CONN_DATA:
        data_conn_frame(c->cl, c, payload, len);
        break;
    case CONN_EXTERNAL:
        ext_conn_frame(c->cl, c, payload, len);
        break;
    }
}

static void aconn_closed(roo__fconn *fc, int err)
{
    aconn *c = fc->data;
    static const char *const kinds[] = { "control", "data", "external" };

    if (err == ROO_EFRAMESIZE)
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
            drain_evaluate(cl);
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

static void accept_on(cluster *cl, int lfd, conn_kind kind)
{
    static const size_t limits[] = { ROO__CONTROL_FRAME_MAX, ROO__DATA_FRAME_MAX,
                                     ROO__EXTERNAL_FRAME_MAX };

    for (int i = 0; i < 16; i++) {
        char peer_addr[64];
        int fd, rc = roo__tcp_accept(lfd, &fd, peer_addr, sizeof(peer_addr));
        aconn *c;

        if (rc == -EAGAIN || rc == -EINTR)
            return;
        if (rc < 0) {
            roo__log_warn("accept failed: %s", roo_strerror(rc));
            return;
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
        c->next = cl->conns;
        cl->conns = c;
    }
}

static void ctl_listen_cb(roo__loop *loop, roo__io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    accept_on(io->data, io->fd, CONN_CONTROL);
}

static void data_listen_cb(roo__loop *loop, roo__io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    accept_on(io->data, io->fd, CONN_DATA);
}

static void ext_listen_cb(roo__loop *loop, roo__io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    accept_on(io->data, io->fd, CONN_EXTERNAL);
}

void roo__cluster_prepare(roo__engine *e)
{
    cluster *cl = e->cluster;
    aconn **pp = &cl->conns;

    if (!cl)
        return;
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

/* ---- joiner: the control link to the initializer ---- */

static void ctl_connect_later(cluster *cl);

static void to_init_frame(roo__fconn *fc, const uint8_t *payload, size_t len)
{
    cluster *cl = fc->data;
    roo__ctl m;

    if (roo__wire_ctl_decode(payload, len, &m) < 0) {
        roo__log_warn("control link to the initializer: malformed frame; reconnecting");
        roo__fconn_close(fc);
        cl->to_init_open = cl->to_init_active = false;
        ctl_connect_later(cl);
        return;
    }
    switch (m.kind) {
    case ROO__CTL_REFUSE:
        if (cl->e->cfg.join && m.initializer && m.initializer[0] &&
            roo__addr_parse(m.initializer, &cl->e->cfg.control) == 0) {
            /* We asked a worker that is not the initializer: ask the one it named. */
            roo__log_info("%s is not the initializer; asking the initializer at %s", fc->peer,
                          m.initializer);
            roo__fconn_close(fc);
            cl->to_init_open = cl->to_init_active = false;
            cl->ctl_backoff = 0;
            ctl_connect_later(cl);
            cl->ctl_backoff = BACKOFF_MIN_MS;
            break;
        }
        cl->refused = true;
        {
            char msg[700];
            snprintf(msg, sizeof(msg), "the initializer refused this worker: %s", m.reason);
            fatal(cl, msg);
        }
        roo__fconn_close(fc);
        cl->to_init_open = cl->to_init_active = false;
        break;
    case ROO__CTL_TOPOLOGY:
        if (!cl->has_topology)
            roo__log_info("received the topology of cluster %016llx: %zu workers, %u partitions",
                          (unsigned long long)m.topology.cluster_id, m.topology.nworkers,
                          m.topology.partitions);
        apply_topology(cl, &m.topology);
        break;
    case ROO__CTL_CLUSTER_READY:
        go_ready(cl);
        break;
    case ROO__CTL_MIGRATE:
        if (!cl->has_topology) {
            /* Joining: start from the table after the move, minus what moves to us. */
            roo__topology t0;
            int64_t me = -1;
            roo__topology_copy(&m.topology, &t0);
            for (size_t i = 0; i < t0.nworkers; i++)
                if (!t0.workers[i].left && strcmp(t0.workers[i].name, cl->name) == 0)
                    me = (int64_t)i;
            if (me < 0) {
                roo__topology_finish(&t0);
                fatal(cl, "the initializer's partition move does not list this worker");
                break;
            }
            for (uint32_t p = 0; p < t0.partitions; p++)
                if (t0.owner[p] == (uint32_t)me)
                    t0.owner[p] = 0;
            t0.version = m.epoch - 1;
            roo__log_info("joining cluster %016llx (%zu workers after the move, %u partitions)",
                          (unsigned long long)t0.cluster_id, t0.nworkers, t0.partitions);
            if (apply_topology(cl, &t0) < 0) {
                roo__topology_finish(&t0);
                break;
            }
            roo__topology_finish(&t0);
        }
        if (m.phase == ROO__MIG_PRECOPY) {
            if (mig_prepare(cl, m.epoch, &m.topology))
                mig_precopy(cl);
        } else if (m.phase == ROO__MIG_HOLD) {
            mig_begin(cl, m.epoch, &m.topology);
        } else if (m.phase == ROO__MIG_TRANSFER && cl->mig.active && m.epoch == cl->mig.epoch) {
            mig_transfer(cl);
        }
        break;
    case ROO__CTL_STATUS_QUERY: {
        roo__worker_stats mine;
        roo__ctl r = { .kind = ROO__CTL_STATUS_REPLY, .query_id = m.query_id, .nstats = 1 };
        own_stats(cl, &mine);
        r.stats = &mine;
        send_ctl(fc, &r);
        break;
    }
    case ROO__CTL_STATUS_REPLY: {
        query *q = query_find(cl, m.query_id);
        if (q) {
            for (size_t i = 0; i < m.nstats; i++) {
                int64_t w = worker_index(cl, m.stats[i].name);
                if (w >= 0 && (uint32_t)w != cl->self)
                    set_stats(q, (uint32_t)w, &m.stats[i]);
            }
            query_complete(cl, q);
        }
        break;
    }
    case ROO__CTL_SHUTDOWN:
        stop_locally(cl, m.reason[0] ? m.reason : "requested by the initializer");
        break;
    case ROO__CTL_DRAIN_QUERY: {
        roo__ctl r = { .kind = ROO__CTL_DRAIN_REPORT,
                       .round = m.round,
                       .worker_name = (char *)cl->name };
        r.idle = local_idle(cl);
        r.sent = total_sent(cl);
        r.received = cl->received;
        send_ctl(fc, &r);
        break;
    }
    case ROO__CTL_EXIT:
        cl->e->exit_received = true;
        if (!cl->e->cluster_stopping)
            stop_locally(cl, "the initializer said exit");
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
    cl->ctl_backoff = BACKOFF_MIN_MS;
    ctl_connect_later(cl);
}

/*
 * Listen on a and say (in adv, if given) the address others should use: what the user named
 * (a host name stays a host name) with the real port, or the bound address if a was a
 * wildcard. msg explains a failure.
 */
static int listen_at(const roo__addr *a, int *fd, char *adv, size_t advcap, const char *what,
                     char *msg, size_t cap)
{
    char local[300], addr[300];
    int rc = roo__tcp_listen(a, 128, fd);

    if (rc < 0) {
        snprintf(msg, cap, "cannot listen on %s %s: %s", what, roo__addr_str(a, addr, sizeof(addr)),
                 roo_strerror(rc));
        return rc;
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

/* listen_at, on the io thread: also watch the listener. */
static int bind_local(cluster *cl, const roo__addr *a, int *fd, roo__io *io, roo__io_cb cb,
                      char *adv, size_t advcap, const char *what)
{
    char msg[512];
    int rc = listen_at(a, fd, adv, advcap, what, msg, sizeof(msg));

    if (rc < 0) {
        roo__log_error("%s", msg);
        return rc;
    }
    io->cb = cb;
    io->data = cl;
    roo__io_start(cl->e->io_loop, io, *fd, EPOLLIN);
    return 0;
}

/*
 * adv is an address we listen on; if its host is a wildcard, put the host of `local` (the
 * local end of a connection that another worker made or took) in its place.
 */
static void advertise_wild(char *adv, size_t cap, const char *local)
{
    roo__addr a, l;

    if (!adv[0] || roo__addr_parse(adv, &a) < 0 || roo__addr_parse(local, &l) < 0)
        return;
    if (strcmp(a.host, "0.0.0.0") != 0 && strcmp(a.host, "::") != 0)
        return;
    snprintf(a.host, sizeof(a.host), "%s", l.host);
    roo__addr_str(&a, adv, cap);
}

static void to_init_connected(roo__fconn *fc, int err)
{
    cluster *cl = fc->data;
    roo__ctl m = { .kind = ROO__CTL_HELLO };

    if (err) {
        cl->to_init_active = false;
        if (cl->ctl_failures++ == 0)
            roo__log_info("initializer at %s not reachable yet (%s); retrying with backoff",
                          fc->peer, roo_strerror(err));
        ctl_connect_later(cl);
        return;
    }
    cl->ctl_failures = 0;
    cl->ctl_backoff = BACKOFF_MIN_MS;
    cl->to_init_open = true;
    if (cl->need_bind_local) {
        /* No --my-control/--my-data: listen on the address we reach the initializer from. */
        char local[300];
        roo__addr a;
        roo__fconn_local(fc, local, sizeof(local));
        if (roo__addr_parse(local, &a) < 0) {
            fatal(cl, "cannot determine this worker's own address");
            return;
        }
        snprintf(a.port, sizeof(a.port), "0");
        if (cl->ctl_lfd < 0 &&
            bind_local(cl, &a, &cl->ctl_lfd, &cl->ctl_lio, ctl_listen_cb, cl->my_control,
                       sizeof(cl->my_control), "--my-control") < 0) {
            fatal(cl, "cannot listen for control connections");
            return;
        }
        if (cl->data_lfd < 0 && bind_local(cl, &a, &cl->data_lfd, &cl->data_lio, data_listen_cb,
                                           cl->my_data, sizeof(cl->my_data), "--my-data") < 0) {
            fatal(cl, "cannot listen for data connections");
            return;
        }
        cl->need_bind_local = false;
    }
    {
        /* Listening on a wildcard (0.0.0.0 / ::): others reach us at the address we reach
         * the initializer from. */
        char local[300];
        roo__fconn_local(fc, local, sizeof(local));
        advertise_wild(cl->my_control, sizeof(cl->my_control), local);
        advertise_wild(cl->my_data, sizeof(cl->my_data), local);
        advertise_wild(cl->my_external, sizeof(cl->my_external), local);
    }
    m.protocol_version = protocol_version();
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
    send_ctl(fc, &m);
    check_conns_ready(cl);
}

static const roo__fconn_ops to_init_ops = {
    .on_frame = to_init_frame,
    .on_close = to_init_closed,
    .on_connect = to_init_connected,
};

static void ctl_retry_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;
    int rc;

    (void)loop;
    if (cl->to_init_active || cl->refused || cl->e->exit_received)
        return;
    roo__fconn_finish(&cl->to_init);
    rc = roo__fconn_connect(&cl->to_init, cl->e->io_loop, &cl->e->cfg.control,
                            ROO__CONTROL_FRAME_MAX, &to_init_ops, cl);
    if (rc < 0) {
        if (cl->ctl_failures++ == 0)
            roo__log_info("initializer not reachable yet (%s); retrying with backoff",
                          roo_strerror(rc));
        ctl_connect_later(cl);
        return;
    }
    cl->to_init_active = true;
}

static void ctl_connect_later(cluster *cl)
{
    cl->ctl_retry.cb = ctl_retry_cb;
    cl->ctl_retry.data = cl;
    roo__timer_start(cl->e->io_loop, &cl->ctl_retry, cl->ctl_backoff);
    cl->ctl_backoff = ROO__MIN(cl->ctl_backoff * 2, BACKOFF_MAX_MS);
}

static void heartbeat_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;

    (void)loop;
    if (cl->to_init_open) {
        roo__worker_stats mine;
        roo__ctl m = { .kind = ROO__CTL_HEARTBEAT, .nstats = 1 };
        own_stats(cl, &mine);
        m.stats = &mine;
        send_ctl(&cl->to_init, &m);
    }
    roo__timer_start(cl->e->io_loop, &cl->heartbeat, HEARTBEAT_MS);
}

/* ---- set-up ---- */

int roo__cluster_create(roo__engine *e, const roo__topology *saved, char *msg, size_t cap)
{
    const roo__engine_cfg *cfg = &e->cfg;
    cluster *cl = roo__xcalloc(1, sizeof(*cl));
    int rc;

    cl->e = e;
    cl->mode = cfg->mode;
    cl->name = cfg->worker_name;
    cl->ctl_lfd = cl->data_lfd = cl->ext_lfd = -1;
    cl->ctl_backoff = BACKOFF_MIN_MS;
    cl->incarnation = random_id();
    e->cluster = cl;
    if (saved) {
        e->saved_topology = roo__xcalloc(1, sizeof(roo__topology));
        roo__topology_copy(saved, e->saved_topology);
    }

    if (cfg->has_external) {
        rc = listen_at(&cfg->external, &cl->ext_lfd, cl->my_external, sizeof(cl->my_external),
                       "--external", msg, cap);
        if (rc < 0)
            return rc;
    }
    if (cl->mode == ROO__INITIALIZER && cfg->worker_count > 1) {
        roo__addr data = cfg->control;
        rc = listen_at(&cfg->control, &cl->ctl_lfd, cl->my_control, sizeof(cl->my_control),
                       "--control", msg, cap);
        if (rc < 0)
            return rc;
        if (cfg->has_data)
            data = cfg->data;
        else
            snprintf(data.port, sizeof(data.port), "0");
        rc = listen_at(&data, &cl->data_lfd, cl->my_data, sizeof(cl->my_data), "--data", msg, cap);
        if (rc < 0)
            return rc;
    } else if (cl->mode == ROO__JOINER) {
        const roo__worker_info *me = NULL;
        roo__addr a;
        /* A member restarting keeps its old addresses, so peers find it again. */
        for (size_t i = 0; saved && i < saved->nworkers; i++)
            if (strcmp(saved->workers[i].name, cfg->worker_name) == 0)
                me = &saved->workers[i];
        if (cfg->has_my_control || (me && roo__addr_parse(me->control_addr, &a) == 0)) {
            rc = listen_at(cfg->has_my_control ? &cfg->my_control : &a, &cl->ctl_lfd,
                           cl->my_control, sizeof(cl->my_control), "--my-control", msg, cap);
            if (rc < 0 && cfg->has_my_control)
                return rc;
        }
        if (cfg->has_my_data || (me && roo__addr_parse(me->data_addr, &a) == 0)) {
            rc = listen_at(cfg->has_my_data ? &cfg->my_data : &a, &cl->data_lfd, cl->my_data,
                           sizeof(cl->my_data), "--my-data", msg, cap);
            if (rc < 0 && cfg->has_my_data)
                return rc;
        }
        cl->need_bind_local = cl->ctl_lfd < 0 || cl->data_lfd < 0;
    }
    return 0;
}

void roo__cluster_start(roo__engine *e)
{
    cluster *cl = e->cluster;

    if (cl->ext_lfd >= 0) {
        cl->ext_lio.cb = ext_listen_cb;
        cl->ext_lio.data = cl;
        roo__io_start(e->io_loop, &cl->ext_lio, cl->ext_lfd, EPOLLIN);
    }
    if (cl->ctl_lfd >= 0) {
        cl->ctl_lio.cb = ctl_listen_cb;
        cl->ctl_lio.data = cl;
        roo__io_start(e->io_loop, &cl->ctl_lio, cl->ctl_lfd, EPOLLIN);
    }
    if (cl->data_lfd >= 0) {
        cl->data_lio.cb = data_listen_cb;
        cl->data_lio.data = cl;
        roo__io_start(e->io_loop, &cl->data_lio, cl->data_lfd, EPOLLIN);
    }

    if (e->saved_topology && cl->mode != ROO__STANDALONE && e->saved_topology->nworkers > 1) {
        /* A member restarting: it knows the table; serve at once, reconnect in the background. */
        roo__log_info("rejoining cluster %016llx (%zu workers) from the saved topology",
                      (unsigned long long)e->saved_topology->cluster_id,
                      e->saved_topology->nworkers);
        if (apply_topology(cl, e->saved_topology) < 0)
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
            mig_begin(cl, e->saved_pending->version, e->saved_pending);
            if (cl->mode == ROO__INITIALIZER && cl->mig.active) {
                cl->co.running = true;
                cl->co.started_ns = roo__now_ns();
                snprintf(cl->co.what, sizeof(cl->co.what), "resumed partition move");
                cl->co.reported = roo__xcalloc(cl->mig.next.nworkers, sizeof(bool));
                cl->co.phase = ROO__MIG_HOLD;
            }
        }
        if (cl->mode == ROO__INITIALIZER)
            cl->self_conns_ready = true;
        go_ready(cl);
    } else if (cl->mode == ROO__STANDALONE ||
               (cl->mode == ROO__INITIALIZER && e->cfg.worker_count == 1)) {
        roo__topology t = { 0 };
        roo__worker_info me = { (char *)cl->name, cl->my_control, cl->my_data, e->nshards,
                                cl->my_external };
        t.cluster_id = e->saved_topology ? e->saved_topology->cluster_id : random_id();
        t.app_name = e->app->name;
        t.partitions = e->cfg.partitions;
        t.nworkers = 1;
        t.workers = &me;
        t.owner = roo__xcalloc(t.partitions, sizeof(uint32_t));
        t.version = 1;
        apply_topology(cl, &t);
        free(t.owner);
        cl->self_conns_ready = true;
        go_ready(cl);
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
    if (cl->mode == ROO__JOINER) {
        cl->ctl_backoff = 0;
        ctl_connect_later(cl);
        cl->ctl_backoff = BACKOFF_MIN_MS;
    }
    cl->heartbeat.cb = heartbeat_cb;
    cl->heartbeat.data = cl;
    roo__timer_start(e->io_loop, &cl->heartbeat, HEARTBEAT_MS);
}

void roo__cluster_on_batch(roo__engine *e, roo__batch *b)
{
    cluster *cl = e->cluster;
    roo__route *r = b->remote, *next;

    b->remote = NULL;
    for (; r; r = next) {
        peer *p;
        next = (roo__route *)r->node.next;
        r->node.next = NULL;
        if (!cl->has_topology || r->worker >= cl->npeers || r->worker == cl->self) {
            roo__log_error("internal error: route to unknown worker %u", r->worker);
            r->node.kind = ROO__Q_ROUTE_RETURN;
            roo__queue_push(&r->from->inbox, &r->node);
            continue;
        }
        if (r->held && cl->mig.active) {
            /* For a partition on the move: kept, in order, until the switch. */
            if (cl->mig.held_tail)
                cl->mig.held_tail->node.next = &r->node;
            else
                cl->mig.held_head = r;
            cl->mig.held_tail = r;
            continue;
        }
        p = &cl->peers[r->worker];
        if (p->q_tail)
            p->q_tail->node.next = &r->node;
        else
            p->q_head = r;
        p->q_tail = r;
        peer_pump(p);
    }
}

void roo__cluster_on_acks(roo__engine *e, roo__batch *b)
{
    cluster *cl = e->cluster;

    for (uint32_t i = 0; i < b->nacks; i++) {
        const roo__link_ack *a = &b->acks[i];
        peer *p;
        bool last = true;
        if (!cl->has_topology || a->peer >= cl->npeers || a->thread >= e->nshards)
            continue;
        p = &cl->peers[a->peer];
        if (a->incarnation != p->in_incarnation)
            continue; /* from a previous life of the sender: it no longer waits for it */
        if (a->seq > p->in_applied[a->thread])
            p->in_applied[a->thread] = a->seq;
        /* One acknowledgement per (peer, thread) and batch: the highest. */
        for (uint32_t k = i + 1; k < b->nacks && last; k++)
            last = !(b->acks[k].peer == a->peer && b->acks[k].thread == a->thread);
        if (last && p->inbound && !p->inbound->dead) {
            roo__wire_data_ack_encode(a->thread, p->in_applied[a->thread],
                                      roo__fconn_outbuf(&p->inbound->fc));
            roo__fconn_flush(&p->inbound->fc);
        }
    }
    b->nacks = 0;
}

bool roo__cluster_idle(const roo__engine *e)
{
    const cluster *cl = e->cluster;

    if (cl->mig.held_head)
        return false;
    for (uint32_t w = 0; cl->has_topology && w < cl->npeers; w++) {
        const peer *p = &cl->peers[w];
        if (w == cl->self)
            continue;
        if (p->q_head || p->frames_len || (p->data_open && roo__fconn_pending(&p->data)) ||
            p->inbound_inflight)
            return false;
    }
    return true;
}

void roo__cluster_destroy(roo__engine *e)
{
    cluster *cl = e->cluster;

    if (!cl)
        return;
    for (aconn *c = cl->conns, *next; c; c = next) {
        next = c->next;
        roo__fconn_finish(&c->fc);
        free(c);
    }
    for (uint32_t w = 0; cl->peers && w < cl->npeers; w++) {
        peer *p = &cl->peers[w];
        roo__fconn_finish(&p->data);
        roo__worker_info_finish(&p->info);
        free(p->stats.name);
        roo__buf_finish(&p->backlog);
        free(p->frames);
        free(p->out_seq);
        free(p->out_acked);
        free(p->in_received);
        free(p->in_applied);
        /* Queued routes belong to shards, which free their own pools. */
    }
    free(cl->peers);
    for (size_t i = 0; i < cl->njoined; i++)
        roo__worker_info_finish(&cl->joined[i].info);
    free(cl->joined);
    roo__fconn_finish(&cl->to_init);
    for (int i = 0; i < MAX_QUERIES; i++)
        if (cl->queries[i].used)
            query_free(&cl->queries[i], cl->has_topology ? cl->topo.nworkers : 1);
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
    mig_free(cl);
    free(cl->co.reported);
    for (size_t i = 0; i < cl->co.njoiners; i++)
        roo__worker_info_finish(&cl->co.joiners[i].info);
    free(cl->co.joiners);
    if (e->saved_pending) {
        roo__topology_finish(e->saved_pending);
        free(e->saved_pending);
        e->saved_pending = NULL;
    }
    if (e->saved_topology) {
        roo__topology_finish(e->saved_topology);
        free(e->saved_topology);
        e->saved_topology = NULL;
    }
    free(cl);
    e->cluster = NULL;
}
