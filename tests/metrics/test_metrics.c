/* test_metrics.c: the Prometheus text of a worker's figures (every family declared once,
 * labels escaped, counters named _total), the parse of /proc/PID/stat, and the choice of
 * a port in the --metrics range. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "roo_test.h"

/* A snapshot with two of everything and names that need escaping. */
static roo__engine_snapshot *example(void)
{
    static roo__snapshot_source sources[2] = {
        { .pipeline = "votes",
          .frames = 1000,
          .bytes = 9000,
          .connections = 2,
          .connections_accepted = 3 },
        { .pipeline = "odd \"name\" \\ with\nnewline", .frames = 7, .rejected = 1, .oversize = 2 },
    };
    static roo__snapshot_sink sinks[2] = {
        { .sink = "127.0.0.1:7002", .records = 990, .bytes = 12870, .held = 0, .connected = true },
        { .sink = "10.0.0.9:7002", .records = 5, .bytes = 65, .held = 1300, .connected = false },
    };
    static roo__snapshot_step steps[3] = {
        { .pipeline = "votes", .step = "add votes", .errors = 0 },
        { .pipeline = "votes", .step = "sink", .errors = 4 },
        { .pipeline = "odd \"name\" \\ with\nnewline", .step = "sink", .errors = 0 },
    };
    static roo__snapshot_state states[1] = { { .state = "letter-totals", .serialize_errors = 0 } };
    static roo__engine_snapshot s = {
        .worker = "worker1",
        .app = "alphabet",
        .ready = true,
        .threads = 2,
        .partitions = 256,
        .partitions_owned = 85,
        .keys = 26,
        .commits = 12,
        .committed_batches = 30,
        .duplicates = 3,
        .routed_out = 600,
        .routed_in = 400,
        .recovered_keys = 26,
        .recovery_seconds = 0.012,
        .sources = sources,
        .nsources = 2,
        .sinks = sinks,
        .nsinks = 2,
        .steps = steps,
        .nsteps = 3,
        .states = states,
        .nstates = 1,
    };
    return &s;
}

static const roo__process_stats example_proc = {
    .cpu_seconds = 1.5,
    .resident_bytes = 1 << 20,
    .virtual_bytes = 1 << 30,
    .start_time_seconds = 1700000000.25,
    .open_fds = 17,
    .max_fds = 1024,
};

/* The rendered text as a NUL-terminated string; free() it. */
static char *render(const roo__engine_snapshot *s, const roo__process_stats *p)
{
    roo__buf b = { 0 };

    roo__metrics_render(s, p, &b);
    roo__buf_append(&b, "", 1);
    return (char *)b.data;
}

static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    if (strlen(text) > 2000) /* Check cannot carry a long message: the text goes to stderr */
        fprintf(stderr, "%s\n", text);
    ck_abort_msg("no line '%s' in:\n%.2000s", line, text);
}

START_TEST(render_gives_the_figures_with_their_labels)
{
    char *t = render(example(), &example_proc);

    assert_line(t, "roo_build_info{worker=\"worker1\",version=\"" ROO_VERSION_STRING
                   "\",application=\"alphabet\"} 1");
    assert_line(t, "roo_ready{worker=\"worker1\"} 1");
    assert_line(t, "roo_partitions_owned{worker=\"worker1\"} 85");
    assert_line(t, "roo_state_keys{worker=\"worker1\"} 26");
    assert_line(t, "roo_commits_total{worker=\"worker1\"} 12");
    assert_line(t, "roo_source_frames_total{worker=\"worker1\",pipeline=\"votes\"} 1000");
    assert_line(t, "roo_source_bytes_total{worker=\"worker1\",pipeline=\"votes\"} 9000");
    assert_line(t, "roo_source_connections{worker=\"worker1\",pipeline=\"votes\"} 2");
    assert_line(t,
                "roo_source_connections_accepted_total{worker=\"worker1\",pipeline=\"votes\"} 3");
    assert_line(t, "roo_resumable_duplicates_total{worker=\"worker1\"} 3");
    assert_line(t, "roo_sink_records_total{worker=\"worker1\",sink=\"127.0.0.1:7002\"} 990");
    assert_line(t, "roo_sink_bytes_total{worker=\"worker1\",sink=\"127.0.0.1:7002\"} 12870");
    assert_line(t, "roo_sink_held_bytes{worker=\"worker1\",sink=\"10.0.0.9:7002\"} 1300");
    assert_line(t, "roo_sink_connected{worker=\"worker1\",sink=\"10.0.0.9:7002\"} 0");
    assert_line(t, "roo_sink_connected{worker=\"worker1\",sink=\"127.0.0.1:7002\"} 1");
    assert_line(t,
                "roo_callback_errors_total{worker=\"worker1\",pipeline=\"votes\",step=\"sink\"} 4");
    assert_line(t,
                "roo_state_serialize_errors_total{worker=\"worker1\",state=\"letter-totals\"} 0");
    assert_line(t, "roo_routed_messages_sent_total{worker=\"worker1\"} 600");
    assert_line(t, "roo_routed_messages_received_total{worker=\"worker1\"} 400");
    assert_line(t, "roo_recovery_duration_seconds{worker=\"worker1\"} 0.012");
    assert_line(t, "process_cpu_seconds_total 1.50");
    assert_line(t, "process_resident_memory_bytes 1048576");
    assert_line(t, "process_start_time_seconds 1700000000.25");
    assert_line(t, "process_open_fds 17");
    assert_line(t, "process_max_fds 1024");
    free(t);
}
END_TEST

