/* test_wire.c: WorkerMeta survives an encode/decode round trip, and malformed or oversize
 * encodings are refused with ROO_EWIRE; so do a worker's figures (WorkerStats), and a peer's
 * that do not fit what a worker keeps are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "roo_test.h"
#include "wire/wire.h"

static void assert_meta_eq(const roo__meta *a, const roo__meta *b)
{
    ck_assert_uint_eq(a->format_version, b->format_version);
    ck_assert_str_eq(a->app_name, b->app_name);
    ck_assert_str_eq(a->worker_name, b->worker_name);
    ck_assert_uint_eq(a->partitions, b->partitions);
    ck_assert_str_eq(a->roo_version, b->roo_version);
    ck_assert_uint_eq(a->created_unix_ms, b->created_unix_ms);
    ck_assert_uint_eq(a->nstate_names, b->nstate_names);
    for (size_t i = 0; i < a->nstate_names; i++)
        ck_assert_str_eq(a->state_names[i], b->state_names[i]);
}

START_TEST(meta_round_trips_with_several_state_names)
{
    char *names[] = { "letter-totals", "word.counts", "x", "",
                      "a-much-longer_state.name-0123456789" };
    roo__meta in = {
        .format_version = ROO__FORMAT_VERSION,
        .app_name = "alphabet",
        .worker_name = "worker-2",
        .partitions = 65535,
        .state_names = names,
        .nstate_names = ROO__ARRAY_SIZE(names),
        .roo_version = ROO_VERSION_STRING,
        .created_unix_ms = 0xFEDCBA9876543210ull,
    };
    roo__buf b = { 0 };
    roo__meta out;

    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_uint_gt(b.len, 0);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    assert_meta_eq(&in, &out);
    /* The decoded strings are copies, owned by out. */
    ck_assert_ptr_ne(out.app_name, in.app_name);
    roo__wire_meta_finish(&out);
    ck_assert_ptr_null(out.app_name);
    ck_assert_uint_eq(out.nstate_names, 0);
    roo__buf_finish(&b);
}
END_TEST

START_TEST(meta_round_trips_with_no_state_names_and_zero_values)
{
    roo__meta in = { .app_name = "a", .worker_name = "w", .roo_version = "" };
    roo__buf b = { 0 };
    roo__meta out;

    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    assert_meta_eq(&in, &out);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
}
END_TEST

START_TEST(encode_appends_to_what_the_buffer_holds)
{
    char *names[] = { "s" };
    roo__meta in = { .format_version = 1,
                     .app_name = "app",
                     .worker_name = "w",
                     .partitions = 8,
                     .state_names = names,
                     .nstate_names = 1,
                     .roo_version = "0.1.0",
                     .created_unix_ms = 5 };
    roo__buf b = { 0 };
    roo__meta out;

    roo__buf_append(&b, "XYZ", 3);
    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_mem_eq(b.data, "XYZ", 3);
    ck_assert_int_eq(roo__wire_meta_decode(b.data + 3, b.len - 3, &out), 0);
    assert_meta_eq(&in, &out);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
}
END_TEST

START_TEST(empty_encoding_decodes_to_defaults)
{
    roo__meta out;

    /* proto3: every field absent is its default. */
    ck_assert_int_eq(roo__wire_meta_decode((const uint8_t *)"", 0, &out), 0);
    ck_assert_uint_eq(out.format_version, 0);
    ck_assert_str_eq(out.app_name, "");
    ck_assert_str_eq(out.worker_name, "");
    ck_assert_uint_eq(out.nstate_names, 0);
    roo__wire_meta_finish(&out);
}
END_TEST

