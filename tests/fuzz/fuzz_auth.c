/* fuzz_auth.c: a server's side of the handshake takes any bytes as a hello or a proof, and
 * a client's any bytes as a reply, without opening. Input: one byte choosing | the bytes. */
#include <stdlib.h>

#include "net/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static roo__auth_key key;
    static bool init;
    roo__auth a;
    uint8_t out[ROO__AUTH_REPLY_LEN], *p;
    size_t n;

    if (!init) {
        roo__auth_key_none(&key);
        init = true;
    }
    if (size < 1)
        return 0;
    n = size - 1;
    p = malloc(n ? n : 1);
    memcpy(p, data + 1, n);
    a = (roo__auth){ .key = &key, .channel = (uint8_t)(1 + data[0] % 3) };
    switch ((data[0] >> 2) % 3) {
    case 0:
        roo__auth_server_reply(&a, p, n, out);
        break;
    case 1:
        roo__auth_client_hello(&a, out);
        if (roo__auth_client_proof(&a, p, n, out) == 0)
            abort(); /* a reply forged without the key's proof must never pass */
        break;
    default:
        if (n >= ROO__AUTH_HELLO_LEN &&
            roo__auth_server_reply(&a, p, ROO__AUTH_HELLO_LEN, out) == 0 &&
            roo__auth_server_check(&a, p + ROO__AUTH_HELLO_LEN, n - ROO__AUTH_HELLO_LEN) == 0)
            abort(); /* nor a proof of a nonce the client never saw */
        break;
    }
    free(p);
    return 0;
}
