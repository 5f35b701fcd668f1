/* config.c: command-line parsing for workers, with Wallaroo's flag names. */
#include "worker/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>

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
        "                               in the order the application adds them (default %s)\n"
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
        "  -m, --metrics ADDR           metrics receiver (accepted for compatibility; not used "
        "yet)\n"
        "\n"
        "Tuning:\n"
        "      --threads N              processing threads (default %u)\n"
        "      --batch-bytes BYTES      output and state bytes after which a batch is sealed\n"
        "                               even when commits lag (default 4M)\n"
        "      --batches N              batches per thread; when all wait for a commit or a sink,\n"
        "                               sources are paused (default %u)\n"
        "      --sink-replay BYTES      output kept to resend after a sink connection breaks, since\n"
        "                               a sink that died may not have read it (default 16M; 0 disables)\n"
        "      --link-backlog BYTES     per other worker: messages sent and not yet committed there,\n"
        "                               kept to send again if it restarts; when full, sources pause\n"
        "                               (default 32M)\n"
        "      --shutdown-timeout SECS  how long SIGTERM waits for sinks to take held output\n"
        "                               (default %u)\n"
        "      --log-level LEVEL        error, warn, info or debug (default info)\n"
        "\n"
        "  -h, --help                   show this help\n"
        "  -V, --version                show the version\n"
        "\n"
        "ADDR is HOST:PORT or [IPv6]:PORT. BYTES accepts K, M and G suffixes (powers of 1024).\n"
        "SIGTERM or SIGINT stop the worker cleanly: state committed, held output delivered.\n",
        p, p, ROO__DEFAULT_IN, ROO__DEFAULT_OUT, ROO__DEFAULT_NAME, ROO__DEFAULT_DIR_PREFIX,
        ROO__DEFAULT_PARTITIONS, ROO__DEFAULT_THREADS, ROO__DEFAULT_BATCHES,
        ROO__DEFAULT_SHUTDOWN_S);
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

int roo__config_parse(int argc, char **argv, roo__config *ret_cfg, char *msg, size_t cap)
{
    roo__config *cfg = ret_cfg;
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    int nopt = argc, c, rc = 0;
    uint64_t v;

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
    cfg->shutdown_timeout_s = ROO__DEFAULT_SHUTDOWN_S;
    cfg->log_level = ROO_LOG_INFO;
    msg[0] = '\0';

    /* Everything after a bare "--" belongs to the application. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            nopt = i;
            break;
        }
    }
    cfg->app_argc = 1 + (nopt < argc ? argc - nopt - 1 : 0);
    cfg->app_argv = roo__xcalloc((size_t)cfg->app_argc + 1, sizeof(char *));
    cfg->app_argv[0] = argc > 0 ? argv[0] : cfg->program;
    for (int i = 1; i < cfg->app_argc; i++)
        cfg->app_argv[i] = argv[nopt + i];

    opterr = 0;
    optind = 0; /* 0, not 1: glibc then also drops state left by an earlier parse */
    while (rc == 0 &&
           (c = getopt_long(nopt, argv, "+:i:o:n:r:tw:c:d:x:y:e:m:j:hV", long_opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            rc = parse_addrs(c, optarg, &cfg->in, &cfg->nin, msg, cap);
            break;
        case 'o':
            rc = parse_addrs(c, optarg, &cfg->out, &cfg->nout, msg, cap);
            break;
        case 'n':
            if (!valid_name(optarg))
                rc = fail(msg, cap, "--name: '%s' must be 1-64 characters of A-Z a-z 0-9 _ . -",
                          optarg);
            free(cfg->name);
            cfg->name = roo__xstrdup(optarg);
            break;
        case 'r':
            if (!*optarg)
                rc = fail(msg, cap, "--resilience-dir: empty path");
            free(cfg->resilience_dir);
            cfg->resilience_dir = roo__xstrdup(optarg);
            break;
        case 't':
            cfg->initializer = true;
            break;
        case 'w':
            rc = parse_num(c, optarg, 1, 1024, &v, msg, cap);
            cfg->worker_count = (unsigned)v;
            break;
        case 'c':
            cfg->has_control = true;
            rc = parse_addr(c, optarg, &cfg->control, msg, cap);
            break;
        case 'd':
            cfg->has_data = true;
            rc = parse_addr(c, optarg, &cfg->data, msg, cap);
            break;
        case 'x':
            cfg->has_my_control = true;
            rc = parse_addr(c, optarg, &cfg->my_control, msg, cap);
            break;
        case 'y':
            cfg->has_my_data = true;
            rc = parse_addr(c, optarg, &cfg->my_data, msg, cap);
            break;
        case 'e':
            cfg->has_external = true;
            rc = parse_addr(c, optarg, &cfg->external, msg, cap);
            break;
        case 'm':
            cfg->has_metrics = true;
            rc = parse_addr(c, optarg, &cfg->metrics, msg, cap);
            break;
        case 'j':
            cfg->has_join = true;
            rc = parse_addr(c, optarg, &cfg->join, msg, cap);
            break;
        case OPT_THREADS:
            rc = parse_num(c, optarg, 1, ROO__MAX_THREADS, &v, msg, cap);
            cfg->threads = (unsigned)v;
            break;
        case OPT_LOG_LEVEL:
            if (roo__log_level_parse(optarg, &cfg->log_level) < 0)
                rc = fail(msg, cap, "--log-level: '%s' is not one of error, warn, info, debug",
                          optarg);
            break;
        case OPT_MAX_FRAME:
            rc = parse_bytes(c, optarg, 1, ROO_MSG_MAX, &v, msg, cap);
            cfg->max_frame = (size_t)v;
            break;
        case OPT_PARTITIONS:
            rc = parse_num(c, optarg, 1, 65535, &v, msg, cap);
            cfg->partitions = (uint32_t)v;
            break;
        case OPT_MAP_SIZE:
            rc = parse_bytes(c, optarg, 1u << 20, 1ull << 44, &v, msg, cap);
            cfg->map_size = v;
            break;
        case OPT_BATCH_BYTES:
            rc = parse_bytes(c, optarg, 4096, 1u << 30, &v, msg, cap);
            cfg->batch_bytes = (size_t)v;
            break;
        case OPT_BATCHES:
            rc = parse_num(c, optarg, 2, 1024, &v, msg, cap);
            cfg->batches = (unsigned)v;
            break;
        case OPT_SINK_REPLAY:
            rc = parse_bytes(c, optarg, 0, 1u << 30, &v, msg, cap);
            cfg->sink_replay = (size_t)v;
            break;
        case OPT_LINK_BACKLOG:
            rc = parse_bytes(c, optarg, 1u << 20, 1ull << 34, &v, msg, cap);
            cfg->link_backlog = (size_t)v;
            break;
        case OPT_SHUTDOWN_TIMEOUT:
            rc = parse_num(c, optarg, 0, 3600, &v, msg, cap);
            cfg->shutdown_timeout_s = (unsigned)v;
            break;
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
        default:
            /* A short option inside a bundle ("-zt") is named by optopt, a long one by
             * the argument getopt just stepped over. */
            if (optopt > 0 && optopt < 128)
                rc = fail(msg, cap, "unknown option '-%c'", optopt);
            else
                rc = fail(msg, cap, "unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (rc == 0 && optind < nopt)
        rc = fail(msg, cap, "unexpected argument '%s' (application options go after --)",
                  argv[optind]);
    if (rc < 0 || cfg->help || cfg->version)
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
    free(cfg->app_argv);
    memset(cfg, 0, sizeof(*cfg));
}
