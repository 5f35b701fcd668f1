/* test_table.c: the per-thread state table finds every (state id, key), keeps entries in place while growing, caches recent short keys exactly, and hashes and partitions keys stably. */
#include <stdio.h>
#include <stdlib.h>

#include "roo_test.h"
#include "state/table.h"

static roo__entry *insert_str(roo__table *t, uint16_t state_id, const char *key, size_t state_size)
{
    uint64_t h = roo__key_hash(key, strlen(key));

    return roo__table_insert(t, h, state_id, roo__partition_of(h, 256), (const uint8_t *)key,
                             strlen(key), state_size);
}

static roo__entry *find_str(const roo__table *t, uint16_t state_id, const char *key)
{
    return roo__table_find(t, roo__key_hash(key, strlen(key)), state_id, (const uint8_t *)key,
                           strlen(key));
}

/* The key hash is part of the on-disk and cluster contract: XXH3-64, seed 0, for any length
 * (short keys take an inline path of their own; these are libxxhash's own answers). */
START_TEST(key_hash_is_xxh3_64_for_every_length)
{
    static const struct {
        const char *key;
        uint64_t hash;
    } known[] = {
        { "", 0x2d06800538d394c2ULL },
        { "a", 0xe6c632b61e964e1fULL },
        { "hello", 0x9555e8555c62dcfdULL },
        { "0123456789abcdef", 0x64439946d8fa212dULL },
        { "0123456789abcdefg", 0xd2e63ed5466f5c32ULL },
    };
    uint8_t buf[64];

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ck_assert_uint_eq(roo__key_hash(known[i].key, strlen(known[i].key)), known[i].hash);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof(buf); n++)
        ck_assert_uint_eq(roo__key_hash(buf, n), XXH3_64bits(buf, n));
}
END_TEST

