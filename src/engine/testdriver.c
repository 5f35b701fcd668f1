/* testdriver.c: roo_test.h, the in-process test driver: an application run on the caller's
 * thread, with the worker's framing, state table, commit and recovery rules.
 *
 * DESIGN
 * The driver runs the same application graph (struct roo_app, built by the same setup
 * function) through the same callbacks in the same order as a processing thread does, but
 * with one thread and no batches: roo_emit() sees the emitter's `test` field and comes back
 * here (roo__test_run) instead of going to a shard. State objects live in a roo__table, as
 * on a shard. "Durable" is a second table whose objects hold the serialized bytes of the
 * last committed update of each key: roo_test_commit() writes them from the keys saved
 * since the last commit (serialize, else the raw bytes: the worker's records), and
 * roo_test_restart() rebuilds the live table from them as recovery does from LMDB.
 * Output waits in a pending buffer per sink until the commit, because the worker writes
 * nothing before the state it depends on is committed. An application's `_many` callbacks
 * replace their one-message partners here: decode_many gets every whole frame of a push,
 * compute_many and encode_many one message at a time (messages run through the whole
 * pipeline as they are emitted), and encode takes over where encode_many stops.
 *
 * Thread rule: a driver is used by one thread at a time (the caller's); nothing locks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine-int.h"
#include "roo/roo_test.h"

/* What the durable table holds per key: the committed bytes. */
typedef struct saved {
    uint8_t *bytes;
    size_t len;
} saved;

typedef struct source_state {
    roo__framer framer;
    roo__buf partial; /* bytes of an incomplete frame */
} source_state;

struct roo_test {
    roo_app *app;
    roo__table *live;
    roo__table *durable;
    roo__entry **dirty; /* live entries saved since the last commit */
    size_t ndirty, dirty_cap;
    uint64_t commit_seq; /* numbers commits; an entry's dirty_mark says when it was listed */
    source_state *sources;
    roo__buf *pending;  /* per sink: output since the last commit */
    roo__buf *released; /* per sink: committed output not taken yet */
    roo__buf *taken;    /* per sink: what the last roo_test_take_output() returned */
    uint64_t errors;
};

static void count_error(roo_test *t, const roo__stage *st, const char *what, int rc)
{
    t->errors++;
    roo__log_warn("step '%s' of pipeline '%s': %s failed: %s; message dropped", st->name,
                  t->app->pipelines[st->pipeline]->name, what, roo_strerror(rc));
}

static const roo_state_type *type_of(const roo_test *t, const roo__entry *e)
{
    return t->app->state_types[e->state_id];
}

static void finish_live(roo__entry *e, void *arg)
{
    const roo_state_type *type = type_of(arg, e);

    if (type->finish && (e->flags & ROO__ENTRY_READY))
        type->finish(roo__entry_state(e), type->ctx);
}

static void free_saved(roo__entry *e, void *arg)
{
    (void)arg;
    free(((saved *)roo__entry_state(e))->bytes);
}

/* ---- the pipeline ---- */

static void sink_stage(roo_test *t, const roo__stage *st, const void *msg, size_t len)
{
    roo__buf *ob = &t->pending[st->sink_idx];
    size_t room;
    int n;

    roo__buf_reserve(ob, 256);
    room = ob->cap - ob->len;
    if (st->encode_many) {
        size_t got = 0;
        if (st->encode_many(&msg, &len, 1, ob->data + ob->len, room, &got, st->ctx) == 1 &&
            got <= room) {
            ob->len += got;
            return;
        }
    }
    n = roo__sink_encode(st, ob, msg, len);
    if (n < 0)
        count_error(t, st, "encode", n);
}

