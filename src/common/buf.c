/* buf.c: growth of roo__buf. */
#include "common/buf.h"

#include <stdlib.h>

void roo__buf_grow(roo__buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 256;

    while (cap - b->len < need)
        cap *= 2;
    b->data = roo__xrealloc(b->data, cap);
    b->cap = cap;
}

void roo__buf_finish(roo__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