START_TEST(garbage_bytes_are_rejected_with_ewire)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } bad[] = {
        { "all ones", "\xff\xff\xff\xff", 4 },
        { "field number 0", "\x00\x01", 2 },
        { "string field sent as varint", "\x10\x01", 2 },
        { "string longer than the input",
          "\x12\x05"
          "ab",
          4 },
        { "truncated varint", "\x08\x80", 2 },
        { "group wire type", "\x0b", 1 },
        { "plain text", "hello world, not protobuf", 25 },
    };

    for (size_t i = 0; i < ROO__ARRAY_SIZE(bad); i++) {
        roo__meta out;
        int rc = roo__wire_meta_decode((const uint8_t *)bad[i].bytes, bad[i].len, &out);
        if (rc == 0)
            roo__wire_meta_finish(&out);
        ck_assert_msg(rc == ROO_EWIRE, "%s: decode gave %d", bad[i].what, rc);
    }
}
END_TEST

START_TEST(truncated_encoding_is_rejected_with_ewire)
{
    char *names[] = { "state-one", "state-two" };
    roo__meta in = { .format_version = 1,
                     .app_name = "alphabet",
                     .worker_name = "initializer",
                     .partitions = 256,
                     .state_names = names,
                     .nstate_names = 2,
                     .roo_version = "0.1.0",
                     .created_unix_ms = 1700000000000ull };
    roo__buf b = { 0 };
    size_t rejected = 0;

    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    /* Cutting the encoding inside a field must never decode as something else silently;
     * cuts at a field boundary decode as a shorter message, which protobuf allows. */
    for (size_t cut = 1; cut < b.len; cut++) {
        roo__meta out;
        int rc = roo__wire_meta_decode(b.data, cut, &out);
        ck_assert_msg(rc == 0 || rc == ROO_EWIRE, "cut %zu gave %d", cut, rc);
        if (rc == 0)
            roo__wire_meta_finish(&out);
        else
            rejected++;
    }
    ck_assert_uint_gt(rejected, b.len / 2);
    roo__buf_finish(&b);
}
END_TEST

/* Bytes of a protobuf varint for n. */
static size_t varint_len(size_t n)
{
    size_t k = 1;
    while (n >= 0x80) {
        n >>= 7;
        k++;
    }
    return k;
}

static size_t put_varint(uint8_t *p, size_t n)
{
    size_t k = 0;
    while (n >= 0x80) {
        p[k++] = (uint8_t)(n | 0x80);
        n >>= 7;
    }
    p[k++] = (uint8_t)n;
    return k;
}

/* The name length that makes one state_names field exactly `total` bytes long. */
static size_t name_len_for(size_t total)
{
    size_t n = total - 1 - varint_len(total);
    while (1 + varint_len(n) + n > total)
        n--;
    while (1 + varint_len(n + 1) + n + 1 <= total)
        n++;
    return n;
}

START_TEST(meta_of_exactly_meta_max_is_accepted)
{
    /* One state name filling the limit: tag (1) + varint length + name. */
    size_t n = name_len_for(ROO__META_MAX);
    char *name = malloc(n + 1);
    char *names[] = { name };
    roo__meta in = { .app_name = "",
                     .worker_name = "",
                     .roo_version = "",
                     .state_names = names,
                     .nstate_names = 1 };
    roo__buf b = { 0 };
    roo__meta out;

    memset(name, 'n', n);
    name[n] = '\0';
    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), 0);
    ck_assert_uint_eq(b.len, ROO__META_MAX);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    ck_assert_uint_eq(out.nstate_names, 1);
    ck_assert_uint_eq(strlen(out.state_names[0]), n);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
    free(name);
}
END_TEST

