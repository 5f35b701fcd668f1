/* roo-receiver: a test sink that counts, saves and checks the records roo sinks send to it over
 * TCP; this file is its socket loop, record parsing, --output and main (the checks of Alphabet
 * outputs are in roo-receiver-check.c). */
#include "roo-receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_LISTEN "127.0.0.1:7002"
/* A full chunk means more is likely queued; read again before paying for another poll. */
#define READS_PER_WAKEUP 8
#define NS 1000000000ULL

/* The signal handler's only channel to the event loop. */
static volatile sig_atomic_t stop_signal;

static const char usage_text[] =
    "usage: roo-receiver [--listen HOST:PORT] [options]\n"
    "\n"
    "Accepts any number of TCP connections, counts the records that arrive and optionally\n"
    "saves and checks them (Alphabet outputs: u32 BE length=9 | letter | u64 BE running total).\n"
    "\n"
    "  --listen ADDR          listen address, HOST:PORT or [V6]:PORT; port 0 picks a free port\n"
    "                         (default " DEFAULT_LISTEN ")\n"
    "  --framed               records are u32 BE length-prefixed (default)\n"
    "  --newlines             records are newline-terminated lines\n"
    "  --input FILE           read records from FILE ('-' = stdin) instead of listening\n"
    "  --output FILE          append every whole record received to FILE as soon as it is read;\n"
    "                         records of different connections never interleave (default: none)\n"
    "  --expect N             stop after N records, suffixes k/M/G (x1000) allowed (default: no "
    "limit)\n"
    "  --idle-exit S          stop when no data arrived for S seconds after the first record\n"
    "                         (default: never)\n"
    "  --timeout S            fail (exit 1) if not stopped S seconds after start (default: none)\n"
    "  --alphabet-check FILE  check mode: 9-byte Alphabet outputs, per-letter totals never "
    "decrease,\n"
    "                         and at the stop each letter's last total equals FILE's and no "
    "letter\n"
    "                         missing from FILE appeared (JSON totals, read at the stop)\n"
    "  --votes FILE           with check mode: every output must be the next running sum of its\n"
    "                         letter's votes in FILE (framed votes in send order, e.g. roo-sender\n"
    "                         --save; read from the first output on, so it may still be growing)\n"
    "  --at-least-once        with --votes: an output may also repeat an earlier running sum\n"
    "                         (counted as a duplicate)\n"
    "  --allow-repeats        with check mode: a total below the letter's highest total so far\n"
    "                         is accepted if the letter already had exactly that total (a\n"
    "                         restarted worker sending again; counted as a duplicate); the\n"
    "                         final comparison and --print-totals use the highest total\n"
    "  --quiet                no progress lines\n"
    "  --print-totals         with check mode: at the stop, print each letter's last total on\n"
    "                         stdout as JSON, the shape of roo-sender --expected\n"
    "  -h, --help             this text\n"
    "  -V, --version          print the version\n"
    "\n"
    "SIGINT/SIGTERM stop like --expect. Exit status: 0 stopped cleanly and every check passed,\n"
    "1 a check failed, the timeout expired or an I/O error occurred, 2 usage error.\n";

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    struct tools_flag f;
    const char *v;
    int i;

    o->listen = DEFAULT_LISTEN;
    for (i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-", 1) != 0 || tools_flag_split(argv[i], &f) < 0)
            tools_usage_error(PROG, "unexpected argument '%s'", argv[i]);
        if (!strcmp(f.name, "--help") || !strcmp(f.name, "-h")) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (!strcmp(f.name, "--version") || !strcmp(f.name, "-V")) {
            printf("%s %s\n", PROG, TOOLS_VERSION);
            exit(0);
        } else if (!strcmp(f.name, "--listen")) {
            char host[256], port[16];

            o->listen = tools_flag_value(PROG, &f, argc, argv, &i);
            o->listen_set = true;
            if (tools_split_hostport(o->listen, host, sizeof(host), port, sizeof(port)) < 0)
                tools_usage_error(PROG,
                                  "--listen: bad address '%s' (expected HOST:PORT or [V6]:PORT)",
                                  o->listen);
        } else if (!strcmp(f.name, "--framed")) {
            tools_flag_no_value(PROG, &f);
            o->framed_set = true;
        } else if (!strcmp(f.name, "--newlines")) {
            tools_flag_no_value(PROG, &f);
            o->newlines = true;
        } else if (!strcmp(f.name, "--input")) {
            o->input = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->input)
                tools_usage_error(PROG, "--input needs a file name");
        } else if (!strcmp(f.name, "--output")) {
            o->output = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->output)
                tools_usage_error(PROG, "--output needs a file name");
        } else if (!strcmp(f.name, "--expect")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_count(v, &o->expect) < 0)
                tools_usage_error(PROG, "--expect: bad count '%s'", v);
            o->expect_set = true;
        } else if (!strcmp(f.name, "--idle-exit")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_seconds(v, &o->idle_exit) < 0)
                tools_usage_error(PROG, "--idle-exit: bad number of seconds '%s'", v);
            o->idle_set = true;
        } else if (!strcmp(f.name, "--timeout")) {
            v = tools_flag_value(PROG, &f, argc, argv, &i);
            if (tools_parse_seconds(v, &o->timeout) < 0)
                tools_usage_error(PROG, "--timeout: bad number of seconds '%s'", v);
            o->timeout_set = true;
        } else if (!strcmp(f.name, "--alphabet-check")) {
            o->check_file = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->check_file)
                tools_usage_error(PROG, "--alphabet-check needs a file name");
        } else if (!strcmp(f.name, "--votes")) {
            o->votes_file = tools_flag_value(PROG, &f, argc, argv, &i);
            if (!*o->votes_file)
                tools_usage_error(PROG, "--votes needs a file name");
        } else if (!strcmp(f.name, "--at-least-once")) {
            tools_flag_no_value(PROG, &f);
            o->at_least_once = true;
        } else if (!strcmp(f.name, "--allow-repeats")) {
            tools_flag_no_value(PROG, &f);
            o->allow_repeats = true;
        } else if (!strcmp(f.name, "--quiet")) {
            tools_flag_no_value(PROG, &f);
            o->quiet = true;
        } else if (!strcmp(f.name, "--print-totals")) {
            tools_flag_no_value(PROG, &f);
            o->print_totals = true;
        } else {
            tools_usage_error(PROG, "unknown option '%s'", f.name);
        }
    }
    if (o->framed_set && o->newlines)
        tools_usage_error(PROG, "--framed and --newlines exclude each other");
    if (o->input && o->listen_set)
        tools_usage_error(PROG, "--input and --listen exclude each other");
    if (o->check_file && o->newlines)
        tools_usage_error(PROG, "--alphabet-check needs framed records, not --newlines");
    if (o->votes_file && !o->check_file)
        tools_usage_error(PROG, "--votes needs --alphabet-check");
    if (o->at_least_once && !o->votes_file)
        tools_usage_error(PROG, "--at-least-once needs --votes");
    if (o->allow_repeats && !o->check_file)
        tools_usage_error(PROG, "--allow-repeats needs --alphabet-check");
    if (o->print_totals && !o->check_file)
        tools_usage_error(PROG, "--print-totals needs --alphabet-check");
}

