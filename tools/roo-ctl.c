/* roo-ctl: operator tool: ask a worker's --external address for the cluster's status (once,
 * live with top, or as Prometheus targets), read committed state, shrink the cluster or stop
 * it cleanly. Every answer is JSON, read with jansson; roo-ctl prints it as it came (or
 * merged, for query) or as a table. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "net/auth.h"
#include "net/net.h"
#include "roo-ctl.h"
#include "wire/wire.h"

static void usage(FILE *f)
{
    fputs("usage: roo-ctl --external HOST:PORT[,HOST:PORT...] [options] COMMAND [ARGS]\n"
          "\n"
          "Talks to any worker of a roo cluster through its --external address. Given several\n"
          "addresses (like a Kafka client's bootstrap list), it asks them in turn until one\n"
          "answers, so a worker that is down or restarting does not stop the command.\n"
          "\n"
          "Commands:\n"
          "  status          print the cluster's status: workers, their addresses, partitions,\n"
          "                  ready or not, per-worker message counts and rates, version,\n"
          "                  uptime, sinks connected, held and undelivered output, errors,\n"
          "                  end-to-end latency (p50, p99), metrics address, the partition table\n"
          "  top             a live view, one row per worker, refreshed every --interval\n"
          "                  seconds: state, in/s, out/s, p50 and p99 latency of the time since\n"
          "                  the last refresh (the first: since each worker started), sinks,\n"
          "                  held and undelivered bytes, link backlog, errors; until Ctrl-C\n"
          "                  or --count refreshes (a terminal is redrawn, anything else gets\n"
          "                  one block per refresh)\n"
          "  targets         print Prometheus file_sd JSON: every worker's --metrics address\n"
          "                  with the labels worker, cluster and application (and --label's)\n"
          "  query [KEY...]  print committed state values: every key, read from every worker,\n"
          "                  or the given keys, each read from the worker that owns it (found\n"
          "                  in the status's partition table; each needs an --external address)\n"
          "  shutdown        stop the whole cluster cleanly: sources close, in-flight messages\n"
          "                  finish, state is committed, output delivered; every worker exits 0\n"
          "  shrink          remove workers from the running cluster: their partitions move to\n"
          "                  the others, then they exit and delete their resilience directories;\n"
          "                  waits until the move is done (asks the initializer, found through\n"
          "                  any worker); if the connection breaks it asks again (the same\n"
          "                  shrink --workers asked twice is one shrink) until --timeout\n"
          "  move --abort    give up the partition move under way (a grow or shrink waiting on a\n"
          "                  worker that is gone) while it is in its pre-copy: the table stays\n"
          "                  as it was and workers it was adding are refused; past the pre-copy\n"
          "                  the move cannot be undone and finishes when those workers report\n"
          "\n"
          "Options:\n"
          "  -e, --external ADDRS  the workers to ask, in order (required): HOST:PORT, or a\n"
          "                        comma-separated list\n"
          "  -f, --format FORMAT   json (the default: the answer as JSON, for scripts) or table\n"
          "                        (status: one row per worker; query: KEY and VALUE columns,\n"
          "                        the value as JSON; shutdown and shrink: NAME VALUE lines)\n"
          "  -t, --timeout SECS    give up after SECS seconds (default 10)\n"
          "  -w, --wait-ready SECS with status: ask again until the cluster reports ready, for at\n"
          "                        most SECS seconds (exit 1 if it never does)\n"
          "  -k, --secret FILE     the cluster secret (the workers' --cluster-secret); without\n"
          "                        it only a cluster without one answers\n"
          "  -s, --state NAME      with query: the state type (default: the application's first)\n"
          "      --workers A,B     with shrink: the workers to remove, by --name\n"
          "      --count N         with shrink: remove N workers (the most recently added);\n"
          "                        with top: stop after N refreshes\n"
          "  -i, --interval SECS   with top: seconds between refreshes (default 1)\n"
          "  -l, --label K=V       with targets: add the label K=V to every target (repeat it\n"
          "                        for more; worker, cluster and application may be replaced)\n"
          "      --query           with shrink: only print which workers could leave\n"
          "      --abort           with move: abort the move under way\n"
          "  -h, --help            this text\n"
          "  -V, --version         print the version\n"
          "\n"
          "Exit status: 0 ok, 1 a worker could not be reached or said no (query: a worker\n"
          "whose keys are asked for did not answer), 2 usage error.\n",
          f);
}

int64_t ctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for events until deadline; 0 ok, -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int64_t left = deadline - ctl_now_ms();
        int n;
        if (left <= 0)
            return -ETIMEDOUT;
        n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

#define CONNECT_MS 3000 /* per address: a host that does not answer is skipped */

