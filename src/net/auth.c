/* auth.c: the connection handshake of auth.h, with libsodium's HMAC-SHA-256. */
#include "net/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t magic[8] = { 'R', 'O', 'O', 'A', 'U', 'T', 'H', '1' };

static void derive(const uint8_t *secret, size_t len, roo__auth_key *ret_key)
{
    crypto_hash_sha256_state st;

    /* Thread-safe and idempotent; it picks the random source the nonces come from. */
    if (sodium_init() < 0) {
        roo__log_error("libsodium cannot start (no random source?)");
        abort();
    }
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)"roo cluster secret 1", 20);
    crypto_hash_sha256_update(&st, secret, len);
    crypto_hash_sha256_final(&st, ret_key->k);
}

void roo__auth_key_none(roo__auth_key *ret_key)
{
    derive(NULL, 0, ret_key);
    ret_key->secret = false;
}

int roo__auth_key_load(const char *path, roo__auth_key *ret_key, bool *ret_loose, char *msg,
                       size_t cap)
{
    uint8_t buf[4096];
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        int err = errno;
        snprintf(msg, cap, "cannot read the cluster secret %s: %s", path, strerror(err));
        return -err;
    }
    n = read(fd, buf, sizeof(buf));
    if (n < 0 || fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        snprintf(msg, cap, "cannot read the cluster secret %s: %s", path, strerror(err));
        return -err;
    }
    close(fd);
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n < ROO__SECRET_MIN) {
        snprintf(msg, cap,
                 "the cluster secret %s holds %zd byte(s); it needs at least %d (make one with: "
                 "head -c 32 /dev/urandom | base64 > %s)",
                 path, n, ROO__SECRET_MIN, path);
        sodium_memzero(buf, sizeof(buf));
        return ROO_EUSAGE;
    }
    derive(buf, (size_t)n, ret_key);
    ret_key->secret = true;
    sodium_memzero(buf, sizeof(buf));
    *ret_loose = (st.st_mode & 077) != 0;
    if (*ret_loose)
        snprintf(msg, cap, "the cluster secret %s can be read by other users (chmod 600 %s)", path,
                 path);
    return 0;
}

static void mac(const roo__auth *a, const char *label, const uint8_t *n1, const uint8_t *n2,
                uint8_t out[ROO__AUTH_MAC])
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, a->key->k, sizeof(a->key->k));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
    crypto_auth_hmacsha256_update(&st, &a->channel, 1);
    crypto_auth_hmacsha256_update(&st, n1, ROO__AUTH_NONCE);
    crypto_auth_hmacsha256_update(&st, n2, ROO__AUTH_NONCE);
    crypto_auth_hmacsha256_final(&st, out);
}

void roo__auth_client_hello(roo__auth *a, uint8_t out[ROO__AUTH_HELLO_LEN])
{
    randombytes_buf(a->nc, sizeof(a->nc));
    memcpy(out, magic, sizeof(magic));
    out[8] = a->channel;
    memcpy(out + 9, a->nc, sizeof(a->nc));
}

int roo__auth_server_reply(roo__auth *a, const uint8_t *hello, size_t len,
                           uint8_t out[ROO__AUTH_REPLY_LEN])
{
    if (len != ROO__AUTH_HELLO_LEN || memcmp(hello, magic, sizeof(magic)) != 0 ||
        hello[8] != a->channel)
        return ROO_EAUTH;
    memcpy(a->nc, hello + 9, sizeof(a->nc));
    randombytes_buf(a->ns, sizeof(a->ns));
    memcpy(out, a->ns, sizeof(a->ns));
    mac(a, "roo server", a->nc, a->ns, out + ROO__AUTH_NONCE);
    return 0;
}

int roo__auth_client_proof(roo__auth *a, const uint8_t *reply, size_t len,
                           uint8_t out[ROO__AUTH_PROOF_LEN])
{
    uint8_t want[ROO__AUTH_MAC];

    if (len != ROO__AUTH_REPLY_LEN)
        return ROO_EAUTH;
    memcpy(a->ns, reply, sizeof(a->ns));
    mac(a, "roo server", a->nc, a->ns, want);
    if (sodium_memcmp(want, reply + ROO__AUTH_NONCE, sizeof(want)) != 0)
        return ROO_EAUTH;
    mac(a, "roo client", a->ns, a->nc, out);
    return 0;
}

int roo__auth_server_check(const roo__auth *a, const uint8_t *proof, size_t len)
{
    uint8_t want[ROO__AUTH_MAC];

    if (len != ROO__AUTH_PROOF_LEN)
        return ROO_EAUTH;
    mac(a, "roo client", a->ns, a->nc, want);
    return sodium_memcmp(want, proof, sizeof(want)) == 0 ? 0 : ROO_EAUTH;
}
