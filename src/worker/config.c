/*
 * config.c: the worker's settings, from Wallaroo-style flags and from an optional INI file
 * (--config FILE, read with libinih) whose keys are the long flag names; flags win.
 */
#include "worker/config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

enum {
    OPT_THREADS = 1000,
    OPT_LOG_LEVEL,
    OPT_MAX_FRAME,
    OPT_PARTITIONS,
    OPT_MAP_SIZE,
    OPT_BATCH_BYTES,
    OPT_BATCHES,
    OPT_SINK_REPLAY,
    OPT_SHUTDOWN_TIMEOUT,
    OPT_LINK_BACKLOG,
    OPT_CONFIG,
    OPT_CLUSTER_SECRET,
    OPT_MAX_CONNECTIONS,
    OPT_STREAM_MAX_IDLE,
};

static const struct option long_opts[] = {
    { "in", required_argument, NULL, 'i' },
    { "out", required_argument, NULL, 'o' },
    { "name", required_argument, NULL, 'n' },
    { "resilience-dir", required_argument, NULL, 'r' },
    { "cluster-initializer", no_argument, NULL, 't' },
    { "worker-count", required_argument, NULL, 'w' },
    { "control", required_argument, NULL, 'c' },
    { "data", required_argument, NULL, 'd' },
    { "my-control", required_argument, NULL, 'x' },
    { "my-data", required_argument, NULL, 'y' },
    { "external", required_argument, NULL, 'e' },
    { "metrics", required_argument, NULL, 'm' },
    { "join", required_argument, NULL, 'j' },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
    { "max-frame", required_argument, NULL, OPT_MAX_FRAME },
    { "partitions", required_argument, NULL, OPT_PARTITIONS },
    { "map-size", required_argument, NULL, OPT_MAP_SIZE },
    { "batch-bytes", required_argument, NULL, OPT_BATCH_BYTES },
    { "batches", required_argument, NULL, OPT_BATCHES },
    { "sink-replay", required_argument, NULL, OPT_SINK_REPLAY },
    { "shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT },
    { "link-backlog", required_argument, NULL, OPT_LINK_BACKLOG },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "cluster-secret", required_argument, NULL, OPT_CLUSTER_SECRET },
    { "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
    { "stream-max-idle", required_argument, NULL, OPT_STREAM_MAX_IDLE },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

void roo__config_usage(FILE *f, const char *p)
{
    fprintf(
        f,
        "Usage: %s [OPTIONS] [-- APP-OPTIONS]\n"
        "\n"
        "Runs one roo worker of the application '%s'. Flags follow Wallaroo's names.\n"
        "\n"
        "Sources and sinks:\n"
        "  -i, --in ADDR[,ADDR...]      listen for source connections; one address per pipeline,\n"
        "                               in the order the application adds them (default %s);\n"
        "                               workers on one host may share one (the kernel spreads\n"
        "                               the connections over them)\n"
        "  -o, --out ADDR[,ADDR...]     connect to the sinks; one address per sink (default %s)\n"
        "      --max-frame BYTES        largest frame a source accepts; a bigger one closes its\n"
        "                               connection (default 64K, at most 16M)\n"
        "\n"
        "Identity and state:\n"
        "  -n, --name NAME              worker name (default '%s')\n"
        "  -r, --resilience-dir DIR     where the worker keeps its state in LMDB; restart with "
        "the\n"
        "                               same DIR to recover it (default %s<name>)\n"
        "      --partitions N           key partitions, fixed when DIR is created (default %u)\n"
        "      --map-size BYTES         initial LMDB map size; grows when full (default 1G)\n"
        "\n"
        "Cluster (Wallaroo-compatible names):\n"
        "  -t, --cluster-initializer    this worker starts the cluster\n"
        "  -w, --worker-count N         workers in the cluster (default 1)\n"
        "  -c, --control ADDR           initializer's control address\n"
        "  -d, --data ADDR              initializer's data address\n"
        "  -x, --my-control ADDR        this worker's control address (default: OS-chosen port)\n"
        "  -y, --my-data ADDR           this worker's data address (default: OS-chosen port)\n"
        "  -j, --join ADDR              join a running cluster through any worker's control "
        "address\n"
        "  -e, --external ADDR          address for operator tools\n"
        "      --cluster-secret FILE    the secret every worker and roo-ctl of the cluster proves\n"
        "                               on every control, data and external connection (at least\n"
        "                               16 bytes; make one: head -c 32 /dev/urandom | base64);\n"
        "                               without it the cluster's addresses must be loopback\n"
        "  -m, --metrics ADDR[-PORT]    serve Prometheus metrics over HTTP: GET /metrics (a\n"
        "                               scrape target; Wallaroo pushed to its UI here instead)\n"
        "                               and GET /healthz; a taken port moves on to the next, up\n"
        "                               to PORT (default: the %u ports from ADDR's), so workers\n"
        "                               on one host may share one --metrics; without\n"
        "                               --cluster-secret, loopback only (default: off)\n"
        "\n"
        "Tuning:\n"
        "      --threads N              processing threads (default %u)\n"
        "      --batch-bytes BYTES      output and state bytes after which a batch is sealed\n"
        "                               even when commits lag (default 4M)\n"
        "      --batches N              batches per thread; when all wait for a commit or a sink,\n"
        "                               sources are paused (default %u)\n"
        "      --sink-replay BYTES      output kept to resend after a sink connection breaks, "
        "since\n"
        "                               a sink that died may not have read it (default 16M; at "
        "least\n"
        "                               what this host's TCP buffers hold; 0 disables)\n"
        "      --link-backlog BYTES     per other worker: messages sent and not yet committed "
        "there,\n"
        "                               kept to send again if it restarts; when full, sources "
        "pause\n"
        "                               (default 32M)\n"
        "      --shutdown-timeout SECS  how long SIGTERM waits for sinks to take held output\n"
        "                               (default %u)\n"
        "      --max-connections N      open connections per listener (each --in, control, data,\n"
        "                               external); more are accepted and closed at once, with a\n"
        "                               log line (default %u)\n"
        "      --stream-max-idle SECS   a resumable stream not read for SECS seconds is forgotten\n"
        "                               (its read position and marks); it cannot resume after\n"
        "                               that (default %u, 7 days; 0 = never)\n"
        "      --log-level LEVEL        error, warn, info or debug (default info)\n"
        "\n"
        "Config file:\n"
        "      --config FILE            read settings from an INI file: keys are the long flag\n"
        "                               names; [cluster] is shared, [worker NAME] is for the\n"
        "                               worker NAME only; flags override the file\n"
        "\n"
        "  -h, --help                   show this help\n"
        "  -V, --version                show the version\n"
        "\n"
        "ADDR is HOST:PORT or [IPv6]:PORT. BYTES accepts K, M and G suffixes (powers of 1024).\n"
        "SIGTERM, SIGINT or SIGHUP stop the worker cleanly: state committed, held output\n"
        "delivered.\n"
        "\n"
        "Exit status: 0 stopped cleanly (or left the cluster in a shrink), 1 error (the\n"
        "error is the last line logged), 2 usage error.\n",
        p, p, ROO__DEFAULT_IN, ROO__DEFAULT_OUT, ROO__DEFAULT_NAME, ROO__DEFAULT_DIR_PREFIX,
        ROO__DEFAULT_PARTITIONS, ROO__METRICS_DEFAULT_PORTS, ROO__DEFAULT_THREADS,
        ROO__DEFAULT_BATCHES, ROO__DEFAULT_SHUTDOWN_S, ROO__DEFAULT_MAX_CONNECTIONS,
        ROO__DEFAULT_STREAM_MAX_IDLE_S);
}

static int fail(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return ROO_EUSAGE;
}

static const char *opt_name(int c)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == c)
            return o->name;
    return "?";
}

