/* test_store.c: the LMDB store keeps committed state across reopen, in key order, and handles locking, aborts and map growth. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roo_test.h"
#include "state/store.h"

#define SMALL_MAP (1ull << 20)
#define BIG_MAP (1ull << 30)

static roo__store *open_store(const char *dir, uint64_t map_size)
{
    roo__store *s = NULL;
    char err[256] = "";
    int rc = roo__store_open(dir, map_size, &s, err, sizeof(err));

    ck_assert_msg(rc == 0, "open %s: %d (%s)", dir, rc, err);
    ck_assert_ptr_nonnull(s);
    return s;
}

static int put(roo__store *s, uint16_t partition, uint16_t state_id, const char *key,
               const char *val)
{
    return roo__store_txn_put_state(s, partition, state_id, (const uint8_t *)key, strlen(key),
                                    (const uint8_t *)val, strlen(val));
}

/* Scan results, as one string per record: "partition/state_id/key=value". */
typedef struct collected {
    char recs[64][128];
    size_t n;
    size_t calls;
    size_t fail_at; /* 1-based call that returns fail_rc; 0: never fail */
    int fail_rc;
} collected;

static int collect(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                   size_t key_len, const uint8_t *val, size_t val_len)
{
    collected *c = arg;

    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return c->fail_rc;
    ck_assert_uint_lt(c->n, ROO__ARRAY_SIZE(c->recs));
    snprintf(c->recs[c->n++], sizeof(c->recs[0]), "%u/%u/%.*s=%.*s", partition, state_id,
             (int)key_len, (const char *)key, (int)val_len, (const char *)val);
    return 0;
}

static void scan_into(roo__store *s, collected *c)
{
    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(roo__store_scan(s, collect, c), 0);
}

START_TEST(open_creates_nested_directory_like_mkdir_p)
{
    char *dir = roo_test_path("a/b/c/store");
    char *lock = roo_test_path("a/b/c/store/roo.lock");
    struct stat st;
    roo__store *s;
    uint64_t n = 99;

    ck_assert_int_eq(stat(dir, &st), -1);
    s = open_store(dir, SMALL_MAP);
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(stat(lock, &st), 0);
    ck_assert_uint_ge(roo__store_map_size(s), SMALL_MAP);
    ck_assert_int_eq(roo__store_count(s, &n), 0);
    ck_assert_uint_eq(n, 0);
    roo__store_close(s);

    /* Opening an existing directory works too. */
    s = open_store(dir, SMALL_MAP);
    roo__store_close(s);
    free(lock);
    free(dir);
}
END_TEST

START_TEST(open_fails_when_the_directory_cannot_be_created)
{
    char *file = roo_test_path("plain-file");
    char *dir = roo_test_path("plain-file/store");
    char err[256] = "";
    roo__store *s = NULL;
    int fd = open(file, O_CREAT | O_WRONLY, 0644);

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(roo__store_open(dir, SMALL_MAP, &s, err, sizeof(err)), -ENOTDIR);
    ck_assert_ptr_null(s);
    ck_assert_str_ne(err, "");
    free(dir);
    free(file);
}
END_TEST

START_TEST(meta_is_absent_in_a_new_directory_then_round_trips)
{
    char *dir = roo_test_path("meta");
    roo__store *s = open_store(dir, SMALL_MAP);
    roo__buf b = { 0 };

    ck_assert_int_eq(roo__store_meta_get(s, &b), -ENOENT);
    ck_assert_uint_eq(b.len, 0);

    ck_assert_int_eq(roo__store_meta_put(s, "first", 5), 0);
    ck_assert_int_eq(roo__store_meta_put(s, "\0meta\xff", 6), 0);
    ck_assert_int_eq(roo__store_meta_get(s, &b), 0);
    ck_assert_uint_eq(b.len, 6);
    ck_assert_mem_eq(b.data, "\0meta\xff", 6);
    roo__store_close(s);

    /* And it is durable. */
    s = open_store(dir, SMALL_MAP);
    b.len = 0;
    ck_assert_int_eq(roo__store_meta_get(s, &b), 0);
    ck_assert_uint_eq(b.len, 6);
    ck_assert_mem_eq(b.data, "\0meta\xff", 6);
    roo__store_close(s);
    roo__buf_finish(&b);
    free(dir);
}
END_TEST

