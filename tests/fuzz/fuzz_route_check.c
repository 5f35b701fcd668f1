/* fuzz_route_check.c: a peer's route buffer that roo__route_check passes can be walked the
 * way a processing thread applies it without reading past its end. Input: u32 claimed
 * count | buffer. */
#include <stdlib.h>

#include "engine/engine-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

volatile uint8_t fuzz_sink; /* keeps the reads that ASan checks */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const bool is_state[4] = { false, true, true, false };
    uint8_t *buf;
    uint32_t count;
    char why[200];

    if (size < 4)
        return 0;
    memcpy(&count, data, 4);
    size -= 4;
    buf = malloc(size ? size : 1); /* exactly the bytes: ASan sees any read past them */
    memcpy(buf, data + 4, size);
    if (roo__route_check(buf, size, is_state, 4, count, why, sizeof(why)) == 0) {
        /* Walk as process_route (shard.c) does. */
        const uint8_t *p = buf, *end = buf + size;
        while (p < end) {
            uint32_t si = roo__load_le32(p), len = roo__load_le32(p + 4);
            size_t idlen = 0;
            if (si == ROO__ROUTE_INGRESS) {
                fuzz_sink ^= p[8 + ROO__ROUTE_INGRESS_LEN - 1];
                p += 8 + ROO__ROUTE_INGRESS_LEN;
                continue;
            }
            if (si == ROO__ROUTE_STREAM) {
                fuzz_sink ^= p[23];
                p += 24;
                continue;
            }
            if (si & ROO__ROUTE_ID_FLAG) {
                idlen = ROO__ROUTE_ID_LEN;
                fuzz_sink ^= p[15];
                si &= ~ROO__ROUTE_ID_FLAG;
            }
            if (si >= 4 || !is_state[si])
                abort();
            if (len)
                fuzz_sink ^= p[8 + idlen + len - 1];
            p += 8 + idlen + ROO__ALIGN8(len);
        }
    }
    free(buf);
    return 0;
}
