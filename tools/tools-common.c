/* Implementation of the helpers shared by roo-sender and roo-receiver. */
#include "tools-common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int tools_flag_split(const char *arg, struct tools_flag *f)
{
    const char *eq;
    size_t n;

    f->inline_val = NULL;
    eq = strchr(arg, '=');
    n = eq ? (size_t)(eq - arg) : strlen(arg);
    if (n >= sizeof(f->buf))
        return -EINVAL;
    memcpy(f->buf, arg, n);
    f->buf[n] = '\0';
    f->name = f->buf;
    if (eq)
        f->inline_val = eq + 1;
    return 0;
}

const char *tools_flag_value(const char *prog, const struct tools_flag *f, int argc, char **argv,
                             int *i)
{
    if (f->inline_val)
        return f->inline_val;
    if (*i + 1 >= argc)
        tools_usage_error(prog, "%s needs a value", f->name);
    (*i)++;
    return argv[*i];
}

void tools_flag_no_value(const char *prog, const struct tools_flag *f)
{
    if (f->inline_val)
        tools_usage_error(prog, "%s takes no value", f->name);
}

int tools_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || !*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return -ERANGE;
    }
    *out = v;
    return 0;
}

static int suffix_multiplier(char c, uint64_t *mult)
{
    switch (c) {
    case 'k':
    case 'K':
        *mult = 1000ULL;
        return 0;
    case 'm':
    case 'M':
        *mult = 1000000ULL;
        return 0;
    case 'g':
    case 'G':
        *mult = 1000000000ULL;
        return 0;
    default:
        return -EINVAL;
    }
}

int tools_parse_count(const char *s, uint64_t *out)
{
    uint64_t ip = 0, frac = 0, fscale = 1, mult = 1, v;
    const char *p = s;
    bool digits = false;

    /* Integer arithmetic only: "1.5M" must be exactly 1500000, never 1499999. */
    if (!s)
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        digits = true;
        if (__builtin_mul_overflow(ip, 10, &ip) ||
            __builtin_add_overflow(ip, (uint64_t)(*p - '0'), &ip))
            return -ERANGE;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            digits = true;
            if (fscale >= 1000000000000ULL)
                return -EINVAL;
            frac = frac * 10 + (uint64_t)(*p - '0');
            fscale *= 10;
        }
    }
    if (!digits)
        return -EINVAL;
    if (*p) {
        if (suffix_multiplier(*p, &mult) < 0 || p[1])
            return -EINVAL;
    }
    if (__builtin_mul_overflow(ip, mult, &v))
        return -ERANGE;
    if (frac) {
        uint64_t f;

        if (__builtin_mul_overflow(frac, mult, &f) || f % fscale)
            return -EINVAL;
        if (__builtin_add_overflow(v, f / fscale, &v))
            return -ERANGE;
    }
    *out = v;
    return 0;
}

int tools_parse_rate(const char *s, double *out)
{
    char *end;
    double v;
    uint64_t mult = 1;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s)
        return -EINVAL;
    if (*end) {
        if (suffix_multiplier(*end, &mult) < 0 || end[1])
            return -EINVAL;
    }
    v *= (double)mult;
    if (!isfinite(v) || v < 0)
        return -EINVAL;
    *out = v;
    return 0;
}

int tools_parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s)
        return -EINVAL;
    /* A trailing "s" is tolerated because people write "--timeout 30s". */
    if (*end == 's' && !end[1])
        end++;
    if (*end || !isfinite(v) || v < 0 || v > 1e9)
        return -EINVAL;
    *out = v;
    return 0;
}

void tools_format_si(double v, char *buf, size_t len)
{
    if (v < 1000)
        snprintf(buf, len, "%.0f", v);
    else if (v < 1e6)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else if (v < 1e9)
        snprintf(buf, len, "%.1fM", v / 1e6);
    else
        snprintf(buf, len, "%.1fG", v / 1e9);
}

int tools_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon, *hs, *he;
    uint64_t pv;
    size_t n;

    if (!s || !*s)
        return -EINVAL;
    if (*s == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (!he || he[1] != ':')
            return -EINVAL;
        colon = he + 1;
    } else {
        hs = s;
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        he = colon;
        /* An unbracketed v6 literal is ambiguous about where the port starts. */
        if (memchr(hs, ':', (size_t)(he - hs)))
            return -EINVAL;
    }
    n = (size_t)(he - hs);
    if (n == 0 || n >= hostlen)
        return -EINVAL;
    memcpy(host, hs, n);
    host[n] = '\0';
    if (tools_parse_u64(colon + 1, &pv) < 0 || pv > 65535)
        return -EINVAL;
    n = strlen(colon + 1);
    if (n >= portlen)
        return -EINVAL;
    memcpy(port, colon + 1, n + 1);
    return 0;
}

int tools_resolve(const char *hostport, bool passive, struct addrinfo **res, char *err,
                  size_t errlen)
{
    char host[256], port[16];
    struct addrinfo hints;
    int rc;

    if (tools_split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, errlen, "bad address '%s' (expected HOST:PORT or [V6]:PORT)", hostport);
        return -EINVAL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* No AI_ADDRCONFIG: these tools mostly talk over loopback, which it would hide. */
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    rc = getaddrinfo(host, port, &hints, res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return rc == EAI_SYSTEM && errno ? -errno : -EHOSTUNREACH;
    }
    return 0;
}

void tools_format_addr(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo(sa, salen, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, len, "?");
        return;
    }
    if (sa->sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%s", host, serv);
    else
        snprintf(buf, len, "%s:%s", host, serv);
}

uint64_t tools_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void tools_sleep_until_ns(uint64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ns / 1000000000ULL),
        .tv_nsec = (long)(deadline_ns % 1000000000ULL),
    };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