/* The cluster secret's key (--secret), or the key of no secret. */
static roo__auth_key auth_key;

static int send_all(int fd, const uint8_t *p, size_t len, int64_t deadline)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = send(fd, p + off, len - off, MSG_NOSIGNAL);
        if (n < 0) {
            int rc;
            if (errno != EAGAIN && errno != EINTR)
                return -errno;
            rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        off += (size_t)n;
    }
    return 0;
}

/* Read one whole frame (at most max bytes) into in; its payload is in->data + 4. */
static int recv_frame(int fd, roo__buf *in, size_t max, int64_t deadline, uint32_t *ret_len)
{
    for (;;) {
        ssize_t n;
        int rc;
        if (in->len >= 4) {
            uint32_t len = roo__load_be32(in->data);
            if (len > max)
                return ROO_EWIRE;
            if (in->len >= 4 + (size_t)len) {
                *ret_len = len;
                return 0;
            }
        }
        rc = wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
        roo__buf_reserve(in, 65536);
        n = recv(fd, in->data + in->len, 65536, 0);
        if (n == 0)
            return ROO_ECLOSED;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -errno;
        }
        in->len += (size_t)n;
    }
}

/* The handshake every external connection opens with (src/net/auth.h). */
static int handshake(int fd, int64_t deadline)
{
    roo__auth a = { .key = &auth_key, .channel = ROO__CHANNEL_EXTERNAL };
    uint8_t frame[4 + ROO__AUTH_REPLY_LEN], proof[ROO__AUTH_PROOF_LEN];
    roo__buf in = { 0 };
    uint32_t len = 0;
    int rc;

    roo__store_be32(frame, ROO__AUTH_HELLO_LEN);
    roo__auth_client_hello(&a, frame + 4);
    rc = send_all(fd, frame, 4 + ROO__AUTH_HELLO_LEN, deadline);
    if (rc == 0)
        rc = recv_frame(fd, &in, ROO__AUTH_FRAME_MAX, deadline, &len);
    if (rc == 0)
        rc = roo__auth_client_proof(&a, in.data + 4, len, proof);
    if (rc == 0 && in.len != 4 + (size_t)len)
        rc = ROO_EWIRE; /* the server said more than its proof */
    if (rc == 0) {
        roo__store_be32(frame, ROO__AUTH_PROOF_LEN);
        memcpy(frame + 4, proof, sizeof(proof));
        rc = send_all(fd, frame, 4 + ROO__AUTH_PROOF_LEN, deadline);
    }
    roo__buf_finish(&in);
    if (rc == ROO_ECLOSED)
        rc = ROO_EAUTH; /* a worker closes a connection that does not prove its secret */
    return rc;
}

/*
 * One request, one reply. A negative result means no answer (could not connect, the
 * connection broke, timed out); a worker's "no" is *ret_ok false with *ret_error. sent (if
 * not NULL) says whether the whole request left: the worker may have acted on it.
 */
static int request_sent(const roo__addr *a, const roo__ext_request *req, int64_t deadline,
                        bool *ret_ok, char **ret_json, char **ret_error, bool *sent)
{
    roo__buf out = { 0 }, in = { 0 };
    uint32_t len = 0;
    int fd, rc;

    if (sent)
        *sent = false;
    rc = roo__tcp_connect_start(a, &fd);
    if (rc < 0)
        return rc;
    rc = wait_fd(fd, POLLOUT, ROO__MIN(deadline, ctl_now_ms() + CONNECT_MS));
    if (rc == 0)
        rc = roo__tcp_connect_result(fd);
    if (rc == 0)
        rc = handshake(fd, deadline);
    if (rc < 0)
        goto out;
    roo__wire_ext_request_encode(req, &out);
    rc = send_all(fd, out.data, out.len, deadline);
    if (rc < 0)
        goto out;
    if (sent)
        *sent = true;
    rc = recv_frame(fd, &in, ROO__EXTERNAL_FRAME_MAX, deadline, &len);
    if (rc == 0)
        rc = roo__wire_ext_reply_decode(in.data + 4, len, ret_ok, ret_json, ret_error);
out:
    close(fd);
    roo__buf_finish(&out);
    roo__buf_finish(&in);
    return rc;
}

