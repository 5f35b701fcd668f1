/* roo-ctl-table.c: roo-ctl --format table: the workers' JSON answers as aligned columns for
 * people to read (scripts keep the default, JSON). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roo-ctl.h"

typedef ctl_table table;

static void add(table *t, char *cell)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->cells = roo__xrealloc(t->cells, t->cap * sizeof(*t->cells));
    }
    t->cells[t->n++] = cell;
}

/* Columns line up on characters, not bytes: "café" is four wide. */
static size_t width(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

/* Every column as wide as its widest cell, two spaces apart; no spaces end a line. */
static void print_table(table *t, FILE *out)
{
    size_t *w = roo__xcalloc(t->cols, sizeof(*w));

    for (size_t i = 0; i < t->n; i++)
        w[i % t->cols] = ROO__MAX(w[i % t->cols], width(t->cells[i]));
    for (size_t i = 0; i < t->n; i++) {
        size_t col = i % t->cols;
        fputs(t->cells[i], out);
        if (col + 1 == t->cols)
            fputc('\n', out);
        else
            fprintf(out, "%*s", (int)(w[col] - width(t->cells[i]) + 2), "");
    }
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
}

void ctl_table_add(ctl_table *t, char *cell)
{
    add(t, cell);
}

void ctl_table_print(ctl_table *t, FILE *out)
{
    print_table(t, out);
    t->cells = NULL;
    t->n = t->cap = 0;
}

/* A value as a cell: text as it is, yes/no, "-" for nothing, anything else as JSON. */
static char *cell(const json_t *v)
{
    if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v)))
        return roo__xstrdup("-");
    if (json_is_string(v))
        return roo__xstrdup(json_string_value(v));
    if (json_is_boolean(v))
        return roo__xstrdup(json_is_true(v) ? "yes" : "no");
    return roo__json_line(v);
}

