/* Helpers shared by roo-sender and roo-receiver only: flags, numbers, addresses, time, totals JSON and logging. */
#ifndef ROO_TOOLS_COMMON_H
#define ROO_TOOLS_COMMON_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define TOOLS_VERSION "0.1.0"

/* Big enough for "[ipv6 literal%scope]:65535". */
#define TOOLS_ADDR_STRLEN 96

/*
 * Totals are indexed by the letter's byte value so a..z and A..Z (and anything a caller
 * chooses to accept) need no translation table on the hot path.
 */
struct tools_totals {
    uint64_t total[256];
    bool present[256];
};

static inline uint32_t tools_load_be32(const uint8_t *p)
{
    uint32_t v;

    /* memcpy keeps unaligned access defined; gcc turns it into one load + bswap. */
    memcpy(&v, p, sizeof(v));
    return __builtin_bswap32(v);
}

static inline uint64_t tools_load_be64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return __builtin_bswap64(v);
}

static inline void tools_store_be32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, sizeof(v));
}

static inline bool tools_is_letter(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Flag parsing: "--name value" and "--name=value" are both accepted. */
struct tools_flag {
    const char *name;       /* "--name" part, NUL-terminated copy in buf */
    const char *inline_val; /* text after '=', or NULL */
    char buf[64];
};

int tools_flag_split(const char *arg, struct tools_flag *f);
const char *tools_flag_value(const char *prog, const struct tools_flag *f, int argc, char **argv,
                             int *i);
void tools_flag_no_value(const char *prog, const struct tools_flag *f);

/* Numbers. Counts take k/M/G suffixes (x1000) and may be written like 1.5M. */
int tools_parse_u64(const char *s, uint64_t *out);
int tools_parse_count(const char *s, uint64_t *out);
int tools_parse_rate(const char *s, double *out);
int tools_parse_seconds(const char *s, double *out);
void tools_format_si(double v, char *buf, size_t len);

/* Addresses: "HOST:PORT", "[v6]:PORT"; HOST may be a name resolved with getaddrinfo. */
int tools_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);
int tools_resolve(const char *hostport, bool passive, struct addrinfo **res, char *err,
                  size_t errlen);
void tools_format_addr(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len);

/* Time. */
uint64_t tools_now_ns(void);
void tools_sleep_until_ns(uint64_t deadline_ns);

/* I/O. */
int tools_write_all(int fd, const void *buf, size_t len);
int tools_read_file(const char *path, uint8_t **data, size_t *len);

/* Expected-totals JSON, the shape of Wallaroo's _expected.json: {"a": 276772, ...}. */
int tools_totals_print(FILE *f, const struct tools_totals *t);
int tools_totals_write(const char *path, const struct tools_totals *t);
int tools_totals_read(const char *path, struct tools_totals *t, char *err, size_t errlen);

/* Logging: every line is "prog: message" on stderr, written with one write(2). */
void tools_log(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void tools_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
