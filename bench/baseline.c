/*
 * roo-baseline: the hand-written Alphabet worker that bench/run measures the engine against.
 *
 * It does the same job as the engine's Alphabet example, under the engine's first durability
 * rule (state durable before any output that depends on it), in the tightest loop we know how
 * to write on one thread: read framed votes
 * (u32 BE 5 | letter | u32 BE votes) from one TCP connection at a time with 1 MiB reads, add
 * them to per-letter u64 totals held in RAM, and encode one output record
 * (u32 BE 9 | letter | u64 BE running total) per vote into a pending buffer. A batch is
 * committed when --commit-bytes of input have been processed since the last commit, when
 * --commit-ms have passed since its first vote, or as soon as no more input is ready. A commit
 * writes only the letters the batch touched (at most 26 puts for Alphabet) into LMDB in one
 * durable write transaction, and only after mdb_txn_commit() succeeds is the batch's output
 * written to the --out socket: no output is ever released before the commit that covers it.
 * Totals are restored from LMDB at start. There is no allocation, syscall or LMDB call per vote.
 *
 * This is a yardstick, not part of the engine: it serves a single input connection at a time
 * and treats any --out error as fatal. Unlike the engine it keeps no outbox by default: a
 * batch's output lives only in memory between its commit and its write, so a kill -9 in
 * between loses it, where the engine stores it with the commit and sends it after a restart
 * (13 bytes per vote more to sync). With --outbox it does the same, the simplest way: the
 * batch's output goes into its commit under one key (OUTBOX_KEY, replaced by the next commit),
 * and a restart sends it again before anything new, as the engine may (at least once).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <endian.h>
#include <errno.h>
#include <lmdb.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (1u << 20) /* bytes asked for per read() */
#define IN_FRAME 9u          /* u32 len | letter | u32 votes */
#define OUT_FRAME 13u        /* u32 len | letter | u64 total */
#define IDLE_POLL_MS 100     /* poll timeout while nothing is pending (stop-flag latency) */
#define CONNECT_RETRY_NS 100000000L
#define MAP_SIZE ((size_t)64 << 20)

static const char *prog = "roo-baseline";

static volatile sig_atomic_t stop_requested;
static size_t commit_bytes_limit = (size_t)4 << 20;
static int64_t commit_ns_limit = 2000000;
static int outbox_on; /* --outbox */

/* The outbox record's key: two bytes, where every letter's key is one. */
#define OUTBOX_KEY "ob"

/* All worker state; one static instance. */
struct worker {
    MDB_env *env;
    MDB_dbi dbi;
    int out_fd;

    uint64_t totals[256];     /* indexed by the letter byte */
    unsigned char dirty[256]; /* letter touched since the last commit */
    unsigned char dirty_list[256];
    unsigned ndirty;

    unsigned char *inbuf; /* carry (< 9 bytes) + READ_SIZE */
    size_t carry;         /* bytes of an incomplete frame at the start of inbuf */

    unsigned char *outbuf; /* encoded outputs awaiting the next commit */
    size_t outlen;
    size_t outcap;

    size_t pending_in;      /* input bytes processed since the last commit */
    int64_t batch_start_ns; /* when the first uncommitted vote was processed */

    uint64_t commits;
    uint64_t votes;
};

static struct worker w;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t load_be32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return be32toh(v);
}

static void store_be64(unsigned char *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, sizeof v);
}

static uint64_t load_be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s --in HOST:PORT --out HOST:PORT --resilience-dir DIR\n"
            "          [--commit-bytes N] [--commit-ms MS] [--outbox]\n"
            "\n"
            "Hand-written Alphabet worker used as the benchmark baseline.\n"
            "  --in HOST:PORT        listen here for framed votes (one connection at a time)\n"
            "  --out HOST:PORT       connect here (retrying every 100 ms) and send outputs\n"
            "  --resilience-dir DIR  LMDB environment directory (created if missing)\n"
            "  --commit-bytes N      commit after N input bytes (default 4194304; k/M/G = x1024)\n"
            "  --commit-ms MS        commit MS ms after the first uncommitted vote (default 2)\n"
            "  --outbox              store each batch's output in its commit too (replacing the\n"
            "                        last one's) and send it again after a restart, as the\n"
            "                        engine's outbox does: no output lost to a kill -9\n"
            "A batch is also committed as soon as no more input is ready. Output of a batch is\n"
            "written only after its LMDB commit. SIGTERM/SIGINT: commit, flush, exit 0.\n",
            prog);
}

