/* wire.c: packing and unpacking of roo's protobuf messages with protobuf-c. */
#include "wire/wire.h"

#include <stdlib.h>

#include "roo.pb-c.h"

int roo__wire_meta_encode(const roo__meta *m, roo__buf *out)
{
    Roo__WorkerMeta pb = ROO__WORKER_META__INIT;
    size_t n;

    pb.format_version = m->format_version;
    pb.app_name = m->app_name;
    pb.worker_name = m->worker_name;
    pb.partitions = m->partitions;
    pb.n_state_names = m->nstate_names;
    pb.state_names = m->state_names;
    pb.roo_version = m->roo_version;
    pb.created_unix_ms = m->created_unix_ms;
    n = roo__worker_meta__get_packed_size(&pb);
    if (n > ROO__META_MAX)
        return ROO_EWIRE;
    roo__buf_reserve(out, n);
    out->len += roo__worker_meta__pack(&pb, out->data + out->len);
    return 0;
}

int roo__wire_meta_decode(const uint8_t *p, size_t len, roo__meta *ret_meta)
{
    Roo__WorkerMeta *pb;
    roo__meta m;

    if (len > ROO__META_MAX)
        return ROO_EWIRE;
    pb = roo__worker_meta__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    memset(&m, 0, sizeof(m));
    m.format_version = pb->format_version;
    m.app_name = roo__xstrdup(pb->app_name);
    m.worker_name = roo__xstrdup(pb->worker_name);
    m.partitions = pb->partitions;
    m.roo_version = roo__xstrdup(pb->roo_version);
    m.created_unix_ms = pb->created_unix_ms;
    m.nstate_names = pb->n_state_names;
    m.state_names = roo__xcalloc(pb->n_state_names, sizeof(char *));
    for (size_t i = 0; i < pb->n_state_names; i++)
        m.state_names[i] = roo__xstrdup(pb->state_names[i]);
    roo__worker_meta__free_unpacked(pb, NULL);
    *ret_meta = m;
    return 0;
}

void roo__wire_meta_finish(roo__meta *m)
{
    if (!m)
        return;
    free(m->app_name);
    free(m->worker_name);
    free(m->roo_version);
    for (size_t i = 0; i < m->nstate_names; i++)
        free(m->state_names[i]);
    free(m->state_names);
    memset(m, 0, sizeof(*m));
}
