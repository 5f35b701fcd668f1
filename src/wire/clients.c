/* clients.c: packing and unpacking of the frames roo exchanges with its clients: the
 * resumable source protocol (docs/source-protocol.md) and roo-ctl's external requests. */
#include "wire/wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "roo.pb-c.h"
#include "wire/wire-int.h"

/* ---- resumable sources ---- */

int roo__wire_source_hello_encode(const char *stream, uint64_t next_offset, roo__buf *out)
{
    Roo__SourceHello pb = ROO__SOURCE_HELLO__INIT;
    size_t n;
    uint8_t *p;

    pb.stream = (char *)stream;
    pb.next_offset = next_offset;
    n = roo__source_hello__get_packed_size(&pb);
    if (n > ROO__SOURCE_FRAME_MAX)
        return ROO_EMSGSIZE;
    p = roo__buf_reserve(out, ROO__SOURCE_MAGIC_LEN + 4 + n);
    memcpy(p, ROO__SOURCE_MAGIC, ROO__SOURCE_MAGIC_LEN);
    roo__store_be32(p + ROO__SOURCE_MAGIC_LEN, (uint32_t)n);
    roo__source_hello__pack(&pb, p + ROO__SOURCE_MAGIC_LEN + 4);
    out->len += ROO__SOURCE_MAGIC_LEN + 4 + n;
    return 0;
}