static uint64_t parse_size(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        goto bad;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024 * 1024 * 1024, end++;
    if (*end != '\0' || v == 0 || v > UINT64_MAX / mul)
        goto bad;
    return v * mul;
bad:
    fprintf(stderr, "%s: %s: bad value '%s'\n", prog, flag, s);
    exit(2);
}

/* Splits HOST:PORT (HOST may be [v6]) and resolves it. */
static struct addrinfo *resolve(const char *flag, const char *spec, int passive)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || colon[1] == '\0' || (size_t)(colon - spec) >= sizeof host) {
        fprintf(stderr, "%s: %s: expected HOST:PORT, got '%s'\n", prog, flag, spec);
        exit(2);
    }
    const char *h = spec;
    size_t hl = (size_t)(colon - spec);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
        h++, hl -= 2;
    memcpy(host, h, hl);
    host[hl] = '\0';

    struct addrinfo hints = { 0 };
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    struct addrinfo *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: cannot resolve '%s': %s\n", prog, flag, spec, gai_strerror(rc));
        exit(2);
    }
    return res;
}

static int listen_on(const char *spec)
{
    struct addrinfo *res = resolve("--in", spec, 1);
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("--in %s: cannot listen: %s", spec, strerror(err));
    return fd;
}

/* Connects to spec, retrying every 100 ms; returns -1 only if a stop was requested. */
static int connect_retry(const char *spec)
{
    struct addrinfo *res = resolve("--out", spec, 0);
    int fd = -1;
    int64_t last_report = now_ns();
    while (!stop_requested) {
        int err = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd < 0) {
                err = errno;
                continue;
            }
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                break;
            err = errno;
            close(fd);
            fd = -1;
        }
        if (fd >= 0)
            break;
        if (now_ns() - last_report > 5000000000LL) {
            fprintf(stderr, "%s: --out %s: still retrying (%s)\n", prog, spec, strerror(err));
            last_report = now_ns();
        }
        struct timespec ts = { 0, CONNECT_RETRY_NS };
        nanosleep(&ts, NULL);
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static void lmdb_check(int rc, const char *what)
{
    if (rc != MDB_SUCCESS)
        die("lmdb %s: %s", what, mdb_strerror(rc));
}

/* Opens the environment (durable default flags) and restores the totals. */
static void store_open(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        die("--resilience-dir %s: %s", dir, strerror(errno));
    lmdb_check(mdb_env_create(&w.env), "env_create");
    lmdb_check(mdb_env_set_mapsize(w.env, MAP_SIZE), "env_set_mapsize");
    int rc = mdb_env_open(w.env, dir, 0, 0644);
    if (rc != MDB_SUCCESS)
        die("--resilience-dir %s: lmdb env_open: %s", dir, mdb_strerror(rc));

    MDB_txn *txn;
    lmdb_check(mdb_txn_begin(w.env, NULL, 0, &txn), "txn_begin");
    lmdb_check(mdb_dbi_open(txn, NULL, 0, &w.dbi), "dbi_open");
    MDB_cursor *cur;
    lmdb_check(mdb_cursor_open(txn, w.dbi, &cur), "cursor_open");
    MDB_val k, v;
    unsigned restored = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size == 2 && memcmp(k.mv_data, OUTBOX_KEY, 2) == 0) {
            /* The last batch's output, perhaps never written: sent again once --out connects. */
            if (!outbox_on)
                continue;
            if (v.mv_size > w.outcap)
                die("--resilience-dir %s: the stored output (%zu bytes) is more than this "
                    "--commit-bytes makes room for; start with the --commit-bytes it was written "
                    "with",
                    dir, v.mv_size);
            memcpy(w.outbuf, v.mv_data, v.mv_size);
            w.outlen = v.mv_size;
            continue;
        }
        if (k.mv_size != 1 || v.mv_size != 8)
            die("--resilience-dir %s: unexpected record (key %zu bytes, value %zu bytes)", dir,
                k.mv_size, v.mv_size);
        w.totals[*(const unsigned char *)k.mv_data] = load_be64(v.mv_data);
        restored++;
    }
    if (rc != MDB_NOTFOUND)
        lmdb_check(rc, "cursor_get");
    mdb_cursor_close(cur);
    lmdb_check(mdb_txn_commit(txn), "txn_commit");
    if (restored)
        fprintf(stderr, "%s: restored %u letter totals from %s\n", prog, restored, dir);
}

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            die("--out: write: %s", strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
}

