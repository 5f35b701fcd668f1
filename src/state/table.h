/* table.h: one processing thread's in-memory keyed state: key -> state object.
 *
 * Keys hash with XXH3-64 (seed 0) over the key bytes; the same hash picks the key's
 * partition (see roo__partition_of), so it is part of the on-disk and cluster contract and
 * must never change. Entries live in per-partition arenas and never move, so a pointer to
 * an entry stays valid until the table is destroyed. The index is open addressing with
 * linear probing over (hash, entry) slots, kept at most 70% full.
 *
 * A table belongs to one thread; nothing here locks.
 */
#ifndef ROO_TABLE_H
#define ROO_TABLE_H

/* Inline XXH3: keys are short and hashed once per message, so the call overhead matters. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/common.h"

typedef struct roo__entry {
    uint64_t hash;
    uint64_t dirty_mark; /* batch number that last listed this entry as dirty */
    uint32_t state_off;  /* offset of the state object from the entry's start */
    uint16_t state_id;
    uint16_t partition;
    uint16_t key_len;
    uint16_t flags; /* ROO__ENTRY_* */
    uint8_t key[];
} roo__entry;

/* The state object was initialized (init callback ran, or it was recovered). */
#define ROO__ENTRY_READY 1u
/* Changed since a partition move's pre-copy began (listed in its thread's tracked list). */
#define ROO__ENTRY_TRACKED 2u

typedef struct roo__table roo__table;

/* XXH3_64bits(key, len) exactly (tests/state/test_table.c checks it for every length up to
 * 64): keys of up to 16 bytes take XXH3's own short-input path inline, without the call and
 * length dispatch of the full function, which cost a tenth of a thread's time per message. */
static inline __attribute__((always_inline)) uint64_t roo__key_hash(const void *key, size_t len)
{
    if (ROO__LIKELY(len <= 16))
        return XXH3_len_0to16_64b((const xxh_u8 *)key, len, XXH3_kSecret, 0);
    return XXH3_64bits(key, len);
}

/* partition = floor(high 32 bits of the hash * partitions / 2^32): stable, even spread. */
static inline uint16_t roo__partition_of(uint64_t hash, uint32_t partitions)
{
    return (uint16_t)(((hash >> 32) * (uint64_t)partitions) >> 32);
}

static inline void *roo__entry_state(roo__entry *e)
{
    return (uint8_t *)e + e->state_off;
}

roo__table *roo__table_create(void);

/* Calls finish(state, ctx) for each entry first if finish is given. */
typedef void (*roo__entry_fn)(roo__entry *e, void *arg);
void roo__table_destroy(roo__table *t, roo__entry_fn finish, void *arg);

/* The index, exposed so that lookups inline into the processing loop. */
typedef struct roo__slot {
    uint64_t hash;
    roo__entry *e;
} roo__slot;

/*
 * The recent-key cache: a direct-mapped array in front of the index for keys of up to 8
 * bytes, keyed by the key's bytes themselves, so that a key met again costs neither its
 * hash nor a probe (most streams repeat a small set of hot keys: letters, words, users).
 * A slot holds the key's bytes in a zeroed word (key8), its length and state id, which
 * together identify the key, its partition, and its entry and state object, or NULL for a key
 * whose state is kept by another thread (then the slot spares the hash that finds its partition).
 * Entries never move, so roo__table_drop, which forgets entries, clears the cache. Its user
 * (the processing thread) adds its own rule: it caches an entry only once the entry is ready
 * and while its partition table gives it the partition, and clears the cache whenever that
 * table changes (roo__table_forget_recent), so a cached entry can be used without asking
 * the table.
 */
#define ROO__TABLE_RECENT_BITS 9
/* A slot's identity besides key8; bit 48 tells a used slot from a zeroed one. */
#define ROO__RECENT_TAG(key_len, state_id)                                                         \
    ((uint64_t)(key_len) | (uint64_t)(state_id) << 16 | 1ull << 48)
#define ROO__RECENT_PART_SHIFT 32

typedef struct roo__recent {
    uint64_t key8;
    uint64_t tag; /* ROO__RECENT_TAG(key_len, state_id) | partition << 32 */
    roo__entry *e;
    void *state; /* e's state object (NULL with e): one dependent load less per message */
} roo__recent;

struct roo__table {
    roo__slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
    struct roo__arena_chunk *chunks; /* newest first */
    roo__recent recent[1u << ROO__TABLE_RECENT_BITS];
};

static inline bool roo__key_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    /* Most keys are short: a byte loop beats a call to memcmp. */
    if (n <= 16) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return false;
        return true;
    }
    return memcmp(a, b, n) == 0;
}