START_TEST(meta_over_meta_max_is_rejected_both_ways)
{
    size_t n = name_len_for(ROO__META_MAX) + 1; /* one byte too many */
    char *name = malloc(n + 1);
    char *names[] = { name };
    roo__meta in = { .app_name = "",
                     .worker_name = "",
                     .roo_version = "",
                     .state_names = names,
                     .nstate_names = 1 };
    roo__buf b = { 0 };
    roo__meta out;
    uint8_t hdr[16];
    size_t h;

    memset(name, 'n', n);
    name[n] = '\0';
    /* Encoding refuses and leaves the buffer as it was. */
    roo__buf_append(&b, "pre", 3);
    ck_assert_int_eq(roo__wire_meta_encode(&in, &b), ROO_EWIRE);
    ck_assert_uint_eq(b.len, 3);

    /* A well-formed encoding over the limit is refused before protobuf-c sees it. */
    b.len = 0;
    hdr[0] = 5 << 3 | 2; /* state_names: field 5, length-delimited */
    h = 1 + put_varint(hdr + 1, n);
    roo__buf_append(&b, hdr, h);
    roo__buf_append(&b, name, n);
    ck_assert_uint_eq(b.len, ROO__META_MAX + 1);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), ROO_EWIRE);
    /* The same field with one name byte less is fine. */
    b.len = 0;
    h = 1 + put_varint(hdr + 1, n - 1);
    roo__buf_append(&b, hdr, h);
    roo__buf_append(&b, name, n - 1);
    ck_assert_uint_le(b.len, ROO__META_MAX);
    ck_assert_int_eq(roo__wire_meta_decode(b.data, b.len, &out), 0);
    roo__wire_meta_finish(&out);
    roo__buf_finish(&b);
    free(name);
}
END_TEST

/* ---- WorkerStats: the figures of roo-ctl status, top and targets ---- */

static void fill_stats(roo__worker_stats *s, const char *name, uint64_t k)
{
    memset(s, 0, sizeof(*s));
    s->name = (char *)name;
    s->frames_in = 1000 + k;
    s->records_out = 900 + k;
    s->ready = true;
    snprintf(s->version, sizeof(s->version), "%s", ROO_VERSION_STRING);
    s->uptime_ms = 123456 + k;
    snprintf(s->metrics_address, sizeof(s->metrics_address), "127.0.0.1:%u", 5001u + (unsigned)k);
    s->sinks = 3;
    s->sinks_connected = 2;
    s->held_bytes = 1ull << 40;
    s->undelivered_bytes = (1ull << 40) + 17;
    s->callback_errors = 5 + k;
    s->decoder_rejections = 7 + k;
    s->frames_in_rate = 1234.5;
    s->records_out_rate = 0.25;
    for (unsigned i = 3; i < 20; i++)
        s->latency_bins[i] = i * 1000 + k;
    s->latency_count = 99999;
    s->link_backlog_bytes = 4096;
}

static void assert_stats_eq(const roo__worker_stats *a, const roo__worker_stats *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_uint_eq(a->frames_in, b->frames_in);
    ck_assert_uint_eq(a->records_out, b->records_out);
    ck_assert(a->ready == b->ready);
    ck_assert_str_eq(a->version, b->version);
    ck_assert_uint_eq(a->uptime_ms, b->uptime_ms);
    ck_assert_str_eq(a->metrics_address, b->metrics_address);
    ck_assert_uint_eq(a->sinks, b->sinks);
    ck_assert_uint_eq(a->sinks_connected, b->sinks_connected);
    ck_assert_uint_eq(a->held_bytes, b->held_bytes);
    ck_assert_uint_eq(a->undelivered_bytes, b->undelivered_bytes);
    ck_assert_uint_eq(a->callback_errors, b->callback_errors);
    ck_assert_uint_eq(a->decoder_rejections, b->decoder_rejections);
    ck_assert(a->frames_in_rate == b->frames_in_rate);
    ck_assert(a->records_out_rate == b->records_out_rate);
    for (unsigned i = 0; i < ROO__HIST_BINS; i++)
        ck_assert_uint_eq(a->latency_bins[i], b->latency_bins[i]);
    ck_assert_uint_eq(a->latency_count, b->latency_count);
    ck_assert_uint_eq(a->link_backlog_bytes, b->link_backlog_bytes);
}

/* Encode m as a control frame and decode its payload again. */
static int ctl_round_trip(const roo__ctl *m, roo__ctl *ret_out)
{
    roo__buf b = { 0 };
    int rc = roo__wire_ctl_encode(m, &b);

    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(roo__load_be32(b.data), b.len - ROO__FRAME_HDR);
    rc = roo__wire_ctl_decode(b.data + ROO__FRAME_HDR, b.len - ROO__FRAME_HDR, ret_out);
    roo__buf_finish(&b);
    return rc;
}

