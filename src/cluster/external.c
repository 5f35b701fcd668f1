/* external.c: roo-ctl's channel: status, query, shrink and move --abort.
 *
 * DESIGN
 * roo-ctl may ask any worker's --external address; each request gets one reply (ExtRequest,
 * ExtReply with JSON). status: the initializer gathers every worker's figures over the
 * control links (StatusQuery/StatusReply, at most STATUS_TIMEOUT_MS; a joiner forwards the
 * question to it and answers with what comes back). A worker's figures are made here too
 * (roo__cl_own_stats, for the status and every heartbeat): counters, rates over the last
 * heartbeats, and one engine snapshot's sinks, errors and end-to-end latency. query: a
 * worker answers from its own committed state, a read transaction on the io thread. shrink:
 * only the initializer starts a move (the others name it); the same shrink asked again,
 * after a broken connection, is the same move. A reply waits in its connection until
 * written; a connection that goes away loses its answer and nothing else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"
#include "common/json.h"

/* Reply with root in roo's layout (common/json.h) and release it. */
static void reply_json(cluster *cl, uint64_t conn_id, bool ok, json_t *root,
                       const char *const *expand, const char *error)
{
    char *text = roo__json_text(root, expand);

    roo__ext_reply(cl, conn_id, ok, text, error);
    free(text);
    json_decref(root);
}

/* The move under way, as the initializer drives it: a stalled one names who it waits for. */
static json_t *move_json(cluster *cl)
{
    static const char *const phases[] = { "", "hold", "transfer", "pre-copy" };
    json_t *move = roo__json_object(), *waiting = roo__json_array();

    roo__json_set(move, "what", roo__json_str(cl->co.what));
    roo__json_set(move, "table_version", roo__json_u64(cl->mig.epoch));
    roo__json_set(move, "phase", roo__json_str(cl->co.phase < 4 ? phases[cl->co.phase] : "?"));
    roo__json_set(move, "for_ms",
                  roo__json_u64((uint64_t)(roo__now_ns() - cl->co.started_ns) / 1000000));
    roo__json_set(move, "phase_for_ms",
                  roo__json_u64((uint64_t)(roo__now_ns() - cl->co.phase_ns) / 1000000));
    for (uint32_t w = 0; w < cl->mig.next.nworkers; w++) {
        bool live =
            w < cl->topo.nworkers ? !cl->topo.workers[w].left : !cl->mig.next.workers[w].left;
        if (live && !cl->co.reported[w])
            roo__json_push(waiting, roo__json_str(cl->mig.next.workers[w].name));
    }
    roo__json_set(move, "waiting_for", waiting);
    return move;
}

void roo__cl_sample_rates(cluster *cl)
{
    roo__engine_stats es;

    roo__engine_get_stats(cl->e, &es);
    cl->rates[cl->rate_next] = (struct rate_sample){ roo__now_ns(), es.frames_in, es.records_out };
    cl->rate_next = (cl->rate_next + 1) % RATE_SAMPLES;
    if (cl->nrates < RATE_SAMPLES)
        cl->nrates++;
}

/* Counts per second between two readings; counters read apart never make it negative. */
static double per_second(uint64_t from, uint64_t to, int64_t ns)
{
    return ns > 0 && to > from ? (double)(to - from) * 1e9 / (double)ns : 0;
}

/*
 * The figures of roo-ctl status, top and targets: rates over the heartbeats' window (the
 * oldest sample kept, ~5 s ago), and what one engine snapshot says about sinks, errors and
 * latency. The snapshot allocates its labels: this runs once per heartbeat or status only.
 */
