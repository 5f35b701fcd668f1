/* ring.c: the rare part of ring.h: growing. */
#include "common/ring.h"

void *roo__ring_grow_(void *v, size_t esize, size_t *cap, size_t *head, size_t len)
{
    size_t ncap = *cap ? *cap * 2 : 16, first = *cap - *head;
    unsigned char *nv = roo__xmalloc(ncap * esize), *old = v;

    /* The elements run from head to the end, then wrap to the start. */
    if (len) {
        if (first > len)
            first = len;
        memcpy(nv, old + *head * esize, first * esize);
        memcpy(nv + first * esize, old, (len - first) * esize);
    }
    free(v);
    *cap = ncap;
    *head = 0;
    return nv;
}