START_TEST(heartbeat_stats_round_trip_with_every_field)
{
    roo__worker_stats in;
    roo__ctl m = { .kind = ROO__CTL_HEARTBEAT, .stats = &in, .nstats = 1 }, out;

    fill_stats(&in, "worker-1", 0);
    ck_assert_int_eq(ctl_round_trip(&m, &out), 0);
    ck_assert_int_eq(out.kind, ROO__CTL_HEARTBEAT);
    ck_assert_uint_eq(out.nstats, 1);
    assert_stats_eq(&in, &out.stats[0]);
    roo__wire_ctl_finish(&out);
}
END_TEST

START_TEST(status_reply_keeps_each_workers_figures_and_the_top_bins)
{
    roo__worker_stats in[3];
    roo__ctl m = { .kind = ROO__CTL_STATUS_REPLY, .query_id = 42, .stats = in, .nstats = 3 };
    roo__ctl out;

    fill_stats(&in[0], "initializer", 0);
    fill_stats(&in[1], "worker1", 1);
    fill_stats(&in[2], "worker2", 2);
    /* The last bin (over ~67 s) filled: nothing is trimmed; an empty histogram: all zero. */
    in[1].latency_bins[ROO__HIST_BINS - 1] = 3;
    memset(in[2].latency_bins, 0, sizeof(in[2].latency_bins));
    in[2].metrics_address[0] = 0;
    ck_assert_int_eq(ctl_round_trip(&m, &out), 0);
    ck_assert_uint_eq(out.query_id, 42);
    ck_assert_uint_eq(out.nstats, 3);
    for (int i = 0; i < 3; i++)
        assert_stats_eq(&in[i], &out.stats[i]);
    roo__wire_ctl_finish(&out);
}
END_TEST

/* Hand-made protobuf, for what roo's own encoder never writes. */
static void pb_varint(roo__buf *b, uint64_t v)
{
    uint8_t c;

    do {
        c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            c |= 0x80;
        roo__buf_append(b, &c, 1);
    } while (v);
}

static void pb_bytes(roo__buf *b, unsigned field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    roo__buf_append(b, p, n);
}

static void pb_double(roo__buf *b, unsigned field, double v)
{
    uint8_t le[8];
    uint64_t u;

    memcpy(&u, &v, sizeof(u));
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(u >> (8 * i));
    pb_varint(b, (uint64_t)field << 3 | 1);
    roo__buf_append(b, le, sizeof(le));
}

/* A Heartbeat ControlMsg around the WorkerStats bytes in stats; decoded, its result. */
static int decode_heartbeat(const roo__buf *stats, roo__ctl *ret_out)
{
    roo__buf hb = { 0 }, msg = { 0 };
    int rc;

    pb_bytes(&hb, 1, stats->data, stats->len); /* Heartbeat.stats */
    pb_bytes(&msg, 6, hb.data, hb.len);        /* ControlMsg.heartbeat */
    rc = roo__wire_ctl_decode(msg.data, msg.len, ret_out);
    roo__buf_finish(&hb);
    roo__buf_finish(&msg);
    return rc;
}

/* WorkerStats{name: "w", latency_bins: n entries, each its index + 1}. */
static int decode_bins(size_t n, roo__ctl *ret_out)
{
    roo__buf st = { 0 }, packed = { 0 };
    int rc;

    pb_bytes(&st, 1, "w", 1);
    for (size_t i = 0; i < n; i++)
        pb_varint(&packed, i + 1);
    pb_bytes(&st, 22, packed.data, packed.len);
    rc = decode_heartbeat(&st, ret_out);
    roo__buf_finish(&st);
    roo__buf_finish(&packed);
    return rc;
}

START_TEST(latency_bins_beyond_the_histograms_are_refused)
{
    roo__ctl out;

    ck_assert_int_eq(decode_bins(ROO__HIST_BINS, &out), 0);
    ck_assert_uint_eq(out.stats[0].latency_bins[0], 1);
    ck_assert_uint_eq(out.stats[0].latency_bins[ROO__HIST_BINS - 1], ROO__HIST_BINS);
    roo__wire_ctl_finish(&out);
    ck_assert_int_eq(decode_bins(ROO__HIST_BINS + 1, &out), ROO_EWIRE);
    ck_assert_int_eq(decode_bins(100000, &out), ROO_EWIRE);
}
END_TEST

