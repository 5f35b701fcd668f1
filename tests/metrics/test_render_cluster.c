/* test_render_cluster.c: the cluster's figures as Prometheus text (every line in the
 * format, every family declared once, labels escaped, the pause histogram cumulative and
 * ending in +Inf), and the snapshot the io thread publishes for it (cluster-metrics.c). */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"
#include "metrics/metrics.h"
#include "roo_test.h"

#define ODD "odd \"peer\" \\ with\nnewline"
#define ODD_ESCAPED "odd \\\"peer\\\" \\\\ with\\nnewline"

/* A snapshot with two peers (one with a name that needs escaping), three listeners. */
static roo__cluster_snapshot example(roo__cluster_snapshot_peer peers[2])
{
    roo__cluster_snapshot s = { 0 };

    peers[0] = (roo__cluster_snapshot_peer){ .name = "worker2",
                                             .messages_sent = 600,
                                             .messages_received = 400,
                                             .bytes_sent = 6000,
                                             .bytes_received = 4100,
                                             .backlog_bytes = 512,
                                             .connected = true };
    peers[1] = (roo__cluster_snapshot_peer){ .name = ODD, .messages_sent = 7 };
    s.cluster_id = 0x047f3fd0e71363f8ull;
    s.workers = 3;
    s.peers = peers;
    s.npeers = 2;
    s.listeners[0] = (roo__cluster_snapshot_listener){ "control", 2, 5, 1 };
    s.listeners[1] = (roo__cluster_snapshot_listener){ "data", 2, 3, 0 };
    s.listeners[2] = (roo__cluster_snapshot_listener){ "external", 0, 9, 4 };
    s.nlisteners = 3;
    s.moves_done = 2;
    s.moves_aborted = 1;
    s.partitions_moving = 85;
    s.move_pause.bins[14] = 1;                 /* (90.5 us, 128 us] */
    s.move_pause.bins[40] = 2;                 /* (741 ms, 1.049 s] */
    s.move_pause.bins[ROO__HIST_BINS - 1] = 1; /* over 67 s */
    s.move_pause.count = 4;
    s.move_pause.sum_ns = 71500000000ull;
    return s;
}

/* The rendered text as a NUL-terminated string; free() it. */
static char *render(const roo__cluster_snapshot *s, const char *worker)
{
    roo__buf b = { 0 };

    roo__metrics_render_cluster(s, worker, &b);
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

START_TEST(render_gives_each_peer_listener_and_move_figure)
{
    roo__cluster_snapshot_peer peers[2];
    roo__cluster_snapshot s = example(peers);
    char *t = render(&s, "worker1");

    assert_line(t, "roo_peer_messages_sent_total{worker=\"worker1\",peer=\"worker2\"} 600");
    assert_line(t, "roo_peer_messages_received_total{worker=\"worker1\",peer=\"worker2\"} 400");
    assert_line(t, "roo_peer_bytes_sent_total{worker=\"worker1\",peer=\"worker2\"} 6000");
    assert_line(t, "roo_peer_bytes_received_total{worker=\"worker1\",peer=\"worker2\"} 4100");
    assert_line(t, "roo_peer_link_backlog_bytes{worker=\"worker1\",peer=\"worker2\"} 512");
    assert_line(t, "roo_peer_connected{worker=\"worker1\",peer=\"worker2\"} 1");
    assert_line(t, "roo_listener_connections{worker=\"worker1\",listener=\"control\"} 2");
    assert_line(t, "roo_listener_connections_accepted_total{worker=\"worker1\","
                   "listener=\"external\"} 9");
    assert_line(t, "roo_listener_connections_refused_total{worker=\"worker1\","
                   "listener=\"external\"} 4");
    assert_line(t, "roo_partition_moves_total{worker=\"worker1\",result=\"done\"} 2");
    assert_line(t, "roo_partition_moves_total{worker=\"worker1\",result=\"aborted\"} 1");
    assert_line(t, "roo_partition_moves_total{worker=\"worker1\",result=\"abandoned\"} 0");
    assert_line(t, "roo_partitions_moving{worker=\"worker1\"} 85");
    assert_line(t, "roo_cluster_workers{worker=\"worker1\"} 3");
    assert_line(t, "roo_cluster_info{worker=\"worker1\",cluster_id=\"047f3fd0e71363f8\"} 1");
    free(t);
}
END_TEST

START_TEST(render_escapes_label_values)
{
    roo__cluster_snapshot_peer peers[2];
    roo__cluster_snapshot s = example(peers);
    char *t = render(&s, "w\"1");

    /* Backslash, double quote and line feed are the three the format escapes. */
    assert_line(t, "roo_peer_messages_sent_total{worker=\"w\\\"1\",peer=\"" ODD_ESCAPED "\"} 7");
    assert_line(t, "roo_peer_connected{worker=\"w\\\"1\",peer=\"" ODD_ESCAPED "\"} 0");
    free(t);
}
END_TEST

/*
 * Every line is a # HELP, a # TYPE or a sample in the text format's grammar; every sample
 * belongs to the family declared just before it; each family is declared once; counters
 * and only counters end in _total; every sample has the worker label first.
 */
static void check_format(char *t, const char *worker, unsigned *ret_families, unsigned *ret_samples)
{
    static const char *const sample_re =
        "^[a-zA-Z_:][a-zA-Z0-9_:]*"
        "\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\[\\\\\"n])*\""
        "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\[\\\\\"n])*\")*\\}"
        " ([-+]?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|-Inf|NaN)$";
    char family[128] = "", type[16] = "", seen[8192] = " ", *save = NULL, head[200];
    unsigned families = 0, samples = 0;
    regex_t re;

    ck_assert_int_eq(regcomp(&re, sample_re, REG_EXTENDED | REG_NOSUB), 0);
    snprintf(head, sizeof(head), "{worker=\"%s\"", worker);
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
            size_t n;
            ck_assert_int_eq(sscanf(line + 7, "%127s %15s", name, type), 2);
            ck_assert_str_eq(name, family);
            ck_assert(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                      strcmp(type, "histogram") == 0);
            n = strlen(family);
            ck_assert_msg((n > 6 && strcmp(family + n - 6, "_total") == 0) ==
                              (strcmp(type, "counter") == 0),
                          "%s is a %s", family, type);
            continue;
        }
        ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0, "not a sample: '%s'", line);
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
        ck_assert_msg(strstr(line, head) == line + strlen(name), "no worker first: '%s'", line);
        samples++;
    }
    regfree(&re);
    *ret_families = families;
    *ret_samples = samples;
}

