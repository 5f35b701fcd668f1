/* prom.h: the pieces of Prometheus's text exposition format (0.0.4) that the renderers
 * share: a family's # HELP and # TYPE, a sample labelled worker= first, escaped label
 * values, a histogram from roo__hist_counts. Internal to src/metrics; pure. */
#ifndef ROO_METRICS_PROM_H
#define ROO_METRICS_PROM_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/hist.h"

static inline void roo__prom_appendf(roo__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline void roo__prom_appendf(roo__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf((char *)roo__buf_reserve(b, 128), 128, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= 128) {
        va_start(ap, fmt);
        vsnprintf((char *)roo__buf_reserve(b, (size_t)n + 1), (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* A label value: backslash, double quote and line feed escaped, as the format requires. */
static inline void roo__prom_label_value(roo__buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            roo__buf_append(b, (const char[]){ '\\', *v }, 2);
        else if (*v == '\n')
            roo__buf_append(b, "\\n", 2);
        else
            roo__buf_append(b, v, 1);
    }
}

/* The # HELP and # TYPE lines of a family (help text is ours: nothing to escape). */
static inline void roo__prom_family(roo__buf *b, const char *name, const char *type,
                                    const char *help)
{
    roo__prom_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * One sample: name{worker="...",k1="v1",...} value. The label pairs after worker come in
 * `labels`, NULL-terminated (key, value, key, value, ..., NULL), or NULL for none.
 */
static inline void roo__prom_sample(roo__buf *b, const char *worker, const char *name,
                                    const char *const *labels, const char *value)
{
    roo__prom_appendf(b, "%s{worker=\"", name);
    roo__prom_label_value(b, worker);
    roo__buf_append(b, "\"", 1);
    for (; labels && labels[0]; labels += 2) {
        roo__prom_appendf(b, ",%s=\"", labels[0]);
        roo__prom_label_value(b, labels[1]);
        roo__buf_append(b, "\"", 1);
    }
    roo__prom_appendf(b, "} %s\n", value);
}

static inline void roo__prom_sample_u64(roo__buf *b, const char *worker, const char *name,
                                        const char *const *labels, uint64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%" PRIu64, v);
    roo__prom_sample(b, worker, name, labels, num);
}

/*
 * A histogram series in seconds: cumulative _bucket lines, one per bin bound of hist.h
 * (le as "%.9g" of the bound in seconds, as render.c writes them, so that the two agree)
 * and +Inf, then _sum and _count. _count is the +Inf bucket, not c->count: a reader may see
 * the two a sample apart (hist.h), and Prometheus wants them equal. labels as for
 * roo__prom_sample(), at most 4 pairs.
 */
static inline void roo__prom_histogram(roo__buf *b, const char *worker, const char *name,
                                       const char *const *labels, const roo__hist_counts *c)
{
    const char *with_le[2 * 5 + 1];
    char series[128], le[32], num[32];
    size_t n = 0;
    uint64_t cum = 0;

    for (; labels && labels[n] && n < 8; n += 2) {
        with_le[n] = labels[n];
        with_le[n + 1] = labels[n + 1];
    }
    with_le[n] = "le";
    with_le[n + 1] = le;
    with_le[n + 2] = NULL;
    snprintf(series, sizeof(series), "%s_bucket", name);
    for (unsigned i = 0; i < ROO__HIST_BINS; i++) {
        cum += c->bins[i];
        if (i < ROO__HIST_BINS - 1)
            snprintf(le, sizeof(le), "%.9g", (double)roo__hist_bound_ns(i) / 1e9);
        else
            snprintf(le, sizeof(le), "+Inf");
        roo__prom_sample_u64(b, worker, series, with_le, cum);
    }
    with_le[n] = NULL;
    snprintf(series, sizeof(series), "%s_sum", name);
    snprintf(num, sizeof(num), "%.9f", (double)c->sum_ns / 1e9);
    roo__prom_sample(b, worker, series, with_le, num);
    snprintf(series, sizeof(series), "%s_count", name);
    roo__prom_sample_u64(b, worker, series, with_le, cum);
}

#endif /* ROO_METRICS_PROM_H */
