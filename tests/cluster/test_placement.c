/* test_placement.c: partition ownership (formation, rebalance) and route tables: every grow
 * and shrink between 1 and 8 workers ends balanced with the fewest partitions moved, and
 * every worker's table sends each partition to its owner's thread. */
#include <errno.h>
#include <stdlib.h>

#include "cluster/placement.h"
#include "common/common.h"
#include "roo_test.h"

#define MAXW 16

static const uint32_t partition_counts[] = { 1, 7, 8, 64, 256, 1000 };

/* The fewest partitions any balanced table of the live workers can move, computed on its
 * own: each live worker keeps at most its share (q or q + 1; r of them get q + 1), and the
 * most it can keep is sum(min(c, q)) plus one for each of r workers that own more than q. */
static uint32_t fewest_moves(const uint32_t *count, const bool *left, uint32_t nworkers, uint32_t P)
{
    uint32_t n = 0, above = 0, keep = 0, q, r;

    for (uint32_t w = 0; w < nworkers; w++)
        n += !left[w];
    q = P / n;
    r = P % n;
    for (uint32_t w = 0; w < nworkers; w++) {
        if (left[w])
            continue;
        keep += count[w] < q ? count[w] : q;
        above += count[w] > q;
    }
    keep += above < r ? above : r;
    return P - keep;
}

/* Rebalance `owner` for the live workers and check the result against the rules. */
static void rebalance_and_check(uint32_t *owner, uint32_t P, uint32_t nworkers, const bool *left)
{
    uint32_t before[MAXW] = { 0 }, after[MAXW] = { 0 }, *old = malloc(P * sizeof(uint32_t));
    uint32_t n = 0, changed = 0, want;
    int moved;

    memcpy(old, owner, P * sizeof(uint32_t));
    for (uint32_t p = 0; p < P; p++)
        before[owner[p]]++;
    want = fewest_moves(before, left, nworkers, P);
    moved = roo__placement_rebalance(P, nworkers, left, owner);
    ck_assert_int_ge(moved, 0);
    for (uint32_t p = 0; p < P; p++) {
        ck_assert_uint_lt(owner[p], nworkers);
        ck_assert_msg(!left[owner[p]], "partition %u given to worker %u, which left", p, owner[p]);
        after[owner[p]]++;
        changed += owner[p] != old[p];
    }
    ck_assert_uint_eq((uint32_t)moved, changed);
    ck_assert_msg(changed == want, "%u partitions, %u workers: moved %u, the fewest is %u", P,
                  nworkers, changed, want);
    for (uint32_t w = 0; w < nworkers; w++)
        n += !left[w];
    for (uint32_t w = 0; w < nworkers; w++) {
        if (left[w])
            continue;
        ck_assert_msg(after[w] == P / n || after[w] == P / n + 1,
                      "%u partitions over %u workers: worker %u owns %u", P, n, w, after[w]);
        /* Nobody gives up a partition it may keep, nor gains one while over its share. */
        ck_assert_msg(after[w] >= before[w] || after[w] >= P / n, "worker %u lost too many", w);
    }
    free(old);
}

START_TEST(formation_gives_partition_p_to_worker_p_mod_n)
{
    uint32_t owner[10];

    roo__placement_form(10, 3, owner);
    for (uint32_t p = 0; p < 10; p++)
        ck_assert_uint_eq(owner[p], p % 3);
}
END_TEST

START_TEST(every_grow_from_1_to_8_workers_is_balanced_and_minimal)
{
    for (size_t k = 0; k < ROO__ARRAY_SIZE(partition_counts); k++) {
        uint32_t P = partition_counts[k];
        uint32_t *owner = malloc(P * sizeof(uint32_t));
        for (uint32_t n = 1; n <= 8; n++) {
            for (uint32_t m = n + 1; m <= 8; m++) {
                bool left[MAXW] = { false };
                roo__placement_form(P, n, owner);
                rebalance_and_check(owner, P, m, left);
            }
        }
        free(owner);
    }
}
END_TEST

