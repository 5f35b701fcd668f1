/* roo-attack: plays a hostile client against a worker, for the attack tests. Each command
 * does one thing and exits 0 if the worker reacted as a worker must (closed, bounded).
 *
 *   roo-attack big-frame HOST:PORT           a 16 MiB frame header, then bytes, before any
 *                                            handshake: exit 0 once the worker closes
 *   roo-attack hold HOST:PORT N SECS         open N connections, hold them SECS seconds;
 *                                            prints how many the worker left open
 *   roo-attack bad-batch HOST:PORT SECRET CLUSTER_ID WORKER STAGE
 *                                            a peer with the secret says DataHello as WORKER
 *                                            and sends a batch for step STAGE: exit 0 once
 *                                            the worker closes the link
 *   roo-attack hello HOST:PORT STREAM NEXT SECS
 *                                            a resumable hello for STREAM at frame NEXT;
 *                                            prints "welcome N" or "refused: TEXT"; after a
 *                                            welcome, keeps the connection SECS seconds
 *                                            (sending nothing); exit 0 once answered
 *   roo-attack partition STREAM PARTITIONS   prints the partition whose owner keeps the
 *                                            stream's read position (engine/streams.h)
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "net/auth.h"
#include "net/net.h"
#include "state/keys.h"
#include "state/table.h"
#include "wire/wire.h"

static int connect_to(const char *hostport)
{
    roo__addr a;
    int fd;
    struct pollfd p;

    if (roo__addr_parse(hostport, &a) < 0 || roo__tcp_connect_start(&a, &fd) < 0)
        return -1;
    p = (struct pollfd){ .fd = fd, .events = POLLOUT };
    if (poll(&p, 1, 3000) != 1 || roo__tcp_connect_result(fd) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        struct pollfd pf = { .fd = fd, .events = POLLOUT };
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (k < 0) {
            poll(&pf, 1, 1000);
            continue;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Wait up to ms for the peer to close; true if it did. */
static bool closed_within(int fd, int ms)
{
    uint8_t junk[4096];
    for (int waited = 0; waited < ms; waited += 50) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 50) == 1) {
            ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return true;
        }
    }
    return false;
}

static int recv_frame(int fd, uint8_t *buf, size_t cap, size_t *ret_len)
{
    size_t have = 0, want = 4;
    while (have < want) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t n;
        if (poll(&p, 1, 5000) != 1)
            return -1;
        n = recv(fd, buf + have, want - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        if (have == 4 && want == 4) {
            want = 4 + roo__load_be32(buf);
            if (want > cap)
                return -1;
        }
    }
    *ret_len = want - 4;
    return 0;
}

static int cmd_big_frame(const char *to)
{
    static uint8_t junk[65536];
    int fd = connect_to(to);
    uint8_t hdr[4];

    if (fd < 0)
        return 2;
    roo__store_be32(hdr, 16u << 20);
    send_all(fd, hdr, 4);
    for (int i = 0; i < 64; i++)
        if (send(fd, junk, sizeof(junk), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
            break;
    return closed_within(fd, 5000) ? 0 : 1;
}

static int cmd_hold(const char *to, int n, int secs)
{
    int *fds = calloc((size_t)n, sizeof(int)), open_now = 0;

    for (int i = 0; i < n; i++)
        fds[i] = connect_to(to);
    sleep((unsigned)secs);
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        if (!closed_within(fds[i], 1))
            open_now++;
        close(fds[i]);
    }
    printf("%d\n", open_now);
    free(fds);
    return 0;
}

static int cmd_bad_batch(const char *to, const char *secret, const char *cid, const char *worker,
                         uint32_t stage)
{
    roo__auth_key key;
    roo__auth a;
    bool loose;
    char msg[600];
    uint8_t buf[256], proof[ROO__AUTH_PROOF_LEN], ev[16] = { 0 };
    size_t n;
    roo__buf out = { 0 };
    roo__data_hello h = { .protocol_version = ROO__PROTOCOL_VERSION, .incarnation = 12345 };
    int fd;

    if (roo__auth_key_load(secret, &key, &loose, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "roo-attack: %s\n", msg);
        return 2;
    }
    fd = connect_to(to);
    if (fd < 0)
        return 2;
    a = (roo__auth){ .key = &key, .channel = ROO__CHANNEL_DATA };
    roo__store_be32(buf, ROO__AUTH_HELLO_LEN);
    roo__auth_client_hello(&a, buf + 4);
    send_all(fd, buf, 4 + ROO__AUTH_HELLO_LEN);
    if (recv_frame(fd, buf, sizeof(buf), &n) < 0 ||
        roo__auth_client_proof(&a, buf + 4, n, proof) < 0) {
        fprintf(stderr, "roo-attack: handshake failed\n");
        return 2;
    }
    roo__store_be32(buf, ROO__AUTH_PROOF_LEN);
    memcpy(buf + 4, proof, sizeof(proof));
    send_all(fd, buf, 4 + ROO__AUTH_PROOF_LEN);
    h.cluster_id = strtoull(cid, NULL, 16);
    snprintf(h.worker, sizeof(h.worker), "%s", worker);
    roo__wire_data_hello_encode(&h, &out);
    roo__store_le32(ev, stage);
    roo__store_le32(ev + 4, 5);
    memcpy(ev + 8, "zzzzz", 5);
    roo__wire_data_batch_encode(0, 1, 1, 0, 0, ev, sizeof(ev), &out);
    send_all(fd, out.data, out.len);
    roo__buf_finish(&out);
    return closed_within(fd, 5000) ? 0 : 1;
}

static int cmd_hello(const char *to, const char *stream, uint64_t next, int secs)
{
    roo__buf out = { 0 };
    roo__source_reply_kind kind;
    uint64_t value;
    char text[512];
    uint8_t buf[4100];
    size_t n;
    int fd = connect_to(to);

    if (fd < 0)
        return 2;
    roo__wire_source_hello_encode(stream, next, &out);
    send_all(fd, out.data, out.len);
    roo__buf_finish(&out);
    if (recv_frame(fd, buf, sizeof(buf), &n) < 0 ||
        roo__wire_source_reply_decode(buf + 4, n, &kind, &value, text, sizeof(text)) < 0) {
        fprintf(stderr, "roo-attack: no answer to the hello\n");
        return 2;
    }
    if (kind == ROO__SRC_REFUSED) {
        printf("refused: %s\n", text);
        return 0;
    }
    printf("welcome %llu\n", (unsigned long long)value);
    fflush(stdout);
    sleep((unsigned)secs);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "hello") == 0)
        return cmd_hello(argv[2], argv[3], strtoull(argv[4], NULL, 10), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "partition") == 0) {
        /* As source.c names a stream: the key hash of its name, bit 0 set. */
        uint64_t id = roo__key_hash(argv[2], strlen(argv[2])) | 1;
        printf("%u\n", roo__partition_of(id, (uint32_t)strtoul(argv[3], NULL, 10)));
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "big-frame") == 0)
        return cmd_big_frame(argv[2]);
    if (argc == 5 && strcmp(argv[1], "hold") == 0)
        return cmd_hold(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc == 7 && strcmp(argv[1], "bad-batch") == 0)
        return cmd_bad_batch(argv[2], argv[3], argv[4], argv[5],
                             (uint32_t)strtoul(argv[6], NULL, 0));
    fprintf(stderr, "usage: see the comment at the top of tests/tools/roo-attack.c\n");
    return 2;
}
