/* roo-ctl-top.c: roo-ctl top, a view of every worker refreshed every few seconds, and roo-ctl
 * targets, the workers' --metrics addresses as Prometheus file_sd JSON. Both read the same
 * status as roo-ctl status; top keeps the previous answer to show the figures of the time
 * between two refreshes rather than since each worker started. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/hist.h"
#include "roo-ctl.h"

/* Ctrl-C ends top between two refreshes (or cuts its sleep short): exit 0, not a kill. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t u64_of(const json_t *w, const char *name)
{
    const json_t *v = json_object_get(w, name);

    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    return json_number_value(v) > 0 ? (uint64_t)json_number_value(v) : 0;
}

static double num_of(const json_t *w, const char *name)
{
    return json_number_value(json_object_get(w, name));
}

/* The cumulative latency bins of a worker's status line (absent ones are empty). */
static void bins_of(const json_t *w, uint64_t bins[ROO__HIST_BINS])
{
    const json_t *a = json_object_get(w, "latency_bins");

    memset(bins, 0, ROO__HIST_BINS * sizeof(uint64_t));
    for (size_t i = 0; i < json_array_size(a) && i < ROO__HIST_BINS; i++) {
        const json_t *v = json_array_get(a, i);
        bins[i] =
            json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    }
}

/* A worker as the previous refresh saw it. */
typedef struct seen {
    char *name;
    uint64_t frames_in, records_out;
    uint64_t bins[ROO__HIST_BINS];
    double uptime_s;
    int64_t at_ms; /* when its answer came (roo-ctl's monotonic clock) */
} seen;

typedef struct view {
    seen *prev;
    size_t nprev;
    bool tty;
    bool answered; /* some refresh had an answer */
} view;

static const seen *find_seen(const view *v, const char *name)
{
    for (size_t i = 0; name && i < v->nprev; i++)
        if (strcmp(v->prev[i].name, name) == 0)
            return &v->prev[i];
    return NULL;
}

static void forget_seen(view *v)
{
    for (size_t i = 0; i < v->nprev; i++)
        free(v->prev[i].name);
    free(v->prev);
    v->prev = NULL;
    v->nprev = 0;
}

/* A counter's rate since the last refresh; the worker's own (~5 s) without one. */
static double rate(const seen *was, uint64_t was_n, uint64_t now_n, int64_t now_ms, double own)
{
    if (!was || now_n < was_n || now_ms <= was->at_ms) /* a counter read apart */
        return own;
    return (double)(now_n - was_n) * 1000.0 / (double)(now_ms - was->at_ms);
}

static const char *str_or(const json_t *v, const char *otherwise)
{
    return json_is_string(v) ? json_string_value(v) : otherwise;
}

static char *dup_text(const char *s)
{
    return roo__xstrdup(s);
}

/* One worker's row: figures of the time since the last refresh where there is one. */
static void add_row(ctl_table *t, const json_t *w, const seen *was, const seen *now)
{
    const char *name = json_string_value(json_object_get(w, "name"));
    bool reachable = json_is_true(json_object_get(w, "reachable"));
    bool ready = json_is_true(json_object_get(w, "ready"));
    roo__hist_counts d = { 0 };
    char b[64];

    ctl_table_add(t, dup_text(name ? name : "?"));
    ctl_table_add(t, dup_text(!reachable ? "down" : ready ? "ready" : "starting"));
    /* A worker that restarted since (its uptime or a bin went back) is seen for the first
     * time: its figures since the last refresh would be nonsense. */
    for (unsigned i = 0; was && i < ROO__HIST_BINS; i++)
        if (now->bins[i] < was->bins[i] || now->uptime_s < was->uptime_s)
            was = NULL;
    if (!reachable) {
        for (int k = 0; k < 10; k++)
            ctl_table_add(t, dup_text("-"));
        return;
    }
    ctl_table_add(t, dup_text(ctl_human_rate(rate(was, was ? was->frames_in : 0, now->frames_in,
                                                  now->at_ms, num_of(w, "frames_in_per_second")),
                                             b, sizeof(b))));
    ctl_table_add(t, dup_text(ctl_human_rate(rate(was, was ? was->records_out : 0, now->records_out,
                                                  now->at_ms, num_of(w, "records_out_per_second")),
                                             b, sizeof(b))));
    /* The bins since the last refresh; on the first refresh, the worker's cumulative bins:
     * the latency since it started. */
    for (unsigned i = 0; i < ROO__HIST_BINS; i++)
        d.bins[i] = now->bins[i] - (was ? was->bins[i] : 0);
    ctl_table_add(t, dup_text(ctl_human_latency(roo__hist_quantile(&d, 0.5), b, sizeof(b))));
    ctl_table_add(t, dup_text(ctl_human_latency(roo__hist_quantile(&d, 0.99), b, sizeof(b))));
    snprintf(b, sizeof(b), "%llu/%llu", (unsigned long long)u64_of(w, "sinks_connected"),
             (unsigned long long)u64_of(w, "sinks"));
    ctl_table_add(t, dup_text(b));
    ctl_table_add(t, dup_text(ctl_human_bytes(u64_of(w, "held_bytes"), b, sizeof(b))));
    ctl_table_add(t, dup_text(ctl_human_bytes(u64_of(w, "undelivered_bytes"), b, sizeof(b))));
    ctl_table_add(t, dup_text(json_object_get(w, "link_backlog_bytes")
                                  ? ctl_human_bytes(u64_of(w, "link_backlog_bytes"), b, sizeof(b))
                                  : "-"));
    snprintf(b, sizeof(b), "%llu", (unsigned long long)u64_of(w, "callback_errors"));
    ctl_table_add(t, dup_text(b));
    snprintf(b, sizeof(b), "%llu", (unsigned long long)u64_of(w, "decoder_rejections"));
    ctl_table_add(t, dup_text(b));
}

