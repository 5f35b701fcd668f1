/* buf.c: growth of roo__buf, and keys of any bytes as UTF-8 text. */
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * A paged buffer's memory is its own mapping: page-aligned, zero where never written, and
 * grown or shrunk by mremap, which moves its pages instead of copying them and touches none
 * (as realloc does for big blocks: a batch's output grows to megabytes; copying it to an
 * aligned block at each growth, and zeroing the rest, tripled the page faults of a run).
 * ThreadSanitizer does not follow mremap: it takes a mapping that another thread gets at
 * addresses moved away from for a race. Under it a new size is a new mapping with the bytes
 * copied over. The mapping is ROO__BUF_HEADROOM + cap bytes.
 */
#if defined(__SANITIZE_THREAD__) /* gcc */
#define PAGED_MREMAP 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) /* clang */
#define PAGED_MREMAP 0
#endif
#endif
#ifndef PAGED_MREMAP
#define PAGED_MREMAP 1
#endif

/* Bytes of the mapping for cap bytes after the headroom, rounded up to pages. */
static size_t paged_size(size_t cap)
{
    return (ROO__BUF_HEADROOM + cap + ROO__PAGE - 1) / ROO__PAGE * ROO__PAGE;
}

static void paged_resize(roo__buf *b, size_t cap)
{
    size_t total = paged_size(cap);
    size_t old = ROO__BUF_HEADROOM + b->cap;
    uint8_t *mem = MAP_FAILED;

    if (cap <= SIZE_MAX / 2 && b->data && PAGED_MREMAP)
        mem = mremap(b->data - ROO__BUF_HEADROOM, old, total, MREMAP_MAYMOVE);
    else if (cap <= SIZE_MAX / 2)
        mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        roo_log(ROO_LOG_ERROR, "out of memory growing a buffer to %zu bytes; aborting", cap);
        abort();
    }
    if (b->data && !PAGED_MREMAP) {
        memcpy(mem + ROO__BUF_HEADROOM, b->data, b->len);
        munmap(b->data - ROO__BUF_HEADROOM, old);
    }
    b->data = mem + ROO__BUF_HEADROOM;
    b->cap = total - ROO__BUF_HEADROOM;
}

void roo__buf_grow(roo__buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 256;

    while (cap - b->len < need)
        cap *= 2;
    if (b->paged) {
        paged_resize(b, cap);
        return;
    }
    b->data = roo__xrealloc(b->data, cap);
    b->cap = cap;
}

void roo__buf_shrink(roo__buf *b, size_t cap)
{
    if (cap >= b->cap || cap < b->len || cap == 0)
        return;
    if (b->paged) {
        if (paged_size(cap) < ROO__BUF_HEADROOM + b->cap) /* a page or more to give back */
            paged_resize(b, cap);
        return;
    }
    b->data = roo__xrealloc(b->data, cap);
    b->cap = cap;
}

void roo__buf_finish(roo__buf *b)
{
    if (b->data && b->paged)
        munmap(b->data - ROO__BUF_HEADROOM, ROO__BUF_HEADROOM + b->cap);
    else
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one (RFC 3629). */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (n < len)
        return 0;
    /* The second byte's range rules out overlong forms, surrogates and > U+10FFFF. */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

void roo__buf_append_key_text(roo__buf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        uint8_t c = p[i];

        if (k > 0 && c != '\\') {
            roo__buf_append(b, p + i, k);
            i += k;
            continue;
        }
        if (k == 0) {
            char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
            roo__buf_append(b, esc, 4);
        } else {
            roo__buf_append(b, "\\\\", 2);
        }
        i++;
    }
}
