/*
 * roo-latency: measures one Alphabet worker's latency from outside, under a paced load, with
 * every output checked.
 *
 * DESIGN
 *
 * One process plays the three roles around the worker under test:
 *
 *   main thread      sender: connects to the worker's --in and writes pre-encoded votes
 *                    (u32 BE 5 | letter | u32 BE votes) on a schedule, one write() per
 *                    pacing slice (--slice-us), stamping each vote with the CLOCK_MONOTONIC
 *                    time taken just before that write;
 *   receiver thread  sink: accepts the worker's --out connection, reads outputs
 *                    (u32 BE 9 | letter | u64 BE running total) in big reads, stamps each
 *                    read, maps every (letter, total) back to the one vote that produced it
 *                    and records receive time - send time;
 *   scraper thread   (--scrape only) fetches the worker's /metrics when the warm-up ends, so
 *                    the worker's own histograms can be read over the same window.
 *
 * Mapping outputs to votes: the whole run is generated before it starts (fixed seed, votes
 * >= 1), so per letter the running totals are strictly increasing and each total names
 * exactly one vote. The votes are grouped by letter (a counting sort) with their cumulative
 * sums, and each letter keeps a cursor: an output must carry the total at its letter's
 * cursor. Anything else (a total of no vote, a skipped vote, a repeat, a record too many or
 * too few, a malformed frame) fails the run with exit status 1.
 *
 * Timing: latency = the receive read's time - the send write's time, both CLOCK_MONOTONIC on
 * this host. Votes sent in the first --warmup seconds are checked but not timed. Quantiles
 * come from a log-linear histogram with 128 sub-buckets per octave (each value is reported as
 * its bucket's upper bound: at most 0.8 % high), so a run of any length costs the same
 * memory and no sort.
 *
 * Threads: send_ns[] is written by the main thread before each write() and published with a
 * release store of `published`; the receiver reads send_ns[v] only after an acquire load
 * shows v < published. (The output for vote v cannot exist before its write, so that load
 * always shows it; if not, the output was made up and the run fails.) Everything else the
 * receiver owns is read by the main thread only after the receiver has set `done` (its last
 * store) or been joined.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "roo-latency"
#define IN_FRAME 9u   /* u32 len | letter | u32 votes */
#define OUT_FRAME 13u /* u32 len | letter | u64 total */
#define NLETTERS 26u
#define MAX_VOTE 100u                /* votes per frame: 1..MAX_VOTE */
#define READ_SIZE (1u << 20)         /* receiver's read size: big, as a real sink would read */
#define RECV_TIMEOUT_MS 100          /* receiver's read timeout, so it notices an abort */
#define MAX_TOTAL_VOTES 400000000ULL /* 30 bytes each: 12 GB at most */
#define NS 1000000000ULL

/* Log-linear histogram: values below 2^SUB_BITS exact, then 2^(SUB_BITS-1) buckets/octave. */
#define SUB_BITS 8u
#define HALF (1u << (SUB_BITS - 1))
#define NBUCKETS ((64u - SUB_BITS + 2u) * HALF)

struct hist {
    uint64_t bins[NBUCKETS];
    uint64_t count, sum, max;
};

struct options {
    double rate;    /* votes/s offered */
    double seconds; /* measured seconds, after the warm-up */
    double warmup;  /* seconds sent but not timed */
    double timeout; /* seconds allowed for the outputs after the last send */
    uint64_t seed;
    uint64_t slice_ns; /* pacing slice */
    const char *work_dir;
    const char *scrape;    /* HOST:PORT of the worker's --metrics, or NULL */
    const char *scrape_to; /* file prefix for the two scrapes */
    bool quiet;
    char **cmd; /* the worker command, NULL-terminated */
};

/* The run: generated before it starts, then owned as the DESIGN block says. */
struct run {
    uint64_t n;        /* votes in the whole run */
    uint8_t *frames;   /* n encoded votes, contiguous: a slice is one write */
    uint64_t *send_ns; /* per vote: the time just before its write() */
    uint32_t *order;   /* vote indices grouped by letter, in send order */
    uint64_t *cum;     /* the letter's running total after order[j] */
    uint64_t start[NLETTERS + 1];