/* Only the first failure is kept: it is the one that explains the rest. */
void rx_fail(struct rx *rx, const char *fmt, ...)
{
    va_list ap;

    if (rx->failed)
        return;
    rx->failed = true;
    va_start(ap, fmt);
    vsnprintf(rx->reason, sizeof(rx->reason), fmt, ap);
    va_end(ap);
}

static void count_one(struct rx *rx)
{
    rx->records++;
    if (rx->opt.expect_set && rx->records >= rx->opt.expect)
        rx->stop = true;
}

/* The hot loop: whole records inside one chunk, parsed in place. */
static const uint8_t *parse_run(struct rx *rx, const struct conn *c, const uint8_t *p,
                                const uint8_t *end)
{
    uint64_t limit = rx->opt.expect_set ? rx->opt.expect - rx->records : UINT64_MAX;
    uint64_t cnt = 0;
    uint32_t len;

    if (rx->check) {
        while (end - p >= 4) {
            len = tools_load_be32(p);
            if ((size_t)(end - p) - 4 < len)
                break;
            rx_check_record(rx, c, p + 4, len, rx->records + cnt + 1);
            p += 4 + (size_t)len;
            if (++cnt == limit) {
                rx->stop = true;
                break;
            }
        }
    } else {
        while (end - p >= 4) {
            len = tools_load_be32(p);
            if ((size_t)(end - p) - 4 < len)
                break;
            p += 4 + (size_t)len;
            if (++cnt == limit) {
                rx->stop = true;
                break;
            }
        }
    }
    rx->records += cnt;
    return p;
}

