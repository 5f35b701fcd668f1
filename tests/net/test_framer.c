/* test_framer.c: the framer cuts length-prefixed and line streams into exactly the frames sent, however the bytes arrive. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/buf.h"
#include "net/framer.h"
#include "roo_test.h"

static const unsigned header_lens[] = { 1, 2, 4, 8 };

static roo__framer make_length_framer(unsigned h, bool little_endian, size_t max_frame)
{
    roo__framer f;
    roo_source src = { .framing = ROO_FRAMING_LENGTH,
                       .header_len = h,
                       .byte_order = little_endian ? ROO_LITTLE_ENDIAN : ROO_BIG_ENDIAN };

    ck_assert_int_eq(roo__framer_init(&f, &src, max_frame), 0);
    return f;
}

static roo__framer make_line_framer(size_t max_frame)
{
    roo__framer f;
    roo_source src = { .framing = ROO_FRAMING_LINE };

    ck_assert_int_eq(roo__framer_init(&f, &src, max_frame), 0);
    return f;
}

/* Write a length header of h bytes holding v in the given byte order. */
static void put_header(uint8_t *p, unsigned h, bool little_endian, uint64_t v)
{
    for (unsigned i = 0; i < h; i++) {
        uint8_t byte = (uint8_t)(v >> (8 * i));
        p[little_endian ? i : h - 1 - i] = byte;
    }
}

/* Append one length-framed frame to b. */
static void append_frame(roo__buf *b, unsigned h, bool little_endian, const uint8_t *payload,
                         size_t n)
{
    uint8_t hdr[8];

    put_header(hdr, h, little_endian, n);
    roo__buf_append(b, hdr, h);
    roo__buf_append(b, payload, n);
}

/*
 * A reader as the engine runs one: append what arrived to a pending buffer, take every
 * whole frame, keep the tail. Frames taken are recorded (payloads concatenated).
 */
typedef struct reader {
    const roo__framer *f;
    roo__buf pending;
    roo__buf payloads; /* all payloads back to back */
    size_t lens[4096];
    size_t nframes;
} reader;

static void reader_feed(reader *r, const uint8_t *p, size_t n)
{
    size_t off = 0;

    roo__buf_append(&r->pending, p, n);
    for (;;) {
        roo__frame fr;
        int rc = roo__framer_next(r->f, r->pending.data + off, r->pending.len - off, &fr);
        if (rc == ROO__FRAME_AGAIN)
            break;
        ck_assert_int_eq(rc, ROO__FRAME_OK);
        ck_assert_uint_gt(fr.frame_len, 0);
        ck_assert_uint_le(fr.payload_off + fr.payload_len, fr.frame_len);
        ck_assert_uint_lt(r->nframes, ROO__ARRAY_SIZE(r->lens));
        roo__buf_append(&r->payloads, r->pending.data + off + fr.payload_off, fr.payload_len);
        r->lens[r->nframes++] = fr.payload_len;
        off += fr.frame_len;
    }
    roo__buf_consume(&r->pending, off);
}

static void reader_reset(reader *r)
{
    r->pending.len = 0;
    r->payloads.len = 0;
    r->nframes = 0;
}

static void reader_finish(reader *r)
{
    roo__buf_finish(&r->pending);
    roo__buf_finish(&r->payloads);
}

/* The frames a reader took equal `want` (a reader fed the whole stream in one go). */
static void assert_same_frames(const reader *got, const reader *want, const char *what,
                               size_t split)
{
    ck_assert_msg(got->nframes == want->nframes, "%s split %zu: %zu frames, want %zu", what, split,
                  got->nframes, want->nframes);
    for (size_t i = 0; i < want->nframes; i++)
        ck_assert_msg(got->lens[i] == want->lens[i],
                      "%s split %zu: frame %zu has %zu bytes, want %zu", what, split, i,
                      got->lens[i], want->lens[i]);
    ck_assert_uint_eq(got->payloads.len, want->payloads.len);
    ck_assert_msg(memcmp(got->payloads.data, want->payloads.data, want->payloads.len) == 0,
                  "%s split %zu: payload bytes differ", what, split);
    ck_assert_uint_eq(got->pending.len, 0);
}

