/* framer.c: framer set-up and the uncommon header formats. */
#include "net/framer.h"

#include <errno.h>

int roo__framer_init(roo__framer *f, const roo_source *src, size_t max_frame)
{
    unsigned h = src->header_len ? src->header_len : 4;

    if (src->framing != ROO_FRAMING_LENGTH && src->framing != ROO_FRAMING_LINE)
        return -EINVAL;
    if (src->framing == ROO_FRAMING_LENGTH && h != 1 && h != 2 && h != 4 && h != 8)
        return -EINVAL;
    if (max_frame == 0)
        return -EINVAL;
    f->framing = src->framing;
    f->header_len = src->framing == ROO_FRAMING_LENGTH ? h : 0;
    f->little_endian = src->byte_order == ROO_LITTLE_ENDIAN;
    f->max_frame = max_frame;
    return 0;
}

uint64_t roo__framer_header_value(const roo__framer *f, const uint8_t *p)
{
    uint64_t v = 0;

    if (f->little_endian) {
        for (unsigned i = f->header_len; i > 0; i--)
            v = v << 8 | p[i - 1];
    } else {
        for (unsigned i = 0; i < f->header_len; i++)
            v = v << 8 | p[i];
    }
    return v;
}