static char *upper(const char *s)
{
    char *u = roo__xstrdup(s);

    for (char *p = u; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return u;
}

static bool listed(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* The members of doc as NAME VALUE lines, but the nskip named in skip. */
static void print_members(const json_t *doc, const char *const *skip, size_t nskip, FILE *out)
{
    table t = { .cols = 2 };

    for (void *it = json_object_iter((json_t *)doc); it;
         it = json_object_iter_next((json_t *)doc, it)) {
        if (listed(skip, nskip, json_object_iter_key(it)))
            continue;
        add(&t, roo__xstrdup(json_object_iter_key(it)));
        add(&t, cell(json_object_iter_value(it)));
    }
    print_table(&t, out);
}

void ctl_print_members_table(const json_t *doc, FILE *out)
{
    if (!json_is_object(doc)) {
        char *c = cell(doc);
        fprintf(out, "%s\n", c);
        free(c);
        return;
    }
    print_members(doc, NULL, 0, out);
}

/* ---- figures for people: units that fit a column ---- */

const char *ctl_human_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
        return buf;
    }
    for (v /= 1024; v >= 1023.95 && u + 1 < ROO__ARRAY_SIZE(units); u++)
        v /= 1024;
    snprintf(buf, cap, v < 9.995 ? "%.2f %s" : v < 99.95 ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

const char *ctl_human_latency(double s, char *buf, size_t cap)
{
    if (!(s > 0))
        snprintf(buf, cap, "-");
    else if (s < 999.5e-6)
        snprintf(buf, cap, "%.0fus", s * 1e6);
    else if (s < 9.995e-3)
        snprintf(buf, cap, "%.2fms", s * 1e3);
    else if (s < 999.5e-3)
        snprintf(buf, cap, "%.0fms", s * 1e3);
    else
        snprintf(buf, cap, "%.2fs", s);
    return buf;
}

const char *ctl_human_uptime(double s, char *buf, size_t cap)
{
    uint64_t t = s > 0 ? (uint64_t)s : 0;

    if (t < 60)
        snprintf(buf, cap, "%llus", (unsigned long long)t);
    else if (t < 3600)
        snprintf(buf, cap, "%llum%02llus", (unsigned long long)(t / 60),
                 (unsigned long long)(t % 60));
    else if (t < 86400)
        snprintf(buf, cap, "%lluh%02llum", (unsigned long long)(t / 3600),
                 (unsigned long long)(t / 60 % 60));
    else
        snprintf(buf, cap, "%llud%02lluh", (unsigned long long)(t / 86400),
                 (unsigned long long)(t / 3600 % 24));
    return buf;
}

const char *ctl_human_rate(double r, char *buf, size_t cap)
{
    if (!(r > 0))
        snprintf(buf, cap, "0");
    else if (r < 9.95)
        snprintf(buf, cap, "%.1f", r);
    else if (r < 99999.5)
        snprintf(buf, cap, "%.0f", r);
    else if (r < 9999.95e3)
        snprintf(buf, cap, "%.1fk", r / 1e3);
    else
        snprintf(buf, cap, "%.1fM", r / 1e6);
    return buf;
}

static double num(const json_t *w, const char *name)
{
    return json_number_value(json_object_get(w, name));
}

/*
 * What the status says about each worker's health, in units people read (the first table
 * has the raw counters): one row per worker, at most about 120 columns wide.
 */
static void print_health(const json_t *workers, FILE *out)
{
    static const char *const head[] = { "NAME", "VERSION", "UPTIME", "IN/S",        "OUT/S",  "P50",
                                        "P99",  "SINKS",   "HELD",   "UNDELIVERED", "METRICS" };
    table t = { .cols = ROO__ARRAY_SIZE(head) };
    bool any = false;

    for (size_t k = 0; k < ROO__ARRAY_SIZE(head); k++)
        add(&t, roo__xstrdup(head[k]));
    for (size_t i = 0; i < json_array_size(workers); i++) {
        const json_t *w = json_array_get(workers, i);
        bool samples = num(w, "latency_count") > 0;
        char b[64];

        if (!json_object_get(w, "version"))
            continue; /* it did not answer, or runs a roo from before these figures */
        any = true;
        add(&t, cell(json_object_get(w, "name")));
        add(&t, cell(json_object_get(w, "version")));
        add(&t, roo__xstrdup(ctl_human_uptime(num(w, "uptime_seconds"), b, sizeof(b))));
        add(&t, roo__xstrdup(ctl_human_rate(num(w, "frames_in_per_second"), b, sizeof(b))));
        add(&t, roo__xstrdup(ctl_human_rate(num(w, "records_out_per_second"), b, sizeof(b))));
        add(&t, roo__xstrdup(
                    ctl_human_latency(samples ? num(w, "latency_p50_seconds") : 0, b, sizeof(b))));
        add(&t, roo__xstrdup(
                    ctl_human_latency(samples ? num(w, "latency_p99_seconds") : 0, b, sizeof(b))));
        snprintf(b, sizeof(b), "%.0f/%.0f", num(w, "sinks_connected"), num(w, "sinks"));
        add(&t, roo__xstrdup(b));
        add(&t, roo__xstrdup(ctl_human_bytes((uint64_t)num(w, "held_bytes"), b, sizeof(b))));
        add(&t, roo__xstrdup(ctl_human_bytes((uint64_t)num(w, "undelivered_bytes"), b, sizeof(b))));
        add(&t, cell(json_object_get(w, "metrics")));
    }
    if (!any) {
        for (size_t k = 0; k < t.n; k++)
            free(t.cells[k]);
        free(t.cells);
        return;
    }
    fputc('\n', out);
    print_table(&t, out);
}

void ctl_print_status_table(const json_t *status, FILE *out)
{
    static const char *const skip[] = { "workers", "owners" };
    static const char *const first[] = { "name",    "index",   "reachable", "ready",   "partitions",
                                         "threads", "control", "data",      "external" };
    /* Shown by print_health in their units, or too long for a cell (latency_bins). */
    static const char *const health[] = {
        "version",
        "uptime_seconds",
        "metrics",
        "frames_in_per_second",
        "records_out_per_second",
        "sinks_connected",
        "sinks",
        "held_bytes",
        "undelivered_bytes",
        "latency_p50_seconds",
        "latency_p99_seconds",
        "latency_bins",
    };
    const json_t *workers = json_object_get(status, "workers");
    size_t nw = json_array_size(workers), ncols = 0, cap = ROO__ARRAY_SIZE(first);
    const char **cols; /* borrowed from first and from status */
    table t = { 0 };

    print_members(status, skip, ROO__ARRAY_SIZE(skip), out);
    /* The columns: the fixed ones, then each counter the first time a worker has it. */
    for (size_t i = 0; i < nw; i++)
        cap += json_object_size(json_array_get(workers, i));
    cols = roo__xcalloc(cap, sizeof(*cols));
    for (size_t k = 0; k < ROO__ARRAY_SIZE(first); k++)
        cols[ncols++] = first[k];
    for (size_t i = 0; i < nw; i++) {
        json_t *w = json_array_get(workers, i);
        for (void *it = json_object_iter(w); it; it = json_object_iter_next(w, it))
            if (!listed(cols, ncols, json_object_iter_key(it)) &&
                !listed(health, ROO__ARRAY_SIZE(health), json_object_iter_key(it)))
                cols[ncols++] = json_object_iter_key(it);
    }
    t.cols = ncols;
    for (size_t k = 0; k < ncols; k++)
        add(&t, upper(cols[k]));
    for (size_t i = 0; i < nw; i++)
        for (size_t k = 0; k < ncols; k++)
            add(&t, cell(json_object_get(json_array_get(workers, i), cols[k])));
    fputc('\n', out);
    print_table(&t, out);
    free(cols);
    print_health(workers, out);
}

/* A key as it is, unless a reader could not tell where it ends: then as a JSON string. */
static char *key_cell(const char *key, size_t len)
{
    bool plain = len > 0 && key[0] != '"';
    json_t *s;
    char *quoted;

    for (size_t i = 0; i < len && plain; i++)
        plain = (unsigned char)key[i] > ' ' && key[i] != 0x7f;
    if (plain)
        return roo__xstrdup(key);
    s = roo__json_strn(key, len);
    quoted = roo__json_line(s);
    json_decref(s);
    return quoted;
}

void ctl_rows_add(ctl_rows *r, const char *key, size_t len, const json_t *value)
{
    char *k = key_cell(key, len), *v = roo__json_line(value);

    r->key_width = ROO__MAX(r->key_width, width(k));
    roo__buf_append(&r->text, k, strlen(k) + 1);
    roo__buf_append(&r->text, v, strlen(v) + 1);
    r->n++;
    free(k);
    free(v);
}

void ctl_rows_print(ctl_rows *r, FILE *out)
{
    size_t w = ROO__MAX(r->key_width, strlen("KEY"));
    const char *p = (const char *)r->text.data;

    fprintf(out, "KEY%*sVALUE\n", (int)(w - 3 + 2), "");
    for (size_t i = 0; i < r->n; i++) {
        const char *v = p + strlen(p) + 1;
        fprintf(out, "%s%*s%s\n", p, (int)(w - width(p) + 2), "", v);
        p = v + strlen(v) + 1;
    }
    roo__buf_finish(&r->text);
    memset(r, 0, sizeof(*r));
}