START_TEST(inserted_entry_is_found_with_its_fields)
{
    roo__table *t = roo__table_create();
    uint64_t h = roo__key_hash("hello", 5);
    roo__entry *e = roo__table_insert(t, h, 3, 42, (const uint8_t *)"hello", 5, 16);

    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->hash, h);
    ck_assert_uint_eq(e->state_id, 3);
    ck_assert_uint_eq(e->partition, 42);
    ck_assert_uint_eq(e->key_len, 5);
    ck_assert_mem_eq(e->key, "hello", 5);
    ck_assert_uint_eq(e->flags, 0);
    ck_assert_uint_eq(e->dirty_mark, 0);
    ck_assert_ptr_eq(roo__table_find(t, h, 3, (const uint8_t *)"hello", 5), e);
    ck_assert_uint_eq(roo__table_count(t), 1);
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(absent_key_is_not_found)
{
    roo__table *t = roo__table_create();

    ck_assert_ptr_null(find_str(t, 0, "nothing"));
    insert_str(t, 0, "something", 8);
    ck_assert_ptr_null(find_str(t, 0, "nothing"));
    ck_assert_ptr_null(find_str(t, 1, "something"));
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(same_key_with_different_state_ids_is_distinct)
{
    roo__table *t = roo__table_create();
    roo__entry *a = insert_str(t, 0, "k", 8);
    roo__entry *b = insert_str(t, 1, "k", 8);
    roo__entry *c = insert_str(t, 65535, "k", 8);

    ck_assert_ptr_ne(a, b);
    ck_assert_ptr_ne(b, c);
    ck_assert_ptr_eq(find_str(t, 0, "k"), a);
    ck_assert_ptr_eq(find_str(t, 1, "k"), b);
    ck_assert_ptr_eq(find_str(t, 65535, "k"), c);
    ck_assert_ptr_null(find_str(t, 2, "k"));
    ck_assert_uint_eq(roo__table_count(t), 3);
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(keys_of_different_lengths_are_distinct)
{
    static const char *const keys[] = { "", "a", "ab", "abc", "abcd", "abcdefghijklmnop" };
    roo__table *t = roo__table_create();
    roo__entry *e[ROO__ARRAY_SIZE(keys)];
    uint8_t big[ROO_KEY_MAX];
    roo__entry *eb;

    for (size_t i = 0; i < ROO__ARRAY_SIZE(keys); i++)
        e[i] = insert_str(t, 0, keys[i], 8);
    for (size_t i = 0; i < ROO__ARRAY_SIZE(keys); i++) {
        ck_assert_ptr_eq(find_str(t, 0, keys[i]), e[i]);
        ck_assert_uint_eq(e[i]->key_len, strlen(keys[i]));
    }
    memset(big, 'K', sizeof(big));
    eb = roo__table_insert(t, roo__key_hash(big, sizeof(big)), 0, 0, big, sizeof(big), 8);
    ck_assert_ptr_eq(roo__table_find(t, roo__key_hash(big, sizeof(big)), 0, big, sizeof(big)), eb);
    ck_assert_mem_eq(eb->key, big, sizeof(big));
    ck_assert_ptr_null(
        roo__table_find(t, roo__key_hash(big, sizeof(big) - 1), 0, big, sizeof(big) - 1));
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(colliding_hashes_are_told_apart_by_key)
{
    roo__table *t = roo__table_create();
    const uint64_t h = 0x1234;
    roo__entry *a = roo__table_insert(t, h, 0, 0, (const uint8_t *)"ab", 2, 8);
    roo__entry *b = roo__table_insert(t, h, 0, 0, (const uint8_t *)"ba", 2, 8);
    roo__entry *c = roo__table_insert(t, h, 0, 0, (const uint8_t *)"abc", 3, 8);

    ck_assert_ptr_eq(roo__table_find(t, h, 0, (const uint8_t *)"ab", 2), a);
    ck_assert_ptr_eq(roo__table_find(t, h, 0, (const uint8_t *)"ba", 2), b);
    ck_assert_ptr_eq(roo__table_find(t, h, 0, (const uint8_t *)"abc", 3), c);
    ck_assert_ptr_null(roo__table_find(t, h, 0, (const uint8_t *)"aa", 2));
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(growth_past_many_resizes_keeps_every_key_and_pointer)
{
    enum { N = 200000 };
    roo__table *t = roo__table_create();
    roo__entry **saved = malloc(N * sizeof(*saved));
    char key[32];

    ck_assert_ptr_nonnull(saved);
    /* 200k keys from a 64-slot start: about 13 index doublings. */
    for (uint32_t i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "key-%u", i);
        uint64_t h = roo__key_hash(key, (size_t)n);
        ck_assert_ptr_null(roo__table_find(t, h, 0, (const uint8_t *)key, (size_t)n));
        saved[i] = roo__table_insert(t, h, 0, roo__partition_of(h, 256), (const uint8_t *)key,
                                     (size_t)n, sizeof(uint64_t));
        *(uint64_t *)roo__entry_state(saved[i]) = (uint64_t)i * 31 + 7;
    }
    ck_assert_uint_eq(roo__table_count(t), N);
    for (uint32_t i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "key-%u", i);
        roo__entry *e =
            roo__table_find(t, roo__key_hash(key, (size_t)n), 0, (const uint8_t *)key, (size_t)n);
        ck_assert_msg(e == saved[i], "key %u moved or vanished", i);
        ck_assert_uint_eq(*(uint64_t *)roo__entry_state(e), (uint64_t)i * 31 + 7);
        ck_assert_uint_eq(e->key_len, (unsigned)n);
        ck_assert_mem_eq(e->key, key, (size_t)n);
    }
    free(saved);
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(state_area_is_zeroed_and_8_byte_aligned)
{
    roo__table *t = roo__table_create();
    uint8_t key[64];

    memset(key, 'q', sizeof(key));
    for (size_t klen = 0; klen <= 40; klen++) {
        for (size_t ssize = 1; ssize <= 33; ssize += 4) {
            uint16_t sid = (uint16_t)ssize;
            roo__entry *e =
                roo__table_insert(t, roo__key_hash(key, klen), sid, 0, key, klen, ssize);
            uint8_t *st = roo__entry_state(e);

            ck_assert_msg(((uintptr_t)st & 7) == 0, "klen %zu size %zu unaligned", klen, ssize);
            ck_assert_msg(((uintptr_t)e & 7) == 0, "entry unaligned");
            /* The state does not overlap the key. */
            ck_assert((uintptr_t)st >= (uintptr_t)(e->key + klen));
            for (size_t i = 0; i < ssize; i++)
                ck_assert_msg(st[i] == 0, "klen %zu size %zu byte %zu not zero", klen, ssize, i);
            /* Dirty it so a later entry placed after it cannot be zero by accident. */
            memset(st, 0xEE, ssize);
            ck_assert_mem_eq(e->key, key, klen);
        }
    }
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

static void count_finish(roo__entry *e, void *arg)
{
    uint64_t *seen = arg;

    seen[0]++;
    seen[1] += *(uint64_t *)roo__entry_state(e);
}

START_TEST(walk_and_destroy_visit_every_entry_once)
{
    roo__table *t = roo__table_create();
    uint64_t walk[2] = { 0 }, fin[2] = { 0 }, want = 0;
    char key[16];

    for (uint64_t i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "w%llu", (unsigned long long)i);
        *(uint64_t *)roo__entry_state(insert_str(t, 0, key, 8)) = i;
        want += i;
    }
    roo__table_walk(t, count_finish, walk);
    ck_assert_uint_eq(walk[0], 1000);
    ck_assert_uint_eq(walk[1], want);
    roo__table_destroy(t, count_finish, fin);
    ck_assert_uint_eq(fin[0], 1000);
    ck_assert_uint_eq(fin[1], want);
    roo__table_destroy(NULL, NULL, NULL);
}
END_TEST

static void count_entry(roo__entry *e, void *arg)
{
    (void)e;
    (*(size_t *)arg)++;
}

START_TEST(dropping_partitions_forgets_only_their_keys)
{
    roo__table *t = roo__table_create();
    uint8_t drop[256] = { 0 };
    size_t kept = 0, finished = 0, n = 20000;
    char key[32];

    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "k%zu", i);
        insert_str(t, 0, key, 8);
    }
    for (unsigned p = 0; p < 256; p += 4)
        drop[p] = 1;
    size_t dropped = roo__table_drop(t, drop, count_entry, &finished);
    ck_assert_uint_eq(dropped, finished);
    ck_assert_uint_gt(dropped, n / 5);
    ck_assert_uint_lt(dropped, n / 3);
    ck_assert_uint_eq(roo__table_count(t), n - dropped);
    for (size_t i = 0; i < n; i++) {
        uint64_t h;
        snprintf(key, sizeof(key), "k%zu", i);
        h = roo__key_hash(key, strlen(key));
        roo__entry *e = find_str(t, 0, key);
        if (drop[roo__partition_of(h, 256)]) {
            ck_assert_ptr_null(e);
        } else {
            ck_assert_ptr_nonnull(e);
            kept++;
        }
    }
    ck_assert_uint_eq(kept, n - dropped);
    /* A dropped key may come back (its partition returns): it is a new entry. */
    snprintf(key, sizeof(key), "k0");
    if (!find_str(t, 0, key))
        ck_assert_ptr_nonnull(insert_str(t, 0, key, 8));
    ck_assert_ptr_nonnull(find_str(t, 0, key));
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

static uint64_t key8_of(const char *key, size_t len)
{
    return roo__key8((const uint8_t *)key, len);
}

/* The recent-key cache answers for exactly the (state id, key bytes, length) it was told. */
START_TEST(recent_key_cache_finds_remembered_keys_and_tells_them_apart)
{
    roo__table *t = roo__table_create();
    roo__entry *a = insert_str(t, 0, "A", 8), *a1 = insert_str(t, 1, "A", 8);
    roo__entry *ab = insert_str(t, 0, "ABCDEFGH", 8);
    const roo__recent *r;

    ck_assert_ptr_null(roo__table_recent(t, 0, key8_of("A", 1), 1)); /* nothing yet */
    ck_assert_ptr_null(roo__table_recent(t, 0, 0, 0)); /* a zeroed slot is no empty key */
    roo__table_remember(t, 0, key8_of("A", 1), 1, a->partition, a);
    roo__table_remember(t, 1, key8_of("A", 1), 1, a1->partition, a1);
    roo__table_remember(t, 0, key8_of("ABCDEFGH", 8), 8, ab->partition, ab);
    roo__table_remember(t, 0, key8_of("Z", 1), 1, 77, NULL); /* kept by another thread */

    r = roo__table_recent(t, 0, key8_of("A", 1), 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_eq(r->e, a);
    ck_assert_uint_eq(roo__recent_partition(r), a->partition);
    r = roo__table_recent(t, 1, key8_of("A", 1), 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_eq(r->e, a1);
    r = roo__table_recent(t, 0, key8_of("ABCDEFGH", 8), 8);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_eq(r->e, ab);
    r = roo__table_recent(t, 0, key8_of("Z", 1), 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_null(r->e);
    ck_assert_uint_eq(roo__recent_partition(r), 77);
    /* "A\0" is another key than "A", and "A" of state 2 was never remembered. */
    ck_assert_ptr_null(roo__table_recent(t, 0, key8_of("A", 1), 2));
    ck_assert_ptr_null(roo__table_recent(t, 2, key8_of("A", 1), 1));
    ck_assert_ptr_null(roo__table_recent(t, 0, key8_of("B", 1), 1));
    roo__table_forget_recent(t);
    ck_assert_ptr_null(roo__table_recent(t, 0, key8_of("A", 1), 1));
    ck_assert_ptr_null(roo__table_recent(t, 0, key8_of("Z", 1), 1));
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

/* Dropped entries must not be reachable through the cache (it would hand out a forgotten
 * entry's state); the 26 letters of Alphabet each keep a slot of their own. */
START_TEST(recent_key_cache_forgets_dropped_entries_and_keeps_letters_apart)
{
    roo__table *t = roo__table_create();
    uint8_t drop[256] = { 0 };
    char key[2] = { 0, 0 };

    for (char c = 'a'; c <= 'z'; c++) {
        key[0] = c;
        roo__entry *e = insert_str(t, 0, key, 8);
        roo__table_remember(t, 0, key8_of(key, 1), 1, e->partition, e);
    }
    for (char c = 'a'; c <= 'z'; c++) {
        key[0] = c;
        const roo__recent *r = roo__table_recent(t, 0, key8_of(key, 1), 1);
        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_eq(r->e, find_str(t, 0, key));
    }
    key[0] = 'q';
    drop[find_str(t, 0, key)->partition] = 1;
    ck_assert_uint_ge(roo__table_drop(t, drop, NULL, NULL), 1);
    ck_assert_ptr_null(roo__table_recent(t, 0, key8_of(key, 1), 1));
    roo__table_destroy(t, NULL, NULL);
}
END_TEST

START_TEST(partition_of_spreads_letters_over_partitions)
{
    bool used[256] = { false };
    unsigned distinct = 0;

    for (char c = 'a'; c <= 'z'; c++) {
        uint16_t p = roo__partition_of(roo__key_hash(&c, 1), 256);
        ck_assert_uint_lt(p, 256);
        if (!used[p]) {
            used[p] = true;
            distinct++;
        }
    }
    ck_assert_msg(distinct >= 20, "26 letters in only %u partitions", distinct);
}
END_TEST

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

START_TEST(partition_of_spreads_random_keys_evenly)
{
    enum { KEYS = 100000, PARTS = 256 };
    unsigned counts[PARTS] = { 0 };
    uint64_t seed = 20240601;
    double mean = (double)KEYS / PARTS;

    for (int i = 0; i < KEYS; i++) {
        uint64_t k = splitmix64(&seed);
        uint16_t p = roo__partition_of(roo__key_hash(&k, sizeof(k)), PARTS);
        ck_assert_uint_lt(p, PARTS);
        counts[p]++;
    }
    for (int p = 0; p < PARTS; p++)
        ck_assert_msg(counts[p] >= mean * 0.75 && counts[p] <= mean * 1.25,
                      "partition %d has %u keys; mean %.1f", p, counts[p], mean);
}
END_TEST

START_TEST(partition_of_stays_in_range_at_the_extremes)
{
    ck_assert_uint_eq(roo__partition_of(0, 256), 0);
    ck_assert_uint_eq(roo__partition_of(UINT64_MAX, 256), 255);
    ck_assert_uint_eq(roo__partition_of(UINT64_MAX, 65535), 65534);
    ck_assert_uint_eq(roo__partition_of(UINT64_MAX, 1), 0);
    ck_assert_uint_eq(roo__partition_of(0x8000000000000000ull, 2), 1);
    ck_assert_uint_eq(roo__partition_of(0x7FFFFFFFFFFFFFFFull, 2), 0);
}
END_TEST

/*
 * These constants pin the on-disk and cluster contract: roo__key_hash (XXH3-64, seed 0)
 * picks each key's partition, and partitions are stored in the LMDB key prefix and agreed
 * on between workers. If this test fails, existing resilience directories and mixed-version
 * clusters would route keys to the wrong partitions. The values were computed once with
 * XXH3_64bits() from libxxhash 0.8.1 (XXH3_64bits("") = 0x2D06800538D394C2 matches the
 * published reference vector, which cross-checks the library).
 */
START_TEST(key_hash_is_pinned_to_xxh3_64)
{
    ck_assert_uint_eq(roo__key_hash("", 0), 0x2d06800538d394c2ull);
    ck_assert_uint_eq(roo__key_hash("a", 1), 0xe6c632b61e964e1full);
    ck_assert_uint_eq(roo__key_hash("hello", 5), 0x9555e8555c62dcfdull);
    /* And so are the partitions they land in with the default 256 partitions. */
    ck_assert_uint_eq(roo__partition_of(roo__key_hash("a", 1), 256), 0xe6);
    ck_assert_uint_eq(roo__partition_of(roo__key_hash("hello", 5), 256), 0x95);
}
END_TEST

static Suite *table_suite(void)
{
    Suite *s = suite_create("table");
    TCase *tc;

    tc = roo_test_tcase("entries", 30);
    tcase_add_test(tc, key_hash_is_xxh3_64_for_every_length);
    tcase_add_test(tc, inserted_entry_is_found_with_its_fields);
    tcase_add_test(tc, absent_key_is_not_found);
    tcase_add_test(tc, same_key_with_different_state_ids_is_distinct);
    tcase_add_test(tc, keys_of_different_lengths_are_distinct);
    tcase_add_test(tc, colliding_hashes_are_told_apart_by_key);
    tcase_add_test(tc, growth_past_many_resizes_keeps_every_key_and_pointer);
    tcase_add_test(tc, state_area_is_zeroed_and_8_byte_aligned);
    tcase_add_test(tc, walk_and_destroy_visit_every_entry_once);
    tcase_add_test(tc, dropping_partitions_forgets_only_their_keys);
    tcase_add_test(tc, recent_key_cache_finds_remembered_keys_and_tells_them_apart);
    tcase_add_test(tc, recent_key_cache_forgets_dropped_entries_and_keeps_letters_apart);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("hash", 10);
    tcase_add_test(tc, partition_of_spreads_letters_over_partitions);
    tcase_add_test(tc, partition_of_spreads_random_keys_evenly);
    tcase_add_test(tc, partition_of_stays_in_range_at_the_extremes);
    tcase_add_test(tc, key_hash_is_pinned_to_xxh3_64);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(table_suite());
}
