/* streams.c: the registry of resumable source streams (see streams.h). A worker has few
 * streams (one per client connection at most), so a sorted array under one mutex does. */
#include "engine/streams.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct stream_ent {
    uint64_t stream;
    uint64_t stored;       /* frames below this were read here (committed or about to be) */
    int64_t last_active_s; /* last read, closed or recovered */
    bool live;
    char peer[64];
} stream_ent;

struct roo__streams {
    pthread_mutex_t lock;
    stream_ent *v; /* sorted by stream */
    size_t n, cap;
};

roo__streams *roo__streams_create(void)
{
    roo__streams *s = roo__xcalloc(1, sizeof(*s));

    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void roo__streams_destroy(roo__streams *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->v);
    free(s);
}

/* The entry of `stream`, created (not live, nothing stored) if `create`. Lock held. */
static stream_ent *find(roo__streams *s, uint64_t stream, bool create)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].stream < stream)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->n && s->v[lo].stream == stream)
        return &s->v[lo];
    if (!create)
        return NULL;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = roo__xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    memmove(&s->v[lo + 1], &s->v[lo], (s->n - lo) * sizeof(*s->v));
    s->n++;
    memset(&s->v[lo], 0, sizeof(s->v[lo]));
    s->v[lo].stream = stream;
    return &s->v[lo];
}

roo__stream_refusal roo__streams_claim(roo__streams *s, uint64_t stream, uint64_t next_offset,
                                       const char *peer, uint64_t known, int64_t now_s,
                                       uint64_t *ret_stored, char *ret_peer, size_t peer_cap)
{
    roo__stream_refusal r = ROO__STREAM_OK;
    stream_ent *e;

    pthread_mutex_lock(&s->lock);
    e = find(s, stream, false);
    if (e && e->live) {
        r = ROO__STREAM_LIVE;
        snprintf(ret_peer, peer_cap, "%s", e->peer);
    } else if (next_offset > ROO__MAX(e ? e->stored : 0, known)) {
        r = ROO__STREAM_AHEAD; /* and no entry made for it */
        *ret_stored = ROO__MAX(e ? e->stored : 0, known);
    } else {
        if (!e)
            e = find(s, stream, true);
        e->live = true;
        snprintf(e->peer, sizeof(e->peer), "%s", peer);
        e->last_active_s = now_s;
        /* Another worker read the stream up to `known`: what this worker reads of it from
         * here on starts at next_offset. */
        if (next_offset > e->stored)
            e->stored = next_offset;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

uint64_t roo__streams_position(roo__streams *s, uint64_t stream)
{
    stream_ent *e;
    uint64_t pos;

    pthread_mutex_lock(&s->lock);
    e = find(s, stream, false);
    pos = e ? e->stored : 0;
    pthread_mutex_unlock(&s->lock);
    return pos;
}

void roo__streams_release(roo__streams *s, uint64_t stream, int64_t now_s)
{
    stream_ent *e;

    pthread_mutex_lock(&s->lock);
    e = find(s, stream, false);
    if (e) {
        e->live = false;
        e->last_active_s = now_s;
    }
    pthread_mutex_unlock(&s->lock);
}

void roo__streams_advance(roo__streams *s, uint64_t stream, uint64_t offset, int64_t now_s)
{
    /* Also recovery's: a restart starts every stream's idle time again. */
    stream_ent *e;

    pthread_mutex_lock(&s->lock);
    e = find(s, stream, true);
    if (offset > e->stored)
        e->stored = offset;
    e->last_active_s = now_s;
    pthread_mutex_unlock(&s->lock);
}

size_t roo__streams_expire(roo__streams *s, int64_t now_s, int64_t max_idle_s,
                           void (*fn)(void *arg, uint64_t stream), void *arg)
{
    size_t kept = 0, gone;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        if (!s->v[i].live && now_s - s->v[i].last_active_s > max_idle_s) {
            if (fn)
                fn(arg, s->v[i].stream);
            continue;
        }
        s->v[kept++] = s->v[i];
    }
    gone = s->n - kept;
    s->n = kept;
    pthread_mutex_unlock(&s->lock);
    return gone;
}

void roo__streams_counts(roo__streams *s, size_t *ret_known, size_t *ret_live)
{
    size_t live = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        live += s->v[i].live;
    *ret_known = s->n;
    *ret_live = live;
    pthread_mutex_unlock(&s->lock);
}