START_TEST(render_escapes_label_values)
{
    char *t = render(example(), NULL);

    /* Backslash, double quote and line feed are the three the format escapes. */
    assert_line(t, "roo_source_decoder_rejections_total{worker=\"worker1\","
                   "pipeline=\"odd \\\"name\\\" \\\\ with\\nnewline\"} 1");
    assert_line(t, "roo_source_oversize_frames_total{worker=\"worker1\","
                   "pipeline=\"odd \\\"name\\\" \\\\ with\\nnewline\"} 2");
    free(t);
}
END_TEST

/*
 * Every sample belongs to the family declared just before it (# HELP then # TYPE), each
 * family is declared once, counters end in _total and nothing else does: what Prometheus's
 * own linter (promtool check metrics) asks.
 */
START_TEST(render_declares_every_family_once_with_help_and_type)
{
    char *t = render(example(), &example_proc), *save = NULL;
    char family[128] = "", type[16] = "", seen[4096] = " ";
    unsigned families = 0, samples = 0;

    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128], key[140];
        if (strncmp(line, "# HELP ", 7) == 0) {
            ck_assert_int_eq(sscanf(line + 7, "%127s", family), 1);
            snprintf(key, sizeof(key), " %s ", family);
            ck_assert_msg(!strstr(seen, key), "family %s declared twice", family);
            strcat(seen, family);
            strcat(seen, " ");
            type[0] = '\0';
            families++;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            ck_assert_int_eq(sscanf(line + 7, "%127s %15s", name, type), 2);
            ck_assert_str_eq(name, family);
            ck_assert(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                      strcmp(type, "histogram") == 0);
            {
                size_t n = strlen(family);
                bool total = n > 6 && strcmp(family + n - 6, "_total") == 0;
                bool seconds = n > 8 && strcmp(family + n - 8, "_seconds") == 0;
                ck_assert_msg(total == (strcmp(type, "counter") == 0), "%s is a %s", family, type);
                ck_assert_msg(strcmp(type, "histogram") != 0 || seconds,
                              "histogram %s not in seconds", family);
            }
            continue;
        }
        ck_assert_msg(line[0] != '#', "stray comment '%s'", line);
        ck_assert_int_eq(sscanf(line, "%127[a-z_]", name), 1);
        if (strcmp(type, "histogram") == 0) {
            size_t n = strlen(family);
            ck_assert_msg(strncmp(name, family, n) == 0 &&
                              (strcmp(name + n, "_bucket") == 0 || strcmp(name + n, "_sum") == 0 ||
                               strcmp(name + n, "_count") == 0),
                          "sample '%s' outside its histogram %s", line, family);
        } else {
            ck_assert_msg(strcmp(name, family) == 0 && type[0], "sample '%s' outside its family %s",
                          line, family);
        }
        ck_assert_msg(strncmp(name, "roo_", 4) != 0 || strstr(line, "{worker=\"worker1\""),
                      "roo_ sample without its worker: '%s'", line);
        samples++;
    }
    ck_assert_uint_ge(families, 30);
    ck_assert_uint_ge(samples, families);
    free(t);
}
END_TEST

