/* fuzz_wire.c: every decoder of bytes from another process: control, data, state chunks,
 * external requests and replies, the identity record, the source hello and reply. Input:
 * one byte choosing the decoder | the payload. */
#include <stdlib.h>

#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p;
    size_t n;

    if (size < 1)
        return 0;
    n = size - 1;
    p = malloc(n ? n : 1);
    memcpy(p, data + 1, n);
    switch (data[0] % 8) {
    case 0: {
        roo__ctl m;
        if (roo__wire_ctl_decode(p, n, &m) == 0)
            roo__wire_ctl_finish(&m);
        break;
    }
    case 1: {
        roo__data_kind kind;
        roo__data_hello h;
        uint32_t thread, count;
        uint64_t seq;
        roo__buf events = { 0 };
        int64_t stamp[2];
        uint64_t ask, value;
        roo__wire_data_decode(p, n, &kind, &h, &thread, &seq, &count, stamp, &events);
        roo__buf_finish(&events);
        roo__wire_stream_decode(p, n, &kind, &ask, &value);
        break;
    }
    case 2: {
        roo__state_chunk c = { 0 };
        if (roo__wire_data_chunk_decode(p, n, &c) == 0) {
            roo__buf_finish(&c.records);
            roo__buf_finish(&c.marks);
        }
        break;
    }
    case 3: {
        roo__ext_request r;
        if (roo__wire_ext_request_decode(p, n, &r) == 0)
            roo__wire_ext_request_finish(&r);
        break;
    }
    case 4: {
        bool ok;
        char *json = NULL, *error = NULL;
        if (roo__wire_ext_reply_decode(p, n, &ok, &json, &error) == 0) {
            free(json);
            free(error);
        }
        break;
    }
    case 5: {
        roo__meta m;
        if (roo__wire_meta_decode(p, n, &m) == 0)
            roo__wire_meta_finish(&m);
        break;
    }
    case 6: {
        char stream[ROO__STREAM_NAME_MAX + 1];
        uint64_t next;
        roo__wire_source_hello_decode(p, n, stream, sizeof(stream), &next);
        break;
    }
    default: {
        roo__source_reply_kind kind;
        uint64_t value;
        char text[256];
        roo__wire_source_reply_decode(p, n, &kind, &value, text, sizeof(text));
        break;
    }
    }
    free(p);
    return 0;
}
