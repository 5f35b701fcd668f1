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
        /* Walk as process_route (shard.c) and a move's re-route (partitions.c) do. */
        roo__route_iter it = roo__route_iter_of(buf, size);
        roo__route_rec rec;
        uint64_t n = 0;
        while (roo__route_next(&it, &rec)) {
            if (rec.stage != ROO__ROUTE_INGRESS && (rec.stage >= 4 || !is_state[rec.stage]))
                abort();
            if (rec.len)
                fuzz_sink ^= rec.msg[rec.len - 1];
            n++;
        }
        if (n != count || it.p != buf + size)
            abort();
    }
    free(buf);
    return 0;
}