/* Ask for the status once and print it as one block (a whole screen on a terminal). */
static void refresh(const targets *t, view *v, uint64_t interval_s)
{
    static const char *const head[] = { "WORKER",      "STATE",   "IN/S",   "OUT/S",
                                        "P50",         "P99",     "SINKS",  "HELD",
                                        "UNDELIVERED", "BACKLOG", "ERRORS", "REJECTED" };
    roo__ext_request req = { .cmd = ROO__EXT_STATUS };
    bool ok = false;
    char *text = NULL, *error = NULL, clock[16] = "";
    json_t *doc = NULL, *workers;
    size_t who = 0, nw;
    time_t wall = time(NULL);
    struct tm tm;
    ctl_table tab = { .cols = ROO__ARRAY_SIZE(head) };
    seen *now;
    int64_t at_ms;
    /* On a terminal the reasons would be cleared at once: the block says the last one. */
    int rc = ctl_ask_any(t, &req, ctl_now_ms() + (int64_t)t->timeout_s * 1000, v->tty, &ok, &text,
                         &error, &who);

    at_ms = ctl_now_ms();
    if (localtime_r(&wall, &tm))
        strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
    if (v->tty)
        fputs("\033[H\033[2J", stdout); /* home, clear: the new block replaces the old */
    if (rc == 0 && !ok)
        fprintf(stderr, "roo-ctl: %s said no: %s\n", ctl_addr_text(&t->addrs[who]), error);
    if (rc < 0 || !ok || ctl_parse_answer(text, ctl_addr_text(&t->addrs[who]), &doc) < 0) {
        printf("roo-ctl top  %s  no answer%s%s (asking again in %llu s)\n\n", clock,
               rc < 0 ? ": " : "", rc < 0 ? roo_strerror(rc) : "", (unsigned long long)interval_s);
        fflush(stdout);
        free(text);
        free(error);
        return;
    }
    v->answered = true;
    workers = json_object_get(doc, "workers");
    nw = json_array_size(workers);
    printf("roo-ctl top  %s  cluster %s (%s)  %zu worker(s)  %s  every %llu s\n", clock,
           str_or(json_object_get(doc, "cluster_id"), "?"),
           str_or(json_object_get(doc, "application"), "?"), nw,
           json_is_true(json_object_get(doc, "ready")) ? "ready" : "not ready",
           (unsigned long long)interval_s);
    if (json_string_value(json_object_get(doc, "warning")))
        printf("warning: %s\n", json_string_value(json_object_get(doc, "warning")));
    for (size_t k = 0; k < ROO__ARRAY_SIZE(head); k++)
        ctl_table_add(&tab, dup_text(head[k]));
    now = roo__xcalloc(nw ? nw : 1, sizeof(*now));
    for (size_t i = 0; i < nw; i++) {
        const json_t *w = json_array_get(workers, i);
        const char *name = json_string_value(json_object_get(w, "name"));
        now[i].name = roo__xstrdup(name ? name : "");
        now[i].frames_in = u64_of(w, "frames_in");
        now[i].records_out = u64_of(w, "records_out");
        bins_of(w, now[i].bins);
        now[i].uptime_s = num_of(w, "uptime_seconds");
        now[i].at_ms = at_ms;
        add_row(&tab, w, find_seen(v, name), &now[i]);
    }
    ctl_table_print(&tab, stdout);
    if (!v->tty)
        fputc('\n', stdout); /* blocks apart in a log */
    fflush(stdout);
    /* Only workers that answered are remembered: one that was down starts afresh. */
    forget_seen(v);
    for (size_t i = 0; i < nw; i++) {
        if (!json_is_true(json_object_get(json_array_get(workers, i), "reachable"))) {
            free(now[i].name);
            now[i].name = NULL;
        }
    }
    v->prev = now;
    for (size_t i = 0; i < nw; i++)
        if (now[i].name)
            v->prev[v->nprev++] = now[i];
    json_decref(doc);
    free(text);
    free(error);
}

