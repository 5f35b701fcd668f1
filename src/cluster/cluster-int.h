/* cluster-int.h: what the cluster's rooms share: its structures, limits and helpers.
 * Internal to src/cluster; everything here runs on the io thread. */
#ifndef ROO_CLUSTER_INT_H
#define ROO_CLUSTER_INT_H

#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "common/json.h"
#include "common/ring.h"
#include "engine/engine-int.h"
#include "net/fconn.h"
#include "wire/wire.h"

#define HEARTBEAT_MS 1000
#define STATUS_TIMEOUT_MS 1500
#define DRAIN_INTERVAL_MS 50
#define PEER_OUT_HIGH (8u * 1024u * 1024u) /* framed bytes queued on a data link */
#define PEER_SPARES_MAX 8                  /* spare route-buffer bodies kept per peer */
#define INBOUND_ROUTES_MAX 16              /* route buffers from one peer waiting in threads */
#define MAX_WORKERS 1024                   /* peers[] capacity: indices never move */
#define CHUNK_BYTES (1u << 20)             /* state bytes per StateChunk */
#define MIG_RETRY_MS 10
#define SHRINK_WAITERS 8
#define RATE_SAMPLES 5 /* heartbeats of counters kept: the rates' window, ~5 s */

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
    roo__backoff data_retry;
    int64_t data_opened_ns; /* when the current link opened */
    roo__route *q_head, *q_tail;
    uint64_t sent;
    /*
     * Upstream backup: every frame sent to this peer stays in `frames` (in send order) until
     * the peer acknowledges that the batch is committed on its side; a new connection
     * starts by sending all of them again. A frame is its head and the bytes of the route
     * buffer it came from, taken whole (the route buffer goes home with a spare buffer in
     * their place), so they are never copied on this side. backlog_bytes: their sum.
     */
    size_t backlog_bytes;
    ROO__RING(struct sent_frame {
        uint32_t thread;
        uint64_t seq;
        struct roo__shard *origin; /* told when the peer has committed it */
        uint64_t batch_seq;
        roo__buf body;
        uint8_t head_len;
        uint8_t head[ROO__DATA_BATCH_HEAD_MAX];
    })
    frames;
    /* Emptied bodies of acknowledged frames, for route buffers going home. */
    roo__buf spares[PEER_SPARES_MAX];
    unsigned nspares;
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

/*
 * What a metrics scrape reads (cluster-metrics.c, roo__cluster_take_snapshot): figures that
 * only the io thread writes, as relaxed atomics (a load and a store, no read-modify-write:
 * there is one writer), read on libmicrohttpd's thread. They live inside the cluster and
 * are of fixed size (one slot per possible peer index, MAX_WORKERS), so a scrape never
 * meets an array that grew or was freed while the topology changed.
 */
typedef struct clm_peer {
    /* NULL: no peer at this index (or us). Published with release once the slot's counters
     * are reset; the string never changes and is freed only with the cluster. */
    _Atomic(char *) name;
    _Atomic uint64_t msgs_sent, msgs_received, bytes_sent, bytes_received;
    _Atomic uint64_t backlog;
    _Atomic bool connected;
} clm_peer;

enum { CLM_MOVE_DONE, CLM_MOVE_ABORTED, CLM_MOVE_ABANDONED };

typedef struct clm {
    clm_peer peers[MAX_WORKERS];
    _Atomic uint32_t npeers;      /* slots ever published: a scrape looks no further */
    struct clm_name *retired;     /* io thread: names replaced, freed with the cluster */
    _Atomic bool listening[3];    /* per conn_kind */
    _Atomic uint64_t conns[3];    /* open now, per conn_kind */
    _Atomic uint64_t accepted[3]; /* per conn_kind */
    _Atomic uint64_t refused[3];  /* per conn_kind: limit, handshake, hello */
    _Atomic uint64_t moves[3];    /* per CLM_MOVE_* */
    _Atomic uint64_t moving;      /* partitions coming here or leaving */
    roo__hist pause;              /* hold to switch, per move held here */
    _Atomic uint64_t workers;     /* in the table, not left */
    _Atomic uint64_t cluster_id;  /* 0 until the table */
} clm;