/* WorkerStats{name: "w", field: a string of n 'v's}. */
static int decode_string(unsigned field, size_t n, roo__ctl *ret_out)
{
    roo__buf st = { 0 };
    char *text = malloc(n + 1);
    int rc;

    memset(text, 'v', n);
    pb_bytes(&st, 1, "w", 1);
    pb_bytes(&st, field, text, n);
    rc = decode_heartbeat(&st, ret_out);
    roo__buf_finish(&st);
    free(text);
    return rc;
}

START_TEST(strings_longer_than_kept_are_refused)
{
    roo__ctl out;

    ck_assert_int_eq(decode_string(11, ROO__STATS_VERSION_CAP - 1, &out), 0);
    ck_assert_uint_eq(strlen(out.stats[0].version), ROO__STATS_VERSION_CAP - 1);
    roo__wire_ctl_finish(&out);
    ck_assert_int_eq(decode_string(11, ROO__STATS_VERSION_CAP, &out), ROO_EWIRE);
    ck_assert_int_eq(decode_string(13, ROO__STATS_ADDR_CAP - 1, &out), 0);
    ck_assert_uint_eq(strlen(out.stats[0].metrics_address), ROO__STATS_ADDR_CAP - 1);
    roo__wire_ctl_finish(&out);
    ck_assert_int_eq(decode_string(13, ROO__STATS_ADDR_CAP, &out), ROO_EWIRE);
    ck_assert_int_eq(decode_string(13, 1u << 20, &out), ROO_EWIRE);
}
END_TEST

static int decode_rate(unsigned field, double v, roo__ctl *ret_out)
{
    roo__buf st = { 0 };
    int rc;

    pb_bytes(&st, 1, "w", 1);
    pb_double(&st, field, v);
    rc = decode_heartbeat(&st, ret_out);
    roo__buf_finish(&st);
    return rc;
}

START_TEST(rates_that_are_not_finite_and_positive_are_refused)
{
    const double bad[] = { NAN, INFINITY, -INFINITY, -1, -1e-300 };
    roo__ctl out;

    for (unsigned field = 20; field <= 21; field++) {
        ck_assert_int_eq(decode_rate(field, 2.5e6, &out), 0);
        ck_assert(field == 20 ? out.stats[0].frames_in_rate == 2.5e6
                              : out.stats[0].records_out_rate == 2.5e6);
        roo__wire_ctl_finish(&out);
        for (size_t i = 0; i < ROO__ARRAY_SIZE(bad); i++)
            ck_assert_int_eq(decode_rate(field, bad[i], &out), ROO_EWIRE);
    }
}
END_TEST

START_TEST(stream_questions_and_answers_round_trip_and_nothing_else_decodes_as_them)
{
    roo__buf b = { 0 };
    roo__data_kind kind;
    uint64_t id, v;
    int64_t stamp[2] = { 0, 0 };
    uint32_t thread, count;
    uint64_t seq;
    roo__data_hello h;
    roo__buf ev = { 0 };

    ck_assert_int_eq(roo__wire_stream_ask_encode(7, 0xfedcba9876543211ull, &b), 0);
    /* framed: a u32 length, then the DataMsg */
    ck_assert_int_eq(
        roo__wire_data_decode(b.data + 4, b.len - 4, &kind, &h, &thread, &seq, &count, stamp, &ev),
        0);
    ck_assert_int_eq(kind, ROO__DATA_STREAM_ASK);
    ck_assert_int_eq(roo__wire_stream_decode(b.data + 4, b.len - 4, &kind, &id, &v), 0);
    ck_assert_int_eq(kind, ROO__DATA_STREAM_ASK);
    ck_assert_uint_eq(id, 7);
    ck_assert_uint_eq(v, 0xfedcba9876543211ull);
    b.len = 0;
    ck_assert_int_eq(roo__wire_stream_answer_encode(8, 20000, &b), 0);
    ck_assert_int_eq(roo__wire_stream_decode(b.data + 4, b.len - 4, &kind, &id, &v), 0);
    ck_assert_int_eq(kind, ROO__DATA_STREAM_ANSWER);
    ck_assert_uint_eq(id, 8);
    ck_assert_uint_eq(v, 20000);
    /* A batch carries its read stamp; it is no stream message. */
    b.len = 0;
    ck_assert_int_eq(roo__wire_data_batch_encode(1, 2, 0, 1234567, 3, NULL, 0, &b), 0);
    ck_assert_int_eq(
        roo__wire_data_decode(b.data + 4, b.len - 4, &kind, &h, &thread, &seq, &count, stamp, &ev),
        0);
    ck_assert_int_eq(kind, ROO__DATA_BATCH);
    ck_assert_int_eq(stamp[0], 1234567);
    ck_assert_int_eq(stamp[1], 3);
    ck_assert_int_eq(roo__wire_stream_decode(b.data + 4, b.len - 4, &kind, &id, &v), ROO_EWIRE);
    roo__buf_finish(&b);
    roo__buf_finish(&ev);
}
END_TEST