int ctl_request(const roo__addr *a, const roo__ext_request *req, int64_t deadline, bool *ret_ok,
                char **ret_json, char **ret_error)
{
    return request_sent(a, req, deadline, ret_ok, ret_json, ret_error, NULL);
}

const char *ctl_addr_text(const roo__addr *a)
{
    static char buf[300];
    return roo__addr_str(a, buf, sizeof(buf));
}

int ctl_parse_answer(const char *text, const char *who, json_t **ret_doc)
{
    json_error_t err;
    json_t *doc = json_loads(text ? text : "", 0, &err);

    if (!doc) {
        fprintf(stderr, "roo-ctl: %s: the answer is not JSON: %s (line %d)\n", who, err.text,
                err.line);
        return ROO_EWIRE;
    }
    *ret_doc = doc;
    return 0;
}

int ctl_ask_any(const targets *t, const roo__ext_request *req, int64_t deadline, bool quiet,
                bool *ret_ok, char **ret_json, char **ret_error, size_t *ret_who)
{
    int rcs[64], rc = -ENOENT;
    size_t n = ROO__MIN(t->n, ROO__ARRAY_SIZE(rcs));

    for (size_t i = 0; i < n; i++) {
        rc = rcs[i] = ctl_request(&t->addrs[i], req, deadline, ret_ok, ret_json, ret_error);
        if (rc == 0) {
            *ret_who = i;
            return 0;
        }
    }
    for (size_t i = 0; i < n && !quiet; i++)
        fprintf(stderr, "roo-ctl: %s: %s%s\n", ctl_addr_text(&t->addrs[i]), roo_strerror(rcs[i]),
                rcs[i] == ROO_EAUTH ? " (give roo-ctl the workers' secret: --secret FILE)" : "");
    return rc;
}

/* An answer as --format says: its JSON as it came, or a table of it. */
static void print_answer(const char *text, const json_t *doc, ctl_format format, bool status)
{
    if (format == CTL_JSON)
        fputs(text, stdout);
    else if (status)
        ctl_print_status_table(doc, stdout);
    else
        ctl_print_members_table(doc, stdout);
}

/*
 * shrink and move --abort: only the initializer moves partitions; any worker names it. The same shrink asked
 * again is the same shrink (the initializer attaches to the move under way, or answers that
 * the workers already left), so a broken connection is simply asked again, of every target
 * in turn, until the timeout: a worker that is killed or restarting does not lose it. Only
 * --workers names the same workers twice; a --count shrink is asked again only if it never
 * left.
 */
static int shrink(const targets *t, const roo__ext_request *req, ctl_format format)
{
    int64_t deadline = ctl_now_ms() + (int64_t)t->timeout_s * 1000;
    roo__addr init;
    bool have_init = false;
    int rc = 0;

    for (;;) {
        for (size_t i = 0; i <= t->n; i++) {
            const roo__addr *a = i == 0 ? (have_init ? &init : NULL) : &t->addrs[i - 1];
            bool ok = false, sent = false;
            char *text = NULL, *error = NULL;
            json_t *doc = NULL;
            const char *init_ext;
            if (!a)
                continue;
            rc = request_sent(a, req, deadline, &ok, &text, &error, &sent);
            /* A "no" may say more in its JSON: a worker names the initializer there. */
            if (rc == 0 && (ok || (text && text[0])) &&
                ctl_parse_answer(text, ctl_addr_text(a), &doc) < 0) {
                free(text);
                free(error);
                return 1;
            }
            if (rc == 0 && ok) {
                print_answer(text, doc, format, false);
                json_decref(doc);
                free(text);
                free(error);
                return 0;
            }
            init_ext = json_string_value(json_object_get(doc, "initializer_external"));
            if (rc == 0 && init_ext && roo__addr_parse(init_ext, &init) == 0) {
                /* Asked another worker: it named the initializer's --external address. */
                have_init = true;
                json_decref(doc);
                free(text);
                free(error);
                i = (size_t)-1; /* ask it next */
                continue;
            }
            json_decref(doc);
            free(text);
            if (rc == 0) {
                fprintf(stderr, "roo-ctl: %s said no: %s\n", ctl_addr_text(a), error ? error : "");
                free(error);
                return 1;
            }
            free(error);
            if (sent && req->cmd == ROO__EXT_MOVE_ABORT) {
                fprintf(stderr,
                        "roo-ctl: %s: %s after the abort was sent; see roo-ctl status for "
                        "whether the move is still under way\n",
                        ctl_addr_text(a), roo_strerror(rc));
                return 1;
            }
            if (sent && !req->nworkers && !req->dry_run) {
                /* --count N names no one: asked again after the first took effect, it would
                 * remove N more workers. */
                fprintf(stderr,
                        "roo-ctl: %s: %s after the shrink was sent; it may be under way: see "
                        "roo-ctl status, or name the workers with --workers to ask again safely\n",
                        ctl_addr_text(a), roo_strerror(rc));
                return 1;
            }
        }
        if (ctl_now_ms() >= deadline) {
            fprintf(stderr, "roo-ctl: no worker answered the %s within %llu s (last: %s)\n",
                    req->cmd == ROO__EXT_MOVE_ABORT ? "abort" : "shrink",
                    (unsigned long long)t->timeout_s, roo_strerror(rc));
            return 1;
        }
        usleep(200 * 1000);
    }
}

