/* common.c: allocation wrappers, error strings, logging and parsing helpers. */
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* Logging configuration is written once at start-up, before threads exist. */
static char log_program[64] = "roo";
static char log_worker[96] = "";
static volatile roo_log_level log_level = ROO_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void *roo__xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        roo_log(ROO_LOG_ERROR,
                "out of memory allocating %zu bytes; aborting (state is safe in LMDB)", n);
        abort();
    }
    return p;
}

void *roo__xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) {
        roo_log(ROO_LOG_ERROR, "out of memory allocating %zu x %zu bytes; aborting", count, n);
        abort();
    }
    return p;
}

void *roo__xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        roo_log(ROO_LOG_ERROR, "out of memory growing a buffer to %zu bytes; aborting", n);
        abort();
    }
    return q;
}

char *roo__xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = roo__xmalloc(n);
    memcpy(d, s, n);
    return d;
}

const char *roo_strerror(int err)
{
    static __thread char buf[96];

    switch (err) {
    case 0:
        return "success";
#define ROO__ERR_CASE(name, value, text)                                                           \
    case ROO_##name:                                                                               \
        return text;
        ROO_ERRNO_MAP(ROO__ERR_CASE)
#undef ROO__ERR_CASE
    default:
        break;
    }
    if (err < 0 && err > -4096)
        return strerror_r(-err, buf, sizeof(buf));
    snprintf(buf, sizeof(buf), "unknown error %d", err);
    return buf;
}

const char *roo_version(void)
{
    return ROO_VERSION_STRING;
}

void roo__log_set_names(const char *program, const char *worker)
{
    if (program) {
        const char *slash = strrchr(program, '/');
        snprintf(log_program, sizeof(log_program), "%s", slash ? slash + 1 : program);
    }
    if (worker)
        snprintf(log_worker, sizeof(log_worker), "%s", worker);
}

void roo__log_set_level(roo_log_level level)
{
    log_level = level;
}

roo_log_level roo__log_get_level(void)
{
    return log_level;
}

bool roo__log_enabled(roo_log_level level)
{
    return level <= log_level;
}

int roo__log_level_parse(const char *s, roo_log_level *ret_level)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    for (size_t i = 0; i < ROO__ARRAY_SIZE(names); i++) {
        if (strcasecmp(s, names[i]) == 0 || (i == 1 && strcasecmp(s, "warning") == 0)) {
            *ret_level = (roo_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void roo__logv(roo_log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    int n, m;

    if (!roo__log_enabled(level))
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%s] %-5s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), log_program, log_worker, level_names[level]);
    if (n < 0)
        return;
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole when threads log at once. */
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}

void roo_log(roo_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    roo__logv(level, fmt, ap);
    va_end(ap);
}

bool roo__ratelimit_allow(roo__ratelimit *rl, uint64_t *ret_suppressed)
{
    int64_t now = roo__now_ns();

    if (now - rl->window_start >= rl->interval_ns) {
        rl->window_start = now;
        rl->in_window = 0;
    }
    if (rl->in_window >= rl->burst) {
        rl->suppressed++;
        return false;
    }
    rl->in_window++;
    *ret_suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}

const char *roo__fmt_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)n;
    size_t u = 0;

    while (v >= 1024.0 && u + 1 < ROO__ARRAY_SIZE(units)) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

int roo__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret_value)
{
    char *end;
    unsigned long long v;

    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *ret_value = v;
    return 0;
}

int roo__parse_size(const char *s, uint64_t *ret_size)
{
    char *end;
    unsigned long long v;
    uint64_t mult = 1;

    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1ull << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mult = 1ull << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1ull << 30;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (*end == 'i' || *end == 'B')
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end)
        return -EINVAL;
    if (v > UINT64_MAX / mult)
        return -ERANGE;
    *ret_size = v * mult;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

int roo__rm_rf(const char *path)
{
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}