static void feed_framed(struct rx *rx, struct conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    size_t take, rem;
    uint32_t len;

    /* First finish whatever record the previous read of this connection left open. */
    while (p < end && (c->skip || c->carry_len)) {
        if (c->skip) {
            take = c->skip < (uint64_t)(end - p) ? (size_t)c->skip : (size_t)(end - p);
            p += take;
            c->skip -= take;
            if (!c->skip) {
                count_one(rx);
                if (rx->stop)
                    return;
            }
            continue;
        }
        if (c->carry_len < 4) {
            take = 4 - c->carry_len;
            if (take > (size_t)(end - p))
                take = (size_t)(end - p);
            memcpy(c->carry + c->carry_len, p, take);
            c->carry_len += (uint32_t)take;
            p += take;
            if (c->carry_len < 4)
                return;
        }
        len = tools_load_be32(c->carry);
        if (len > CARRY_PAYLOAD_MAX) {
            /* Too long to be anything we inspect: judge it by its length, skip the body. */
            if (rx->check)
                rx_check_record(rx, c, NULL, len, rx->records + 1);
            c->skip = len;
            c->carry_len = 0;
            continue;
        }
        take = 4 + len - c->carry_len;
        if (take > (size_t)(end - p))
            take = (size_t)(end - p);
        memcpy(c->carry + c->carry_len, p, take);
        c->carry_len += (uint32_t)take;
        p += take;
        if (c->carry_len < 4 + len)
            return;
        c->carry_len = 0;
        if (rx->check)
            rx_check_record(rx, c, c->carry + 4, len, rx->records + 1);
        count_one(rx);
        if (rx->stop)
            return;
    }
    if (p == end)
        return;
    p = parse_run(rx, c, p, end);
    if (rx->stop)
        return;
    rem = (size_t)(end - p);
    if (rem >= 4 && (len = tools_load_be32(p)) > CARRY_PAYLOAD_MAX) {
        if (rx->check)
            rx_check_record(rx, c, NULL, len, rx->records + 1);
        c->skip = len - (rem - 4);
        return;
    }
    memcpy(c->carry, p, rem);
    c->carry_len = (uint32_t)rem;
}

static void feed_lines(struct rx *rx, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n, *q;
    uint64_t limit = rx->opt.expect_set ? rx->opt.expect - rx->records : UINT64_MAX;
    uint64_t cnt = 0;

    while (p < end && (q = memchr(p, '\n', (size_t)(end - p)))) {
        p = q + 1;
        if (++cnt == limit) {
            rx->stop = true;
            break;
        }
    }
    rx->records += cnt;
}

static int open_listener(const char *addr, int *fd_out)
{
    char err[512], name[TOOLS_ADDR_STRLEN];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct addrinfo *res = NULL, *ai;
    int fd = -1, one = 1, rc;

    rc = tools_resolve(addr, true, &res, err, sizeof(err));
    if (rc < 0) {
        tools_log(PROG, "%s", err);
        return rc;
    }
    rc = -EADDRNOTAVAIL;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        tools_log(PROG, "cannot listen on %s: %s", addr, strerror(-rc));
        return rc;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        rc = -errno;
        tools_log(PROG, "getsockname: %s", strerror(errno));
        close(fd);
        return rc;
    }
    tools_format_addr((struct sockaddr *)&ss, sl, name, sizeof(name));
    tools_log(PROG, "listening on %s", name);
    *fd_out = fd;
    return 0;
}

/* The poll set: slot 0 is the listener (or --input), slots 1.. mirror conns[]. */
struct loop {
    struct pollfd *pfds;
    struct conn **conns;
    size_t n;
    size_t cap;
};

