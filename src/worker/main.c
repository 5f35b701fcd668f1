/* main.c: roo_main(), the worker's outer layer: flags, set-up, signals and the log lines
 * that say what happened, each once and with context. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "worker/config.h"

/* Which role the flags give this worker, or a usage error. */
static int cluster_mode(const roo__config *cfg, roo__cluster_mode *ret_mode, char *msg, size_t cap)
{
    if (cfg->has_join) {
        if (cfg->has_control || cfg->has_data) {
            snprintf(msg, cap,
                     "--join names any worker of the running cluster; leave out "
                     "--control and --data");
            return ROO_EUSAGE;
        }
        if (strcmp(cfg->name, ROO__DEFAULT_NAME) == 0) {
            snprintf(msg, cap, "a worker joining a running cluster needs its own --name");
            return ROO_EUSAGE;
        }
        *ret_mode = ROO__JOINER;
        return 0;
    }
    if (cfg->initializer) {
        if (cfg->worker_count > 1 && !cfg->has_control) {
            snprintf(msg, cap,
                     "--cluster-initializer with --worker-count %u needs --control "
                     "HOST:PORT to listen on",
                     cfg->worker_count);
            return ROO_EUSAGE;
        }
        if (cfg->has_my_control || cfg->has_my_data) {
            snprintf(msg, cap,
                     "the initializer listens on --control and --data; --my-control "
                     "and --my-data are for the other workers");
            return ROO_EUSAGE;
        }
        *ret_mode = ROO__INITIALIZER;
        return 0;
    }
    if (cfg->has_control) {
        /* Wallaroo-style command lines sometimes repeat these on every worker: harmless. */
        if (cfg->has_data)
            roo__log_info("--data names the initializer's data address; a joining worker "
                          "listens on --my-data, so --data is ignored here");
        if (cfg->worker_count != 1)
            roo__log_info("--worker-count is the initializer's to decide; ignored here");
        if (strcmp(cfg->name, ROO__DEFAULT_NAME) == 0) {
            snprintf(msg, cap, "a worker joining the initializer needs its own --name");
            return ROO_EUSAGE;
        }
        *ret_mode = ROO__JOINER;
        return 0;
    }
    if (cfg->worker_count > 1 || cfg->has_data || cfg->has_my_control || cfg->has_my_data) {
        snprintf(msg, cap,
                 "cluster flags need either --cluster-initializer (this worker starts "
                 "the cluster) or --control HOST:PORT (the initializer to join)");
        return ROO_EUSAGE;
    }
    *ret_mode = ROO__STANDALONE;
    return 0;
}

static void app_default_name(roo_app *app, const char *program)
{
    char name[65];
    size_t n = 0;

    for (const char *p = program; *p && n < 64; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        name[n++] = ok ? c : '_';
    }
    name[n] = '\0';
    if (n == 0)
        snprintf(name, sizeof(name), "app");
    roo_app_set_name(app, name);
}

/*
 * Every connection costs a descriptor, and the soft limit is often 1024: take what the hard
 * limit allows, so that --max-connections, not the kernel, is what refuses connections.
 */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        roo__log_debug("open files: soft limit raised from %llu to %llu", (unsigned long long)was,
                       (unsigned long long)rl.rlim_cur);
}

static void engine_cfg_from(const roo__config *cfg, roo__cluster_mode mode,
                            roo__engine_cfg *ret_ecfg)
{
    *ret_ecfg = (roo__engine_cfg){
        .program = cfg->program,
        .worker_name = cfg->name,
        .resilience_dir = cfg->resilience_dir,
        .in = cfg->in,
        .nin = cfg->nin,
        .out = cfg->out,
        .nout = cfg->nout,
        .threads = cfg->threads,
        .partitions = cfg->partitions,
        .max_frame = cfg->max_frame,
        .map_size = cfg->map_size,
        .batch_bytes = cfg->batch_bytes,
        .batches_per_shard = cfg->batches,
        .sink_replay_bytes = cfg->sink_replay,
        .shutdown_timeout_ms = (int)cfg->shutdown_timeout_s * 1000,
        .link_backlog_bytes = cfg->link_backlog,
        .max_connections = cfg->max_connections,
        .stream_max_idle_s = cfg->stream_max_idle_s,
        .mode = mode,
        .worker_count = cfg->worker_count,
        .join = cfg->has_join,
        .has_control = cfg->has_control || cfg->has_join,
        .has_data = cfg->has_data,
        .has_my_control = cfg->has_my_control,
        .has_my_data = cfg->has_my_data,
        .has_external = cfg->has_external,
        .control = cfg->has_join ? cfg->join : cfg->control,
        .data = cfg->data,
        .my_control = cfg->my_control,
        .my_data = cfg->my_data,
        .external = cfg->external,
        .cluster_secret = cfg->cluster_secret,
    };
}

