/* json.h: JSON through libjansson for roo-ctl's channel (cluster/external.c) and roo-ctl:
 * constructors that follow roo's out-of-memory policy, keys of any bytes as member names,
 * and the one layout every reply is printed in.
 *
 * Values built here are ordinary jansson values: release them with json_decref(). Objects
 * keep their members in insertion order, which is the order they are printed in.
 */
#ifndef ROO_JSON_H
#define ROO_JSON_H

#include <jansson.h>

#include "common/buf.h"

/*
 * Never NULL: for these, jansson returns NULL only when out of memory, and roo then aborts
 * (common.h). roo__json_str[n] takes text from outside (a worker's name, an address): text
 * that is not UTF-8, which jansson refuses, goes through roo__buf_append_key_text's scheme.
 */
json_t *roo__json_object(void);
json_t *roo__json_array(void);
json_t *roo__json_str(const char *s);
json_t *roo__json_strn(const char *s, size_t n);
json_t *roo__json_u64(uint64_t v);

/* obj[name] = v and append v to arr; both take over the caller's reference to v. */
void roo__json_set(json_t *obj, const char *name, json_t *v);
void roo__json_push(json_t *arr, json_t *v);

/* Every element of from at the end of arr, shared (references). */
void roo__json_extend(json_t *arr, json_t *from);

/*
 * obj[key] = v, the member's name being the key's bytes as roo__buf_append_key_text writes
 * them (valid UTF-8, so any bytes can be a name). Takes over the reference to v; scratch is
 * the caller's buffer for the name, reused from call to call. Returns the bytes the member
 * will take when printed, name quoted and escaped, without its value: what a page of a
 * query counts against its size.
 */
size_t roo__json_set_key(json_t *obj, const uint8_t *key, size_t n, json_t *v, roo__buf *scratch);

/* A key's bytes as a JSON string (roo__buf_append_key_text's scheme). Never NULL. */
json_t *roo__json_key(const uint8_t *key, size_t n);

/* The bytes v takes on one line (as roo__json_line prints it). */
size_t roo__json_size(const json_t *v);

/* The bytes jansson prints for the UTF-8 string s[0..n), quotes and escapes included. */
size_t roo__json_string_size(const char *s, size_t n);

/*
 * Every reply in roo's layout, as text that ends with a newline: the members of root (an
 * object) one per line, two spaces in; the members named in expand (a NULL-terminated
 * list, or NULL), if an object or an array, with one element per line, four spaces in;
 * every other value on one line. Today's greps and eyes both read it:
 *
 *   {
 *     "worker": "w1",
 *     "values": {
 *       "café": 2,
 *       "naïve": {"n": 1, "last": [3, 4]}
 *     }
 *   }
 *
 * malloc'ed: free() it.
 */
char *roo__json_text(const json_t *root, const char *const *expand);

/*
 * For a document too big to hold as jansson values (roo-ctl's merged query, pages of many
 * workers): add `"name": v` to members, the printed members of an expanded object, one per
 * line as roo__json_text puts them; then roo__json_text_last prints root with them as its
 * last member, named name. Its text is root's by roo__json_text with that member added.
 */
void roo__json_members_add(roo__buf *members, const char *name, size_t n, const json_t *v);
char *roo__json_text_last(const json_t *root, const char *const *expand, const char *name,
                          const roo__buf *members);

/* v on one line, without a newline (a table's cell). malloc'ed: free() it. */
char *roo__json_line(const json_t *v);

#endif /* ROO_JSON_H */