/* The io thread only (the one writer): add to, or set, a published figure. */
static inline void roo__clm_add(_Atomic uint64_t *f, uint64_t d)
{
    atomic_store_explicit(f, atomic_load_explicit(f, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void roo__clm_set(_Atomic uint64_t *f, uint64_t v)
{
    atomic_store_explicit(f, v, memory_order_relaxed);
}

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
    roo__timer send_timer;      /* tests: the table's send, held back (ROO_TEST_SEND_DELAY_MS) */
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
    roo__backoff ctl_retry;
    bool refused;
    bool need_bind_local; /* bind my-control/my-data once the local IP is known */

    roo__timer heartbeat;
    aconn *conns;
    uint64_t next_conn_id;
    unsigned nconns[3];          /* open accepted connections, per conn_kind */
    roo__timer listen_resume[3]; /* a listener resting after an accept failure, per kind */

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
        uint32_t precopy_round;        /* the pre-copy's current run (Migrate.round) */
        bool track_asked, track_valid; /* old owner: threads note changes since the pre-copy */
        unsigned shards_tracking;
        bool *shard_tracking;
        bool dump_asked, dump_done; /* ... and hand them over for the transfer */
        unsigned shards_dumped;
        roo__buf dumped;
        int64_t hold_ns;
        uint32_t hold_gen; /* this worker's number of the hold (route buffers carry it) */
        roo__route *held_head, *held_tail; /* messages for moving partitions, until the switch */
        uint64_t *sink_marks;              /* old owner: output to flush before sending state */
        int64_t send_after_ns;             /* tests: hold the transfer back (see below) */
        roo__timer retry;
        int64_t started_ns;
        int64_t watch_ns; /* the last "still waiting" line */
    } mig;
    /* Holds begun here (each gets the next number), and those that ended in an abort: their
     * held buffers still on their way go back to their threads (see roo__move_abort). */
    uint32_t hold_gens;
    uint32_t *aborted_gens;
    size_t naborted_gens;
    uint64_t aborted_epoch; /* the last move aborted here: its state chunks are ignored */
    /* The initializer drives moves. */
    struct {
        bool running;
        uint32_t phase;
        uint32_t round;    /* the pre-copy's runs: each repeat gets a new number */
        bool hold_waiting; /* HOLD goes out once our own pending table is stored */
        bool *reported;    /* per worker of mig.next */
        joined *joiners;
        size_t njoiners;
        uint32_t want; /* joiners to wait for */
        /* roo-ctl shrinks waiting for the end (the same shrink may be asked several times;
         * past SHRINK_WAITERS the oldest is told to ask again) */
        uint64_t ext_conns[SHRINK_WAITERS];
        unsigned next_waiter;
        char what[160];
        int64_t started_ns;
        roo__timer hold_timer; /* tests: HOLD after a delay (ROO_TEST_HOLD_DELAY_MS) */
        int64_t phase_ns;      /* when the current phase began */
        /* An abort past the pre-copy is told to the workers once our pending table is
         * cleared on disk (abort_seq stored): a restarted initializer must not resume it. */
        bool abort_unsent;
        uint64_t abort_seq;
        uint64_t abort_conn; /* roo-ctl waiting for it */
        char abort_what[160];
        uint64_t min_version; /* a move's version is above every aborted one's */
    } co;

    bool *stage_is_state;     /* per stage of the app: may a peer route messages to it */
    roo__auth_key key;        /* the cluster secret's key (auth.h) */
    roo__ratelimit refusals;  /* log lines for connections that did not prove it */
    roo__ratelimit format_rl; /* log lines for values a query could not format */
    roo__route *route_pool;
    uint64_t received;    /* messages received from other workers */
    uint64_t incarnation; /* random, new at every start: peers restart our sequence numbers */
    /* For the status's rates: the counters as each heartbeat saw them (a ring, oldest at
     * rate_next once full), so a rate covers the last few seconds, not the whole run. */
    struct rate_sample {
        int64_t ns;
        uint64_t frames_in, records_out;
    } rates[RATE_SAMPLES];
    unsigned rate_next, nrates;
    char metrics_address[ROO__STATS_ADDR_CAP]; /* set before the io thread starts */
    /* Resumable hellos waiting for a stream keeper's answer (stream_ask.c). */
    roo__stream_ask **asks;
    size_t nasks, asks_cap;
    uint64_t next_ask;
    clm clm; /* the figures a metrics scrape reads (see clm above) */
};

/* Append r to a FIFO of route buffers linked through node.next (a peer's queue, the held). */
static inline void roo__cl_route_append(roo__route **head, roo__route **tail, roo__route *r)
{
    r->node.next = NULL;
    if (*tail)
        (*tail)->node.next = &r->node;
    else
        *head = r;
    *tail = r;
}

/* stream_ask.c: hellos checked with the keeper of their stream's read position */
void roo__cl_stream_ask(cluster *cl, roo__stream_ask *a);
void roo__cl_stream_asked(cluster *cl, aconn *c, const uint8_t *payload, size_t len);
void roo__cl_stream_answered(cluster *cl, peer *p, const uint8_t *payload, size_t len);
void roo__cl_stream_asks_tick(cluster *cl);
void roo__cl_stream_asks_finish(cluster *cl);

/* cluster.c */
uint32_t roo__cl_protocol_version(void);
void roo__cl_send_ctl(roo__fconn *fc, const roo__ctl *m);
void roo__cl_conn_kill(aconn *c);
aconn *roo__cl_find_conn(cluster *cl, uint64_t id);
int roo__cl_fatal(cluster *cl, const char *why);
int64_t roo__cl_worker_index(const cluster *cl, const char *name);
void roo__cl_install_routes(cluster *cl, const uint8_t *drop);
/* The move held for was aborted: the table before it, re-route what was held (move.c). */
void roo__cl_install_unhold(cluster *cl, const uint8_t *drop, uint64_t epoch);
void roo__cl_persist_topology(cluster *cl);
void roo__cl_go_ready(cluster *cl);
void roo__cl_check_conns_ready(cluster *cl);
int roo__cl_apply_topology(cluster *cl, const roo__topology *t);
uint64_t roo__cl_random_id(void);
bool roo__cl_local_idle(cluster *cl);
void roo__cl_stop_locally(cluster *cl, const char *why);
void roo__cl_ctl_listen_cb(roo__loop *loop, roo__io *io, uint32_t events);
void roo__cl_data_listen_cb(roo__loop *loop, roo__io *io, uint32_t events);
int roo__cl_listen_at(cluster *cl, const roo__addr *a, int *fd, char *adv, size_t advcap,
                      const char *what, char *msg, size_t cap);
void roo__cl_advertise_wild(char *adv, size_t cap, const char *local);

/* links.c */
void roo__links_pump(peer *p);
void roo__links_connect(peer *p);
void roo__links_peer_init(cluster *cl, uint32_t w, const roo__worker_info *info);
void roo__links_peer_finish(peer *p);
void roo__links_update(cluster *cl, const roo__topology *t, bool adding_only);
void roo__links_forget_from(cluster *cl, uint32_t first);
uint64_t roo__links_sent_total(const cluster *cl);
void roo__links_committed(cluster *cl, roo__batch *b);
void roo__links_route_returned(cluster *cl, roo__route *r);
bool roo__links_idle(const cluster *cl);
void roo__links_on_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len);

