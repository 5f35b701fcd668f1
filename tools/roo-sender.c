/* roo-sender: a Giles-style load generator that sends Alphabet votes (or a framed file) to roo sources over TCP. */
#include "tools-common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/buf.h"
#include "wire/wire.h"

#define PROG "roo-sender"

#define VOTE_BYTES 9u
#define DEFAULT_HOST "127.0.0.1:7010"
#define DEFAULT_MESSAGES 1000000ULL
#define DEFAULT_BATCH 100000ULL
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_LINGER 10.0
#define RETRY_NS 100000000ULL
/* At low rates one write carries at most this much time's worth of messages. */
#define PACING_SLICE_S 0.01
#define DEFAULT_ACK_TIMEOUT 10.0
#define DEFAULT_BACKLOG 4000000ULL

struct options {
    const char *hosts;
    uint64_t conns_per_addr;
    const char *file;
    bool repeat;
    uint64_t messages;
    bool messages_set;
    uint64_t seed;
    uint64_t batch;
    double rate;
    const char *expected;
    const char *save;
    double connect_timeout;
    double linger;
    bool quiet;
    bool dry_run;
    /* --resumable */
    bool resumable;
    const char *stream;
    double ack_timeout;
    bool ack_timeout_set;
    uint64_t backlog;
    bool backlog_set;
};

struct conn {
    int fd;
    char name[TOOLS_ADDR_STRLEN];
};

/* xoshiro256**: fast, and identical output on every machine for a given seed. */
struct rng {
    uint64_t s[4];
};

/* Where records come from: the generator or a validated in-memory file. */
struct source {
    struct rng rng;
    const uint8_t *data;
    size_t size;
    size_t pos;
    uint64_t file_records;
    bool repeat;
    bool alphabet;
};

struct stream;

struct sender {
    struct options opt;
    /* Every frame has this many bytes (header included), 0 if they differ: lets the
     * resumable bookkeeping find frame k by arithmetic instead of walking frames. */
    size_t frame_len;
    /* --resumable: one stream per connection, over the addresses of --host */
    struct stream *streams;
    size_t nstreams;
    char **hosts;
    size_t nhosts;
    uint64_t reconnects;
    uint64_t resent;
    struct conn *conns;
    size_t nconns;
    struct source src;
    struct tools_totals totals;
    uint8_t *buf;
    size_t bufcap;
    int save_fd;
};

static const char usage_text[] =
    "usage: roo-sender [--host HOST:PORT[,HOST:PORT...]] [options]\n"
    "\n"
    "Sends Alphabet votes (u32 BE length=5 | letter | u32 BE votes) generated on the fly,\n"
    "or the framed records of a file, to roo sources over TCP.\n"
    "\n"
    "  --host LIST            where to connect, comma-separated HOST:PORT or [V6]:PORT;\n"
    "                         batches go round-robin over the connections (default " DEFAULT_HOST
    ")\n"
    "  --connections N        connections per address (default 1)\n"
    "  --file F               send the framed records of F (u32 BE length + payload each)\n"
    "                         instead of generating votes\n"
    "  --repeat               with --file: start F again at its end until --messages are sent\n"
    "                         (forever without --messages)\n"
    "  --messages N           messages to send, suffixes k/M/G (x1000) allowed\n"
    "                         (default 1000000 for the generator, the whole file once for --file)\n"
    "  --seed S               generator seed (default 1); letters uniform a..z, votes 1..9999\n"
    "  --batch-size N         messages per write() (default 100000)\n"
    "  --rate R               messages per second, 0 = as fast as possible (default 0)\n"
    "  --expected FILE        write the per-letter vote totals sent as JSON (Alphabet records "
    "only)\n"
    "  --save FILE            write every record sent, in send order, as a framed file\n"
    "  --connect-timeout S    keep retrying to connect for S seconds (default 10); with\n"
    "                         --resumable, for each outage of a stream\n"
    "  --linger S             without --resumable: after the last message, wait up to S\n"
    "                         seconds for each worker to read everything and close its side\n"
    "                         (default 10, 0 = do not wait); a worker that closes with data\n"
    "                         unread (it refused or dropped it) is an error\n"
    "  --resumable            speak the resumable source protocol: each connection is one\n"
    "                         stream; frames are kept until acknowledged and sent again after\n"
    "                         a reconnect (to the next --host address, with backoff)\n"
    "  --stream NAME          with --resumable: stream name, '-K' appended for connection K\n"
    "                         when there are several (default roo-sender-SEED-PID)\n"
    "  --ack-timeout S        with --resumable: reconnect when frames are outstanding and no\n"
    "                         acknowledgement progressed for S seconds, 0 = never (default 10)\n"
    "  --backlog N            with --resumable: unacknowledged messages kept per stream; at N\n"
    "                         no new ones are sent until acknowledgements free room\n"
    "                         (default 4M)\n"
    "  --quiet                no progress lines (with --resumable: no reconnect lines either,\n"
    "                         except for outages of more than 2 seconds)\n"
    "  --dry-run              connect to nothing: only produce --save and --expected, exactly\n"
    "                         as a real run would\n"
    "  -h, --help             this text\n"
    "  -V, --version          print the version\n"
    "\n"
    "Exit status: 0 all written and read by the worker (with --resumable: all written and\n"
    "acknowledged), 1 connection or I/O error, or a worker closed a connection before reading\n"
    "all of it, 2 usage error.\n";

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    int i;

    for (i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static uint64_t parse_count_flag(const char *name, const char *val, bool allow_zero)
{
    uint64_t v;

    if (tools_parse_count(val, &v) < 0)
        tools_usage_error(PROG, "%s: bad count '%s'", name, val);
    if (!allow_zero && v == 0)
        tools_usage_error(PROG, "%s must be at least 1", name);
    return v;
}

static int validate_hosts(const char *list)
{
    char host[256], port[16], item[512];
    const char *p = list, *comma;
    size_t n;

    for (;;) {
        comma = strchr(p, ',');
        n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= sizeof(item))
            return -EINVAL;
        memcpy(item, p, n);
        item[n] = '\0';
        if (tools_split_hostport(item, host, sizeof(host), port, sizeof(port)) < 0 ||
            strcmp(port, "0") == 0)
            tools_usage_error(PROG, "--host: bad address '%s' (expected HOST:PORT or [V6]:PORT)",
                              item);
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static void parse_args(int argc, char **argv, struct options *o)
{
    struct tools_flag f;
    const char *v;
    int i;

    o->hosts = DEFAULT_HOST;
    o->conns_per_addr = 1;
    o->messages = DEFAULT_MESSAGES;
    o->seed = 1;
    o->batch = DEFAULT_BATCH;
    o->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    o->linger = DEFAULT_LINGER;
    o->ack_timeout = DEFAULT_ACK_TIMEOUT;
    o->backlog = DEFAULT_BACKLOG;

    for (i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-", 1) != 0 || tools_flag_split(argv[i], &f) < 0)
            tools_usage_error(PROG, "unexpected argument '%s'", argv[i]);
        if (!strcmp(f.name, "--help") || !strcmp(f.name, "-h")) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (!strcmp(f.name, "--version") || !strcmp(f.name, "-V")) {
            printf("%s %s\n", PROG, TOOLS_VERSION);
            exit(0);
        } else if (!strcmp(f.name, "--host")) {
            o->hosts = tools_flag_value(PROG, &f, argc, argv, &i);
            if (validate_hosts(o->hosts) < 0)
                tools_usage_error(PROG, "--host: bad address list '%s'", o->hosts);
        } else if (!strcmp(f.name, "--connections")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            o->conns_per_addr = parse_count_flag(f.name, v, false);
            if (o->conns_per_addr > 10000)
                tools_usage_error(PROG, "--connections: %s is too many", v);
        } else if (!strcmp(f.name, "--file")) {
            o->file = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->file)
                tools_usage_error(PROG, "--file needs a file name");
        } else if (!strcmp(f.name, "--repeat")) {
            tools_flag_no_value(PROG, &f);
            o->repeat = true;
        } else if (!strcmp(f.name, "--messages")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            o->messages = parse_count_flag(f.name, v, true);
            o->messages_set = true;
        } else if (!strcmp(f.name, "--seed")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_u64(v, &o->seed) < 0)
                tools_usage_error(PROG, "--seed: bad seed '%s' (expected a non-negative integer)",
                                  v);
        } else if (!strcmp(f.name, "--batch-size")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            o->batch = parse_count_flag(f.name, v, false);
            if (o->batch > 100000000ULL)
                tools_usage_error(PROG, "--batch-size: %s is too large (max 100M)", v);
        } else if (!strcmp(f.name, "--rate")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_rate(v, &o->rate) < 0)
                tools_usage_error(PROG, "--rate: bad rate '%s'", v);
        } else if (!strcmp(f.name, "--expected")) {
            o->expected = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->expected)
                tools_usage_error(PROG, "--expected needs a file name");
        } else if (!strcmp(f.name, "--save")) {
            o->save = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->save)
                tools_usage_error(PROG, "--save needs a file name");
        } else if (!strcmp(f.name, "--connect-timeout")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_seconds(v, &o->connect_timeout) < 0)
                tools_usage_error(PROG, "--connect-timeout: bad number of seconds '%s'", v);
        } else if (!strcmp(f.name, "--linger")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_seconds(v, &o->linger) < 0)
                tools_usage_error(PROG, "--linger: bad number of seconds '%s'", v);
        } else if (!strcmp(f.name, "--resumable")) {
            tools_flag_no_value(PROG, &f);
            o->resumable = true;
        } else if (!strcmp(f.name, "--stream")) {
            o->stream = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->stream || strlen(o->stream) > ROO__STREAM_NAME_MAX)
                tools_usage_error(PROG, "--stream: the name must have 1 to %d bytes",
                                  ROO__STREAM_NAME_MAX);
        } else if (!strcmp(f.name, "--ack-timeout")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_seconds(v, &o->ack_timeout) < 0)
                tools_usage_error(PROG, "--ack-timeout: bad number of seconds '%s'", v);
            o->ack_timeout_set = true;
        } else if (!strcmp(f.name, "--backlog")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            o->backlog = parse_count_flag(f.name, v, false);
            o->backlog_set = true;
        } else if (!strcmp(f.name, "--quiet")) {
            tools_flag_no_value(PROG, &f);
            o->quiet = true;
        } else if (!strcmp(f.name, "--dry-run")) {
            tools_flag_no_value(PROG, &f);
            o->dry_run = true;
        } else {
            tools_usage_error(PROG, "unknown option '%s'", f.name);
        }
    }
    if (o->repeat && !o->file)
        tools_usage_error(PROG, "--repeat needs --file");
    if (o->stream && !o->resumable)
        tools_usage_error(PROG, "--stream needs --resumable");
    if (o->ack_timeout_set && !o->resumable)
        tools_usage_error(PROG, "--ack-timeout needs --resumable");
    if (o->backlog_set && !o->resumable)
        tools_usage_error(PROG, "--backlog needs --resumable");
    if (o->dry_run && o->repeat && !o->messages_set)
        tools_usage_error(PROG, "--dry-run with --repeat needs --messages");
    /* "The whole file once" is resolved to a count once the file is loaded. */
    if (o->file && !o->messages_set)
        o->messages = UINT64_MAX;
}

