/* resume.c: dedup high-water marks per (stream, partition) and batch durability tracking. */
#include "engine/resume.h"

#include <stdlib.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct mark {
    uint64_t stream; /* 0: empty slot */
    uint64_t offset;
    uint32_t sub;
    uint16_t partition;
    bool dirty;
} mark;

struct roo__dedup {
    mark *slots;
    size_t mask;
    size_t count;
    uint32_t *dirty; /* slot indexes changed since the last flush */
    size_t ndirty, dirty_cap;
};

roo__dedup *roo__dedup_create(void)
{
    roo__dedup *d = roo__xcalloc(1, sizeof(*d));

    d->mask = 63;
    d->slots = roo__xcalloc(d->mask + 1, sizeof(mark));
    return d;
}

void roo__dedup_destroy(roo__dedup *d)
{
    if (!d)
        return;
    free(d->slots);
    free(d->dirty);
    free(d);
}

static size_t slot_of(uint64_t stream, uint16_t partition)
{
    uint64_t k[2] = { stream, partition };
    return (size_t)XXH3_64bits(k, sizeof(k));
}

static void grow(roo__dedup *d)
{
    size_t ncap = (d->mask + 1) * 2;
    mark *ns = roo__xcalloc(ncap, sizeof(mark));

    /* Slot indexes change: remember the dirty marks by flag, rebuild the list after. */
    for (size_t i = 0; i <= d->mask; i++) {
        mark *m = &d->slots[i];
        if (!m->stream)
            continue;
        for (size_t j = slot_of(m->stream, m->partition) & (ncap - 1);; j = (j + 1) & (ncap - 1)) {
            if (!ns[j].stream) {
                ns[j] = *m;
                break;
            }
        }
    }
    free(d->slots);
    d->slots = ns;
    d->mask = ncap - 1;
    d->ndirty = 0;
    for (size_t i = 0; i <= d->mask; i++) {
        if (d->slots[i].stream && d->slots[i].dirty) {
            if (d->ndirty == d->dirty_cap) {
                d->dirty_cap = d->dirty_cap ? d->dirty_cap * 2 : 64;
                d->dirty = roo__xrealloc(d->dirty, d->dirty_cap * sizeof(*d->dirty));
            }
            d->dirty[d->ndirty++] = (uint32_t)i;
        }
    }
}

static mark *lookup(roo__dedup *d, uint64_t stream, uint16_t partition, bool create)
{
    size_t i;

    if (create && (d->count + 1) * 10 > (d->mask + 1) * 7)
        grow(d);
    for (i = slot_of(stream, partition) & d->mask;; i = (i + 1) & d->mask) {
        mark *m = &d->slots[i];
        if (m->stream == stream && m->partition == partition)
            return m;
        if (!m->stream) {
            if (!create)
                return NULL;
            m->stream = stream;
            m->partition = partition;
            m->offset = UINT64_MAX; /* nothing applied yet */
            d->count++;
            return m;
        }
    }
}

static void set_dirty(roo__dedup *d, mark *m)
{
    if (m->dirty)
        return;
    m->dirty = true;
    if (d->ndirty == d->dirty_cap) {
        d->dirty_cap = d->dirty_cap ? d->dirty_cap * 2 : 64;
        d->dirty = roo__xrealloc(d->dirty, d->dirty_cap * sizeof(*d->dirty));
    }
    d->dirty[d->ndirty++] = (uint32_t)(m - d->slots);
}

bool roo__dedup_check(roo__dedup *d, uint64_t stream, uint16_t partition, uint64_t offset,
                      uint32_t sub)
{
    mark *m = lookup(d, stream, partition, true);

    if (m->offset != UINT64_MAX &&
        (offset < m->offset || (offset == m->offset && sub <= m->sub)))
        return true;
    m->offset = offset;
    m->sub = sub;
    set_dirty(d, m);
    return false;
}

void roo__dedup_load(roo__dedup *d, uint64_t stream, uint16_t partition, uint64_t offset,
                     uint32_t sub)
{
    mark *m = lookup(d, stream, partition, true);

    m->offset = offset;
    m->sub = sub;
}

void roo__dedup_flush(roo__dedup *d, roo__dedup_emit_fn fn, void *arg)
{
    for (size_t i = 0; i < d->ndirty; i++) {
        mark *m = &d->slots[d->dirty[i]];
        uint8_t key[ROO__STREAM_KEY_LEN], val[ROO__STREAM_VAL_LEN];

        roo__store_be64(key, m->stream);
        roo__store_be16(key + 8, m->partition);
        roo__store_be64(val, m->offset);
        roo__store_be32(val + 8, m->sub);
        fn(arg, key, sizeof(key), val, sizeof(val));
        m->dirty = false;
    }
    d->ndirty = 0;
}

/* ---- durability ---- */

void roo__dur_sealed(roo__durability *d, uint64_t batch_seq, uint32_t routes)
{
    if (d->len == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 32;
        struct roo__dur_rec *nr = roo__xmalloc(ncap * sizeof(*nr));
        for (size_t i = 0; i < d->len; i++)
            nr[i] = d->recs[(d->head + i) % d->cap];
        free(d->recs);
        d->recs = nr;
        d->cap = ncap;
        d->head = 0;
    }
    d->recs[(d->head + d->len++) % d->cap] = (struct roo__dur_rec){ batch_seq, routes, false };
}

static struct roo__dur_rec *find(roo__durability *d, uint64_t batch_seq)
{
    /* Sequence numbers are consecutive in the FIFO: index directly. */
    if (!d->len)
        return NULL;
    uint64_t first = d->recs[d->head].batch_seq;
    if (batch_seq < first || batch_seq - first >= d->len)
        return NULL;
    return &d->recs[(d->head + (size_t)(batch_seq - first)) % d->cap];
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
    if (r && r->routes_pending)
        r->routes_pending--;
}

bool roo__dur_advance(roo__durability *d)
{
    bool moved = false;

    while (d->len) {
        struct roo__dur_rec *r = &d->recs[d->head];
        if (!r->returned || r->routes_pending)
            break;
        d->durable_seq = r->batch_seq;
        d->head = (d->head + 1) % d->cap;
        d->len--;
        moved = true;
    }
    return moved;
}

void roo__dur_finish(roo__durability *d)
{
    free(d->recs);
    memset(d, 0, sizeof(*d));
}
