/* framer.h: cuts a source's byte stream into frames (length-prefixed or lines).
 *
 * The framer is pure: it looks at bytes already received and says where the next whole
 * frame is, so a reader can call it in a loop over one big read and keep the tail for the
 * next read. It never allocates and never reads past `len`.
 *
 * Length framing, header_len H (1, 2, 4 or 8) in the configured byte order:
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       H     payload length N (must be <= max_frame)
 *   H       N     payload
 *
 * Line framing: payload bytes up to '\n' (a trailing '\r' is dropped); at most max_frame
 * bytes before the '\n'.
 */
#ifndef ROO_FRAMER_H
#define ROO_FRAMER_H

#include "common/common.h"

/* A source's largest frame unless --max-frame says otherwise. */
#define ROO__FRAME_DEFAULT_MAX (64u * 1024u)

typedef struct roo__framer {
    roo_framing framing;
    unsigned header_len;
    bool little_endian;
    size_t max_frame;
} roo__framer;

typedef struct roo__frame {
    size_t payload_off; /* where the payload starts in the buffer */
    size_t payload_len;
    size_t frame_len; /* header + payload (+ newline): bytes to consume */
} roo__frame;

/* Result codes of roo__framer_next besides negative errors. */
#define ROO__FRAME_OK 1
#define ROO__FRAME_AGAIN 0

int roo__framer_init(roo__framer *f, const roo_source *src, size_t max_frame);

/* The declared payload length in a complete length header (for error messages). */
uint64_t roo__framer_header_value(const roo__framer *f, const uint8_t *p);

/*
 * roo__framer_next for length framing with a u32 big-endian header (the common case), for a
 * read loop that has checked its framer is of that kind and keeps max_frame in a register.
 */
static inline int roo__framer_next_be32(size_t max_frame, const uint8_t *buf, size_t len,
                                        roo__frame *ret_frame)
{
    uint32_t n;

    if (len < 4)
        return ROO__FRAME_AGAIN;
    n = roo__load_be32(buf);
    if (ROO__UNLIKELY(n > max_frame)) {
        ret_frame->payload_len = n;
        ret_frame->payload_off = 4;
        ret_frame->frame_len = 0;
        return ROO_EFRAMESIZE;
    }
    if (len - 4 < n)
        return ROO__FRAME_AGAIN;
    ret_frame->payload_off = 4;
    ret_frame->payload_len = n;
    ret_frame->frame_len = 4 + (size_t)n;
    return ROO__FRAME_OK;
}

/*
 * The frames of payload length n that follow one another from buf[0] (u32 big-endian
 * headers), at most max of them, whole within len: their count. n was checked against
 * max_frame with the frame before them. Where each would start is known in advance (a
 * stride of 4 + n), so each header is checked without waiting for the one before it; frame
 * by frame, every offset waits for the load and byte swap of the previous header. Every
 * header is still compared exactly: the run stops at the first frame of another length, or
 * one not whole in buf, which roo__framer_next_be32 then reads as usual. frs[i] (if not
 * NULL) gets each frame's payload.
 */
static inline size_t roo__framer_run_be32(const uint8_t *buf, size_t len, size_t n, size_t max,
                                          roo_frame *frs)
{
    const size_t stride = 4 + n;
    const size_t m = ROO__MIN(len / stride, max);
    size_t j = 0;

    for (; j < m && roo__load_be32(buf) == n; j++, buf += stride) {
        if (frs) {
            frs[j].payload = buf + 4;
            frs[j].len = n;
        }
    }
    return j;
}

/*
 * Find the next frame in buf[0..len). Returns ROO__FRAME_OK and fills *ret_frame,
 * ROO__FRAME_AGAIN if more bytes are needed, or ROO_EFRAMESIZE if the frame is too big
 * (then *ret_frame->payload_len holds the declared or seen size when known).
 */
static inline int roo__framer_next(const roo__framer *f, const uint8_t *buf, size_t len,
                                   roo__frame *ret_frame)
{
    if (ROO__LIKELY(f->framing == ROO_FRAMING_LENGTH)) {
        uint64_t n;
        size_t h = f->header_len;

        if (ROO__LIKELY(h == 4 && !f->little_endian))
            return roo__framer_next_be32(f->max_frame, buf, len, ret_frame);
        if (len < h)
            return ROO__FRAME_AGAIN;
        n = roo__framer_header_value(f, buf);
        if (ROO__UNLIKELY(n > f->max_frame)) {
            ret_frame->payload_len = (size_t)ROO__MIN(n, (uint64_t)SIZE_MAX);
            ret_frame->payload_off = h;
            ret_frame->frame_len = 0;
            return ROO_EFRAMESIZE;
        }
        if (len - h < n)
            return ROO__FRAME_AGAIN;
        ret_frame->payload_off = h;
        ret_frame->payload_len = (size_t)n;
        ret_frame->frame_len = h + (size_t)n;
        return ROO__FRAME_OK;
    } else {
        size_t scan = ROO__MIN(len, f->max_frame + 2);
        const uint8_t *nl = memchr(buf, '\n', scan);
        size_t n;

        if (!nl) {
            if (len > f->max_frame + 1) {
                ret_frame->payload_len = len;
                ret_frame->payload_off = 0;
                ret_frame->frame_len = 0;
                return ROO_EFRAMESIZE;
            }
            return ROO__FRAME_AGAIN;
        }
        n = (size_t)(nl - buf);
        ret_frame->frame_len = n + 1;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
        if (n > f->max_frame) {
            ret_frame->payload_len = n;
            ret_frame->payload_off = 0;
            ret_frame->frame_len = 0;
            return ROO_EFRAMESIZE;
        }
        ret_frame->payload_off = 0;
        ret_frame->payload_len = n;
        return ROO__FRAME_OK;
    }
}

#endif /* ROO_FRAMER_H */
