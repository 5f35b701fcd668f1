/* hist.h: latency histograms with log-scale bins, written by one thread without a lock or
 * a read-modify-write instruction, read (merged) by any thread.
 *
 * DESIGN
 *
 * Bins: bin i counts values v with bound(i-1) < v <= bound(i), where bound(i) is
 * 1 us * 2^(i/2) rounded to the nanosecond (two bins per octave, as HdrHistogram with a
 * coarse precision): 1 us, 1.41 us, 2 us, 2.83 us, ... up to bin ROO__HIST_BINS - 2, about
 * 67 s; the last bin holds everything larger. A quantile read from the bins is off by at
 * most one bin, a factor of 1.41.
 *
 *   BIN   UPPER BOUND          BIN   UPPER BOUND
 *   0     1 us                 20    1.024 ms
 *   1     1.414 us             26    8.192 ms
 *   2     2 us                 40    1.049 s
 *   10    32 us                52    67.1 s
 *   14    128 us               53    +Inf
 *
 * Threads: a roo__hist has one writer, the thread that owns it (each processing thread has
 * its own). roo__hist_add() is a relaxed load and a relaxed store per counter, plain moves
 * on x86 and arm64: no lock prefix, no fence, no syscall. Any thread may read one with
 * roo__hist_merge(): each counter is exact as last stored; count, sum and bins are not of
 * one instant, so a reader sees at most the samples in flight off by one.
 */
#ifndef ROO_HIST_H
#define ROO_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define ROO__HIST_BINS 54

typedef struct roo__hist {
    _Atomic uint64_t bins[ROO__HIST_BINS];
    _Atomic uint64_t count;  /* samples, weights included */
    _Atomic uint64_t sum_ns; /* sum of value * weight */
} roo__hist;

/* A plain copy (any thread), merged from one or more histograms. */
typedef struct roo__hist_counts {
    uint64_t bins[ROO__HIST_BINS];
    uint64_t count;
    uint64_t sum_ns;
} roo__hist_counts;

/* The upper bound of bin i in nanoseconds (UINT64_MAX for the last). Pure. */
uint64_t roo__hist_bound_ns(unsigned i);

/* The bin of a value in nanoseconds (negative values count as 0). Pure. */
unsigned roo__hist_bin(int64_t ns);

/* The owning thread only: count `weight` samples of value ns. */
static inline void roo__hist_add(roo__hist *h, int64_t ns, uint64_t weight)
{
    unsigned i = roo__hist_bin(ns);
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;

#define ROO__HIST_BUMP(f, d)                                                                       \
    atomic_store_explicit(&(f), atomic_load_explicit(&(f), memory_order_relaxed) + (d),            \
                          memory_order_relaxed)
    ROO__HIST_BUMP(h->bins[i], weight);
    ROO__HIST_BUMP(h->count, weight);
    ROO__HIST_BUMP(h->sum_ns, v * weight);
#undef ROO__HIST_BUMP
}

/* Any thread: add h's counters to *acc. */
void roo__hist_merge(const roo__hist *h, roo__hist_counts *acc);

/* Add b's counters to *acc (pure). */
void roo__hist_counts_add(roo__hist_counts *acc, const roo__hist_counts *b);

/*
 * The q-quantile (0 < q <= 1) of the counts in seconds, interpolated linearly inside its
 * bin as Prometheus's histogram_quantile() does; 0 with no samples. Pure.
 */
double roo__hist_quantile(const roo__hist_counts *c, double q);

#endif /* ROO_HIST_H */
