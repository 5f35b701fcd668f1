/* test_hist.c: latency histograms put values in the bins hist.h draws, merge exactly and
 * give quantiles as Prometheus's histogram_quantile() would from the same buckets. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/hist.h"
#include "roo_test.h"

START_TEST(bounds_are_two_per_octave_from_one_microsecond)
{
    ck_assert_uint_eq(roo__hist_bound_ns(0), 1000);
    ck_assert_uint_eq(roo__hist_bound_ns(1), 1414);
    ck_assert_uint_eq(roo__hist_bound_ns(2), 2000);
    ck_assert_uint_eq(roo__hist_bound_ns(20), 1024000);
    ck_assert_uint_eq(roo__hist_bound_ns(52), 67108864000ull);
    ck_assert_uint_eq(roo__hist_bound_ns(ROO__HIST_BINS - 1), UINT64_MAX);
    for (unsigned i = 1; i < ROO__HIST_BINS - 1; i++) {
        double r = (double)roo__hist_bound_ns(i) / (double)roo__hist_bound_ns(i - 1);
        ck_assert_msg(fabs(r - M_SQRT2) < 0.001, "bin %u: ratio %f", i, r);
    }
}
END_TEST

START_TEST(a_value_goes_in_the_first_bin_whose_bound_holds_it)
{
    ck_assert_uint_eq(roo__hist_bin(-5), 0);
    ck_assert_uint_eq(roo__hist_bin(0), 0);
    ck_assert_uint_eq(roo__hist_bin(1000), 0);
    ck_assert_uint_eq(roo__hist_bin(1001), 1);
    ck_assert_uint_eq(roo__hist_bin(1414), 1);
    ck_assert_uint_eq(roo__hist_bin(1415), 2);
    ck_assert_uint_eq(roo__hist_bin(1024000), 20);
    ck_assert_uint_eq(roo__hist_bin(67108864000ll), 52);
    ck_assert_uint_eq(roo__hist_bin(67108864001ll), ROO__HIST_BINS - 1);
    ck_assert_uint_eq(roo__hist_bin(INT64_MAX), ROO__HIST_BINS - 1);
    for (unsigned i = 0; i < ROO__HIST_BINS - 1; i++) {
        ck_assert_uint_eq(roo__hist_bin((int64_t)roo__hist_bound_ns(i)), i);
        ck_assert_uint_eq(roo__hist_bin((int64_t)roo__hist_bound_ns(i) + 1), i + 1);
    }
}
END_TEST

START_TEST(weights_count_in_bins_count_and_sum)
{
    static roo__hist h;
    roo__hist_counts c = { 0 };

    roo__hist_add(&h, 500, 3);  /* bin 0 */
    roo__hist_add(&h, 1500, 2); /* bin 2 */
    roo__hist_add(&h, -20, 1);  /* a clock step back counts as 0 */
    roo__hist_merge(&h, &c);
    ck_assert_uint_eq(c.bins[0], 4);
    ck_assert_uint_eq(c.bins[2], 2);
    ck_assert_uint_eq(c.count, 6);
    ck_assert_uint_eq(c.sum_ns, 500 * 3 + 1500 * 2);
    roo__hist_merge(&h, &c); /* merging adds */
    ck_assert_uint_eq(c.bins[0], 8);
    ck_assert_uint_eq(c.count, 12);
}
END_TEST

START_TEST(quantiles_interpolate_inside_the_bin_like_histogram_quantile)
{
    roo__hist_counts c = { 0 };

    ck_assert(roo__hist_quantile(&c, 0.5) == 0);
    /* 100 samples in (1 ms, 1.414 ms]: bin 21 is (1.024 ms, 1.448 ms]. */
    c.bins[21] = 100;
    {
        double lo = 1024000e-9, hi = (double)roo__hist_bound_ns(21) / 1e9;
        ck_assert(fabs(roo__hist_quantile(&c, 0.5) - (lo + (hi - lo) * 0.5)) < 1e-12);
        ck_assert(fabs(roo__hist_quantile(&c, 1.0) - hi) < 1e-12);
    }
    /* 99 fast and one slow sample: p99 stays with the fast, p99.9 goes to the slow one. */
    memset(&c, 0, sizeof(c));
    c.bins[4] = 99; /* (2.8 us, 4 us] */
    c.bins[30] = 1; /* (23 ms, 32.8 ms] */
    ck_assert(roo__hist_quantile(&c, 0.99) <= 4e-6);
    ck_assert(roo__hist_quantile(&c, 0.999) > 23e-3);
    ck_assert(roo__hist_quantile(&c, 0.999) <= 32.8e-3);
    /* The open last bin answers its lower bound. */
    memset(&c, 0, sizeof(c));
    c.bins[ROO__HIST_BINS - 1] = 5;
    ck_assert(fabs(roo__hist_quantile(&c, 0.5) - 67.108864) < 1e-9);
}
END_TEST

/* One writer, one reader at once: the reader never sees more than was written, and once
 * the writer is done it sees exactly that (TSan checks the accesses). */
static roo__hist shared;
static void *writer_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200000; i++)
        roo__hist_add(&shared, (i % 50) * 1000, 1);
    return NULL;
}

START_TEST(a_reader_merges_while_the_owner_writes)
{
    pthread_t th;
    roo__hist_counts c;

    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, NULL), 0);
    for (int k = 0; k < 1000; k++) {
        memset(&c, 0, sizeof(c));
        roo__hist_merge(&shared, &c);
        ck_assert_uint_le(c.count, 200000);
    }
    pthread_join(th, NULL);
    memset(&c, 0, sizeof(c));
    roo__hist_merge(&shared, &c);
    ck_assert_uint_eq(c.count, 200000);
    {
        uint64_t total = 0;
        for (unsigned i = 0; i < ROO__HIST_BINS; i++)
            total += c.bins[i];
        ck_assert_uint_eq(total, 200000);
    }
}
END_TEST

static Suite *hist_suite(void)
{
    Suite *s = suite_create("hist");
    TCase *tc = roo_test_tcase("hist", 30);

    tcase_add_test(tc, bounds_are_two_per_octave_from_one_microsecond);
    tcase_add_test(tc, a_value_goes_in_the_first_bin_whose_bound_holds_it);
    tcase_add_test(tc, weights_count_in_bins_count_and_sum);
    tcase_add_test(tc, quantiles_interpolate_inside_the_bin_like_histogram_quantile);
    tcase_add_test(tc, a_reader_merges_while_the_owner_writes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(hist_suite());
}