START_TEST(empty_meta_value_round_trips)
{
    char *dir = roo_test_path("meta-empty");
    roo__store *s = open_store(dir, SMALL_MAP);
    roo__buf b = { 0 };

    ck_assert_int_eq(roo__store_meta_put(s, "", 0), 0);
    ck_assert_int_eq(roo__store_meta_get(s, &b), 0);
    ck_assert_uint_eq(b.len, 0);
    roo__store_close(s);
    roo__buf_finish(&b);
    free(dir);
}
END_TEST

START_TEST(committed_records_survive_reopen_and_scan_in_key_order)
{
    char *dir = roo_test_path("order");
    roo__store *s = open_store(dir, SMALL_MAP);
    collected c;
    uint64_t n;

    /* Written out of order; partition and state id are big-endian in the key, so 256 sorts
     * after 1 and state ids sort within a partition; shorter keys sort before longer ones
     * that extend them. */
    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 256, 0, "a", "p256"), 0);
    ck_assert_int_eq(put(s, 1, 2, "a", "s2"), 0);
    ck_assert_int_eq(put(s, 1, 0, "b", "vb"), 0);
    ck_assert_int_eq(put(s, 1, 0, "ab", "vab"), 0);
    ck_assert_int_eq(put(s, 1, 0, "a", "va"), 0);
    ck_assert_int_eq(put(s, 0, 65535, "z", "max id"), 0);
    ck_assert_int_eq(put(s, 65535, 0, "", "empty key"), 0);
    ck_assert_int_eq(put(s, 2, 1, "k", ""), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    roo__store_close(s);

    s = open_store(dir, SMALL_MAP);
    ck_assert_int_eq(roo__store_count(s, &n), 0);
    ck_assert_uint_eq(n, 8);
    scan_into(s, &c);
    ck_assert_uint_eq(c.n, 8);
    ck_assert_str_eq(c.recs[0], "0/65535/z=max id");
    ck_assert_str_eq(c.recs[1], "1/0/a=va");
    ck_assert_str_eq(c.recs[2], "1/0/ab=vab");
    ck_assert_str_eq(c.recs[3], "1/0/b=vb");
    ck_assert_str_eq(c.recs[4], "1/2/a=s2");
    ck_assert_str_eq(c.recs[5], "2/1/k=");
    ck_assert_str_eq(c.recs[6], "256/0/a=p256");
    ck_assert_str_eq(c.recs[7], "65535/0/=empty key");
    roo__store_close(s);
    free(dir);
}
END_TEST

START_TEST(aborted_txn_is_discarded)
{
    char *dir = roo_test_path("abort");
    roo__store *s = open_store(dir, SMALL_MAP);
    collected c;

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 1, 0, "kept", "1"), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 1, 0, "dropped", "2"), 0);
    ck_assert_int_eq(put(s, 1, 0, "kept", "changed"), 0);
    roo__store_txn_abort(s);
    scan_into(s, &c);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_str_eq(c.recs[0], "1/0/kept=1");

    /* A transaction still open at close is discarded as well. */
    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 1, 0, "open at close", "3"), 0);
    roo__store_close(s);
    s = open_store(dir, SMALL_MAP);
    scan_into(s, &c);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_str_eq(c.recs[0], "1/0/kept=1");
    roo__store_close(s);
    free(dir);
}
END_TEST

START_TEST(overwrite_keeps_the_last_value)
{
    char *dir = roo_test_path("overwrite");
    roo__store *s = open_store(dir, SMALL_MAP);
    collected c;

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 3, 1, "k", "one"), 0);
    ck_assert_int_eq(put(s, 3, 1, "k", "two"), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 3, 1, "k", "three, longer"), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    roo__store_close(s);

    s = open_store(dir, SMALL_MAP);
    scan_into(s, &c);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_str_eq(c.recs[0], "3/1/k=three, longer");
    roo__store_close(s);
    free(dir);
}
END_TEST

