/* hist.c: the bins of a latency histogram, merging and quantiles (see hist.h). */
#include "common/hist.h"

/* bound(i) = 1 us * 2^(i/2), rounded to the nanosecond; the last bin has none. */
static const uint64_t bounds[ROO__HIST_BINS - 1] = {
    1000ull,        1414ull,        2000ull,        2828ull,        4000ull,        5657ull,
    8000ull,        11314ull,       16000ull,       22627ull,       32000ull,       45255ull,
    64000ull,       90510ull,       128000ull,      181019ull,      256000ull,      362039ull,
    512000ull,      724077ull,      1024000ull,     1448155ull,     2048000ull,     2896309ull,
    4096000ull,     5792619ull,     8192000ull,     11585238ull,    16384000ull,    23170475ull,
    32768000ull,    46340950ull,    65536000ull,    92681900ull,    131072000ull,   185363800ull,
    262144000ull,   370727600ull,   524288000ull,   741455200ull,   1048576000ull,  1482910400ull,
    2097152000ull,  2965820801ull,  4194304000ull,  5931641602ull,  8388608000ull,  11863283203ull,
    16777216000ull, 23726566406ull, 33554432000ull, 47453132812ull, 67108864000ull,
};

uint64_t roo__hist_bound_ns(unsigned i)
{
    return i < ROO__HIST_BINS - 1 ? bounds[i] : UINT64_MAX;
}

unsigned roo__hist_bin(int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    unsigned lo = 0, hi = ROO__HIST_BINS - 1; /* the first bound >= v, or the last bin */

    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void roo__hist_merge(const roo__hist *h, roo__hist_counts *acc)
{
    for (unsigned i = 0; i < ROO__HIST_BINS; i++)
        acc->bins[i] += atomic_load_explicit(&h->bins[i], memory_order_relaxed);
    acc->count += atomic_load_explicit(&h->count, memory_order_relaxed);
    acc->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

void roo__hist_counts_add(roo__hist_counts *acc, const roo__hist_counts *b)
{
    for (unsigned i = 0; i < ROO__HIST_BINS; i++)
        acc->bins[i] += b->bins[i];
    acc->count += b->count;
    acc->sum_ns += b->sum_ns;
}

double roo__hist_quantile(const roo__hist_counts *c, double q)
{
    uint64_t total = 0, seen = 0;
    double rank;

    /* The bins, not count: a reader may see them a sample apart. */
    for (unsigned i = 0; i < ROO__HIST_BINS; i++)
        total += c->bins[i];
    if (total == 0)
        return 0;
    if (q > 1)
        q = 1;
    rank = q * (double)total;
    for (unsigned i = 0; i < ROO__HIST_BINS; i++) {
        double lo, hi;

        if (c->bins[i] == 0 || (double)(seen + c->bins[i]) < rank) {
            seen += c->bins[i];
            continue;
        }
        lo = i ? (double)bounds[i - 1] : 0;
        /* The last bin has no upper bound: its lower one is the best answer. */
        hi = i < ROO__HIST_BINS - 1 ? (double)bounds[i] : lo;
        return (lo + (hi - lo) * ((rank - (double)seen) / (double)c->bins[i])) / 1e9;
    }
    return (double)bounds[ROO__HIST_BINS - 2] / 1e9;
}
