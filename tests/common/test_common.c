/* test_common.c: error strings, size/number parsing and the inter-thread queue behave as their headers promise. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "common/buf.h"
#include "common/common.h"
#include "common/queue.h"
#include "common/ring.h"
#include "roo_test.h"

/* ---- roo_strerror ---- */

static const int roo_codes[] = {
#define CODE(name, value, text) ROO_##name,
    ROO_ERRNO_MAP(CODE)
#undef CODE
};

START_TEST(strerror_of_zero_is_success)
{
    ck_assert_str_eq(roo_strerror(0), "success");
}
END_TEST

START_TEST(strerror_of_negative_errno_is_the_system_text)
{
    ck_assert_str_eq(roo_strerror(-ENOENT), strerror(ENOENT));
    ck_assert_str_eq(roo_strerror(-EINVAL), strerror(EINVAL));
    ck_assert_str_eq(roo_strerror(-EFBIG), strerror(EFBIG));
}
END_TEST

START_TEST(strerror_of_every_roo_code_is_distinct_and_not_empty)
{
    size_t n = ROO__ARRAY_SIZE(roo_codes);

    ck_assert_uint_eq(n, 19);
    for (size_t i = 0; i < n; i++) {
        const char *s = roo_strerror(roo_codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(s[0] != '\0', "code %d has an empty text", roo_codes[i]);
        ck_assert_msg(strstr(s, "unknown") == NULL, "code %d: '%s'", roo_codes[i], s);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(s, roo_strerror(roo_codes[j])) != 0, "codes %d and %d share '%s'",
                          roo_codes[i], roo_codes[j], s);
    }
    ck_assert_str_eq(roo_strerror(ROO_EFRAMESIZE), "frame larger than the maximum frame size");
    ck_assert_str_eq(roo_strerror(ROO_ELOCKED),
                     "resilience directory is in use by another process");
}
END_TEST

START_TEST(strerror_of_unknown_code_names_the_number)
{
    ck_assert_str_eq(roo_strerror(12345), "unknown error 12345");
    ck_assert_str_eq(roo_strerror(-5000), "unknown error -5000");
    ck_assert_str_eq(roo_strerror(-30599), "unknown error -30599");
    ck_assert_str_eq(roo_strerror(-30619), "unknown error -30619");
    ck_assert_str_eq(roo_strerror(INT_MIN), "unknown error -2147483648");
}
END_TEST

/* ---- parsing ---- */

static void assert_size(const char *s, uint64_t want)
{
    uint64_t v = 12345;
    int rc = roo__parse_size(s, &v);

    ck_assert_msg(rc == 0, "'%s' gave %d", s, rc);
    ck_assert_msg(v == want, "'%s' gave %llu, want %llu", s, (unsigned long long)v,
                  (unsigned long long)want);
}

static void assert_size_error(const char *s, int want_rc)
{
    uint64_t v = 12345;
    int rc = roo__parse_size(s, &v);

    ck_assert_msg(rc == want_rc, "'%s' gave %d, want %d", s ? s : "(null)", rc, want_rc);
    ck_assert_uint_eq(v, 12345);
}

START_TEST(parse_size_accepts_plain_numbers_and_binary_suffixes)
{
    assert_size("0", 0);
    assert_size("123", 123);
    assert_size("1K", 1024);
    assert_size("1k", 1024);
    assert_size("4KiB", 4096);
    assert_size("4KB", 4096);
    assert_size("2M", 2ull << 20);
    assert_size("2m", 2ull << 20);
    assert_size("3MiB", 3ull << 20);
    assert_size("5G", 5ull << 30);
    assert_size("5GiB", 5ull << 30);
    assert_size("18446744073709551615", UINT64_MAX);
    assert_size("17179869183G", 17179869183ull << 30);
}
END_TEST

START_TEST(parse_size_rejects_malformed_and_overflowing_input)
{
    assert_size_error(NULL, -EINVAL);
    assert_size_error("", -EINVAL);
    assert_size_error("K", -EINVAL);
    assert_size_error("-1", -EINVAL);
    assert_size_error("+1", -EINVAL);
    assert_size_error(" 1", -EINVAL);
    assert_size_error("1 K", -EINVAL);
    assert_size_error("1X", -EINVAL);
    assert_size_error("1T", -EINVAL);
    assert_size_error("1KiBx", -EINVAL);
    assert_size_error("1KK", -EINVAL);
    assert_size_error("18446744073709551616", -EINVAL);
    assert_size_error("17179869184G", -ERANGE);
    assert_size_error("18014398509481984K", -ERANGE);
}
END_TEST