static void state_stage(roo_test *t, const roo__stage *st, const void *msg, size_t len)
{
    uint8_t key[ROO_KEY_MAX];
    roo_emitter em = { .step = roo__test_step, .stage = st->next, .test = t };
    roo__entry *e;
    uint64_t h;
    int kl, rc;

    kl = st->key(msg, len, key, st->ctx);
    if (kl < 0 || kl > ROO_KEY_MAX) {
        count_error(t, st, "key", kl < 0 ? kl : ROO_EKEYSIZE);
        return;
    }
    h = roo__key_hash(key, (size_t)kl);
    e = roo__table_find(t->live, h, st->state_id, key, (size_t)kl);
    if (!e)
        e = roo__table_insert(t->live, h, st->state_id, 0, key, (size_t)kl, st->state->size);
    if (!(e->flags & ROO__ENTRY_READY)) {
        if (st->state->init) {
            rc = st->state->init(roo__entry_state(e), key, (size_t)kl, st->state->ctx);
            if (rc < 0) {
                count_error(t, st, "state init", rc);
                return;
            }
        }
        e->flags |= ROO__ENTRY_READY;
    }
    if (st->state_compute_many) {
        void *state = roo__entry_state(e);
        rc = ROO_SAVE;
        st->state_compute_many(&msg, &len, &state, 1, &rc, &em, st->ctx);
    } else {
        rc = st->state_compute(msg, len, roo__entry_state(e), &em, st->ctx);
    }
    if (rc == ROO_SAVE && e->dirty_mark != t->commit_seq) {
        e->dirty_mark = t->commit_seq;
        if (t->ndirty == t->dirty_cap) {
            t->dirty_cap = t->dirty_cap ? t->dirty_cap * 2 : 64;
            t->dirty = roo__xrealloc(t->dirty, t->dirty_cap * sizeof(*t->dirty));
        }
        t->dirty[t->ndirty++] = e;
    } else if (rc < 0) {
        count_error(t, st, "state computation", rc);
    }
}

int roo__test_step(roo_emitter *out, const void *msg, size_t len)
{
    roo__test_run(out->test, out->stage, msg, len);
    return 0;
}

void roo__test_run(roo_test *t, uint32_t stage, const void *msg, size_t len)
{
    const roo__stage *st = &t->app->stages[stage];

    switch (st->kind) {
    case ROO__STAGE_SINK:
        sink_stage(t, st, msg, len);
        if (st->next != UINT32_MAX)
            roo__test_run(t, st->next, msg, len); /* roo_pipeline_to_sinks: the next sink */
        return;
    case ROO__STAGE_STATE:
        state_stage(t, st, msg, len);
        return;
    case ROO__STAGE_STATELESS: {
        roo_emitter em = { .step = roo__test_step, .stage = st->next, .test = t };
        int rc = st->compute(msg, len, &em, st->ctx);
        if (rc < 0)
            count_error(t, st, "computation", rc);
        return;
    }
    }
}

/* ---- life ---- */

int roo_test_create(roo_setup_fn setup, int argc, char **argv, roo_test **ret_test)
{
    char *no_args[] = { "roo-test", NULL };
    char msg[256];
    roo_test *t;
    int rc;

    if (!setup || !ret_test || argc < 0 || (argc > 0 && !argv))
        return -EINVAL;
    roo__log_set_names(NULL, "test-driver"); /* log lines read roo[test-driver] */
    t = roo__xcalloc(1, sizeof(*t));
    roo_app_create(&t->app);
    roo_app_set_name(t->app, "roo-test");
    rc = argc ? setup(t->app, argc, argv) : setup(t->app, 1, no_args);
    if (rc < 0) {
        roo_log(ROO_LOG_ERROR, "the application's setup failed: %s", roo_strerror(rc));
        goto fail;
    }
    rc = roo__app_validate(t->app, msg, sizeof(msg));
    if (rc < 0) {
        roo_log(ROO_LOG_ERROR, "%s", msg);
        goto fail;
    }
    t->live = roo__table_create();
    t->durable = roo__table_create();
    t->commit_seq = 1;
    t->sources = roo__xcalloc(t->app->npipelines, sizeof(*t->sources));
    for (size_t i = 0; i < t->app->npipelines; i++)
        roo__framer_init(&t->sources[i].framer, &t->app->pipelines[i]->source,
                         ROO__FRAME_DEFAULT_MAX);
    t->pending = roo__xcalloc(t->app->nsinks, sizeof(roo__buf));
    t->released = roo__xcalloc(t->app->nsinks, sizeof(roo__buf));
    t->taken = roo__xcalloc(t->app->nsinks, sizeof(roo__buf));
    *ret_test = t;
    return 0;
fail:
    roo_app_destroy(t->app);
    free(t);
    return rc;
}