int tools_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    ssize_t n;

    while (len) {
        n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int tools_read_file(const char *path, uint8_t **data, size_t *len)
{
    struct stat st;
    uint8_t *buf = NULL, *nb;
    size_t cap, used = 0;
    ssize_t n;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    /* One spare byte so a regular file is read in a single pass and EOF seen at once. */
    cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
    buf = malloc(cap);
    if (!buf) {
        rc = -ENOMEM;
        goto fail;
    }
    for (;;) {
        if (used == cap) {
            nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = -ENOMEM;
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    *data = buf;
    *len = used;
    return 0;
fail:
    free(buf);
    close(fd);
    return rc;
}

static void json_key(FILE *f, uint8_t c)
{
    if (c == '"' || c == '\\')
        fprintf(f, "\"\\%c\"", c);
    else if (c < 0x20 || c >= 0x7f)
        fprintf(f, "\"\\u%04x\"", c);
    else
        fprintf(f, "\"%c\"", c);
}

/* One line, keys in byte order: two files of equal totals compare equal byte for byte. */
int tools_totals_print(FILE *f, const struct tools_totals *t)
{
    bool first = true;
    int c;

    fputc('{', f);
    for (c = 0; c < 256; c++) {
        if (!t->present[c])
            continue;
        if (!first)
            fputs(", ", f);
        first = false;
        json_key(f, (uint8_t)c);
        fprintf(f, ": %" PRIu64, t->total[c]);
    }
    fputs("}\n", f);
    return ferror(f) ? -EIO : 0;
}

int tools_totals_write(const char *path, const struct tools_totals *t)
{
    char tmp[4096];
    FILE *f;
    int rc;

    /* Write-then-rename: a receiver reading the file at its stop never sees half of it. */
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return -ENAMETOOLONG;
    f = fopen(tmp, "w");
    if (!f)
        return -errno;
    rc = tools_totals_print(f, t);
    if (rc < 0) {
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        rc = -errno;
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto fail;
    }
    return 0;
fail:
    unlink(tmp);
    return rc;
}

static const char *json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses one JSON string that must hold exactly one byte; returns the position after it. */
static const char *json_key_char(const char *p, const char *end, uint8_t *key)
{
    unsigned v = 0;
    int i, h;

    if (p >= end || *p != '"')
        return NULL;
    p++;
    if (p >= end)
        return NULL;
    if (*p == '\\') {
        p++;
        if (p >= end)
            return NULL;
        if (*p == 'u') {
            for (i = 1; i <= 4; i++) {
                if (p + i >= end || (h = hexval(p[i])) < 0)
                    return NULL;
                v = v * 16 + (unsigned)h;
            }
            if (v > 0xff)
                return NULL;
            p += 5;
        } else if (*p == '"' || *p == '\\' || *p == '/') {
            v = (uint8_t)*p++;
        } else {
            return NULL;
        }
    } else if (*p == '"') {
        return NULL;
    } else {
        v = (uint8_t)*p++;
    }
    if (p >= end || *p != '"')
        return NULL;
    *key = (uint8_t)v;
    return p + 1;
}

int tools_totals_read(const char *path, struct tools_totals *t, char *err, size_t errlen)
{
    uint8_t *data = NULL, key;
    const char *p, *end, *q;
    uint64_t v;
    size_t len;
    int rc;

    memset(t, 0, sizeof(*t));
    rc = tools_read_file(path, &data, &len);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
        return rc;
    }
    p = (const char *)data;
    end = p + len;
    p = json_ws(p, end);
    if (p >= end || *p != '{')
        goto bad;
    p = json_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
        goto done;
    }
    for (;;) {
        q = json_key_char(p, end, &key);
        if (!q) {
            snprintf(err, errlen, "%s: keys must be one-character strings (at offset %zu)", path,
                     (size_t)(p - (const char *)data));
            rc = -EINVAL;
            goto out;
        }
        p = json_ws(q, end);
        if (p >= end || *p != ':')
            goto bad;
        p = json_ws(p + 1, end);
        if (p >= end || *p < '0' || *p > '9')
            goto bad;
        for (v = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            if (__builtin_mul_overflow(v, 10, &v) ||
                __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
                goto bad;
        }
        if (t->present[key]) {
            snprintf(err, errlen, "%s: key '%c' appears twice", path, key);
            rc = -EINVAL;
            goto out;
        }
        t->present[key] = true;
        t->total[key] = v;
        p = json_ws(p, end);
        if (p < end && *p == ',') {
            p = json_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            p++;
            break;
        }
        goto bad;
    }
done:
    p = json_ws(p, end);
    if (p != end)
        goto bad;
    rc = 0;
    goto out;
bad:
    snprintf(err, errlen, "%s: not a JSON object of letter -> non-negative integer (at offset %zu)",
             path, (size_t)(p - (const char *)data));
    rc = -EINVAL;
out:
    free(data);
    return rc;
}

static void vlog_line(const char *prog, const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];
    int n, m;

    n = snprintf(line, sizeof(line), "%s: ", prog);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (m < 0)
        m = 0;
    n += m;
    if ((size_t)n > sizeof(line) - 32)
        n = (int)sizeof(line) - 32;
    n += snprintf(line + n, sizeof(line) - (size_t)n, "%s\n", suffix);
    /* One write keeps lines whole when several processes share a terminal or log. */
    if (tools_write_all(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}

void tools_log(const char *prog, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog_line(prog, "", fmt, ap);
    va_end(ap);
}

void tools_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog_line(prog, " (see --help)", fmt, ap);
    va_end(ap);
    exit(2);
}
