/* table.c: open-addressing hash index over arena-allocated state entries. */
#include "state/table.h"

#include <stdlib.h>
#include <sys/mman.h>

#define ARENA_CHUNK (256u * 1024u)
#define HUGE (2u * 1024u * 1024u)

/*
 * Big tables (a million keys is 100 MiB) live in 2 MiB huge pages where the kernel allows:
 * a page fault costs microseconds here, and 4 KiB pages would take one per 4 KiB touched.
 */
static void *big_alloc(size_t n, bool zero)
{
    void *p;

    if (n < HUGE) {
        p = zero ? roo__xcalloc(1, n) : roo__xmalloc(n);
        return p;
    }
    p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        roo__log_error("out of memory mapping %zu bytes; aborting", n);
        abort();
    }
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);
#endif
    return p; /* anonymous mappings start zeroed */
}

static void big_free(void *p, size_t n)
{
    if (!p)
        return;
    if (n < HUGE)
        free(p);
    else
        munmap(p, n);
}

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
        big_free(c, sizeof(*c) + c->cap);
    }
    big_free(t->slots, (t->mask + 1) * sizeof(slot));
    free(t);
}

size_t roo__table_count(const roo__table *t)
{
    return t->count;
}

static void grow_index_to(roo__table *t, size_t ncap);

static void grow_index(roo__table *t)
{
    grow_index_to(t, (t->mask + 1) * 2);
}

void roo__table_reserve(roo__table *t, size_t n)
{
    size_t cap = t->mask + 1;

    while (n * 10 > cap * 7)
        cap *= 2;
    if (cap > t->mask + 1)
        grow_index_to(t, cap);
}

static void grow_index_to(roo__table *t, size_t ncap)
{
    slot *ns = big_alloc(ncap * sizeof(slot), true);

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
    big_free(t->slots, (t->mask + 1) * sizeof(slot));
    t->slots = ns;
    t->mask = ncap - 1;
}

static void *arena_alloc(roo__table *t, size_t n)
{
    arena_chunk *c = t->chunks;
    void *p;

    n = ROO__ALIGN8(n);
    if (!c || c->cap - c->used < n) {
        /* Small tables take small chunks; big ones whole huge pages. */
        size_t unit = t->count > 16384 ? HUGE : ARENA_CHUNK;
        size_t cap = ROO__MAX(unit, n + sizeof(*c)) - sizeof(*c);
        c = big_alloc(sizeof(*c) + cap, false);
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

size_t roo__table_drop(roo__table *t, const uint8_t *drop, roo__entry_fn finish, void *arg)
{
    size_t cap = t->mask + 1, dropped = 0;
    slot *ns = big_alloc(cap * sizeof(slot), true);

    /* Rebuild the index without them: linear probing has no cheap single delete. */
    for (size_t i = 0; i < cap; i++) {
        slot *s = &t->slots[i];
        if (!s->e)
            continue;
        if (drop[s->e->partition]) {
            if (finish)
                finish(s->e, arg);
            dropped++;
            continue;
        }
        for (size_t j = s->hash & t->mask;; j = (j + 1) & t->mask) {
            if (!ns[j].e) {
                ns[j] = *s;
                break;
            }
        }
    }
    big_free(t->slots, cap * sizeof(slot));
    t->slots = ns;
    t->count -= dropped;
    if (dropped)
        roo__table_forget_recent(t); /* it may point at forgotten entries */
    return dropped;
}
