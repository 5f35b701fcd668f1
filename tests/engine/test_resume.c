/* test_resume.c: the exactly-once bookkeeping: dedup high-water marks and batch durability. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "engine/resume.h"
#include "engine/streams.h"
#include "roo_test.h"

typedef struct flushed {
    int n;
    uint8_t key[16][ROO__STREAM_KEY_LEN];
    uint8_t val[16][ROO__STREAM_VAL_LEN];
} flushed;

static void collect(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    flushed *f = arg;

    ck_assert_uint_eq(klen, ROO__STREAM_KEY_LEN);
    ck_assert_uint_eq(vlen, ROO__STREAM_VAL_LEN);
    ck_assert_int_lt(f->n, 16);
    memcpy(f->key[f->n], key, klen);
    memcpy(f->val[f->n], val, vlen);
    f->n++;
}

START_TEST(first_message_of_a_stream_is_applied_and_a_resend_is_recognised)
{
    roo__dedup *d = roo__dedup_create();

    ck_assert(!roo__dedup_check(d, 7, 3, 0, 0));
    ck_assert(roo__dedup_check(d, 7, 3, 0, 0));
    ck_assert(!roo__dedup_check(d, 7, 3, 0, 1));
    ck_assert(!roo__dedup_check(d, 7, 3, 1, 0));
    ck_assert(roo__dedup_check(d, 7, 3, 0, 1));
    ck_assert(roo__dedup_check(d, 7, 3, 1, 0));
    roo__dedup_destroy(d);
}
END_TEST

START_TEST(streams_and_partitions_are_tracked_apart)
{
    roo__dedup *d = roo__dedup_create();

    ck_assert(!roo__dedup_check(d, 7, 3, 100, 0));
    /* Same stream, another partition: its own mark. */
    ck_assert(!roo__dedup_check(d, 7, 4, 5, 0));
    /* Another stream, same partition: its own mark. */
    ck_assert(!roo__dedup_check(d, 8, 3, 5, 0));
    ck_assert(roo__dedup_check(d, 7, 3, 99, 9));
    roo__dedup_destroy(d);
}
END_TEST

START_TEST(interleaved_resends_from_two_paths_apply_each_message_once)
{
    /* Two copies of frames 0..9 of one stream (the old connection's and the new one's)
     * arrive interleaved but each in order: every frame is applied exactly once. */
    roo__dedup *d = roo__dedup_create();
    int applied = 0;

    for (int i = 0; i < 10; i++) {
        applied += !roo__dedup_check(d, 42, 1, (uint64_t)i, 0);
        if (i % 3 == 0)
            for (int k = 0; k <= i; k++)
                applied += !roo__dedup_check(d, 42, 1, (uint64_t)k, 0);
    }
    ck_assert_int_eq(applied, 10);
    roo__dedup_destroy(d);
}
END_TEST

START_TEST(flush_writes_each_changed_mark_once_in_store_layout)
{
    roo__dedup *d = roo__dedup_create();
    flushed f = { 0 };

    roo__dedup_check(d, 0x0102030405060708ull, 0x0a0b, 5, 1);
    roo__dedup_check(d, 0x0102030405060708ull, 0x0a0b, 6, 2);
    roo__dedup_flush(d, collect, &f);
    ck_assert_int_eq(f.n, 1);
    ck_assert_int_eq(f.key[0][0], 0x01);
    ck_assert_int_eq(f.key[0][7], 0x08);
    ck_assert_int_eq(f.key[0][8], 0x0a);
    ck_assert_int_eq(f.key[0][9], 0x0b);
    ck_assert_int_eq(f.val[0][7], 6);
    ck_assert_int_eq(f.val[0][11], 2);
    f.n = 0;
    roo__dedup_flush(d, collect, &f);
    ck_assert_int_eq(f.n, 0);
    roo__dedup_destroy(d);
}
END_TEST