int roo__wire_source_hello_decode(const uint8_t *p, size_t len, char *stream_buf, size_t cap,
                                  uint64_t *ret_next_offset)
{
    Roo__SourceHello *pb;
    int rc = 0;

    if (len > ROO__SOURCE_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__source_hello__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    if (!pb->stream || !pb->stream[0] || strlen(pb->stream) >= cap ||
        strlen(pb->stream) > ROO__STREAM_NAME_MAX) {
        rc = ROO_EWIRE;
    } else {
        snprintf(stream_buf, cap, "%s", pb->stream);
        *ret_next_offset = pb->next_offset;
    }
    roo__source_hello__free_unpacked(pb, NULL);
    return rc;
}

int roo__wire_source_reply_encode(roo__source_reply_kind kind, uint64_t value, const char *text,
                                  roo__buf *out)
{
    Roo__SourceReply pb = ROO__SOURCE_REPLY__INIT;

    switch (kind) {
    case ROO__SRC_WELCOME:
        pb.msg_case = ROO__SOURCE_REPLY__MSG_RESUME_FROM;
        pb.resume_from = value;
        break;
    case ROO__SRC_ACK:
        pb.msg_case = ROO__SOURCE_REPLY__MSG_ACKED;
        pb.acked = value;
        break;
    case ROO__SRC_REFUSED:
        pb.msg_case = ROO__SOURCE_REPLY__MSG_REFUSED;
        pb.refused = (char *)(text ? text : "");
        break;
    default:
        return -EINVAL;
    }
    return roo__wire_frame_append(&pb.base, ROO__SOURCE_FRAME_MAX, out);
}

int roo__wire_source_reply_decode(const uint8_t *p, size_t len, roo__source_reply_kind *ret_kind,
                                  uint64_t *ret_value, char *text_buf, size_t text_cap)
{
    Roo__SourceReply *pb;
    int rc = 0;

    if (len > ROO__SOURCE_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__source_reply__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    switch (pb->msg_case) {
    case ROO__SOURCE_REPLY__MSG_RESUME_FROM:
        *ret_kind = ROO__SRC_WELCOME;
        *ret_value = pb->resume_from;
        break;
    case ROO__SOURCE_REPLY__MSG_ACKED:
        *ret_kind = ROO__SRC_ACK;
        *ret_value = pb->acked;
        break;
    case ROO__SOURCE_REPLY__MSG_REFUSED:
        *ret_kind = ROO__SRC_REFUSED;
        *ret_value = 0;
        if (text_buf && text_cap)
            snprintf(text_buf, text_cap, "%s", pb->refused ? pb->refused : "");
        break;
    default:
        rc = ROO_EWIRE;
        break;
    }
    roo__source_reply__free_unpacked(pb, NULL);
    return rc;
}

/* ---- external ---- */

int roo__wire_ext_request_encode(const roo__ext_request *req, roo__buf *out)
{
    Roo__ExternalRequest pb = ROO__EXTERNAL_REQUEST__INIT;
    ProtobufCBinaryData *keys = NULL;
    int rc;

    pb.command = (Roo__ExternalRequest__Command)req->cmd;
    pb.state = req->state ? req->state : (char *)"";
    if (req->nkeys) {
        keys = roo__xcalloc(req->nkeys, sizeof(*keys));
        for (size_t i = 0; i < req->nkeys; i++) {
            keys[i].data = req->keys[i].data;
            keys[i].len = req->keys[i].len;
        }
    }
    pb.n_keys = req->nkeys;
    pb.keys = keys;
    pb.n_workers = req->nworkers;
    pb.workers = req->workers;
    pb.count = req->count;
    pb.dry_run = req->dry_run;
    pb.after.data = req->after.data;
    pb.after.len = req->after.len;
    rc = roo__wire_frame_append(&pb.base, ROO__EXTERNAL_FRAME_MAX, out);
    free(keys);
    return rc;
}

int roo__wire_ext_request_decode(const uint8_t *p, size_t len, roo__ext_request *ret_req)
{
    Roo__ExternalRequest *pb;
    roo__ext_request r = { 0 };
    int rc = 0;

    if (len > ROO__EXTERNAL_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__external_request__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    switch (pb->command) {
    case ROO__EXTERNAL_REQUEST__COMMAND__STATUS:
        r.cmd = ROO__EXT_STATUS;
        break;
    case ROO__EXTERNAL_REQUEST__COMMAND__SHUTDOWN:
        r.cmd = ROO__EXT_SHUTDOWN;
        break;
    case ROO__EXTERNAL_REQUEST__COMMAND__QUERY:
        r.cmd = ROO__EXT_QUERY;
        break;
    case ROO__EXTERNAL_REQUEST__COMMAND__SHRINK:
        r.cmd = ROO__EXT_SHRINK;
        break;
    case ROO__EXTERNAL_REQUEST__COMMAND__MOVE_ABORT:
        r.cmd = ROO__EXT_MOVE_ABORT;
        break;
    default:
        rc = ROO_EWIRE;
        break;
    }
    if (rc == 0) {
        r.state = roo__wire_dup_str(pb->state);
        r.nkeys = pb->n_keys;
        r.keys = roo__xcalloc(pb->n_keys ? pb->n_keys : 1, sizeof(*r.keys));
        for (size_t i = 0; i < pb->n_keys; i++)
            if (pb->keys[i].len)
                roo__buf_append(&r.keys[i], pb->keys[i].data, pb->keys[i].len);
        r.nworkers = pb->n_workers;
        r.workers = roo__xcalloc(pb->n_workers ? pb->n_workers : 1, sizeof(char *));
        for (size_t i = 0; i < pb->n_workers; i++)
            r.workers[i] = roo__wire_dup_str(pb->workers[i]);
        r.count = pb->count;
        r.dry_run = pb->dry_run;
        if (pb->after.len)
            roo__buf_append(&r.after, pb->after.data, pb->after.len);
    }
    roo__external_request__free_unpacked(pb, NULL);
    if (rc == 0)
        *ret_req = r;
    return rc;
}

void roo__wire_ext_request_finish(roo__ext_request *req)
{
    for (size_t i = 0; i < req->nkeys; i++)
        roo__buf_finish(&req->keys[i]);
    free(req->keys);
    free(req->state);
    for (size_t i = 0; i < req->nworkers; i++)
        free(req->workers[i]);
    free(req->workers);
    roo__buf_finish(&req->after);
    memset(req, 0, sizeof(*req));
}

int roo__wire_ext_reply_encode(bool ok, const char *json, const char *error, roo__buf *out)
{
    Roo__ExternalReply pb = ROO__EXTERNAL_REPLY__INIT;

    pb.ok = ok;
    pb.json = (char *)(json ? json : "");
    pb.error = (char *)(error ? error : "");
    return roo__wire_frame_append(&pb.base, ROO__EXTERNAL_FRAME_MAX, out);
}

int roo__wire_ext_reply_decode(const uint8_t *p, size_t len, bool *ret_ok, char **ret_json,
                               char **ret_error)
{
    Roo__ExternalReply *pb;

    if (len > ROO__EXTERNAL_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__external_reply__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    *ret_ok = pb->ok;
    *ret_json = roo__wire_dup_str(pb->json);
    *ret_error = roo__wire_dup_str(pb->error);
    roo__external_reply__free_unpacked(pb, NULL);
    return 0;
}
