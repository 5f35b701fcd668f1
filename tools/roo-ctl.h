/* roo-ctl.h: what roo-ctl's commands (roo-ctl.c), its query (roo-ctl-query.c) and its tables
 * (roo-ctl-table.c) share. */
#ifndef ROO_CTL_H
#define ROO_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/json.h"
#include "net/net.h"
#include "wire/wire.h"

/* --format: JSON as the workers write it (the default, for scripts), or tables to read. */
typedef enum ctl_format {
    CTL_JSON,
    CTL_TABLE,
} ctl_format;

/* The workers to ask, from --external, in order. */
typedef struct targets {
    roo__addr *addrs;
    size_t n;
    uint64_t timeout_s;
} targets;

/* Monotonic milliseconds: every deadline. */
int64_t ctl_now_ms(void);

/* "host:port", in a static buffer (one at a time). */
const char *ctl_addr_text(const roo__addr *a);

/*
 * One request, one reply, by deadline. A negative result means no answer (could not
 * connect, the connection broke, timed out); a worker's "no" is *ret_ok false with
 * *ret_error. *ret_json and *ret_error are malloc'ed: free them.
 */
int ctl_request(const roo__addr *a, const roo__ext_request *req, int64_t deadline, bool *ret_ok,
                char **ret_json, char **ret_error);

/*
 * Ask the targets in turn until one answers; *ret_who says which. Each address that could
 * not be reached is reported on stderr only if none answers (and not at all if quiet).
 */
int ctl_ask_any(const targets *t, const roo__ext_request *req, int64_t deadline, bool quiet,
                bool *ret_ok, char **ret_json, char **ret_error, size_t *ret_who);

/* An answer's JSON, parsed (release it with json_decref); not JSON: a line naming who. */
int ctl_parse_answer(const char *text, const char *who, json_t **ret_doc);

/*
 * roo-ctl query: every key, or the keys of req, printed as format says. Returns the exit
 * status: 0, or 1 when keys could not be read (each reason on stderr).
 */
int ctl_query(const targets *t, const roo__ext_request *req, ctl_format format);

/*
 * A status as a table: the cluster's members as NAME VALUE lines, a blank line, then one
 * row per worker under a header (name, index, reachable, ready, partitions, threads, the
 * three addresses, then every counter its JSON has, in its order; "-" where a worker has
 * none). The partition table ("owners") is left out: it is for roo-ctl itself.
 */
void ctl_print_status_table(const json_t *status, FILE *out);

/*
 * A query's values as two columns, KEY and VALUE (the value as JSON on one line), gathered
 * page by page: a whole state may be far too big to hold as jansson values. A key that a
 * reader could not tell the end of (empty, spaces, control characters) shows as a JSON
 * string. ctl_rows_print prints them and empties r.
 */
typedef struct ctl_rows {
    roo__buf text; /* for each row, the key's cell and the value, each ending with a 0 */
    size_t n;
    size_t key_width;
} ctl_rows;

void ctl_rows_add(ctl_rows *r, const char *key, size_t len, const json_t *value);
void ctl_rows_print(ctl_rows *r, FILE *out);

/* Any other answer (shutdown, shrink) as NAME VALUE lines, one per member. */
void ctl_print_members_table(const json_t *doc, FILE *out);

#endif /* ROO_CTL_H */