/* Decode the data frame in b (u32 length, then the message; its last cut bytes left off)
 * with its events into ev (NULL: not wanted). */
static int decode_frame(const roo__buf *b, size_t cut, roo__buf *ev, roo__data_kind *ret_kind,
                        uint32_t *ret_thread, uint64_t *ret_seq, uint32_t *ret_count)
{
    roo__data_hello h;
    int64_t stamp[2];

    return roo__wire_data_decode(b->data + 4, b->len - 4 - cut, ret_kind, &h, ret_thread, ret_seq,
                                 ret_count, stamp, ev);
}

/* A batch's events arrive whole: into an empty buffer and appended to one that holds
 * something already. */
START_TEST(batch_events_decode_into_an_empty_buffer_and_append_to_a_full_one)
{
    uint8_t events[3000];
    roo__buf b = { 0 }, ev = { 0 };
    roo__data_kind kind;
    uint32_t thread, count;
    uint64_t seq;

    for (size_t i = 0; i < sizeof(events); i++)
        events[i] = (uint8_t)(i * 7 + 1);
    ck_assert_int_eq(roo__wire_data_batch_encode(4, 9, 100, 55, 0, events, sizeof(events), &b), 0);
    roo__buf_append(&ev, "x", 1);
    ev.len = 0; /* empty, but with a buffer of its own */
    ck_assert_int_eq(decode_frame(&b, 0, &ev, &kind, &thread, &seq, &count), 0);
    ck_assert_int_eq(kind, ROO__DATA_BATCH);
    ck_assert_uint_eq(thread, 4);
    ck_assert_uint_eq(seq, 9);
    ck_assert_uint_eq(count, 100);
    ck_assert_uint_eq(ev.len, sizeof(events));
    ck_assert_mem_eq(ev.data, events, sizeof(events));
    ck_assert_int_eq(decode_frame(&b, 0, &ev, &kind, &thread, &seq, &count), 0);
    ck_assert_uint_eq(ev.len, 2 * sizeof(events));
    ck_assert_mem_eq(ev.data + sizeof(events), events, sizeof(events));
    roo__buf_append(&ev, "y", 1); /* the buffer still grows */
    ck_assert_uint_eq(ev.len, 2 * sizeof(events) + 1);
    roo__buf_finish(&b);
    roo__buf_finish(&ev);
}
END_TEST

/* A batch framed in two pieces (the head, then the events sent from where they lie) is the
 * frame a reader decodes as the whole one: any event length (varints of one to three
 * bytes), the biggest field values, no events. */