START_TEST(loaded_marks_survive_growth_and_guard_resends)
{
    roo__dedup *d = roo__dedup_create();
    flushed f = { 0 };

    for (uint64_t s = 1; s <= 5000; s++)
        roo__dedup_load(d, s, (uint16_t)(s % 256), s * 10, 3);
    for (uint64_t s = 1; s <= 5000; s++) {
        ck_assert(roo__dedup_check(d, s, (uint16_t)(s % 256), s * 10, 3));
        ck_assert(roo__dedup_check(d, s, (uint16_t)(s % 256), s * 10 - 1, 9));
    }
    /* Loading is not a change: nothing to write. */
    roo__dedup_flush(d, collect, &f);
    ck_assert_int_eq(f.n, 0);
    ck_assert(!roo__dedup_check(d, 4999, 4999 % 256, 49990, 4));
    roo__dedup_flush(d, collect, &f);
    ck_assert_int_eq(f.n, 1);
    roo__dedup_destroy(d);
}
END_TEST

START_TEST(a_batch_is_durable_once_committed_and_all_its_routes_are_done)
{
    roo__durability d = { 0 };

    roo__dur_sealed(&d, 1, 0);
    roo__dur_sealed(&d, 2, 2);
    roo__dur_sealed(&d, 3, 1);
    ck_assert(!roo__dur_advance(&d));
    roo__dur_returned(&d, 1);
    ck_assert(roo__dur_advance(&d));
    ck_assert_uint_eq(d.durable_seq, 1);
    roo__dur_returned(&d, 2);
    roo__dur_returned(&d, 3);
    roo__dur_route_done(&d, 3);
    /* Batch 3 is complete but 2 still waits for its routes: nothing moves past 1. */
    ck_assert(!roo__dur_advance(&d));
    roo__dur_route_done(&d, 2);
    ck_assert(!roo__dur_advance(&d));
    roo__dur_route_done(&d, 2);
    ck_assert(roo__dur_advance(&d));
    ck_assert_uint_eq(d.durable_seq, 3);
    /* Notes for batches already gone are ignored. */
    roo__dur_route_done(&d, 2);
    roo__dur_returned(&d, 99);
    roo__dur_finish(&d);
}
END_TEST

/* A route of the batch being filled can be done before that batch is sealed. */
START_TEST(a_route_done_before_its_batch_is_sealed_still_counts)
{
    roo__durability d = { 0 };

    roo__dur_sealed(&d, 1, 1);
    roo__dur_route_done(&d, 2); /* batch 2 is still open */
    roo__dur_route_done(&d, 2);
    roo__dur_sealed(&d, 2, 3);
    roo__dur_returned(&d, 1);
    roo__dur_returned(&d, 2);
    roo__dur_route_done(&d, 1);
    ck_assert(roo__dur_advance(&d));
    ck_assert_uint_eq(d.durable_seq, 1);
    roo__dur_route_done(&d, 2);
    ck_assert(roo__dur_advance(&d));
    ck_assert_uint_eq(d.durable_seq, 2);
    /* The same with nothing waiting: the next batch after the durable one. */
    roo__dur_route_done(&d, 3);
    roo__dur_sealed(&d, 3, 1);
    roo__dur_returned(&d, 3);
    ck_assert(roo__dur_advance(&d));
    ck_assert_uint_eq(d.durable_seq, 3);
    roo__dur_finish(&d);
}
END_TEST

/* An aborted move's held buffer, re-routed as 3 buffers: its batch waits for all of them. */
START_TEST(a_rerouted_held_buffer_is_done_when_its_copies_are)
{
    roo__durability d = { 0 };

    roo__dur_sealed(&d, 1, 1); /* the held buffer */
    roo__dur_sealed(&d, 2, 0);
    roo__dur_returned(&d, 1);
    roo__dur_returned(&d, 2);
    roo__dur_add_routes(&d, 1, 3); /* its copies */
    roo__dur_route_done(&d, 1);    /* ... in place of it */
    ck_assert(!roo__dur_advance(&d));
    roo__dur_route_done(&d, 1);
    roo__dur_route_done(&d, 1);
    ck_assert(!roo__dur_advance(&d));
    roo__dur_route_done(&d, 1);
    ck_assert(roo__dur_advance(&d));
    ck_assert_uint_eq(d.durable_seq, 2);
    roo__dur_add_routes(&d, 7, 1); /* not a batch it knows: nothing */
    roo__dur_finish(&d);
}
END_TEST