/* move.c */
void roo__move_check(cluster *cl);
bool roo__move_prepare(cluster *cl, uint64_t epoch, const roo__topology *next);
bool roo__move_abandon(cluster *cl, const char *why);
bool roo__move_abort(cluster *cl, const char *why);
void roo__move_on_abort(cluster *cl, uint64_t keep_epoch, const roo__topology *keep);
bool roo__move_gen_aborted(const cluster *cl, uint32_t gen);
void roo__move_precopy(cluster *cl, uint32_t round);
/* Every second: a move phase that is slow here says what it waits for (every 10 s). */
void roo__move_watch(cluster *cl);
/* The initializer's part of it: which workers have not reported the phase. */
void roo__coord_watch(cluster *cl, int64_t secs);
/* What a move from one table to the next does, for the logs and status, as a resumed move
 * is named: "resumed: growing by 1 worker(s) (worker3)". */
void roo__coord_describe(const roo__topology *from, const roo__topology *to, char *buf, size_t cap);
void roo__move_hold(cluster *cl);
void roo__move_begin(cluster *cl, uint64_t epoch, const roo__topology *next);
void roo__move_transfer(cluster *cl);
void roo__move_send_precopy_all(cluster *cl);
void roo__move_send_all(cluster *cl);
void roo__move_free(cluster *cl);
void roo__move_finish(cluster *cl);
void roo__move_on_note(cluster *cl, roo__mig_note *n);
void roo__move_on_chunk(cluster *cl, aconn *c, const uint8_t *payload, size_t len);