static int parse_addr(int c, const char *v, roo__addr *ret, char *msg, size_t cap)
{
    if (roo__addr_parse(v, ret) < 0)
        return fail(msg, cap, "--%s: '%s' is not HOST:PORT", opt_name(c), v);
    return 0;
}

/*
 * --metrics HOST:PORT or HOST:PORT-LAST: the range of ports to try. A single PORT gives
 * ROO__METRICS_DEFAULT_PORTS of them (as far as 65535); port 0 lets the kernel choose.
 */
static int parse_metrics(const char *v, roo__config *cfg, char *msg, size_t cap)
{
    const char *close = v[0] == '[' ? strchr(v, ']') : NULL;
    const char *colon = strrchr(close ? close : v, ':');
    const char *dash = colon ? strchr(colon, '-') : NULL;
    char first[300];
    uint64_t port, last;

    if (!dash) {
        if (roo__addr_parse(v, &cfg->metrics) < 0)
            return fail(msg, cap, "--metrics: '%s' is not HOST:PORT or HOST:PORT-PORT", v);
        port = strtoul(cfg->metrics.port, NULL, 10);
        last = port ? ROO__MIN(port + ROO__METRICS_DEFAULT_PORTS - 1, 65535) : 0;
    } else {
        snprintf(first, sizeof(first), "%.*s", (int)(dash - v), v);
        if (roo__addr_parse(first, &cfg->metrics) < 0 ||
            roo__parse_uint(dash + 1, 1, 65535, &last) < 0 ||
            (port = strtoul(cfg->metrics.port, NULL, 10)) == 0 || last < port)
            return fail(msg, cap,
                        "--metrics: '%s' is not HOST:PORT-PORT (a range of ports, the first at "
                        "most the last)",
                        v);
    }
    cfg->metrics_last_port = (uint16_t)last;
    return 0;
}