static int loop_add(struct loop *lp, int fd, struct conn *c)
{
    if (lp->n == lp->cap) {
        size_t cap = lp->cap ? lp->cap * 2 : 16;
        struct pollfd *np = realloc(lp->pfds, cap * sizeof(*np));
        struct conn **nc;

        if (!np)
            return -ENOMEM;
        lp->pfds = np;
        nc = realloc(lp->conns, cap * sizeof(*nc));
        if (!nc)
            return -ENOMEM;
        lp->conns = nc;
        lp->cap = cap;
    }
    lp->pfds[lp->n].fd = fd;
    lp->pfds[lp->n].events = POLLIN;
    lp->pfds[lp->n].revents = 0;
    lp->conns[lp->n] = c;
    lp->n++;
    return 0;
}

static void close_conn(struct rx *rx, struct conn *c, const char *why)
{
    if (!rx->opt.quiet) {
        if (c->carry_len || c->skip)
            tools_log(PROG, "%s %u %s in the middle of a record (the partial record is dropped)",
                      rx->opt.input ? "input" : "connection", c->id, why);
        else if (!rx->opt.input)
            tools_log(PROG, "connection %u %s", c->id, why);
    }
    close(c->fd);
    free(c->otail);
    free(c);
}

/* Length of the longest prefix of p[0..n) made of whole records. */
static size_t whole_records(const struct rx *rx, const uint8_t *p, size_t n)
{
    size_t off = 0;

    if (rx->opt.newlines) {
        const uint8_t *q = n ? memrchr(p, '\n', n) : NULL;
        return q ? (size_t)(q - p) + 1 : 0;
    }
    while (n - off >= 4) {
        uint64_t len = tools_load_be32(p + off);
        if (n - off - 4 < len)
            break;
        off += 4 + (size_t)len;
    }
    return off;
}

/*
 * --output: write this chunk's whole records now, keeping a record split across reads for
 * the next read of the same connection, so records of different connections never
 * interleave in the file and a receiver killed with kill -9 leaves every whole record it read.
 */
static int save_output(struct rx *rx, struct conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *data = p;
    size_t len = n, whole;
    int rc;

    if (c->otail_len) {
        if (c->otail_len + n > c->otail_cap) {
            size_t cap = (c->otail_len + n) * 2;
            uint8_t *t = realloc(c->otail, cap);
            if (!t)
                return -ENOMEM;
            c->otail = t;
            c->otail_cap = cap;
        }
        memcpy(c->otail + c->otail_len, p, n);
        c->otail_len += n;
        data = c->otail;
        len = c->otail_len;
    }
    whole = whole_records(rx, data, len);
    rc = whole ? tools_write_all(rx->out_fd, data, whole) : 0;
    if (rc < 0)
        return rc;
    if (whole < len) {
        size_t rest = len - whole;
        if (data == c->otail) {
            memmove(c->otail, c->otail + whole, rest);
        } else {
            if (rest > c->otail_cap) {
                uint8_t *t = realloc(c->otail, rest * 2);
                if (!t)
                    return -ENOMEM;
                c->otail = t;
                c->otail_cap = rest * 2;
            }
            memcpy(c->otail, data + whole, rest);
        }
    }
    c->otail_len = len - whole;
    return 0;
}

static void accept_all(struct rx *rx, struct loop *lp, int lfd)
{
    char name[TOOLS_ADDR_STRLEN];
    struct sockaddr_storage ss;
    socklen_t sl;
    struct conn *c;
    int fd;

    for (;;) {
        sl = sizeof(ss);
        fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                tools_log(PROG, "accept: %s", strerror(errno));
            return;
        }
        c = calloc(1, sizeof(*c));
        if (!c || loop_add(lp, fd, c) < 0) {
            tools_log(PROG, "out of memory accepting a connection");
            free(c);
            close(fd);
            return;
        }
        c->fd = fd;
        c->id = ++rx->connections;
        if (!rx->opt.quiet) {
            tools_format_addr((struct sockaddr *)&ss, sl, name, sizeof(name));
            tools_log(PROG, "connection %u from %s", c->id, name);
        }
    }
}

