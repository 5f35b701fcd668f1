/* external.c: roo-ctl's channel: status, query and shrink.
 *
 * DESIGN
 * roo-ctl may ask any worker's --external address; each request gets one reply (ExtRequest,
 * ExtReply with JSON). status: the initializer gathers every worker's figures over the
 * control links (StatusQuery/StatusReply, at most STATUS_TIMEOUT_MS; a joiner forwards the
 * question to it and answers with what comes back). query: a worker answers from its own
 * committed state, a read transaction on the io thread. shrink: only the initializer starts
 * a move (the others name it); the same shrink asked again, after a broken connection, is
 * the same move. A reply waits in its connection until written; a connection that goes away
 * loses its answer and nothing else.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"

static void json_str(roo__buf *b, const char *s)
{
    roo__buf_append_json_string(b, (const uint8_t *)s, strlen(s));
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

/* The move under way, as the initializer drives it: a stalled one names who it waits for. */
static void move_json(cluster *cl, roo__buf *out)
{
    static const char *const phases[] = { "", "hold", "transfer", "pre-copy" };
    bool first = true;

    json_fmt(out, "  \"move\": {\"what\": ");
    json_str(out, cl->co.what);
    json_fmt(out,
             ", \"table_version\": %llu, \"phase\": \"%s\", \"for_ms\": %lld, "
             "\"waiting_for\": [",
             (unsigned long long)cl->mig.epoch, cl->co.phase < 4 ? phases[cl->co.phase] : "?",
             (long long)((roo__now_ns() - cl->co.started_ns) / 1000000));
    for (uint32_t w = 0; w < cl->mig.next.nworkers; w++) {
        bool live =
            w < cl->topo.nworkers ? !cl->topo.workers[w].left : !cl->mig.next.workers[w].left;
        if (!live || cl->co.reported[w])
            continue;
        json_fmt(out, "%s", first ? "" : ", ");
        json_str(out, cl->mig.next.workers[w].name);
        first = false;
    }
    json_fmt(out, "]},\n");
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
    if (cl->co.running && cl->mig.active)
        move_json(cl, out);
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
        roo__buf b = { 0 };
        bool init_ok = cl->mode != ROO__JOINER || n == 0 || q->have[0];
        build_status_json(cl, q->stats, q->have, init_ok, &b);
        roo__buf_append(&b, "", 1);
        roo__ext_reply(cl, q->ext_conn, true, (const char *)b.data, NULL);
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

/* A key as a JSON string: UTF-8 as it is, other bytes as \\xHH (see buf.h). */
static void json_bytes(roo__buf *b, const uint8_t *p, size_t n)
{
    roo__buf_append_json_string(b, p, n);
}

/* A page of a whole-store query: the reply stays well under ROO__EXTERNAL_FRAME_MAX. */
#define QUERY_PAGE_BYTES (256u * 1024u)

typedef struct query_out {
    cluster *cl;
    const roo_state_type *t;
    uint16_t state_id;
    roo__buf *json;
    size_t n;
    bool more;     /* the page is full: "next" says where the next one starts */
    roo__buf last; /* the cursor of the last key emitted: partition (u16 BE) | key */
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
    if (q->json->len >= QUERY_PAGE_BYTES) {
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

/* This worker's committed values: the keys asked for, or all of them (up to a limit). */
static void ext_query(cluster *cl, aconn *c, const roo__ext_request *req)
{
    roo__engine *e = cl->e;
    roo__buf json = { 0 };
    query_out q = { .cl = cl, .json = &json };
    size_t sid;
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
            if (owns(cl, part) &&
                roo__store_get_state(e->store, part, (uint16_t)sid, k->data, k->len, &val) == 0)
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
    json_fmt(&json, "\n  },\n  \"count\": %zu,\n  \"next\": ", q.n);
    if (q.more) {
        /* The cursor, in hex: roo-ctl sends it back as the request's `after`. */
        roo__buf_append(&json, "\"", 1);
        for (size_t i = 0; i < q.last.len; i++)
            json_fmt(&json, "%02x", q.last.data[i]);
        roo__buf_append(&json, "\"", 1);
    } else {
        roo__buf_append(&json, "null", 4);
    }
    json_fmt(&json, "\n}\n");
    roo__buf_append(&json, "", 1);
    roo__ext_reply(cl, c->id, true, (const char *)json.data, NULL);
out:
    roo__buf_finish(&json);
    roo__buf_finish(&q.last);
    free(q.scratch);
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
    char json[200];

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
        snprintf(json, sizeof(json),
                 "{\"done\": true, \"already_left\": true, \"table_version\": %llu}\n",
                 (unsigned long long)cl->topo.version);
        roo__ext_reply(cl, c->id, true, json, NULL);
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
        roo__ext_reply(cl, c->id, false, NULL, err);
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
        roo__ext_reply(cl, c->id, true, (const char *)out.data, NULL);
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

    if (roo__wire_ext_request_decode(payload, len, &req) < 0) {
        roo__log_warn("external connection from %s: a %zu-byte frame is not a request; closing "
                      "it",
                      c->fc.peer, len);
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
        roo__ext_reply(cl, c->id, true, "{\"shutting_down\": true}\n", NULL);
        break;
    }
}