/*
 * Wait until a signal in `sfd` (a signalfd) arrives or a thread asks the worker to stop
 * (roo__engine_exit: a fatal error, or the cluster's own stop). Returns the signal, or 0.
 */
static int wait_for_stop(roo__engine *e, int sfd)
{
    struct pollfd p[2] = { { .fd = sfd, .events = POLLIN },
                           { .fd = roo__engine_exit_fd(e), .events = POLLIN } };

    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            roo__log_error("cannot wait for signals: %s; stopping", strerror(errno));
            return SIGTERM;
        }
        if (p[1].revents && roo__engine_take_exit(e))
            return 0;
        if (p[0].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                return (int)si.ssi_signo;
        }
    }
}

/* Serve until stopped; the exit status. The engine's stop and the log lines that say why. */
static int serve(roo__engine *e, int sfd, const roo__config *cfg, bool *ret_signalled)
{
    int sig = wait_for_stop(e, sfd);

    *ret_signalled = sig != 0;

    if (roo__engine_fatal_status(e))
        roo__log_info("stopping after the error above");
    else if (!sig && roo__engine_cluster_exit(e))
        roo__log_info("stopping with the cluster (closing sources, committing state, delivering "
                      "output)");
    else
        roo__log_info("received %s: stopping (closing sources, committing state, delivering "
                      "output)",
                      sig == SIGINT   ? "SIGINT"
                      : sig == SIGHUP ? "SIGHUP"
                                      : "SIGTERM");
    roo__engine_request_stop(e);
    if (!roo__engine_wait_done(e, (int)cfg->shutdown_timeout_s * 1000 + 8000))
        roo__log_warn("stop did not finish in time; exiting anyway (state is committed up to "
                      "the last completed commit)");
    return roo__engine_fatal_status(e) ? 1 : 0;
}

/* After the engine is gone: a worker that left its cluster removes its directory. */
static void finish(const roo__config *cfg, const roo__engine_stats *st, bool left, int status)
{
    int rc;

    if (left && status == 0) {
        rc = roo__rm_rf(cfg->resilience_dir);
        if (rc < 0)
            roo__log_warn("left the cluster, but cannot remove %s: %s", cfg->resilience_dir,
                          roo_strerror(rc));
        else
            roo__log_info("left the cluster; removed %s", cfg->resilience_dir);
    }
    if (status == 0)
        roo__log_info("stopped: %llu frames in, %llu records out, %llu commits, %llu "
                      "callback errors",
                      (unsigned long long)st->frames_in, (unsigned long long)st->records_out,
                      (unsigned long long)st->commits, (unsigned long long)st->callback_errors);
}

/*
 * While recovery maps and reads the state (on this thread, before any other runs), a fault
 * means the file is damaged in a way the checks before mapping could not see: say so in one
 * line and exit 1 rather than die without a word. Only write() and _exit() are safe here.
 */
static char fault_line[1400];
static size_t fault_len;

static void state_fault(int sig)
{
    (void)sig;
    if (write(STDERR_FILENO, fault_line, fault_len) < 0) {
        /* nothing more can be done */
    }
    _exit(1);
}

