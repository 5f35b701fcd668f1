/* route_check.c: a route buffer from another worker is checked whole before a thread
 * applies it (the record format is drawn in engine-int.h): a peer's bytes are not trusted. */
#include <stdio.h>

#include "engine/engine-int.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, cap, __VA_ARGS__);                                                           \
        return ROO_EWIRE;                                                                          \
    } while (0)

int roo__route_check(const uint8_t *data, size_t len, const bool *is_state, size_t nstages,
                     uint32_t count, char *why, size_t cap)
{
    size_t off = 0;
    uint64_t msgs = 0;
    bool have_stream = false;

    while (off < len) {
        uint32_t si, mlen;
        size_t idlen = 0, need;

        if (len - off < 8)
            FAIL("a record header cut short at byte %zu of %zu", off, len);
        si = roo__load_le32(data + off);
        mlen = roo__load_le32(data + off + 4);
        if (si == ROO__ROUTE_STREAM) {
            if (mlen != 16 || len - off < 24)
                FAIL("a malformed stream record at byte %zu", off);
            have_stream = true;
            off += 24;
            continue;
        }
        if (si == ROO__ROUTE_RUN) {
            uint32_t n;
            size_t each;
            if (len - off < ROO__ROUTE_RUN_HDR)
                FAIL("a run header cut short at byte %zu of %zu", off, len);
            si = mlen; /* a run's second word is its stage */
            mlen = roo__load_le32(data + off + 8);
            n = roo__load_le32(data + off + 12);
            if (si >= nstages || !is_state[si])
                FAIL("a run of messages at byte %zu is for step %u, which is not a state step "
                     "of this application",
                     off, si);
            if (mlen == 0 || mlen > ROO_MSG_MAX || n == 0)
                FAIL("a malformed run at byte %zu (%u messages of %u bytes)", off, n, mlen);
            each = ROO__ALIGN8((size_t)mlen);
            /* n * each cannot overflow: n < 2^32, each <= 2^24 */
            if ((len - off - ROO__ROUTE_RUN_HDR) / each < n)
                FAIL("a run of %u messages of %u bytes at byte %zu runs past the end of the "
                     "batch",
                     n, mlen, off);
            off += ROO__ROUTE_RUN_HDR + (size_t)n * each;
            msgs += n;
            continue;
        }
        if (si == ROO__ROUTE_INGRESS) {
            if (mlen != ROO__ROUTE_INGRESS_LEN || len - off < 8 + ROO__ROUTE_INGRESS_LEN)
                FAIL("a malformed read position at byte %zu", off);
            off += 8 + ROO__ROUTE_INGRESS_LEN;
            msgs++;
            continue;
        }
        if (si & ROO__ROUTE_ID_FLAG) {
            if (!have_stream)
                FAIL("a message identity before any stream record, at byte %zu", off);
            si &= ~ROO__ROUTE_ID_FLAG;
            idlen = ROO__ROUTE_ID_LEN;
        }
        if (si >= nstages || !is_state[si])
            FAIL("message %llu is for step %u, which is not a state step of this application",
                 (unsigned long long)msgs, si);
        if (mlen > ROO_MSG_MAX)
            FAIL("message %llu claims %u bytes (at most %u)", (unsigned long long)msgs, mlen,
                 ROO_MSG_MAX);
        need = 8 + idlen + ROO__ALIGN8((size_t)mlen);
        if (len - off < need)
            FAIL("message %llu runs past the end of the batch (%zu bytes needed, %zu left)",
                 (unsigned long long)msgs, need, len - off);
        off += need;
        msgs++;
    }
    if (msgs != count)
        FAIL("the batch holds %llu messages but says %u", (unsigned long long)msgs, count);
    return 0;
}
