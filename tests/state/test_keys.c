/* test_keys.c: the LMDB key layouts: every record reads back as written, malformed lengths
 * are refused, and keys sort the way the store relies on (a partition's state is one range,
 * a sink's outbox comes out in seq order). */
#include <stdlib.h>

#include "roo_test.h"
#include "state/keys.h"

static int cmp_keys(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

START_TEST(state_keys_read_back_and_group_by_partition)
{
    uint8_t a[ROO__STATE_KEY_MAX], b[ROO__STATE_KEY_MAX], prefix[2];
    uint16_t p, sid;
    size_t alen = roo__key_state(a, 300, 7, (const uint8_t *)"zebra", 5);
    size_t blen = roo__key_state(b, 301, 0, (const uint8_t *)"", 0);

    ck_assert_uint_eq(alen, 9);
    ck_assert(roo__key_state_parse(a, alen, &p, &sid));
    ck_assert_uint_eq(p, 300);
    ck_assert_uint_eq(sid, 7);
    ck_assert_mem_eq(a + ROO__STATE_KEY_PREFIX, "zebra", 5);
    ck_assert(!roo__key_state_parse(a, 3, &p, &sid));
    /* Every key of partition 300 sorts before any key of partition 301. */
    ck_assert_int_lt(cmp_keys(a, alen, b, blen), 0);
    roo__key_state_partition(prefix, 300);
    ck_assert_mem_eq(a, prefix, 2);
    /* Partition numbers above 255 still sort numerically (big-endian). */
    alen = roo__key_state(a, 256, 0, (const uint8_t *)"a", 1);
    blen = roo__key_state(b, 255, 9, (const uint8_t *)"z", 1);
    ck_assert_int_gt(cmp_keys(a, alen, b, blen), 0);
}
END_TEST

START_TEST(link_records_read_back_and_long_names_are_cut)
{
    uint8_t k[ROO__LINK_KEY_MAX], v[ROO__LINK_VAL_LEN];
    char name[ROO__LINK_NAME_MAX + 1], longname[200];
    uint32_t thread;
    uint64_t inc, seq;
    size_t klen = roo__key_link(k, "worker3", 5);

    roo__val_link(v, 0x1122334455667788ull, 42);
    ck_assert(roo__key_link_parse(k, klen, v, sizeof(v), name, &thread, &inc, &seq));
    ck_assert_str_eq(name, "worker3");
    ck_assert_uint_eq(thread, 5);
    ck_assert_uint_eq(inc, 0x1122334455667788ull);
    ck_assert_uint_eq(seq, 42);
    ck_assert(!roo__key_link_parse(k, 4, v, sizeof(v), name, &thread, &inc, &seq));
    ck_assert(!roo__key_link_parse(k, klen, v, 15, name, &thread, &inc, &seq));
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    klen = roo__key_link(k, longname, 1);
    ck_assert_uint_eq(klen, ROO__LINK_NAME_MAX + 4);
    ck_assert(roo__key_link_parse(k, klen, v, sizeof(v), name, &thread, &inc, &seq));
    ck_assert_uint_eq(strlen(name), ROO__LINK_NAME_MAX);
}
END_TEST

START_TEST(stream_marks_read_back_as_22_bytes)
{
    uint8_t mark[ROO__STREAM_MARK_LEN];
    roo__stream_mark in = { 0xdeadbeefcafef00dull, 65535, 1ull << 40, 4000000000u }, out;

    ck_assert_uint_eq(ROO__STREAM_MARK_LEN, 22);
    roo__key_stream(mark, mark + ROO__STREAM_KEY_LEN, &in);
    ck_assert(roo__key_stream_parse(mark, ROO__STREAM_KEY_LEN, mark + ROO__STREAM_KEY_LEN,
                                    ROO__STREAM_VAL_LEN, &out));
    ck_assert_uint_eq(out.stream, in.stream);
    ck_assert_uint_eq(out.partition, in.partition);
    ck_assert_uint_eq(out.offset, in.offset);
    ck_assert_uint_eq(out.sub, in.sub);
    ck_assert_uint_eq(roo__key_stream_partition(mark), 65535);
    ck_assert(!roo__key_stream_parse(mark, 9, mark + 10, 12, &out));
    ck_assert(!roo__key_stream_parse(mark, 10, mark + 10, 11, &out));
}
END_TEST

START_TEST(outbox_keys_sort_by_sink_then_seq)
{
    uint8_t a[ROO__OUTBOX_KEY_LEN], b[ROO__OUTBOX_KEY_LEN];
    uint32_t sink;
    uint64_t seq;

    roo__key_outbox(a, 1, 0xFFFFFFFFull);
    roo__key_outbox(b, 1, 0x100000000ull);
    ck_assert_int_lt(memcmp(a, b, sizeof(a)), 0);
    roo__key_outbox(b, 2, 0);
    ck_assert_int_lt(memcmp(a, b, sizeof(a)), 0);
    ck_assert(roo__key_outbox_parse(a, sizeof(a), &sink, &seq));
    ck_assert_uint_eq(sink, 1);
    ck_assert_uint_eq(seq, 0xFFFFFFFFull);
    ck_assert(!roo__key_outbox_parse(a, 11, &sink, &seq));
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = roo_test_tcase("layouts", 10);

    tcase_add_test(tc, state_keys_read_back_and_group_by_partition);
    tcase_add_test(tc, link_records_read_back_and_long_names_are_cut);
    tcase_add_test(tc, stream_marks_read_back_as_22_bytes);
    tcase_add_test(tc, outbox_keys_sort_by_sink_then_seq);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(keys_suite());
}
