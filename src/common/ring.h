/* ring.h: one growable FIFO ring for any element type: push at the tail, pop at the head,
 * index from the head. Used for a sink's batches, a connection's acknowledgement marks, a
 * link's sent frames, replay offsets and the durability FIFO.
 *
 *   ROO__RING(uint64_t) starts;     a struct; all zero is an empty ring
 *   roo__ring_push(&starts, off);   grows by doubling (the capacity is a power of two)
 *   roo__ring_at(&starts, i)        the i-th oldest, an lvalue; i < len
 *   roo__ring_pop(&starts);         drop the oldest; len > 0
 *   roo__ring_free(&starts);
 *
 * It never shrinks: a ring that once held a burst keeps its room for the next one. One
 * thread owns a ring; nothing here locks.
 */
#ifndef ROO_RING_H
#define ROO_RING_H

#include <stdlib.h>

#include "common/common.h"

#define ROO__RING(type)                                                                            \
    struct {                                                                                       \
        type *v;                                                                                   \
        size_t cap, head, len;                                                                     \
    }

/* Out of line: double the room, moving the elements to the front in order; returns the new
 * array. */
void *roo__ring_grow_(void *v, size_t esize, size_t *cap, size_t *head, size_t len);

#define roo__ring_at(r, i) ((r)->v[((r)->head + (i)) & ((r)->cap - 1)])
#define roo__ring_last(r) roo__ring_at(r, (r)->len - 1)

#define roo__ring_push(r, ...)                                                                     \
    do {                                                                                           \
        if ((r)->len == (r)->cap)                                                                  \
            (r)->v = roo__ring_grow_((r)->v, sizeof(*(r)->v), &(r)->cap, &(r)->head, (r)->len);    \
        roo__ring_at(r, (r)->len) = (__VA_ARGS__);                                                 \
        (r)->len++;                                                                                \
    } while (0)

#define roo__ring_pop(r)                                                                           \
    do {                                                                                           \
        (r)->head = ((r)->head + 1) & ((r)->cap - 1);                                              \
        (r)->len--;                                                                                \
    } while (0)

#define roo__ring_clear(r) ((r)->head = (r)->len = 0)

#define roo__ring_free(r)                                                                          \
    do {                                                                                           \
        free((r)->v);                                                                              \
        (r)->v = NULL;                                                                             \
        (r)->cap = (r)->head = (r)->len = 0;                                                       \
    } while (0)

#endif /* ROO_RING_H */
