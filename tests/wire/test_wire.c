/* test_wire.c: WorkerMeta survives an encode/decode round trip, and malformed or oversize encodings are refused with ROO_EWIRE. */
#include <stdlib.h>

#include "roo_test.h"
#include "wire/wire.h"

static void assert_meta_eq(const roo__meta *a, const roo__meta *b)
{
    ck_assert_uint_eq(a->format_version, b->format_version);
    ck_assert_str_eq(a->app_name, b->app_name);
    ck_assert_str_eq(a->worker_name, b->worker_name);
    ck_assert_uint_eq(a->partitions, b->partitions);
    ck_assert_str_eq(a->roo_version, b->roo_version);
    ck_assert_uint_eq(a->created_unix_ms, b->created_unix_ms);
    ck_assert_uint_eq(a->nstate_names, b->nstate_names);
    for (size_t i = 0; i < a->nstate_names; i++)
        ck_assert_str_eq(a->state_names[i], b->state_names[i]);
}

START_TEST(meta_round_trips_with_several_state_names)
{
    char *names[] = { "letter-totals", "word.counts", "x", "",
                      "a-much-longer_state.name-0123456789" };
    roo__meta in = {
        .format_version = ROO__FORMAT_VERSION,
        .app_name = "alphabet",
        .worker_name = "worker-2",
        .partitions = 65535,
        .state_names = names,
        .nstate_names = ROO__ARRAY_SIZE(names),
        .roo_version = ROO_VERSION_STRING,
        .created_unix_ms = 0xFEDCBA9876543210ull,
    };
    roo__buf b = { 0 };
    roo__meta out;

    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_uint_gt(b.len, 0);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    assert_meta_eq(&in, &out);
    /* The decoded strings are copies, owned by out. */
    ck_assert_ptr_ne(out.app_name, in.app_name);
    roo__wire_meta_finish(&out);
    ck_assert_ptr_null(out.app_name);
    ck_assert_uint_eq(out.nstate_names, 0);
    roo__buf_finish(&b);
}
END_TEST

START_TEST(meta_round_trips_with_no_state_names_and_zero_values)
{
    roo__meta in = { .app_name = "a", .worker_name = "w", .roo_version = "" };
    roo__buf b = { 0 };
    roo__meta out;

    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    assert_meta_eq(&in, &out);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
}
END_TEST

START_TEST(encode_appends_to_what_the_buffer_holds)
{
    char *names[] = { "s" };
    roo__meta in = { .format_version = 1,
                     .app_name = "app",
                     .worker_name = "w",
                     .partitions = 8,
                     .state_names = names,
                     .nstate_names = 1,
                     .roo_version = "0.1.0",
                     .created_unix_ms = 5 };
    roo__buf b = { 0 };
    roo__meta out;

    roo__buf_append(&b, "XYZ", 3);
    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_mem_eq(b.data, "XYZ", 3);
    ck_assert_int_eq(roo__wire_meta_decode(b.data + 3, b.len - 3, &out), 0);
    assert_meta_eq(&in, &out);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
}
END_TEST

START_TEST(empty_encoding_decodes_to_defaults)
{
    roo__meta out;

    /* proto3: every field absent is its default. */
    ck_assert_int_eq(roo__wire_meta_decode((const uint8_t *)"", 0, &out), 0);
    ck_assert_uint_eq(out.format_version, 0);
    ck_assert_str_eq(out.app_name, "");
    ck_assert_str_eq(out.worker_name, "");
    ck_assert_uint_eq(out.nstate_names, 0);
    roo__wire_meta_finish(&out);
}
END_TEST

START_TEST(garbage_bytes_are_rejected_with_ewire)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } bad[] = {
        { "all ones", "\xff\xff\xff\xff", 4 },
        { "field number 0", "\x00\x01", 2 },
        { "string field sent as varint", "\x10\x01", 2 },
        { "string longer than the input",
          "\x12\x05"
          "ab",
          4 },
        { "truncated varint", "\x08\x80", 2 },
        { "group wire type", "\x0b", 1 },
        { "plain text", "hello world, not protobuf", 25 },
    };

    for (size_t i = 0; i < ROO__ARRAY_SIZE(bad); i++) {
        roo__meta out;
        int rc = roo__wire_meta_decode((const uint8_t *)bad[i].bytes, bad[i].len, &out);
        if (rc == 0)
            roo__wire_meta_finish(&out);
        ck_assert_msg(rc == ROO_EWIRE, "%s: decode gave %d", bad[i].what, rc);
    }
}
END_TEST

