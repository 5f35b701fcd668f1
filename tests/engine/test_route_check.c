/* test_route_check.c: a route buffer from another worker is applied only if every record
 * fits, names a state step and the count is right; every way of lying is caught. */
#include <stdio.h>

#include "engine/engine-int.h"
#include "roo_test.h"

/* Stages 0 (stateless), 1 (state), 2 (sink). */
static const bool is_state[3] = { false, true, false };

typedef struct rb {
    uint8_t d[4096];
    size_t n;
} rb;

static void put_stream(rb *b, uint64_t stream, uint64_t base)
{
    roo__store_le32(b->d + b->n, ROO__ROUTE_STREAM);
    roo__store_le32(b->d + b->n + 4, 16);
    roo__store_le32(b->d + b->n + 8, (uint32_t)stream);
    roo__store_le32(b->d + b->n + 12, (uint32_t)(stream >> 32));
    roo__store_le32(b->d + b->n + 16, (uint32_t)base);
    roo__store_le32(b->d + b->n + 20, (uint32_t)(base >> 32));
    b->n += 24;
}

static void put_msg(rb *b, uint32_t stage, const char *msg, bool id)
{
    size_t len = strlen(msg), idlen = id ? ROO__ROUTE_ID_LEN : 0;

    roo__store_le32(b->d + b->n, stage | (id ? ROO__ROUTE_ID_FLAG : 0));
    roo__store_le32(b->d + b->n + 4, (uint32_t)len);
    memset(b->d + b->n + 8, 0, idlen + ROO__ALIGN8(len));
    memcpy(b->d + b->n + 8 + idlen, msg, len);
    b->n += 8 + idlen + ROO__ALIGN8(len);
}

/* A run header for n messages of stage `stage`, mlen bytes each, then the messages: byte k
 * of message i is i + k. */
static void put_run(rb *b, uint32_t stage, uint32_t mlen, uint32_t n)
{
    roo__store_le32(b->d + b->n, ROO__ROUTE_RUN);
    roo__store_le32(b->d + b->n + 4, stage);
    roo__store_le32(b->d + b->n + 8, mlen);
    roo__store_le32(b->d + b->n + 12, n);
    b->n += ROO__ROUTE_RUN_HDR;
    for (uint32_t i = 0; i < n; i++) {
        memset(b->d + b->n, 0, ROO__ALIGN8(mlen));
        for (uint32_t k = 0; k < mlen; k++)
            b->d[b->n + k] = (uint8_t)(i + k);
        b->n += ROO__ALIGN8(mlen);
    }
}

static int check(const rb *b, uint32_t count, char *why)
{
    return roo__route_check(b->d, b->n, is_state, 3, count, why, 200);
}

START_TEST(a_well_formed_batch_passes)
{
    rb b = { .n = 0 };
    char why[200] = "";

    ck_assert_int_eq(check(&b, 0, why), 0); /* empty */
    put_msg(&b, 1, "a vote", false);
    put_stream(&b, 77, 1000);
    put_msg(&b, 1, "with an identity", true);
    put_msg(&b, 1, "", true);
    ck_assert_int_eq(check(&b, 3, why), 0);
}
END_TEST

START_TEST(read_positions_count_as_messages_and_must_be_whole)
{
    rb b = { .n = 0 };
    char why[200] = "";

    put_msg(&b, 1, "a vote", false);
    roo__store_le32(b.d + b.n, ROO__ROUTE_INGRESS);
    roo__store_le32(b.d + b.n + 4, ROO__ROUTE_INGRESS_LEN);
    roo__store_le64(b.d + b.n + 8, 77);
    roo__store_le64(b.d + b.n + 16, 20000);
    b.n += 8 + ROO__ROUTE_INGRESS_LEN;
    ck_assert_int_eq(check(&b, 2, why), 0);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    b.n -= 1; /* cut short */
    ck_assert_int_eq(check(&b, 2, why), ROO_EWIRE);
    ck_assert_msg(strstr(why, "read position"), "%s", why);
    b.n += 1;
    roo__store_le32(b.d + b.n - 8 - ROO__ROUTE_INGRESS_LEN + 4, 24); /* a wrong length */
    ck_assert_int_eq(check(&b, 2, why), ROO_EWIRE);
}
END_TEST