/* Makes the pending batch durable in one LMDB transaction, then releases its output. */
static void commit_and_flush(void)
{
    if (w.ndirty > 0) {
        MDB_txn *txn;
        lmdb_check(mdb_txn_begin(w.env, NULL, 0, &txn), "txn_begin");
        for (unsigned i = 0; i < w.ndirty; i++) {
            unsigned char letter = w.dirty_list[i];
            unsigned char val[8];
            store_be64(val, w.totals[letter]);
            MDB_val k = { 1, &letter }, v = { sizeof val, val };
            lmdb_check(mdb_put(txn, w.dbi, &k, &v, 0), "put");
            w.dirty[letter] = 0;
        }
        if (outbox_on && w.outlen > 0) {
            MDB_val k = { 2, OUTBOX_KEY }, v = { w.outlen, w.outbuf };
            lmdb_check(mdb_put(txn, w.dbi, &k, &v, 0), "put outbox");
        }
        lmdb_check(mdb_txn_commit(txn), "txn_commit");
        w.ndirty = 0;
        w.commits++;
    }
    /* Only now, with the batch durable, may its output leave. */
    if (w.outlen > 0)
        write_all(w.out_fd, w.outbuf, w.outlen);
    w.outlen = 0;
    w.pending_in = 0;
}

/*
 * Decodes every complete frame in inbuf[0, avail), updates totals and encodes outputs;
 * keeps an incomplete tail as carry. Returns 0, or -1 on a malformed frame.
 */
static int process(size_t avail)
{
    const unsigned char *p = w.inbuf;
    const unsigned char *end = p + avail;
    unsigned char *o = w.outbuf + w.outlen;
    size_t nframes = avail / IN_FRAME;
    int rc = 0;
    static const unsigned char out_len_be[4] = { 0, 0, 0, 9 };

    if (w.outlen + nframes * OUT_FRAME > w.outcap) /* cannot happen: reads are capped */
        die("internal error: output buffer overflow");

    for (size_t i = 0; i < nframes; i++, p += IN_FRAME, o += OUT_FRAME) {
        if (load_be32(p) != 5) {
            rc = -1;
            break;
        }
        unsigned char letter = p[4];
        uint64_t t = w.totals[letter] += load_be32(p + 5);
        if (!w.dirty[letter]) {
            w.dirty[letter] = 1;
            w.dirty_list[w.ndirty++] = letter;
        }
        memcpy(o, out_len_be, sizeof out_len_be);
        o[4] = letter;
        store_be64(o + 5, t);
    }

    size_t done = (size_t)(p - w.inbuf);
    w.votes += done / IN_FRAME;
    w.outlen = (size_t)(o - w.outbuf);
    w.pending_in += done;
    if (rc != 0) {
        fprintf(stderr,
                "%s: malformed frame (length %u, want 5) after %llu votes; dropping connection\n",
                prog, (unsigned)load_be32(p), (unsigned long long)w.votes);
        w.carry = 0;
        return -1;
    }
    w.carry = (size_t)(end - p);
    memmove(w.inbuf, p, w.carry);
    return 0;
}