/* status (optionally until ready) and shutdown: the first worker that answers. */
static int ask(const targets *t, const roo__ext_request *req, uint64_t wait_ready,
               ctl_format format)
{
    int64_t end_wait = ctl_now_ms() + (int64_t)wait_ready * 1000;

    for (;;) {
        bool ok = false, ready = false;
        char *text = NULL, *error = NULL;
        json_t *doc = NULL;
        size_t who = 0;
        /* While waiting for ready, workers not listening yet are expected: say nothing. */
        bool waiting = wait_ready && ctl_now_ms() < end_wait;
        int rc = ctl_ask_any(t, req, ctl_now_ms() + (int64_t)t->timeout_s * 1000, waiting, &ok,
                             &text, &error, &who);

        if (rc == 0 && ok)
            rc = ctl_parse_answer(text, ctl_addr_text(&t->addrs[who]), &doc);
        ready = doc && json_is_true(json_object_get(doc, "ready"));
        if (waiting && !ready && ctl_now_ms() < end_wait) {
            json_decref(doc);
            free(text);
            free(error);
            usleep(100 * 1000);
            continue;
        }
        if (rc == ROO_EWIRE)
            return 1; /* said why */
        if (rc < 0 && waiting)
            continue; /* the wait just ended: once more, saying why */
        if (rc < 0)
            return 1;
        if (!ok) {
            fprintf(stderr, "roo-ctl: %s said no: %s\n", ctl_addr_text(&t->addrs[who]), error);
            free(text);
            free(error);
            return 1;
        }
        print_answer(text, doc, format, req->cmd == ROO__EXT_STATUS);
        json_decref(doc);
        free(text);
        free(error);
        if (wait_ready && !ready) {
            fprintf(stderr, "roo-ctl: the cluster did not report ready within %llu s\n",
                    (unsigned long long)wait_ready);
            return 1;
        }
        return 0;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "external", required_argument, NULL, 'e' },
        { "timeout", required_argument, NULL, 't' },
        { "wait-ready", required_argument, NULL, 'w' },
        { "state", required_argument, NULL, 's' },
        { "workers", required_argument, NULL, 'W' },
        { "count", required_argument, NULL, 'C' },
        { "query", no_argument, NULL, 'Q' },
        { "abort", no_argument, NULL, 'A' },
        { "secret", required_argument, NULL, 'k' },
        { "format", required_argument, NULL, 'f' },
        { "interval", required_argument, NULL, 'i' },
        { "label", required_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *ext = NULL, *state = "", *secret = NULL;
    char *workers = NULL;
    uint64_t timeout = 10, wait_ready = 0, count = 0, interval = 0;
    bool timeout_set = false, shrink_query = false, abort_move = false, format_set = false;
    bool top = false, list_targets = false; /* both ask for the status (req.cmd) */
    char *labels[64];                       /* --label: pointers into argv */
    size_t nlabels = 0;
    ctl_format format = CTL_JSON;
    roo__ext_request req = { 0 };
    targets t = { 0 };
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":e:t:w:s:W:C:QAk:f:i:l:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            ext = optarg;
            break;
        case 't':
            if (roo__parse_uint(optarg, 1, 3600, &timeout) < 0) {
                fprintf(stderr,
                        "roo-ctl: --timeout: '%s' is not a number of seconds in 1..3600 "
                        "(see --help)\n",
                        optarg);
                return 2;
            }
            timeout_set = true;
            break;
        case 'w':
            if (roo__parse_uint(optarg, 1, 3600, &wait_ready) < 0) {
                fprintf(stderr,
                        "roo-ctl: --wait-ready: '%s' is not a number of seconds in "
                        "1..3600 (see --help)\n",
                        optarg);
                return 2;
            }
            break;
        case 's':
            state = optarg;
            break;
        case 'W':
            workers = optarg;
            break;
        case 'C':
            /* Workers for shrink (at most 1024, checked with the command), refreshes for top. */
            if (roo__parse_uint(optarg, 1, 1000000000, &count) < 0) {
                fprintf(stderr,
                        "roo-ctl: --count: '%s' is not a number in 1..1024 (shrink) or "
                        "1..1000000000 (top) (see --help)\n",
                        optarg);
                return 2;
            }
            break;
        case 'i':
            if (roo__parse_uint(optarg, 1, 3600, &interval) < 0) {
                fprintf(stderr,
                        "roo-ctl: --interval: '%s' is not a number of seconds in 1..3600 "
                        "(see --help)\n",
                        optarg);
                return 2;
            }
            break;
        case 'l': {
            const char *eq = strchr(optarg, '=');
            if (!eq || !ctl_label_name_ok(optarg, (size_t)(eq - optarg))) {
                fprintf(stderr,
                        "roo-ctl: --label: '%s' is not K=V with K a Prometheus label name "
                        "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __) (see --help)\n",
                        optarg);
                return 2;
            }
            if (nlabels == ROO__ARRAY_SIZE(labels)) {
                fprintf(stderr, "roo-ctl: --label: at most %zu (see --help)\n",
                        ROO__ARRAY_SIZE(labels));
                return 2;
            }
            labels[nlabels++] = optarg;
            break;
        }
        case 'Q':
            shrink_query = true;
            break;
        case 'A':
            abort_move = true;
            break;
        case 'k':
            secret = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "json") == 0) {
                format = CTL_JSON;
            } else if (strcmp(optarg, "table") == 0) {
                format = CTL_TABLE;
            } else {
                fprintf(stderr, "roo-ctl: --format: '%s' is not json or table (see --help)\n",
                        optarg);
                return 2;
            }
            format_set = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("roo-ctl %s\n", ROO_VERSION_STRING);
            return 0;
        case ':':
            fprintf(stderr, "roo-ctl: option '%s' needs a value (see --help)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "roo-ctl: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "roo-ctl: give a command: status, top, targets, query, shutdown, shrink "
                        "or move (see --help)\n");
        return 2;
    }
    if (strcmp(argv[optind], "status") == 0) {
        req.cmd = ROO__EXT_STATUS;
    } else if (strcmp(argv[optind], "top") == 0) {
        req.cmd = ROO__EXT_STATUS;
        top = true;
    } else if (strcmp(argv[optind], "targets") == 0) {
        req.cmd = ROO__EXT_STATUS;
        list_targets = true;
    } else if (strcmp(argv[optind], "shutdown") == 0) {
        req.cmd = ROO__EXT_SHUTDOWN;
    } else if (strcmp(argv[optind], "query") == 0) {
        req.cmd = ROO__EXT_QUERY;
    } else if (strcmp(argv[optind], "shrink") == 0) {
        req.cmd = ROO__EXT_SHRINK;
    } else if (strcmp(argv[optind], "move") == 0) {
        req.cmd = ROO__EXT_MOVE_ABORT;
    } else {
        fprintf(stderr,
                "roo-ctl: unknown command '%s': use status, top, targets, query, shutdown, "
                "shrink or move (see --help)\n",
                argv[optind]);
        return 2;
    }
    /* Each option goes with its commands only: one given to another is surely a mistake. */
    if (!top && interval) {
        fprintf(stderr, "roo-ctl: --interval goes with top (see --help)\n");
        return 2;
    }
    if (!list_targets && nlabels) {
        fprintf(stderr, "roo-ctl: --label goes with targets (see --help)\n");
        return 2;
    }
    if ((top || list_targets) && (format_set || wait_ready)) {
        fprintf(stderr,
                "roo-ctl: %s has one format and does not wait (--format and "
                "--wait-ready go with status) (see --help)\n",
                argv[optind]);
        return 2;
    }
    if (req.cmd == ROO__EXT_SHRINK && count > 1024) {
        fprintf(stderr,
                "roo-ctl: --count: %llu is not a number of workers in 1..1024 (see "
                "--help)\n",
                (unsigned long long)count);
        return 2;
    }
    if ((req.cmd == ROO__EXT_MOVE_ABORT) != abort_move) {
        fprintf(stderr, "roo-ctl: %s (see --help)\n",
                abort_move ? "--abort goes with move" : "move needs --abort");
        return 2;
    }
    if (req.cmd != ROO__EXT_SHRINK && (workers || (count && !top) || shrink_query)) {
        fprintf(stderr, "roo-ctl: --workers, --count and --query go with shrink (--count also "
                        "with top) (see --help)\n");
        return 2;
    }
    if (req.cmd == ROO__EXT_SHRINK && !shrink_query && !workers == !count) {
        fprintf(stderr, "roo-ctl: shrink needs --workers A,B or --count N (or --query) (see "
                        "--help)\n");
        return 2;
    }
    if (req.cmd != ROO__EXT_QUERY && optind != argc - 1) {
        fprintf(stderr, "roo-ctl: '%s' takes no arguments (see --help)\n", argv[optind]);
        return 2;
    }
    if (!ext) {
        fprintf(stderr, "roo-ctl: --external HOST:PORT is required (see --help)\n");
        return 2;
    }
    if (roo__addr_list_parse(ext, &t.addrs, &t.n) < 0 || t.n == 0) {
        fprintf(stderr,
                "roo-ctl: --external: '%s' is not HOST:PORT or a comma-separated list of them "
                "(see --help)\n",
                ext);
        return 2;
    }
    if (wait_ready && req.cmd != ROO__EXT_STATUS) {
        fprintf(stderr, "roo-ctl: --wait-ready goes with status (see --help)\n");
        free(t.addrs);
        return 2;
    }
    if (secret) {
        char why[600] = "";
        bool loose = false;
        if (roo__auth_key_load(secret, &auth_key, &loose, why, sizeof(why)) < 0) {
            fprintf(stderr, "roo-ctl: %s\n", why);
            free(t.addrs);
            return 2;
        }
        if (loose)
            fprintf(stderr, "roo-ctl: warning: %s\n", why);
    } else {
        roo__auth_key_none(&auth_key);
    }
    if (req.cmd == ROO__EXT_SHRINK && !timeout_set && !shrink_query)
        timeout = 300; /* a move of a lot of state takes a while */
    t.timeout_s = timeout;

    if (req.cmd == ROO__EXT_QUERY) {
        int nk = argc - optind - 1;
        req.state = (char *)state;
        req.nkeys = (size_t)nk;
        req.keys = calloc(nk ? (size_t)nk : 1, sizeof(*req.keys));
        for (int i = 0; i < nk; i++)
            roo__buf_append(&req.keys[i], argv[optind + 1 + i], strlen(argv[optind + 1 + i]));
        rc = ctl_query(&t, &req, format);
        for (int i = 0; i < nk; i++)
            roo__buf_finish(&req.keys[i]);
        free(req.keys);
    } else if (req.cmd == ROO__EXT_MOVE_ABORT) {
        rc = shrink(&t, &req, format);
    } else if (req.cmd == ROO__EXT_SHRINK) {
        char *list = workers ? strdup(workers) : NULL, *tok, *rest = list;
        size_t n = 0;
        req.workers = calloc(1024, sizeof(char *));
        while (list && (tok = strsep(&rest, ",")) != NULL && n < 1024) {
            if (!*tok) {
                fprintf(stderr, "roo-ctl: --workers: empty name in '%s'\n", workers);
                free(list);
                free(req.workers);
                free(t.addrs);
                return 2;
            }
            req.workers[n++] = tok;
        }
        req.nworkers = n;
        req.count = (uint32_t)count;
        req.dry_run = shrink_query;
        rc = shrink(&t, &req, format);
        free(list);
        free(req.workers);
    } else if (top) {
        rc = ctl_top(&t, interval ? interval : 1, count);
    } else if (list_targets) {
        rc = ctl_targets(&t, labels, nlabels);
    } else {
        rc = ask(&t, &req, wait_ready, format);
    }
    free(t.addrs);
    return rc;
}
