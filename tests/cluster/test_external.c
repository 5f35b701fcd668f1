/* test_external.c: how roo-ctl query shows a saved value: what the state type's format
 * callback writes when it is JSON, the saved bytes in hex otherwise, and why. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"
#include "roo_test.h"

typedef struct counter {
    uint64_t n;
} counter;

/* What the callbacks below write; ctx points at it. */
typedef struct shape {
    const char *text; /* a printf format taking the count */
    int fail;         /* returned instead, when negative */
    int finished;     /* finish calls */
} shape;

static int format_cb(const void *state, char *buf, size_t cap, void *ctx)
{
    const shape *s = ctx;

    if (s->fail < 0)
        return s->fail;
    return snprintf(buf, cap, s->text, (unsigned long long)((const counter *)state)->n);
}

/* A serialized form: the count as decimal text. */
static int deserialize_cb(void *state, const uint8_t *buf, size_t len, void *ctx)
{
    char text[32];

    (void)ctx;
    if (len == 0 || len >= sizeof(text))
        return ROO_ECALLBACK;
    memcpy(text, buf, len);
    text[len] = 0;
    ((counter *)state)->n = strtoull(text, NULL, 10);
    return 0;
}

static void finish_cb(void *state, void *ctx)
{
    (void)state;
    ((shape *)ctx)->finished++;
}

/* The value's one-line JSON, or NULL with why filled when it fell back; *ret_rc the code. */
static char *formatted(const roo_state_type *t, const void *val, size_t len, char *why, size_t cap,
                       int *ret_rc)
{
    void *scratch = roo__xcalloc(1, t->size);
    json_t *v = NULL;
    char *line = NULL;

    why[0] = 0;
    *ret_rc = roo__ext_format_json(t, scratch, val, len, why, cap, &v);
    if (*ret_rc == 0) {
        line = roo__json_line(v);
        json_decref(v);
    }
    free(scratch);
    return line;
}

START_TEST(a_format_that_writes_json_is_shown_as_that_json)
{
    shape s = { .text = "{\"n\":%llu,\"tags\":[\"caf\xc3\xa9\"]}" };
    roo_state_type t = {
        .name = "counts", .size = sizeof(counter), .format = format_cb, .ctx = &s
    };
    counter c = { .n = 42 };
    char why[200];
    int rc;
    char *line = formatted(&t, &c, sizeof(c), why, sizeof(why), &rc);

    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(line, "{\"n\": 42, \"tags\": [\"caf\xc3\xa9\"]}");
    free(line);
}
END_TEST

START_TEST(a_format_longer_than_the_first_buffer_is_asked_again)
{
    char text[1200];
    shape s = { .text = text };
    roo_state_type t = { .name = "long", .size = sizeof(counter), .format = format_cb, .ctx = &s };
    counter c = { .n = 7 };
    char why[200];
    int rc;
    char *line;

    /* A string of 1,000 'x' then the count: well past the 256 bytes tried first. */
    memset(text, 'x', sizeof(text));
    text[0] = '"';
    memcpy(text + 1001, "%llu\"", 6);
    line = formatted(&t, &c, sizeof(c), why, sizeof(why), &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(strlen(line), 1 + 1000 + 1 + 1);
    ck_assert_int_eq(line[1001], '7');
    free(line);
}
END_TEST

START_TEST(text_that_is_not_json_falls_back_and_says_why)
{
    shape s = { .text = "count=%llu" };
    roo_state_type t = { .name = "bad", .size = sizeof(counter), .format = format_cb, .ctx = &s };
    counter c = { .n = 3 };
    char why[200];
    int rc;

    ck_assert_ptr_null(formatted(&t, &c, sizeof(c), why, sizeof(why), &rc));
    ck_assert_int_eq(rc, ROO_ECALLBACK);
    ck_assert_msg(strstr(why, "not JSON") != NULL, "why: %s", why);
}
END_TEST

START_TEST(a_failing_format_or_deserialize_falls_back_and_says_why)
{
    shape s = { .text = "%llu", .fail = ROO_ECALLBACK };
    roo_state_type t = { .name = "fails", .size = sizeof(counter), .format = format_cb, .ctx = &s };
    counter c = { .n = 3 };
    char why[200];
    int rc;

    ck_assert_ptr_null(formatted(&t, &c, sizeof(c), why, sizeof(why), &rc));
    ck_assert_int_eq(rc, ROO_ECALLBACK);
    ck_assert_msg(strstr(why, "format failed") != NULL, "why: %s", why);

    s.fail = 0;
    t.deserialize = deserialize_cb;
    ck_assert_ptr_null(formatted(&t, "", 0, why, sizeof(why), &rc));
    ck_assert_int_eq(rc, ROO_ECALLBACK);
    ck_assert_msg(strstr(why, "deserialize failed") != NULL, "why: %s", why);

    /* Raw bytes of the wrong size are not an object to format. */
    t.deserialize = NULL;
    ck_assert_ptr_null(formatted(&t, &c, 3, why, sizeof(why), &rc));
    ck_assert_int_eq(rc, ROO_ECALLBACK);
}
END_TEST

/* With deserialize, format sees the rebuilt object, and finish releases it afterwards. */
START_TEST(a_deserialized_object_is_formatted_then_finished)
{
    shape s = { .text = "%llu" };
    roo_state_type t = { .name = "text",
                         .size = sizeof(counter),
                         .format = format_cb,
                         .deserialize = deserialize_cb,
                         .finish = finish_cb,
                         .ctx = &s };
    char why[200];
    int rc;
    char *line = formatted(&t, "12345", 5, why, sizeof(why), &rc);

    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(line, "12345");
    ck_assert_int_eq(s.finished, 1);
    free(line);
}
END_TEST

START_TEST(without_format_the_saved_bytes_show_in_hex)
{
    roo_state_type t = { .name = "raw", .size = 3 };
    char why[200];
    int rc;
    json_t *hex = roo__ext_hex_json((const uint8_t *)"\x00\xab\x7f", 3);

    ck_assert_ptr_null(formatted(&t, "abc", 3, why, sizeof(why), &rc));
    ck_assert_int_eq(rc, -ENOENT);
    ck_assert_str_eq(json_string_value(hex), "00ab7f");
    json_decref(hex);
}
END_TEST

static Suite *external_suite(void)
{
    Suite *s = suite_create("external");
    TCase *tc = roo_test_tcase("Query values", 10);

    tcase_add_test(tc, a_format_that_writes_json_is_shown_as_that_json);
    tcase_add_test(tc, a_format_longer_than_the_first_buffer_is_asked_again);
    tcase_add_test(tc, text_that_is_not_json_falls_back_and_says_why);
    tcase_add_test(tc, a_failing_format_or_deserialize_falls_back_and_says_why);
    tcase_add_test(tc, a_deserialized_object_is_formatted_then_finished);
    tcase_add_test(tc, without_format_the_saved_bytes_show_in_hex);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(external_suite());
}
