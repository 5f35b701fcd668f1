/* json.c: jansson with roo's out-of-memory policy, key names of any bytes, and the layout
 * of the external channel's replies. */
#include "common/json.h"

#include <stdlib.h>

/*
 * Decimals with 15 significant digits (DBL_DIG): a format callback's number with up to 15
 * digits prints as it wrote it (0.1 stays 0.1), where jansson's default of 17 would print
 * 0.10000000000000001. Integers are exact either way.
 */
#define DUMP_FLAGS (JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))

static json_t *not_null(json_t *v)
{
    if (!v) {
        roo_log(ROO_LOG_ERROR, "out of memory building a JSON reply; aborting");
        abort();
    }
    return v;
}

json_t *roo__json_object(void)
{
    return not_null(json_object());
}

json_t *roo__json_array(void)
{
    return not_null(json_array());
}

json_t *roo__json_str(const char *s)
{
    return roo__json_strn(s ? s : "", s ? strlen(s) : 0);
}

json_t *roo__json_strn(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);

    /* NULL: not UTF-8 (or out of memory, which roo__json_key finds out). */
    return v ? v : roo__json_key((const uint8_t *)s, n);
}

json_t *roo__json_u64(uint64_t v)
{
    /* json_int_t is signed: counters never come near 2^63, and are never shown negative. */
    return not_null(json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v));
}

void roo__json_set(json_t *obj, const char *name, json_t *v)
{
    if (json_object_set_new(obj, name, v) < 0)
        not_null(NULL);
}

void roo__json_push(json_t *arr, json_t *v)
{
    if (json_array_append_new(arr, v) < 0)
        not_null(NULL);
}

void roo__json_extend(json_t *arr, json_t *from)
{
    if (json_array_extend(arr, from) < 0)
        not_null(NULL);
}

size_t roo__json_set_key(json_t *obj, const uint8_t *key, size_t n, json_t *v, roo__buf *scratch)
{
    scratch->len = 0;
    roo__buf_append_key_text(scratch, key, n);
    /* Valid UTF-8 by construction: no need for jansson to check it again. */
    if (json_object_setn_new_nocheck(obj, scratch->len ? (const char *)scratch->data : "",
                                     scratch->len, v) < 0)
        not_null(NULL);
    return roo__json_string_size((const char *)scratch->data, scratch->len);
}

json_t *roo__json_key(const uint8_t *key, size_t n)
{
    roo__buf text = { 0 };
    json_t *v;

    roo__buf_append_key_text(&text, key, n);
    v = not_null(json_stringn_nocheck(text.len ? (const char *)text.data : "", text.len));
    roo__buf_finish(&text);
    return v;
}

size_t roo__json_size(const json_t *v)
{
    return json_dumpb(v, NULL, 0, DUMP_FLAGS);
}

size_t roo__json_string_size(const char *s, size_t n)
{
    size_t size = 2;

    /* As jansson's dump_string escapes without JSON_ENSURE_ASCII: '"', '\\', controls. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            size += 2;
        else if (c < 0x20)
            size += 6;
        else
            size += 1;
    }
    return size;
}

static int append_cb(const char *s, size_t n, void *data)
{
    roo__buf_append(data, s, n);
    return 0;
}

static void dump(roo__buf *b, const json_t *v)
{
    if (json_dump_callback(v, append_cb, b, DUMP_FLAGS) < 0)
        not_null(NULL); /* the only failure left once appends cannot fail */
}

/* A member's name, quoted and escaped as jansson does. */
static void dump_name(roo__buf *b, const char *name, size_t n)
{
    json_t *s = not_null(json_stringn_nocheck(name, n));

    dump(b, s);
    json_decref(s);
}

static bool expanded(const char *name, const char *const *expand)
{
    for (size_t i = 0; expand && expand[i]; i++)
        if (strcmp(expand[i], name) == 0)
            return true;
    return false;
}

void roo__json_members_add(roo__buf *members, const char *name, size_t n, const json_t *v)
{
    roo__buf_append(members, members->len ? ",\n    " : "\n    ", members->len ? 6 : 5);
    dump_name(members, name, n);
    roo__buf_append(members, ": ", 2);
    dump(members, v);
}

/* An expanded member's value: its elements (or members) one per line, four spaces in. */
static void dump_expanded(roo__buf *b, const json_t *v)
{
    roo__buf lines = { 0 };

    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            roo__buf_append(&lines, i ? ",\n    " : "\n    ", i ? 6 : 5);
            dump(&lines, json_array_get(v, i));
        }
    } else {
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it))
            roo__json_members_add(&lines, json_object_iter_key(it), json_object_iter_key_len(it),
                                  json_object_iter_value(it));
    }
    roo__buf_append(b, json_is_array(v) ? "[" : "{", 1);
    roo__buf_append(b, lines.data, lines.len);
    if (lines.len)
        roo__buf_append(b, "\n  ", 3);
    roo__buf_append(b, json_is_array(v) ? "]" : "}", 1);
    roo__buf_finish(&lines);
}

/* Root's members, one per line, two spaces in, without the braces; how many there were. */
static size_t dump_members(roo__buf *b, const json_t *root, const char *const *expand)
{
    size_t i = 0;

    for (void *it = json_object_iter((json_t *)root); it;
         it = json_object_iter_next((json_t *)root, it), i++) {
        const char *name = json_object_iter_key(it);
        const json_t *v = json_object_iter_value(it);
        roo__buf_append(b, i ? ",\n  " : "\n  ", i ? 4 : 3);
        dump_name(b, name, json_object_iter_key_len(it));
        roo__buf_append(b, ": ", 2);
        if ((json_is_object(v) || json_is_array(v)) && expanded(name, expand))
            dump_expanded(b, v);
        else
            dump(b, v);
    }
    return i;
}

char *roo__json_text(const json_t *root, const char *const *expand)
{
    roo__buf b = { 0 };
    size_t n;

    if (!json_is_object(root)) {
        dump(&b, root);
        roo__buf_append(&b, "\n", 2); /* with the terminator */
        return (char *)b.data;
    }
    roo__buf_append(&b, "{", 1);
    n = dump_members(&b, root, expand);
    roo__buf_append(&b, n ? "\n}\n" : "}\n", n ? 4 : 3);
    return (char *)b.data;
}

char *roo__json_text_last(const json_t *root, const char *const *expand, const char *name,
                          const roo__buf *members)
{
    roo__buf b = { 0 };
    size_t n;

    roo__buf_append(&b, "{", 1);
    n = dump_members(&b, root, expand);
    roo__buf_append(&b, n ? ",\n  " : "\n  ", n ? 4 : 3);
    dump_name(&b, name, strlen(name));
    roo__buf_append(&b, ": {", 3);
    roo__buf_append(&b, members->data, members->len);
    roo__buf_append(&b, members->len ? "\n  }\n}\n" : "}\n}\n", members->len ? 8 : 5);
    return (char *)b.data;
}

char *roo__json_line(const json_t *v)
{
    roo__buf b = { 0 };

    dump(&b, v);
    roo__buf_append(&b, "", 1);
    return (char *)b.data;
}
