/* common.h: small helpers every roo module uses: allocation, time, byte order, logging. */
#ifndef ROO_COMMON_H
#define ROO_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "roo/roo.h"

#define ROO__LIKELY(x) __builtin_expect(!!(x), 1)
#define ROO__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ROO__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ROO__ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define ROO__MIN(a, b) ((a) < (b) ? (a) : (b))
#define ROO__MAX(a, b) ((a) > (b) ? (a) : (b))
#define ROO__CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/*
 * Out-of-memory policy: roo aborts. A worker keeps every state update that matters in
 * LMDB and a restart recovers it, so dying loudly on a failed allocation is safer than
 * threading -ENOMEM through every hot path. These wrappers log one line and abort().
 */
void *roo__xmalloc(size_t n);
void *roo__xcalloc(size_t count, size_t n);
void *roo__xrealloc(void *p, size_t n);
char *roo__xstrdup(const char *s);

/* Monotonic clock in nanoseconds and milliseconds. */
static inline int64_t roo__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The wall clock in nanoseconds since the epoch: comparable across threads and hosts (as
 * far as their clocks agree), for latencies that start on one worker and end on another. */
static inline int64_t roo__wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The absolute time `ms` milliseconds from now on `clock`, for timed waits. */
static inline struct timespec roo__timespec_after(clockid_t clock, int ms)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* The value of a hexadecimal digit (either case), or -1. */
static inline int roo__hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline uint16_t roo__load_be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t roo__load_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}

static inline uint64_t roo__load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* Little-endian on any host; on a little-endian one each is a single (unaligned) move, which
 * the byte-wise form did not always become (route records are read and written per message). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ROO__HOST_LE 1
#else
#define ROO__HOST_LE 0
#endif

static inline uint16_t roo__load_le16(const uint8_t *p)
{
    uint16_t v;

    if (ROO__HOST_LE) {
        memcpy(&v, p, 2);
        return v;
    }
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void roo__store_le16(uint8_t *p, uint16_t v)
{
    if (ROO__HOST_LE) {
        memcpy(p, &v, 2);
        return;
    }
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint32_t roo__load_le32(const uint8_t *p)
{
    uint32_t v;

    if (ROO__HOST_LE) {
        memcpy(&v, p, 4);
        return v;
    }
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void roo__store_le32(uint8_t *p, uint32_t v)
{
    if (ROO__HOST_LE) {
        memcpy(p, &v, 4);
        return;
    }
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t roo__load_le64(const uint8_t *p)
{
    return roo__load_le32(p) | (uint64_t)roo__load_le32(p + 4) << 32;
}

static inline void roo__store_le64(uint8_t *p, uint64_t v)
{
    roo__store_le32(p, (uint32_t)v);
    roo__store_le32(p + 4, (uint32_t)(v >> 32));
}

static inline void roo__store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void roo__store_be32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
}

static inline void roo__store_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

/*
 * Logging. One line per event on stderr: time, program[worker], level, message. The
 * worker layer sets the names once at start; library modules log at debug level only and
 * return errors for the worker layer to report.
 */
void roo__log_set_names(const char *program, const char *worker);
void roo__log_set_level(roo_log_level level);
roo_log_level roo__log_get_level(void);
bool roo__log_enabled(roo_log_level level);
int roo__log_level_parse(const char *s, roo_log_level *ret_level);
void roo__logv(roo_log_level level, const char *fmt, va_list ap);

#define roo__log_error(...) roo_log(ROO_LOG_ERROR, __VA_ARGS__)
#define roo__log_warn(...) roo_log(ROO_LOG_WARN, __VA_ARGS__)
#define roo__log_info(...) roo_log(ROO_LOG_INFO, __VA_ARGS__)
#define roo__log_debug(...)                                                                        \
    do {                                                                                           \
        if (roo__log_enabled(ROO_LOG_DEBUG))                                                       \
            roo_log(ROO_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/*
 * A rate limiter for log lines that bad input can trigger in a loop: at most `burst`
 * lines per `interval_ns`; the next allowed line reports how many were suppressed.
 * Not thread-safe: keep one per thread or per connection.
 */
typedef struct roo__ratelimit {
    int64_t interval_ns;
    unsigned burst;
    int64_t window_start;
    unsigned in_window;
    uint64_t suppressed;
} roo__ratelimit;

#define ROO__RATELIMIT_INIT(interval_ms, burst_)                                                   \
    {                                                                                              \
        (int64_t)(interval_ms) * 1000000, (burst_), 0, 0, 0                                        \
    }

/* Returns true if a line may be logged now; *ret_suppressed gets the lines skipped since. */
bool roo__ratelimit_allow(roo__ratelimit *rl, uint64_t *ret_suppressed);

/* Format a byte count as "12.3 MiB" into buf; returns buf. */
const char *roo__fmt_bytes(uint64_t n, char *buf, size_t cap);

/* Parse a size with an optional k/K/M/G suffix (powers of 1024) into *ret. */
int roo__parse_size(const char *s, uint64_t *ret_size);

/* Parse a non-negative decimal integer in [min, max] into *ret. */
int roo__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret_value);

/* Remove path and everything below it (no symlinks followed): 0 or -errno. */
int roo__rm_rf(const char *path);

#endif /* ROO_COMMON_H */
