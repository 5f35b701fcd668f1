/* placement.c: partition ownership and per-worker route tables (see placement.h). */
#include "cluster/placement.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

void roo__placement_form(uint32_t partitions, uint32_t nworkers, uint32_t *ret_owner)
{
    for (uint32_t p = 0; p < partitions; p++)
        ret_owner[p] = p % nworkers;
}

int roo__placement_rebalance(uint32_t partitions, uint32_t nworkers, const bool *left,
                             uint32_t *owner)
{
    uint32_t n = 0, P = partitions, next = 0;
    uint32_t *count, *target, *order;
    uint8_t *move;
    int moved = 0;

    for (uint32_t p = 0; p < P; p++)
        if (owner[p] >= nworkers)
            return -EINVAL;
    for (uint32_t w = 0; w < nworkers; w++)
        n += !left[w];
    if (n == 0)
        return -EINVAL;
    count = roo__xcalloc(nworkers, sizeof(uint32_t));
    target = roo__xcalloc(nworkers, sizeof(uint32_t));
    order = roo__xcalloc(n, sizeof(uint32_t));
    move = roo__xcalloc(P ? P : 1, 1);
    for (uint32_t p = 0; p < P; p++)
        count[owner[p]]++;
    n = 0;
    for (uint32_t w = 0; w < nworkers; w++)
        if (!left[w])
            order[n++] = w;
    /* Stable sort of the live workers by partitions owned, most first: the extra
     * partitions of an uneven split stay where they already are. */
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && count[order[j]] > count[order[j - 1]]; j--) {
            uint32_t tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (uint32_t i = 0; i < n; i++)
        target[order[i]] = P / n + (i < P % n ? 1 : 0);
    /* A worker over its share gives up its highest partitions. */
    for (uint32_t p = P; p-- > 0;) {
        uint32_t w = owner[p];
        if (left[w] || count[w] > target[w]) {
            move[p] = 1;
            count[w]--;
        }
    }
    /* Each freed partition goes to the next worker, in the sorted order, still short. */
    for (uint32_t p = 0; p < P; p++) {
        if (!move[p])
            continue;
        while (count[order[next % n]] >= target[order[next % n]])
            next++;
        owner[p] = order[next % n];
        count[order[next % n]]++;
        next++;
        moved++;
    }
    free(count);
    free(target);
    free(order);
    free(move);
    return moved;
}

static uint32_t threads_of(const roo__placement *t, uint32_t w, uint32_t self, uint32_t local)
{
    if (w == self)
        return local;
    return t->threads[w] ? t->threads[w] : 1;
}

void roo__route_table_finish(roo__route_table *t)
{
    free(t->part_dest);
    free(t->part_old);
    free(t->dests);
    memset(t, 0, sizeof(*t));
}

int roo__placement_routes(const roo__placement *now, const roo__placement *next, uint32_t self,
                          uint32_t local_threads, roo__route_table *ret_table)
{
    uint32_t nw = next ? next->nworkers : now->nworkers;
    uint32_t *base, *hbase;
    uint64_t ndests = local_threads;
    roo__route_table t = { 0 };

    if (self >= now->nworkers || local_threads == 0 || (next && next->nworkers < now->nworkers) ||
        (next && next->partitions != now->partitions))
        return -EINVAL;
    for (uint32_t p = 0; p < now->partitions; p++)
        if (now->owner[p] >= now->nworkers || (next && next->owner[p] >= next->nworkers))
            return -EINVAL;
    base = roo__xcalloc(nw, sizeof(uint32_t));
    hbase = roo__xcalloc(nw, sizeof(uint32_t));
    /* Destinations: our threads, every other worker's threads, then (during a move) every
     * worker's threads once more, held. */
    for (uint32_t w = 0; w < now->nworkers; w++) {
        if (w == self)
            continue;
        base[w] = (uint32_t)ROO__MIN(ndests, UINT32_MAX);
        ndests += threads_of(now, w, self, local_threads);
    }
    for (uint32_t w = 0; next && w < nw; w++) {
        hbase[w] = (uint32_t)ROO__MIN(ndests, UINT32_MAX);
        ndests += threads_of(next, w, self, local_threads);
    }
    if (ndests > UINT16_MAX) {
        free(base);
        free(hbase);
        return -E2BIG;
    }
    t.partitions = now->partitions;
    t.ndests = (uint32_t)ndests;
    t.dests = roo__xcalloc(t.ndests, sizeof(roo__dest));
    t.part_dest = roo__xcalloc(t.partitions ? t.partitions : 1, sizeof(uint16_t));
    for (uint32_t d = 0; d < local_threads; d++)
        t.dests[d] = (roo__dest){ self, d, false };
    for (uint32_t w = 0; w < now->nworkers; w++) {
        if (w == self)
            continue;
        for (uint32_t k = 0; k < threads_of(now, w, self, local_threads); k++)
            t.dests[base[w] + k] = (roo__dest){ w, k, false };
    }
    for (uint32_t w = 0; next && w < nw; w++)
        for (uint32_t k = 0; k < threads_of(next, w, self, local_threads); k++)
            t.dests[hbase[w] + k] = (roo__dest){ w, k, true };
    for (uint32_t p = 0; p < t.partitions; p++) {
        uint32_t w = now->owner[p];
        if (w == self)
            t.part_dest[p] = (uint16_t)roo__placement_thread(p, local_threads);
        else
            t.part_dest[p] = (uint16_t)(base[w] + roo__placement_thread(
                                                      p, threads_of(now, w, self, local_threads)));
    }
    if (next) {
        t.part_old = roo__xmalloc(t.partitions * sizeof(uint16_t) + 1);
        memcpy(t.part_old, t.part_dest, t.partitions * sizeof(uint16_t));
        for (uint32_t p = 0; p < t.partitions; p++) {
            uint32_t w = next->owner[p];
            if (w != now->owner[p])
                t.part_dest[p] =
                    (uint16_t)(hbase[w] +
                               roo__placement_thread(p, threads_of(next, w, self, local_threads)));
        }
    }
    free(base);
    free(hbase);
    *ret_table = t;
    return 0;
}