/* Non-blocking connect so an unreachable host cannot stall past the deadline. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline)
{
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    int fd, rc, soerr = 0, one = 1;
    uint64_t now;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        for (;;) {
            now = tools_now_ns();
            rc = poll(&pfd, 1, now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1));
            if (rc < 0 && errno == EINTR)
                continue;
            break;
        }
        if (rc <= 0) {
            rc = rc < 0 ? -errno : -ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
            rc = -errno;
            goto fail;
        }
        if (soerr) {
            rc = -soerr;
            goto fail;
        }
    }
    /* Blocking writes are what we want: the engine's backpressure paces the generator. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        rc = -errno;
        goto fail;
    }
    /* Small paced batches should leave at once rather than wait for an ACK. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return rc;
}

static int connect_addr(const char *addr, uint64_t deadline, struct conn *c)
{
    char err[1024];
    struct addrinfo *res = NULL, *ai;
    int fd = -EHOSTUNREACH;

    for (;;) {
        err[0] = '\0';
        if (tools_resolve(addr, false, &res, err, sizeof(err)) == 0) {
            for (ai = res; ai; ai = ai->ai_next) {
                fd = connect_one(ai, deadline);
                if (fd >= 0) {
                    tools_format_addr(ai->ai_addr, ai->ai_addrlen, c->name, sizeof(c->name));
                    break;
                }
            }
            freeaddrinfo(res);
            res = NULL;
            if (fd >= 0) {
                c->fd = fd;
                return 0;
            }
            snprintf(err, sizeof(err), "cannot connect to %s: %s", addr, strerror(-fd));
        }
        /* Retry until the deadline: the worker may simply not be listening yet. */
        if (tools_now_ns() + RETRY_NS > deadline)
            break;
        tools_sleep_until_ns(tools_now_ns() + RETRY_NS);
    }
    tools_log(PROG, "%s", err);
    return fd < 0 ? fd : -ECONNREFUSED;
}