    _Atomic uint64_t published; /* votes whose send_ns is set (release/acquire) */
    uint64_t t0;                /* schedule origin; set before the first publish */
    uint64_t t_warm;            /* t0 + warm-up: votes sent from here on are timed */

    _Atomic bool stop;     /* main -> receiver: give up */
    _Atomic bool accepted; /* receiver -> main: the worker connected to the sink */
    _Atomic bool done;     /* receiver -> main: finished (all outputs, or failed) */
    _Atomic uint64_t received;

    /* Receiver-owned until joined. */
    bool failed;
    char why[512];
    uint64_t cursor[NLETTERS];
    uint64_t timed;     /* outputs of timed votes */
    uint64_t last_recv; /* time of the read that brought the last output */
    struct hist lat;
    int listen_fd;
};

static struct options opt = {
    .rate = 1e6,
    .seconds = 5,
    .warmup = 1,
    .timeout = 30,
    .seed = 1,
    .slice_ns = 100000,
};
static struct run R;
static volatile pid_t child_pid = -1;

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void msg(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = { .tv_sec = (time_t)(t / NS), .tv_nsec = (long)(t % NS) };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---------------------------------------------------------------- histogram */

static unsigned bucket_of(uint64_t v)
{
    unsigned e, shift;

    if (v < (1u << SUB_BITS))
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v);
    shift = e - (SUB_BITS - 1);
    return shift * HALF + (unsigned)(v >> shift);
}

/* The largest value that falls in bucket b. */
static uint64_t bucket_high(unsigned b)
{
    unsigned shift;
    uint64_t m;

    if (b < (1u << SUB_BITS))
        return b;
    shift = b / HALF - 1;
    m = b - (uint64_t)shift * HALF;
    return ((m + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->bins[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

/* The value at quantile q: the smallest bucket whose cumulative count reaches ceil(q * n). */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t want, cum = 0;

    if (h->count == 0)
        return 0;
    want = (uint64_t)ceil(q * (double)h->count);
    if (want == 0)
        want = 1;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        cum += h->bins[b];
        if (cum >= want)
            return bucket_high(b) < h->max ? bucket_high(b) : h->max;
    }
    return h->max;
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [--rate R] [--seconds S] [--warmup S] [--seed N] [--slice-us U]\n"
            "                   [--timeout S] [--work-dir DIR] [--scrape HOST:PORT --scrape-to P]\n"
            "                   [--quiet] -- WORKER [ARGS...]\n"
            "\n"
            "Latency of one Alphabet worker under a paced load, measured from outside, every\n"
            "output checked. Starts WORKER ARGS --in 127.0.0.1:IN --out 127.0.0.1:OUT\n"
            "--resilience-dir DIR/resilience as its child (log: DIR/worker.log), is its sink\n"
            "and its source, and times every vote from just before its write() to the read()\n"
            "that brought its output.\n"
            "\n"
            "  --rate R        votes/s offered; suffixes k, M (default 1M)\n"
            "  --seconds S     measured seconds, after the warm-up (default 5)\n"
            "  --warmup S      seconds sent first, checked but not timed (default 1)\n"
            "  --seed N        vote generator seed (default 1)\n"
            "  --slice-us U    pacing slice: the votes due in each U us leave in one write\n"
            "                  (default 100)\n"
            "  --timeout S     seconds allowed for the outputs after the last vote (default 30)\n"
            "  --work-dir DIR  for the worker's resilience dir and log (default: a new\n"
            "                  directory under $TMPDIR or /tmp, removed after a good run)\n"
            "  --scrape HOST:PORT  GET http://HOST:PORT/metrics when the warm-up ends and\n"
            "                  after the last output, into P.warm.prom and P.end.prom\n"
            "  --scrape-to P   the file prefix for --scrape\n"
            "  --quiet         only the result line\n"
            "\n"
            "Output: a human summary on stderr and one line on stdout:\n"
            "  result offered=R in=VOTES/S out=VOTES/S timed=N p50_ns=.. p90_ns=.. p99_ns=..\n"
            "         p999_ns=.. max_ns=.. mean_ns=.. behind_max_ns=.. saturated=0|1\n"
            "in and out are the rates over the measured window; saturated=1 when out < 95%%\n"
            "of the offered rate (the latencies then measure a queue, not the worker).\n"
            "Exit: 0 ok, 1 the run failed (a check, the worker, a timeout), 2 usage.\n",
            PROG);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see --help)\n");
    exit(2);
}