static void guard_state_reads(const roo__config *cfg, bool on)
{
    struct sigaction sa;
    int n;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on ? state_fault : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (on) {
        n = snprintf(fault_line, sizeof(fault_line),
                     "%s[%s] ERROR cannot start: the state in %s is damaged (reading it faulted); "
                     "restore it from a copy, or start with a fresh --resilience-dir\n",
                     cfg->program, cfg->name, cfg->resilience_dir);
        fault_len = n > 0 ? ROO__MIN((size_t)n, sizeof(fault_line) - 1) : 0;
    }
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL); /* LMDB's own assertions on a damaged page */
}

/* What a scrape needs to render the cluster's figures (see cluster_metrics). */
typedef struct cluster_scrape {
    roo__cluster *cl;
    const char *worker;
} cluster_scrape;

/*
 * /metrics, on libmicrohttpd's thread: the cluster's families after the engine's. Every
 * worker has a cluster (a standalone one too, a table of one worker): it renders the same
 * families, with no peer samples and only the listeners it has (--external).
 */
static void cluster_metrics(void *ctx, roo__buf *out)
{
    const cluster_scrape *cs = ctx;
    roo__cluster_snapshot s;

    roo__cluster_take_snapshot(cs->cl, &s);
    roo__metrics_render_cluster(&s, cs->worker, out);
    roo__cluster_snapshot_finish(&s);
}

/*
 * --metrics: serve the scrape target on the first free port of the range, and say where
 * (with the ports that were taken, since a scrape config names ports). cs must outlive
 * the server.
 */
static int start_metrics(roo__engine *e, const roo__config *cfg, cluster_scrape *cs,
                         roo__metrics **ret_metrics, char *msg, size_t cap)
{
    roo__metrics_cfg mc = {
        .addr = cfg->metrics,
        .last_port = cfg->metrics_last_port,
        .loopback_only = cfg->cluster_secret == NULL,
        .extra = cluster_metrics,
        .extra_ctx = cs,
    };
    unsigned first = (unsigned)atoi(cfg->metrics.port), taken;
    int rc = roo__metrics_create(e, &mc, ret_metrics, msg, cap);

    if (rc < 0)
        return rc;
    taken = roo__metrics_ports_taken(*ret_metrics);
    if (taken == 0)
        roo__log_info("metrics: serving http://%s/metrics", roo__metrics_address(*ret_metrics));
    else if (taken == 1)
        roo__log_info("metrics: serving http://%s/metrics (%u was taken)",
                      roo__metrics_address(*ret_metrics), first);
    else
        roo__log_info("metrics: serving http://%s/metrics (%u-%u were taken)",
                      roo__metrics_address(*ret_metrics), first, first + taken - 1);
    return 0;
}

/* run()'s answer when the move adding this --join worker was abandoned: run it again. */
#define RUN_AGAIN (-1)