static int connect_all(struct sender *s)
{
    char item[512];
    const char *p = s->opt.hosts, *comma;
    size_t naddr = 1, n, k, j = 0;
    uint64_t deadline;
    int rc;

    for (comma = p; (comma = strchr(comma, ',')); comma++)
        naddr++;
    s->nconns = naddr * (size_t)s->opt.conns_per_addr;
    s->conns = calloc(s->nconns, sizeof(*s->conns));
    if (!s->conns)
        return -ENOMEM;
    for (k = 0; k < s->nconns; k++)
        s->conns[k].fd = -1;
    deadline = tools_now_ns() + (uint64_t)(s->opt.connect_timeout * 1e9);
    for (;;) {
        comma = strchr(p, ',');
        n = comma ? (size_t)(comma - p) : strlen(p);
        memcpy(item, p, n);
        item[n] = '\0';
        for (k = 0; k < s->opt.conns_per_addr; k++) {
            rc = connect_addr(item, deadline, &s->conns[j]);
            if (rc < 0)
                return rc;
            j++;
        }
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* Validates framing of the whole file up front so nothing is sent from a broken file. */
static int load_file(struct sender *s)
{
    uint8_t *data = NULL;
    size_t size, pos = 0;
    uint64_t n = 0;
    uint32_t len;
    int rc;

    rc = tools_read_file(s->opt.file, &data, &size);
    if (rc < 0) {
        tools_log(PROG, "cannot read %s: %s", s->opt.file, strerror(-rc));
        return rc;
    }
    while (pos < size) {
        if (size - pos < 4) {
            tools_log(PROG,
                      "%s: truncated record %" PRIu64
                      " at offset %zu (%zu bytes of a 4-byte length)",
                      s->opt.file, n + 1, pos, size - pos);
            rc = -EINVAL;
            goto fail;
        }
        len = tools_load_be32(data + pos);
        if (size - pos - 4 < len) {
            tools_log(PROG,
                      "%s: truncated record %" PRIu64 " at offset %zu (length %u, %zu bytes left)",
                      s->opt.file, n + 1, pos, len, size - pos - 4);
            rc = -EINVAL;
            goto fail;
        }
        if (s->opt.expected && (len != 5 || !tools_is_letter(data[pos + 4]))) {
            tools_log(PROG,
                      "%s: record %" PRIu64 " at offset %zu is not an Alphabet vote "
                      "(5-byte payload with a letter), needed for --expected",
                      s->opt.file, n + 1, pos);
            rc = -EINVAL;
            goto fail;
        }
        if (n == 0)
            s->frame_len = 4 + (size_t)len;
        else if (s->frame_len != 4 + (size_t)len)
            s->frame_len = 0;
        pos += 4 + (size_t)len;
        n++;
    }
    if (n == 0 && s->opt.repeat && s->opt.messages > 0) {
        tools_log(PROG, "%s: no records to repeat", s->opt.file);
        rc = -EINVAL;
        goto fail;
    }
    s->src.data = data;
    s->src.size = size;
    s->src.file_records = n;
    s->src.repeat = s->opt.repeat;
    s->src.alphabet = s->opt.expected != NULL;
    if (!s->opt.repeat && s->opt.messages > n)
        s->opt.messages = n;
    return 0;
fail:
    free(data);
    return rc;
}

static int ensure_buf(struct sender *s, size_t need)
{
    uint8_t *nb;
    size_t cap = s->bufcap ? s->bufcap : 65536;

    if (need <= s->bufcap)
        return 0;
    while (cap < need)
        cap *= 2;
    nb = realloc(s->buf, cap);
    if (!nb)
        return -ENOMEM;
    s->buf = nb;
    s->bufcap = cap;
    return 0;
}

/* Generates n votes into s->buf and adds them to the expected totals as it goes. */
static size_t fill_generated(struct sender *s, uint64_t n)
{
    const uint32_t hdr = __builtin_bswap32(5);
    uint64_t sums[26] = { 0 };
    struct rng r = s->src.rng;
    uint8_t *q = s->buf;
    uint64_t i, x;
    uint32_t letter, votes;
    int k;

    for (i = 0; i < n; i++) {
        x = rng_next(&r);
        /* Multiply-shift maps 32 random bits onto a range without a division. */
        letter = (uint32_t)(((x >> 32) * 26) >> 32);
        votes = 1 + (uint32_t)(((x & 0xffffffffULL) * 9999) >> 32);
        sums[letter] += votes;
        memcpy(q, &hdr, 4);
        q[4] = (uint8_t)('a' + letter);
        tools_store_be32(q + 5, votes);
        q += VOTE_BYTES;
    }
    s->src.rng = r;
    for (k = 0; k < 26; k++) {
        if (sums[k] || s->totals.present['a' + k]) {
            s->totals.total['a' + k] += sums[k];
            s->totals.present['a' + k] = true;
        }
    }
    return (size_t)(q - s->buf);
}

/* Copies up to n whole records from the file into s->buf, wrapping with --repeat. */
static int fill_from_file(struct sender *s, uint64_t n, uint64_t *got, size_t *bytes)
{
    struct source *src = &s->src;
    size_t used = 0, start, run;
    uint64_t cnt = 0;
    uint32_t len;
    int rc;

    while (cnt < n) {
        if (src->pos == src->size) {
            if (!src->repeat || src->size == 0)
                break;
            src->pos = 0;
        }
        start = src->pos;
        while (cnt < n && src->pos < src->size) {
            len = tools_load_be32(src->data + src->pos);
            if (src->alphabet) {
                uint8_t l = src->data[src->pos + 4];

                s->totals.total[l] += tools_load_be32(src->data + src->pos + 5);
                s->totals.present[l] = true;
            }
            src->pos += 4 + (size_t)len;
            cnt++;
        }
        run = src->pos - start;
        rc = ensure_buf(s, used + run);
        if (rc < 0)
            return rc;
        memcpy(s->buf + used, src->data + start, run);
        used += run;
    }
    *got = cnt;
    *bytes = used;
    return 0;
}

static void progress(uint64_t sent, uint64_t prev, double dt)
{
    char a[32], b[32];

    tools_format_si((double)sent, a, sizeof(a));
    tools_format_si(dt > 0 ? (double)(sent - prev) / dt : 0, b, sizeof(b));
    tools_log(PROG, "%s msgs sent, %s msgs/s", a, b);
}

static int send_all(struct sender *s, uint64_t *sent_out, uint64_t *bytes_out, uint64_t *t0_out)
{
    const struct options *o = &s->opt;
    uint64_t total = o->messages, sent = 0, bytes = 0, per_batch = o->batch, n, got;
    uint64_t t0, now, next_progress, last_sent = 0, last_t;
    bool expected_written = false;
    size_t len, ci = 0;
    int rc;

    if (o->rate > 0 && !o->dry_run) {
        double slice = o->rate * PACING_SLICE_S;

        if (slice < 1)
            slice = 1;
        if ((double)per_batch > slice)
            per_batch = (uint64_t)slice;
    }
    if (!o->file) {
        rc = ensure_buf(s, (size_t)per_batch * VOTE_BYTES);
        if (rc < 0)
            return rc;
    }
    t0 = tools_now_ns();
    *t0_out = t0;
    last_t = t0;
    next_progress = t0 + 1000000000ULL;
    while (sent < total) {
        n = total - sent < per_batch ? total - sent : per_batch;
        if (o->file) {
            rc = fill_from_file(s, n, &got, &len);
            if (rc < 0)
                return rc;
            if (got == 0)
                break;
            n = got;
        } else {
            len = fill_generated(s, n);
        }
        /* Written before the last batch leaves, so a receiver that stops on the final output finds it. */
        if (o->expected && sent + n == total) {
            rc = tools_totals_write(o->expected, &s->totals);
            if (rc < 0) {
                tools_log(PROG, "cannot write %s: %s", o->expected, strerror(-rc));
                return rc;
            }
            expected_written = true;
        }
        /* Saved before sending for the same reason: the receiver may read it while checking. */
        if (s->save_fd >= 0) {
            rc = tools_write_all(s->save_fd, s->buf, len);
            if (rc < 0) {
                tools_log(PROG, "cannot write %s: %s", o->save, strerror(-rc));
                return rc;
            }
        }
        if (!o->dry_run) {
            if (o->rate > 0)
                tools_sleep_until_ns(t0 + (uint64_t)((double)sent / o->rate * 1e9));
            rc = tools_write_all(s->conns[ci].fd, s->buf, len);
            if (rc < 0) {
                tools_log(PROG, "write to %s failed after %" PRIu64 " msgs: %s", s->conns[ci].name,
                          sent, strerror(-rc));
                return rc;
            }
            ci = ci + 1 == s->nconns ? 0 : ci + 1;
        }
        sent += n;
        bytes += len;
        if (!o->quiet) {
            now = tools_now_ns();
            if (now >= next_progress) {
                progress(sent, last_sent, (double)(now - last_t) / 1e9);
                last_sent = sent;
                last_t = now;
                next_progress = now + 1000000000ULL;
            }
        }
    }
    /* Nothing sent at all (--messages 0) still owes the caller an (empty) totals file. */
    if (o->expected && !expected_written) {
        rc = tools_totals_write(o->expected, &s->totals);
        if (rc < 0) {
            tools_log(PROG, "cannot write %s: %s", o->expected, strerror(-rc));
            return rc;
        }
    }
    *sent_out = sent;
    *bytes_out = bytes;
    return 0;
}

static void log_not_taken(const struct conn *c, int err)
{
    tools_log(PROG,
              "%s: the worker closed the connection before reading everything sent (%s): those "
              "messages were not taken (see the worker's log)",
              c->name, strerror(err));
}

/*
 * Plain mode's end: half-close every connection, then wait up to --linger seconds for each
 * worker to read all of it and close its side (EOF). A reset instead means the worker
 * closed with bytes unread: it refused or dropped them (a decoder error, a stop), and the
 * caller must hear it. A worker still reading after --linger is not waited for.
 */
static int finish_conns(struct sender *s)
{
    struct pollfd *pfds = calloc(s->nconns ? s->nconns : 1, sizeof(*pfds));
    uint64_t deadline = tools_now_ns() + (uint64_t)(s->opt.linger * 1e9);
    size_t i, open = 0;
    int rc = 0;

    if (!pfds) {
        tools_log(PROG, "out of memory");
        return -ENOMEM;
    }
    for (i = 0; i < s->nconns; i++) {
        pfds[i].fd = -1;
        if (s->conns[i].fd < 0)
            continue;
        if (shutdown(s->conns[i].fd, SHUT_WR) < 0) {
            rc = -errno;
            log_not_taken(&s->conns[i], -rc);
            continue;
        }
        if (s->opt.linger > 0) {
            pfds[i].fd = s->conns[i].fd;
            pfds[i].events = POLLIN;
            open++;
        }
    }
    while (open > 0) {
        uint64_t now = tools_now_ns();
        int n;

        if (now >= deadline) {
            tools_log(PROG,
                      "%zu worker connection(s) still open %.1f s after the last message "
                      "(--linger); not waiting further",
                      open, s->opt.linger);
            break;
        }
        n = poll(pfds, s->nconns, (int)((deadline - now + 999999) / 1000000));
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        for (i = 0; n > 0 && i < s->nconns; i++) {
            char scratch[4096];
            ssize_t got;

            if (pfds[i].fd < 0 || !pfds[i].revents)
                continue;
            got = recv(pfds[i].fd, scratch, sizeof(scratch), MSG_DONTWAIT);
            if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR)))
                continue; /* a plain worker says nothing; ignore what it does say */
            if (got < 0) {
                rc = -errno;
                log_not_taken(&s->conns[i], -rc);
            }
            pfds[i].fd = -1;
            open--;
        }
    }
    for (i = 0; i < s->nconns; i++) {
        if (s->conns[i].fd >= 0)
            close(s->conns[i].fd);
        s->conns[i].fd = -1;
    }
    free(pfds);
    return rc;
}

