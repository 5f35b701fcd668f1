/* roo-sender.h: what roo-sender's plain mode (roo-sender.c) and its --resumable client
 * (roo-sender-resumable.c) share: options, the sender, and where records come from. */
#ifndef ROO_SENDER_H
#define ROO_SENDER_H

#include "tools-common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Room for `need` bytes in s->buf. */
int sender_ensure_buf(struct sender *s, size_t need);
/* The next n generated votes into s->buf; their bytes. */
size_t sender_fill_generated(struct sender *s, uint64_t n);
/* Up to n records of the file into s->buf: *got records, *bytes bytes. */
int sender_fill_from_file(struct sender *s, uint64_t n, uint64_t *got, size_t *bytes);

/* --resumable (roo-sender-resumable.c): send everything as streams, until acknowledged. */
int send_resumable(struct sender *s, uint64_t *sent_out, uint64_t *bytes_out, uint64_t *t0_out);
void streams_free(struct sender *s);

#endif /* ROO_SENDER_H */
