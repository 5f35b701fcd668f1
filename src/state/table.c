/* table.c: open-addressing hash index over arena-allocated state entries. */
#include "state/table.h"

#include <stdlib.h>

#define ARENA_CHUNK (256u * 1024u)

typedef struct roo__arena_chunk {
    struct roo__arena_chunk *next;
    size_t used;
    size_t cap;
    uint8_t data[];
} arena_chunk;

typedef roo__slot slot;

roo__table *roo__table_create(void)
{
    roo__table *t = roo__xcalloc(1, sizeof(*t));

    t->mask = 63;
    t->slots = roo__xcalloc(t->mask + 1, sizeof(slot));
    return t;
}

void roo__table_walk(const roo__table *t, roo__entry_fn fn, void *arg)
{
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i].e)
            fn(t->slots[i].e, arg);
}

void roo__table_destroy(roo__table *t, roo__entry_fn finish, void *arg)
{
    if (!t)
        return;
    if (finish)
        roo__table_walk(t, finish, arg);
    for (arena_chunk *c = t->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(t->slots);
    free(t);
}

size_t roo__table_count(const roo__table *t)
{
    return t->count;
}

static void grow_index(roo__table *t)
{
    size_t ncap = (t->mask + 1) * 2;
    slot *ns = roo__xcalloc(ncap, sizeof(slot));

    for (size_t i = 0; i <= t->mask; i++) {
        slot *s = &t->slots[i];
        if (!s->e)
            continue;
        for (size_t j = s->hash & (ncap - 1);; j = (j + 1) & (ncap - 1)) {
            if (!ns[j].e) {
                ns[j] = *s;
                break;
            }
        }
    }
    free(t->slots);
    t->slots = ns;
    t->mask = ncap - 1;
}

static void *arena_alloc(roo__table *t, size_t n)
{
    arena_chunk *c = t->chunks;
    void *p;

    n = ROO__ALIGN8(n);
    if (!c || c->cap - c->used < n) {
        size_t cap = ROO__MAX((size_t)ARENA_CHUNK, n);
        c = roo__xmalloc(sizeof(*c) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = t->chunks;
        t->chunks = c;
    }
    p = c->data + c->used;
    c->used += n;
    return p;
}

roo__entry *roo__table_insert(roo__table *t, uint64_t hash, uint16_t state_id, uint16_t partition,
                              const uint8_t *key, size_t key_len, size_t state_size)
{
    size_t state_off = ROO__ALIGN8(sizeof(roo__entry) + key_len);
    roo__entry *e;

    if ((t->count + 1) * 10 > (t->mask + 1) * 7)
        grow_index(t);
    e = arena_alloc(t, state_off + state_size);
    e->hash = hash;
    e->dirty_mark = 0;
    e->state_off = (uint32_t)state_off;
    e->state_id = state_id;
    e->partition = partition;
    e->key_len = (uint16_t)key_len;
    e->flags = 0;
    memcpy(e->key, key, key_len);
    memset((uint8_t *)e + state_off, 0, state_size);
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        if (!t->slots[i].e) {
            t->slots[i].hash = hash;
            t->slots[i].e = e;
            break;
        }
    }
    t->count++;
    return e;
}