void roo_test_destroy(roo_test *t)
{
    if (!t)
        return;
    roo__table_destroy(t->live, finish_live, t);
    roo__table_destroy(t->durable, free_saved, NULL);
    for (size_t i = 0; i < t->app->npipelines; i++)
        roo__buf_finish(&t->sources[i].partial);
    for (size_t i = 0; i < t->app->nsinks; i++) {
        roo__buf_finish(&t->pending[i]);
        roo__buf_finish(&t->released[i]);
        roo__buf_finish(&t->taken[i]);
    }
    free(t->sources);
    free(t->pending);
    free(t->released);
    free(t->taken);
    free(t->dirty);
    roo_app_destroy(t->app);
    free(t);
}

/* ---- input ---- */

/* A framing error: logged like the worker, and the connection's rest dropped. */
static int frame_error(source_state *s, const roo_pipeline *p, int rc, size_t payload_len)
{
    if (rc == ROO_EFRAMESIZE)
        roo__log_warn("source '%s': a frame of %zu bytes is over the limit of %u; closing "
                      "the connection",
                      p->name, payload_len, ROO__FRAME_DEFAULT_MAX);
    s->partial.len = 0; /* a new connection starts clean */
    return rc;
}

/* roo_test_push with the source's decode_many: every whole frame of the push in one call. */
static int push_many(roo_test *t, source_state *s, const roo_pipeline *p, roo_emitter *em)
{
    roo_frame *frames = NULL;
    size_t n = 0, cap = 0, off = 0, done;
    roo__frame fr;
    int rc;

    while ((rc = roo__framer_next(&s->framer, s->partial.data + off, s->partial.len - off, &fr)) ==
           ROO__FRAME_OK) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            frames = roo__xrealloc(frames, cap * sizeof(*frames));
        }
        frames[n++] = (roo_frame){ s->partial.data + off + fr.payload_off, fr.payload_len };
        off += fr.frame_len;
    }
    done = n ? p->source.decode_many(frames, n, em, p->source.ctx) : 0;
    if (done < n) {
        t->errors++;
        roo__log_warn("source '%s': decoder rejected a %zu-byte payload: %s; closing the "
                      "connection",
                      p->name, frames[done].len, roo_strerror(ROO_EDECODE));
        free(frames);
        s->partial.len = 0;
        return ROO_EDECODE;
    }
    free(frames);
    if (rc < 0)
        return frame_error(s, p, rc, fr.payload_len);
    memmove(s->partial.data, s->partial.data + off, s->partial.len - off);
    s->partial.len -= off;
    return 0;
}

int roo_test_push(roo_test *t, unsigned source, const void *bytes, size_t len)
{
    source_state *s;
    const roo_pipeline *p;
    roo_emitter em;
    size_t off = 0;
    roo__frame fr;
    int rc;

    if (!t || source >= t->app->npipelines || (!bytes && len))
        return -EINVAL;
    s = &t->sources[source];
    p = t->app->pipelines[source];
    em = (roo_emitter){ .step = roo__test_step, .stage = p->first_stage, .test = t };
    if (len)
        roo__buf_append(&s->partial, bytes, len);
    if (p->source.decode_many)
        return push_many(t, s, p, &em);
    while ((rc = roo__framer_next(&s->framer, s->partial.data + off, s->partial.len - off, &fr)) ==
           ROO__FRAME_OK) {
        int drc = p->source.decode(s->partial.data + off + fr.payload_off, fr.payload_len, &em,
                                   p->source.ctx);
        if (drc < 0) {
            t->errors++;
            roo__log_warn("source '%s': decoder rejected a %zu-byte payload: %s; closing the "
                          "connection",
                          p->name, fr.payload_len, roo_strerror(drc));
            rc = drc;
            break;
        }
        off += fr.frame_len;
    }
    if (rc < 0)
        return frame_error(s, p, rc, fr.payload_len);
    memmove(s->partial.data, s->partial.data + off, s->partial.len - off);
    s->partial.len -= off;
    return 0;
}