static inline roo__entry *roo__table_find(const roo__table *t, uint64_t hash, uint16_t state_id,
                                          const uint8_t *key, size_t key_len)
{
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const roo__slot *s = &t->slots[i];
        if (!s->e)
            return NULL;
        if (s->hash == hash && s->e->state_id == state_id && s->e->key_len == key_len &&
            roo__key_eq(s->e->key, key, key_len))
            return s->e;
    }
}

/*
 * A key of up to 8 bytes as one word, byte i at bits 8i, zero beyond len. Byte by byte on
 * purpose: the key callback has just stored the key, often a byte at a time, and a wider
 * load over narrower fresh stores cannot take their data from the store buffer (it waits for
 * them to reach the cache: a store-forwarding stall, a third of the state step in a profile).
 */
static inline uint64_t roo__key8(const uint8_t *key, size_t len)
{
    uint64_t v;

    if (len == 0)
        return 0;
    v = key[0]; /* one-byte keys (letters, small ids) skip the loop */
    for (size_t i = 1; i < len; i++)
        v |= (uint64_t)key[i] << (8 * i);
    return v;
}

/* Fibonacci hashing: consecutive small keys (letters, counters) land in distinct slots.
 * mix is (uint64_t)state_id << 56, so a loop over one step's keys works it out once. */
static inline roo__recent *roo__table_recent_slot_mixed(roo__table *t, uint64_t mix, uint64_t key8)
{
    uint64_t x = (key8 ^ mix) * 0x9E3779B97F4A7C15ull;
    return &t->recent[x >> (64 - ROO__TABLE_RECENT_BITS)];
}

static inline roo__recent *roo__table_recent_slot(roo__table *t, uint16_t state_id, uint64_t key8)
{
    return roo__table_recent_slot_mixed(t, (uint64_t)state_id << 56, key8);
}

/*
 * roo__table_recent with what depends on the state step alone worked out once (a loop over
 * one step's messages): mix = (uint64_t)state_id << 56, tag0 = ROO__RECENT_TAG(0, state_id).
 */
static inline const roo__recent *roo__table_recent_in(roo__table *t, uint64_t mix, uint64_t tag0,
                                                      uint64_t key8, size_t key_len)
{
    const roo__recent *r = roo__table_recent_slot_mixed(t, mix, key8);
    uint64_t other = 0xFFFFull << ROO__RECENT_PART_SHIFT;

    if (r->key8 == key8 && (r->tag & ~other) == (tag0 | key_len))
        return r;
    return NULL;
}

/*
 * The cached slot of a key of key_len <= 8 bytes, or NULL (then hash it and look it up).
 * key8 is roo__key8(key, key_len): two keys with equal key8 and length are the same key.
 */
static inline const roo__recent *roo__table_recent(roo__table *t, uint16_t state_id, uint64_t key8,
                                                   size_t key_len)
{
    return roo__table_recent_in(t, (uint64_t)state_id << 56, ROO__RECENT_TAG(0, state_id), key8,
                                key_len);
}

static inline uint16_t roo__recent_partition(const roo__recent *r)
{
    return (uint16_t)(r->tag >> ROO__RECENT_PART_SHIFT);
}

/* Remember a key of up to 8 bytes with its partition and entry (NULL: held elsewhere). */
static inline void roo__table_remember(roo__table *t, uint16_t state_id, uint64_t key8,
                                       size_t key_len, uint16_t partition, roo__entry *e)
{
    roo__recent *r = roo__table_recent_slot(t, state_id, key8);

    r->key8 = key8;
    r->tag = ROO__RECENT_TAG(key_len, state_id) | (uint64_t)partition << ROO__RECENT_PART_SHIFT;
    r->e = e;
    r->state = e ? roo__entry_state(e) : NULL;
}

/* Clear the recent-key cache (for its user's rule on table changes, see above). */
static inline void roo__table_forget_recent(roo__table *t)
{
    memset(t->recent, 0, sizeof(t->recent));
}

/* Insert a new entry (caller checked it is absent) with a zeroed state of state_size. */
roo__entry *roo__table_insert(roo__table *t, uint64_t hash, uint16_t state_id, uint16_t partition,
                              const uint8_t *key, size_t key_len, size_t state_size);

size_t roo__table_count(const roo__table *t);

/* Make room for n entries in all, so that inserting them never regrows the index. */
void roo__table_reserve(roo__table *t, size_t n);

/*
 * Forget every entry whose partition p has drop[p] set (its partition moved to another
 * worker), calling finish on each first; returns how many. Their arena memory is reused
 * only when the table is destroyed.
 */
size_t roo__table_drop(roo__table *t, const uint8_t *drop, roo__entry_fn finish, void *arg);

/* Visit every entry (no inserts during the walk). */
void roo__table_walk(const roo__table *t, roo__entry_fn fn, void *arg);

#endif /* ROO_TABLE_H */
