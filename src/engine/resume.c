/* resume.c: dedup high-water marks per (stream, partition) and batch durability tracking.
 *
 * Marks are kept per stream as an array indexed by partition: messages of one frame (and
 * of consecutive frames) come from the same stream, so after a one-entry cache hit the
 * lookup is a plain index, with no hashing per message.
 */
#include "engine/resume.h"

#include <stdlib.h>

typedef struct mark {
    uint64_t offset; /* UINT64_MAX: nothing applied yet */
    uint32_t sub;
    bool dirty;
} mark;

typedef struct stream_marks {
    uint64_t stream;
    mark *marks; /* nparts entries, grown on demand */
    uint32_t nparts;
    uint16_t *dirty; /* partitions changed since the last flush */
    uint32_t ndirty, dirty_cap;
    int64_t last_s; /* the dedup clock when a mark was last checked or loaded */
} stream_marks;

struct roo__dedup {
    stream_marks *streams;
    size_t nstreams, cap;
    stream_marks *last; /* cache: the stream of the previous lookup */
    int64_t now_s;      /* roo__dedup_tick */
};

roo__dedup *roo__dedup_create(void)
{
    roo__dedup *d = roo__xcalloc(1, sizeof(roo__dedup));

    d->now_s = roo__now_ns() / 1000000000;
    return d;
}

void roo__dedup_tick(roo__dedup *d, int64_t now_s)
{
    d->now_s = now_s;
}

void roo__dedup_destroy(roo__dedup *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nstreams; i++) {
        free(d->streams[i].marks);
        free(d->streams[i].dirty);
    }
    free(d->streams);
    free(d);
}

static stream_marks *find_stream(roo__dedup *d, uint64_t stream)
{
    if (ROO__LIKELY(d->last && d->last->stream == stream))
        return d->last;
    for (size_t i = 0; i < d->nstreams; i++) {
        if (d->streams[i].stream == stream) {
            d->last = &d->streams[i];
            return d->last;
        }
    }
    if (d->nstreams == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->streams = roo__xrealloc(d->streams, d->cap * sizeof(*d->streams));
    }
    d->last = &d->streams[d->nstreams++];
    memset(d->last, 0, sizeof(*d->last));
    d->last->stream = stream;
    return d->last;
}

static mark *find_mark(stream_marks *s, uint16_t partition)
{
    if (ROO__UNLIKELY(partition >= s->nparts)) {
        uint32_t n = s->nparts ? s->nparts : 256;
        while (n <= partition)
            n *= 2;
        s->marks = roo__xrealloc(s->marks, n * sizeof(mark));
        for (uint32_t p = s->nparts; p < n; p++)
            s->marks[p] = (mark){ UINT64_MAX, 0, false };
        s->nparts = n;
    }
    return &s->marks[partition];
}

bool roo__dedup_check(roo__dedup *d, uint64_t stream, uint16_t partition, uint64_t offset,
                      uint32_t sub)
{
    stream_marks *s = find_stream(d, stream);
    mark *m = find_mark(s, partition);

    s->last_s = d->now_s;
    if (m->offset != UINT64_MAX && (offset < m->offset || (offset == m->offset && sub <= m->sub)))
        return true;
    m->offset = offset;
    m->sub = sub;
    if (!m->dirty) {
        m->dirty = true;
        if (s->ndirty == s->dirty_cap) {
            s->dirty_cap = s->dirty_cap ? s->dirty_cap * 2 : 64;
            s->dirty = roo__xrealloc(s->dirty, s->dirty_cap * sizeof(*s->dirty));
        }
        s->dirty[s->ndirty++] = partition;
    }
    return false;
}

void roo__dedup_load(roo__dedup *d, uint64_t stream, uint16_t partition, uint64_t offset,
                     uint32_t sub)
{
    stream_marks *s = find_stream(d, stream);
    mark *m = find_mark(s, partition);

    s->last_s = d->now_s; /* a restart starts every stream's idle time again */
    m->offset = offset;
    m->sub = sub;
}

