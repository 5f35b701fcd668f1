/* fconn_frames.h: a framed connection's handler for tests and fuzzing that keeps every frame
 * it is handed (as sent: a u32 BE length, then the payload) and how the connection ended. */
#ifndef ROO_TEST_FCONN_FRAMES_H
#define ROO_TEST_FCONN_FRAMES_H

#include <stdbool.h>

#include "common/buf.h"
#include "net/fconn.h"

typedef struct got {
    roo__buf bytes; /* the frames received, each a u32 BE length and the payload */
    size_t frames;
    bool closed;
    int err; /* what on_close reported */
} got;

static void got_frame(roo__fconn *c, const uint8_t *payload, size_t len)
{
    got *g = c->data;
    uint8_t h[4];

    roo__store_be32(h, (uint32_t)len);
    roo__buf_append(&g->bytes, h, 4);
    roo__buf_append(&g->bytes, payload, len);
    g->frames++;
}

static void got_close(roo__fconn *c, int err)
{
    got *g = c->data;

    g->closed = true;
    g->err = err;
}

static const roo__fconn_ops got_ops = { .on_frame = got_frame, .on_close = got_close };

#endif