static void assert_uint(const char *s, uint64_t min, uint64_t max, int want_rc, uint64_t want)
{
    uint64_t v = 777;
    int rc = roo__parse_uint(s, min, max, &v);

    ck_assert_msg(rc == want_rc, "'%s' in [%llu,%llu] gave %d, want %d", s ? s : "(null)",
                  (unsigned long long)min, (unsigned long long)max, rc, want_rc);
    ck_assert_uint_eq(v, want_rc == 0 ? want : 777);
}

START_TEST(parse_uint_enforces_its_inclusive_range)
{
    assert_uint("0", 0, 10, 0, 0);
    assert_uint("10", 0, 10, 0, 10);
    assert_uint("11", 0, 10, -ERANGE, 0);
    assert_uint("0", 1, 10, -ERANGE, 0);
    assert_uint("1", 1, 1, 0, 1);
    assert_uint("007", 0, 10, 0, 7);
    assert_uint("18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX);
}
END_TEST

START_TEST(parse_uint_rejects_non_digits)
{
    assert_uint(NULL, 0, 10, -EINVAL, 0);
    assert_uint("", 0, 10, -EINVAL, 0);
    assert_uint("-1", 0, 10, -EINVAL, 0);
    assert_uint("+1", 0, 10, -EINVAL, 0);
    assert_uint(" 1", 0, 10, -EINVAL, 0);
    assert_uint("1 ", 0, 10, -EINVAL, 0);
    assert_uint("1a", 0, 10, -EINVAL, 0);
    assert_uint("0x10", 0, 100, -EINVAL, 0);
    assert_uint("18446744073709551616", 0, UINT64_MAX, -EINVAL, 0);
}
END_TEST

START_TEST(log_level_names_parse_case_insensitively)
{
    roo_log_level l = ROO_LOG_INFO;

    ck_assert_int_eq(roo__log_level_parse("error", &l), 0);
    ck_assert_int_eq(l, ROO_LOG_ERROR);
    ck_assert_int_eq(roo__log_level_parse("WARN", &l), 0);
    ck_assert_int_eq(l, ROO_LOG_WARN);
    ck_assert_int_eq(roo__log_level_parse("Warning", &l), 0);
    ck_assert_int_eq(l, ROO_LOG_WARN);
    ck_assert_int_eq(roo__log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, ROO_LOG_DEBUG);
    ck_assert_int_eq(roo__log_level_parse("verbose", &l), -EINVAL);
    ck_assert_int_eq(l, ROO_LOG_DEBUG);
}
END_TEST

/* ---- buf ---- */

/* Zero bytes into a buffer that never allocated: memcpy(NULL, p, 0) is undefined (UBSan). */
START_TEST(buf_append_of_zero_bytes_to_an_empty_buffer_is_a_no_op)
{
    roo__buf b = { 0 };

    roo__buf_append(&b, NULL, 0);
    roo__buf_append(&b, "", 0);
    ck_assert_uint_eq(b.len, 0);
    roo__buf_append(&b, "abc", 3);
    roo__buf_append(&b, NULL, 0);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_mem_eq(b.data, "abc", 3);
    roo__buf_finish(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.cap, 0);
}
END_TEST

static void ck_key_text(const char *bytes, size_t n, const char *want, size_t want_len)
{
    roo__buf b = { 0 };

    roo__buf_append_key_text(&b, (const uint8_t *)bytes, n);
    ck_assert_uint_eq(b.len, want_len);
    if (want_len) /* an empty key leaves the buffer unallocated */
        ck_assert_mem_eq(b.data, want, b.len);
    roo__buf_finish(&b);
}

#define CK_KEY_TEXT(bytes, want) ck_key_text(bytes, sizeof(bytes) - 1, want, sizeof(want) - 1)

/* JSON's own escapes are jansson's business (test_json.c): the text keeps those bytes. */
START_TEST(key_text_passes_utf8_and_characters_json_escapes_itself)
{
    CK_KEY_TEXT("caf\xc3\xa9", "caf\xc3\xa9");
    CK_KEY_TEXT("\xe2\x82\xac \xf0\x9f\x98\x80", "\xe2\x82\xac \xf0\x9f\x98\x80");
    CK_KEY_TEXT("a\"b", "a\"b");
    CK_KEY_TEXT("tab\there\n", "tab\there\n");
    CK_KEY_TEXT("\x7f", "\x7f");
    CK_KEY_TEXT("", "");
    CK_KEY_TEXT("nul\0x", "nul\0x");
}
END_TEST

/* Bytes that are not UTF-8 come out as the text \xHH, and a backslash as two: reversible. */
START_TEST(key_text_writes_bytes_that_are_not_utf8_as_backslash_x)
{
    CK_KEY_TEXT("a\xff", "a\\xff");
    CK_KEY_TEXT("a\\b", "a\\\\b");
    CK_KEY_TEXT("\xc3", "\\xc3");                            /* cut short */
    CK_KEY_TEXT("\xc0\xaf", "\\xc0\\xaf");                   /* overlong '/' */
    CK_KEY_TEXT("\xed\xa0\x80", "\\xed\\xa0\\x80");          /* a surrogate */
    CK_KEY_TEXT("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* over U+10FFFF */
    CK_KEY_TEXT("\xe2\x82x", "\\xe2\\x82x");
}
END_TEST

START_TEST(buf_grows_keeping_content_and_consume_keeps_the_tail)
{
    roo__buf b = { 0 };
    uint8_t chunk[1000];

    for (int i = 0; i < 100; i++) {
        memset(chunk, i, sizeof(chunk));
        roo__buf_append(&b, chunk, sizeof(chunk));
    }
    ck_assert_uint_eq(b.len, 100000);
    ck_assert_uint_ge(b.cap, b.len);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(b.data[i * 1000 + 999], (uint8_t)i);
    roo__buf_consume(&b, 99500);
    ck_assert_uint_eq(b.len, 500);
    ck_assert_uint_eq(b.data[0], 99);
    roo__buf_consume(&b, 501);
    ck_assert_uint_eq(b.len, 0);
    roo__buf_finish(&b);
}
END_TEST

/* A paged buffer (the outbox log writes it with O_DIRECT) keeps its bytes as it grows and
 * shrinks, lies its headroom into page-aligned memory that ends on a page at data + cap,
 * and has zeros wherever it has not written. */
START_TEST(paged_buf_stays_page_aligned_and_zeroed_past_its_bytes)
{
    roo__buf b = { .paged = true };
    uint8_t chunk[1000];

    for (int i = 0; i < 300; i++) {
        memset(chunk, i + 1, sizeof(chunk));
        roo__buf_append(&b, chunk, sizeof(chunk));
        ck_assert_uint_eq((uintptr_t)(b.data - ROO__BUF_HEADROOM) % ROO__PAGE, 0);
        ck_assert_uint_eq((uintptr_t)(b.data + b.cap) % ROO__PAGE, 0);
    }
    ck_assert_uint_eq(b.len, 300000);
    for (size_t i = 0; i < b.len; i++)
        ck_assert_uint_eq(b.data[i], (uint8_t)(i / 1000 + 1));
    for (size_t i = b.len; i < b.cap; i++)
        ck_assert_uint_eq(b.data[i], 0);
    for (size_t i = 1; i <= ROO__BUF_HEADROOM; i++)
        ck_assert_uint_eq(b.data[-(ptrdiff_t)i], 0);
    b.len = 5000;
    roo__buf_shrink(&b, 8192);
    ck_assert_uint_eq((uintptr_t)(b.data - ROO__BUF_HEADROOM) % ROO__PAGE, 0);
    ck_assert_uint_eq((uintptr_t)(b.data + b.cap) % ROO__PAGE, 0);
    ck_assert_uint_ge(b.cap, 8192);
    ck_assert_uint_lt(b.cap, 3 * ROO__PAGE);
    ck_assert_uint_eq(b.data[4999], 5);
    roo__buf_finish(&b);
    ck_assert_ptr_null(b.data);
    ck_assert(b.paged); /* an empty buffer stays paged for its next growth */
}
END_TEST

/* ---- queue ---- */

enum { PRODUCERS = 4, PER_PRODUCER = 10000 };

typedef struct test_node {
    roo__qnode node;
    unsigned producer;
    unsigned seq;
} test_node;

typedef struct producer_arg {
    roo__queue *q;
    test_node *nodes; /* PER_PRODUCER of them */
    unsigned id;
} producer_arg;

static void *producer_main(void *arg)
{
    producer_arg *p = arg;

    for (unsigned i = 0; i < PER_PRODUCER; i++) {
        p->nodes[i].producer = p->id;
        p->nodes[i].seq = i;
        p->nodes[i].node.kind = 7;
        roo__queue_push(p->q, &p->nodes[i].node);
        if (i % 1000 == 0)
            sched_yield();
    }
    return NULL;
}

/* Check a taken list: each node once, each producer's nodes in push order. */
static size_t check_taken(roo__qnode *head, unsigned next_seq[PRODUCERS], bool *seen,
                          const test_node *base)
{
    size_t n = 0;

    for (roo__qnode *q = head; q; q = q->next, n++) {
        const test_node *t = (const test_node *)q;
        size_t idx = (size_t)(t - base);
        ck_assert_uint_eq(q->kind, 7);
        ck_assert_uint_lt(t->producer, PRODUCERS);
        ck_assert_msg(t->seq == next_seq[t->producer], "producer %u: got seq %u, want %u",
                      t->producer, t->seq, next_seq[t->producer]);
        next_seq[t->producer]++;
        ck_assert_uint_lt(idx, PRODUCERS * PER_PRODUCER);
        ck_assert_msg(!seen[idx], "node %zu delivered twice", idx);
        seen[idx] = true;
    }
    return n;
}

static void run_producers(roo__queue *q, bool use_poll)
{
    test_node *nodes = calloc(PRODUCERS * PER_PRODUCER, sizeof(*nodes));
    bool *seen = calloc(PRODUCERS * PER_PRODUCER, sizeof(*seen));
    producer_arg args[PRODUCERS];
    pthread_t threads[PRODUCERS];
    unsigned next_seq[PRODUCERS] = { 0 };
    size_t got = 0, batches = 0;
    double deadline = roo_test_now_ms() + 20000;

    ck_assert_ptr_nonnull(nodes);
    ck_assert_ptr_nonnull(seen);
    for (unsigned i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){ .q = q, .nodes = nodes + i * PER_PRODUCER, .id = i };
        ck_assert_int_eq(pthread_create(&threads[i], NULL, producer_main, &args[i]), 0);
    }
    while (got < PRODUCERS * PER_PRODUCER) {
        roo__qnode *head;
        ck_assert_msg(roo_test_now_ms() < deadline, "only %zu of %d nodes arrived", got,
                      PRODUCERS * PER_PRODUCER);
        if (use_poll) {
            struct pollfd pfd = { .fd = roo__queue_fd(q), .events = POLLIN };
            if (poll(&pfd, 1, 1000) <= 0)
                continue;
            head = roo__queue_take_all(q);
        } else {
            head = roo__queue_wait_all(q, 1000);
        }
        if (head)
            batches++;
        got += check_taken(head, next_seq, seen, nodes);
    }
    for (unsigned i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);
    ck_assert_uint_eq(got, PRODUCERS * PER_PRODUCER);
    ck_assert_ptr_null(roo__queue_take_all(q));
    for (unsigned i = 0; i < PRODUCERS; i++)
        ck_assert_uint_eq(next_seq[i], PER_PRODUCER);
    ck_assert_uint_ge(batches, 1);
    free(seen);
    free(nodes);
}

START_TEST(queue_delivers_every_node_once_in_per_producer_order)
{
    roo__queue q;

    ck_assert_int_eq(roo__queue_init(&q, false), 0);
    ck_assert_int_eq(roo__queue_fd(&q), -1);
    run_producers(&q, false);
    roo__queue_finish(&q);
}
END_TEST

START_TEST(eventfd_queue_delivers_every_node_once_to_a_poll_loop)
{
    roo__queue q;

    ck_assert_int_eq(roo__queue_init(&q, true), 0);
    ck_assert_int_ge(roo__queue_fd(&q), 0);
    run_producers(&q, true);
    roo__queue_finish(&q);
}
END_TEST

START_TEST(take_all_returns_nodes_oldest_first_and_null_when_empty)
{
    roo__queue q;
    test_node n[3];

    ck_assert_int_eq(roo__queue_init(&q, false), 0);
    ck_assert_ptr_null(roo__queue_take_all(&q));
    for (unsigned i = 0; i < 3; i++) {
        n[i].seq = i;
        roo__queue_push(&q, &n[i].node);
    }
    roo__qnode *h = roo__queue_take_all(&q);
    ck_assert_ptr_eq(h, &n[0].node);
    ck_assert_ptr_eq(h->next, &n[1].node);
    ck_assert_ptr_eq(h->next->next, &n[2].node);
    ck_assert_ptr_null(h->next->next->next);
    ck_assert_ptr_null(roo__queue_take_all(&q));
    /* The queue is usable again after being emptied. */
    roo__queue_push(&q, &n[1].node);
    ck_assert_ptr_eq(roo__queue_take_all(&q), &n[1].node);
    roo__queue_finish(&q);
}
END_TEST

START_TEST(wait_all_on_an_empty_queue_times_out_with_null)
{
    roo__queue q;
    double t0;

    ck_assert_int_eq(roo__queue_init(&q, false), 0);
    t0 = roo_test_now_ms();
    ck_assert_ptr_null(roo__queue_wait_all(&q, 100));
    ck_assert_double_ge(roo_test_now_ms() - t0, 95);
    ck_assert_ptr_null(roo__queue_wait_all(&q, 0));
    roo__queue_finish(&q);
}
END_TEST

static int poll_readable(int fd, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int rc = poll(&pfd, 1, timeout_ms);

    ck_assert_int_ge(rc, 0);
    return rc > 0 && (pfd.revents & POLLIN);
}

START_TEST(eventfd_queue_push_makes_the_fd_readable_and_take_drains_it)
{
    roo__queue q;
    test_node n[3];
    roo__qnode *h;

    ck_assert_int_eq(roo__queue_init(&q, true), 0);
    ck_assert(!poll_readable(roo__queue_fd(&q), 0));
    roo__queue_push(&q, &n[0].node);
    ck_assert(poll_readable(roo__queue_fd(&q), 0));
    /* Pushes onto a non-empty queue coalesce into the same wakeup. */
    roo__queue_push(&q, &n[1].node);
    roo__queue_push(&q, &n[2].node);
    h = roo__queue_take_all(&q);
    ck_assert_ptr_eq(h, &n[0].node);
    ck_assert_ptr_eq(h->next->next, &n[2].node);
    ck_assert(!poll_readable(roo__queue_fd(&q), 0));
    roo__queue_finish(&q);
}
END_TEST

typedef struct delayed_push {
    roo__queue *q;
    roo__qnode *n;
    int delay_ms;
} delayed_push;

static void *delayed_push_main(void *arg)
{
    delayed_push *d = arg;
    struct timespec ts = { 0, (long)d->delay_ms * 1000000L };

    nanosleep(&ts, NULL);
    roo__queue_push(d->q, d->n);
    return NULL;
}

START_TEST(eventfd_queue_wakes_a_blocked_poll)
{
    roo__queue q;
    test_node n;
    pthread_t th;
    delayed_push d = { .q = &q, .n = &n.node, .delay_ms = 50 };
    double t0;

    ck_assert_int_eq(roo__queue_init(&q, true), 0);
    t0 = roo_test_now_ms();
    ck_assert_int_eq(pthread_create(&th, NULL, delayed_push_main, &d), 0);
    ck_assert(poll_readable(roo__queue_fd(&q), 5000));
    ck_assert_double_lt(roo_test_now_ms() - t0, 4000);
    pthread_join(th, NULL);
    ck_assert_ptr_eq(roo__queue_take_all(&q), &n.node);
    roo__queue_finish(&q);
}
END_TEST

START_TEST(cond_queue_wakes_a_blocked_wait_all)
{
    roo__queue q;
    test_node n;
    pthread_t th;
    delayed_push d = { .q = &q, .n = &n.node, .delay_ms = 50 };
    double t0;

    ck_assert_int_eq(roo__queue_init(&q, false), 0);
    t0 = roo_test_now_ms();
    ck_assert_int_eq(pthread_create(&th, NULL, delayed_push_main, &d), 0);
    ck_assert_ptr_eq(roo__queue_wait_all(&q, 5000), &n.node);
    ck_assert_double_lt(roo_test_now_ms() - t0, 4000);
    pthread_join(th, NULL);
    roo__queue_finish(&q);
}
END_TEST

START_TEST(ring_keeps_fifo_order_across_wraps_and_growth)
{
    ROO__RING(uint64_t) r = { 0 };
    uint64_t next_in = 0, next_out = 0;

    /* Interleave pushes and pops so that growth happens while the ring wraps around. */
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < round % 37 + 3; i++)
            roo__ring_push(&r, next_in++);
        for (int i = 0; i < round % 29 + 1 && r.len; i++) {
            ck_assert_uint_eq(roo__ring_at(&r, 0), next_out);
            roo__ring_pop(&r);
            next_out++;
        }
        ck_assert_uint_eq(r.len, next_in - next_out);
        for (size_t i = 0; i < r.len; i++)
            ck_assert_uint_eq(roo__ring_at(&r, i), next_out + i);
        if (r.len)
            ck_assert_uint_eq(roo__ring_last(&r), next_in - 1);
        ck_assert_uint_eq(r.cap & (r.cap - 1), 0); /* a power of two */
    }
    roo__ring_free(&r);
    ck_assert_ptr_null(r.v);
    ck_assert_uint_eq(r.len, 0);
}
END_TEST

