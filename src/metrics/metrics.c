/* metrics.c: the HTTP side of --metrics: a port of the range, libmicrohttpd, and the three
 * answers (/metrics, /healthz, everything else). See metrics.h for the design. */
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics/metrics.h"

/* Read-only once created: libmicrohttpd's thread reads it without a lock. */
struct roo__metrics {
    roo__engine *eng;
    void (*extra)(void *ctx, roo__buf *out);
    void *extra_ctx;
    struct MHD_Daemon *mhd;
    char address[300];
    unsigned ports_taken;
};

/* ---- process figures ---- */

static uint64_t boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    unsigned long long bt = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

static uint64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    uint64_t n = 0;

    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not counting the directory's own descriptor */
}

int roo__process_stats_read(roo__process_stats *ret_stats)
{
    char buf[1024];
    roo__process_stats st;
    struct rlimit rl;
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n;
    int rc;

    if (!f)
        return -errno;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    rc = roo__process_stats_parse(buf, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot_time(),
                                  &st);
    if (rc < 0)
        return rc;
    st.open_fds = count_fds();
    st.max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
    *ret_stats = st;
    return 0;
}

/* ---- HTTP ---- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, void *body, size_t len,
                               enum MHD_ResponseMemoryMode mode, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result ok;

    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO; /* libmicrohttpd closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return respond(conn, status, (void *)text, strlen(text), MHD_RESPMEM_PERSISTENT,
                   "text/plain; charset=utf-8");
}

static enum MHD_Result serve_metrics(roo__metrics *m, struct MHD_Connection *conn)
{
    roo__engine_snapshot snap;
    roo__process_stats proc;
    roo__buf out = { 0 };
    bool have_proc = roo__process_stats_read(&proc) == 0;

    roo__engine_take_snapshot(m->eng, &snap);
    roo__buf_reserve(&out, 16384);
    roo__metrics_render(&snap, have_proc ? &proc : NULL, &out);
    roo__engine_snapshot_finish(&snap);
    if (m->extra)
        m->extra(m->extra_ctx, &out);
    /* libmicrohttpd frees the text with free() once sent. */
    return respond(conn, MHD_HTTP_OK, out.data, out.len, MHD_RESPMEM_MUST_FREE,
                   ROO__METRICS_CONTENT_TYPE);
}

/*
 * libmicrohttpd's thread, at least twice per request: first with the headers alone, then
 * again, when a GET or HEAD is answered (answered at the first call, a connection is not
 * kept for the next scrape). Any other method is refused at once, and a GET that brings a
 * body is refused rather than read: nothing here needs one.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    roo__metrics *m = cls;
    roo__engine_snapshot snap;

    (void)version, (void)upload_data;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (!*req_cls) {
        /* Headers only so far: answering on the next call keeps the connection alive. */
        static int headers_seen;
        *req_cls = &headers_seen;
        return MHD_YES;
    }
    if (*upload_data_size)
        return respond_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "a GET takes no body\n");
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(m, conn);
    if (strcmp(url, "/healthz") == 0) {
        bool ready;
        /* One flag would do; the snapshot keeps a single reading path into the engine. */
        roo__engine_take_snapshot(m->eng, &snap);
        ready = snap.ready;
        roo__engine_snapshot_finish(&snap);
        return ready ? respond_text(conn, MHD_HTTP_OK, "ready\n")
                     : respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
    }
    return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
}

/* libmicrohttpd's complaints (a client that timed out, the connection limit): debug only. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)cls;
    if (!roo__log_enabled(ROO_LOG_DEBUG))
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    roo__log_debug("metrics: %s", line);
}

/* ---- the port ---- */

/*
 * Bind the first port of the range that is not taken. Any error but "taken" ends the search:
 * the next port would fail the same way (a host that is not ours, a name that does not
 * resolve).
 */
static int bind_range(const roo__metrics_cfg *cfg, int *ret_fd, roo__addr *ret_addr,
                      unsigned *ret_taken, char *msg, size_t cap)
{
    roo__addr a = cfg->addr;
    char as[300];
    unsigned first = (unsigned)atoi(cfg->addr.port), taken = 0;
    int rc = -EADDRINUSE, fd = -1;

    for (unsigned port = first; port <= cfg->last_port; port++) {
        snprintf(a.port, sizeof(a.port), "%u", port);
        rc = roo__tcp_listen(&a, 64, &fd);
        if (rc != -EADDRINUSE)
            break;
        taken++;
    }
    if (rc == -EADDRINUSE) {
        snprintf(msg, cap,
                 "cannot serve metrics on --metrics %s:%u-%u: every port of the range is taken "
                 "(give a wider range as HOST:PORT-PORT)",
                 cfg->addr.host, first, cfg->last_port);
        return rc;
    }
    if (rc < 0) {
        snprintf(msg, cap, "cannot serve metrics on %s: %s", roo__addr_str(&a, as, sizeof(as)),
                 roo_strerror(rc));
        return rc;
    }
    if (cfg->loopback_only && !roo__tcp_is_loopback(fd, true)) {
        /* The same rule as the cluster's addresses: /metrics has no authentication at all. */
        snprintf(msg, cap,
                 "refusing to serve metrics on %s without a cluster secret: a worker without "
                 "--cluster-secret serves loopback only (README, Security); use 127.0.0.1",
                 roo__addr_str(&a, as, sizeof(as)));
        close(fd);
        return ROO_EUSAGE;
    }
    if (first == 0) {
        /* Port 0: the kernel chose; say which. */
        char local[300];
        const char *colon;
        if (roo__tcp_local_str(fd, local, sizeof(local)) == 0 && (colon = strrchr(local, ':')))
            snprintf(a.port, sizeof(a.port), "%s", colon + 1);
    }
    *ret_fd = fd;
    *ret_addr = a;
    *ret_taken = taken;
    return 0;
}

int roo__metrics_create(roo__engine *e, const roo__metrics_cfg *cfg, roo__metrics **ret_metrics,
                        char *msg, size_t cap)
{
    roo__metrics *m;
    roo__addr a;
    unsigned taken;
    int fd, rc = bind_range(cfg, &fd, &a, &taken, msg, cap);

    if (rc < 0)
        return rc;
    m = roo__xcalloc(1, sizeof(*m));
    m->eng = e;
    m->extra = cfg->extra;
    m->extra_ctx = cfg->extra_ctx;
    m->ports_taken = taken;
    roo__addr_str(&a, m->address, sizeof(m->address));
    /* From here libmicrohttpd owns the socket: MHD_stop_daemon() closes it. */
    m->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, m, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT, ROO__METRICS_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, ROO__METRICS_MAX_PER_IP,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ROO__METRICS_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, ROO__METRICS_TIMEOUT_S, MHD_OPTION_END);
    if (!m->mhd) {
        snprintf(msg, cap, "cannot serve metrics on %s: libmicrohttpd did not start", m->address);
        /* Most of its failures leave the socket to us; the rare one that closed it already
         * makes this an EBADF, since no other thread runs yet to have reused the number. */
        close(fd);
        free(m);
        return -EIO;
    }
    *ret_metrics = m;
    return 0;
}

const char *roo__metrics_address(const roo__metrics *m)
{
    return m->address;
}

unsigned roo__metrics_ports_taken(const roo__metrics *m)
{
    return m->ports_taken;
}

void roo__metrics_destroy(roo__metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->mhd);
    free(m);
}