/*
 * ---- --resumable: the client side of docs/source-protocol.md ----
 *
 * Every connection is one stream. Batches are generated in the same order as in plain
 * mode and handed round-robin to the streams; a stream keeps its frames until the worker
 * acknowledges them, so after a lost connection it reconnects (to the next --host address)
 * and sends again from the worker's welcome on. One poll loop drives every stream: no
 * socket ever blocks, so a stream that is reconnecting does not stall the others until
 * its turn in the round-robin comes and its backlog is full.
 */

#define BACKOFF_MIN_NS 100000000ULL
#define BACKOFF_MAX_NS 2000000000ULL
/* One TCP connect attempt; after it the next address is tried. */
#define ATTEMPT_NS 2000000000ULL
/* With --quiet, an outage is still reported once it lasts this long. */
#define SLOW_LOG_NS 2000000000ULL
#define REPLY_MAX (4u + ROO__SOURCE_FRAME_MAX)
#define NS_PER_S 1000000000ULL

enum stream_state {
    ST_WAIT,       /* disconnected; next attempt at retry_at */
    ST_CONNECTING, /* non-blocking connect() in progress */
    ST_HANDSHAKE,  /* magic + hello sent (or being sent), waiting for the welcome */
    ST_STREAMING,  /* welcomed: sending frames, reading acknowledgements */
};

struct stream {
    char name[ROO__STREAM_NAME_MAX + 1];
    /* Frames base..end-1 (acknowledged below base) are the bytes data[head..len). */
    uint8_t *data;
    size_t head, len, cap;
    uint64_t base, end;
    /*
     * Send cursor of the current connection: frames below wr_frame are written, frame
     * wr_frame starts at data[wr_pos] and wr_off of its bytes are written.
     */
    uint64_t wr_frame;
    size_t wr_pos, wr_off;
    uint64_t high; /* frames ever written completely, over all connections */

    enum stream_state state;
    int fd;
    size_t host; /* index into hosts: the address in use, or the one to try next */
    struct addrinfo *ai_list, *ai_cur;
    uint64_t deadline; /* ST_CONNECTING: attempt; ST_HANDSHAKE: welcome */
    uint64_t retry_at; /* ST_WAIT */
    uint64_t backoff;
    uint64_t down_since; /* without a welcomed connection since then; 0 while streaming */
    uint64_t ack_since;  /* ST_STREAMING: last acknowledgement progress */
    bool welcomed_once;
    bool tried; /* an attempt failed since down_since (giving up needs at least one) */
    bool lost;  /* a welcomed connection broke and the stream has not resumed yet */
    bool slow_logged;
    char lost_host[512];
    char lost_reason[256];
    char last_err[1024];

    uint8_t hello[ROO__SOURCE_MAGIC_LEN + 4 + ROO__SOURCE_FRAME_MAX];
    size_t hello_len, hello_off;
    uint8_t in[REPLY_MAX];
    size_t in_len;
};

static uint64_t ns_of(double seconds)
{
    return (uint64_t)(seconds * 1e9);
}

static const char *stream_host(const struct sender *s, const struct stream *st)
{
    return s->hosts[st->host];
}

static void stream_close(struct stream *st)
{
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
    if (st->ai_list)
        freeaddrinfo(st->ai_list);
    st->ai_list = NULL;
    st->ai_cur = NULL;
}

/* Byte position of frame k (base <= k <= end). */
static size_t stream_pos(const struct stream *st, uint64_t k, size_t frame_len)
{
    size_t pos = st->head;
    uint64_t f;

    if (frame_len)
        return pos + (size_t)(k - st->base) * frame_len;
    for (f = st->base; f < k; f++)
        pos += 4 + (size_t)tools_load_be32(st->data + pos);
    return pos;
}