START_TEST(durability_fifo_wraps_and_grows)
{
    roo__durability d = { 0 };
    uint64_t seq = 1;

    for (int round = 0; round < 50; round++) {
        for (int k = 0; k < 37; k++)
            roo__dur_sealed(&d, seq + (uint64_t)k, 1);
        for (int k = 0; k < 37; k++) {
            roo__dur_returned(&d, seq + (uint64_t)k);
            roo__dur_route_done(&d, seq + (uint64_t)k);
        }
        ck_assert(roo__dur_advance(&d));
        seq += 37;
        ck_assert_uint_eq(d.durable_seq, seq - 1);
    }
    roo__dur_finish(&d);
}
END_TEST

static void collect_keys(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                         size_t vlen)
{
    flushed *f = arg;

    ck_assert_uint_eq(klen, ROO__STREAM_KEY_LEN);
    ck_assert_ptr_null(val);
    ck_assert_uint_eq(vlen, 0);
    ck_assert_int_lt(f->n, 16);
    memcpy(f->key[f->n], key, klen);
    f->n++;
}

START_TEST(streams_idle_past_the_age_are_forgotten_with_every_mark)
{
    roo__dedup *d = roo__dedup_create();
    flushed f = { 0 };
    roo__stream_mark m;

    roo__dedup_tick(d, 100);
    ck_assert(!roo__dedup_check(d, 7, 3, 0, 0));
    ck_assert(!roo__dedup_check(d, 7, 300, 1, 0)); /* a second partition, past the first 256 */
    roo__dedup_tick(d, 200);
    ck_assert(!roo__dedup_check(d, 8, 3, 0, 0));
    /* Stream 7 was last used at 100, stream 8 at 200. */
    ck_assert_uint_eq(roo__dedup_expire(d, 100, collect_keys, &f), 0);
    ck_assert_uint_eq(roo__dedup_expire(d, 150, collect_keys, &f), 1);
    ck_assert_int_eq(f.n, 2);
    ck_assert(
        roo__key_stream_parse(f.key[0], ROO__STREAM_KEY_LEN, f.val[0], ROO__STREAM_VAL_LEN, &m));
    ck_assert_uint_eq(m.stream, 7);
    ck_assert_uint_eq(m.partition, 3);
    ck_assert(
        roo__key_stream_parse(f.key[1], ROO__STREAM_KEY_LEN, f.val[1], ROO__STREAM_VAL_LEN, &m));
    ck_assert_uint_eq(m.partition, 300);
    /* Forgotten: its frames count as new; stream 8 still guards its resends. */
    ck_assert(!roo__dedup_check(d, 7, 3, 0, 0));
    ck_assert(roo__dedup_check(d, 8, 3, 0, 0));
    roo__dedup_destroy(d);
}
END_TEST