/* Recover, join or form the cluster, serve, stop: the exit status, or RUN_AGAIN. */
static int run(roo_app *app, const roo__config *cfg, roo__cluster_mode mode, int sfd)
{
    roo__engine_cfg ecfg;
    roo__engine *e = NULL;
    roo__cluster *cl = NULL;
    roo__metrics *metrics = NULL;
    cluster_scrape scrape = { .worker = cfg->name };
    char msg[1024] = "";
    uint64_t keys;
    int64_t ms;
    int rc, status = 1;
    /* A start that fails before serving leaves no directory behind that it created. */
    bool created = access(cfg->resilience_dir, F_OK) != 0, serving = false, signalled = false;

    engine_cfg_from(cfg, mode, &ecfg);
    guard_state_reads(cfg, true);
    rc = roo__engine_create(app, &ecfg, &e, msg, sizeof(msg));
    guard_state_reads(cfg, false);
    if (rc == 0)
        rc = roo__cluster_create(e, &cl, msg, sizeof(msg));
    scrape.cl = cl;
    if (rc == 0 && cfg->has_metrics)
        rc = start_metrics(e, cfg, &scrape, &metrics, msg, sizeof(msg));
    if (rc < 0) {
        roo__log_error("cannot start: %s", msg[0] ? msg : roo_strerror(rc));
        status = rc == ROO_EUSAGE ? 2 : 1;
        goto out;
    }
    /* roo-ctl status and targets name it; a scrape target without a name still serves. */
    if (metrics && roo__cluster_set_metrics_address(cl, roo__metrics_address(metrics)) < 0)
        roo__log_warn("metrics address %s is too long for roo-ctl status; leaving it out",
                      roo__metrics_address(metrics));
    roo__engine_set_io_hooks(e, &roo__cluster_io_hooks, cl);
    roo__engine_recovery_info(e, &keys, &ms);
    if (keys)
        roo__log_info("recovered %llu key(s) from %s in %lld ms", (unsigned long long)keys,
                      cfg->resilience_dir, (long long)ms);
    else
        roo__log_info("no saved state in %s: starting empty", cfg->resilience_dir);
    rc = roo__engine_start(e, msg, sizeof(msg));
    if (rc < 0) {
        roo__log_error("cannot start: %s", msg[0] ? msg : roo_strerror(rc));
        if (roo__engine_running(e)) {
            roo__engine_request_stop(e);
            roo__engine_wait_done(e, 2000);
        }
        goto out;
    }
    serving = true;
    status = serve(e, sfd, cfg, &signalled);
out:
    if (e) {
        /* The cluster lives on the io thread: it goes once that thread is joined. */
        roo__engine_stats st;
        bool left = roo__engine_left_cluster(e);
        bool again = roo__engine_join_abandoned(e) && !signalled && status == 0;
        roo__engine_join(e);
        roo__metrics_destroy(metrics); /* it reads the engine and the cluster until here */
        roo__cluster_destroy(cl);
        roo__engine_get_stats(e, &st);
        roo__engine_destroy(e);
        finish(cfg, &st, left, status);
        if (again) {
            rc = roo__rm_rf(cfg->resilience_dir);
            if (rc < 0) {
                roo__log_error("cannot remove %s to join again: %s", cfg->resilience_dir,
                               roo_strerror(rc));
                return 1;
            }
            roo__log_info("removed %s; joining the cluster again", cfg->resilience_dir);
            return RUN_AGAIN;
        }
    }
    if (created && !serving && status != 0 && roo__rm_rf(cfg->resilience_dir) == 0)
        roo__log_info("removed %s, which this failed start had created", cfg->resilience_dir);
    return status;
}

int roo_main(int argc, char **argv, roo_setup_fn setup)
{
    roo__config cfg;
    roo_app *app = NULL;
    roo__cluster_mode mode = ROO__STANDALONE;
    char msg[1024];
    sigset_t set;
    int rc, sfd, status = 1;

    rc = roo__config_parse(argc, argv, &cfg, msg, sizeof(msg));
    if (rc < 0) {
        fprintf(stderr, "%s: %s (see --help)\n", cfg.program, msg);
        roo__config_finish(&cfg);
        return 2;
    }
    if (cfg.help || cfg.version) {
        if (cfg.help)
            roo__config_usage(stdout, cfg.program);
        else
            printf("%s (roo %s)\n", cfg.program, ROO_VERSION_STRING);
        roo__config_finish(&cfg);
        return 0;
    }
    roo__log_set_names(cfg.program, cfg.name);
    roo__log_set_level(cfg.log_level);
    if (cluster_mode(&cfg, &mode, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "%s: %s (see --help)\n", cfg.program, msg);
        roo__config_finish(&cfg);
        return 2;
    }
    if (cfg.warning[0])
        roo__log_warn("%s", cfg.warning);

    roo_app_create(&app);
    app_default_name(app, cfg.program);
    rc = setup(app, cfg.app_argc, cfg.app_argv);
    if (rc < 0) {
        roo__log_error("application set-up failed: %s", roo_strerror(rc));
        status = rc == ROO_EUSAGE ? 2 : 1;
        goto out;
    }

    raise_fd_limit();
    /* Threads inherit this mask: these signals reach only this thread's signalfd. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP); /* a closed terminal: stop cleanly, as for SIGTERM */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        roo__log_error("cannot start: signalfd: %s", strerror(errno));
        goto out;
    }
    while ((status = run(app, &cfg, mode, sfd)) == RUN_AGAIN)
        continue;
    close(sfd);
out:
    roo_app_destroy(app);
    roo__config_finish(&cfg);
    return status;
}
