/* wire-int.h: what wire.c and clients.c share; the wire module's own, never outside it. */
#ifndef ROO_WIRE_INT_H
#define ROO_WIRE_INT_H

#include <protobuf-c/protobuf-c.h>

#include "common/buf.h"

/* protobuf-c gives "" for absent strings; keep that (never NULL) in our structs. */
char *roo__wire_dup_str(const char *s);

/* Append a frame: u32 BE length, then the packed message (sized before packing, refused with
 * ROO_EMSGSIZE over limit). */
int roo__wire_frame_append(const ProtobufCMessage *msg, size_t limit, roo__buf *out);

#endif /* ROO_WIRE_INT_H */