/* Feed `stream` byte by byte and in every 2-way split; each must give the frames of `want`. */
static void check_every_split(const roo__framer *f, const uint8_t *stream, size_t len,
                              const reader *want, const char *what)
{
    reader r = { .f = f };

    for (size_t i = 0; i < len; i++)
        reader_feed(&r, stream + i, 1);
    assert_same_frames(&r, want, what, SIZE_MAX);

    for (size_t k = 0; k <= len; k++) {
        reader_reset(&r);
        reader_feed(&r, stream, k);
        reader_feed(&r, stream + k, len - k);
        assert_same_frames(&r, want, what, k);
    }
    reader_finish(&r);
}

/* ---- set-up ---- */

START_TEST(framer_init_accepts_only_valid_header_lengths)
{
    roo__framer f;

    for (unsigned h = 0; h <= 9; h++) {
        roo_source src = { .framing = ROO_FRAMING_LENGTH, .header_len = h };
        bool valid = h == 0 || h == 1 || h == 2 || h == 4 || h == 8;
        int rc = roo__framer_init(&f, &src, 100);
        ck_assert_msg(valid ? rc == 0 : rc == -EINVAL, "header_len %u gave %d", h, rc);
        if (valid)
            ck_assert_uint_eq(f.header_len, h == 0 ? 4 : h);
    }
}
END_TEST

START_TEST(framer_init_rejects_zero_max_frame_and_unknown_framing)
{
    roo__framer f;
    roo_source len_src = { .framing = ROO_FRAMING_LENGTH, .header_len = 4 };
    roo_source bad_src = { .framing = (roo_framing)7 };

    ck_assert_int_eq(roo__framer_init(&f, &len_src, 0), -EINVAL);
    ck_assert_int_eq(roo__framer_init(&f, &bad_src, 100), -EINVAL);
}
END_TEST

/* ---- length framing ---- */

START_TEST(length_frame_parses_for_every_header_len_and_byte_order)
{
    uint8_t buf[8 + 300], payload[300];

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            /* 0x0102 tells the byte orders apart; a 1-byte header holds at most 255. */
            size_t n = h == 1 ? 0xAB : 0x0102;
            roo__framer f = make_length_framer(h, le, 1000);
            roo__frame fr;

            put_header(buf, h, le, n);
            memcpy(buf + h, payload, n);
            ck_assert_int_eq(roo__framer_next(&f, buf, h + n, &fr), ROO__FRAME_OK);
            ck_assert_uint_eq(fr.payload_off, h);
            ck_assert_uint_eq(fr.payload_len, n);
            ck_assert_uint_eq(fr.frame_len, h + n);
            ck_assert_mem_eq(buf + fr.payload_off, payload, n);

            /* Extra bytes after the frame are not part of it. */
            ck_assert_int_eq(roo__framer_next(&f, buf, sizeof(buf), &fr), ROO__FRAME_OK);
            ck_assert_uint_eq(fr.frame_len, h + n);
        }
    }
}
END_TEST

START_TEST(length_header_value_honours_byte_order)
{
    static const uint8_t bytes[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
    static const uint64_t want_be[] = { 0x01, 0x0102, 0x01020304, 0x0102030405060708ull };
    static const uint64_t want_le[] = { 0x01, 0x0201, 0x04030201, 0x0807060504030201ull };

    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        roo__framer be = make_length_framer(header_lens[hi], false, 1);
        roo__framer le = make_length_framer(header_lens[hi], true, 1);
        ck_assert_uint_eq(roo__framer_header_value(&be, bytes), want_be[hi]);
        ck_assert_uint_eq(roo__framer_header_value(&le, bytes), want_le[hi]);
    }
}
END_TEST

