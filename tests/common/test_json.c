/* test_json.c: common/json.h: keys of any bytes become JSON names that parse back to their
 * text, and replies come out in the layout that roo-ctl's users and scripts read. */
#include <stdlib.h>

#include "common/json.h"
#include "roo_test.h"

/* The object {key: 1} on one line, the key given as bytes. */
static char *one_member(const char *key, size_t n, size_t *ret_name_size)
{
    json_t *o = roo__json_object();
    roo__buf scratch = { 0 };
    char *line;

    *ret_name_size = roo__json_set_key(o, (const uint8_t *)key, n, json_integer(1), &scratch);
    line = roo__json_line(o);
    roo__buf_finish(&scratch);
    json_decref(o);
    return line;
}

static void ck_key(const char *key, size_t n, const char *want)
{
    size_t name_size = 0;
    char *line = one_member(key, n, &name_size);

    ck_assert_str_eq(line, want);
    /* {NAME: 1}: the name is what the set counted, no more, no less. */
    ck_assert_uint_eq(name_size, strlen(want) - strlen("{: 1}"));
    free(line);
}

#define CK_KEY(key, want) ck_key(key, sizeof(key) - 1, want)

START_TEST(key_names_keep_utf8_and_escape_what_json_requires)
{
    CK_KEY("caf\xc3\xa9", "{\"caf\xc3\xa9\": 1}");
    CK_KEY("\xe2\x82\xac \xf0\x9f\x98\x80", "{\"\xe2\x82\xac \xf0\x9f\x98\x80\": 1}");
    CK_KEY("a\"b", "{\"a\\\"b\": 1}");
    CK_KEY("tab\there\n", "{\"tab\\there\\n\": 1}");
    CK_KEY("\x01", "{\"\\u0001\": 1}");
    CK_KEY("", "{\"\": 1}");
    CK_KEY("nul\0x", "{\"nul\\u0000x\": 1}");
}
END_TEST

/* The documented scheme (buf.h): \xHH for a byte that is not UTF-8, a backslash doubled. */
START_TEST(key_names_write_bytes_that_are_not_utf8_as_backslash_x)
{
    CK_KEY("a\xff", "{\"a\\\\xff\": 1}");
    CK_KEY("a\\b", "{\"a\\\\\\\\b\": 1}");
    CK_KEY("\xc3", "{\"\\\\xc3\": 1}");
    CK_KEY("\xed\xa0\x80", "{\"\\\\xed\\\\xa0\\\\x80\": 1}");
}
END_TEST

/* Any JSON parser reads the name back as the key's text: the bytes, recoverable. */
START_TEST(key_names_parse_back_to_the_key_text)
{
    static const char key[] = "caf\xc3\xa9 \xff\\ \"q\"\t";
    static const char text[] = "caf\xc3\xa9 \\xff\\\\ \"q\"\t";
    size_t name_size = 0;
    char *line = one_member(key, sizeof(key) - 1, &name_size);
    json_t *back = json_loads(line, 0, NULL);

    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(json_object_size(back), 1);
    ck_assert_ptr_nonnull(json_object_get(back, text));
    json_decref(back);
    free(line);
}
END_TEST