START_TEST(txn_begin_twice_is_busy_and_grow_needs_no_open_txn)
{
    char *dir = roo_test_path("busy");
    roo__store *s = open_store(dir, SMALL_MAP);

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(roo__store_txn_begin(s), -EBUSY);
    ck_assert_int_eq(roo__store_grow(s), -EBUSY);
    roo__store_txn_abort(s);
    ck_assert_int_eq(roo__store_grow(s), 0);
    roo__store_close(s);
    free(dir);
}
END_TEST

START_TEST(key_longer_than_key_max_is_rejected)
{
    char *dir = roo_test_path("keysize");
    roo__store *s = open_store(dir, SMALL_MAP);
    uint8_t key[ROO_KEY_MAX + 1];
    uint64_t n;

    memset(key, 'k', sizeof(key));
    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(roo__store_txn_put_state(s, 0, 0, key, ROO_KEY_MAX + 1, key, 1), ROO_EKEYSIZE);
    ck_assert_int_eq(roo__store_txn_put_state(s, 0, 0, key, ROO_KEY_MAX, key, 1), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    ck_assert_int_eq(roo__store_count(s, &n), 0);
    ck_assert_uint_eq(n, 1);
    roo__store_close(s);
    free(dir);
}
END_TEST

/*
 * The directory lock is an flock() on roo.lock. flock locks belong to the open file
 * description, not to the process, and each roo__store_open() open()s the lock file anew,
 * so a second open of a directory that is already open conflicts even within one process:
 * it fails with ROO_ELOCKED (and never reaches mdb_env_open, which LMDB forbids twice per
 * process for one environment). Closing the first store releases the lock.
 */
START_TEST(second_open_of_an_open_directory_is_locked)
{
    char *dir = roo_test_path("locked");
    roo__store *s1 = open_store(dir, SMALL_MAP), *s2 = NULL;
    char err[256] = "", pid[32];

    ck_assert_int_eq(roo__store_open(dir, SMALL_MAP, &s2, err, sizeof(err)), ROO_ELOCKED);
    ck_assert_ptr_null(s2);
    /* The message names the lock file and the holder's pid. */
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    ck_assert_msg(strstr(err, "roo.lock") && strstr(err, "locked") && strstr(err, pid),
                  "message: %s", err);

    /* The failed attempt did not disturb the first store. */
    ck_assert_int_eq(roo__store_txn_begin(s1), 0);
    ck_assert_int_eq(put(s1, 0, 0, "k", "v"), 0);
    ck_assert_int_eq(roo__store_txn_commit(s1), 0);

    roo__store_close(s1);
    s2 = open_store(dir, SMALL_MAP);
    roo__store_close(s2);
    free(dir);
}
END_TEST

START_TEST(full_map_grows_and_the_retried_txn_succeeds)
{
    enum { PER_TXN = 50, VAL = 1024 };
    char *dir = roo_test_path("grow");
    roo__store *s = open_store(dir, SMALL_MAP);
    uint8_t val[VAL];
    uint32_t next = 0;
    uint64_t n, before;
    int rc = 0, txns = 0;

    memset(val, 'v', sizeof(val));
    /* Fill the 1 MiB map one transaction at a time until it is full. */
    while (txns++ < 1000) {
        ck_assert_int_eq(roo__store_txn_begin(s), 0);
        for (int i = 0; i < PER_TXN && rc == 0; i++) {
            uint8_t key[4];
            roo__store_be32(key, next + (uint32_t)i);
            rc = roo__store_txn_put_state(s, 0, 0, key, 4, val, VAL);
        }
        if (rc == 0)
            rc = roo__store_txn_commit(s);
        else
            roo__store_txn_abort(s);
        if (rc != 0)
            break;
        next += PER_TXN;
    }
    ck_assert_int_eq(rc, ROO__EMAPFULL);
    ck_assert_uint_gt(next, 0);
    ck_assert_str_ne(roo__store_errmsg(s), "");

    before = roo__store_map_size(s);
    ck_assert_int_eq(roo__store_grow(s), 0);
    ck_assert_uint_eq(roo__store_map_size(s), before * 2);

    /* Retry the whole failed transaction. */
    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    for (int i = 0; i < PER_TXN; i++) {
        uint8_t key[4];
        roo__store_be32(key, next + (uint32_t)i);
        ck_assert_int_eq(roo__store_txn_put_state(s, 0, 0, key, 4, val, VAL), 0);
    }
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    next += PER_TXN;
    ck_assert_int_eq(roo__store_count(s, &n), 0);
    ck_assert_uint_eq(n, next);
    roo__store_close(s);

    /* The data, grown map included, is all there after a reopen with the small size. */
    s = open_store(dir, SMALL_MAP);
    ck_assert_int_eq(roo__store_count(s, &n), 0);
    ck_assert_uint_eq(n, next);
    roo__store_close(s);
    free(dir);
}
END_TEST

START_TEST(scan_callback_error_stops_the_scan_and_is_returned)
{
    char *dir = roo_test_path("scanerr");
    roo__store *s = open_store(dir, SMALL_MAP);
    collected c;

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    for (int i = 0; i < 10; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(put(s, 0, 0, key, "v"), 0);
    }
    ck_assert_int_eq(roo__store_txn_commit(s), 0);

    memset(&c, 0, sizeof(c));
    c.fail_at = 3;
    c.fail_rc = ROO_ECALLBACK;
    ck_assert_int_eq(roo__store_scan(s, collect, &c), ROO_ECALLBACK);
    ck_assert_uint_eq(c.calls, 3);
    ck_assert_uint_eq(c.n, 2);

    /* The aborted scan left no read transaction behind: writes and scans still work. */
    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 0, 0, "k99", "v"), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    scan_into(s, &c);
    ck_assert_uint_eq(c.n, 11);
    roo__store_close(s);
    free(dir);
}
END_TEST