int roo_test_push_frame(roo_test *t, unsigned source, const void *payload, size_t len)
{
    const roo__framer *f;
    uint8_t hdr[8];
    size_t h;
    int rc;

    if (!t || source >= t->app->npipelines || (!payload && len))
        return -EINVAL;
    f = &t->sources[source].framer;
    if (f->framing == ROO_FRAMING_LINE) {
        if (memchr(payload, '\n', len))
            return -EINVAL;
        rc = roo_test_push(t, source, payload, len);
        return rc < 0 ? rc : roo_test_push(t, source, "\n", 1);
    }
    h = f->header_len;
    if (h < 8 && (uint64_t)len >> (8 * h))
        return -EINVAL;
    for (size_t i = 0; i < h; i++) {
        uint8_t b = (uint8_t)((uint64_t)len >> (8 * i));
        hdr[f->little_endian ? i : h - 1 - i] = b;
    }
    rc = roo_test_push(t, source, hdr, h);
    return rc < 0 ? rc : roo_test_push(t, source, payload, len);
}

/* ---- commit, output, restart ---- */

/* The bytes the worker would store for e: serialize's, or the raw object. */
static int serialize_entry(roo_test *t, roo__entry *e, roo__buf *out)
{
    const roo_state_type *type = type_of(t, e);
    size_t cap = 256;

    out->len = 0;
    if (!type->serialize) {
        roo__buf_append(out, roo__entry_state(e), type->size);
        return 0;
    }
    for (;;) {
        int n = type->serialize(roo__entry_state(e), roo__buf_reserve(out, cap), cap, type->ctx);
        if (n < 0)
            return n;
        if ((size_t)n <= cap) {
            out->len = (size_t)n;
            return 0;
        }
        cap = (size_t)n;
    }
}

int roo_test_commit(roo_test *t)
{
    roo__buf bytes = { 0 };
    int first_rc = 0;

    if (!t)
        return -EINVAL;
    for (size_t i = 0; i < t->ndirty; i++) {
        roo__entry *e = t->dirty[i], *d;
        saved *sv;
        int rc = serialize_entry(t, e, &bytes);

        if (rc < 0) {
            t->errors++;
            roo__log_warn("state '%s': serialize failed: %s; this update is not saved",
                          type_of(t, e)->name, roo_strerror(rc));
            if (!first_rc)
                first_rc = rc;
            continue;
        }
        d = roo__table_find(t->durable, e->hash, e->state_id, e->key, e->key_len);
        if (!d)
            d = roo__table_insert(t->durable, e->hash, e->state_id, e->partition, e->key,
                                  e->key_len, sizeof(saved));
        sv = roo__entry_state(d);
        free(sv->bytes);
        sv->bytes = roo__xmalloc(bytes.len ? bytes.len : 1);
        memcpy(sv->bytes, bytes.data, bytes.len);
        sv->len = bytes.len;
    }
    roo__buf_finish(&bytes);
    t->ndirty = 0;
    t->commit_seq++;
    for (size_t i = 0; i < t->app->nsinks; i++) {
        roo__buf_append(&t->released[i], t->pending[i].data, t->pending[i].len);
        t->pending[i].len = 0;
    }
    return first_rc;
}

int roo_test_take_output(roo_test *t, unsigned sink, const uint8_t **ret_bytes, size_t *ret_len)
{
    roo__buf swap;

    if (!t || sink >= t->app->nsinks || !ret_bytes || !ret_len)
        return -EINVAL;
    swap = t->taken[sink];
    t->taken[sink] = t->released[sink];
    t->released[sink] = swap;
    t->released[sink].len = 0;
    *ret_bytes = t->taken[sink].len ? t->taken[sink].data : (const uint8_t *)"";
    *ret_len = t->taken[sink].len;
    return 0;
}

typedef struct rebuild_ctx {
    roo_test *t;
    int first_rc;
} rebuild_ctx;