START_TEST(truncated_encoding_is_rejected_with_ewire)
{
    char *names[] = { "state-one", "state-two" };
    roo__meta in = { .format_version = 1,
                     .app_name = "alphabet",
                     .worker_name = "initializer",
                     .partitions = 256,
                     .state_names = names,
                     .nstate_names = 2,
                     .roo_version = "0.1.0",
                     .created_unix_ms = 1700000000000ull };
    roo__buf b = { 0 };
    size_t rejected = 0;

    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    /* Cutting the encoding inside a field must never decode as something else silently;
     * cuts at a field boundary decode as a shorter message, which protobuf allows. */
    for (size_t cut = 1; cut < b.len; cut++) {
        roo__meta out;
        int rc = roo__wire_meta_decode(b.data, cut, &out);
        ck_assert_msg(rc == 0 || rc == ROO_EWIRE, "cut %zu gave %d", cut, rc);
        if (rc == 0)
            roo__wire_meta_finish(&out);
        else
            rejected++;
    }
    ck_assert_uint_gt(rejected, b.len / 2);
    roo__buf_finish(&b);
}
END_TEST

/* Bytes of a protobuf varint for n. */
static size_t varint_len(size_t n)
{
    size_t k = 1;
    while (n >= 0x80) {
        n >>= 7;
        k++;
    }
    return k;
}

static size_t put_varint(uint8_t *p, size_t n)
{
    size_t k = 0;
    while (n >= 0x80) {
        p[k++] = (uint8_t)(n | 0x80);
        n >>= 7;
    }
    p[k++] = (uint8_t)n;
    return k;
}

/* The name length that makes one state_names field exactly `total` bytes long. */
static size_t name_len_for(size_t total)
{
    size_t n = total - 1 - varint_len(total);
    while (1 + varint_len(n) + n > total)
        n--;
    while (1 + varint_len(n + 1) + n + 1 <= total)
        n++;
    return n;
}

START_TEST(meta_of_exactly_meta_max_is_accepted)
{
    /* One state name filling the limit: tag (1) + varint length + name. */
    size_t n = name_len_for(ROO__META_MAX);
    char *name = malloc(n + 1);
    char *names[] = { name };
    roo__meta in = { .app_name = "",
                     .worker_name = "",
                     .roo_version = "",
                     .state_names = names,
                     .nstate_names = 1 };
    roo__buf b = { 0 };
    roo__meta out;

    memset(name, 'n', n);
    name[n] = '\0';
    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_uint_eq(b.len, ROO__META_MAX);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    ck_assert_uint_eq(out.nstate_names, 1);
    ck_assert_uint_eq(strlen(out.state_names[0]), n);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
    free(name);
}
END_TEST

START_TEST(meta_over_meta_max_is_rejected_both_ways)
{
    size_t n = name_len_for(ROO__META_MAX) + 1; /* one byte too many */
    char *name = malloc(n + 1);
    char *names[] = { name };
    roo__meta in = { .app_name = "",
                     .worker_name = "",
                     .roo_version = "",
                     .state_names = names,
                     .nstate_names = 1 };
    roo__buf b = { 0 };
    roo__meta out;
    uint8_t hdr[16];
    size_t h;

    memset(name, 'n', n);
    name[n] = '\0';
    /* Encoding refuses and leaves the buffer as it was. */
    roo__buf_append(&b, "pre", 3);
    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), ROO_EWIRE);
    ck_assert_uint_eq(b.len, 3);

    /* A well-formed encoding over the limit is refused before protobuf-c sees it. */
    b.len = 0;
    hdr[0] = 5 << 3 | 2; /* state_names: field 5, length-delimited */
    h = 1 + put_varint(hdr + 1, n);
    roo__buf_append(&b, hdr, h);
    roo__buf_append(&b, name, n);
    ck_assert_uint_eq(b.len, ROO__META_MAX + 1);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), ROO_EWIRE);
    /* The same field with one name byte less is fine. */
    b.len = 0;
    h = 1 + put_varint(hdr + 1, n - 1);
    roo__buf_append(&b, hdr, h);
    roo__buf_append(&b, name, n - 1);
    ck_assert_uint_le(b.len, ROO__META_MAX);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
    free(name);
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc;

    tc = roo_test_tcase("meta", 10);
    tcase_add_test(tc, meta_round_trips_with_several_state_names);
    tcase_add_test(tc, meta_round_trips_with_no_state_names_and_zero_values);
    tcase_add_test(tc, encode_appends_to_what_the_buffer_holds);
    tcase_add_test(tc, empty_encoding_decodes_to_defaults);
    tcase_add_test(tc, garbage_bytes_are_rejected_with_ewire);
    tcase_add_test(tc, truncated_encoding_is_rejected_with_ewire);
    tcase_add_test(tc, meta_of_exactly_meta_max_is_accepted);
    tcase_add_test(tc, meta_over_meta_max_is_rejected_both_ways);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(wire_suite());
}
