/* engine.c: assembling a worker: resilience directory, recovery, threads, orderly stop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include "engine/engine-int.h"
#include "state/keys.h"
#include "state/outlog.h"
#include "wire/wire.h"

static uint64_t now_unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

int roo__engine_encode_meta(const roo__engine *e, const roo__topology *topo,
                            const roo__topology *pending, roo__buf *out)
{
    roo__meta m = {
        .format_version = ROO__FORMAT_VERSION,
        .app_name = e->app->name,
        .worker_name = (char *)e->cfg.worker_name,
        .partitions = e->cfg.partitions,
        .nstate_names = e->app->nstate_types,
        .roo_version = (char *)ROO_VERSION_STRING,
        .created_unix_ms = now_unix_ms(),
    };
    int rc;

    if (topo) {
        m.has_topology = true;
        m.topology = *topo;
    }
    if (pending) {
        m.has_pending = true;
        m.pending = *pending;
    }
    m.state_names = roo__xcalloc(e->app->nstate_types ? e->app->nstate_types : 1, sizeof(char *));
    for (size_t i = 0; i < e->app->nstate_types; i++)
        m.state_names[i] = (char *)e->app->state_types[i]->name;
    rc = roo__wire_meta_encode(&m, out);
    free(m.state_names);
    return rc;
}

bool roo__engine_has_state(const roo__engine *e)
{
    return e->recovered_keys > 0;
}

static int write_meta(roo__engine *e, const roo__topology *topo, const roo__topology *pending)
{
    roo__buf b = { 0 };
    int rc = roo__engine_encode_meta(e, topo, pending, &b);

    if (rc == 0)
        rc = roo__store_meta_put(e->store, b.data, b.len);
    roo__buf_finish(&b);
    return rc;
}

/* Make sure the directory holds this worker's state (or nothing yet). */
static int check_meta(roo__engine *e, roo__topology **ret_topology, char *msg, size_t cap)
{
    const char *dir = e->cfg.resilience_dir;
    roo__buf b = { 0 };
    roo__meta m;
    bool rewrite = false;
    int rc = roo__store_meta_get(e->store, &b);

    if (rc == -ENOENT) {
        uint64_t n = 0;
        roo__buf_finish(&b);
        rc = roo__store_count(e->store, &n);
        if (rc == 0 && n > 0) {
            snprintf(msg, cap,
                     "%s holds %llu state records but no identity record; refusing "
                     "to guess whose they are",
                     dir, (unsigned long long)n);
            return ROO_EFORMAT;
        }
        rc = write_meta(e, NULL, NULL);
        if (rc < 0)
            snprintf(msg, cap, "cannot write the identity record in %s: %s", dir,
                     roo__store_errmsg(e->store));
        return rc;
    }
    if (rc < 0) {
        roo__buf_finish(&b);
        snprintf(msg, cap, "cannot read %s: %s", dir, roo__store_errmsg(e->store));
        return rc;
    }
    rc = roo__wire_meta_decode(b.data, b.len, &m);
    roo__buf_finish(&b);
    if (rc < 0) {
        snprintf(msg, cap, "%s: the identity record is unreadable", dir);
        return ROO_EFORMAT;
    }
    if (m.format_version != ROO__FORMAT_VERSION) {
        snprintf(msg, cap, "%s has on-disk format %u; this roo (%s) reads format %u", dir,
                 m.format_version, ROO_VERSION_STRING, ROO__FORMAT_VERSION);
        rc = ROO_EFORMAT;
        goto out;
    }
    if (strcmp(m.app_name, e->app->name) != 0) {
        snprintf(msg, cap, "%s belongs to application '%s', not '%s'", dir, m.app_name,
                 e->app->name);
        rc = ROO_EAPPMISMATCH;
        goto out;
    }
    if (strcmp(m.worker_name, e->cfg.worker_name) != 0) {
        snprintf(msg, cap, "%s belongs to worker '%s', not '%s' (check --name)", dir, m.worker_name,
                 e->cfg.worker_name);
        rc = ROO_EAPPMISMATCH;
        goto out;
    }
    if (m.has_topology && e->cfg.mode != ROO__STANDALONE) {
        /* A cluster member's partition count is the cluster's, fixed at formation. */
        e->cfg.partitions = m.partitions;
    } else if (m.partitions != e->cfg.partitions) {
        snprintf(msg, cap, "%s was created with --partitions %u, not %u; keys would move", dir,
                 m.partitions, e->cfg.partitions);
        rc = ROO_EAPPMISMATCH;
        goto out;
    }
    for (size_t i = 0; i < m.nstate_names; i++) {
        if (i >= e->app->nstate_types || strcmp(m.state_names[i], e->app->state_types[i]->name)) {
            snprintf(msg, cap,
                     "%s holds state '%s' (id %zu) that the application does not "
                     "define at that place",
                     dir, m.state_names[i], i);
            rc = ROO_EAPPMISMATCH;
            goto out;
        }
    }
    /* New state types appended by a newer build of the app: record them. */
    rewrite = m.nstate_names < e->app->nstate_types;
    rc = 0;
    if (m.has_topology) {
        *ret_topology = roo__xcalloc(1, sizeof(roo__topology));
        roo__topology_copy(&m.topology, *ret_topology);
    }
    if (m.has_pending && e->cfg.mode != ROO__STANDALONE) {
        e->saved_pending = roo__xcalloc(1, sizeof(roo__topology));
        roo__topology_copy(&m.pending, e->saved_pending);
        e->cfg.partitions = m.partitions;
    }
out:
    if (rc == 0 && rewrite) {
        rc = write_meta(e, m.has_topology ? &m.topology : NULL, m.has_pending ? &m.pending : NULL);
        if (rc < 0)
            snprintf(msg, cap, "cannot update the identity record in %s: %s", dir,
                     roo__store_errmsg(e->store));
    }
    roo__wire_meta_finish(&m);
    return rc;
}