START_TEST(every_shrink_from_8_to_1_workers_is_balanced_and_minimal)
{
    for (size_t k = 0; k < ROO__ARRAY_SIZE(partition_counts); k++) {
        uint32_t P = partition_counts[k];
        uint32_t *owner = malloc(P * sizeof(uint32_t));
        for (uint32_t n = 2; n <= 8; n++) {
            /* Every set of leavers that keeps worker 0 (the initializer stays). */
            for (uint32_t mask = 0; mask < (1u << (n - 1)); mask++) {
                bool left[MAXW] = { false };
                for (uint32_t w = 1; w < n; w++)
                    left[w] = (mask >> (w - 1)) & 1;
                roo__placement_form(P, n, owner);
                rebalance_and_check(owner, P, n, left);
            }
        }
        free(owner);
    }
}
END_TEST

START_TEST(grows_and_shrinks_in_any_order_stay_balanced_and_minimal)
{
    /* Random histories: leavers keep their index, joiners are appended, as in a cluster. */
    for (size_t k = 0; k < ROO__ARRAY_SIZE(partition_counts); k++) {
        uint32_t P = partition_counts[k];
        uint32_t *owner = malloc(P * sizeof(uint32_t));
        unsigned seed = 1234 + (unsigned)k;
        for (int run = 0; run < 40; run++) {
            bool left[MAXW] = { false };
            uint32_t nworkers = 1 + (uint32_t)(rand_r(&seed) % 4), live = nworkers;
            roo__placement_form(P, nworkers, owner);
            for (int step = 0; step < 12; step++) {
                bool grow = live == 1 || (nworkers < MAXW && rand_r(&seed) % 2);
                if (grow) {
                    uint32_t add = 1 + (uint32_t)(rand_r(&seed) % 2);
                    for (uint32_t i = 0; i < add && nworkers < MAXW; i++, live++)
                        left[nworkers++] = false;
                } else {
                    uint32_t w = 1 + (uint32_t)(rand_r(&seed) % (nworkers - 1));
                    if (left[w])
                        continue;
                    left[w] = true;
                    live--;
                }
                rebalance_and_check(owner, P, nworkers, left);
            }
        }
        free(owner);
    }
}
END_TEST

START_TEST(a_balanced_table_moves_nothing)
{
    uint32_t owner[256];
    bool left[4] = { false };

    roo__placement_form(256, 4, owner);
    ck_assert_int_eq(roo__placement_rebalance(256, 4, left, owner), 0);
    for (uint32_t p = 0; p < 256; p++)
        ck_assert_uint_eq(owner[p], p % 4);
}
END_TEST

START_TEST(rebalance_refuses_without_a_live_worker_or_with_a_bad_owner)
{
    uint32_t owner[8];
    bool left[2] = { true, true };

    roo__placement_form(8, 2, owner);
    ck_assert_int_eq(roo__placement_rebalance(8, 2, left, owner), -EINVAL);
    left[0] = false;
    owner[3] = 7;
    ck_assert_int_eq(roo__placement_rebalance(8, 2, left, owner), -EINVAL);
}
END_TEST

/* The table's destination for p, as (worker, thread, held). */
static roo__dest dest_of(const roo__route_table *t, uint32_t p)
{
    ck_assert_uint_lt(t->part_dest[p], t->ndests);
    return t->dests[t->part_dest[p]];
}

START_TEST(each_partition_goes_to_its_owners_thread_p_mod_threads)
{
    uint32_t threads[8] = { 1, 2, 3, 4, 0, 6, 7, 8 }, owner[256];

    for (uint32_t n = 1; n <= 8; n++) {
        roo__placement t = { 256, n, owner, threads };
        roo__placement_form(256, n, owner);
        for (uint32_t self = 0; self < n; self++) {
            for (uint32_t local = 1; local <= 4; local++) {
                roo__route_table rt;
                ck_assert_int_eq(roo__placement_routes(&t, NULL, self, local, &rt), 0);
                ck_assert_ptr_null(rt.part_old);
                for (uint32_t d = 0; d < local; d++)
                    ck_assert(rt.dests[d].worker == self && rt.dests[d].thread == d);
                for (uint32_t p = 0; p < 256; p++) {
                    roo__dest d = dest_of(&rt, p);
                    uint32_t w = owner[p], th = w == self ? local : threads[w] ? threads[w] : 1;
                    ck_assert_uint_eq(d.worker, w);
                    ck_assert_uint_eq(d.thread, p % th);
                    ck_assert(!d.held);
                    /* Our own partitions index a local thread directly. */
                    ck_assert(w != self || rt.part_dest[p] == p % local);
                    ck_assert(w == self || rt.part_dest[p] >= local);
                }
                roo__route_table_finish(&rt);
            }
        }
    }
}
END_TEST

