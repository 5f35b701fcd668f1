/* fuzz_fconn.c: a framed connection cuts any byte stream into exactly the frames a plain
 * reading of it finds (u32 BE length | payload), however the stream arrives, and closes at
 * the first length over its limit. Input: one byte choosing how the stream is cut | the
 * stream. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../net/fconn_frames.h"
#include "common/buf.h"
#include "loop/loop.h"
#include "net/fconn.h"

#define LIMIT 3000 /* the connection's frame limit: small, so that lengths pass it often */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static roo__loop *loop;
    size_t off = 0, want_frames = 0, want_len = 0, piece;
    bool want_closed = false;
    roo__fconn c;
    got g = { 0 };
    int sv[2];

    if (size < 1)
        return 0;
    piece = 1 + (size_t)data[0] * 37; /* 1 to 9436 bytes a write */
    data++;
    size--;
    /* What a plain reading finds: whole frames up to the first length over the limit. */
    while (size - want_len >= 4) {
        uint32_t n = roo__load_be32(data + want_len);
        if (n > LIMIT) {
            want_closed = true;
            break;
        }
        if (size - want_len - 4 < n)
            break;
        want_len += 4 + (size_t)n;
        want_frames++;
    }
    if (!loop && roo__loop_create(&loop) < 0)
        abort();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (roo__fconn_accept(&c, loop, sv[1], "fuzz", LIMIT, &got_ops, &g) < 0)
        abort();
    while (off < size && !g.closed) {
        size_t n = size - off < piece ? size - off : piece;
        ssize_t w = send(sv[0], data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (w < 0 && errno != EAGAIN)
            break;
        off += w > 0 ? (size_t)w : 0;
        roo__loop_run_once(loop, 0);
    }
    for (int i = 0; i < 8 && !g.closed; i++)
        roo__loop_run_once(loop, 0);
    if (g.frames != want_frames || g.bytes.len != want_len ||
        (want_len && memcmp(g.bytes.data, data, want_len) != 0))
        abort(); /* other frames than the stream holds */
    if (g.closed != want_closed || (g.closed && g.err != ROO_EFRAMESIZE))
        abort(); /* closed without cause, or open past a length over the limit */
    if (!g.closed)
        roo__fconn_close(&c);
    roo__loop_run_once(loop, 0);
    roo__fconn_finish(&c);
    close(sv[0]);
    roo__buf_finish(&g.bytes);
    return 0;
}
