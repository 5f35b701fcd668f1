/* auth.h: the handshake that opens every control, data and external connection: both ends
 * prove they hold the cluster secret before anything else is read or sent.
 *
 * Each message is one frame of the channel (u32 big-endian length, then the payload):
 *
 *   step  from    payload                                                        bytes
 *   1     client  "ROOAUTH1" | channel | Nc                                       41
 *   2     server  Ns | HMAC(K, "roo server" | channel | Nc | Ns)                  64
 *   3     client  HMAC(K, "roo client" | channel | Ns | Nc)                       32
 *
 * Nc and Ns are fresh 32-byte random nonces, so a recorded exchange proves nothing later;
 * the channel byte keeps a proof for one channel from opening another; each side proves the
 * secret to the other (the client checks step 2 before it says anything more). K is
 * SHA-256 of the secret file's bytes; without a secret both ends use the empty secret, which
 * any program knows: such workers serve loopback only (see cluster.c).
 *
 * HMAC-SHA-256 comes from libsodium. Pure functions on a small state; any thread.
 */
#ifndef ROO_AUTH_H
#define ROO_AUTH_H

#include "common/common.h"

#define ROO__AUTH_NONCE 32
#define ROO__AUTH_MAC 32
#define ROO__AUTH_HELLO_LEN (8 + 1 + ROO__AUTH_NONCE)
#define ROO__AUTH_REPLY_LEN (ROO__AUTH_NONCE + ROO__AUTH_MAC)
#define ROO__AUTH_PROOF_LEN ROO__AUTH_MAC
#define ROO__AUTH_FRAME_MAX 64 /* the largest frame accepted before the handshake is done */
#define ROO__SECRET_MIN 16     /* bytes a secret file must hold */

enum { ROO__CHANNEL_CONTROL = 1, ROO__CHANNEL_DATA = 2, ROO__CHANNEL_EXTERNAL = 3 };

/* The cluster key: derived once from the secret file, shared read-only by every connection. */
typedef struct roo__auth_key {
    uint8_t k[32];
    bool secret; /* false: the empty secret (no --cluster-secret) */
} roo__auth_key;

/* The key of no secret. */
void roo__auth_key_none(roo__auth_key *ret_key);

/*
 * Read a secret file: at least ROO__SECRET_MIN bytes once trailing white space is cut.
 * msg explains a refusal (missing, too short, unreadable). A file others may read is
 * accepted with a warning in msg and *ret_loose set (the caller logs it).
 */
int roo__auth_key_load(const char *path, roo__auth_key *ret_key, bool *ret_loose, char *msg,
                       size_t cap);

/* One side of one handshake. */
typedef struct roo__auth {
    const roo__auth_key *key;
    uint8_t channel;
    uint8_t nc[ROO__AUTH_NONCE], ns[ROO__AUTH_NONCE];
} roo__auth;

/* Client, step 1: the hello to send (fills a->nc). */
void roo__auth_client_hello(roo__auth *a, uint8_t out[ROO__AUTH_HELLO_LEN]);
/* Server, steps 1 -> 2: check the hello, write the reply. ROO_EAUTH: not a hello for this
 * channel (garbage, another program, another channel). */
int roo__auth_server_reply(roo__auth *a, const uint8_t *hello, size_t len,
                           uint8_t out[ROO__AUTH_REPLY_LEN]);
/* Client, steps 2 -> 3: check the server's proof, write ours. ROO_EAUTH: another secret. */
int roo__auth_client_proof(roo__auth *a, const uint8_t *reply, size_t len,
                           uint8_t out[ROO__AUTH_PROOF_LEN]);
/* Server, step 3: check the client's proof. ROO_EAUTH: another secret. */
int roo__auth_server_check(const roo__auth *a, const uint8_t *proof, size_t len);

#endif /* ROO_AUTH_H */