static int parse_addrs(int c, const char *v, roo__addr **ret, size_t *ret_n, char *msg, size_t cap)
{
    roo__addr *a;
    size_t n;

    if (roo__addr_list_parse(v, &a, &n) < 0)
        return fail(msg, cap, "--%s: '%s' is not a comma-separated list of HOST:PORT", opt_name(c),
                    v);
    free(*ret);
    *ret = a;
    *ret_n = n;
    return 0;
}

static int parse_num(int c, const char *v, uint64_t min, uint64_t max, uint64_t *ret, char *msg,
                     size_t cap)
{
    if (roo__parse_uint(v, min, max, ret) < 0)
        return fail(msg, cap, "--%s: '%s' is not a whole number in %llu..%llu", opt_name(c), v,
                    (unsigned long long)min, (unsigned long long)max);
    return 0;
}

static int parse_bytes(int c, const char *v, uint64_t min, uint64_t max, uint64_t *ret, char *msg,
                       size_t cap)
{
    uint64_t n;

    if (roo__parse_size(v, &n) < 0 || n < min || n > max)
        return fail(msg, cap, "--%s: '%s' is not a size in %llu..%llu bytes (K, M, G allowed)",
                    opt_name(c), v, (unsigned long long)min, (unsigned long long)max);
    *ret = n;
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

/*
 * Set one option from its value (v is NULL for an option without one). Both the command
 * line and the config file come through here, so a setting means the same in either.
 */
static int apply(roo__config *cfg, int c, const char *v, char *msg, size_t cap)
{
    uint64_t n;
    int rc = 0;

    switch (c) {
    case 'i':
        rc = parse_addrs(c, v, &cfg->in, &cfg->nin, msg, cap);
        break;
    case 'o':
        rc = parse_addrs(c, v, &cfg->out, &cfg->nout, msg, cap);
        break;
    case 'n':
        if (!valid_name(v))
            rc = fail(msg, cap, "--name: '%s' must be 1-64 characters of A-Z a-z 0-9 _ . -", v);
        free(cfg->name);
        cfg->name = roo__xstrdup(v);
        break;
    case 'r':
        if (!*v)
            rc = fail(msg, cap, "--resilience-dir: empty path");
        free(cfg->resilience_dir);
        cfg->resilience_dir = roo__xstrdup(v);
        break;
    case 't':
        cfg->initializer = true;
        break;
    case OPT_CONFIG:
        free(cfg->config_file);
        cfg->config_file = roo__xstrdup(v);
        break;
    case OPT_CLUSTER_SECRET:
        if (!*v)
            rc = fail(msg, cap, "--cluster-secret: empty path");
        free(cfg->cluster_secret);
        cfg->cluster_secret = roo__xstrdup(v);
        break;
    case 'w':
        rc = parse_num(c, v, 1, 1024, &n, msg, cap);
        cfg->worker_count = (unsigned)n;
        break;
    case 'c':
        cfg->has_control = true;
        rc = parse_addr(c, v, &cfg->control, msg, cap);
        break;
    case 'd':
        cfg->has_data = true;
        rc = parse_addr(c, v, &cfg->data, msg, cap);
        break;
    case 'x':
        cfg->has_my_control = true;
        rc = parse_addr(c, v, &cfg->my_control, msg, cap);
        break;
    case 'y':
        cfg->has_my_data = true;
        rc = parse_addr(c, v, &cfg->my_data, msg, cap);
        break;
    case 'e':
        cfg->has_external = true;
        rc = parse_addr(c, v, &cfg->external, msg, cap);
        break;
    case 'm':
        cfg->has_metrics = true;
        rc = parse_metrics(v, cfg, msg, cap);
        break;
    case 'j':
        cfg->has_join = true;
        rc = parse_addr(c, v, &cfg->join, msg, cap);
        break;
    case OPT_THREADS:
        rc = parse_num(c, v, 1, ROO__MAX_THREADS, &n, msg, cap);
        cfg->threads = (unsigned)n;
        break;
    case OPT_LOG_LEVEL:
        if (roo__log_level_parse(v, &cfg->log_level) < 0)
            rc = fail(msg, cap, "--log-level: '%s' is not one of error, warn, info, debug", v);
        break;
    case OPT_MAX_FRAME:
        rc = parse_bytes(c, v, 1, ROO_MSG_MAX, &n, msg, cap);
        cfg->max_frame = (size_t)n;
        break;
    case OPT_PARTITIONS:
        rc = parse_num(c, v, 1, 65535, &n, msg, cap);
        cfg->partitions = (uint32_t)n;
        break;
    case OPT_MAP_SIZE:
        rc = parse_bytes(c, v, 1u << 20, 1ull << 44, &n, msg, cap);
        cfg->map_size = n;
        break;
    case OPT_BATCH_BYTES:
        rc = parse_bytes(c, v, 4096, 1u << 30, &n, msg, cap);
        cfg->batch_bytes = (size_t)n;
        break;
    case OPT_BATCHES:
        rc = parse_num(c, v, 2, 1024, &n, msg, cap);
        cfg->batches = (unsigned)n;
        break;
    case OPT_SINK_REPLAY:
        rc = parse_bytes(c, v, 0, 1u << 30, &n, msg, cap);
        cfg->sink_replay = (size_t)n;
        break;
    case OPT_LINK_BACKLOG:
        rc = parse_bytes(c, v, 1u << 20, 1ull << 34, &n, msg, cap);
        cfg->link_backlog = (size_t)n;
        break;
    case OPT_MAX_CONNECTIONS:
        rc = parse_num(c, v, 1, 1000000, &n, msg, cap);
        cfg->max_connections = (unsigned)n;
        break;
    case OPT_STREAM_MAX_IDLE:
        rc = parse_num(c, v, 0, 10u * 365 * 86400, &n, msg, cap);
        cfg->stream_max_idle_s = (unsigned)n;
        break;
    case OPT_SHUTDOWN_TIMEOUT:
        rc = parse_num(c, v, 0, 3600, &n, msg, cap);
        cfg->shutdown_timeout_s = (unsigned)n;
        break;
    default:
        rc = fail(msg, cap, "--%s: not a setting", opt_name(c));
        break;
    }
    return rc;
}

/* An option's index in long_opts, to remember which ones the command line set. */
static int opt_index(int c)
{
    for (int i = 0; long_opts[i].name; i++)
        if (long_opts[i].val == c)
            return i;
    return -1;
}

/*
 * Config file: keys outside any section or in [cluster] are shared by every worker that
 * reads the file; [worker NAME] applies to the worker called NAME only and overrides the
 * shared keys; a flag on the command line overrides both. Two passes over the file give
 * that order whatever the order of sections in it.
 *
 *   key                    value
 *   ---------------------  ---------------------------------------------------
 *   any long flag name     as on the command line ("in = 10.0.0.1:7010")
 *   cluster-initializer    true/false (also yes/no, on/off, 1/0)
 *   help, version, config  not allowed
 */
typedef struct ini_ctx {
    roo__config *cfg;
    const bool *from_flags; /* by long_opts index */
    int pass;               /* 1: shared sections; 2: this worker's section */
    char err[256];          /* the first error, without its line */
    bool failed;
    bool mine;        /* a [worker NAME] section names this worker */
    char others[200]; /* ... the names of the sections that do not */
} ini_ctx;

static int ini_fail(ini_ctx *x, const char *fmt, ...)
{
    va_list ap;

    if (!x->failed) {
        va_start(ap, fmt);
        vsnprintf(x->err, sizeof(x->err), fmt, ap);
        va_end(ap);
        x->failed = true;
    }
    return 0; /* libinih: an error on this line */
}

static int parse_bool(const char *v, bool *ret)
{
    static const char *yes[] = { "true", "yes", "on", "1" }, *no[] = { "false", "no", "off", "0" };

    for (size_t i = 0; i < ROO__ARRAY_SIZE(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -1;
}

static int on_ini_line(void *user, const char *section, const char *key, const char *value)
{
    ini_ctx *x = user;
    bool shared = section[0] == '\0' || strcmp(section, "cluster") == 0, on;
    const char *wname = NULL;
    char msg[256];
    int i, c;

    if (!shared) {
        if (strncmp(section, "worker ", 7) != 0 || !section[7])
            return ini_fail(x, "unknown section [%s] (use [cluster] or [worker NAME])", section);
        wname = section + 7;
        while (*wname == ' ')
            wname++;
    }
    for (i = 0; long_opts[i].name; i++)
        if (strcmp(long_opts[i].name, key) == 0)
            break;
    c = long_opts[i].val;
    if (!long_opts[i].name || c == 'h' || c == 'V' || c == OPT_CONFIG)
        return ini_fail(x, "unknown key '%s' (keys are the long flag names)", key);
    if (wname && c == 'n')
        return ini_fail(x, "'name' inside [%s]: the section already names the worker", section);
    if (wname && x->pass == 2) {
        if (strcmp(wname, x->cfg->name) == 0) {
            x->mine = true;
        } else if (!strstr(x->others, wname)) {
            size_t n = strlen(x->others);
            snprintf(x->others + n, sizeof(x->others) - n, "%s%s", n ? ", " : "", wname);
        }
    }
    if ((x->pass == 1) != shared || (wname && strcmp(wname, x->cfg->name) != 0))
        return 1; /* the other pass's, or another worker's */
    if (x->from_flags[i])
        return 1;
    if (c == 't') {
        if (parse_bool(value, &on) < 0)
            return ini_fail(x, "cluster-initializer: '%s' is not true or false", value);
        x->cfg->initializer = on;
        return 1;
    }
    if (apply(x->cfg, c, value, msg, sizeof(msg)) < 0)
        return ini_fail(x, "%s", msg);
    return 1;
}

static int read_config(roo__config *cfg, const bool *from_flags, char *msg, size_t cap)
{
    ini_ctx x = { .cfg = cfg, .from_flags = from_flags };
    int line;

    for (x.pass = 1; x.pass <= 2; x.pass++) {
        if (x.pass == 2 && !cfg->name)
            cfg->name = roo__xstrdup(ROO__DEFAULT_NAME);
        line = ini_parse(cfg->config_file, on_ini_line, &x);
        if (line == -1)
            return fail(msg, cap, "--config: cannot read '%s': %s", cfg->config_file,
                        strerror(errno));
        if (line == -2)
            return fail(msg, cap, "--config: out of memory reading '%s'", cfg->config_file);
        if (line > 0)
            return fail(msg, cap, "--config %s:%d: %s", cfg->config_file, line,
                        x.failed ? x.err : "not a '[section]' or 'key = value' line");
    }
    if (!x.mine && x.others[0])
        /* The shared settings alone may be meant; more likely --name is wrong: say so. */
        snprintf(cfg->warning, sizeof(cfg->warning),
                 "--config %s has no [worker %s] section (it describes %s): this worker uses "
                 "the shared settings only; check --name",
                 cfg->config_file, cfg->name, x.others);
    return 0;
}

int roo__config_parse(int argc, char **argv, roo__config *ret_cfg, char *msg, size_t cap)
{
    roo__config *cfg = ret_cfg;
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    bool from_flags[ROO__ARRAY_SIZE(long_opts)] = { false };
    int nopt = argc, c, rc = 0, i;

    memset(cfg, 0, sizeof(*cfg));
    cfg->program = roo__xstrdup(argc > 0 ? (slash ? slash + 1 : argv[0]) : "roo");
    cfg->worker_count = 1;
    cfg->threads = ROO__DEFAULT_THREADS;
    cfg->partitions = ROO__DEFAULT_PARTITIONS;
    cfg->max_frame = ROO__DEFAULT_MAX_FRAME;
    cfg->map_size = ROO__DEFAULT_MAP_SIZE;
    cfg->batch_bytes = ROO__DEFAULT_BATCH_BYTES;
    cfg->batches = ROO__DEFAULT_BATCHES;
    cfg->sink_replay = ROO__DEFAULT_SINK_REPLAY;
    cfg->link_backlog = ROO__DEFAULT_LINK_BACKLOG;
    cfg->max_connections = ROO__DEFAULT_MAX_CONNECTIONS;
    cfg->stream_max_idle_s = ROO__DEFAULT_STREAM_MAX_IDLE_S;
    cfg->shutdown_timeout_s = ROO__DEFAULT_SHUTDOWN_S;
    cfg->log_level = ROO_LOG_INFO;
    msg[0] = '\0';

    /* Everything after a bare "--" belongs to the application. */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            nopt = i;
            break;
        }
    }
    cfg->app_argc = 1 + (nopt < argc ? argc - nopt - 1 : 0);
    cfg->app_argv = roo__xcalloc((size_t)cfg->app_argc + 1, sizeof(char *));
    cfg->app_argv[0] = argc > 0 ? argv[0] : cfg->program;
    for (i = 1; i < cfg->app_argc; i++)
        cfg->app_argv[i] = argv[nopt + i];

    opterr = 0;
    optind = 0; /* 0, not 1: glibc then also drops state left by an earlier parse */
    while (rc == 0 &&
           (c = getopt_long(nopt, argv, "+:i:o:n:r:tw:c:d:x:y:e:m:j:hV", long_opts, NULL)) != -1) {
        i = opt_index(c);
        if (i >= 0)
            from_flags[i] = true;
        switch (c) {
        case 'h':
            cfg->help = true;
            break;
        case 'V':
            cfg->version = true;
            break;
        case ':':
            /* optopt is the option's value: a short letter or one of the OPT_* codes. */
            rc = fail(msg, cap, "option '--%s' needs a value", opt_name(optopt));
            break;
        case '?':
            /* A short option inside a bundle ("-zt") is named by optopt, a long one by
             * the argument getopt just stepped over. */
            if (optopt > 0 && optopt < 128)
                rc = fail(msg, cap, "unknown option '-%c'", optopt);
            else
                rc = fail(msg, cap, "unknown option '%s'", argv[optind - 1]);
            break;
        default:
            rc = apply(cfg, c, optarg, msg, cap);
            break;
        }
    }
    if (rc == 0 && optind < nopt)
        rc = fail(msg, cap, "unexpected argument '%s' (application options go after --)",
                  argv[optind]);
    if (rc < 0 || cfg->help || cfg->version)
        return rc;
    if (cfg->config_file && (rc = read_config(cfg, from_flags, msg, cap)) < 0)
        return rc;

    if (cfg->initializer && cfg->has_join)
        return fail(msg, cap, "--cluster-initializer and --join exclude each other");
    if (!cfg->in) {
        roo__addr_list_parse(ROO__DEFAULT_IN, &cfg->in, &cfg->nin);
    }
    if (!cfg->out)
        roo__addr_list_parse(ROO__DEFAULT_OUT, &cfg->out, &cfg->nout);
    if (!cfg->name)
        cfg->name = roo__xstrdup(ROO__DEFAULT_NAME);
    if (!cfg->resilience_dir) {
        size_t n = strlen(ROO__DEFAULT_DIR_PREFIX) + strlen(cfg->name) + 1;
        cfg->resilience_dir = roo__xmalloc(n);
        snprintf(cfg->resilience_dir, n, "%s%s", ROO__DEFAULT_DIR_PREFIX, cfg->name);
    }
    return 0;
}

void roo__config_finish(roo__config *cfg)
{
    if (!cfg)
        return;
    free(cfg->program);
    free(cfg->in);
    free(cfg->out);
    free(cfg->name);
    free(cfg->resilience_dir);
    free(cfg->config_file);
    free(cfg->cluster_secret);
    free(cfg->app_argv);
    memset(cfg, 0, sizeof(*cfg));
}