static void own_health(cluster *cl, const roo__engine_stats *es, roo__worker_stats *st)
{
    const struct rate_sample *old = &cl->rates[cl->nrates < RATE_SAMPLES ? 0 : cl->rate_next];
    int64_t ns = roo__now_ns() - old->ns;
    roo__engine_snapshot snap;
    roo__hist_counts lat = { 0 };

    /* A window shorter than a fifth of a second (the first heartbeat just ran) says little. */
    if (cl->nrates && ns >= 200 * 1000000LL) {
        st->frames_in_rate = per_second(old->frames_in, es->frames_in, ns);
        st->records_out_rate = per_second(old->records_out, es->records_out, ns);
    }
    snprintf(st->version, sizeof(st->version), "%s", ROO_VERSION_STRING);
    memcpy(st->metrics_address, cl->metrics_address, sizeof(st->metrics_address));
    for (uint32_t w = 0; cl->peers && w < cl->npeers; w++)
        st->link_backlog_bytes += cl->peers[w].backlog_bytes;
    roo__engine_take_snapshot(cl->e, &snap);
    st->uptime_ms = snap.uptime_seconds > 0 ? (uint64_t)(snap.uptime_seconds * 1000) : 0;
    st->sinks = (uint32_t)snap.nsinks;
    for (size_t i = 0; i < snap.nsinks; i++) {
        st->sinks_connected += snap.sinks[i].connected;
        st->held_bytes += snap.sinks[i].held;
        st->undelivered_bytes += snap.sinks[i].held + snap.sinks[i].unacked;
    }
    st->callback_errors = snap.callback_errors;
    st->decoder_rejections = snap.decoder_rejections;
    for (size_t i = 0; i < snap.nsources; i++)
        roo__hist_counts_add(&lat, &snap.sources[i].latency);
    memcpy(st->latency_bins, lat.bins, sizeof(st->latency_bins));
    st->latency_count = lat.count;
    roo__engine_snapshot_finish(&snap);
}

void roo__cl_own_stats(cluster *cl, roo__worker_stats *st)
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
    own_health(cl, &es, st);
}

/*
 * A figure with a fraction, rounded to 1/scale (a rate in tenths, seconds in microseconds:
 * no reader wants 17 digits of noise). Never NULL: out of memory aborts, as json.h's do.
 */
static json_t *real_json(double v, double scale)
{
    json_t *j;

    if (!(v > 0))
        v = 0;
    else if (v < 9e15 / scale)
        v = (double)(uint64_t)(v * scale + 0.5) / scale;
    j = json_real(v);
    if (!j) {
        roo__log_error("out of memory building a JSON reply; aborting");
        abort();
    }
    return j;
}

/*
 * The members that tell how a worker is doing, after the older ones (scripts index by name,
 * but keep their order anyway). Quantiles come from the cumulative end-to-end histogram;
 * latency_bins are its bins, trailing empty ones left out, for roo-ctl top to subtract two
 * of them and get the latency of the time between.
 */
static void health_json(json_t *o, const roo__worker_stats *s)
{
    roo__hist_counts lat = { 0 };
    json_t *bins = roo__json_array();
    size_t nbins = ROO__HIST_BINS;

    memcpy(lat.bins, s->latency_bins, sizeof(lat.bins));
    lat.count = s->latency_count;
    while (nbins && !s->latency_bins[nbins - 1])
        nbins--;
    for (size_t i = 0; i < nbins; i++)
        roo__json_push(bins, roo__json_u64(s->latency_bins[i]));
    roo__json_set(o, "version", roo__json_str(s->version));
    roo__json_set(o, "uptime_seconds", real_json((double)s->uptime_ms / 1000, 1000));
    roo__json_set(o, "metrics", roo__json_str(s->metrics_address));
    roo__json_set(o, "frames_in_per_second", real_json(s->frames_in_rate, 10));
    roo__json_set(o, "records_out_per_second", real_json(s->records_out_rate, 10));
    roo__json_set(o, "sinks_connected", roo__json_u64(s->sinks_connected));
    roo__json_set(o, "sinks", roo__json_u64(s->sinks));
    roo__json_set(o, "held_bytes", roo__json_u64(s->held_bytes));
    roo__json_set(o, "undelivered_bytes", roo__json_u64(s->undelivered_bytes));
    roo__json_set(o, "link_backlog_bytes", roo__json_u64(s->link_backlog_bytes));
    roo__json_set(o, "callback_errors", roo__json_u64(s->callback_errors));
    roo__json_set(o, "decoder_rejections", roo__json_u64(s->decoder_rejections));
    roo__json_set(o, "latency_p50_seconds", real_json(roo__hist_quantile(&lat, 0.5), 1e6));
    roo__json_set(o, "latency_p99_seconds", real_json(roo__hist_quantile(&lat, 0.99), 1e6));
    roo__json_set(o, "latency_count", roo__json_u64(s->latency_count));
    roo__json_set(o, "latency_bins", bins);
}