START_TEST(a_hello_is_trusted_only_up_to_what_was_read)
{
    roo__streams *s = roo__streams_create();
    char peer[64];
    uint64_t stored = 99;
    size_t known, live;

    /* A stream never read here starts at 0 only; a refused hello leaves nothing behind. */
    ck_assert_int_eq(roo__streams_claim(s, 5, 1, "a", 0, 0, &stored, peer, sizeof(peer)),
                     ROO__STREAM_AHEAD);
    ck_assert_uint_eq(stored, 0);
    roo__streams_counts(s, &known, &live);
    ck_assert_uint_eq(known, 0);
    ck_assert_int_eq(roo__streams_claim(s, 5, 0, "a", 0, 0, &stored, peer, sizeof(peer)),
                     ROO__STREAM_OK);
    /* One connection per stream. */
    ck_assert_int_eq(roo__streams_claim(s, 5, 0, "b", 0, 0, &stored, peer, sizeof(peer)),
                     ROO__STREAM_LIVE);
    ck_assert_str_eq(peer, "a");
    roo__streams_advance(s, 5, 40, 10);
    roo__streams_release(s, 5, 10);
    ck_assert_int_eq(roo__streams_claim(s, 5, 41, "b", 0, 11, &stored, peer, sizeof(peer)),
                     ROO__STREAM_AHEAD);
    ck_assert_uint_eq(stored, 40);
    ck_assert_int_eq(roo__streams_claim(s, 5, 40, "b", 0, 11, &stored, peer, sizeof(peer)),
                     ROO__STREAM_OK);
    roo__streams_release(s, 5, 12);
    /* Read elsewhere (the keeper's answer in a cluster): trusted that far, not further,
     * and remembered. */
    ck_assert_int_eq(roo__streams_claim(s, 6, 501, "c", 500, 12, &stored, peer, sizeof(peer)),
                     ROO__STREAM_AHEAD);
    ck_assert_uint_eq(stored, 500);
    ck_assert_int_eq(roo__streams_claim(s, 6, 500, "c", 500, 12, &stored, peer, sizeof(peer)),
                     ROO__STREAM_OK);
    roo__streams_release(s, 6, 12);
    ck_assert_uint_eq(roo__streams_position(s, 6), 500);
    ck_assert_int_eq(roo__streams_claim(s, 6, 500, "c", 0, 12, &stored, peer, sizeof(peer)),
                     ROO__STREAM_OK);
    /* Recovery keeps the larger position. */
    roo__streams_advance(s, 7, 30, 12);
    roo__streams_advance(s, 7, 20, 12);
    ck_assert_int_eq(roo__streams_claim(s, 7, 31, "d", 0, 12, &stored, peer, sizeof(peer)),
                     ROO__STREAM_AHEAD);
    ck_assert_uint_eq(stored, 30);
    /* Expiry: only streams without a connection, idle for longer than the age. */
    ck_assert_uint_eq(roo__streams_expire(s, 20, 8, NULL, NULL), 0); /* idle for exactly 8 */
    ck_assert_uint_eq(roo__streams_expire(s, 21, 8, NULL, NULL), 2); /* 5 and 7 */
    roo__streams_counts(s, &known, &live);
    ck_assert_uint_eq(known, 1);
    ck_assert_uint_eq(live, 1);
    ck_assert_uint_eq(roo__streams_expire(s, 1000, 8, NULL, NULL), 0); /* 6 is live */
    roo__streams_destroy(s);
}
END_TEST

static Suite *resume_suite(void)
{
    Suite *s = suite_create("resume");
    TCase *tc = roo_test_tcase("dedup", 10);

    tcase_add_test(tc, first_message_of_a_stream_is_applied_and_a_resend_is_recognised);
    tcase_add_test(tc, streams_and_partitions_are_tracked_apart);
    tcase_add_test(tc, interleaved_resends_from_two_paths_apply_each_message_once);
    tcase_add_test(tc, flush_writes_each_changed_mark_once_in_store_layout);
    tcase_add_test(tc, loaded_marks_survive_growth_and_guard_resends);
    tcase_add_test(tc, streams_idle_past_the_age_are_forgotten_with_every_mark);
    tcase_add_test(tc, a_hello_is_trusted_only_up_to_what_was_read);
    suite_add_tcase(s, tc);
    tc = roo_test_tcase("durability", 10);
    tcase_add_test(tc, a_batch_is_durable_once_committed_and_all_its_routes_are_done);
    tcase_add_test(tc, a_route_done_before_its_batch_is_sealed_still_counts);
    tcase_add_test(tc, a_rerouted_held_buffer_is_done_when_its_copies_are);
    tcase_add_test(tc, durability_fifo_wraps_and_grows);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(resume_suite());
}
