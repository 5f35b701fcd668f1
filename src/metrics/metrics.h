/* metrics.h: a worker's Prometheus scrape target (--metrics): /metrics and /healthz over
 * HTTP, served by libmicrohttpd on its own thread, and the text it renders.
 *
 * DESIGN
 *
 * Threads: libmicrohttpd runs one internal thread (epoll) for every HTTP connection. A
 * request for /metrics takes an engine snapshot (engine.h: relaxed atomic loads, no lock)
 * and renders it, on that thread; no engine thread ever waits for a scrape or knows one
 * happened. /healthz reads one flag the same way. The worker layer adds the cluster's
 * families (roo__metrics_cfg.extra), read the same way from what the io thread publishes.
 *
 * Bounds against hostile clients: at most ROO__METRICS_MAX_CONNECTIONS connections
 * (ROO__METRICS_MAX_PER_IP from one address), ROO__METRICS_CONN_MEMORY bytes of request per
 * connection, and an idle connection is closed after ROO__METRICS_TIMEOUT_S seconds. Beyond
 * them libmicrohttpd closes connections at once; processing is never affected, because
 * nothing the engine does passes through this thread.
 *
 * Addresses: the worker layer gives a host and a range of ports; the first port that is not
 * taken is used (workers on one host may share one --metrics address). The socket is bound
 * here (net/) and handed to libmicrohttpd, so that "taken" can be told from other errors.
 *
 * Dependencies: metrics -> engine (read-only snapshot), net, common, and cluster for the
 * type of its snapshot only (render_cluster.c); neither the engine nor the cluster names
 * this module.
 */
#ifndef ROO_METRICS_H
#define ROO_METRICS_H

#include "common/buf.h"
#include "engine/engine.h"
#include "net/net.h"

#define ROO__METRICS_MAX_CONNECTIONS 32u
#define ROO__METRICS_MAX_PER_IP 16u
#define ROO__METRICS_CONN_MEMORY (32u * 1024u)
#define ROO__METRICS_TIMEOUT_S 10u

typedef struct roo__metrics roo__metrics;

typedef struct roo__metrics_cfg {
    roo__addr addr;     /* host, and the first port to try (0: any free port) */
    uint16_t last_port; /* the last port to try (>= addr's port) */
    bool loopback_only; /* no cluster secret: refuse any address but loopback */
    /*
     * Optional (NULL: none): more families for /metrics, appended to `out` after the
     * engine's, on libmicrohttpd's thread, at every scrape. The worker layer renders the
     * cluster's figures this way (metrics never names the cluster); whatever extra_ctx
     * points to must outlive the server.
     */
    void (*extra)(void *ctx, roo__buf *out);
    void *extra_ctx;
} roo__metrics_cfg;

/*
 * Bind the first free port of the range and start serving; main thread, before the engine
 * starts. The engine is borrowed: destroy the server before the engine. Errors:
 * -EADDRINUSE (every port of the range is taken), ROO_EUSAGE (not loopback without a
 * cluster secret), another negative errno or ROO_ENONAME; msg says which in one line.
 */
int roo__metrics_create(roo__engine *e, const roo__metrics_cfg *cfg, roo__metrics **ret_metrics,
                        char *msg, size_t cap);

/* Where it serves, "HOST:PORT" with the host as given; and how many ports were taken. */
const char *roo__metrics_address(const roo__metrics *m);
unsigned roo__metrics_ports_taken(const roo__metrics *m);

/* Stop serving (joins libmicrohttpd's thread, closes the socket). Accepts NULL. */
void roo__metrics_destroy(roo__metrics *m);

/* The process's figures, Prometheus's standard process_* metrics (read from /proc/self). */
typedef struct roo__process_stats {
    double cpu_seconds;        /* user + system */
    uint64_t resident_bytes;   /* RSS */
    uint64_t virtual_bytes;    /* address space */
    double start_time_seconds; /* since the Unix epoch */
    uint64_t open_fds, max_fds;
} roo__process_stats;

/*
 * Parse the text of /proc/PID/stat (pure): ticks per second and the page size as sysconf
 * gives them, boot_time as /proc/stat's btime. Fills every field but the fds. -EINVAL if
 * the text is not a stat line.
 */
int roo__process_stats_parse(const char *stat, long ticks, long page_size, uint64_t boot_time,
                             roo__process_stats *ret_stats);

/* Read this process's figures; -errno if /proc cannot be read. */
int roo__process_stats_read(roo__process_stats *ret_stats);

/*
 * The Prometheus text exposition format (0.0.4) of a snapshot and the process's figures
 * (proc NULL: no process_* families), appended to out. Pure: the same input gives the same
 * text. Every family has # HELP and # TYPE; every roo_ sample has the label worker.
 */
void roo__metrics_render(const roo__engine_snapshot *s, const roo__process_stats *proc,
                         roo__buf *out);

/* The cluster's snapshot (cluster/cluster.h); only render_cluster.c needs its fields. */
typedef struct roo__cluster_snapshot roo__cluster_snapshot;

/*
 * The cluster's figures (peers' data links, listeners, partition moves, the table) as
 * Prometheus text, appended to out, every sample labelled worker=`worker`. Pure. Every
 * family is written, with no samples where there is nothing to show (no peer, no listener).
 */
void roo__metrics_render_cluster(const roo__cluster_snapshot *c, const char *worker, roo__buf *out);

#define ROO__METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* ROO_METRICS_H */