/* Sleep until deadline (monotonic ms) or a stop signal. */
static void sleep_until(int64_t deadline)
{
    while (!stop_requested) {
        int64_t left = deadline - ctl_now_ms();
        struct timespec ts;
        if (left <= 0)
            return;
        ts.tv_sec = left / 1000;
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        nanosleep(&ts, NULL); /* a signal cuts it short: the loop looks at the flag */
    }
}

int ctl_top(const targets *t, uint64_t interval_s, uint64_t count)
{
    struct sigaction sa = { .sa_handler = on_stop_signal }; /* no SA_RESTART: wake sleeps */
    view v = { .tty = isatty(STDOUT_FILENO) == 1 };
    int64_t next = ctl_now_ms();

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (uint64_t n = 0; !stop_requested && (!count || n < count); n++) {
        if (n) {
            /* Refreshes keep to their beat: a slow answer does not push the next one back. */
            next += (int64_t)interval_s * 1000;
            if (next < ctl_now_ms())
                next = ctl_now_ms();
            sleep_until(next);
            if (stop_requested)
                break;
        }
        refresh(t, &v, interval_s);
    }
    forget_seen(&v);
    return v.answered || stop_requested ? 0 : 1;
}

/* ---- targets ---- */

bool ctl_label_name_ok(const char *name, size_t n)
{
    if (n == 0 || (n >= 2 && name[0] == '_' && name[1] == '_'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!letter && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/*
 * Where Prometheus should scrape: the metrics address, but a worker serving on every
 * address (0.0.0.0, [::]) is reached at the host of its control address instead.
 */
static char *scrape_address(const char *metrics, const char *control)
{
    const char *port = strrchr(metrics, ':'), *chost_end = control ? strrchr(control, ':') : NULL;
    size_t hn = port ? (size_t)(port - metrics) : 0;
    bool wild = port && (hn == 0 || (hn == 7 && strncmp(metrics, "0.0.0.0", 7) == 0) ||
                         (hn == 4 && strncmp(metrics, "[::]", 4) == 0) ||
                         (hn == 2 && strncmp(metrics, "::", 2) == 0));
    char *out;
    size_t cn;

    if (!wild || !chost_end || chost_end == control)
        return roo__xstrdup(metrics);
    cn = (size_t)(chost_end - control);
    out = roo__xmalloc(cn + strlen(port) + 1);
    memcpy(out, control, cn);
    strcpy(out + cn, port);
    return out;
}

int ctl_targets(const targets *t, char *const *labels, size_t nlabels)
{
    roo__ext_request req = { .cmd = ROO__EXT_STATUS };
    bool ok = false;
    char *text = NULL, *error = NULL;
    json_t *doc = NULL, *workers;
    size_t who = 0, printed = 0;
    int rc = ctl_ask_any(t, &req, ctl_now_ms() + (int64_t)t->timeout_s * 1000, false, &ok, &text,
                         &error, &who);

    if (rc == 0 && !ok)
        fprintf(stderr, "roo-ctl: %s said no: %s\n", ctl_addr_text(&t->addrs[who]), error);
    if (rc < 0 || !ok || ctl_parse_answer(text, ctl_addr_text(&t->addrs[who]), &doc) < 0) {
        free(text);
        free(error);
        return 1;
    }
    workers = json_object_get(doc, "workers");
    fputs("[", stdout);
    for (size_t i = 0; i < json_array_size(workers); i++) {
        const json_t *w = json_array_get(workers, i);
        const char *name = json_string_value(json_object_get(w, "name"));
        const char *metrics = json_string_value(json_object_get(w, "metrics"));
        json_t *entry, *addrs, *lab;
        char *addr, *line;

        if (!json_is_true(json_object_get(w, "reachable"))) {
            fprintf(stderr,
                    "roo-ctl: worker %s did not answer: its metrics address is not "
                    "known; left out\n",
                    name ? name : "?");
            continue;
        }
        if (!metrics || !metrics[0])
            continue; /* no --metrics */
        entry = roo__json_object();
        addrs = roo__json_array();
        lab = roo__json_object();
        addr = scrape_address(metrics, json_string_value(json_object_get(w, "control")));
        roo__json_push(addrs, roo__json_str(addr));
        free(addr);
        roo__json_set(lab, "worker", roo__json_str(name));
        roo__json_set(lab, "cluster",
                      roo__json_str(json_string_value(json_object_get(doc, "cluster_id"))));
        roo__json_set(lab, "application",
                      roo__json_str(json_string_value(json_object_get(doc, "application"))));
        for (size_t k = 0; k < nlabels; k++) {
            const char *eq = strchr(labels[k], '=');
            char *key = roo__xstrdup(labels[k]);
            key[eq - labels[k]] = 0;
            roo__json_set(lab, key, roo__json_str(eq + 1));
            free(key);
        }
        roo__json_set(entry, "targets", addrs);
        roo__json_set(entry, "labels", lab);
        line = roo__json_line(entry);
        printf("%s\n  %s", printed++ ? "," : "", line);
        free(line);
        json_decref(entry);
    }
    fputs(printed ? "\n]\n" : "]\n", stdout);
    json_decref(doc);
    free(text);
    free(error);
    return 0;
}