START_TEST(partial_header_returns_again)
{
    uint8_t buf[8];

    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            roo__framer f = make_length_framer(h, le, 100);
            roo__frame fr;

            put_header(buf, h, le, 3);
            for (size_t have = 0; have < h; have++)
                ck_assert_int_eq(roo__framer_next(&f, buf, have, &fr), ROO__FRAME_AGAIN);
        }
    }
}
END_TEST

START_TEST(partial_payload_returns_again_until_complete)
{
    uint8_t buf[8 + 10] = { 0 };

    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            roo__framer f = make_length_framer(h, le, 100);
            roo__frame fr;

            put_header(buf, h, le, 10);
            for (size_t have = h; have < h + 10; have++)
                ck_assert_int_eq(roo__framer_next(&f, buf, have, &fr), ROO__FRAME_AGAIN);
            ck_assert_int_eq(roo__framer_next(&f, buf, h + 10, &fr), ROO__FRAME_OK);
            ck_assert_uint_eq(fr.payload_len, 10);
        }
    }
}
END_TEST

START_TEST(zero_length_payload_is_a_valid_frame)
{
    uint8_t buf[3 * 8] = { 0 };

    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            roo__framer f = make_length_framer(h, le, 100);
            roo__frame fr;
            size_t off = 0;

            /* Three empty frames back to back. */
            for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(roo__framer_next(&f, buf + off, 3 * h - off, &fr), ROO__FRAME_OK);
                ck_assert_uint_eq(fr.payload_len, 0);
                ck_assert_uint_eq(fr.payload_off, h);
                ck_assert_uint_eq(fr.frame_len, h);
                off += fr.frame_len;
            }
            ck_assert_int_eq(roo__framer_next(&f, buf + off, 0, &fr), ROO__FRAME_AGAIN);
        }
    }
}
END_TEST

START_TEST(length_of_exactly_max_frame_is_accepted)
{
    enum { MAX = 200 };
    uint8_t buf[8 + MAX];

    memset(buf, 'p', sizeof(buf));
    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            roo__framer f = make_length_framer(h, le, MAX);
            roo__frame fr;

            put_header(buf, h, le, MAX);
            /* Only the header so far: not an error, just incomplete. */
            ck_assert_int_eq(roo__framer_next(&f, buf, h, &fr), ROO__FRAME_AGAIN);
            ck_assert_int_eq(roo__framer_next(&f, buf, h + MAX, &fr), ROO__FRAME_OK);
            ck_assert_uint_eq(fr.payload_len, MAX);
            ck_assert_uint_eq(fr.frame_len, h + MAX);
        }
    }
}
END_TEST

START_TEST(length_of_max_frame_plus_one_is_rejected)
{
    enum { MAX = 200 };
    uint8_t buf[8 + MAX + 1];

    memset(buf, 'p', sizeof(buf));
    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            roo__framer f = make_length_framer(h, le, MAX);
            roo__frame fr;

            put_header(buf, h, le, MAX + 1);
            /* Rejected as soon as the header is complete, before the payload arrives. */
            ck_assert_int_eq(roo__framer_next(&f, buf, h, &fr), ROO_EFRAMESIZE);
            ck_assert_uint_eq(fr.payload_len, MAX + 1);
            ck_assert_int_eq(roo__framer_next(&f, buf, h + MAX + 1, &fr), ROO_EFRAMESIZE);
            ck_assert_uint_eq(fr.payload_len, MAX + 1);
        }
    }
}
END_TEST

START_TEST(length_0xffffffff_is_rejected)
{
    uint8_t buf[8];
    roo__frame fr;

    for (int le = 0; le <= 1; le++) {
        roo__framer f = make_length_framer(4, le, ROO_MSG_MAX);
        put_header(buf, 4, le, 0xFFFFFFFFu);
        ck_assert_int_eq(roo__framer_next(&f, buf, 4, &fr), ROO_EFRAMESIZE);
        ck_assert_uint_eq(fr.payload_len, 0xFFFFFFFFu);
    }
    for (int le = 0; le <= 1; le++) {
        roo__framer f = make_length_framer(8, le, ROO_MSG_MAX);
        memset(buf, 0xFF, 8);
        ck_assert_int_eq(roo__framer_next(&f, buf, 8, &fr), ROO_EFRAMESIZE);
        ck_assert_uint_eq(fr.payload_len, (size_t)ROO__MIN(UINT64_MAX, (uint64_t)SIZE_MAX));
    }
}
END_TEST