START_TEST(a_stage_that_is_not_a_state_step_is_refused)
{
    rb b = { .n = 0 };
    char why[200] = "";

    put_msg(&b, 0, "x", false);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    ck_assert_ptr_nonnull(strstr(why, "not a state step"));
    b.n = 0;
    put_msg(&b, 2, "x", false);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    b.n = 0;
    put_msg(&b, 3, "x", false); /* past the last stage */
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    b.n = 0;
    put_msg(&b, 0x7FFFFFFEu, "x", false);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
}
END_TEST

START_TEST(lengths_that_run_past_the_end_are_refused)
{
    rb b = { .n = 0 };
    char why[200] = "";

    put_msg(&b, 1, "hello", false);
    b.n -= 1; /* the padding cut */
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    b.n = 0;
    put_msg(&b, 1, "hello", false);
    roo__store_le32(b.d + 4, 9); /* says 9, holds 8 */
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    roo__store_le32(b.d + 4, 0xFFFFFFF0u); /* wraps a 32-bit sum */
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    roo__store_le32(b.d + 4, ROO_MSG_MAX + 1);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    b.n = 5; /* a header cut short */
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    b.n = 0;
    put_stream(&b, 1, 2);
    b.n -= 4;
    ck_assert_int_eq(check(&b, 0, why), ROO_EWIRE);
    b.n = 0;
    put_stream(&b, 1, 2);
    roo__store_le32(b.d + 4, 15);
    ck_assert_int_eq(check(&b, 0, why), ROO_EWIRE);
}
END_TEST

START_TEST(identities_need_a_stream_record_and_counts_must_match)
{
    rb b = { .n = 0 };
    char why[200] = "";

    put_msg(&b, 1, "x", true);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    ck_assert_ptr_nonnull(strstr(why, "stream record"));
    b.n = 0;
    put_msg(&b, 1, "x", false);
    put_msg(&b, 1, "y", false);
    ck_assert_int_eq(check(&b, 1, why), ROO_EWIRE);
    ck_assert_int_eq(check(&b, 3, why), ROO_EWIRE);
    ck_assert_int_eq(check(&b, 2, why), 0);
}
END_TEST

/* A run of records of one size, with one record changed at position i by `how`. */
static int check_run_changed(int i, int how, uint32_t *ret_count)
{
    rb b = { .n = 0 };
    char why[200] = "";
    uint32_t count = 12;

    for (int k = 0; k < 12; k++) {
        size_t at = b.n;
        put_msg(&b, 1, "nine byte", false); /* 24 bytes a record */
        if (k != i)
            continue;
        switch (how) {
        case 0: /* a stateless step */
            roo__store_le32(b.d + at, 0);
            break;
        case 1: /* a longer length in the same stride: still fits, if the run ends there */
            roo__store_le32(b.d + at + 4, 16);
            break;
        case 2: /* a length past the end */
            roo__store_le32(b.d + at + 4, 4000);
            break;
        case 3: /* a shorter message: a new stride, fine */
            b.n = at;
            put_msg(&b, 1, "short", false);
            break;
        case 4: /* an identity without a stream record */
            roo__store_le32(b.d + at, 1 | ROO__ROUTE_ID_FLAG);
            break;
        case 5: /* a stream record, then a message with an identity: fine, one more record */
            b.n = at;
            put_stream(&b, 5, 6);
            put_msg(&b, 1, "nine byte", true);
            break;
        }
    }
    *ret_count = count;
    return check(&b, count, why);
}

START_TEST(runs_of_one_size_are_checked_like_any_record)
{
    uint32_t count;

    for (int i = 0; i < 12; i++) {
        ck_assert_int_eq(check_run_changed(i, 0, &count), ROO_EWIRE);
        /* 16 bytes pads to 16 like 9: the same record size, a different length, fine */
        ck_assert_int_eq(check_run_changed(i, 1, &count), 0);
        ck_assert_int_eq(check_run_changed(i, 2, &count), ROO_EWIRE);
        ck_assert_int_eq(check_run_changed(i, 3, &count), 0);
        ck_assert_int_eq(check_run_changed(i, 4, &count), ROO_EWIRE);
        ck_assert_int_eq(check_run_changed(i, 5, &count), 0);
    }
    {
        rb b = { .n = 0 };
        char why[200] = "";
        for (int k = 0; k < 12; k++)
            put_msg(&b, 1, "nine byte", false);
        ck_assert_int_eq(check(&b, 12, why), 0);
        ck_assert_int_eq(check(&b, 11, why), ROO_EWIRE);
        b.n -= 8; /* the last record's padding and part of its message cut */
        ck_assert_int_eq(check(&b, 12, why), ROO_EWIRE);
        ck_assert_msg(strstr(why, "past the end"), "%s", why);
    }
}
END_TEST

