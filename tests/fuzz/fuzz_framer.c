/* fuzz_framer.c: any bytes on a source connection are cut into frames inside the buffer,
 * for every framing a source can have. Input: one byte of settings | the stream. */
#include <stdlib.h>

#include "net/framer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

volatile uint8_t fuzz_sink; /* keeps the reads that ASan checks */

/* The source's run of same-length frames after a frame of payload n at buf[off - 4 - n]
 * finds exactly the frames the framer finds one by one. */
static void check_run(const roo__framer *f, const uint8_t *buf, size_t size, size_t off, size_t n)
{
    roo_frame frs[64];
    size_t k = roo__framer_run_be32(buf + off, size - off, n, 64, frs), at = off;

    for (size_t i = 0; i < k; i++) {
        roo__frame fr;
        if (roo__framer_next(f, buf + at, size - at, &fr) != ROO__FRAME_OK || fr.payload_len != n ||
            frs[i].payload != buf + at + 4 || frs[i].len != n)
            abort();
        at += fr.frame_len;
    }
    if (k < 64) { /* it stopped: the next frame is another length, or not whole */
        roo__frame fr;
        int rc = roo__framer_next(f, buf + at, size - at, &fr);
        if (rc == ROO__FRAME_OK && fr.payload_len == n)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned headers[] = { 1, 2, 4, 8 };
    roo_source src = { 0 };
    roo__framer f;
    uint8_t *buf;
    size_t off = 0;

    if (size < 1)
        return 0;
    src.framing = data[0] & 1 ? ROO_FRAMING_LINE : ROO_FRAMING_LENGTH;
    src.header_len = headers[(data[0] >> 1) & 3];
    src.byte_order = data[0] & 8 ? ROO_LITTLE_ENDIAN : ROO_BIG_ENDIAN;
    src.decode = (roo_decode_fn)1; /* not called */
    if (roo__framer_init(&f, &src, (size_t)1 << ((data[0] >> 4) & 15)) < 0)
        return 0;
    size--;
    buf = malloc(size ? size : 1);
    memcpy(buf, data + 1, size);
    while (off < size) {
        roo__frame fr;
        int rc = roo__framer_next(&f, buf + off, size - off, &fr);
        if (rc != ROO__FRAME_OK)
            break;
        if (fr.frame_len == 0 || fr.payload_off + fr.payload_len > size - off ||
            fr.frame_len > size - off)
            abort();
        if (fr.payload_len)
            fuzz_sink ^= buf[off + fr.payload_off + fr.payload_len - 1];
        off += fr.frame_len;
        if (f.framing == ROO_FRAMING_LENGTH && f.header_len == 4 && !f.little_endian)
            check_run(&f, buf, size, off, fr.payload_len);
    }
    free(buf);
    return 0;
}