START_TEST(length_frame_split_at_every_byte_yields_same_frames)
{
    uint8_t payload[300];
    roo__buf stream = { 0 };

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i ^ 0x5A);
    for (size_t hi = 0; hi < ROO__ARRAY_SIZE(header_lens); hi++) {
        for (int le = 0; le <= 1; le++) {
            unsigned h = header_lens[hi];
            roo__framer f = make_length_framer(h, le, 255);
            reader want = { .f = &f };
            char what[32];
            size_t nframes = 0;

            /* Many frames, including empty ones and one of exactly max_frame. */
            stream.len = 0;
            for (size_t n = 0; n <= 255; n = n * 2 + 1, nframes++) {
                append_frame(&stream, h, le, payload + n % 7, n);
                append_frame(&stream, h, le, payload, 0);
                nframes++;
            }
            append_frame(&stream, h, le, payload, 255);
            nframes++;

            reader_feed(&want, stream.data, stream.len);
            ck_assert_uint_eq(want.nframes, nframes);
            snprintf(what, sizeof(what), "h=%u %s", h, le ? "le" : "be");
            check_every_split(&f, stream.data, stream.len, &want, what);
            reader_finish(&want);
        }
    }
    roo__buf_finish(&stream);
}
END_TEST

/* ---- line framing ---- */

static int line_next(const roo__framer *f, const char *s, roo__frame *fr)
{
    return roo__framer_next(f, (const uint8_t *)s, strlen(s), fr);
}

/* A run of same-length frames ends exactly at a frame of another length, at a partial
 * frame, and at the count asked for; its payloads are where the frame-by-frame framer
 * puts them. */
START_TEST(same_length_run_stops_at_another_length_a_partial_frame_or_the_count)
{
    uint8_t buf[9 * 10 + 10 + 9 + 5];
    roo_frame frs[16];
    size_t at = 0;

    for (int i = 0; i < 10; i++) { /* ten frames of 5 bytes */
        put_header(buf + at, 4, false, 5);
        memset(buf + at + 4, 'a' + i, 5);
        at += 9;
    }
    put_header(buf + at, 4, false, 6); /* one of 6 */
    memset(buf + at + 4, 'z', 6);
    at += 10;
    put_header(buf + at, 4, false, 5); /* a 5 again, then a partial one */
    memset(buf + at + 4, 'q', 5);
    at += 9;
    put_header(buf + at, 4, false, 5);
    buf[at + 4] = 'p';
    at += 5;
    ck_assert_uint_eq(at, sizeof(buf));

    ck_assert_uint_eq(roo__framer_run_be32(buf, sizeof(buf), 5, 16, frs), 10);
    for (int i = 0; i < 10; i++) {
        ck_assert_ptr_eq(frs[i].payload, buf + 9 * i + 4);
        ck_assert_uint_eq(frs[i].len, 5);
    }
    ck_assert_uint_eq(roo__framer_run_be32(buf, sizeof(buf), 5, 4, frs), 4);
    ck_assert_uint_eq(roo__framer_run_be32(buf, sizeof(buf), 5, 0, frs), 0);
    ck_assert_uint_eq(roo__framer_run_be32(buf, sizeof(buf), 6, 16, NULL), 0);
    /* after the 6: one whole 5, then the partial one is left to the framer */
    ck_assert_uint_eq(roo__framer_run_be32(buf + 100, sizeof(buf) - 100, 5, 16, frs), 1);
    ck_assert_ptr_eq(frs[0].payload, buf + 104);
    /* a buffer shorter than one frame */
    ck_assert_uint_eq(roo__framer_run_be32(buf, 8, 5, 16, frs), 0);
}
END_TEST