START_TEST(render_is_in_the_text_format)
{
    roo__cluster_snapshot_peer peers[2];
    roo__cluster_snapshot s = example(peers);
    char *t = render(&s, "worker1");
    unsigned families, samples;

    check_format(t, "worker1", &families, &samples);
    ck_assert_uint_eq(families, 14);
    /* 6 per peer, 3 per listener, 3 results, ROO__HIST_BINS buckets + sum + count, 3. */
    ck_assert_uint_eq(samples, 6 * 2 + 3 * 3 + 3 + ROO__HIST_BINS + 2 + 3);
    free(t);
}
END_TEST

START_TEST(histogram_is_cumulative_and_ends_in_inf_sum_and_count)
{
    roo__cluster_snapshot_peer peers[2];
    roo__cluster_snapshot s = example(peers);
    char *t = render(&s, "worker1"), *save = NULL, *copy = strdup(t);
    const char *prefix = "roo_partition_move_pause_seconds_bucket{worker=\"worker1\",le=\"";
    uint64_t last = 0;
    unsigned buckets = 0;
    bool inf_last = false;

    assert_line(t, "# TYPE roo_partition_move_pause_seconds histogram");
    assert_line(t, "roo_partition_move_pause_seconds_bucket{worker=\"worker1\",le=\"1e-06\"} 0");
    assert_line(t, "roo_partition_move_pause_seconds_bucket{worker=\"worker1\",le=\"0.000128\"} 1");
    assert_line(t, "roo_partition_move_pause_seconds_bucket{worker=\"worker1\",le=\"1.048576\"} 3");
    assert_line(t,
                "roo_partition_move_pause_seconds_bucket{worker=\"worker1\",le=\"67.108864\"} 3");
    assert_line(t, "roo_partition_move_pause_seconds_bucket{worker=\"worker1\",le=\"+Inf\"} 4");
    assert_line(t, "roo_partition_move_pause_seconds_sum{worker=\"worker1\"} 71.500000000");
    assert_line(t, "roo_partition_move_pause_seconds_count{worker=\"worker1\"} 4");
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *v;
        uint64_t n;
        if (strncmp(line, prefix, strlen(prefix)) != 0)
            continue;
        ck_assert_msg(!inf_last, "a bucket after +Inf: '%s'", line);
        inf_last = strncmp(line + strlen(prefix), "+Inf\"", 5) == 0;
        v = strrchr(line, ' ') + 1;
        n = strtoull(v, NULL, 10);
        ck_assert_msg(n >= last, "not cumulative: '%s' after %llu", line, (unsigned long long)last);
        last = n;
        buckets++;
    }
    ck_assert(inf_last);
    ck_assert_uint_eq(buckets, ROO__HIST_BINS);
    ck_assert_uint_eq(last, 4);
    free(copy);
    free(t);
}
END_TEST

START_TEST(a_worker_without_peers_or_table_renders_every_family)
{
    roo__cluster_snapshot s = { 0 };
    char *t = render(&s, "solo"), *copy = strdup(t);
    unsigned families, samples;

    check_format(copy, "solo", &families, &samples);
    ck_assert_uint_eq(families, 14);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE roo_peer_connected gauge\n"));
    ck_assert_ptr_null(strstr(t, "roo_peer_connected{"));
    ck_assert_ptr_null(strstr(t, "roo_listener_connections{"));
    ck_assert_ptr_null(strstr(t, "roo_cluster_info{")); /* no table yet: no cluster id */
    assert_line(t, "roo_cluster_workers{worker=\"solo\"} 0");
    assert_line(t, "roo_partition_move_pause_seconds_count{worker=\"solo\"} 0");
    free(copy);
    free(t);
}
END_TEST