size_t roo__dedup_expire(roo__dedup *d, int64_t before_s, roo__dedup_emit_fn fn, void *arg)
{
    size_t kept = 0, gone;

    for (size_t i = 0; i < d->nstreams; i++) {
        stream_marks *s = &d->streams[i];
        if (s->last_s >= before_s) {
            d->streams[kept++] = *s;
            continue;
        }
        for (uint32_t p = 0; p < s->nparts; p++) {
            uint8_t key[ROO__STREAM_KEY_LEN], val[ROO__STREAM_VAL_LEN];
            if (s->marks[p].offset == UINT64_MAX)
                continue;
            roo__key_stream(key, val, &(roo__stream_mark){ s->stream, (uint16_t)p, 0, 0 });
            fn(arg, key, sizeof(key), NULL, 0);
        }
        free(s->marks);
        free(s->dirty);
    }
    gone = d->nstreams - kept;
    d->nstreams = kept;
    d->last = NULL; /* entries moved */
    return gone;
}

void roo__dedup_flush(roo__dedup *d, roo__dedup_emit_fn fn, void *arg)
{
    for (size_t i = 0; i < d->nstreams; i++) {
        stream_marks *s = &d->streams[i];
        for (uint32_t k = 0; k < s->ndirty; k++) {
            uint16_t p = s->dirty[k];
            mark *m = &s->marks[p];
            uint8_t key[ROO__STREAM_KEY_LEN], val[ROO__STREAM_VAL_LEN];

            roo__key_stream(key, val, &(roo__stream_mark){ s->stream, p, m->offset, m->sub });
            fn(arg, key, sizeof(key), val, sizeof(val));
            m->dirty = false;
        }
        s->ndirty = 0;
    }
}

/* ---- durability ---- */

void roo__dur_sealed(roo__durability *d, uint64_t batch_seq, uint32_t routes)
{
    if (d->early_done && d->early_seq == batch_seq) {
        routes -= ROO__MIN(routes, d->early_done);
        d->early_done = 0;
    }
    roo__ring_push(&d->recs, (struct roo__dur_rec){ batch_seq, routes, false });
}

static struct roo__dur_rec *find(roo__durability *d, uint64_t batch_seq)
{
    /* Sequence numbers are consecutive in the FIFO: index directly. */
    uint64_t first;

    if (!d->recs.len)
        return NULL;
    first = roo__ring_at(&d->recs, 0).batch_seq;
    if (batch_seq < first || batch_seq - first >= d->recs.len)
        return NULL;
    return &roo__ring_at(&d->recs, (size_t)(batch_seq - first));
}

void roo__dur_returned(roo__durability *d, uint64_t batch_seq)
{
    struct roo__dur_rec *r = find(d, batch_seq);
    if (r)
        r->returned = true;
}

void roo__dur_route_done(roo__durability *d, uint64_t batch_seq)
{
    struct roo__dur_rec *r = find(d, batch_seq);
    uint64_t last = d->recs.len ? roo__ring_last(&d->recs).batch_seq : d->durable_seq;

    if (r && r->routes_pending) {
        r->routes_pending--;
    } else if (!r && batch_seq > last) {
        /* Its batch is not sealed yet: count it for when it is. Without this the batch
         * waited for ever for a route already done, and so did every batch after it (a
         * move's hold never passed its fence; resumable clients were not acknowledged). */
        if (d->early_seq != batch_seq)
            d->early_done = 0;
        d->early_seq = batch_seq;
        d->early_done++;
    }
}

void roo__dur_add_routes(roo__durability *d, uint64_t batch_seq, uint32_t n)
{
    struct roo__dur_rec *r = find(d, batch_seq);

    if (r)
        r->routes_pending += n;
}

bool roo__dur_advance(roo__durability *d)
{
    bool moved = false;

    while (d->recs.len) {
        struct roo__dur_rec *r = &roo__ring_at(&d->recs, 0);
        if (!r->returned || r->routes_pending)
            break;
        d->durable_seq = r->batch_seq;
        roo__ring_pop(&d->recs);
        moved = true;
    }
    return moved;
}

void roo__dur_finish(roo__durability *d)
{
    roo__ring_free(&d->recs);
    d->durable_seq = 0;
}