static int recover_link(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    roo__engine *e = arg;
    struct roo__link_state l;

    if (!roo__key_link_parse(key, key_len, val, val_len, l.peer, &l.thread, &l.incarnation, &l.seq))
        return 0; /* not ours to judge: skip */
    e->recovered_links =
        roo__xrealloc(e->recovered_links, (e->nrecovered_links + 1) * sizeof(*e->recovered_links));
    e->recovered_links[e->nrecovered_links++] = l;
    return 0;
}

/* The outbox's written mark (0 if none: every entry is sent again). */
static int recover_outbox_mark(roo__engine *e)
{
    uint8_t key[ROO__OUTBOX_KEY_LEN];
    roo__buf v = { 0 };
    size_t total = 0;
    int rc;

    roo__key_outbox(key, ROO__OUTBOX_MARK_SINK, 0);
    rc = roo__store_get_part(e->store, ROO__DB_OUTBOX, key, sizeof(key), 0, 8, &v, &total);
    if (rc == 0 && total == 8 && v.len == 8) {
        e->outbox_mark = roo__load_le64(v.data);
        e->outbox_next = ROO__MAX(e->outbox_next, e->outbox_mark);
    }
    roo__buf_finish(&v);
    return rc == -ENOENT ? 0 : rc;
}

/* Outbox entry (sink, seq), found at start: one to send again, its bytes for the caller to
 * fill in, or NULL when it is at or below the written mark (written before: kept only to
 * resend after a reconnect). */
static struct roo__outbox_entry *recovered_entry(roo__engine *e, uint32_t sink, uint64_t seq)
{
    struct roo__outbox_entry *o;

    if (seq > e->outbox_next)
        e->outbox_next = seq;
    if (seq <= e->outbox_mark)
        return NULL;
    e->recovered_outbox = roo__xrealloc(e->recovered_outbox,
                                        (e->nrecovered_outbox + 1) * sizeof(*e->recovered_outbox));
    o = &e->recovered_outbox[e->nrecovered_outbox++];
    memset(o, 0, sizeof(*o));
    o->sink = sink;
    o->seq = seq;
    return o;
}

static int recover_outbox(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                          size_t val_len)
{
    roo__engine *e = arg;
    struct roo__outbox_entry *o;
    uint32_t sink;
    uint64_t seq;

    if (!roo__key_outbox_parse(key, key_len, &sink, &seq) || sink == ROO__OUTBOX_MARK_SINK)
        return 0;
    o = recovered_entry(e, sink, seq);
    if (o)
        roo__buf_append(&o->bytes, val, val_len);
    return 0;
}

