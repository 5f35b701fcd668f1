/* roo-ctl.h: what roo-ctl's commands (roo-ctl.c), its query (roo-ctl-query.c), its tables
 * (roo-ctl-table.c) and its live view and scrape targets (roo-ctl-top.c) share. */
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
 * none), then a blank line and a second table of how each worker that answered is doing
 * (version, uptime, rates, latency quantiles, sinks, held and undelivered bytes, metrics
 * address) in units people read. The partition table ("owners") and the latency bins are
 * left out: they are for roo-ctl itself.
 */
void ctl_print_status_table(const json_t *status, FILE *out);

/* Cells of a table, row after row, each a malloc'ed string; cols set by the caller. */
typedef struct ctl_table {
    char **cells;
    size_t cols;
    size_t n;
    size_t cap;
} ctl_table;

/* Append a cell (the table takes it over). */
void ctl_table_add(ctl_table *t, char *cell);
/* Every column as wide as its widest cell; frees the cells and empties the table. */
void ctl_table_print(ctl_table *t, FILE *out);

/* Figures in units that fit a column, written into buf (returned): "12.3 MiB", "1.25ms"
 * ("-" for 0: no samples), "3h04m", "12.3k". */
const char *ctl_human_bytes(uint64_t n, char *buf, size_t cap);
const char *ctl_human_latency(double seconds, char *buf, size_t cap);
const char *ctl_human_uptime(double seconds, char *buf, size_t cap);
const char *ctl_human_rate(double per_second, char *buf, size_t cap);

/*
 * roo-ctl top: the status every interval_s seconds as one row per worker, until count
 * refreshes (0: until SIGINT). Returns the exit status (0; 1 if no worker ever answered).
 */
int ctl_top(const targets *t, uint64_t interval_s, uint64_t count);

/*
 * roo-ctl targets: Prometheus file_sd JSON for every worker's --metrics address, each with
 * the labels worker, cluster and application, then labels[] ("K=V", checked by the caller),
 * which may replace them. Returns the exit status.
 */
int ctl_targets(const targets *t, char *const *labels, size_t nlabels);

/* A Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved). */
bool ctl_label_name_ok(const char *name, size_t n);

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
