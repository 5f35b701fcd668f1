/* test_fconn.c: a framed connection hands out exactly the frames sent, whole and in order,
 * however the stream is cut, and closes on a frame over its limit. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/buf.h"
#include "fconn_frames.h"
#include "loop/loop.h"
#include "net/fconn.h"
#include "roo_test.h"

/* The frames sent: sizes from empty to bigger than a read (a short stream when it goes a
 * few bytes at a time), each a pattern of its own. */
static void make_stream(roo__buf *s, bool big, size_t *ret_frames)
{
    static const size_t big_sizes[] = { 0, 1, 300000, 5, 70000, 3, 262140, 262144, 9, 600000, 4 };
    static const size_t small_sizes[] = { 0, 1, 5, 3000, 3, 9, 4, 2 };
    const size_t *sizes = big ? big_sizes : small_sizes;
    size_t count = big ? sizeof(big_sizes) / sizeof(big_sizes[0])
                       : sizeof(small_sizes) / sizeof(small_sizes[0]);

    for (size_t i = 0; i < count; i++) {
        uint8_t *p = roo__buf_reserve(s, 4 + sizes[i]);
        roo__store_be32(p, (uint32_t)sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            p[4 + j] = (uint8_t)(j * 31 + i * 7 + 1);
        s->len += 4 + sizes[i];
    }
    *ret_frames = count;
}

/* The connection stayed open and handed out exactly `frames` frames, whose bytes (length
 * prefixes included) are want's. */
static void expect_frames(const got *g, size_t frames, const roo__buf *want)
{
    ck_assert(!g->closed);
    ck_assert_uint_eq(g->frames, frames);
    ck_assert_uint_eq(g->bytes.len, want->len);
    ck_assert_mem_eq(g->bytes.data, want->data, want->len);
}

/* Write the stream in pieces of `piece` bytes (the last smaller), letting the connection
 * read between them, and check what it handed out. */
static void send_in_pieces(size_t piece)
{
    roo__loop *loop;
    roo__fconn c;
    roo__buf stream = { 0 };
    got g = { 0 };
    size_t frames, off = 0;
    int sv[2];

    make_stream(&stream, piece > 100, &frames);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    ck_assert_int_eq(roo__loop_create(&loop), 0);
    ck_assert_int_eq(roo__fconn_accept(&c, loop, sv[1], "test", 1u << 20, &got_ops, &g), 0);
    while (off < stream.len) {
        size_t n = stream.len - off < piece ? stream.len - off : piece;
        ssize_t w = send(sv[0], stream.data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);

        ck_assert(w > 0 || errno == EAGAIN); /* full: the connection reads, then more */
        off += w > 0 ? (size_t)w : 0;
        for (int i = 0; i < 4; i++)
            roo__loop_run_once(loop, 0);
    }
    for (int i = 0; i < 200 && g.frames < frames; i++)
        roo__loop_run_once(loop, 10);
    expect_frames(&g, frames, &stream);
    roo__fconn_close(&c);
    roo__loop_run_once(loop, 0);
    roo__fconn_finish(&c);
    roo__loop_destroy(loop);
    close(sv[0]);
    roo__buf_finish(&stream);
    roo__buf_finish(&g.bytes);
}

/* A frame cut by a read waits where it is for the rest: the frames arrive whole and in
 * order whether the stream comes a byte at a time, in odd pieces, or in big writes. */
START_TEST(frames_arrive_whole_and_in_order_however_the_stream_is_cut)
{
    static const size_t pieces[] = { 1, 7, 4093, 65536, 100003, 1u << 20 };

    send_in_pieces(pieces[_i]);
}
END_TEST

/* A length over the connection's limit closes it before anything is buffered for it. */
START_TEST(a_frame_over_the_limit_closes_the_connection)
{
    roo__loop *loop;
    roo__fconn c;
    got g = { 0 };
    uint8_t hdr[8] = { 0 };
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    ck_assert_int_eq(roo__loop_create(&loop), 0);
    ck_assert_int_eq(roo__fconn_accept(&c, loop, sv[1], "test", 1000, &got_ops, &g), 0);
    roo__store_be32(hdr, 3); /* a good frame of 3 bytes first, then one of 1001 */
    ck_assert_int_eq(write(sv[0], hdr, 7), 7);
    roo__store_be32(hdr, 1001);
    ck_assert_int_eq(write(sv[0], hdr, 4), 4);
    for (int i = 0; i < 50 && !g.closed; i++)
        roo__loop_run_once(loop, 10);
    ck_assert_uint_eq(g.frames, 1);
    ck_assert(g.closed);
    ck_assert_int_eq(g.err, ROO_EFRAMESIZE);
    roo__fconn_finish(&c);
    roo__loop_destroy(loop);
    close(sv[0]);
    roo__buf_finish(&g.bytes);
}
END_TEST

/* Frames handed to roo__fconn_sendv as pieces (a head and a body each, some empty) arrive
 * whole and in order, though the socket fills long before the last piece (what it does not
 * take is queued and written as it drains), and those of a second call follow. */
START_TEST(frames_sent_in_pieces_arrive_whole_when_the_socket_fills)
{
    enum { FRAMES = 120 };
    static uint8_t bodies[FRAMES][40000];
    uint8_t heads[FRAMES][4];
    struct iovec iov[2 * FRAMES];
    roo__buf want = { 0 };
    roo__loop *loop;
    roo__fconn tx, rx;
    got gt = { 0 }, gr = { 0 };
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    ck_assert_int_eq(roo__loop_create(&loop), 0);
    ck_assert_int_eq(roo__fconn_accept(&tx, loop, sv[0], "tx", 1u << 20, &got_ops, &gt), 0);
    ck_assert_int_eq(roo__fconn_accept(&rx, loop, sv[1], "rx", 1u << 20, &got_ops, &gr), 0);
    for (size_t f = 0; f < FRAMES; f++) {
        size_t len = (f % 7 == 3) ? 0 : (f * 7919) % sizeof(bodies[0]);
        for (size_t j = 0; j < len; j++)
            bodies[f][j] = (uint8_t)(f + j * 13);
        roo__store_be32(heads[f], (uint32_t)len);
        iov[2 * f] = (struct iovec){ heads[f], 4 };
        iov[2 * f + 1] = (struct iovec){ bodies[f], len };
        roo__buf_append(&want, heads[f], 4);
        roo__buf_append(&want, bodies[f], len);
    }
    /* most of them at once, the rest in a second call while the first still drains */
    ck_assert_int_eq(roo__fconn_sendv(&tx, iov, 2 * (FRAMES - 10)), 0);
    ck_assert_uint_gt(roo__fconn_pending(&tx), 0); /* the socket did not take it all */
    ck_assert_int_eq(roo__fconn_sendv(&tx, iov + 2 * (FRAMES - 10), 20), 0);
    for (int i = 0; i < 500 && gr.frames < FRAMES; i++)
        roo__loop_run_once(loop, 10);
    expect_frames(&gr, FRAMES, &want);
    ck_assert_uint_eq(roo__fconn_pending(&tx), 0);
    roo__fconn_close(&tx);
    roo__fconn_close(&rx);
    roo__loop_run_once(loop, 0);
    roo__fconn_finish(&tx);
    roo__fconn_finish(&rx);
    roo__loop_destroy(loop);
    roo__buf_finish(&want);
    roo__buf_finish(&gr.bytes);
}
END_TEST

static Suite *fconn_suite(void)
{
    Suite *s = suite_create("fconn");
    TCase *tc = tcase_create("frames");

    tcase_add_loop_test(tc, frames_arrive_whole_and_in_order_however_the_stream_is_cut, 0, 6);
    tcase_add_test(tc, a_frame_over_the_limit_closes_the_connection);
    tcase_add_test(tc, frames_sent_in_pieces_arrive_whole_when_the_socket_fills);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(fconn_suite());
}