START_TEST(batch_head_and_events_read_as_the_whole_frame)
{
    static uint8_t events[200000];
    const size_t lens[] = { 0, 1, 127, 128, 16383, 16384, sizeof(events) };
    const uint32_t threads[] = { 0, 7, UINT32_MAX };
    const uint64_t seqs[] = { 1, 300, UINT64_MAX };

    for (size_t i = 0; i < sizeof(events); i++)
        events[i] = (uint8_t)(i * 29 + 3);
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        for (size_t v = 0; v < 3; v++) {
            uint8_t head[ROO__DATA_BATCH_HEAD_MAX];
            roo__buf whole = { 0 }, two = { 0 }, ev = { 0 };
            roo__data_kind kind;
            roo__data_hello h;
            int64_t stamp[2];
            uint32_t thread, count;
            uint64_t seq;
            size_t hl = 0;

            ck_assert_int_eq(roo__wire_data_batch_head(threads[v], seqs[v], threads[v], -5, 9,
                                                       lens[l], head, &hl),
                             0);
            ck_assert_uint_le(hl, ROO__DATA_BATCH_HEAD_MAX);
            roo__buf_append(&two, head, hl);
            roo__buf_append(&two, events, lens[l]);
            ck_assert_int_eq(roo__wire_data_batch_encode(threads[v], seqs[v], threads[v], -5, 9,
                                                         events, lens[l], &whole),
                             0);
            /* the same size, fields in another order (no events: encode leaves the field out) */
            ck_assert_uint_eq(two.len, whole.len + (lens[l] ? 0 : 2));
            ck_assert_uint_eq(roo__load_be32(two.data), two.len - 4);
            ck_assert_int_eq(roo__wire_data_decode(two.data + 4, two.len - 4, &kind, &h, &thread,
                                                   &seq, &count, stamp, &ev),
                             0);
            ck_assert_int_eq(kind, ROO__DATA_BATCH);
            ck_assert_int_eq(stamp[0], -5);
            ck_assert_int_eq(stamp[1], 9);
            ck_assert_uint_eq(thread, threads[v]);
            ck_assert_uint_eq(seq, seqs[v]);
            ck_assert_uint_eq(count, threads[v]);
            ck_assert_uint_eq(ev.len, lens[l]);
            if (lens[l])
                ck_assert_mem_eq(ev.data, events, lens[l]);
            roo__buf_finish(&whole);
            roo__buf_finish(&two);
            roo__buf_finish(&ev);
        }
    }
}
END_TEST

/* A route buffer keeps its capacity from frame to frame: a big batch's events are unpacked
 * straight into it (no new buffer per frame), a smaller one grows first, a frame cut short
 * leaves it empty and whole, and a caller that wants no events may pass NULL. */
START_TEST(big_batch_events_are_unpacked_into_the_callers_buffer_in_place)
{
    static uint8_t events[200000];
    roo__buf b = { 0 }, ev = { 0 };
    roo__data_kind kind;
    uint32_t thread, count;
    uint64_t seq;
    uint8_t *kept;

    for (size_t i = 0; i < sizeof(events); i++)
        events[i] = (uint8_t)(i * 13 + 5);
    ck_assert_int_eq(roo__wire_data_batch_encode(1, 3, 7, 0, 0, events, sizeof(events), &b), 0);
    /* too small to take the frame: grown first */
    roo__buf_append(&ev, "z", 1);
    ev.len = 0;
    ck_assert_int_eq(decode_frame(&b, 0, &ev, &kind, &thread, &seq, &count), 0);
    ck_assert_int_eq(kind, ROO__DATA_BATCH);
    ck_assert_uint_eq(ev.len, sizeof(events));
    ck_assert_mem_eq(ev.data, events, sizeof(events));
    ck_assert_uint_ge(ev.cap, b.len - 4);
    /* big enough: the same buffer, no other */
    kept = ev.data;
    ev.len = 0;
    memset(ev.data, 0, ev.cap);
    ck_assert_int_eq(decode_frame(&b, 0, &ev, &kind, &thread, &seq, &count), 0);
    ck_assert_ptr_eq(ev.data, kept);
    ck_assert_uint_eq(ev.len, sizeof(events));
    ck_assert_mem_eq(ev.data, events, sizeof(events));
    ck_assert_uint_eq(count, 7);
    /* cut short: refused, the buffer empty and still its own */
    ev.len = 0;
    ck_assert_int_eq(decode_frame(&b, 96, &ev, &kind, &thread, &seq, &count), ROO_EWIRE);
    ck_assert_uint_eq(ev.len, 0);
    ck_assert_ptr_eq(ev.data, kept);
    /* no events wanted */
    ck_assert_int_eq(decode_frame(&b, 0, NULL, &kind, &thread, &seq, &count), 0);
    ck_assert_int_eq(kind, ROO__DATA_BATCH);
    roo__buf_finish(&ev);
    /* a buffer grown for a frame that brings no events keeps no memory of its size: one
     * cut short, and a big message of another kind */
    ck_assert_int_eq(decode_frame(&b, 96, &ev, &kind, &thread, &seq, &count), ROO_EWIRE);
    ck_assert_uint_eq(ev.cap, 0);
    {
        roo__state_chunk c = { .epoch = 1, .partition = 2 };
        roo__buf_append(&c.records, events, sizeof(events));
        b.len = 0;
        ck_assert_int_eq(roo__wire_data_chunk_encode(&c, &b), 0);
        ck_assert_int_eq(decode_frame(&b, 0, &ev, &kind, &thread, &seq, &count), 0);
        ck_assert_int_eq(kind, ROO__DATA_CHUNK);
        ck_assert_uint_eq(ev.len, 0);
        ck_assert_uint_eq(ev.cap, 0);
        roo__buf_finish(&c.records);
    }
    roo__buf_finish(&b);
}
END_TEST