/* One worker's line of the status: who, where, and its figures if it answered. */
static json_t *worker_json(cluster *cl, size_t w, const roo__worker_stats *s, bool have)
{
    const roo__worker_info *wi = cl->has_topology ? &cl->topo.workers[w] : NULL;
    json_t *o = roo__json_object();
    uint32_t owned = 0;

    for (uint32_t p = 0; cl->has_topology && p < cl->topo.partitions; p++)
        owned += cl->topo.owner[p] == w;
    roo__json_set(o, "name", roo__json_str(wi ? wi->name : cl->name));
    roo__json_set(o, "index", roo__json_u64(w));
    roo__json_set(o, "control", roo__json_str(wi ? wi->control_addr : ""));
    roo__json_set(o, "data", roo__json_str(wi ? wi->data_addr : ""));
    roo__json_set(o, "external",
                  roo__json_str(wi && wi->external_addr ? wi->external_addr : cl->my_external));
    roo__json_set(o, "threads", roo__json_u64(wi ? wi->threads : cl->e->nshards));
    roo__json_set(o, "partitions", roo__json_u64(owned));
    roo__json_set(o, "reachable", json_boolean(have));
    roo__json_set(o, "ready", json_boolean(have && s->ready));
    if (!have)
        return o;
    roo__json_set(o, "frames_in", roo__json_u64(s->frames_in));
    roo__json_set(o, "records_out", roo__json_u64(s->records_out));
    roo__json_set(o, "routed_out", roo__json_u64(s->routed_out));
    roo__json_set(o, "routed_in", roo__json_u64(s->routed_in));
    roo__json_set(o, "keys", roo__json_u64(s->keys));
    roo__json_set(o, "commits", roo__json_u64(s->commits));
    roo__json_set(o, "source_connections", roo__json_u64(s->source_connections));
    health_json(o, s);
    return o;
}

/*
 * The status: the cluster, then a line per worker, then the partition table (owners[p] is
 * the index of the worker that owns partition p), from which roo-ctl asks a key's owner
 * only. The table is this worker's: right after a move another may have the next one.
 */
static json_t *status_json(cluster *cl, const roo__worker_stats *stats, const bool *have,
                           bool init_reachable)
{
    roo__engine *e = cl->e;
    bool all_ready = cl->has_topology;
    size_t n = cl->has_topology ? cl->topo.nworkers : 1, live = 0;
    json_t *root = roo__json_object(), *workers = roo__json_array(), *owners = roo__json_array();
    char id[20];

    for (size_t w = 0; w < n; w++) {
        if (cl->has_topology && cl->topo.workers[w].left)
            continue;
        live++;
        all_ready = all_ready && have[w] && stats[w].ready;
        roo__json_push(workers, worker_json(cl, w, &stats[w], have[w]));
    }
    snprintf(id, sizeof(id), "%016llx",
             (unsigned long long)(cl->has_topology ? cl->topo.cluster_id : 0));
    roo__json_set(root, "application", roo__json_str(e->app->name));
    roo__json_set(root, "cluster_id", roo__json_str(id));
    roo__json_set(root, "answered_by", roo__json_str(cl->name));
    roo__json_set(root, "ready", json_boolean(all_ready));
    roo__json_set(root, "partitions", roo__json_u64(e->cfg.partitions));
    roo__json_set(root, "worker_count", roo__json_u64(live));
    if (!init_reachable)
        roo__json_set(root, "warning",
                      roo__json_str("the initializer is unreachable: other workers' figures "
                                    "are missing"));
    if (cl->co.running && cl->mig.active)
        roo__json_set(root, "move", move_json(cl));
    roo__json_set(root, "workers", workers);
    roo__json_set(root, "table_version", roo__json_u64(cl->has_topology ? cl->topo.version : 0));
    for (uint32_t p = 0; cl->has_topology && p < cl->topo.partitions; p++)
        roo__json_push(owners, roo__json_u64(cl->topo.owner[p]));
    roo__json_set(root, "owners", owners);
    return root;
}