START_TEST(during_a_move_moving_partitions_are_held_for_their_new_owner)
{
    uint32_t threads[6] = { 2, 3, 1, 4, 2, 5 }, before[256], after[256];

    for (uint32_t n = 1; n <= 5; n++) {
        bool left[6] = { false };
        roo__placement now = { 256, n, before, threads };
        roo__placement next = { 256, n + 1, after, threads };
        roo__placement_form(256, n, before);
        memcpy(after, before, sizeof(after));
        ck_assert_int_gt(roo__placement_rebalance(256, n + 1, left, after), 0);
        for (uint32_t self = 0; self < n; self++) {
            roo__route_table rt, plain;
            ck_assert_int_eq(roo__placement_routes(&now, &next, self, 2, &rt), 0);
            ck_assert_int_eq(roo__placement_routes(&now, NULL, self, 2, &plain), 0);
            ck_assert_ptr_nonnull(rt.part_old);
            for (uint32_t p = 0; p < 256; p++) {
                roo__dest d = dest_of(&rt, p), old = rt.dests[rt.part_old[p]];
                roo__dest unmoved = dest_of(&plain, p);
                uint32_t w = after[p], th = w == self ? 2 : threads[w];
                /* The table before the move is the table without one. */
                ck_assert(old.worker == unmoved.worker && old.thread == unmoved.thread);
                if (after[p] == before[p]) {
                    ck_assert(!d.held && d.worker == unmoved.worker && d.thread == unmoved.thread);
                } else {
                    ck_assert(d.held);
                    ck_assert_uint_eq(d.worker, w);
                    ck_assert_uint_eq(d.thread, p % th);
                }
            }
            roo__route_table_finish(&rt);
            roo__route_table_finish(&plain);
        }
    }
}
END_TEST

START_TEST(tables_too_big_to_index_and_bad_owners_are_refused)
{
    static uint32_t threads[1024], owner[256];
    roo__placement t = { 256, 1024, owner, threads };
    roo__route_table rt;

    for (int w = 0; w < 1024; w++)
        threads[w] = 64;
    roo__placement_form(256, 1024, owner);
    ck_assert_int_eq(roo__placement_routes(&t, NULL, 0, 64, &rt), -E2BIG);
    t.nworkers = 4;
    roo__placement_form(256, 4, owner);
    ck_assert_int_eq(roo__placement_routes(&t, NULL, 4, 1, &rt), -EINVAL);
    owner[9] = 4;
    ck_assert_int_eq(roo__placement_routes(&t, NULL, 0, 1, &rt), -EINVAL);
}
END_TEST

static Suite *placement_suite(void)
{
    Suite *s = suite_create("placement");
    TCase *tc;

    tc = roo_test_tcase("rebalance", 60);
    tcase_add_test(tc, formation_gives_partition_p_to_worker_p_mod_n);
    tcase_add_test(tc, every_grow_from_1_to_8_workers_is_balanced_and_minimal);
    tcase_add_test(tc, every_shrink_from_8_to_1_workers_is_balanced_and_minimal);
    tcase_add_test(tc, grows_and_shrinks_in_any_order_stay_balanced_and_minimal);
    tcase_add_test(tc, a_balanced_table_moves_nothing);
    tcase_add_test(tc, rebalance_refuses_without_a_live_worker_or_with_a_bad_owner);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("routes", 60);
    tcase_add_test(tc, each_partition_goes_to_its_owners_thread_p_mod_threads);
    tcase_add_test(tc, during_a_move_moving_partitions_are_held_for_their_new_owner);
    tcase_add_test(tc, tables_too_big_to_index_and_bad_owners_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(placement_suite());
}
