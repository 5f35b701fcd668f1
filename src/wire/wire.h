/* wire.h: roo's protobuf messages, converted to and from plain C structs.
 *
 * This module is the only one that includes protobuf-c headers: the rest of roo sees the
 * engine types below. Every decoder checks sizes before it allocates and frees what
 * protobuf-c unpacked before returning.
 */
#ifndef ROO_WIRE_H
#define ROO_WIRE_H

#include "common/buf.h"

/* On-disk format of the state database; a worker refuses a directory with another one. */
#define ROO__FORMAT_VERSION 1

/* Largest encoded WorkerMeta we accept (it holds a few names). */
#define ROO__META_MAX (64u * 1024u)

typedef struct roo__meta {
    uint32_t format_version;
    char *app_name;
    char *worker_name;
    uint32_t partitions;
    char **state_names;
    size_t nstate_names;
    char *roo_version;
    uint64_t created_unix_ms;
} roo__meta;

/* Append the encoding of *m to out. */
int roo__wire_meta_encode(const roo__meta *m, roo__buf *out);

/* Decode; on success *ret_meta owns its strings (release with roo__wire_meta_finish). */
int roo__wire_meta_decode(const uint8_t *p, size_t len, roo__meta *ret_meta);
void roo__wire_meta_finish(roo__meta *m);

#endif /* ROO_WIRE_H */