START_TEST(ring_elements_are_lvalues_of_their_type)
{
    ROO__RING(struct pair {
        int a;
        double b;
    })
    r = { 0 };

    for (int i = 0; i < 40; i++)
        roo__ring_push(&r, (struct pair){ i, i * 0.5 });
    roo__ring_at(&r, 3).a = 300;
    ck_assert_int_eq(roo__ring_at(&r, 3).a, 300);
    ck_assert(roo__ring_at(&r, 39).b == 19.5);
    roo__ring_clear(&r);
    ck_assert_uint_eq(r.len, 0);
    roo__ring_push(&r, (struct pair){ 7, 1.0 });
    ck_assert_int_eq(roo__ring_at(&r, 0).a, 7);
    roo__ring_free(&r);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc;

    tc = roo_test_tcase("strerror", 10);
    tcase_add_test(tc, strerror_of_zero_is_success);
    tcase_add_test(tc, strerror_of_negative_errno_is_the_system_text);
    tcase_add_test(tc, strerror_of_every_roo_code_is_distinct_and_not_empty);
    tcase_add_test(tc, strerror_of_unknown_code_names_the_number);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("parse", 10);
    tcase_add_test(tc, parse_size_accepts_plain_numbers_and_binary_suffixes);
    tcase_add_test(tc, parse_size_rejects_malformed_and_overflowing_input);
    tcase_add_test(tc, parse_uint_enforces_its_inclusive_range);
    tcase_add_test(tc, parse_uint_rejects_non_digits);
    tcase_add_test(tc, log_level_names_parse_case_insensitively);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("buf", 10);
    tcase_add_test(tc, buf_append_of_zero_bytes_to_an_empty_buffer_is_a_no_op);
    tcase_add_test(tc, key_text_passes_utf8_and_characters_json_escapes_itself);
    tcase_add_test(tc, key_text_writes_bytes_that_are_not_utf8_as_backslash_x);
    tcase_add_test(tc, buf_grows_keeping_content_and_consume_keeps_the_tail);
    tcase_add_test(tc, paged_buf_stays_page_aligned_and_zeroed_past_its_bytes);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("ring", 10);
    tcase_add_test(tc, ring_keeps_fifo_order_across_wraps_and_growth);
    tcase_add_test(tc, ring_elements_are_lvalues_of_their_type);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("queue", 30);
    tcase_add_test(tc, queue_delivers_every_node_once_in_per_producer_order);
    tcase_add_test(tc, eventfd_queue_delivers_every_node_once_to_a_poll_loop);
    tcase_add_test(tc, take_all_returns_nodes_oldest_first_and_null_when_empty);
    tcase_add_test(tc, wait_all_on_an_empty_queue_times_out_with_null);
    tcase_add_test(tc, eventfd_queue_push_makes_the_fd_readable_and_take_drains_it);
    tcase_add_test(tc, eventfd_queue_wakes_a_blocked_poll);
    tcase_add_test(tc, cond_queue_wakes_a_blocked_wait_all);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(common_suite());
}