typedef struct outlog_ctx {
    roo__engine *e;
    char *msg;
    size_t cap;
    int err;          /* the first failure, described in msg */
    uint64_t min_pos; /* the oldest live entry's position */
} outlog_ctx;

/* An outbox entry kept in the outbox log: live in the ring; sent again if above the mark. */
static int recover_outlog_ref(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                              size_t val_len)
{
    outlog_ctx *c = arg;
    roo__engine *e = c->e;
    struct roo__outbox_entry *o;
    uint64_t pos, len;
    uint32_t sink;
    uint64_t seq;
    int rc;

    if (!roo__key_outbox_parse(key, key_len, &sink, &seq) || val_len != ROO__OUTLOG_REF_LEN) {
        snprintf(c->msg, c->cap, "a reference to the outbox log of %zu bytes", val_len);
        return c->err = ROO_ESTATE;
    }
    pos = roo__load_le64(val);
    len = roo__load_le64(val + 8);
    if (len > SIZE_MAX / 2 || pos % 8) {
        snprintf(c->msg, c->cap, "a reference to the outbox log at %llu of %llu bytes",
                 (unsigned long long)pos, (unsigned long long)len);
        return c->err = ROO_ESTATE;
    }
    c->min_pos = ROO__MIN(c->min_pos, pos);
    roo__ring_push(&e->outlog_live,
                   (struct roo__outlog_entry){
                       .end = pos + roo__outlog_span((size_t)len), .seq = seq, .sink = sink });
    o = recovered_entry(e, sink, seq);
    if (!o)
        return 0;
    rc = roo__outlog_read(e->outlog, pos, (size_t)len, 0, (size_t)len, &o->bytes);
    if (rc < 0 || o->bytes.len != len) {
        snprintf(c->msg, c->cap,
                 "output of sink %u, outbox entry %llu (%llu bytes at %llu) is not in %s: %s", sink,
                 (unsigned long long)seq, (unsigned long long)len, (unsigned long long)pos,
                 ROO__OUTLOG_FILE, rc < 0 ? roo_strerror(rc) : "cut short");
        return c->err = rc < 0 ? rc : -EIO;
    }
    return 0;
}