/* initializer.c */
void roo__coord_broadcast(cluster *cl, const roo__ctl *m);
void roo__coord_check_ready(cluster *cl);
void roo__coord_report(cluster *cl, uint32_t w, uint64_t epoch, uint32_t phase);
void roo__coord_pending_stored(cluster *cl);
void roo__coord_meta_stored(cluster *cl, uint64_t seq);
bool roo__coord_rebalance(roo__topology *t);
void roo__coord_begin(cluster *cl, roo__topology *t, const char *what);
int roo__coord_abort(cluster *cl, const char *why, uint64_t reply_conn);
void roo__coord_drain_evaluate(cluster *cl);
void roo__coord_shutdown(cluster *cl, const char *why);
void roo__coord_on_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len);

/* joiner.c */
void roo__joiner_connect_later(cluster *cl);
void roo__joiner_retry_cb(roo__loop *loop, roo__timer *t);
void roo__joiner_heartbeat_cb(roo__loop *loop, roo__timer *t);

/* cluster-metrics.c (the io thread) */
/* Peer slot w shows `name` (NULL: no peer there); a new name starts its figures at 0. */
void roo__clm_peer_name(cluster *cl, uint32_t w, const char *name);
void roo__clm_peer_connected(cluster *cl, uint32_t w, bool connected);
/* The table changed: the worker count and the cluster id. */
void roo__clm_topology(cluster *cl);
/* Which of the three listeners exist now. */
void roo__clm_listening(cluster *cl);
/* The open connections of a kind changed (accepted, or gone). */
void roo__clm_conns(cluster *cl, conn_kind kind, bool accepted);
void roo__clm_refused(cluster *cl, conn_kind kind);
/* A move ended here (CLM_MOVE_*); done: its hold, if it held, ends now. */
void roo__clm_move_ended(cluster *cl, int result);
/* With the cluster (roo__cluster_destroy). */
void roo__clm_finish(cluster *cl);

/* external.c */
void roo__ext_reply(cluster *cl, uint64_t conn_id, bool ok, const char *json, const char *error);
void roo__ext_reply_line(cluster *cl, uint64_t conn_id, json_t *answer);
/* A saved value's bytes as a JSON string of hex digits: what a query shows without format. */
json_t *roo__ext_hex_json(const uint8_t *val, size_t len);
/*
 * A saved value as t->format writes it, parsed as JSON (any value: a number, an object...).
 * scratch holds t->size bytes to rebuild the object in. -ENOENT without a format callback;
 * ROO_ECALLBACK when deserialize or format fails or what format wrote is not JSON, and why
 * says which. The caller owns *ret_value.
 */
int roo__ext_format_json(const roo_state_type *t, void *scratch, const uint8_t *val, size_t len,
                         char *why, size_t why_cap, json_t **ret_value);
void roo__ext_wait_move(cluster *cl, uint64_t conn_id);
/* This worker's figures (st->name borrows cl->name); takes an engine snapshot: once per
 * heartbeat or status, never per message. */
void roo__cl_own_stats(cluster *cl, roo__worker_stats *st);
/* Every heartbeat: note the counters the rates are computed from. */
void roo__cl_sample_rates(cluster *cl);
void roo__ext_status_free(query *q, size_t n);
void roo__ext_status_complete(cluster *cl, query *q);
void roo__ext_status_check(cluster *cl, query *q);
void roo__ext_status_set(query *q, uint32_t w, const roo__worker_stats *s);
void roo__ext_status_start(cluster *cl, uint64_t ext_conn, int for_peer, uint64_t reply_id);
query *roo__ext_status_find(cluster *cl, uint64_t id);
void roo__ext_on_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len);

#endif /* ROO_CLUSTER_INT_H */
