/* test_alphabet.c: the Alphabet example's codec (vote decoding, letter keys, total encoding) and setup match its documented wire format. */
#define ALPHABET_NO_MAIN
#include "../../examples/alphabet/alphabet.c"

#include "engine/engine-int.h"
#include "roo_test.h"

START_TEST(encode_total_writes_length_letter_and_big_endian_total)
{
    running_total v = { .total = 0x0102030405060708ull, .letter = 'q' };
    uint8_t buf[16];
    static const uint8_t want[13] = { 0, 0, 0, 9, 'q', 1, 2, 3, 4, 5, 6, 7, 8 };

    memset(buf, 0xAA, sizeof(buf));
    ck_assert_int_eq(encode_total(&v, sizeof(v), buf, sizeof(buf), NULL), 13);
    ck_assert_mem_eq(buf, want, sizeof(want));
    ck_assert_uint_eq(buf[13], 0xAA);
}
END_TEST

START_TEST(encode_total_asks_for_13_bytes_when_short)
{
    running_total v = { .total = 1, .letter = 'a' };
    uint8_t buf[13];

    for (size_t cap = 0; cap < 13; cap++) {
        memset(buf, 0xAA, sizeof(buf));
        ck_assert_int_eq(encode_total(&v, sizeof(v), buf, cap, NULL), 13);
        for (size_t i = 0; i < sizeof(buf); i++)
            ck_assert_msg(buf[i] == 0xAA, "cap %zu: byte %zu written", cap, i);
    }
    ck_assert_int_eq(encode_total(&v, sizeof(v), buf, 13, NULL), 13);
}
END_TEST

START_TEST(encode_total_of_large_and_zero_totals)
{
    running_total v = { .total = UINT64_MAX, .letter = 'z' };
    uint8_t buf[13];

    ck_assert_int_eq(encode_total(&v, sizeof(v), buf, sizeof(buf), NULL), 13);
    for (int i = 5; i < 13; i++)
        ck_assert_uint_eq(buf[i], 0xFF);
    v.total = 0;
    ck_assert_int_eq(encode_total(&v, sizeof(v), buf, sizeof(buf), NULL), 13);
    for (int i = 5; i < 13; i++)
        ck_assert_uint_eq(buf[i], 0);
}
END_TEST

START_TEST(letter_key_is_the_one_letter_byte)
{
    uint8_t key[ROO_KEY_MAX];

    for (int c = 0; c < 256; c++) {
        vote v = { .count = 99, .letter = (uint8_t)c };
        memset(key, 0, sizeof(key));
        ck_assert_int_eq(letter_key(&v, sizeof(v), key, NULL), 1);
        ck_assert_uint_eq(key[0], (uint8_t)c);
        ck_assert_uint_eq(key[1], 0);
    }
}
END_TEST

START_TEST(decode_vote_rejects_payloads_that_are_not_5_bytes)
{
    static const uint8_t payload[16] = { 'a', 0, 0, 0, 1 };

    /* These return before emitting anything, so no emitter is needed. */
    for (size_t len = 0; len < sizeof(payload); len++) {
        if (len == 5)
            continue;
        ck_assert_msg(decode_vote(payload, len, NULL, NULL) == ROO_EDECODE, "len %zu accepted",
                      len);
    }
}
END_TEST

START_TEST(load_be32_reads_big_endian)
{
    static const uint8_t b[4] = { 0x12, 0x34, 0x56, 0x78 };
    static const uint8_t m[4] = { 0xFF, 0xFF, 0xFF, 0xFE };

    ck_assert_uint_eq(load_be32(b), 0x12345678u);
    ck_assert_uint_eq(load_be32(m), 0xFFFFFFFEu);
}
END_TEST

START_TEST(setup_builds_a_valid_alphabet_app)
{
    roo_app *app = NULL;
    char *argv[] = { "alphabet", NULL };
    char msg[256] = "";

    ck_assert_int_eq(roo_app_create(&app), 0);
    ck_assert_int_eq(setup(app, 1, argv), 0);
    ck_assert_int_eq(roo__app_validate(app, msg, sizeof(msg)), 0);
    ck_assert_str_eq(app->name, "alphabet");
    ck_assert_uint_eq(app->npipelines, 1);
    ck_assert_uint_eq(app->pipelines[0]->source.framing, ROO_FRAMING_LENGTH);
    ck_assert_uint_eq(app->pipelines[0]->source.header_len, 4);
    ck_assert_uint_eq(app->pipelines[0]->source.byte_order, ROO_BIG_ENDIAN);
    ck_assert_uint_eq(app->nstate_types, 1);
    ck_assert_str_eq(app->state_types[0]->name, "letter-totals");
    ck_assert_uint_eq(app->state_types[0]->size, 8);
    ck_assert_uint_eq(app->nstages, 2);
    ck_assert_uint_eq(app->stages[0].kind, ROO__STAGE_STATE);
    ck_assert(app->stages[0].key == letter_key);
    ck_assert(app->stages[0].state_compute == add_votes);
    ck_assert_uint_eq(app->stages[1].kind, ROO__STAGE_SINK);
    ck_assert(app->stages[1].encode == encode_total);
    roo_app_destroy(app);
}
END_TEST

static Suite *alphabet_suite(void)
{
    Suite *s = suite_create("alphabet");
    TCase *tc;

    tc = roo_test_tcase("codec", 10);
    tcase_add_test(tc, encode_total_writes_length_letter_and_big_endian_total);
    tcase_add_test(tc, encode_total_asks_for_13_bytes_when_short);
    tcase_add_test(tc, encode_total_of_large_and_zero_totals);
    tcase_add_test(tc, letter_key_is_the_one_letter_byte);
    tcase_add_test(tc, decode_vote_rejects_payloads_that_are_not_5_bytes);
    tcase_add_test(tc, load_be32_reads_big_endian);
    tcase_add_test(tc, setup_builds_a_valid_alphabet_app);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(alphabet_suite());
}