static int outlog_entry_cmp(const void *a, const void *b)
{
    const struct roo__outlog_entry *x = a, *y = b;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int outbox_entry_cmp(const void *a, const void *b)
{
    const struct roo__outbox_entry *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->sink < y->sink ? -1 : x->sink > y->sink;
}

/*
 * The outbox log: opened (created if missing), its live entries found through their
 * references, in ring order, and the output they hold above the written mark read back
 * among the outbox's own entries, in outbox order. A reference whose bytes are not there
 * stops the start: that output would be lost.
 */
static int recover_outlog(roo__engine *e, char *msg, size_t cap)
{
    outlog_ctx c = { e, msg, cap, 0, UINT64_MAX };
    struct roo__outlog_entry *v;
    size_t n;
    int rc = roo__outlog_open(e->cfg.resilience_dir, ROO__OUTLOG_SIZE, &e->outlog);

    if (rc < 0) {
        snprintf(msg, cap, "cannot open %s/%s: %s", e->cfg.resilience_dir, ROO__OUTLOG_FILE,
                 roo_strerror(rc));
        return rc;
    }
    e->outlog_filling = true; /* the committer fills what the file lacks when it is idle */
    rc = roo__store_scan_db(e->store, ROO__DB_OUTLOG, recover_outlog_ref, &c);
    if (rc < 0) {
        if (!c.err)
            snprintf(msg, cap, "recovery of the outbox log's references from %s failed: %s",
                     e->cfg.resilience_dir, roo__store_errmsg(e->store));
        else
            snprintf(msg + strlen(msg), cap - strlen(msg), " (in %s): cannot start without it",
                     e->cfg.resilience_dir);
        return rc;
    }
    /* In ring order: the ring gives room back from its oldest entry on. */
    n = e->outlog_live.len;
    v = roo__xmalloc((n ? n : 1) * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = roo__ring_at(&e->outlog_live, i);
    qsort(v, n, sizeof(*v), outlog_entry_cmp);
    roo__ring_clear(&e->outlog_live);
    for (size_t i = 0; i < n; i++)
        roo__ring_push(&e->outlog_live, v[i]);
    if (n)
        roo__outlog_recovered(e->outlog, c.min_pos, v[n - 1].end);
    free(v);
    if (e->nrecovered_outbox > 1)
        qsort(e->recovered_outbox, e->nrecovered_outbox, sizeof(*e->recovered_outbox),
              outbox_entry_cmp);
    return 0;
}

static int recover_stream(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                          size_t val_len)
{
    roo__engine *e = arg;
    int64_t now_s = roo__now_ns() / 1000000000;
    roo__stream_mark m;

    if (!roo__key_stream_parse(key, key_len, val, val_len, &m))
        return 0;
    if (m.partition == ROO__STREAM_INGRESS) {
        roo__streams_advance(e->streams, m.stream, m.offset, now_s); /* the stored read position */
        return 0;
    }
    /* A frame applied here was read: a hello may continue after it (see streams.h); an
     * even stream id is the read position of stream id + 1, kept here for the cluster. */
    if (m.stream & 1)
        roo__streams_advance(e->streams, m.stream, m.offset + 1, now_s);
    else
        roo__streams_advance(e->streams, m.stream | 1, m.offset, now_s);
    roo__dedup_load(e->shards[m.partition % e->nshards].dedup, m.stream, m.partition, m.offset,
                    m.sub);
    e->recovered_marks++;
    return 0;
}

typedef struct recover_ctx {
    roo__engine *e;
    char *msg;
    size_t cap;
} recover_ctx;

static int recover_one(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                       size_t key_len, const uint8_t *val, size_t val_len)
{
    recover_ctx *rc = arg;
    roo__engine *e = rc->e;
    const roo_state_type *t;
    roo__shard *sh;
    roo__entry *en;
    uint64_t h;
    int err;

    if (state_id >= e->app->nstate_types || partition >= e->cfg.partitions ||
        key_len > ROO_KEY_MAX) {
        snprintf(rc->msg, rc->cap, "corrupt state record (partition %u, state id %u)", partition,
                 state_id);
        return ROO_ESTATE;
    }
    t = e->app->state_types[state_id];
    h = roo__key_hash(key, key_len);
    if (roo__partition_of(h, e->cfg.partitions) != partition) {
        snprintf(rc->msg, rc->cap,
                 "state record of '%s' filed under partition %u, but its key "
                 "hashes elsewhere",
                 t->name, partition);
        return ROO_ESTATE;
    }
    sh = &e->shards[e->part_shard[partition]];
    en = roo__table_insert(sh->table, h, state_id, partition, key, key_len, t->size);
    if (t->deserialize) {
        err = t->deserialize(roo__entry_state(en), val, val_len, t->ctx);
        if (err < 0) {
            snprintf(rc->msg, rc->cap, "state '%s': deserialize failed on a %zu-byte record: %s",
                     t->name, val_len, roo_strerror(err));
            return err;
        }
    } else {
        if (val_len != t->size) {
            snprintf(rc->msg, rc->cap,
                     "state '%s': stored record has %zu bytes, the type has "
                     "%zu (changed struct?)",
                     t->name, val_len, t->size);
            return ROO_ESTATE;
        }
        memcpy(roo__entry_state(en), val, val_len);
    }
    en->flags |= ROO__ENTRY_READY;
    e->recovered_keys++;
    atomic_fetch_add_explicit(&sh->keys_pub, 1, memory_order_relaxed);
    return 0;
}

int roo__engine_create(roo_app *app, const roo__engine_cfg *cfg, roo__engine **ret_engine,
                       char *msg, size_t cap)
{
    roo__engine *e;
    roo__topology *saved = NULL;
    recover_ctx rctx;
    int64_t t0;
    int rc;

    rc = roo__app_validate(app, msg, cap);
    if (rc < 0)
        return rc;
    if (cfg->nin != app->npipelines) {
        snprintf(msg, cap, "application '%s' has %zu source(s) but --in lists %zu address(es)",
                 app->name, app->npipelines, cfg->nin);
        return ROO_EUSAGE;
    }
    if (cfg->nout != app->nsinks) {
        snprintf(msg, cap, "application '%s' has %zu sink(s) but --out lists %zu address(es)",
                 app->name, app->nsinks, cfg->nout);
        return ROO_EUSAGE;
    }
    roo__shard_steps_init(app);
    e = roo__xcalloc(1, sizeof(*e));
    e->commit_q.efd = e->io_q.efd = e->exit_q.efd = -1;
    e->app = app;
    e->cfg = *cfg;
    e->nshards = cfg->threads;
    e->created_ns = roo__now_ns();
    for (int w = 0; w < ROO__NWRITERS; w++)
        e->written[w].e2e = roo__xcalloc(app->npipelines, sizeof(*e->written[w].e2e));
    e->nlisten = app->npipelines;
    e->outbox_deleted_sink = roo__xcalloc(app->nsinks ? app->nsinks : 1, sizeof(uint64_t));
    e->outbox_through_tmp = roo__xcalloc(app->nsinks ? app->nsinks : 1, sizeof(uint64_t));
    e->streams = roo__streams_create();
    pthread_mutex_init(&e->done_lock, NULL);
    pthread_cond_init(&e->done_cond, NULL);
    rc = roo__queue_init(&e->commit_q, false);
    if (rc == 0)
        rc = roo__queue_init(&e->io_q, true);
    if (rc == 0)
        rc = roo__queue_init(&e->exit_q, true);
    if (rc < 0) {
        snprintf(msg, cap, "cannot create queues: %s", roo_strerror(rc));
        goto err;
    }
    e->shards = roo__xcalloc(e->nshards, sizeof(roo__shard));
    for (unsigned i = 0; i < e->nshards; i++) {
        rc = roo__shard_init(e, &e->shards[i], i);
        if (rc < 0) {
            snprintf(msg, cap, "cannot set up processing thread %u: %s", i, roo_strerror(rc));
            goto err;
        }
    }
    rc = roo__io_init(e);
    if (rc < 0) {
        snprintf(msg, cap, "cannot set up the io thread: %s", roo_strerror(rc));
        goto err;
    }
    rc = roo__store_open(cfg->resilience_dir, cfg->map_size, &e->store, msg, cap);
    if (rc < 0)
        goto err;
    rc = check_meta(e, &saved, msg, cap);
    if (rc < 0)
        goto err;
    e->part_shard = roo__xcalloc(e->cfg.partitions, sizeof(uint16_t));
    for (uint32_t p = 0; p < e->cfg.partitions; p++)
        e->part_shard[p] = (uint16_t)(p % e->nshards);
    for (unsigned i = 0; i < e->nshards; i++)
        e->shards[i].partitions = e->cfg.partitions;
    t0 = roo__now_ns();
    {
        /* Size each thread's index once for what the store holds: no regrowth while loading. */
        uint64_t stored = 0;
        if (roo__store_count(e->store, &stored) == 0 && stored > 100000)
            roo__store_prefault(e->store);
        if (stored)
            for (unsigned i = 0; i < e->nshards; i++)
                roo__table_reserve(e->shards[i].table, (size_t)(stored / e->nshards + 1024));
    }
    rctx = (recover_ctx){ e, msg, cap };
    rc = roo__store_scan(e->store, recover_one, &rctx);
    if (rc < 0) {
        if (!msg[0] || rc != ROO_ESTATE)
            snprintf(msg + strlen(msg), cap - strlen(msg), "%srecovery from %s failed: %s",
                     msg[0] ? "; " : "", cfg->resilience_dir, roo__store_errmsg(e->store));
        goto err;
    }
    rc = recover_outbox_mark(e);
    if (rc == 0)
        rc = roo__store_scan_db(e->store, ROO__DB_OUTBOX, recover_outbox, e);
    if (rc == 0) {
        rc = recover_outlog(e, msg, cap);
        if (rc < 0)
            goto err;
    }
    if (rc == 0)
        rc = roo__store_scan_db(e->store, ROO__DB_STREAMS, recover_stream, e);
    if (rc == 0)
        rc = roo__store_scan_db(e->store, ROO__DB_LINKS, recover_link, e);
    if (rc < 0) {
        snprintf(msg, cap, "recovery of link records from %s failed: %s", cfg->resilience_dir,
                 roo__store_errmsg(e->store));
        goto err;
    }
    e->recovered_ms = (roo__now_ns() - t0) / 1000000;
    atomic_store_explicit(&e->map_size_pub, roo__store_map_size(e->store), memory_order_relaxed);
    atomic_store_explicit(&e->map_used_pub, roo__store_used_bytes(e->store), memory_order_relaxed);
    e->saved_topology = saved; /* the cluster reads it when the io thread starts */
    *ret_engine = e;
    return 0;

err:
    if (saved) {
        roo__topology_finish(saved);
        free(saved);
    }
    roo__engine_destroy(e);
    return rc;
}

int roo__engine_start(roo__engine *e, char *msg, size_t cap)
{
    int rc = roo__io_listen(e, msg, cap);

    if (rc < 0)
        return rc;
    rc = pthread_create(&e->committer_thread, NULL, roo__committer_main, e);
    if (rc) {
        snprintf(msg, cap, "cannot start the committer thread: %s", strerror(rc));
        return -rc;
    }
    /* Named for top -H, perf and gdb (at most 15 characters); a failure is only cosmetic. */
    pthread_setname_np(e->committer_thread, "roo-commit");
    rc = pthread_create(&e->io_thread, NULL, roo__io_main, e);
    if (rc) {
        snprintf(msg, cap, "cannot start the io thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(e->io_thread, "roo-io");
    for (unsigned i = 0; i < e->nshards; i++) {
        char name[16];
        rc = pthread_create(&e->shards[i].thread, NULL, roo__shard_main, &e->shards[i]);
        if (rc) {
            /* Threads started so far keep running; the caller stops and destroys us. */
            snprintf(msg, cap, "cannot start processing thread %u: %s", i, strerror(rc));
            e->nshards = i;
            return -rc;
        }
        snprintf(name, sizeof(name), "roo-proc%u", i % 1000000u);
        pthread_setname_np(e->shards[i].thread, name);
    }
    e->threads_started = true;
    return 0;
}

bool roo__engine_running(const roo__engine *e)
{
    return e->threads_started;
}

void roo__engine_set_io_hooks(roo__engine *e, const roo__io_hooks *hooks, void *ctx)
{
    e->hooks = *hooks;
    e->hooks_ctx = ctx;
}

typedef struct exit_msg {
    roo__qnode node;
    int status;
} exit_msg;

void roo__engine_exit(roo__engine *e, int status)
{
    exit_msg *m = roo__xcalloc(1, sizeof(*m));

    if (status)
        atomic_store(&e->fatal_status, status);
    else
        atomic_store(&e->exit_requested, true);
    m->node.kind = ROO__Q_STOP;
    m->status = status;
    roo__queue_push(&e->exit_q, &m->node);
}

int roo__engine_exit_fd(const roo__engine *e)
{
    return roo__queue_fd(&e->exit_q);
}

bool roo__engine_take_exit(roo__engine *e)
{
    roo__qnode *n = roo__queue_take_all(&e->exit_q), *next;
    bool any = n != NULL;

    for (; n; n = next) {
        next = n->next;
        free(n);
    }
    return any;
}

static void push_ctl(roo__queue *q, uint32_t kind)
{
    roo__qnode *n = roo__xcalloc(1, sizeof(*n));
    n->kind = kind;
    roo__queue_push(q, n);
}

void roo__engine_request_stop(roo__engine *e)
{
    push_ctl(&e->io_q, ROO__Q_STOP);
}

bool roo__engine_wait_done(roo__engine *e, int timeout_ms)
{
    struct timespec deadline =
        roo__timespec_after(CLOCK_REALTIME, timeout_ms >= 0 ? timeout_ms : 0);
    bool done;

    pthread_mutex_lock(&e->done_lock);
    while (!e->done) {
        if (timeout_ms < 0)
            pthread_cond_wait(&e->done_cond, &e->done_lock);
        else if (pthread_cond_timedwait(&e->done_cond, &e->done_lock, &deadline) == ETIMEDOUT)
            break;
    }
    done = e->done;
    pthread_mutex_unlock(&e->done_lock);
    return done;
}

void roo__engine_get_stats(roo__engine *e, roo__engine_stats *ret_stats)
{
    roo__engine_stats st = { 0 };

    for (unsigned i = 0; i < e->nshards; i++) {
        roo__shard *sh = &e->shards[i];
        st.frames_in += atomic_load_explicit(&sh->frames_in, memory_order_relaxed);
        st.records_out += atomic_load_explicit(&sh->records_out, memory_order_relaxed);
        st.callback_errors += atomic_load_explicit(&sh->callback_errors, memory_order_relaxed);
        st.keys += atomic_load_explicit(&sh->keys_pub, memory_order_relaxed);
    }
    st.commits = atomic_load_explicit(&e->commits, memory_order_relaxed);
    *ret_stats = st;
}

int roo__engine_fatal_status(roo__engine *e)
{
    return atomic_load(&e->fatal_status);
}

bool roo__engine_left_cluster(const roo__engine *e)
{
    return e->left_cluster;
}

bool roo__engine_join_abandoned(const roo__engine *e)
{
    return e->join_abandoned;
}

bool roo__engine_cluster_exit(roo__engine *e)
{
    return atomic_load(&e->exit_requested);
}

void roo__engine_recovery_info(const roo__engine *e, uint64_t *ret_keys, int64_t *ret_ms)
{
    *ret_keys = e->recovered_keys;
    *ret_ms = e->recovered_ms;
}

void roo__engine_join(roo__engine *e)
{
    if (e->threads_started) {
        /* Shards first: once they are gone nothing new reaches the committer or io. */
        for (unsigned i = 0; i < e->nshards; i++)
            push_ctl(&e->shards[i].inbox, ROO__Q_EXIT);
        for (unsigned i = 0; i < e->nshards; i++)
            pthread_join(e->shards[i].thread, NULL);
        push_ctl(&e->commit_q, ROO__Q_EXIT);
        pthread_join(e->committer_thread, NULL);
        push_ctl(&e->io_q, ROO__Q_EXIT);
        pthread_join(e->io_thread, NULL);
        e->threads_started = false;
    }
}

void roo__engine_destroy(roo__engine *e)
{
    if (!e)
        return;
    roo__engine_join(e);
    /* Drop whatever control messages are still queued for io (batches belong to the shards;
     * a sink's kick is part of the sink, freed by roo__io_finish). */
    for (roo__qnode *n = roo__queue_take_all(&e->io_q), *next; n; n = next) {
        next = n->next;
        if (n->kind == ROO__Q_ROUTE_RETURN)
            roo__buf_finish(&((roo__route *)n)->data);
        if (n->kind == ROO__Q_META)
            roo__buf_finish(&((roo__meta_msg *)n)->encoded);
        if (n->kind != ROO__Q_BATCH && n->kind != ROO__Q_SINK_KICK)
            free(n);
    }
    if (e->io_loop)
        roo__io_finish(e);
    for (unsigned i = 0; e->shards && i < e->cfg.threads; i++)
        roo__shard_finish(&e->shards[i]);
    free(e->shards);
    for (int w = 0; w < ROO__NWRITERS; w++)
        free(e->written[w].e2e);
    roo__ring_free(&e->outbox_sizes);
    roo__outlog_close(e->outlog);
    roo__ring_free(&e->outlog_live);
    roo__ring_free(&e->outlog_new);
    free(e->outbox_deleted_sink);
    free(e->outbox_through_tmp);
    roo__streams_destroy(e->streams);
    roo__store_close(e->store);
    /* Drop whatever control messages are still queued (batches belong to the shards). */
    if (e->commit_deferred) /* queued before the rest: one list */
        e->commit_deferred_tail->next = roo__queue_take_all(&e->commit_q);
    else
        e->commit_deferred = roo__queue_take_all(&e->commit_q);
    for (roo__qnode *n = e->commit_deferred, *next; n; n = next) {
        next = n->next;
        if (n->kind == ROO__Q_META)
            roo__buf_finish(&((roo__meta_msg *)n)->encoded);
        if (n->kind != ROO__Q_BATCH)
            free(n);
    }
    roo__engine_take_exit(e);
    roo__queue_finish(&e->commit_q);
    roo__queue_finish(&e->io_q);
    roo__queue_finish(&e->exit_q);
    for (int i = 0; i < 2; i++) {
        roo__topology *t = i ? e->saved_pending : e->saved_topology;
        if (t) {
            roo__topology_finish(t);
            free(t);
        }
    }
    free(e->part_shard);
    free(e->recovered_links);
    for (size_t i = 0; i < e->nrecovered_outbox; i++)
        roo__buf_finish(&e->recovered_outbox[i].bytes);
    free(e->recovered_outbox);
    pthread_mutex_destroy(&e->done_lock);
    pthread_cond_destroy(&e->done_cond);
    free(e);
}