/* ---- the snapshot, from what the io thread publishes ---- */

static cluster *bare_cluster(void)
{
    cluster *cl = roo__xcalloc(1, sizeof(*cl));

    cl->ctl_lfd = cl->data_lfd = cl->ext_lfd = -1;
    return cl;
}

START_TEST(snapshot_shows_named_peers_and_listeners_that_exist)
{
    cluster *cl = bare_cluster();
    roo__cluster_snapshot s;

    roo__clm_peer_name(cl, 0, NULL); /* us */
    roo__clm_peer_name(cl, 1, "worker1");
    roo__clm_peer_name(cl, 3, "worker3");
    roo__clm_add(&cl->clm.peers[1].msgs_sent, 10);
    roo__clm_add(&cl->clm.peers[1].msgs_sent, 5);
    roo__clm_add(&cl->clm.peers[3].bytes_received, 99);
    roo__clm_peer_connected(cl, 3, true);
    cl->data_lfd = 7;
    roo__clm_listening(cl);
    cl->nconns[CONN_DATA] = 2;
    roo__clm_conns(cl, CONN_DATA, true);
    roo__clm_refused(cl, CONN_DATA);
    roo__clm_move_ended(cl, CLM_MOVE_ABANDONED);
    cl->mig.hold_ns = roo__now_ns() - 2000000; /* held for about 2 ms */
    roo__clm_move_ended(cl, CLM_MOVE_DONE);

    roo__cluster_take_snapshot(cl, &s);
    ck_assert_uint_eq(s.npeers, 2);
    ck_assert_str_eq(s.peers[0].name, "worker1");
    ck_assert_uint_eq(s.peers[0].messages_sent, 15);
    ck_assert(!s.peers[0].connected);
    ck_assert_str_eq(s.peers[1].name, "worker3");
    ck_assert_uint_eq(s.peers[1].bytes_received, 99);
    ck_assert(s.peers[1].connected);
    ck_assert_uint_eq(s.nlisteners, 1);
    ck_assert_str_eq(s.listeners[0].listener, "data");
    ck_assert_uint_eq(s.listeners[0].connections, 2);
    ck_assert_uint_eq(s.listeners[0].accepted, 1);
    ck_assert_uint_eq(s.listeners[0].refused, 1);
    ck_assert_uint_eq(s.moves_done, 1);
    ck_assert_uint_eq(s.moves_abandoned, 1);
    ck_assert_uint_eq(s.move_pause.count, 1);
    ck_assert_uint_ge(s.move_pause.sum_ns, 2000000);
    ck_assert_uint_eq(s.cluster_id, 0);
    roo__cluster_snapshot_finish(&s);
    roo__clm_finish(cl);
    free(cl);
}
END_TEST

START_TEST(a_peer_index_taken_by_another_worker_starts_at_zero)
{
    cluster *cl = bare_cluster();
    roo__cluster_snapshot before, after;

    roo__clm_peer_name(cl, 2, "joiner-a");
    roo__clm_add(&cl->clm.peers[2].msgs_received, 42);
    roo__clm_peer_name(cl, 2, "joiner-a"); /* the same worker again: its figures go on */
    roo__cluster_take_snapshot(cl, &before);
    ck_assert_uint_eq(before.npeers, 1);
    ck_assert_uint_eq(before.peers[0].messages_received, 42);

    /* Forgotten (its move abandoned), then another worker at that index. */
    roo__clm_peer_name(cl, 2, NULL);
    roo__clm_peer_name(cl, 2, "joiner-b");
    roo__cluster_take_snapshot(cl, &after);
    ck_assert_uint_eq(after.npeers, 1);
    ck_assert_str_eq(after.peers[0].name, "joiner-b");
    ck_assert_uint_eq(after.peers[0].messages_received, 0);
    /* A snapshot taken before still reads the old name: it is kept until the end. */
    ck_assert_str_eq(before.peers[0].name, "joiner-a");
    roo__cluster_snapshot_finish(&before);
    roo__cluster_snapshot_finish(&after);
    roo__clm_finish(cl);
    free(cl);
}
END_TEST

static Suite *render_cluster_suite(void)
{
    Suite *s = suite_create("render_cluster");
    TCase *tc;

    tc = roo_test_tcase("rendering", 10);
    tcase_add_test(tc, render_gives_each_peer_listener_and_move_figure);
    tcase_add_test(tc, render_escapes_label_values);
    tcase_add_test(tc, render_is_in_the_text_format);
    tcase_add_test(tc, histogram_is_cumulative_and_ends_in_inf_sum_and_count);
    tcase_add_test(tc, a_worker_without_peers_or_table_renders_every_family);
    suite_add_tcase(s, tc);
    tc = roo_test_tcase("snapshot", 10);
    tcase_add_test(tc, snapshot_shows_named_peers_and_listeners_that_exist);
    tcase_add_test(tc, a_peer_index_taken_by_another_worker_starts_at_zero);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(render_cluster_suite());
}
