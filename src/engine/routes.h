/* routes.h: a processing thread's partition table: where each partition's messages go.
 *
 * The cluster computes it (src/cluster/placement.c) and the io thread hands each thread its
 * own copy; the thread reads it on the hot path and nothing else touches it.
 *
 *   part_dest[p] < local threads   p is ours: apply it on that local thread
 *   part_dest[p] >= local threads  dests[part_dest[p]] names a thread of another worker
 *                                  (or, during a move, a held destination)
 *
 * dests[0 .. local threads) are the local threads themselves, so dests[part_dest[p]] always
 * says where p goes.
 */
#ifndef ROO_ROUTES_H
#define ROO_ROUTES_H

#include <stdbool.h>
#include <stdint.h>

/* Where a partition's messages go: a local thread, or a thread of another worker. */
typedef struct roo__dest {
    uint32_t worker; /* topology index; the local worker for local threads */
    uint32_t thread;
    bool held; /* a partition move: messages wait in io until the switch */
} roo__dest;

/* A table computed for one worker; every array is owned by whoever holds the table. */
typedef struct roo__route_table {
    uint32_t partitions;
    uint16_t *part_dest; /* partition -> index into dests */
    uint16_t *part_old;  /* during a move: the table before it (NULL otherwise) */
    roo__dest *dests;
    uint32_t ndests;
} roo__route_table;

#endif /* ROO_ROUTES_H */