START_TEST(histograms_are_cumulative_and_end_in_inf_sum_and_count)
{
    roo__engine_snapshot s = *example();
    roo__snapshot_source src[2];
    char *t;

    memcpy(src, s.sources, sizeof(src));
    memset(&src[0].latency, 0, sizeof(src[0].latency));
    src[0].latency.bins[0] = 2;  /* <= 1 us */
    src[0].latency.bins[20] = 5; /* (724 us, 1.024 ms] */
    src[0].latency.bins[ROO__HIST_BINS - 1] = 1;
    src[0].latency.sum_ns = 2500000000ull;
    s.sources = src;
    s.commit_duration.bins[14] = 3;
    s.commit_duration.sum_ns = 300000;
    t = render(&s, NULL);
    assert_line(t, "# TYPE roo_end_to_end_latency_seconds histogram");
    assert_line(t, "roo_end_to_end_latency_seconds_bucket{worker=\"worker1\",pipeline=\"votes\","
                   "le=\"1e-06\"} 2");
    assert_line(t, "roo_end_to_end_latency_seconds_bucket{worker=\"worker1\",pipeline=\"votes\","
                   "le=\"0.000724077\"} 2");
    assert_line(t, "roo_end_to_end_latency_seconds_bucket{worker=\"worker1\",pipeline=\"votes\","
                   "le=\"0.001024\"} 7");
    assert_line(t, "roo_end_to_end_latency_seconds_bucket{worker=\"worker1\",pipeline=\"votes\","
                   "le=\"67.108864\"} 7");
    assert_line(t, "roo_end_to_end_latency_seconds_bucket{worker=\"worker1\",pipeline=\"votes\","
                   "le=\"+Inf\"} 8");
    assert_line(t, "roo_end_to_end_latency_seconds_sum{worker=\"worker1\",pipeline=\"votes\"} "
                   "2.500000000");
    assert_line(t, "roo_end_to_end_latency_seconds_count{worker=\"worker1\",pipeline=\"votes\"} 8");
    assert_line(t, "roo_commit_duration_seconds_bucket{worker=\"worker1\",le=\"0.000128\"} 3");
    assert_line(t, "roo_commit_duration_seconds_count{worker=\"worker1\"} 3");
    assert_line(
        t, "roo_stage_latency_seconds_count{worker=\"worker1\",stage=\"sealed_to_committed\"} 0");
    assert_line(t, "roo_step_compute_seconds_count{worker=\"worker1\",pipeline=\"votes\","
                   "step=\"add votes\"} 0");
    free(t);
}
END_TEST

START_TEST(undelivered_is_held_plus_unacknowledged)
{
    roo__engine_snapshot s = *example();
    roo__snapshot_sink k[2];
    char *t;

    memcpy(k, s.sinks, sizeof(k));
    k[1].unacked = 700;
    s.sinks = k;
    t = render(&s, NULL);
    assert_line(t, "roo_sink_undelivered_bytes{worker=\"worker1\",sink=\"10.0.0.9:7002\"} 2000");
    assert_line(t, "roo_sink_undelivered_bytes{worker=\"worker1\",sink=\"127.0.0.1:7002\"} 0");
    free(t);
}
END_TEST