/* Returns 1 when the connection reached EOF or failed, 0 otherwise. */
static int read_conn(struct rx *rx, struct conn *c)
{
    uint64_t before, now;
    ssize_t n;
    int i, rc;

    for (i = 0; i < READS_PER_WAKEUP; i++) {
        n = read(c->fd, rx->buf, CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            if (!rx->opt.quiet || rx->opt.input)
                tools_log(PROG, "read from %s %u: %s", rx->opt.input ? "input" : "connection",
                          c->id, strerror(errno));
            if (rx->opt.input)
                rx->io_error = true;
            return 1;
        }
        if (n == 0)
            return 1;
        now = tools_now_ns();
        rx->bytes += (uint64_t)n;
        /* Saved before parsing, so a kill -9 leaves every whole record that was read. */
        if (rx->out_fd >= 0) {
            rc = save_output(rx, c, rx->buf, (size_t)n);
            if (rc < 0) {
                tools_log(PROG, "cannot write %s: %s", rx->opt.output, strerror(-rc));
                rx->io_error = true;
                rx->stop = true;
                return 0;
            }
        }
        before = rx->records;
        if (rx->opt.newlines)
            feed_lines(rx, rx->buf, (size_t)n);
        else
            feed_framed(rx, c, rx->buf, (size_t)n);
        if (rx->records != before) {
            if (!rx->first_ns)
                rx->first_ns = now;
            /* Taken after parsing so a single-chunk stream still measures its own work. */
            rx->last_ns = tools_now_ns();
        }
        if (rx->stop || (size_t)n < CHUNK)
            return 0;
    }
    return 0;
}

static void progress(struct rx *rx, uint64_t prev, double dt)
{
    char a[32], b[32];

    tools_format_si((double)rx->records, a, sizeof(a));
    tools_format_si(dt > 0 ? (double)(rx->records - prev) / dt : 0, b, sizeof(b));
    tools_log(PROG, "%s records, %s records/s", a, b);
}

static int run(struct rx *rx)
{
    struct loop lp = { 0 };
    struct timespec ts, *tsp;
    sigset_t block, orig;
    struct sigaction sa;
    uint64_t start, now, deadline, wake, next_progress, last_data = 0, prog_records = 0, prog_t;
    uint64_t seen_bytes = 0;
    bool input = rx->opt.input != NULL;
    struct conn *c;
    size_t i;
    int lfd = -1, rc, n;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the signal must break ppoll() out of its wait. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &orig);

    if (input) {
        c = calloc(1, sizeof(*c));
        if (!c) {
            rc = -ENOMEM;
            goto out;
        }
        c->id = 1;
        rx->connections = 1;
        if (!strcmp(rx->opt.input, "-")) {
            c->fd = STDIN_FILENO;
        } else {
            c->fd = open(rx->opt.input, O_RDONLY | O_CLOEXEC);
            if (c->fd < 0) {
                rc = -errno;
                tools_log(PROG, "cannot open %s: %s", rx->opt.input, strerror(errno));
                free(c);
                goto out;
            }
        }
        rc = loop_add(&lp, c->fd, c);
        if (rc < 0) {
            close_conn(rx, c, "closed");
            goto out;
        }
    } else {
        rc = open_listener(rx->opt.listen, &lfd);
        if (rc < 0)
            goto out;
        rc = loop_add(&lp, lfd, NULL);
        if (rc < 0)
            goto out;
    }

    start = tools_now_ns();
    prog_t = start;
    next_progress = start + NS;
    if (rx->opt.expect_set && rx->opt.expect == 0)
        rx->stop = true;
    while (!rx->stop) {
        now = tools_now_ns();
        wake = UINT64_MAX;
        if (rx->opt.timeout_set) {
            deadline = start + (uint64_t)(rx->opt.timeout * 1e9);
            if (now >= deadline) {
                rx->timed_out = true;
                break;
            }
            wake = deadline;
        }
        if (rx->opt.idle_set && rx->first_ns) {
            deadline = last_data + (uint64_t)(rx->opt.idle_exit * 1e9);
            if (now >= deadline)
                break;
            if (deadline < wake)
                wake = deadline;
        }
        if (!rx->opt.quiet) {
            if (now >= next_progress) {
                if (rx->records != prog_records)
                    progress(rx, prog_records, (double)(now - prog_t) / 1e9);
                prog_records = rx->records;
                prog_t = now;
                next_progress = now + NS;
            }
            if (next_progress < wake)
                wake = next_progress;
        }
        tsp = NULL;
        if (wake != UINT64_MAX) {
            uint64_t d = wake > now ? wake - now : 0;

            ts.tv_sec = (time_t)(d / NS);
            ts.tv_nsec = (long)(d % NS);
            tsp = &ts;
        }
        n = ppoll(lp.pfds, lp.n, tsp, &orig);
        if (stop_signal)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            tools_log(PROG, "poll: %s", strerror(errno));
            rx->io_error = true;
            goto out;
        }
        if (n == 0)
            continue;
        for (i = 0; i < lp.n && !rx->stop; i++) {
            if (!lp.pfds[i].revents)
                continue;
            c = lp.conns[i];
            if (!c) {
                accept_all(rx, &lp, lfd);
                continue;
            }
            if (read_conn(rx, c)) {
                close_conn(rx, c, "closed");
                lp.conns[i] = lp.conns[lp.n - 1];
                lp.pfds[i] = lp.pfds[lp.n - 1];
                lp.n--;
                i--;
                if (input)
                    rx->stop = true;
            }
        }
        if (rx->bytes != seen_bytes) {
            seen_bytes = rx->bytes;
            last_data = tools_now_ns();
        }
    }
    rc = 0;