/* A positive number with an optional k/M/G suffix (x1000). */
static double parse_num(const char *flag, const char *s, bool suffix)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s)
        usage_error("%s: bad number '%s'", flag, s);
    if (suffix && *end == 'k')
        v *= 1e3, end++;
    else if (suffix && *end == 'M')
        v *= 1e6, end++;
    else if (suffix && *end == 'G')
        v *= 1e9, end++;
    if (*end != '\0' || !(v >= 0) || !isfinite(v))
        usage_error("%s: bad number '%s'", flag, s);
    return v;
}

static void parse_args(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;

        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--quiet")) {
            opt.quiet = true;
            continue;
        }
        if (i + 1 >= argc)
            usage_error("unknown option or missing value: %s", a);
        v = argv[++i];
        if (!strcmp(a, "--rate"))
            opt.rate = parse_num(a, v, true);
        else if (!strcmp(a, "--seconds"))
            opt.seconds = parse_num(a, v, false);
        else if (!strcmp(a, "--warmup"))
            opt.warmup = parse_num(a, v, false);
        else if (!strcmp(a, "--timeout"))
            opt.timeout = parse_num(a, v, false);
        else if (!strcmp(a, "--seed"))
            opt.seed = (uint64_t)parse_num(a, v, false);
        else if (!strcmp(a, "--slice-us"))
            opt.slice_ns = (uint64_t)(parse_num(a, v, false) * 1e3);
        else if (!strcmp(a, "--work-dir"))
            opt.work_dir = v;
        else if (!strcmp(a, "--scrape"))
            opt.scrape = v;
        else if (!strcmp(a, "--scrape-to"))
            opt.scrape_to = v;
        else
            usage_error("unknown option: %s", a);
    }
    if (i >= argc)
        usage_error("no worker command: expected -- WORKER [ARGS...]");
    opt.cmd = argv + i;
    if (opt.rate < 1)
        usage_error("--rate must be at least 1 vote/s");
    if (opt.seconds <= 0 || opt.timeout <= 0)
        usage_error("--seconds and --timeout must be positive");
    if (opt.slice_ns < 1000 || opt.slice_ns > 100000000)
        usage_error("--slice-us: between 1 and 100000");
    if (!opt.scrape != !opt.scrape_to)
        usage_error("--scrape and --scrape-to go together");
}

/* ---------------------------------------------------------------- sockets */