/* Serves one input connection until EOF, error or stop; commits and flushes before return. */
static void serve(int fd)
{
    w.carry = 0;
    for (;;) {
        if (stop_requested)
            break;
        int pending = w.pending_in > 0;
        struct pollfd pfd = { fd, POLLIN, 0 };
        /* With a batch pending, an empty socket means "input idle": commit right away. */
        int n = poll(&pfd, 1, pending ? 0 : IDLE_POLL_MS);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        if (n == 0) {
            if (pending)
                commit_and_flush();
            continue;
        }
        /* Never read past the size limit, so a batch is at most --commit-bytes (+ a frame). */
        size_t want = commit_bytes_limit - w.pending_in;
        if (want > READ_SIZE)
            want = READ_SIZE;
        ssize_t got = read(fd, w.inbuf + w.carry, want);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            fprintf(stderr, "%s: --in: read: %s\n", prog, strerror(errno));
            break;
        }
        if (got == 0) {
            if (w.carry)
                fprintf(stderr, "%s: --in: connection closed inside a frame (%zu bytes dropped)\n",
                        prog, w.carry);
            break;
        }
        int64_t arrived = now_ns(); /* vDSO clock: once or twice per read, never per vote */
        int was_empty = w.pending_in == 0;
        if (process(w.carry + (size_t)got) != 0)
            break;
        if (w.pending_in == 0)
            continue;
        if (was_empty)
            w.batch_start_ns = arrived;
        if (w.pending_in >= commit_bytes_limit || now_ns() - w.batch_start_ns >= commit_ns_limit)
            commit_and_flush();
    }
    commit_and_flush();
}

int main(int argc, char **argv)
{
    const char *in_spec = NULL, *out_spec = NULL, *dir = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--outbox") == 0) {
            outbox_on = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: unknown option or missing value: %s (see --help)\n", prog, a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--in") == 0)
            in_spec = v;
        else if (strcmp(a, "--out") == 0)
            out_spec = v;
        else if (strcmp(a, "--resilience-dir") == 0)
            dir = v;
        else if (strcmp(a, "--commit-bytes") == 0) {
            uint64_t b = parse_size(a, v);
            if (b > ((uint64_t)1 << 30)) {
                fprintf(stderr, "%s: --commit-bytes: at most 1G\n", prog);
                return 2;
            }
            commit_bytes_limit = (size_t)b;
        } else if (strcmp(a, "--commit-ms") == 0) {
            char *end;
            errno = 0;
            double ms = strtod(v, &end);
            if (errno || end == v || *end != '\0' || !(ms >= 0) || ms > 3600e3) {
                fprintf(stderr, "%s: --commit-ms: bad value '%s'\n", prog, v);
                return 2;
            }
            commit_ns_limit = (int64_t)(ms * 1e6);
        } else {
            fprintf(stderr, "%s: unknown option: %s (see --help)\n", prog, a);
            return 2;
        }
    }
    if (!in_spec || !out_spec || !dir) {
        fprintf(stderr, "%s: --in, --out and --resilience-dir are required (see --help)\n", prog);
        return 2;
    }

    struct sigaction sa = { 0 };
    sa.sa_handler = on_signal; /* no SA_RESTART: poll/accept/read return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The only allocations: done once, sized for the largest possible batch. */
    w.inbuf = malloc(READ_SIZE + IN_FRAME);
    w.outcap = (commit_bytes_limit + IN_FRAME) / IN_FRAME * OUT_FRAME;
    w.outbuf = malloc(w.outcap);
    if (!w.inbuf || !w.outbuf)
        die("out of memory");

    store_open(dir);
    int lfd = listen_on(in_spec);
    w.out_fd = connect_retry(out_spec);
    if (w.out_fd < 0) {
        w.outlen = 0; /* stopped before --out came up: the outbox keeps it for the next start */
        goto done;
    }
    if (w.outlen > 0) {
        fprintf(stderr, "%s: sending the last commit's %zu bytes of output again\n", prog,
                w.outlen);
        write_all(w.out_fd, w.outbuf, w.outlen);
        w.outlen = 0;
    }
    fprintf(stderr, "%s: listening on %s, output to %s\n", prog, in_spec, out_spec);

    while (!stop_requested) {
        struct pollfd pfd = { lfd, POLLIN, 0 };
        int n = poll(&pfd, 1, IDLE_POLL_MS);
        if (n < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        if (n <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
                continue;
            die("accept: %s", strerror(errno));
        }
        serve(fd);
        close(fd);
    }

done:
    commit_and_flush(); /* nothing pending here; kept as the exit invariant */
    fprintf(stderr, "%s: exit: %llu votes, %llu commits\n", prog, (unsigned long long)w.votes,
            (unsigned long long)w.commits);
    if (w.out_fd >= 0)
        close(w.out_fd);
    close(lfd);
    mdb_env_close(w.env);
    free(w.inbuf);
    free(w.outbuf);
    return 0;
}