out:
    for (i = 0; i < lp.n; i++) {
        if (lp.conns[i])
            close_conn(rx, lp.conns[i], "closed at stop");
        else
            close(lp.pfds[i].fd);
    }
    free(lp.pfds);
    free(lp.conns);
    sigprocmask(SIG_SETMASK, &orig, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    struct rx *rx;
    double secs;
    char verdict[600] = "";
    int i, status = 1, rc;

    rx = calloc(1, sizeof(*rx));
    if (!rx) {
        tools_log(PROG, "out of memory");
        return 1;
    }
    rx->out_fd = -1;
    rx->votes.fd = -1;
    parse_args(argc, argv, &rx->opt);
    rx->check = rx->opt.check_file != NULL;
    rx->use_votes = rx->opt.votes_file != NULL;
    rx->votes.path = rx->opt.votes_file;
    memset(rx->letter_idx, NO_LETTER, sizeof(rx->letter_idx));
    for (i = 0; i < 26; i++) {
        rx->letter_idx['a' + i] = (uint8_t)i;
        rx->letter_chr[i] = (uint8_t)('a' + i);
        rx->letter_idx['A' + i] = (uint8_t)(26 + i);
        rx->letter_chr[26 + i] = (uint8_t)('A' + i);
    }
    rx->buf = malloc(CHUNK);
    if (!rx->buf) {
        tools_log(PROG, "out of memory");
        goto out;
    }
    if (rx->opt.output) {
        rx->out_fd = open(rx->opt.output, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (rx->out_fd < 0) {
            tools_log(PROG, "cannot open %s: %s", rx->opt.output, strerror(errno));
            goto out;
        }
    }
    rc = run(rx);
    if (rc < 0)
        goto out;
    if (stop_signal && !rx->opt.quiet)
        tools_log(PROG, "stopping on signal %d", (int)stop_signal);
    rx_final_check(rx);
    if (rx->opt.print_totals)
        rx_print_totals(rx);
    if (rx->timed_out) {
        tools_log(PROG, "timed out after %g seconds", rx->opt.timeout);
        if (!rx->failed)
            rx_fail(rx, "timed out after %g seconds", rx->opt.timeout);
    }
    if (rx->check)
        snprintf(verdict, sizeof(verdict), " duplicates=%" PRIu64 " check: %s%s", rx->duplicates,
                 rx->failed ? "FAIL: " : "PASS", rx->failed ? rx->reason : "");
    secs = rx->last_ns > rx->first_ns ? (double)(rx->last_ns - rx->first_ns) / 1e9 : 0.0;
    tools_log(PROG,
              "records=%" PRIu64 " bytes=%" PRIu64 " connections=%u seconds=%.3f rate=%.0f/s%s",
              rx->records, rx->bytes, rx->connections, secs,
              secs > 0 ? (double)rx->records / secs : 0.0, verdict);
    status = rx->failed || rx->timed_out || rx->io_error ? 1 : 0;
out:
    if (rx->out_fd >= 0)
        close(rx->out_fd);
    if (rx->votes.fd >= 0)
        close(rx->votes.fd);
    rx_sums_free(&rx->votes);
    for (i = 0; i < NLETTERS; i++)
        rx_u64_array_free(rx->let[i].hist, rx->let[i].hcap);
    free(rx->votes.buf);
    free(rx->buf);
    free(rx);
    return status;
}