typedef struct count_ctx {
    uint64_t n;
    uint64_t bad;
} count_ctx;

static int count_million(void *arg, uint16_t partition, uint16_t state_id, const uint8_t *key,
                         size_t key_len, const uint8_t *val, size_t val_len)
{
    count_ctx *c = arg;
    uint32_t i = key_len == 4 ? roo__load_be32(key) : UINT32_MAX;

    /* Records come back in insertion order here, since keys were written sorted. */
    if (i != c->n || partition != (uint16_t)(i >> 12) || state_id != 7 || val_len != 8 ||
        roo__load_be64(val) != (uint64_t)i * 3)
        c->bad++;
    c->n++;
    return 0;
}

START_TEST(million_keys_commit_in_several_txns_and_scan_back)
{
    enum { TOTAL = 1000000, TXNS = 8 };
    char *dir = roo_test_path("million");
    roo__store *s = open_store(dir, BIG_MAP);
    count_ctx c = { 0 };
    uint64_t n;
    double t0 = roo_test_now_ms();

    for (uint32_t t = 0, i = 0; t < TXNS; t++) {
        uint32_t end = (uint32_t)((uint64_t)TOTAL * (t + 1) / TXNS);
        ck_assert_int_eq(roo__store_txn_begin(s), 0);
        for (; i < end; i++) {
            uint8_t key[4], val[8];
            roo__store_be32(key, i);
            roo__store_be64(val, (uint64_t)i * 3);
            ck_assert_int_eq(roo__store_txn_put_state(s, (uint16_t)(i >> 12), 7, key, 4, val, 8),
                             0);
        }
        ck_assert_int_eq(roo__store_txn_commit(s), 0);
    }
    roo__store_close(s);

    s = open_store(dir, BIG_MAP);
    ck_assert_int_eq(roo__store_count(s, &n), 0);
    ck_assert_uint_eq(n, TOTAL);
    ck_assert_int_eq(roo__store_scan(s, count_million, &c), 0);
    ck_assert_uint_eq(c.n, TOTAL);
    ck_assert_uint_eq(c.bad, 0);
    roo__store_close(s);
    fprintf(stderr, "million_keys: %.0f ms\n", roo_test_now_ms() - t0);
    free(dir);
}
END_TEST