static int loopback_addr(const char *spec, struct sockaddr_in *sa)
{
    const char *colon = strrchr(spec, ':');
    char host[64];
    char *end;
    long port;

    if (!colon || (size_t)(colon - spec) >= sizeof(host))
        return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* Listens on 127.0.0.1 at an OS-chosen port; returns the fd and sets *port. */
static int listen_any(uint16_t *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        msg("cannot listen on 127.0.0.1: %s", strerror(errno));
        exit(1);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/*
 * A port for the worker's --in: free now, and below the ephemeral range (as bench/run picks
 * them) so that no outgoing connection takes it before the worker binds it.
 */
static uint16_t pick_port(void)
{
    unsigned p = 20000 + ((unsigned)getpid() * 53u + (unsigned)(now_ns() / 1000)) % 12000;

    for (unsigned tries = 0; tries < 12000; tries++, p = p + 1 >= 32000 ? 20000 : p + 1) {
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)p),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

        if (fd >= 0)
            close(fd);
        if (ok)
            return (uint16_t)p;
    }
    msg("no free TCP port in 20000-32000");
    exit(1);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---------------------------------------------------------------- the worker */

static void on_signal(int sig)
{
    /* Async-signal-safe: take the worker down with us, then leave. */
    if (child_pid > 0)
        kill(child_pid, SIGTERM);
    _exit(128 + sig);
}

static pid_t start_worker(const char *log_path, uint16_t in_port, uint16_t out_port,
                          const char *res_dir)
{
    char in[32], out[32];
    size_t ncmd = 0;
    char **argv;
    pid_t pid;

    while (opt.cmd[ncmd])
        ncmd++;
    argv = calloc(ncmd + 7, sizeof(*argv));
    if (!argv) {
        msg("out of memory");
        exit(1);
    }
    snprintf(in, sizeof(in), "127.0.0.1:%u", in_port);
    snprintf(out, sizeof(out), "127.0.0.1:%u", out_port);
    memcpy(argv, opt.cmd, ncmd * sizeof(*argv));
    argv[ncmd++] = "--in";
    argv[ncmd++] = in;
    argv[ncmd++] = "--out";
    argv[ncmd++] = out;
    argv[ncmd++] = "--resilience-dir";
    argv[ncmd++] = (char *)res_dir;
    if (!opt.quiet) {
        fprintf(stderr, "%s: worker:", PROG);
        for (size_t i = 0; i < ncmd; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, "\n");
    }
    pid = fork();
    if (pid < 0) {
        msg("fork: %s", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        /* A benchmark killed with SIGKILL must not leave its worker running. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "%s: cannot run %s: %s\n", PROG, argv[0], strerror(errno));
        _exit(127);
    }
    free(argv);
    return pid;
}

/* True (and a message) if the worker has exited. */
static bool worker_gone(void)
{
    int status;
    pid_t p = waitpid(child_pid, &status, WNOHANG);

    if (p != child_pid)
        return false;
    if (WIFEXITED(status))
        msg("the worker exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        msg("the worker was killed by signal %d", WTERMSIG(status));
    child_pid = -1;
    return true;
}

/* SIGTERM, then SIGKILL after 15 s. */
static void stop_worker(void)
{
    uint64_t deadline = now_ns() + 15 * NS;
    int status;

    if (child_pid <= 0)
        return;
    kill(child_pid, SIGTERM);
    while (waitpid(child_pid, &status, WNOHANG) == 0) {
        if (now_ns() > deadline) {
            msg("the worker ignored SIGTERM for 15 s; killing it");
            kill(child_pid, SIGKILL);
            waitpid(child_pid, &status, 0);
            break;
        }
        sleep_until_ns(now_ns() + 10000000);
    }
    child_pid = -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        msg("cannot remove %s: %s, ignoring", path, strerror(errno));
    return 0;
}

/* ---------------------------------------------------------------- the votes */

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64: fast, and every seed gives a good stream. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void *alloc_or_die(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (!p) {
        msg("out of memory (%zu x %zu bytes)", n, size);
        exit(1);
    }
    return p;
}

/* Generates the run's votes and the per-letter running totals that identify them. */
static void generate(void)
{
    uint64_t s = opt.seed, count[NLETTERS] = { 0 }, fill[NLETTERS], total[NLETTERS] = { 0 };
    uint8_t *letters;

    R.frames = alloc_or_die(R.n, IN_FRAME);
    R.send_ns = alloc_or_die(R.n, sizeof(*R.send_ns));
    R.order = alloc_or_die(R.n, sizeof(*R.order));
    R.cum = alloc_or_die(R.n, sizeof(*R.cum));
    letters = alloc_or_die(R.n, 1);
    for (uint64_t i = 0; i < R.n; i++) {
        uint64_t r = next_rand(&s);
        uint8_t *f = R.frames + i * IN_FRAME;
        uint32_t len = htobe32(5), votes = htobe32(1 + (uint32_t)((r >> 8) % MAX_VOTE));

        letters[i] = (uint8_t)((r >> 40) % NLETTERS);
        memcpy(f, &len, 4);
        f[4] = (uint8_t)('a' + letters[i]);
        memcpy(f + 5, &votes, 4);
        count[letters[i]]++;
    }
    R.start[0] = 0;
    for (unsigned l = 0; l < NLETTERS; l++) {
        R.start[l + 1] = R.start[l] + count[l];
        fill[l] = R.start[l];
        R.cursor[l] = R.start[l];
    }
    for (uint64_t i = 0; i < R.n; i++) {
        unsigned l = letters[i];
        uint32_t votes;

        memcpy(&votes, R.frames + i * IN_FRAME + 5, 4);
        total[l] += be32toh(votes);
        R.order[fill[l]] = (uint32_t)i;
        R.cum[fill[l]++] = total[l];
    }
    free(letters);
}

/* ---------------------------------------------------------------- the receiver */

static void fail_recv(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail_recv(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(R.why, sizeof(R.why), fmt, ap);
    va_end(ap);
    R.failed = true;
}

/* Index in cum[lo, hi) holding total, or UINT64_MAX. */
static uint64_t find_total(uint64_t lo, uint64_t hi, uint64_t total)
{
    uint64_t end = hi;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;

        if (R.cum[mid] < total)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < end && R.cum[lo] == total ? lo : UINT64_MAX;
}

/* Checks one output and times its vote; returns false (with R.why) if it is wrong. */
static bool take_output(const uint8_t *p, uint64_t now, uint64_t *published)
{
    uint32_t len;
    uint64_t total, j, v;
    unsigned l;

    memcpy(&len, p, 4);
    if (be32toh(len) != 9) {
        fail_recv("output %" PRIu64 ": frame length %u, want 9",
                  atomic_load_explicit(&R.received, memory_order_relaxed), be32toh(len));
        return false;
    }
    if (p[4] < 'a' || p[4] >= 'a' + NLETTERS) {
        fail_recv("output with letter 0x%02x, never sent", p[4]);
        return false;
    }
    l = p[4] - 'a';
    memcpy(&total, p + 5, 8);
    total = be64toh(total);
    j = R.cursor[l];
    if (j >= R.start[l + 1] || R.cum[j] != total) {
        uint64_t k = find_total(R.start[l], R.start[l + 1], total);

        if (k == UINT64_MAX)
            fail_recv("letter '%c' total %" PRIu64 " matches no vote (expected %" PRIu64 ")", p[4],
                      total, j < R.start[l + 1] ? R.cum[j] : 0);
        else if (k > j)
            fail_recv("letter '%c': %" PRIu64 " output(s) missing before total %" PRIu64, p[4],
                      k - j, total);
        else
            fail_recv("letter '%c' total %" PRIu64 " repeated or out of order", p[4], total);
        return false;
    }
    R.cursor[l] = j + 1;
    v = R.order[j];
    if (v >= *published) {
        *published = atomic_load_explicit(&R.published, memory_order_acquire);
        if (v >= *published) {
            fail_recv("letter '%c' total %" PRIu64 " arrived before its vote was sent", p[4],
                      total);
            return false;
        }
    }
    if (R.send_ns[v] >= R.t_warm) {
        hist_add(&R.lat, now - R.send_ns[v]);
        R.timed++;
    }
    return true;
}

static void *receiver_main(void *arg)
{
    uint8_t *buf = alloc_or_die(READ_SIZE + OUT_FRAME, 1);
    size_t carry = 0;
    uint64_t received = 0, published = 0;
    int fd = -1;

    (void)arg;
    /* The worker may connect to its sink late or early; wait for it as long as we run. */
    while (!atomic_load(&R.stop)) {
        struct pollfd pfd = { R.listen_fd, POLLIN, 0 };

        if (poll(&pfd, 1, RECV_TIMEOUT_MS) > 0) {
            fd = accept4(R.listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                break;
        }
    }
    if (fd >= 0) {
        struct timeval tv = { 0, RECV_TIMEOUT_MS * 1000 };

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        atomic_store(&R.accepted, true);
    }
    while (fd >= 0 && received < R.n && !atomic_load(&R.stop)) {
        ssize_t got = read(fd, buf + carry, READ_SIZE);
        uint64_t now;
        const uint8_t *p;
        size_t avail;

        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            fail_recv("sink read: %s after %" PRIu64 " outputs", strerror(errno), received);
            break;
        }
        if (got == 0) {
            fail_recv("the worker closed its sink connection after %" PRIu64 " of %" PRIu64
                      " outputs",
                      received, R.n);
            break;
        }
        /* One clock read per read(): every output in it became available at this instant. */
        now = now_ns();
        avail = carry + (size_t)got;
        p = buf;
        for (; avail >= OUT_FRAME; p += OUT_FRAME, avail -= OUT_FRAME) {
            if (received == R.n) {
                fail_recv("more outputs than the %" PRIu64 " votes sent", R.n);
                break;
            }
            if (!take_output(p, now, &published))
                break;
            received++;
        }
        if (R.failed)
            break;
        R.last_recv = now;
        atomic_store_explicit(&R.received, received, memory_order_relaxed);
        carry = avail;
        memmove(buf, p, carry);
    }
    atomic_store_explicit(&R.received, received, memory_order_relaxed);
    if (fd >= 0)
        close(fd);
    free(buf);
    atomic_store(&R.done, true);
    return NULL;
}

/* ---------------------------------------------------------------- scraping /metrics */

/* GET http://spec/metrics into path (the body only); returns 0 or -1 with a message. */
static int scrape(const char *spec, const char *path)
{
    static const char req_fmt[] = "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n";
    struct sockaddr_in sa;
    char req[256];
    size_t cap = 1 << 20, len = 0;
    char *body = NULL, *hdr_end;
    int fd, rc = -1;
    FILE *f;

    if (loopback_addr(spec, &sa) < 0) {
        msg("--scrape: expected IPV4:PORT, got '%s'", spec);
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        msg("--scrape %s: connect: %s", spec, strerror(errno));
        goto out;
    }
    snprintf(req, sizeof(req), req_fmt, spec);
    if (write_all(fd, (const uint8_t *)req, strlen(req)) < 0)
        goto out;
    body = alloc_or_die(cap + 1, 1);
    for (;;) {
        ssize_t k;

        if (len == cap) {
            char *nb = realloc(body, 2 * cap + 1);

            if (!nb)
                goto out;
            body = nb;
            cap *= 2;
        }
        k = read(fd, body + len, cap - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    body[len] = '\0';
    /* HTTP/1.0 without keep-alive: the body runs to the close, never chunked. */
    if (strncmp(body, "HTTP/1.", 7) != 0 || strncmp(body + 8, " 200", 4) != 0 ||
        !(hdr_end = strstr(body, "\r\n\r\n"))) {
        msg("--scrape %s: not an HTTP 200 answer", spec);
        goto out;
    }
    f = fopen(path, "w");
    if (!f || fputs(hdr_end + 4, f) == EOF || fclose(f) != 0) {
        msg("cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(body);
    return rc;
}

static void *scraper_main(void *arg)
{
    char path[4096];

    (void)arg;
    sleep_until_ns(R.t_warm);
    snprintf(path, sizeof(path), "%s.warm.prom", opt.scrape_to);
    if (scrape(opt.scrape, path) < 0)
        msg("the warm-up scrape failed; the metrics window will start at the worker's start");
    return NULL;
}

/* ---------------------------------------------------------------- the run */

static void fail_run(const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void fail_run(const char *dir, const char *fmt, ...)
{
    va_list ap;

    char what[1024];

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    /* A failed check usually breaks the rest (we close the sink, the worker fails): say it first. */
    if (atomic_load(&R.done) && R.failed && strcmp(what, R.why) != 0)
        fprintf(stderr, "%s: FAILED: %s\n%s: and then: %s\n", PROG, R.why, PROG, what);
    else
        fprintf(stderr, "%s: FAILED: %s\n", PROG, what);
    fprintf(stderr, "%s: the worker's log and state are kept in %s\n", PROG, dir);
    atomic_store(&R.stop, true);
    stop_worker();
    exit(1);
}

/* Connects to the worker's --in, waiting up to 30 s for it to listen. */
static int connect_source(const char *dir, uint16_t port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    uint64_t deadline = now_ns() + 30 * NS;
    int one = 1;

    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            fail_run(dir, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            /* A paced slice is small: it must leave now, not wait for an ACK (Nagle). */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            return fd;
        }
        close(fd);
        if (worker_gone())
            fail_run(dir, "the worker exited before it listened on 127.0.0.1:%u", port);
        if (now_ns() > deadline)
            fail_run(dir, "the worker did not listen on 127.0.0.1:%u within 30 s", port);
        sleep_until_ns(now_ns() + 20000000);
    }
}

/* Sends every vote on schedule; returns the time of the last write. */
static uint64_t send_paced(const char *dir, int fd, uint64_t *behind_max)
{
    uint64_t sent = 0, last = 0, loops = 0;
    double per_ns = opt.rate / 1e9;

    *behind_max = 0;
    while (sent < R.n) {
        uint64_t now = now_ns(), due, behind, next;
        int rc;

        due = now <= R.t0 ? 0 : (uint64_t)((double)(now - R.t0) * per_ns);
        if (due > R.n)
            due = R.n;
        if (due > sent) {
            /* How late the oldest vote of this write leaves (a slice, plus any stall). */
            behind = now - (R.t0 + (uint64_t)((double)sent / per_ns));
            if (behind > *behind_max && sent > 0)
                *behind_max = behind;
            for (uint64_t i = sent; i < due; i++)
                R.send_ns[i] = now;
            atomic_store_explicit(&R.published, due, memory_order_release);
            rc = write_all(fd, R.frames + sent * IN_FRAME, (size_t)(due - sent) * IN_FRAME);
            if (rc < 0) {
                /* Most likely the worker died: give its exit a moment to be seen. */
                for (int i = 0; i < 20 && child_pid > 0 && !worker_gone(); i++)
                    sleep_until_ns(now_ns() + 10000000);
                fail_run(dir, "write to the worker failed after %" PRIu64 " votes: %s", sent,
                         strerror(-rc));
            }
            sent = due;
            last = now;
        }
        if ((++loops & 1023) == 0) {
            if (worker_gone())
                fail_run(dir, "the worker exited after %" PRIu64 " votes had been sent", sent);
            if (atomic_load(&R.done))
                fail_run(dir, "%s", R.why);
        }
        /* Sleep to the next slice boundary (now is >= t0 from the first due vote on). */
        next = now < R.t0 ? R.t0 : R.t0 + ((now - R.t0) / opt.slice_ns + 1) * opt.slice_ns;
        if (sent < R.n)
            sleep_until_ns(next);
    }
    return last;
}

int main(int argc, char **argv)
{
    char dir_buf[4096], res_dir[4200], log_path[4200], path[4200];
    const char *dir;
    bool own_dir = false;
    uint16_t out_port, in_port;
    pthread_t rx, scr;
    int src_fd;
    uint64_t last_send, behind_max, deadline, gen_t, in_timed = 0;
    double window_in, window_out, in_rate, out_rate;
    bool saturated;
    struct sigaction sa = { 0 };

    parse_args(argc, argv);
    R.n = (uint64_t)llround(opt.rate * (opt.warmup + opt.seconds));
    if (R.n == 0 || R.n > MAX_TOTAL_VOTES)
        usage_error("--rate x (--warmup + --seconds) = %" PRIu64 " votes; 1 to %llu allowed", R.n,
                    MAX_TOTAL_VOTES);

    if (opt.work_dir) {
        dir = opt.work_dir;
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            msg("--work-dir %s: %s", dir, strerror(errno));
            return 1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");

        snprintf(dir_buf, sizeof(dir_buf), "%s/roo-latency.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir_buf)) {
            msg("mkdtemp %s: %s", dir_buf, strerror(errno));
            return 1;
        }
        dir = dir_buf;
        own_dir = true;
    }
    snprintf(res_dir, sizeof(res_dir), "%s/resilience", dir);
    snprintf(log_path, sizeof(log_path), "%s/worker.log", dir);

    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The worker starts while we generate the votes: both take a moment. */
    R.listen_fd = listen_any(&out_port);
    in_port = pick_port();
    child_pid = start_worker(log_path, in_port, out_port, res_dir);
    gen_t = now_ns();
    generate();
    if (!opt.quiet)
        msg("%" PRIu64 " votes generated in %.2f s (seed %" PRIu64 ")", R.n,
            (double)(now_ns() - gen_t) / 1e9, opt.seed);
    if (pthread_create(&rx, NULL, receiver_main, NULL) != 0) {
        msg("cannot start the receiver thread");
        return 1;
    }
    src_fd = connect_source(dir, in_port);
    /* Engines may connect to the sink lazily; give it a moment, but do not insist. */
    deadline = now_ns() + 3 * NS;
    while (!atomic_load(&R.accepted) && now_ns() < deadline)
        sleep_until_ns(now_ns() + 5000000);

    R.t0 = now_ns() + 1000000;
    R.t_warm = R.t0 + (uint64_t)(opt.warmup * 1e9);
    if (opt.scrape && pthread_create(&scr, NULL, scraper_main, NULL) != 0) {
        msg("cannot start the scraper thread");
        return 1;
    }
    if (!opt.quiet)
        msg("sending %.0f votes/s for %.1f + %.1f s", opt.rate, opt.warmup, opt.seconds);
    last_send = send_paced(dir, src_fd, &behind_max);

    deadline = last_send + (uint64_t)(opt.timeout * 1e9);
    while (!atomic_load(&R.done)) {
        if (worker_gone()) {
            atomic_store(&R.stop, true);
            pthread_join(rx, NULL);
            fail_run(dir, "the worker exited with %" PRIu64 " of %" PRIu64 " outputs received",
                     atomic_load(&R.received), R.n);
        }
        if (now_ns() > deadline) {
            atomic_store(&R.stop, true);
            pthread_join(rx, NULL);
            fail_run(dir,
                     "%" PRIu64 " of %" PRIu64 " outputs received within %.0f s of the last vote",
                     atomic_load(&R.received), R.n, opt.timeout);
        }
        sleep_until_ns(now_ns() + 2000000);
    }
    pthread_join(rx, NULL);
    if (R.failed)
        fail_run(dir, "%s", R.why);
    if (opt.scrape) {
        pthread_join(scr, NULL);
        snprintf(path, sizeof(path), "%s.end.prom", opt.scrape_to);
        if (scrape(opt.scrape, path) < 0)
            fail_run(dir, "the final scrape of %s failed", opt.scrape);
    }
    close(src_fd);
    stop_worker();

    /* Rates over the measured window: the timed votes, from the warm-up's end. */
    for (uint64_t i = R.n; i > 0 && R.send_ns[i - 1] >= R.t_warm; i--)
        in_timed++;
    window_in = (double)(last_send - R.t_warm) / 1e9;
    window_out = (double)(R.last_recv - R.t_warm) / 1e9;
    in_rate = window_in > 0 ? (double)in_timed / window_in : 0;
    out_rate = window_out > 0 ? (double)R.timed / window_out : 0;
    saturated = out_rate < 0.95 * opt.rate;

    if (!opt.quiet) {
        msg("all %" PRIu64 " outputs checked; %" PRIu64 " timed (after %.1f s of warm-up)", R.n,
            R.timed, opt.warmup);
        msg("offered %.0f/s, in %.0f/s, out %.0f/s%s; sender at most %.0f us behind schedule",
            opt.rate, in_rate, out_rate, saturated ? " (SATURATED: out < 95% of offered)" : "",
            (double)behind_max / 1e3);
        msg("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f",
            hist_quantile(&R.lat, 0.5) / 1e3, hist_quantile(&R.lat, 0.9) / 1e3,
            hist_quantile(&R.lat, 0.99) / 1e3, hist_quantile(&R.lat, 0.999) / 1e3, R.lat.max / 1e3,
            R.lat.count ? (double)R.lat.sum / (double)R.lat.count / 1e3 : 0.0);
    }
    printf("result offered=%.0f in=%.0f out=%.0f timed=%" PRIu64 " p50_ns=%" PRIu64
           " p90_ns=%" PRIu64 " p99_ns=%" PRIu64 " p999_ns=%" PRIu64 " max_ns=%" PRIu64
           " mean_ns=%.0f behind_max_ns=%" PRIu64 " saturated=%d\n",
           opt.rate, in_rate, out_rate, R.timed, hist_quantile(&R.lat, 0.5),
           hist_quantile(&R.lat, 0.9), hist_quantile(&R.lat, 0.99), hist_quantile(&R.lat, 0.999),
           R.lat.max, R.lat.count ? (double)R.lat.sum / (double)R.lat.count : 0.0, behind_max,
           saturated ? 1 : 0);
    fflush(stdout);

    /* A good run leaves nothing big behind: the state goes, the log stays if the dir is given. */
    nftw(own_dir ? dir : res_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