START_TEST(render_is_deterministic_and_process_families_are_optional)
{
    char *a = render(example(), &example_proc), *b = render(example(), &example_proc);
    char *c = render(example(), NULL);

    ck_assert_str_eq(a, b);
    ck_assert_ptr_null(strstr(c, "process_"));
    ck_assert_ptr_nonnull(strstr(a, "# TYPE process_cpu_seconds_total counter\n"));
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(proc_stat_gives_cpu_memory_and_start_time)
{
    /* The command may hold spaces and parentheses; a few fields may be negative. */
    const char *stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1200 0 3 0 250 50 0 0 "
                       "20 0 5 0 1000 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0";
    roo__process_stats st;

    ck_assert_int_eq(roo__process_stats_parse(stat, 100, 4096, 1700000000, &st), 0);
    ck_assert_double_eq_tol(st.cpu_seconds, 3.0, 1e-9); /* (250 + 50) / 100 */
    ck_assert_double_eq_tol(st.start_time_seconds, 1700000010.0, 1e-6);
    ck_assert_uint_eq(st.virtual_bytes, 123456789);
    ck_assert_uint_eq(st.resident_bytes, 2048u * 4096u);

    ck_assert_int_eq(roo__process_stats_parse("garbage", 100, 4096, 0, &st), -EINVAL);
    ck_assert_int_eq(roo__process_stats_parse("1 (x) S 1 2 3", 100, 4096, 0, &st), -EINVAL);
}
END_TEST

START_TEST(this_process_has_figures)
{
    roo__process_stats st;

    ck_assert_int_eq(roo__process_stats_read(&st), 0);
    ck_assert_uint_gt(st.resident_bytes, 0);
    ck_assert_uint_gt(st.open_fds, 2);
    ck_assert_uint_ge(st.max_fds, st.open_fds);
    ck_assert(st.start_time_seconds > 1.6e9);
}
END_TEST

/* ---- the port ---- */

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;

    ck_assert_ptr_nonnull(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Listen on 127.0.0.1 on a port the kernel picks; its number. */
static int listen_any(int *ret_fd)
{
    roo__addr a;
    char local[64];

    ck_assert_int_eq(roo__addr_parse("127.0.0.1:0", &a), 0);
    ck_assert_int_eq(roo__tcp_listen(&a, 4, ret_fd), 0);
    ck_assert_int_eq(roo__tcp_local_str(*ret_fd, local, sizeof(local)), 0);
    return atoi(strrchr(local, ':') + 1);
}

static roo__metrics_cfg range(const char *host, int first, int last)
{
    roo__metrics_cfg c = { .last_port = (uint16_t)last, .loopback_only = true };
    snprintf(c.addr.host, sizeof(c.addr.host), "%s", host);
    snprintf(c.addr.port, sizeof(c.addr.port), "%d", first);
    return c;
}

START_TEST(a_taken_port_moves_to_the_next_in_the_range)
{
    roo__metrics *m;
    roo__metrics_cfg c;
    char msg[256], want[64];
    unsigned before = count_fds();
    int fd, port = listen_any(&fd);

    /* The next port may be someone else's too: the server says which one it got. */
    c = range("127.0.0.1", port, port + 3 > 65535 ? 65535 : port + 3);
    ck_assert_int_eq(roo__metrics_create(NULL, &c, &m, msg, sizeof(msg)), 0);
    ck_assert_uint_ge(roo__metrics_ports_taken(m), 1);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port + (int)roo__metrics_ports_taken(m));
    ck_assert_str_eq(roo__metrics_address(m), want);
    roo__metrics_destroy(m);
    close(fd);
    ck_assert_uint_eq(count_fds(), before); /* the server's socket and thread are gone */
}
END_TEST

START_TEST(a_range_all_taken_is_an_error_naming_it)
{
    roo__metrics *m = NULL;
    roo__metrics_cfg c;
    char msg[256];
    int fd, port = listen_any(&fd);

    c = range("127.0.0.1", port, port);
    ck_assert_int_eq(roo__metrics_create(NULL, &c, &m, msg, sizeof(msg)), -EADDRINUSE);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(msg, "every port of the range is taken"), "msg: %s", msg);
    close(fd);
}
END_TEST

START_TEST(without_a_secret_only_loopback_is_served)
{
    roo__metrics *m = NULL;
    roo__metrics_cfg c = range("0.0.0.0", 0, 0);
    char msg[256];

    ck_assert_int_eq(roo__metrics_create(NULL, &c, &m, msg, sizeof(msg)), ROO_EUSAGE);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(msg, "without a cluster secret"), "msg: %s", msg);
    c.loopback_only = false; /* a worker with a secret may serve anywhere */
    ck_assert_int_eq(roo__metrics_create(NULL, &c, &m, msg, sizeof(msg)), 0);
    ck_assert_ptr_nonnull(m);
    roo__metrics_destroy(m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc;

    tc = roo_test_tcase("rendering", 10);
    tcase_add_test(tc, render_gives_the_figures_with_their_labels);
    tcase_add_test(tc, render_escapes_label_values);
    tcase_add_test(tc, render_declares_every_family_once_with_help_and_type);
    tcase_add_test(tc, render_is_deterministic_and_process_families_are_optional);
    tcase_add_test(tc, histograms_are_cumulative_and_end_in_inf_sum_and_count);
    tcase_add_test(tc, undelivered_is_held_plus_unacknowledged);
    tcase_add_test(tc, proc_stat_gives_cpu_memory_and_start_time);
    tcase_add_test(tc, this_process_has_figures);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("ports", 10);
    tcase_add_test(tc, a_taken_port_moves_to_the_next_in_the_range);
    tcase_add_test(tc, a_range_all_taken_is_an_error_naming_it);
    tcase_add_test(tc, without_a_secret_only_loopback_is_served);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(metrics_suite());
}