static void rebuild_one(roo__entry *d, void *arg)
{
    rebuild_ctx *x = arg;
    const roo_state_type *type = type_of(x->t, d);
    const saved *sv = roo__entry_state(d);
    roo__entry *e;
    int rc = 0;

    if (!type->deserialize && sv->len != type->size)
        rc = ROO_ESTATE;
    e = roo__table_insert(x->t->live, d->hash, d->state_id, d->partition, d->key, d->key_len,
                          type->size);
    if (rc == 0 && type->deserialize)
        rc = type->deserialize(roo__entry_state(e), sv->bytes, sv->len, type->ctx);
    else if (rc == 0)
        memcpy(roo__entry_state(e), sv->bytes, sv->len);
    if (rc < 0) {
        /* Left zeroed and not ready: the next message for the key starts it afresh. */
        memset(roo__entry_state(e), 0, type->size);
        x->t->errors++;
        roo__log_error("state '%s': deserialize failed on a %zu-byte record: %s", type->name,
                       sv->len, roo_strerror(rc));
        if (!x->first_rc)
            x->first_rc = rc;
        return;
    }
    e->flags |= ROO__ENTRY_READY;
}

int roo_test_restart(roo_test *t)
{
    rebuild_ctx x = { t, 0 };

    if (!t)
        return -EINVAL;
    roo__table_destroy(t->live, finish_live, t);
    t->live = roo__table_create();
    t->ndirty = 0;
    t->commit_seq++;
    for (size_t i = 0; i < t->app->npipelines; i++)
        t->sources[i].partial.len = 0; /* the connections broke */
    for (size_t i = 0; i < t->app->nsinks; i++)
        t->pending[i].len = 0;
    roo__table_walk(t->durable, rebuild_one, &x);
    return x.first_rc;
}

/* ---- state ---- */

static int state_id_of(const roo_test *t, const char *name, uint16_t *ret_id)
{
    if (!name)
        return -EINVAL;
    for (size_t i = 0; i < t->app->nstate_types; i++) {
        if (!strcmp(t->app->state_types[i]->name, name)) {
            *ret_id = (uint16_t)i;
            return 0;
        }
    }
    return -ENOENT;
}

static roo__entry *find_live(roo_test *t, const char *state, const void *key, size_t key_len)
{
    uint16_t id;
    roo__entry *e;

    if (!t || (!key && key_len) || key_len > ROO_KEY_MAX || state_id_of(t, state, &id) < 0)
        return NULL;
    e = roo__table_find(t->live, roo__key_hash(key, key_len), id, key, key_len);
    return e && (e->flags & ROO__ENTRY_READY) ? e : NULL;
}

const void *roo_test_state(roo_test *t, const char *state, const void *key, size_t key_len)
{
    roo__entry *e = find_live(t, state, key, key_len);

    return e ? roo__entry_state(e) : NULL;
}

int roo_test_state_json(roo_test *t, const char *state, const void *key, size_t key_len, char *buf,
                        size_t cap)
{
    roo__entry *e = find_live(t, state, key, key_len);
    const roo_state_type *type;
    roo__buf bytes = { 0 };
    size_t need;
    int n;

    if (!e)
        return -ENOENT;
    if (!buf || !cap)
        return -EINVAL;
    type = type_of(t, e);
    if (type->format) {
        n = type->format(roo__entry_state(e), buf, cap, type->ctx);
        if (n < 0)
            return n;
        if ((size_t)n >= cap)
            return -ENOSPC;
        buf[n] = '\0';
        return n;
    }
    n = serialize_entry(t, e, &bytes);
    need = 2 * bytes.len + 2;
    if (n == 0 && need >= cap)
        n = -ENOSPC;
    if (n == 0) {
        buf[0] = '"';
        for (size_t i = 0; i < bytes.len; i++)
            snprintf(buf + 1 + 2 * i, 3, "%02x", bytes.data[i]);
        buf[need - 1] = '"';
        buf[need] = '\0';
        n = (int)need;
    }
    roo__buf_finish(&bytes);
    return n;
}

typedef struct count_ctx {
    uint16_t id;
    size_t n;
} count_ctx;

static void count_one(roo__entry *e, void *arg)
{
    count_ctx *x = arg;

    x->n += e->state_id == x->id && (e->flags & ROO__ENTRY_READY);
}

size_t roo_test_state_count(roo_test *t, const char *state)
{
    count_ctx x = { 0, 0 };

    if (!t || state_id_of(t, state, &x.id) < 0)
        return 0;
    roo__table_walk(t->live, count_one, &x);
    return x.n;
}

uint64_t roo_test_errors(const roo_test *t)
{
    return t ? t->errors : 0;
}