/* A short answer on one line, as {"done": true, ...}; releases it. */
void roo__ext_reply_line(cluster *cl, uint64_t conn_id, json_t *answer)
{
    char *line = roo__json_line(answer);
    size_t n = strlen(line);

    line = roo__xrealloc(line, n + 2);
    memcpy(line + n, "\n", 2);
    roo__ext_reply(cl, conn_id, true, line, NULL);
    free(line);
    json_decref(answer);
}

void roo__ext_reply(cluster *cl, uint64_t conn_id, bool ok, const char *json, const char *error)
{
    aconn *c = roo__cl_find_conn(cl, conn_id);

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

void roo__ext_status_free(query *q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (q->have[i])
            free(q->stats[i].name);
    free(q->have);
    free(q->stats);
    q->used = false;
}

void roo__ext_status_complete(cluster *cl, query *q)
{
    size_t n = cl->has_topology ? cl->topo.nworkers : 1;

    if (q->ext_conn) {
        static const char *const expand[] = { "workers", NULL };
        bool init_ok = cl->mode != ROO__JOINER || n == 0 || q->have[0];
        reply_json(cl, q->ext_conn, true, status_json(cl, q->stats, q->have, init_ok), expand,
                   NULL);
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
            roo__cl_send_ctl(&p->ctl->fc, &m);
        free(all);
    }
    roo__ext_status_free(q, n);
}

void roo__ext_status_check(cluster *cl, query *q)
{
    size_t n = cl->has_topology ? cl->topo.nworkers : 1;
    bool done = true;

    for (size_t i = 0; i < n; i++)
        done = done && q->have[i];
    if (done || roo__now_ns() >= q->deadline_ns)
        roo__ext_status_complete(cl, q);
}

static void query_timer_cb(roo__loop *loop, roo__timer *t)
{
    cluster *cl = t->data;
    bool any = false;

    (void)loop;
    for (int i = 0; i < MAX_QUERIES; i++) {
        if (cl->queries[i].used)
            roo__ext_status_check(cl, &cl->queries[i]);
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

void roo__ext_status_set(query *q, uint32_t w, const roo__worker_stats *s)
{
    if (q->have[w])
        free(q->stats[w].name);
    q->stats[w] = *s;
    q->stats[w].name = roo__xstrdup(s->name ? s->name : "");
    q->have[w] = true;
}

/* Start gathering everyone's figures (initializer) or ask the initializer (joiner). */
void roo__ext_status_start(cluster *cl, uint64_t ext_conn, int for_peer, uint64_t reply_id)
{
    query *q = query_new(cl);
    roo__worker_stats mine;

    if (!q) {
        if (ext_conn)
            roo__ext_reply(cl, ext_conn, false, NULL, "too many status queries at once");
        return;
    }
    q->ext_conn = ext_conn;
    q->for_peer = for_peer;
    q->reply_id = reply_id;
    roo__cl_own_stats(cl, &mine);
    roo__ext_status_set(q, cl->has_topology ? cl->self : 0, &mine);
    if (cl->mode == ROO__JOINER) {
        if (cl->to_init_open) {
            roo__ctl m = { .kind = ROO__CTL_STATUS_QUERY, .query_id = q->id };
            roo__cl_send_ctl(&cl->to_init, &m);
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
                roo__cl_send_ctl(&cl->peers[w].ctl->fc, &m);
        }
    }
    roo__ext_status_check(cl, q);
    query_arm(cl);
}

query *roo__ext_status_find(cluster *cl, uint64_t id)
{
    for (int i = 0; i < MAX_QUERIES; i++)
        if (cl->queries[i].used && cl->queries[i].id == id)
            return &cl->queries[i];
    return NULL;
}

/* A page of a whole-store query: the reply stays well under ROO__EXTERNAL_FRAME_MAX. */
#define QUERY_PAGE_BYTES (256u * 1024u)

typedef struct query_out {
    cluster *cl;
    const roo_state_type *t;
    uint16_t state_id;
    json_t *values; /* key -> value, in the order read */
    size_t bytes;   /* what values takes printed: the page's size */
    bool more;      /* the page is full: "next" says where the next one starts */
    bool logged;    /* a value that could not be formatted was logged for this page */
    roo__buf name;  /* a key's member name, reused */
    roo__buf last;  /* the cursor of the last key emitted: partition (u16 BE) | key */
    void *scratch;  /* a state object to deserialize into */
} query_out;

json_t *roo__ext_hex_json(const uint8_t *val, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *text = roo__xmalloc(2 * len + 1);
    json_t *v;

    for (size_t i = 0; i < len; i++) {
        text[2 * i] = hex[val[i] >> 4];
        text[2 * i + 1] = hex[val[i] & 15];
    }
    text[2 * len] = 0;
    v = roo__json_str(text);
    free(text);
    return v;
}

int roo__ext_format_json(const roo_state_type *t, void *scratch, const uint8_t *val, size_t len,
                         char *why, size_t why_cap, json_t **ret_value)
{
    char small[256], *text = small;
    json_error_t jerr;
    json_t *v;
    int n, rc = 0;

    if (!t->format)
        return -ENOENT;
    /* The callback gets an aligned object, as everywhere else: never LMDB's bytes. */
    if (t->deserialize) {
        memset(scratch, 0, t->size);
        if (t->deserialize(scratch, val, len, t->ctx) != 0) {
            snprintf(why, why_cap, "deserialize failed on its %zu saved bytes", len);
            return ROO_ECALLBACK;
        }
    } else if (len == t->size) {
        memcpy(scratch, val, len);
    } else {
        snprintf(why, why_cap, "%zu saved bytes where the type has %zu", len, t->size);
        return ROO_ECALLBACK;
    }
    n = t->format(scratch, small, sizeof(small), t->ctx);
    if (n >= (int)sizeof(small)) {
        size_t need = (size_t)n + 1;
        text = roo__xmalloc(need);
        n = t->format(scratch, text, need, t->ctx);
        if (n >= (int)need)
            n = ROO_ECALLBACK; /* asked for more room twice */
    }
    if (t->finish && t->deserialize)
        t->finish(scratch, t->ctx);
    if (n < 0) {
        snprintf(why, why_cap, "format failed: %s", roo_strerror(n));
        rc = ROO_ECALLBACK;
        goto out;
    }
    /* A user's text: it reaches roo-ctl only as JSON that parses. */
    v = json_loadb(text, (size_t)n, JSON_DECODE_ANY, &jerr);
    if (!v) {
        snprintf(why, why_cap, "format wrote %d bytes that are not JSON: %s (byte %d)", n,
                 jerr.text, jerr.position);
        rc = ROO_ECALLBACK;
        goto out;
    }
    *ret_value = v;
out:
    if (text != small)
        free(text);
    return rc;
}

/* One key's committed value, as the member `"key": value` of the page. */
static void query_emit(query_out *q, const uint8_t *key, size_t klen, const uint8_t *val,
                       size_t vlen)
{
    char why[300] = "";
    json_t *v = NULL;
    int rc = roo__ext_format_json(q->t, q->scratch, val, vlen, why, sizeof(why), &v);

    if (rc < 0 && rc != -ENOENT && !q->logged) {
        uint64_t suppressed = 0;
        /* Once a page at most: one bad formatter would otherwise log every key. */
        if (roo__ratelimit_allow(&q->cl->format_rl, &suppressed))
            roo__log_warn("query: a value of state type '%s' shows as its saved bytes in hex: "
                          "%s%s",
                          q->t->name, why, suppressed ? " (more such lines not logged)" : "");
        q->logged = true;
    }
    if (rc < 0)
        v = roo__ext_hex_json(val, vlen);
    /* ",\n    " before the member and ": " in it. */
    q->bytes += 8 + roo__json_size(v);
    q->bytes += roo__json_set_key(q->values, key, klen, v, &q->name);
}

/*
 * A worker answers for the partitions it owns now, so that a key is never listed twice by
 * roo-ctl query (an old owner may still hold rows of a partition that moved away until its
 * drop is committed, and the new owner has them already).
 */
static bool owns(const cluster *cl, uint16_t partition)
{
    return cl->has_topology && partition < cl->topo.partitions &&
           cl->topo.owner[partition] == cl->self;
}

static int query_scan_cb(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                         size_t key_len, const uint8_t *val, size_t val_len)
{
    query_out *q = arg;

    if (state_id != q->state_id || !owns(q->cl, partition))
        return 0;
    if (q->bytes >= QUERY_PAGE_BYTES) {
        q->more = true;
        return -1;
    }
    query_emit(q, key, key_len, val, val_len);
    q->last.len = 0;
    roo__store_be16(roo__buf_reserve(&q->last, 2), partition);
    q->last.len = 2;
    roo__buf_append(&q->last, key, key_len);
    return 0;
}

/*
 * This worker's committed values: the keys asked for, or all of them, a page at a time.
 * A key asked for that this worker does not own is listed in "not_owned": roo-ctl found
 * its owner in a partition table that has changed since, and asks again.
 */
static void ext_query(cluster *cl, aconn *c, const roo__ext_request *req)
{
    static const char *const expand[] = { "values", NULL };
    roo__engine *e = cl->e;
    query_out q = { .cl = cl };
    json_t *root = NULL, *not_owned = NULL;
    size_t sid, count;
    int rc = 0;

    for (sid = 0; sid < e->app->nstate_types; sid++)
        if (!req->state[0] || strcmp(e->app->state_types[sid]->name, req->state) == 0)
            break;
    if (sid == e->app->nstate_types) {
        char why[200];
        snprintf(why, sizeof(why), "no state named '%s' in application '%s'", req->state,
                 e->app->name);
        roo__ext_reply(cl, c->id, false, NULL, why);
        return;
    }
    q.t = e->app->state_types[sid];
    q.state_id = (uint16_t)sid;
    q.scratch = roo__xcalloc(1, q.t->size);
    q.values = roo__json_object();
    if (req->nkeys) {
        roo__buf val = { 0 };
        not_owned = roo__json_array();
        for (size_t i = 0; i < req->nkeys; i++) {
            const roo__buf *k = &req->keys[i];
            uint16_t part;
            if (k->len > ROO_KEY_MAX)
                continue;
            part = roo__partition_of(roo__key_hash(k->data, k->len), e->cfg.partitions);
            val.len = 0;
            if (!owns(cl, part))
                roo__json_push(not_owned, roo__json_key(k->data, k->len));
            else if (roo__store_get_state(e->store, part, (uint16_t)sid, k->data, k->len, &val) ==
                     0)
                query_emit(&q, k->data, k->len, val.data, val.len);
        }
        roo__buf_finish(&val);
    } else if (req->after.len) {
        /* A later page: the previous one ended at this cursor (which came from outside). */
        if (req->after.len < 2 || req->after.len > 2 + ROO_KEY_MAX) {
            roo__ext_reply(cl, c->id, false, NULL, "bad query cursor ('next')");
            goto out;
        }
        rc = roo__store_scan_after(e->store, roo__load_be16(req->after.data), (uint16_t)sid,
                                   req->after.data + 2, req->after.len - 2, query_scan_cb, &q);
    } else {
        rc = roo__store_scan(e->store, query_scan_cb, &q);
    }
    if (rc < 0 && !q.more) {
        roo__log_warn("external connection %s: cannot read the state for a query: %s", c->fc.peer,
                      roo__store_errmsg(e->store));
        roo__ext_reply(cl, c->id, false, NULL, "cannot read the state (see the worker's log)");
        goto out;
    }
    root = roo__json_object();
    roo__json_set(root, "worker", roo__json_str(cl->name));
    roo__json_set(root, "state", roo__json_str(q.t->name));
    /* Counted as printed: a key asked for twice is one member. */
    count = json_object_size(q.values);
    roo__json_set(root, "values", q.values);
    q.values = NULL;
    roo__json_set(root, "count", roo__json_u64(count));
    /* The cursor, in hex: roo-ctl sends it back as the request's `after`. */
    roo__json_set(root, "next", q.more ? roo__ext_hex_json(q.last.data, q.last.len) : json_null());
    if (not_owned && json_array_size(not_owned))
        roo__json_set(root, "not_owned", json_incref(not_owned));
    reply_json(cl, c->id, true, root, expand, NULL);
out:
    json_decref(not_owned);
    json_decref(q.values);
    roo__buf_finish(&q.name);
    roo__buf_finish(&q.last);
    free(q.scratch);
}

/* A move is the initializer's to start or stop: say so, naming its --external address in the
 * answer's JSON ("initializer_external") for roo-ctl, which then asks there. */
static void not_initializer(cluster *cl, aconn *c, const char *what)
{
    const char *ext = cl->has_topology ? cl->topo.workers[0].external_addr : "";
    json_t *where = roo__json_object();
    char err[400];

    snprintf(err, sizeof(err), "only the initializer can %s: ask %s%s", what,
             ext && ext[0] ? "its --external address " : "the initializer's --external address",
             ext && ext[0] ? ext : "");
    if (ext && ext[0])
        roo__json_set(where, "initializer_external", roo__json_str(ext));
    reply_json(cl, c->id, false, where, NULL, err);
}

/* roo-ctl shrink: remove workers (by name or count), or say which could leave. */
/*
 * The same shrink asked again (roo-ctl lost its connection and asks again, maybe through
 * another worker) is not a new one: if the named workers already left, say it is done; if
 * the move under way removes exactly them, answer this request when it ends. True if so.
 */
static bool shrink_again(cluster *cl, aconn *c, const roo__ext_request *req)
{
    bool all_left = true, known = true, same_move = cl->co.running && cl->mig.active;
    uint32_t named_live = 0, leaving = 0;

    for (size_t i = 0; i < req->nworkers; i++) {
        int64_t w = roo__cl_worker_index(cl, req->workers[i]);
        bool seen = false;
        for (size_t k = 0; k < cl->topo.nworkers; k++)
            seen = seen || strcmp(cl->topo.workers[k].name, req->workers[i]) == 0;
        known = known && seen;
        if (w < 0 || (uint32_t)w >= cl->topo.nworkers)
            continue;
        all_left = false;
        named_live++;
        same_move =
            same_move && (uint32_t)w < cl->mig.next.nworkers && cl->mig.next.workers[w].left;
    }
    for (uint32_t w = 0; same_move && w < cl->topo.nworkers; w++)
        leaving += !cl->topo.workers[w].left && cl->mig.next.workers[w].left;
    if (known && all_left) {
        json_t *done = roo__json_object();
        roo__json_set(done, "done", json_true());
        roo__json_set(done, "already_left", json_true());
        roo__json_set(done, "table_version", roo__json_u64(cl->topo.version));
        roo__ext_reply_line(cl, c->id, done);
        return true;
    }
    if (same_move && named_live == req->nworkers && leaving == named_live) {
        roo__log_info("roo-ctl from %s asks again for the shrink under way; it gets the answer",
                      c->fc.peer);
        roo__ext_wait_move(cl, c->id);
        return true;
    }
    return false;
}

static void ext_shrink(cluster *cl, aconn *c, const roo__ext_request *req)
{
    roo__topology t;
    char err[512], what[160];
    uint32_t live = 0, nleave = 0;
    uint8_t *leave = NULL;
    size_t len;

    if (cl->mode != ROO__INITIALIZER || !cl->has_topology) {
        not_initializer(cl, c, "shrink the cluster");
        return;
    }
    if (req->nworkers && !req->dry_run && shrink_again(cl, c, req))
        return;
    for (uint32_t w = 0; w < cl->topo.nworkers; w++)
        live += !cl->topo.workers[w].left;
    leave = roo__xcalloc(cl->topo.nworkers, 1);
    for (size_t i = 0; i < req->nworkers; i++) {
        int64_t w = roo__cl_worker_index(cl, req->workers[i]);
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
        json_t *root = roo__json_object(), *can = roo__json_array(), *cannot = roo__json_array();
        json_t *would = roo__json_array();
        for (uint32_t w = 0; w < cl->topo.nworkers; w++) {
            if (!cl->topo.workers[w].left && w != cl->self)
                roo__json_push(can, roo__json_str(cl->topo.workers[w].name));
            if (leave[w])
                roo__json_push(would, roo__json_str(cl->topo.workers[w].name));
        }
        roo__json_push(cannot, roo__json_str(cl->name));
        roo__json_set(root, "workers", roo__json_u64(live));
        roo__json_set(root, "can_leave", can);
        roo__json_set(root, "cannot_leave", cannot);
        roo__json_set(root, "would_leave", would);
        roo__json_set(root, "busy", json_boolean(cl->co.running || cl->mig.active));
        reply_json(cl, c->id, true, root, NULL, NULL);
        free(leave);
        return;
    }
    if (!nleave) {
        snprintf(err, sizeof(err), "name the workers to remove (--workers) or how many (--count)");
        goto fail;
    }
    if (cl->co.running || cl->mig.active || cl->co.abort_unsent || cl->draining) {
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
    if (roo__coord_rebalance(&t))
        roo__coord_begin(cl, &t, what);
    roo__topology_finish(&t);
    free(leave);
    if (!cl->co.running) {
        roo__ext_reply(cl, c->id, false, NULL, "the partition move could not start (see the log)");
        return;
    }
    roo__ext_wait_move(cl, c->id);
    return;

fail:
    free(leave);
    roo__ext_reply(cl, c->id, false, NULL, err);
}

/* roo-ctl move --abort (see roo__coord_abort). */
static void ext_move_abort(cluster *cl, aconn *c)
{
    char what[sizeof(cl->co.what)];
    json_t *root;
    int rc;

    if (cl->mode != ROO__INITIALIZER || !cl->has_topology) {
        not_initializer(cl, c, "abort a move");
        return;
    }
    snprintf(what, sizeof(what), "%s", cl->co.what);
    rc = roo__coord_abort(cl, "roo-ctl move --abort", c->id);
    if (rc == -ENOENT || cl->co.abort_unsent) {
        /* No move (or one aborted, not stored yet: that one answers once it is). */
        if (rc == -ENOENT)
            roo__ext_reply(cl, c->id, false, NULL, "no partition move is under way");
        return;
    }
    root = roo__json_object();
    roo__json_set(root, "aborted", roo__json_str(what));
    roo__json_set(root, "table_version", roo__json_u64(cl->topo.version));
    roo__ext_reply_line(cl, c->id, root);
}

/* roo-ctl waits for the move under way; the initializer answers it when the move ends. */
void roo__ext_wait_move(cluster *cl, uint64_t conn_id)
{
    uint64_t *slot = &cl->co.ext_conns[cl->co.next_waiter++ % SHRINK_WAITERS];

    if (*slot)
        roo__ext_reply(cl, *slot, false, NULL,
                       "too many roo-ctl wait for this move; ask again to get its answer");
    *slot = conn_id;
}

void roo__ext_on_frame(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__ext_request req;
    roo__ext_command cmd;
    json_t *root;

    if (roo__wire_ext_request_decode(payload, len, &req) < 0) {
        roo__log_warn("external connection from %s: a %zu-byte frame is not a request; closing "
                      "it",
                      c->fc.peer, len);
        roo__clm_refused(cl, CONN_EXTERNAL);
        roo__cl_conn_kill(c);
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
    case ROO__EXT_MOVE_ABORT:
        ext_move_abort(cl, c);
        break;
    case ROO__EXT_STATUS:
        roo__ext_status_start(cl, c->id, -1, 0);
        break;
    case ROO__EXT_SHUTDOWN:
        if (cl->mode == ROO__JOINER) {
            roo__ctl m = { .kind = ROO__CTL_SHUTDOWN, .reason = "requested with roo-ctl" };
            if (!cl->to_init_open) {
                roo__ext_reply(cl, c->id, false, NULL,
                               "the initializer is unreachable: cannot stop the cluster from here");
                break;
            }
            roo__cl_send_ctl(&cl->to_init, &m);
        } else {
            roo__coord_shutdown(cl, "requested with roo-ctl");
        }
        root = roo__json_object();
        roo__json_set(root, "shutting_down", json_true());
        roo__ext_reply_line(cl, c->id, root);
        break;
    }
}
