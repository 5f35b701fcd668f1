/* roo-sender: a Giles-style load generator that sends Alphabet votes (or a framed file) to roo sources over TCP. */
#include "roo-sender.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "wire/wire.h" /* ROO__STREAM_NAME_MAX */

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

int sender_ensure_buf(struct sender *s, size_t need)
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
size_t sender_fill_generated(struct sender *s, uint64_t n)
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
int sender_fill_from_file(struct sender *s, uint64_t n, uint64_t *got, size_t *bytes)
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
        rc = sender_ensure_buf(s, used + run);
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
        rc = sender_ensure_buf(s, (size_t)per_batch * VOTE_BYTES);
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
            rc = sender_fill_from_file(s, n, &got, &len);
            if (rc < 0)
                return rc;
            if (got == 0)
                break;
            n = got;
        } else {
            len = sender_fill_generated(s, n);
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