START_TEST(a_status_reply_with_one_bad_worker_is_refused_whole)
{
    roo__buf good = { 0 }, bad = { 0 }, reply = { 0 }, msg = { 0 };
    roo__ctl out;

    pb_bytes(&good, 1, "a", 1);
    pb_bytes(&bad, 1, "b", 1);
    pb_double(&bad, 21, NAN);
    pb_varint(&reply, 1 << 3); /* StatusReply.query_id */
    pb_varint(&reply, 7);
    pb_bytes(&reply, 2, good.data, good.len);
    pb_bytes(&reply, 2, bad.data, bad.len);
    pb_bytes(&reply, 2, good.data, good.len);
    pb_bytes(&msg, 8, reply.data, reply.len); /* ControlMsg.status_reply */
    ck_assert_int_eq(roo__wire_ctl_decode(msg.data, msg.len, &out), ROO_EWIRE);
    roo__buf_finish(&good);
    roo__buf_finish(&bad);
    roo__buf_finish(&reply);
    roo__buf_finish(&msg);
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc;

    tc = roo_test_tcase("meta", 10);
    tcase_add_test(tc, meta_round_trips_with_several_state_names);
    tcase_add_test(tc, meta_round_trips_with_no_state_names_and_zero_values);
    tcase_add_test(tc, encode_appends_to_what_the_buffer_holds);
    tcase_add_test(tc, empty_encoding_decodes_to_defaults);
    tcase_add_test(tc, garbage_bytes_are_rejected_with_ewire);
    tcase_add_test(tc, truncated_encoding_is_rejected_with_ewire);
    tcase_add_test(tc, meta_of_exactly_meta_max_is_accepted);
    tcase_add_test(tc, meta_over_meta_max_is_rejected_both_ways);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("worker stats", 10);
    tcase_add_test(tc, heartbeat_stats_round_trip_with_every_field);
    tcase_add_test(tc, status_reply_keeps_each_workers_figures_and_the_top_bins);
    tcase_add_test(tc, latency_bins_beyond_the_histograms_are_refused);
    tcase_add_test(tc, strings_longer_than_kept_are_refused);
    tcase_add_test(tc, rates_that_are_not_finite_and_positive_are_refused);
    tcase_add_test(tc, a_status_reply_with_one_bad_worker_is_refused_whole);
    tcase_add_test(tc, stream_questions_and_answers_round_trip_and_nothing_else_decodes_as_them);
    tcase_add_test(tc, batch_events_decode_into_an_empty_buffer_and_append_to_a_full_one);
    tcase_add_test(tc, big_batch_events_are_unpacked_into_the_callers_buffer_in_place);
    tcase_add_test(tc, batch_head_and_events_read_as_the_whole_frame);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(wire_suite());
}