/* A connect attempt (TCP, hello or welcome) failed: the next address, after a longer pause. */
static void attempt_failed(struct sender *s, struct stream *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void attempt_failed(struct sender *s, struct stream *st, const char *fmt, ...)
{
    char why[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(st->last_err, sizeof(st->last_err), "%s: %s", stream_host(s, st), why);
    st->tried = true;
    stream_close(st);
    st->backoff = st->backoff ? st->backoff * 2 : BACKOFF_MIN_NS;
    if (st->backoff > BACKOFF_MAX_NS)
        st->backoff = BACKOFF_MAX_NS;
    st->retry_at = tools_now_ns() + st->backoff;
    st->host = (st->host + 1) % s->nhosts;
    st->state = ST_WAIT;
}

/* A welcomed connection broke: remember why (logged once the stream resumes), then reconnect. */
static void stream_lost(struct sender *s, struct stream *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stream_lost(struct sender *s, struct stream *st, const char *fmt, ...)
{
    va_list ap;
    uint64_t now = tools_now_ns();

    va_start(ap, fmt);
    vsnprintf(st->lost_reason, sizeof(st->lost_reason), fmt, ap);
    va_end(ap);
    snprintf(st->lost_host, sizeof(st->lost_host), "%s", stream_host(s, st));
    snprintf(st->last_err, sizeof(st->last_err), "%s: %s", st->lost_host, st->lost_reason);
    stream_close(st);
    st->lost = true;
    st->tried = false;
    st->slow_logged = false;
    st->down_since = now;
    st->backoff = BACKOFF_MIN_NS;
    st->retry_at = now + st->backoff;
    st->host = (st->host + 1) % s->nhosts;
    st->state = ST_WAIT;
}

/* A failure in ST_HANDSHAKE is a failed attempt; in ST_STREAMING the loss of the connection. */
#define stream_broken(s, st, ...)                                                                  \
    ((st)->state == ST_STREAMING ? stream_lost((s), (st), __VA_ARGS__)                             \
                                 : attempt_failed((s), (st), __VA_ARGS__))

/* Writes the hello, then (welcomed) frames, until done or the socket is full. */
static void stream_flush(struct sender *s, struct stream *st)
{
    uint64_t old, upto;
    size_t fl;
    ssize_t n;

    while (st->hello_off < st->hello_len) {
        n = write(st->fd, st->hello + st->hello_off, st->hello_len - st->hello_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                attempt_failed(s, st, "sending the hello: %s", strerror(errno));
            return;
        }
        st->hello_off += (size_t)n;
    }
    if (st->state != ST_STREAMING)
        return;
    while (st->wr_pos + st->wr_off < st->len) {
        n = write(st->fd, st->data + st->wr_pos + st->wr_off, st->len - st->wr_pos - st->wr_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                stream_lost(s, st, "write: %s", strerror(errno));
            return;
        }
        /* Nothing was outstanding: the acknowledgement clock starts now. */
        if (st->wr_frame == st->base && st->wr_off == 0)
            st->ack_since = tools_now_ns();
        st->wr_off += (size_t)n;
        old = st->wr_frame;
        if (s->frame_len) {
            uint64_t whole = st->wr_off / s->frame_len;
            if (whole > st->end - st->wr_frame)
                whole = st->end - st->wr_frame;
            st->wr_pos += (size_t)whole * s->frame_len;
            st->wr_off -= (size_t)whole * s->frame_len;
            st->wr_frame += whole;
        }
        while (st->wr_frame < st->end) {
            fl = 4 + (size_t)tools_load_be32(st->data + st->wr_pos);
            if (st->wr_off < fl)
                break;
            st->wr_pos += fl;
            st->wr_off -= fl;
            st->wr_frame++;
        }
        if (old < st->high) {
            upto = st->wr_frame < st->high ? st->wr_frame : st->high;
            s->resent += upto - old;
        }
        if (st->wr_frame > st->high)
            st->high = st->wr_frame;
    }
}

/* Appends n whole frames (len bytes) to the stream's backlog. */
static int stream_append(struct stream *st, const uint8_t *p, size_t len, uint64_t n)
{
    size_t live = st->len - st->head, cap;
    uint8_t *nd;

    if (st->cap - st->len < len && st->head > 0) {
        memmove(st->data, st->data + st->head, live);
        if (st->wr_pos >= st->head)
            st->wr_pos -= st->head;
        else
            st->wr_pos = 0; /* stale: set again by the next welcome */
        st->len = live;
        st->head = 0;
    }
    /* Keep at least half the buffer free after a compaction so moving bytes stays amortised. */
    if (st->cap - st->len < len || (st->head == 0 && st->cap < 2 * (live + len))) {
        cap = st->cap ? st->cap : 65536;
        while (cap < 2 * (live + len))
            cap *= 2;
        if (cap != st->cap) {
            nd = realloc(st->data, cap);
            if (!nd)
                return -ENOMEM;
            /* Huge pages: a page fault per 4 KiB of backlog is dear on a VM. */
            if (cap >= (2u << 20))
                madvise((void *)((uintptr_t)nd & ~(uintptr_t)4095), cap, MADV_HUGEPAGE);
            st->data = nd;
            st->cap = cap;
        }
    }
    memcpy(st->data + st->len, p, len);
    st->len += len;
    st->end += n;
    return 0;
}

static void log_resumed(struct sender *s, struct stream *st, uint64_t from)
{
    if (!s->opt.quiet || st->slow_logged)
        tools_log(PROG,
                  "stream %s: connection to %s lost (%s); resuming at frame %" PRIu64 " on %s",
                  st->name, st->lost_host, st->lost_reason, from, stream_host(s, st));
}

/* One SourceReply. Returns <0 on a fatal inconsistency (logged), 0 otherwise. */
static int stream_reply(struct sender *s, struct stream *st, const uint8_t *p, size_t len)
{
    roo__source_reply_kind kind;
    uint64_t v;
    char text[ROO__SOURCE_FRAME_MAX + 1];
    size_t pos;

    if (roo__wire_source_reply_decode(p, len, &kind, &v, text, sizeof(text)) < 0) {
        stream_broken(s, st, "undecodable reply of %zu bytes", len);
        return 0;
    }
    switch (kind) {
    case ROO__SRC_WELCOME:
        if (st->state != ST_HANDSHAKE) {
            stream_lost(s, st, "a second welcome");
            return 0;
        }
        if (v < st->base) {
            tools_log(PROG,
                      "stream %s: %s asks to resume at frame %" PRIu64 ", but frames below %" PRIu64
                      " were acknowledged and are no longer kept",
                      st->name, stream_host(s, st), v, st->base);
            return -EPROTO;
        }
        if (v > st->high) {
            tools_log(PROG,
                      "stream %s: %s says the stream continues at frame %" PRIu64
                      ", but only %" PRIu64
                      " frames were ever sent on it (is the name used by another sender?)",
                      st->name, stream_host(s, st), v, st->high);
            return -EPROTO;
        }
        pos = stream_pos(st, v, s->frame_len);
        st->wr_frame = v;
        st->wr_pos = pos;
        st->wr_off = 0;
        st->state = ST_STREAMING;
        st->ack_since = tools_now_ns();
        st->backoff = 0;
        st->down_since = 0;
        st->welcomed_once = true;
        if (st->lost) {
            s->reconnects++;
            log_resumed(s, st, v);
            st->lost = false;
        }
        st->slow_logged = false;
        return 0;
    case ROO__SRC_ACK:
        if (st->state != ST_STREAMING) {
            attempt_failed(s, st, "an acknowledgement before the welcome");
            return 0;
        }
        if (v > st->wr_frame) {
            stream_lost(s, st,
                        "acknowledged frame %" PRIu64 " but only frames below %" PRIu64
                        " were sent on this connection",
                        v, st->wr_frame);
            return 0;
        }
        if (v > st->base) {
            pos = stream_pos(st, v, s->frame_len);
            st->head = pos;
            st->base = v;
            st->ack_since = tools_now_ns();
            if (st->head == st->len && st->wr_pos == st->len && st->wr_off == 0) {
                st->head = st->len = st->wr_pos = 0;
            }
        }
        return 0;
    case ROO__SRC_REFUSED:
        tools_log(PROG, "stream %s: %s refused the stream: %s", st->name, stream_host(s, st), text);
        if (st->state == ST_STREAMING)
            stream_lost(s, st, "refused: %s", text);
        else
            attempt_failed(s, st, "refused: %s", text);
        return 0;
    }
    return 0;
}

/* Reads and handles whatever replies arrived. Returns <0 on a fatal inconsistency. */
static int stream_read(struct sender *s, struct stream *st)
{
    size_t off;
    uint32_t len;
    ssize_t n;
    int rc;

    for (;;) {
        n = read(st->fd, st->in + st->in_len, sizeof(st->in) - st->in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                stream_broken(s, st, "read: %s", strerror(errno));
            return 0;
        }
        if (n == 0) {
            stream_broken(s, st, "closed by the worker");
            return 0;
        }
        st->in_len += (size_t)n;
        off = 0;
        while (st->in_len - off >= 4) {
            len = tools_load_be32(st->in + off);
            if (len > ROO__SOURCE_FRAME_MAX) {
                stream_broken(s, st, "bad reply: length %u", len);
                return 0;
            }
            if (st->in_len - off - 4 < len)
                break;
            rc = stream_reply(s, st, st->in + off + 4, len);
            if (rc < 0)
                return rc;
            if (st->state != ST_STREAMING && st->state != ST_HANDSHAKE)
                return 0; /* closed (refused, protocol error) */
            off += 4 + len;
        }
        memmove(st->in, st->in + off, st->in_len - off);
        st->in_len -= off;
    }
}

/* TCP is up: send the magic and the hello, then wait for the welcome. */
static void stream_connected(struct sender *s, struct stream *st)
{
    roo__buf b = { 0 };
    int one = 1, rc;

    freeaddrinfo(st->ai_list);
    st->ai_list = NULL;
    st->ai_cur = NULL;
    setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rc = roo__wire_source_hello_encode(st->name, st->base, &b);
    if (rc < 0 || b.len > sizeof(st->hello)) {
        roo__buf_finish(&b);
        attempt_failed(s, st, "cannot encode the hello");
        return;
    }
    memcpy(st->hello, b.data, b.len);
    st->hello_len = b.len;
    st->hello_off = 0;
    roo__buf_finish(&b);
    st->in_len = 0;
    st->state = ST_HANDSHAKE;
    st->deadline =
        tools_now_ns() + ns_of(s->opt.ack_timeout > 0 ? s->opt.ack_timeout : DEFAULT_ACK_TIMEOUT);
    stream_flush(s, st);
}

/* Tries the resolved addresses from ai_cur on until one connects or is in progress. */
static void stream_try_addrs(struct sender *s, struct stream *st)
{
    int fd, err = EHOSTUNREACH;

    for (; st->ai_cur; st->ai_cur = st->ai_cur->ai_next) {
        const struct addrinfo *ai = st->ai_cur;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        st->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            stream_connected(s, st);
            return;
        }
        if (errno == EINPROGRESS) {
            st->state = ST_CONNECTING;
            st->deadline = tools_now_ns() + ATTEMPT_NS;
            return;
        }
        err = errno;
        close(fd);
        st->fd = -1;
    }
    attempt_failed(s, st, "%s", strerror(err));
}

static void stream_connect(struct sender *s, struct stream *st)
{
    char err[512];

    if (tools_resolve(stream_host(s, st), false, &st->ai_list, err, sizeof(err)) < 0) {
        st->ai_list = NULL;
        attempt_failed(s, st, "%s", err);
        return;
    }
    st->ai_cur = st->ai_list;
    stream_try_addrs(s, st);
}

/* The connect in progress finished (or timed out when err is ETIMEDOUT). */
static void stream_connect_done(struct sender *s, struct stream *st, int err)
{
    socklen_t len = sizeof(err);

    if (!err && getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (!err) {
        stream_connected(s, st);
        return;
    }
    close(st->fd);
    st->fd = -1;
    st->ai_cur = st->ai_cur->ai_next;
    if (st->ai_cur) {
        stream_try_addrs(s, st);
        return;
    }
    attempt_failed(s, st, "%s", strerror(err));
}

static int split_hosts(struct sender *s)
{
    const char *p = s->opt.hosts, *comma;
    size_t n;

    s->nhosts = 1;
    for (comma = p; (comma = strchr(comma, ',')); comma++)
        s->nhosts++;
    s->hosts = calloc(s->nhosts, sizeof(*s->hosts));
    if (!s->hosts)
        return -ENOMEM;
    for (n = 0; n < s->nhosts; n++) {
        comma = strchr(p, ',');
        s->hosts[n] = comma ? strndup(p, (size_t)(comma - p)) : strdup(p);
        if (!s->hosts[n])
            return -ENOMEM;
        p = comma ? comma + 1 : p;
    }
    return 0;
}

static int streams_init(struct sender *s)
{
    char base[ROO__STREAM_NAME_MAX + 64];
    struct stream *st;
    uint64_t now = tools_now_ns();
    size_t k;
    int n;

    if (split_hosts(s) < 0)
        return -ENOMEM;
    if (s->opt.stream)
        snprintf(base, sizeof(base), "%s", s->opt.stream);
    else
        snprintf(base, sizeof(base), "roo-sender-%" PRIu64 "-%ld", s->opt.seed, (long)getpid());
    s->nstreams = s->nhosts * (size_t)s->opt.conns_per_addr;
    s->streams = calloc(s->nstreams, sizeof(*s->streams));
    if (!s->streams)
        return -ENOMEM;
    for (k = 0; k < s->nstreams; k++) {
        st = &s->streams[k];
        st->fd = -1;
        if (s->nstreams == 1)
            n = snprintf(st->name, sizeof(st->name), "%s", base);
        else
            n = snprintf(st->name, sizeof(st->name), "%s-%zu", base, k + 1);
        if (n < 0 || (size_t)n >= sizeof(st->name))
            tools_usage_error(PROG, "--stream: '%s-%zu' is longer than %d bytes", base, k + 1,
                              ROO__STREAM_NAME_MAX);
        /* Connection k goes to the address plain mode would use; later ones rotate. */
        st->host = k / (size_t)s->opt.conns_per_addr;
        st->state = ST_WAIT;
        st->retry_at = now;
        st->down_since = now;
    }
    return 0;
}

static void streams_free(struct sender *s)
{
    size_t k;

    for (k = 0; k < s->nstreams; k++) {
        stream_close(&s->streams[k]);
        free(s->streams[k].data);
    }
    free(s->streams);
    s->streams = NULL;
    for (k = 0; k < s->nhosts; k++)
        free(s->hosts[k]);
    free(s->hosts);
    s->hosts = NULL;
}

/* Timers of one stream: connect attempts, welcome and acknowledgement waits, giving up. */
static int stream_timers(struct sender *s, struct stream *st, uint64_t now, uint64_t *wake)
{
    const struct options *o = &s->opt;
    uint64_t t;

#define WAKE_AT(x)                                                                                 \
    do {                                                                                           \
        if ((x) < *wake)                                                                           \
            *wake = (x);                                                                           \
    } while (0)

    if (st->state == ST_STREAMING) {
        if (o->ack_timeout > 0 && (st->wr_frame > st->base || st->wr_off > 0)) {
            t = st->ack_since + ns_of(o->ack_timeout);
            if (now >= t) {
                stream_lost(s, st, "no acknowledgement for %g s", o->ack_timeout);
                /* falls through to the ST_WAIT handling below */
            } else {
                WAKE_AT(t);
                return 0;
            }
        } else {
            return 0;
        }
    }
    /* Not connected: give up after --connect-timeout without a welcomed connection. */
    t = st->down_since + ns_of(o->connect_timeout);
    if (now >= t && st->tried) {
        if (st->lost)
            tools_log(PROG,
                      "stream %s: no connection for %g s since the connection to %s was lost (%s); "
                      "last attempt: %s",
                      st->name, o->connect_timeout, st->lost_host, st->lost_reason, st->last_err);
        else
            tools_log(PROG, "stream %s: cannot connect for %g s; last attempt: %s", st->name,
                      o->connect_timeout, st->last_err[0] ? st->last_err : "none");
        return -ETIMEDOUT;
    }
    WAKE_AT(t);
    if (st->lost && !st->slow_logged) {
        t = st->down_since + SLOW_LOG_NS;
        if (now >= t) {
            tools_log(PROG,
                      "stream %s: connection to %s lost (%s); still reconnecting after %.1f s "
                      "(last attempt: %s)",
                      st->name, st->lost_host, st->lost_reason,
                      (double)(now - st->down_since) / 1e9, st->last_err);
            st->slow_logged = true;
        } else {
            WAKE_AT(t);
        }
    }
    switch (st->state) {
    case ST_WAIT:
        if (now >= st->retry_at) {
            stream_connect(s, st);
            if (st->state == ST_WAIT)
                WAKE_AT(st->retry_at);
            else if (st->state != ST_STREAMING)
                WAKE_AT(st->deadline);
        } else {
            WAKE_AT(st->retry_at);
        }
        break;
    case ST_CONNECTING:
        if (now >= st->deadline)
            stream_connect_done(s, st, ETIMEDOUT);
        if (st->state == ST_WAIT)
            WAKE_AT(st->retry_at);
        else
            WAKE_AT(st->deadline);
        break;
    case ST_HANDSHAKE:
        if (now >= st->deadline) {
            attempt_failed(s, st, "no welcome within %g s",
                           o->ack_timeout > 0 ? o->ack_timeout : DEFAULT_ACK_TIMEOUT);
            WAKE_AT(st->retry_at);
        } else {
            WAKE_AT(st->deadline);
        }
        break;
    case ST_STREAMING:
        break;
    }
#undef WAKE_AT
    return 0;
}

static int write_expected(const struct sender *s)
{
    int rc = tools_totals_write(s->opt.expected, &s->totals);

    if (rc < 0)
        tools_log(PROG, "cannot write %s: %s", s->opt.expected, strerror(-rc));
    return rc;
}

/* One line a second while messages are sent or acknowledged. */
static void progress_resumable(const struct sender *s, uint64_t *prev, uint64_t *prev_acked,
                               uint64_t *prev_t, uint64_t now)
{
    char a[32], b[32], c[32];
    uint64_t sent = 0, acked = 0;
    double dt = (double)(now - *prev_t) / 1e9;
    size_t k;

    for (k = 0; k < s->nstreams; k++) {
        sent += s->streams[k].high;
        acked += s->streams[k].base;
    }
    if (sent == *prev && acked == *prev_acked) {
        *prev_t = now;
        return;
    }
    *prev_acked = acked;
    tools_format_si((double)sent, a, sizeof(a));
    tools_format_si(dt > 0 ? (double)(sent - *prev) / dt : 0, b, sizeof(b));
    tools_format_si((double)acked, c, sizeof(c));
    tools_log(PROG, "%s msgs sent, %s msgs/s, %s acknowledged", a, b, c);
    *prev = sent;
    *prev_t = now;
}

/*
 * Generates and sends every message, keeping each stream's frames until acknowledged.
 * Returns 0 once every message is acknowledged, <0 after logging why not.
 */
static int send_resumable(struct sender *s, uint64_t *sent_out, uint64_t *bytes_out,
                          uint64_t *t0_out)
{
    const struct options *o = &s->opt;
    uint64_t total = o->messages, gen = 0, bytes = 0, per_batch = o->batch, n, got;
    uint64_t t0 = 0, now, wake, next_progress = 0, prog_sent = 0, prog_acked = 0, prog_t = 0, due;
    struct pollfd *pfds;
    size_t *pidx, np, k, gi = 0, len, rounds;
    bool started = false, gen_done = total == 0, expected_written = false, done;
    struct stream *st;
    int rc = 0, timeout;

    if (o->rate > 0) {
        double slice = o->rate * PACING_SLICE_S;

        if (slice < 1)
            slice = 1;
        if ((double)per_batch > slice)
            per_batch = (uint64_t)slice;
    }
    if (per_batch > o->backlog)
        per_batch = o->backlog;
    if (!o->file) {
        rc = ensure_buf(s, (size_t)per_batch * VOTE_BYTES);
        if (rc < 0)
            return rc;
    }
    rc = streams_init(s);
    pfds = rc < 0 ? NULL : calloc(s->nstreams, sizeof(*pfds));
    pidx = rc < 0 ? NULL : calloc(s->nstreams, sizeof(*pidx));
    if (!pfds || !pidx) {
        tools_log(PROG, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        now = tools_now_ns();
        wake = UINT64_MAX;

        /* Every stream welcomed once: the run starts (and only now touches --save). */
        if (!started) {
            for (k = 0; k < s->nstreams && s->streams[k].welcomed_once; k++)
                ;
            if (k == s->nstreams) {
                started = true;
                if (o->save) {
                    s->save_fd = open(o->save, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                    if (s->save_fd < 0) {
                        rc = -errno;
                        tools_log(PROG, "cannot create %s: %s", o->save, strerror(errno));
                        goto out;
                    }
                }
                t0 = now;
                prog_t = now;
                next_progress = now + NS_PER_S;
            }
        }

        /* New batches, round-robin; at most one round per pass so replies get read. */
        for (rounds = 0; started && !gen_done && rounds < s->nstreams; rounds++) {
            st = &s->streams[gi];
            /* A connected stream writes its previous batch before it gets another. */
            if (st->state == ST_STREAMING && st->wr_pos + st->wr_off < st->len)
                break;
            n = total - gen < per_batch ? total - gen : per_batch;
            if (st->end - st->base + n > o->backlog)
                break;
            if (o->rate > 0) {
                due = t0 + (uint64_t)((double)gen / o->rate * 1e9);
                if (now < due) {
                    if (due < wake)
                        wake = due;
                    break;
                }
            }
            if (o->file) {
                rc = fill_from_file(s, n, &got, &len);
                if (rc < 0)
                    goto out;
                if (got == 0) {
                    gen_done = true;
                    break;
                }
                n = got;
            } else {
                len = fill_generated(s, n);
            }
            /* Written before the last batch leaves, as in plain mode. */
            if (o->expected && gen + n == total) {
                rc = write_expected(s);
                if (rc < 0)
                    goto out;
                expected_written = true;
            }
            if (s->save_fd >= 0) {
                rc = tools_write_all(s->save_fd, s->buf, len);
                if (rc < 0) {
                    tools_log(PROG, "cannot write %s: %s", o->save, strerror(-rc));
                    goto out;
                }
            }
            rc = stream_append(st, s->buf, len, n);
            if (rc < 0) {
                tools_log(PROG, "stream %s: out of memory for %" PRIu64 " unacknowledged messages",
                          st->name, st->end - st->base + n);
                goto out;
            }
            gen += n;
            bytes += len;
            gi = gi + 1 == s->nstreams ? 0 : gi + 1;
            if (gen == total)
                gen_done = true;
            if (st->state == ST_STREAMING)
                stream_flush(s, st);
            if (rounds + 1 == s->nstreams)
                wake = now; /* more to generate at once */
        }
        /* A file that ran out before --messages: nothing more will come. */
        if (o->file && !gen_done && !o->repeat && s->src.pos == s->src.size && started)
            gen_done = true;

        if (started && gen_done) {
            done = true;
            for (k = 0; k < s->nstreams && done; k++)
                done = s->streams[k].base == s->streams[k].end;
            if (done)
                break;
        }

        if (started && !o->quiet && now >= next_progress) {
            progress_resumable(s, &prog_sent, &prog_acked, &prog_t, now);
            next_progress = now + NS_PER_S;
        }
        if (started && !o->quiet && next_progress < wake)
            wake = next_progress;

        for (k = 0; k < s->nstreams; k++) {
            rc = stream_timers(s, &s->streams[k], now, &wake);
            if (rc < 0)
                goto out;
        }

        np = 0;
        for (k = 0; k < s->nstreams; k++) {
            st = &s->streams[k];
            if (st->fd < 0)
                continue;
            pfds[np].fd = st->fd;
            pfds[np].revents = 0;
            if (st->state == ST_CONNECTING)
                pfds[np].events = POLLOUT;
            else if (st->hello_off < st->hello_len ||
                     (st->state == ST_STREAMING && st->wr_pos + st->wr_off < st->len))
                pfds[np].events = POLLIN | POLLOUT;
            else
                pfds[np].events = POLLIN;
            pidx[np++] = k;
        }
        now = tools_now_ns();
        if (wake == UINT64_MAX)
            timeout = 1000;
        else if (wake <= now)
            timeout = 0;
        else
            timeout = (int)((wake - now + 999999) / 1000000);
        if (timeout > 1000)
            timeout = 1000;
        if (poll(pfds, np, timeout) < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            tools_log(PROG, "poll: %s", strerror(errno));
            goto out;
        }
        for (k = 0; k < np; k++) {
            short re = pfds[k].revents;

            st = &s->streams[pidx[k]];
            if (!re || st->fd != pfds[k].fd)
                continue;
            if (st->state == ST_CONNECTING) {
                stream_connect_done(s, st, 0);
                continue;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                rc = stream_read(s, st);
                if (rc < 0)
                    goto out;
            }
            if (st->fd == pfds[k].fd && (st->state == ST_HANDSHAKE || st->state == ST_STREAMING))
                stream_flush(s, st);
        }
    }
    /* Everything is acknowledged: close cleanly. */
    for (k = 0; k < s->nstreams; k++) {
        st = &s->streams[k];
        if (st->fd >= 0)
            shutdown(st->fd, SHUT_WR);
        stream_close(st);
    }
    if (o->expected && !expected_written) {
        rc = write_expected(s);
        if (rc < 0)
            goto out;
    }
    *sent_out = gen;
    *bytes_out = bytes;
    *t0_out = t0;
    rc = 0;
out:
    free(pfds);
    free(pidx);
    return rc;
}

int main(int argc, char **argv)
{
    struct sender s;
    uint64_t sent = 0, bytes = 0, t0 = 0, t1;
    double secs;
    size_t i;
    int rc, status = 1;
    bool resumable;

    memset(&s, 0, sizeof(s));
    s.save_fd = -1;
    parse_args(argc, argv, &s.opt);
    /* --dry-run connects to nothing, so it is the same with or without --resumable. */
    resumable = s.opt.resumable && !s.opt.dry_run;
    signal(SIGPIPE, SIG_IGN);
    rng_seed(&s.src.rng, s.opt.seed);

    s.frame_len = 9; /* generated Alphabet votes; a file sets its own */
    if (s.opt.file && load_file(&s) < 0)
        goto out;
    if (resumable) {
        /* Opens --save itself, once every stream has been welcomed. */
        if (send_resumable(&s, &sent, &bytes, &t0) < 0)
            goto out;
    } else {
        if (!s.opt.dry_run && connect_all(&s) < 0)
            goto out;
        /* Created only once connected, so a run that never started leaves an old file alone. */
        if (s.opt.save) {
            s.save_fd = open(s.opt.save, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (s.save_fd < 0) {
                tools_log(PROG, "cannot create %s: %s", s.opt.save, strerror(errno));
                goto out;
            }
        }
        rc = send_all(&s, &sent, &bytes, &t0);
        if (rc < 0)
            goto out;
        if (finish_conns(&s) < 0)
            goto out;
    }
    if (s.save_fd >= 0) {
        if (close(s.save_fd) < 0) {
            s.save_fd = -1;
            tools_log(PROG, "cannot write %s: %s", s.opt.save, strerror(errno));
            goto out;
        }
        s.save_fd = -1;
    }
    t1 = tools_now_ns();
    secs = (double)(t1 - t0) / 1e9;
    if (resumable)
        tools_log(PROG,
                  "messages=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate=%.0f msgs/s "
                  "reconnects=%" PRIu64 " resent=%" PRIu64,
                  sent, bytes, secs, secs > 0 ? (double)sent / secs : 0.0, s.reconnects, s.resent);
    else
        tools_log(PROG, "messages=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate=%.0f msgs/s",
                  sent, bytes, secs, secs > 0 ? (double)sent / secs : 0.0);
    status = 0;
out:
    if (s.conns) {
        for (i = 0; i < s.nconns; i++)
            if (s.conns[i].fd >= 0)
                close(s.conns[i].fd);
        free(s.conns);
    }
    streams_free(&s);
    if (s.save_fd >= 0)
        close(s.save_fd);
    free((void *)s.src.data);
    free(s.buf);
    return status;
}