START_TEST(string_size_is_what_jansson_prints)
{
    static const char *const samples[] = { "",           "plain",        "caf\xc3\xa9", "q\"b\\s",
                                           "\b\f\n\r\t", "\x01\x1f\x7f", "/slash/" };

    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        json_t *s = json_string(samples[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_eq(roo__json_string_size(samples[i], strlen(samples[i])),
                          json_dumpb(s, NULL, 0, JSON_ENCODE_ANY));
        ck_assert_uint_eq(roo__json_size(s), json_dumpb(s, NULL, 0, JSON_ENCODE_ANY));
        json_decref(s);
    }
}
END_TEST

/* Names and addresses come from command lines: text that is not UTF-8 still shows. */
START_TEST(text_from_outside_that_is_not_utf8_uses_the_key_scheme)
{
    json_t *s = roo__json_str("w\xff");
    json_t *n = roo__json_str(NULL);

    ck_assert_str_eq(json_string_value(s), "w\\xff");
    ck_assert_str_eq(json_string_value(n), "");
    json_decref(s);
    json_decref(n);
}
END_TEST

START_TEST(counters_never_print_negative)
{
    json_t *big = roo__json_u64(UINT64_MAX), *small = roo__json_u64(42);

    ck_assert_int_eq(json_integer_value(big), INT64_MAX);
    ck_assert_int_eq(json_integer_value(small), 42);
    json_decref(big);
    json_decref(small);
}
END_TEST

/* One member per line; the expanded one an element per line; the rest on one line each. */
START_TEST(text_layout_is_one_member_per_line_and_expands_what_is_named)
{
    static const char *const expand[] = { "values", "workers", NULL };
    json_t *root = roo__json_object(), *values = roo__json_object(), *workers = roo__json_array();
    json_t *w = roo__json_object(), *move = roo__json_object();
    char *text;

    roo__json_set(values, "caf\xc3\xa9", json_integer(2));
    roo__json_set(values, "b", json_pack("{s:i, s:[i, i]}", "n", 1, "last", 3, 4));
    roo__json_set(w, "name", roo__json_str("w1"));
    roo__json_set(w, "ready", json_true());
    roo__json_push(workers, w);
    roo__json_set(move, "phase", roo__json_str("hold"));
    roo__json_set(move, "waiting_for", json_pack("[s]", "w2"));
    roo__json_set(root, "worker", roo__json_str("w1"));
    roo__json_set(root, "ratio", json_real(0.1));
    roo__json_set(root, "move", move);
    roo__json_set(root, "workers", workers);
    roo__json_set(root, "values", values);
    roo__json_set(root, "empty", roo__json_object());
    roo__json_set(root, "next", json_null());
    text = roo__json_text(root, expand);
    ck_assert_str_eq(text, "{\n"
                           "  \"worker\": \"w1\",\n"
                           "  \"ratio\": 0.1,\n"
                           "  \"move\": {\"phase\": \"hold\", \"waiting_for\": [\"w2\"]},\n"
                           "  \"workers\": [\n"
                           "    {\"name\": \"w1\", \"ready\": true}\n"
                           "  ],\n"
                           "  \"values\": {\n"
                           "    \"caf\xc3\xa9\": 2,\n"
                           "    \"b\": {\"n\": 1, \"last\": [3, 4]}\n"
                           "  },\n"
                           "  \"empty\": {},\n"
                           "  \"next\": null\n"
                           "}\n");
    free(text);
    json_decref(root);
}
END_TEST

START_TEST(text_of_empty_objects_and_of_values_that_are_not_objects)
{
    static const char *const expand[] = { "values", NULL };
    json_t *root = roo__json_object(), *with_empty = roo__json_object(), *num = json_integer(7);
    char *a, *b, *c;

    roo__json_set(with_empty, "values", roo__json_object());
    a = roo__json_text(root, NULL);
    b = roo__json_text(with_empty, expand);
    c = roo__json_text(num, NULL);
    ck_assert_str_eq(a, "{}\n");
    ck_assert_str_eq(b, "{\n  \"values\": {}\n}\n");
    ck_assert_str_eq(c, "7\n");
    free(a);
    free(b);
    free(c);
    json_decref(root);
    json_decref(with_empty);
    json_decref(num);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc;

    tc = roo_test_tcase("Key names", 10);
    tcase_add_test(tc, key_names_keep_utf8_and_escape_what_json_requires);
    tcase_add_test(tc, key_names_write_bytes_that_are_not_utf8_as_backslash_x);
    tcase_add_test(tc, key_names_parse_back_to_the_key_text);
    tcase_add_test(tc, string_size_is_what_jansson_prints);
    tcase_add_test(tc, text_from_outside_that_is_not_utf8_uses_the_key_scheme);
    tcase_add_test(tc, counters_never_print_negative);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("Layout", 10);
    tcase_add_test(tc, text_layout_is_one_member_per_line_and_expands_what_is_named);
    tcase_add_test(tc, text_of_empty_objects_and_of_values_that_are_not_objects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(json_suite());
}