static int count_kv(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                    size_t val_len)
{
    (void)key;
    (void)key_len;
    (void)val;
    (void)val_len;
    (*(size_t *)arg)++;
    return 0;
}

START_TEST(a_partition_scans_alone_and_drops_with_its_stream_marks)
{
    char *dir = roo_test_path("part");
    roo__store *s = open_store(dir, BIG_MAP);
    uint8_t mk[10], mv[12] = { 0 };
    collected c;
    size_t marks = 0;

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(put(s, 1, 0, "a", "1"), 0);
    ck_assert_int_eq(put(s, 2, 0, "b", "2"), 0);
    ck_assert_int_eq(put(s, 2, 1, "c", "3"), 0);
    ck_assert_int_eq(put(s, 258, 0, "d", "4"), 0); /* 0x0102: shares no prefix byte order trap */
    ck_assert_int_eq(put(s, 3, 0, "e", "5"), 0);
    for (uint16_t p = 1; p <= 3; p++) {
        roo__store_be64(mk, 77);
        roo__store_be16(mk + 8, p);
        ck_assert_int_eq(roo__store_txn_put(s, ROO__DB_STREAMS, mk, sizeof(mk), mv, sizeof(mv)), 0);
    }
    ck_assert_int_eq(roo__store_txn_commit(s), 0);

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(roo__store_scan_partition(s, 2, collect, &c), 0);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_str_eq(c.recs[0], "2/0/b=2");
    ck_assert_str_eq(c.recs[1], "2/1/c=3");
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(roo__store_scan_partition(s, 9, collect, &c), 0);
    ck_assert_uint_eq(c.n, 0);

    ck_assert_int_eq(roo__store_txn_begin(s), 0);
    ck_assert_int_eq(roo__store_txn_drop_partition(s, 2), 0);
    ck_assert_int_eq(roo__store_txn_commit(s), 0);
    scan_into(s, &c);
    ck_assert_uint_eq(c.n, 3);
    ck_assert_str_eq(c.recs[0], "1/0/a=1");
    ck_assert_str_eq(c.recs[1], "3/0/e=5");
    ck_assert_str_eq(c.recs[2], "258/0/d=4");
    ck_assert_int_eq(roo__store_scan_db(s, ROO__DB_STREAMS, count_kv, &marks), 0);
    ck_assert_uint_eq(marks, 2);
    roo__store_close(s);
    free(dir);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc;

    tc = roo_test_tcase("basics", 20);
    tcase_add_unchecked_fixture(tc, roo_test_tmp_setup, roo_test_tmp_teardown);
    tcase_add_test(tc, open_creates_nested_directory_like_mkdir_p);
    tcase_add_test(tc, open_fails_when_the_directory_cannot_be_created);
    tcase_add_test(tc, meta_is_absent_in_a_new_directory_then_round_trips);
    tcase_add_test(tc, empty_meta_value_round_trips);
    tcase_add_test(tc, committed_records_survive_reopen_and_scan_in_key_order);
    tcase_add_test(tc, aborted_txn_is_discarded);
    tcase_add_test(tc, overwrite_keeps_the_last_value);
    tcase_add_test(tc, txn_begin_twice_is_busy_and_grow_needs_no_open_txn);
    tcase_add_test(tc, key_longer_than_key_max_is_rejected);
    tcase_add_test(tc, second_open_of_an_open_directory_is_locked);
    tcase_add_test(tc, scan_callback_error_stops_the_scan_and_is_returned);
    tcase_add_test(tc, a_partition_scans_alone_and_drops_with_its_stream_marks);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("growth", 30);
    tcase_add_unchecked_fixture(tc, roo_test_tmp_setup, roo_test_tmp_teardown);
    tcase_add_test(tc, full_map_grows_and_the_retried_txn_succeeds);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("volume", 45);
    tcase_add_unchecked_fixture(tc, roo_test_tmp_setup, roo_test_tmp_teardown);
    tcase_add_test(tc, million_keys_commit_in_several_txns_and_scan_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(store_suite());
}