START_TEST(line_ending_lf_and_crlf_are_stripped)
{
    roo__framer f = make_line_framer(100);
    roo__frame fr;

    ck_assert_int_eq(line_next(&f, "abc\nrest", &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_off, 0);
    ck_assert_uint_eq(fr.payload_len, 3);
    ck_assert_uint_eq(fr.frame_len, 4);

    ck_assert_int_eq(line_next(&f, "abc\r\nrest", &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_len, 3);
    ck_assert_uint_eq(fr.frame_len, 5);

    /* Only a '\r' right before the '\n' is dropped. */
    ck_assert_int_eq(line_next(&f, "a\rb\n", &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_len, 3);
}
END_TEST

START_TEST(empty_line_is_a_zero_length_frame)
{
    roo__framer f = make_line_framer(100);
    roo__frame fr;

    ck_assert_int_eq(line_next(&f, "\n", &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_len, 0);
    ck_assert_uint_eq(fr.frame_len, 1);

    ck_assert_int_eq(line_next(&f, "\r\nx\n", &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_len, 0);
    ck_assert_uint_eq(fr.frame_len, 2);
}
END_TEST

START_TEST(line_of_exactly_max_frame_is_accepted)
{
    enum { MAX = 16 };
    roo__framer f = make_line_framer(MAX);
    roo__frame fr;
    char line[MAX + 3];

    memset(line, 'x', MAX);
    memcpy(line + MAX, "\n", 2);
    ck_assert_int_eq(line_next(&f, line, &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_len, MAX);
    ck_assert_uint_eq(fr.frame_len, MAX + 1);

    memcpy(line + MAX, "\r\n", 3);
    ck_assert_int_eq(line_next(&f, line, &fr), ROO__FRAME_OK);
    ck_assert_uint_eq(fr.payload_len, MAX);
    ck_assert_uint_eq(fr.frame_len, MAX + 2);
}
END_TEST

START_TEST(line_of_max_frame_plus_one_is_rejected)
{
    enum { MAX = 16 };
    roo__framer f = make_line_framer(MAX);
    roo__frame fr;
    char line[MAX + 4];

    memset(line, 'x', MAX + 1);
    memcpy(line + MAX + 1, "\n", 2);
    ck_assert_int_eq(line_next(&f, line, &fr), ROO_EFRAMESIZE);
    ck_assert_uint_eq(fr.payload_len, MAX + 1);

    /* With "\r\n" the newline lies beyond what the framer scans, so it reports the bytes
     * seen (the header allows "the declared or seen size"). */
    memcpy(line + MAX + 1, "\r\n", 3);
    ck_assert_int_eq(line_next(&f, line, &fr), ROO_EFRAMESIZE);
    ck_assert_uint_ge(fr.payload_len, MAX + 1);
}
END_TEST

START_TEST(line_without_newline_yet_returns_again)
{
    enum { MAX = 16 };
    roo__framer f = make_line_framer(MAX);
    roo__frame fr;
    char line[MAX + 2];

    ck_assert_int_eq(roo__framer_next(&f, (const uint8_t *)"", 0, &fr), ROO__FRAME_AGAIN);
    ck_assert_int_eq(line_next(&f, "abc", &fr), ROO__FRAME_AGAIN);
    ck_assert_int_eq(line_next(&f, "abc\r", &fr), ROO__FRAME_AGAIN);
    /* A full-size line whose "\r\n" has not arrived yet may still be valid. */
    memset(line, 'x', MAX);
    line[MAX] = '\0';
    ck_assert_int_eq(line_next(&f, line, &fr), ROO__FRAME_AGAIN);
    line[MAX] = '\r';
    line[MAX + 1] = '\0';
    ck_assert_int_eq(line_next(&f, line, &fr), ROO__FRAME_AGAIN);
}
END_TEST

START_TEST(long_line_without_newline_over_the_limit_is_rejected)
{
    enum { MAX = 16 };
    roo__framer f = make_line_framer(MAX);
    roo__frame fr;
    char line[1001];

    /* max_frame + 2 bytes without '\n' can no longer be a valid line. */
    memset(line, 'x', MAX + 2);
    line[MAX + 2] = '\0';
    ck_assert_int_eq(line_next(&f, line, &fr), ROO_EFRAMESIZE);
    ck_assert_uint_eq(fr.payload_len, MAX + 2);

    memset(line, 'x', 1000);
    line[1000] = '\0';
    ck_assert_int_eq(line_next(&f, line, &fr), ROO_EFRAMESIZE);
    ck_assert_uint_eq(fr.payload_len, 1000);

    /* A newline beyond the limit does not help. */
    line[500] = '\n';
    ck_assert_int_eq(line_next(&f, line, &fr), ROO_EFRAMESIZE);
}
END_TEST

START_TEST(line_frame_split_at_every_byte_yields_same_frames)
{
    static const char *const lines[] = {
        "hello\n",
        "\n",
        "\r\n",
        "world\r\n",
        "a\rb\n",
        "0123456789abcdef\n",
        "0123456789abcdef\r\n",
        "x\n",
        "",
        "tab\there\n",
        "\n",
        "last line\r\n",
    };
    roo__framer f = make_line_framer(16);
    reader want = { .f = &f };
    roo__buf stream = { 0 };

    for (int rep = 0; rep < 4; rep++)
        for (size_t i = 0; i < ROO__ARRAY_SIZE(lines); i++)
            roo__buf_append(&stream, lines[i], strlen(lines[i]));
    reader_feed(&want, stream.data, stream.len);
    ck_assert_uint_eq(want.nframes, 4 * (ROO__ARRAY_SIZE(lines) - 1));
    ck_assert_uint_eq(want.lens[0], 5);
    ck_assert_uint_eq(want.lens[1], 0);
    ck_assert_uint_eq(want.lens[2], 0);
    ck_assert_uint_eq(want.lens[3], 5);
    ck_assert_uint_eq(want.lens[5], 16);
    ck_assert_uint_eq(want.lens[6], 16);
    check_every_split(&f, stream.data, stream.len, &want, "lines");
    reader_finish(&want);
    roo__buf_finish(&stream);
}
END_TEST

static Suite *framer_suite(void)
{
    Suite *s = suite_create("framer");
    TCase *tc;

    tc = roo_test_tcase("init", 10);
    tcase_add_test(tc, framer_init_accepts_only_valid_header_lengths);
    tcase_add_test(tc, framer_init_rejects_zero_max_frame_and_unknown_framing);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("length", 30);
    tcase_add_test(tc, length_frame_parses_for_every_header_len_and_byte_order);
    tcase_add_test(tc, length_header_value_honours_byte_order);
    tcase_add_test(tc, partial_header_returns_again);
    tcase_add_test(tc, partial_payload_returns_again_until_complete);
    tcase_add_test(tc, zero_length_payload_is_a_valid_frame);
    tcase_add_test(tc, length_of_exactly_max_frame_is_accepted);
    tcase_add_test(tc, length_of_max_frame_plus_one_is_rejected);
    tcase_add_test(tc, length_0xffffffff_is_rejected);
    tcase_add_test(tc, length_frame_split_at_every_byte_yields_same_frames);
    tcase_add_test(tc, same_length_run_stops_at_another_length_a_partial_frame_or_the_count);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("line", 30);
    tcase_add_test(tc, line_ending_lf_and_crlf_are_stripped);
    tcase_add_test(tc, empty_line_is_a_zero_length_frame);
    tcase_add_test(tc, line_of_exactly_max_frame_is_accepted);
    tcase_add_test(tc, line_of_max_frame_plus_one_is_rejected);
    tcase_add_test(tc, line_without_newline_yet_returns_again);
    tcase_add_test(tc, long_line_without_newline_over_the_limit_is_rejected);
    tcase_add_test(tc, line_frame_split_at_every_byte_yields_same_frames);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(framer_suite());
}