START_TEST(runs_pass_and_are_read_message_by_message)
{
    rb b = { .n = 0 };
    char why[200] = "";
    roo__route_iter it;
    roo__route_rec rec;
    uint32_t want_len[] = { 8, 8, 8, 1, 13, 13 }, want_first[] = { 0, 1, 2, 'a', 0, 1 };
    int i = 0;

    put_run(&b, 1, 8, 3);
    put_msg(&b, 1, "a", false);
    put_run(&b, 1, 13, 2);
    ck_assert_int_eq(check(&b, 6, why), 0);
    ck_assert_int_eq(check(&b, 5, why), ROO_EWIRE);
    it = roo__route_iter_of(b.d, b.n);
    while (roo__route_next(&it, &rec)) {
        ck_assert_int_lt(i, 6);
        ck_assert_uint_eq(rec.stage, 1);
        ck_assert(!rec.has_id);
        ck_assert_uint_eq(rec.len, want_len[i]);
        ck_assert_uint_eq(rec.msg[0], want_first[i]);
        i++;
    }
    ck_assert_int_eq(i, 6);
    ck_assert_ptr_eq(it.p, b.d + b.n);
}
END_TEST

START_TEST(malformed_runs_are_refused)
{
    rb b;
    char why[200] = "";

    for (uint32_t stage = 0; stage < 5; stage++) { /* only stage 1 is a state step */
        b.n = 0;
        put_run(&b, stage, 8, 2);
        ck_assert_int_eq(check(&b, 2, why), stage == 1 ? 0 : ROO_EWIRE);
    }
    b.n = 0;
    put_run(&b, 1 | ROO__ROUTE_ID_FLAG, 8, 2); /* no identities in a run */
    ck_assert_int_eq(check(&b, 2, why), ROO_EWIRE);
    b.n = 0;
    put_run(&b, 1, 0, 3); /* empty messages: a run that would take no bytes */
    ck_assert_int_eq(check(&b, 3, why), ROO_EWIRE);
    ck_assert_msg(strstr(why, "malformed run"), "%s", why);
    b.n = 0;
    put_run(&b, 1, 8, 0); /* no messages */
    ck_assert_int_eq(check(&b, 0, why), ROO_EWIRE);
    b.n = 0;
    put_run(&b, 1, 8, 3);
    roo__store_le32(b.d + 8, ROO_MSG_MAX + 1);
    ck_assert_int_eq(check(&b, 3, why), ROO_EWIRE);
    roo__store_le32(b.d + 8, 9); /* 16 bytes each: past the end */
    ck_assert_int_eq(check(&b, 3, why), ROO_EWIRE);
    ck_assert_msg(strstr(why, "past the end"), "%s", why);
    roo__store_le32(b.d + 8, 8);
    roo__store_le32(b.d + 12, 4); /* one message more than there are */
    ck_assert_int_eq(check(&b, 4, why), ROO_EWIRE);
    roo__store_le32(b.d + 12, 0xFFFFFFFFu);
    ck_assert_int_eq(check(&b, 0xFFFFFFFFu, why), ROO_EWIRE);
    roo__store_le32(b.d + 12, 3);
    ck_assert_int_eq(check(&b, 3, why), 0);
    b.n -= 1; /* the last message cut */
    ck_assert_int_eq(check(&b, 3, why), ROO_EWIRE);
    b.n = 12; /* the header cut */
    ck_assert_int_eq(check(&b, 3, why), ROO_EWIRE);
    ck_assert_msg(strstr(why, "run header"), "%s", why);
}
END_TEST

static Suite *route_check_suite(void)
{
    Suite *s = suite_create("route_check");
    TCase *tc = roo_test_tcase("peer batches", 10);

    tcase_add_test(tc, a_well_formed_batch_passes);
    tcase_add_test(tc, read_positions_count_as_messages_and_must_be_whole);
    tcase_add_test(tc, a_stage_that_is_not_a_state_step_is_refused);
    tcase_add_test(tc, lengths_that_run_past_the_end_are_refused);
    tcase_add_test(tc, identities_need_a_stream_record_and_counts_must_match);
    tcase_add_test(tc, runs_of_one_size_are_checked_like_any_record);
    tcase_add_test(tc, runs_pass_and_are_read_message_by_message);
    tcase_add_test(tc, malformed_runs_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(route_check_suite());
}
