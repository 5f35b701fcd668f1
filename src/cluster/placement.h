/* placement.h: which worker owns each partition, and where a worker sends each partition's
 * messages: pure functions, no io, no globals, so that they can be tested exhaustively.
 *
 *   key --XXH3-64--> hash --(hash >> 32) * P >> 32--> partition p in [0, P)
 *   p --owner[p]--> worker w   (p mod N at formation; roo__placement_rebalance after that)
 *   p on worker w --> thread p mod (w's --threads)
 */
#ifndef ROO_PLACEMENT_H
#define ROO_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/routes.h"

/* A partition table as these functions read it. */
typedef struct roo__placement {
    uint32_t partitions;
    uint32_t nworkers;
    const uint32_t *owner;   /* [partitions] -> worker index < nworkers */
    const uint32_t *threads; /* [nworkers] -> that worker's processing threads (0 counts as 1) */
} roo__placement;

/* The thread of a worker with `threads` threads that applies partition p. */
static inline uint32_t roo__placement_thread(uint32_t p, uint32_t threads)
{
    return p % (threads ? threads : 1);
}

/* The table a cluster forms with: partition p goes to worker p mod nworkers. */
void roo__placement_form(uint32_t partitions, uint32_t nworkers, uint32_t *ret_owner);

/*
 * Give every live worker (left[w] false) P/n partitions, the first P mod n of them by how
 * many they own now one more, moving as few partitions as possible: only those of workers
 * that left or own more than their share change hands. owner[] is rewritten in place.
 * Returns how many partitions moved, or -EINVAL if no worker is live or an owner is out of
 * range.
 */
int roo__placement_rebalance(uint32_t partitions, uint32_t nworkers, const bool *left,
                             uint32_t *owner);

/*
 * The route table of worker `self`, which runs local_threads threads. With next (a move in
 * progress), partitions whose owner changes go to held destinations on their new owner and
 * part_old keeps the table before the move. Returns 0, -EINVAL (an owner or self out of
 * range), or -E2BIG (more destinations than a table can index). The arrays are the
 * caller's to free (roo__route_table_finish).
 */
int roo__placement_routes(const roo__placement *now, const roo__placement *next, uint32_t self,
                          uint32_t local_threads, roo__route_table *ret_table);
void roo__route_table_finish(roo__route_table *t);

#endif /* ROO_PLACEMENT_H */
