/* buf.h: a growable byte buffer, reused across batches so the hot path never allocates. */
#ifndef ROO_BUF_H
#define ROO_BUF_H

#include "common/common.h"

typedef struct roo__buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool paged; /* see ROO__BUF_HEADROOM */
} roo__buf;

/*
 * A paged buffer (paged set while it is empty; a batch's output, see outlog.h) lies
 * ROO__BUF_HEADROOM bytes into page-aligned memory of its own (a mapping) that ends on a
 * page boundary at data + cap. An entry's header fits before data, and header plus bytes
 * rounded up to ROO__PAGE can go to the disk straight from memory (O_DIRECT), without a
 * copy into the page cache.
 */
#define ROO__BUF_HEADROOM 16u
#define ROO__PAGE 4096u

/* Grow so that at least `need` more bytes fit; never shrinks. Out of line: rare. */
void roo__buf_grow(roo__buf *b, size_t need);
void roo__buf_finish(roo__buf *b);
/* Give back room above `cap` (at least len): a buffer kept long after a bigger use. */
void roo__buf_shrink(roo__buf *b, size_t cap);

/* Make room for n more bytes and return where they go; the caller then adds to len. */
static inline uint8_t *roo__buf_reserve(roo__buf *b, size_t n)
{
    if (ROO__UNLIKELY(b->cap - b->len < n))
        roo__buf_grow(b, n);
    return b->data + b->len;
}

static inline void roo__buf_append(roo__buf *b, const void *p, size_t n)
{
    if (n) /* memcpy with a NULL pointer is undefined even for 0 bytes */
        memcpy(roo__buf_reserve(b, n), p, n);
    b->len += n;
}

/*
 * Append a key's bytes as text that is valid UTF-8, so that it can become a JSON string
 * (common/json.h quotes and escapes it). Valid UTF-8 passes as it is; each byte that is not
 * UTF-8 (a key may be any bytes) becomes the four characters \xHH, and a backslash of the
 * bytes becomes two, so the text maps back to the bytes exactly. In JSON:
 *
 *   bytes (C string) text           JSON
 *   caf\xc3\xa9      café           "café"
 *   a\xff            a\xff          "a\\xff"
 *   a\\b             a\\b           "a\\\\b"
 */
void roo__buf_append_key_text(roo__buf *b, const uint8_t *p, size_t n);

/* Drop the first n bytes, keeping the rest at the front. */
static inline void roo__buf_consume(roo__buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

#endif /* ROO_BUF_H */
