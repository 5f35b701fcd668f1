/* wire.c: packing and unpacking of roo's protobuf messages with protobuf-c: the cluster's own
 * (topology, meta, control, data); clients' frames are in clients.c. */
#include "wire/wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "roo.pb-c.h"
#include "wire/wire-int.h"

char *roo__wire_dup_str(const char *s)
{
    return roo__xstrdup(s ? s : "");
}

int roo__wire_frame_append(const ProtobufCMessage *msg, size_t limit, roo__buf *out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *p;

    if (n > limit)
        return ROO_EMSGSIZE;
    p = roo__buf_reserve(out, ROO__FRAME_HDR + n);
    roo__store_be32(p, (uint32_t)n);
    protobuf_c_message_pack(msg, p + ROO__FRAME_HDR);
    out->len += ROO__FRAME_HDR + n;
    return 0;
}

/* ---- topology ---- */

void roo__worker_info_finish(roo__worker_info *w)
{
    free(w->name);
    free(w->control_addr);
    free(w->data_addr);
    free(w->external_addr);
    memset(w, 0, sizeof(*w));
}

void roo__worker_info_copy(const roo__worker_info *src, roo__worker_info *ret_copy)
{
    ret_copy->name = roo__wire_dup_str(src->name);
    ret_copy->control_addr = roo__wire_dup_str(src->control_addr);
    ret_copy->data_addr = roo__wire_dup_str(src->data_addr);
    ret_copy->threads = src->threads;
    ret_copy->external_addr = roo__wire_dup_str(src->external_addr);
    ret_copy->left = src->left;
}

void roo__topology_finish(roo__topology *t)
{
    if (!t)
        return;
    free(t->app_name);
    for (size_t i = 0; i < t->nworkers; i++)
        roo__worker_info_finish(&t->workers[i]);
    free(t->workers);
    free(t->owner);
    memset(t, 0, sizeof(*t));
}

void roo__topology_copy(const roo__topology *src, roo__topology *ret_copy)
{
    roo__topology t = *src;

    t.app_name = roo__wire_dup_str(src->app_name);
    t.workers = roo__xcalloc(src->nworkers ? src->nworkers : 1, sizeof(*t.workers));
    for (size_t i = 0; i < src->nworkers; i++)
        roo__worker_info_copy(&src->workers[i], &t.workers[i]);
    t.owner = roo__xcalloc(src->partitions ? src->partitions : 1, sizeof(uint32_t));
    if (src->partitions)
        memcpy(t.owner, src->owner, src->partitions * sizeof(uint32_t));
    *ret_copy = t;
}

/* Views of our structs as protobuf-c messages; the arrays they point to are filled by the
 * caller and freed with free_pb_topology. */
static void to_pb_worker(const roo__worker_info *w, Roo__WorkerInfo *pb)
{
    roo__worker_info__init(pb);
    pb->name = w->name;
    pb->control_addr = w->control_addr;
    pb->data_addr = w->data_addr;
    pb->threads = w->threads;
    pb->external_addr = w->external_addr ? w->external_addr : (char *)"";
    pb->left = w->left;
}

static void to_pb_topology(const roo__topology *t, Roo__Topology *pb, Roo__WorkerInfo **ret_ws,
                           Roo__WorkerInfo ***ret_wps)
{
    Roo__WorkerInfo *ws = roo__xcalloc(t->nworkers ? t->nworkers : 1, sizeof(*ws));
    Roo__WorkerInfo **wps = roo__xcalloc(t->nworkers ? t->nworkers : 1, sizeof(*wps));

    roo__topology__init(pb);
    pb->cluster_id = t->cluster_id;
    pb->app_name = t->app_name;
    pb->partitions = t->partitions;
    pb->version = t->version;
    for (size_t i = 0; i < t->nworkers; i++) {
        to_pb_worker(&t->workers[i], &ws[i]);
        wps[i] = &ws[i];
    }
    pb->n_workers = t->nworkers;
    pb->workers = wps;
    pb->n_owner = t->partitions;
    pb->owner = t->owner;
    pb->complete = t->complete;
    *ret_ws = ws;
    *ret_wps = wps;
}

static void from_pb_worker(const Roo__WorkerInfo *pb, roo__worker_info *w)
{
    w->name = roo__wire_dup_str(pb ? pb->name : NULL);
    w->control_addr = roo__wire_dup_str(pb ? pb->control_addr : NULL);
    w->data_addr = roo__wire_dup_str(pb ? pb->data_addr : NULL);
    w->threads = pb ? pb->threads : 0;
    w->external_addr = roo__wire_dup_str(pb ? pb->external_addr : NULL);
    w->left = pb ? pb->left : false;
}

static int from_pb_topology(const Roo__Topology *pb, roo__topology *t)
{
    memset(t, 0, sizeof(*t));
    if (!pb || pb->n_owner != pb->partitions || pb->partitions == 0 || pb->partitions > 65535 ||
        pb->n_workers == 0)
        return ROO_EWIRE;
    for (size_t i = 0; i < pb->n_owner; i++)
        if (pb->owner[i] >= pb->n_workers)
            return ROO_EWIRE;
    t->cluster_id = pb->cluster_id;
    t->app_name = roo__wire_dup_str(pb->app_name);
    t->partitions = pb->partitions;
    t->version = pb->version;
    t->complete = pb->complete;
    t->nworkers = pb->n_workers;
    t->workers = roo__xcalloc(pb->n_workers, sizeof(*t->workers));
    for (size_t i = 0; i < pb->n_workers; i++)
        from_pb_worker(pb->workers[i], &t->workers[i]);
    t->owner = roo__xcalloc(pb->partitions, sizeof(uint32_t));
    memcpy(t->owner, pb->owner, pb->partitions * sizeof(uint32_t));
    return 0;
}

/* ---- meta ---- */

int roo__wire_meta_encode(const roo__meta *m, roo__buf *out)
{
    Roo__WorkerMeta pb = ROO__WORKER_META__INIT;
    Roo__Topology tpb, ppb;
    Roo__WorkerInfo *ws = NULL, **wps = NULL, *pws = NULL, **pwps = NULL;
    size_t n;
    int rc = 0;

    pb.format_version = m->format_version;
    pb.app_name = m->app_name;
    pb.worker_name = m->worker_name;
    pb.partitions = m->partitions;
    pb.n_state_names = m->nstate_names;
    pb.state_names = m->state_names;
    pb.roo_version = m->roo_version;
    pb.created_unix_ms = m->created_unix_ms;
    if (m->has_topology) {
        to_pb_topology(&m->topology, &tpb, &ws, &wps);
        pb.topology = &tpb;
    }
    if (m->has_pending) {
        to_pb_topology(&m->pending, &ppb, &pws, &pwps);
        pb.pending = &ppb;
    }
    n = roo__worker_meta__get_packed_size(&pb);
    if (n > ROO__META_MAX) {
        rc = ROO_EWIRE;
        goto out;
    }
    roo__buf_reserve(out, n);
    out->len += roo__worker_meta__pack(&pb, out->data + out->len);
out:
    free(ws);
    free(wps);
    free(pws);
    free(pwps);
    return rc;
}

int roo__wire_meta_decode(const uint8_t *p, size_t len, roo__meta *ret_meta)
{
    Roo__WorkerMeta *pb;
    roo__meta m;
    int rc = 0;

    if (len > ROO__META_MAX)
        return ROO_EWIRE;
    pb = roo__worker_meta__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    memset(&m, 0, sizeof(m));
    m.format_version = pb->format_version;
    m.app_name = roo__wire_dup_str(pb->app_name);
    m.worker_name = roo__wire_dup_str(pb->worker_name);
    m.partitions = pb->partitions;
    m.roo_version = roo__wire_dup_str(pb->roo_version);
    m.created_unix_ms = pb->created_unix_ms;
    m.nstate_names = pb->n_state_names;
    m.state_names = roo__xcalloc(pb->n_state_names ? pb->n_state_names : 1, sizeof(char *));
    for (size_t i = 0; i < pb->n_state_names; i++)
        m.state_names[i] = roo__wire_dup_str(pb->state_names[i]);
    if (pb->topology) {
        rc = from_pb_topology(pb->topology, &m.topology);
        m.has_topology = rc == 0;
    }
    if (rc == 0 && pb->pending) {
        rc = from_pb_topology(pb->pending, &m.pending);
        m.has_pending = rc == 0;
    }
    roo__worker_meta__free_unpacked(pb, NULL);
    if (rc < 0) {
        roo__wire_meta_finish(&m);
        return rc;
    }
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
    if (m->has_topology)
        roo__topology_finish(&m->topology);
    if (m->has_pending)
        roo__topology_finish(&m->pending);
    memset(m, 0, sizeof(*m));
}

/* ---- control ---- */

static void to_pb_stats(const roo__worker_stats *s, Roo__WorkerStats *pb)
{
    roo__worker_stats__init(pb);
    pb->name = s->name;
    pb->frames_in = s->frames_in;
    pb->records_out = s->records_out;
    pb->routed_out = s->routed_out;
    pb->routed_in = s->routed_in;
    pb->keys = s->keys;
    pb->commits = s->commits;
    pb->ready = s->ready;
    pb->partitions_owned = s->partitions_owned;
    pb->source_connections = s->source_connections;
    pb->version = (char *)s->version;
    pb->uptime_ms = s->uptime_ms;
    pb->metrics_address = (char *)s->metrics_address;
    pb->sinks = s->sinks;
    pb->sinks_connected = s->sinks_connected;
    pb->held_bytes = s->held_bytes;
    pb->undelivered_bytes = s->undelivered_bytes;
    pb->callback_errors = s->callback_errors;
    pb->decoder_rejections = s->decoder_rejections;
    pb->frames_in_rate = s->frames_in_rate;
    pb->records_out_rate = s->records_out_rate;
    /* Latencies fill the low bins: the empty ones above them are not worth a byte each. */
    pb->n_latency_bins = ROO__HIST_BINS;
    while (pb->n_latency_bins && !s->latency_bins[pb->n_latency_bins - 1])
        pb->n_latency_bins--;
    pb->latency_bins = (uint64_t *)s->latency_bins;
    pb->latency_count = s->latency_count;
    pb->link_backlog_bytes = s->link_backlog_bytes;
}

/* A string from the network into a fixed array; ROO_EWIRE if it does not fit with its 0. */
static int copy_capped(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (n >= cap)
        return ROO_EWIRE;
    memcpy(dst, src ? src : "", n);
    dst[n] = 0;
    return 0;
}

/* A rate from the network: NaN, infinities and negative rates make no sense (and JSON has
 * no NaN), so they are refused like any other malformed field. */
static int rate_ok(double r)
{
    return r >= 0 && r <= 1e300 ? 0 : ROO_EWIRE;
}

/* Every field a peer sends is checked before it is kept: on failure *s holds only a name. */
static int from_pb_stats(const Roo__WorkerStats *pb, roo__worker_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->name = roo__wire_dup_str(pb ? pb->name : NULL);
    if (!pb)
        return 0;
    if (pb->n_latency_bins > ROO__HIST_BINS ||
        copy_capped(s->version, sizeof(s->version), pb->version) < 0 ||
        copy_capped(s->metrics_address, sizeof(s->metrics_address), pb->metrics_address) < 0 ||
        rate_ok(pb->frames_in_rate) < 0 || rate_ok(pb->records_out_rate) < 0) {
        memset(s->version, 0, sizeof(s->version));
        memset(s->metrics_address, 0, sizeof(s->metrics_address));
        return ROO_EWIRE;
    }
    s->frames_in = pb->frames_in;
    s->records_out = pb->records_out;
    s->routed_out = pb->routed_out;
    s->routed_in = pb->routed_in;
    s->keys = pb->keys;
    s->commits = pb->commits;
    s->ready = pb->ready;
    s->partitions_owned = pb->partitions_owned;
    s->source_connections = pb->source_connections;
    s->uptime_ms = pb->uptime_ms;
    s->sinks = pb->sinks;
    s->sinks_connected = pb->sinks_connected;
    s->held_bytes = pb->held_bytes;
    s->undelivered_bytes = pb->undelivered_bytes;
    s->callback_errors = pb->callback_errors;
    s->decoder_rejections = pb->decoder_rejections;
    s->frames_in_rate = pb->frames_in_rate;
    s->records_out_rate = pb->records_out_rate;
    if (pb->n_latency_bins)
        memcpy(s->latency_bins, pb->latency_bins, pb->n_latency_bins * sizeof(uint64_t));
    s->latency_count = pb->latency_count;
    s->link_backlog_bytes = pb->link_backlog_bytes;
    return 0;
}

const char *roo__wire_ctl_name(roo__ctl_kind kind)
{
    static const char *const names[] = {
        "none",          "hello",        "refuse",       "topology",     "connections-ready",
        "cluster-ready", "heartbeat",    "status-query", "status-reply", "shutdown",
        "drain-query",   "drain-report", "exit",         "migrate",      "migrate-report"
    };
    return (size_t)kind < ROO__ARRAY_SIZE(names) ? names[kind] : "?";
}

int roo__wire_ctl_encode(const roo__ctl *m, roo__buf *out)
{
    Roo__ControlMsg pb = ROO__CONTROL_MSG__INIT;
    Roo__Hello hello;
    Roo__WorkerInfo wi;
    Roo__Refuse refuse;
    Roo__Topology topo;
    Roo__WorkerInfo *ws = NULL, **wps = NULL;
    Roo__ConnectionsReady cr;
    Roo__ClusterReady ready;
    Roo__Heartbeat hb;
    Roo__StatusQuery sq;
    Roo__StatusReply srep;
    Roo__Shutdown sd;
    Roo__DrainQuery dq;
    Roo__DrainReport dr;
    Roo__Exit ex;
    Roo__Migrate mig;
    Roo__MigrateReport mr;
    Roo__WorkerStats *st = NULL, **stp = NULL;
    int rc;

    if (m->nstats) {
        st = roo__xcalloc(m->nstats, sizeof(*st));
        stp = roo__xcalloc(m->nstats, sizeof(*stp));
        for (size_t i = 0; i < m->nstats; i++) {
            to_pb_stats(&m->stats[i], &st[i]);
            stp[i] = &st[i];
        }
    }
    switch (m->kind) {
    case ROO__CTL_HELLO:
        roo__hello__init(&hello);
        to_pb_worker(&m->worker, &wi);
        hello.protocol_version = m->protocol_version;
        hello.app_name = m->app_name;
        hello.roo_version = m->roo_version;
        hello.worker = &wi;
        hello.cluster_id = m->cluster_id;
        hello.join = m->join;
        hello.join_count = m->join_count;
        pb.msg_case = ROO__CONTROL_MSG__MSG_HELLO;
        pb.hello = &hello;
        break;
    case ROO__CTL_REFUSE:
        roo__refuse__init(&refuse);
        refuse.reason = m->reason;
        refuse.initializer = m->initializer ? m->initializer : (char *)"";
        pb.msg_case = ROO__CONTROL_MSG__MSG_REFUSE;
        pb.refuse = &refuse;
        break;
    case ROO__CTL_TOPOLOGY:
        to_pb_topology(&m->topology, &topo, &ws, &wps);
        pb.msg_case = ROO__CONTROL_MSG__MSG_TOPOLOGY;
        pb.topology = &topo;
        break;
    case ROO__CTL_CONNECTIONS_READY:
        roo__connections_ready__init(&cr);
        cr.worker = m->worker_name;
        pb.msg_case = ROO__CONTROL_MSG__MSG_CONNECTIONS_READY;
        pb.connections_ready = &cr;
        break;
    case ROO__CTL_CLUSTER_READY:
        roo__cluster_ready__init(&ready);
        ready.cluster_id = m->cluster_id;
        pb.msg_case = ROO__CONTROL_MSG__MSG_CLUSTER_READY;
        pb.cluster_ready = &ready;
        break;
    case ROO__CTL_HEARTBEAT:
        roo__heartbeat__init(&hb);
        hb.stats = m->nstats ? &st[0] : NULL;
        pb.msg_case = ROO__CONTROL_MSG__MSG_HEARTBEAT;
        pb.heartbeat = &hb;
        break;
    case ROO__CTL_STATUS_QUERY:
        roo__status_query__init(&sq);
        sq.query_id = m->query_id;
        pb.msg_case = ROO__CONTROL_MSG__MSG_STATUS_QUERY;
        pb.status_query = &sq;
        break;
    case ROO__CTL_STATUS_REPLY:
        roo__status_reply__init(&srep);
        srep.query_id = m->query_id;
        srep.n_workers = m->nstats;
        srep.workers = stp;
        pb.msg_case = ROO__CONTROL_MSG__MSG_STATUS_REPLY;
        pb.status_reply = &srep;
        break;
    case ROO__CTL_SHUTDOWN:
        roo__shutdown__init(&sd);
        sd.reason = m->reason;
        pb.msg_case = ROO__CONTROL_MSG__MSG_SHUTDOWN;
        pb.shutdown = &sd;
        break;
    case ROO__CTL_DRAIN_QUERY:
        roo__drain_query__init(&dq);
        dq.round = m->round;
        pb.msg_case = ROO__CONTROL_MSG__MSG_DRAIN_QUERY;
        pb.drain_query = &dq;
        break;
    case ROO__CTL_DRAIN_REPORT:
        roo__drain_report__init(&dr);
        dr.round = m->round;
        dr.worker = m->worker_name;
        dr.idle = m->idle;
        dr.sent = m->sent;
        dr.received = m->received;
        pb.msg_case = ROO__CONTROL_MSG__MSG_DRAIN_REPORT;
        pb.drain_report = &dr;
        break;
    case ROO__CTL_EXIT:
        roo__exit__init(&ex);
        pb.msg_case = ROO__CONTROL_MSG__MSG_EXIT;
        pb.exit = &ex;
        break;
    case ROO__CTL_MIGRATE:
        roo__migrate__init(&mig);
        mig.epoch = m->epoch;
        mig.phase = m->phase;
        mig.round = m->precopy_round;
        to_pb_topology(&m->topology, &topo, &ws, &wps);
        mig.topology = &topo;
        pb.msg_case = ROO__CONTROL_MSG__MSG_MIGRATE;
        pb.migrate = &mig;
        break;
    case ROO__CTL_MIGRATE_REPORT:
        roo__migrate_report__init(&mr);
        mr.epoch = m->epoch;
        mr.phase = m->phase;
        mr.worker = m->worker_name;
        pb.msg_case = ROO__CONTROL_MSG__MSG_MIGRATE_REPORT;
        pb.migrate_report = &mr;
        break;
    default:
        rc = -EINVAL;
        goto out;
    }
    rc = roo__wire_frame_append(&pb.base, ROO__CONTROL_FRAME_MAX, out);
out:
    free(ws);
    free(wps);
    free(st);
    free(stp);
    return rc;
}

int roo__wire_ctl_decode(const uint8_t *p, size_t len, roo__ctl *ret_msg)
{
    Roo__ControlMsg *pb;
    roo__ctl m;
    int rc = 0;

    if (len > ROO__CONTROL_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__control_msg__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    memset(&m, 0, sizeof(m));
    switch (pb->msg_case) {
    case ROO__CONTROL_MSG__MSG_HELLO:
        m.kind = ROO__CTL_HELLO;
        m.protocol_version = pb->hello->protocol_version;
        m.app_name = roo__wire_dup_str(pb->hello->app_name);
        m.roo_version = roo__wire_dup_str(pb->hello->roo_version);
        from_pb_worker(pb->hello->worker, &m.worker);
        m.cluster_id = pb->hello->cluster_id;
        m.join = pb->hello->join;
        m.join_count = pb->hello->join_count;
        break;
    case ROO__CONTROL_MSG__MSG_REFUSE:
        m.kind = ROO__CTL_REFUSE;
        m.reason = roo__wire_dup_str(pb->refuse->reason);
        m.initializer = roo__wire_dup_str(pb->refuse->initializer);
        break;
    case ROO__CONTROL_MSG__MSG_TOPOLOGY:
        m.kind = ROO__CTL_TOPOLOGY;
        rc = from_pb_topology(pb->topology, &m.topology);
        break;
    case ROO__CONTROL_MSG__MSG_CONNECTIONS_READY:
        m.kind = ROO__CTL_CONNECTIONS_READY;
        m.worker_name = roo__wire_dup_str(pb->connections_ready->worker);
        break;
    case ROO__CONTROL_MSG__MSG_CLUSTER_READY:
        m.kind = ROO__CTL_CLUSTER_READY;
        m.cluster_id = pb->cluster_ready->cluster_id;
        break;
    case ROO__CONTROL_MSG__MSG_HEARTBEAT:
        m.kind = ROO__CTL_HEARTBEAT;
        m.nstats = 1;
        m.stats = roo__xcalloc(1, sizeof(*m.stats));
        rc = from_pb_stats(pb->heartbeat->stats, &m.stats[0]);
        break;
    case ROO__CONTROL_MSG__MSG_STATUS_QUERY:
        m.kind = ROO__CTL_STATUS_QUERY;
        m.query_id = pb->status_query->query_id;
        break;
    case ROO__CONTROL_MSG__MSG_STATUS_REPLY:
        m.kind = ROO__CTL_STATUS_REPLY;
        m.query_id = pb->status_reply->query_id;
        m.nstats = pb->status_reply->n_workers;
        m.stats = roo__xcalloc(m.nstats ? m.nstats : 1, sizeof(*m.stats));
        for (size_t i = 0; i < m.nstats && rc == 0; i++)
            rc = from_pb_stats(pb->status_reply->workers[i], &m.stats[i]);
        break;
    case ROO__CONTROL_MSG__MSG_SHUTDOWN:
        m.kind = ROO__CTL_SHUTDOWN;
        m.reason = roo__wire_dup_str(pb->shutdown->reason);
        break;
    case ROO__CONTROL_MSG__MSG_DRAIN_QUERY:
        m.kind = ROO__CTL_DRAIN_QUERY;
        m.round = pb->drain_query->round;
        break;
    case ROO__CONTROL_MSG__MSG_DRAIN_REPORT:
        m.kind = ROO__CTL_DRAIN_REPORT;
        m.round = pb->drain_report->round;
        m.worker_name = roo__wire_dup_str(pb->drain_report->worker);
        m.idle = pb->drain_report->idle;
        m.sent = pb->drain_report->sent;
        m.received = pb->drain_report->received;
        break;
    case ROO__CONTROL_MSG__MSG_EXIT:
        m.kind = ROO__CTL_EXIT;
        break;
    case ROO__CONTROL_MSG__MSG_MIGRATE:
        m.kind = ROO__CTL_MIGRATE;
        m.epoch = pb->migrate->epoch;
        m.phase = pb->migrate->phase;
        m.precopy_round = pb->migrate->round;
        rc = from_pb_topology(pb->migrate->topology, &m.topology);
        break;
    case ROO__CONTROL_MSG__MSG_MIGRATE_REPORT:
        m.kind = ROO__CTL_MIGRATE_REPORT;
        m.epoch = pb->migrate_report->epoch;
        m.phase = pb->migrate_report->phase;
        m.worker_name = roo__wire_dup_str(pb->migrate_report->worker);
        break;
    default:
        rc = ROO_EWIRE;
        break;
    }
    roo__control_msg__free_unpacked(pb, NULL);
    if (rc < 0) {
        roo__wire_ctl_finish(&m);
        return rc;
    }
    *ret_msg = m;
    return 0;
}

void roo__wire_ctl_finish(roo__ctl *m)
{
    if (!m)
        return;
    free(m->app_name);
    free(m->roo_version);
    roo__worker_info_finish(&m->worker);
    free(m->reason);
    free(m->initializer);
    roo__topology_finish(&m->topology);
    free(m->worker_name);
    for (size_t i = 0; i < m->nstats; i++)
        free(m->stats[i].name);
    free(m->stats);
    memset(m, 0, sizeof(*m));
}

/* ---- data ---- */

int roo__wire_data_hello_encode(const roo__data_hello *h, roo__buf *out)
{
    Roo__DataMsg pb = ROO__DATA_MSG__INIT;
    Roo__DataHello hello = ROO__DATA_HELLO__INIT;

    hello.protocol_version = h->protocol_version;
    hello.cluster_id = h->cluster_id;
    hello.incarnation = h->incarnation;
    hello.worker = (char *)h->worker;
    pb.msg_case = ROO__DATA_MSG__MSG_HELLO;
    pb.hello = &hello;
    return roo__wire_frame_append(&pb.base, ROO__DATA_FRAME_MAX, out);
}

int roo__wire_data_batch_encode(uint32_t thread, uint64_t seq, uint32_t count, int64_t read_ns,
                                uint32_t pipeline, const uint8_t *events, size_t len, roo__buf *out)
{
    Roo__DataMsg pb = ROO__DATA_MSG__INIT;
    Roo__DataBatch b = ROO__DATA_BATCH__INIT;

    b.thread = thread;
    b.seq = seq;
    b.count = count;
    b.read_time_ns = read_ns;
    b.pipeline = pipeline;
    b.events.data = (uint8_t *)events;
    b.events.len = len;
    pb.msg_case = ROO__DATA_MSG__MSG_BATCH;
    pb.batch = &b;
    return roo__wire_frame_append(&pb.base, ROO__DATA_FRAME_MAX, out);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/*
 * | u32 BE frame length | 0x12 (DataMsg.batch) | varint batch length |
 * | DataBatch fields 1, 2, 3, 5, 6 (protobuf-c) | 0x22 (DataBatch.events) | varint len | events...
 */
int roo__wire_data_batch_head(uint32_t thread, uint64_t seq, uint32_t count, int64_t read_ns,
                              uint32_t pipeline, size_t len, uint8_t *ret_head,
                              size_t *ret_head_len)
{
    Roo__DataBatch b = ROO__DATA_BATCH__INIT;
    size_t fields, batch, msg, at;
    uint8_t *p = ret_head;

    b.thread = thread;
    b.seq = seq;
    b.count = count;
    b.read_time_ns = read_ns;
    b.pipeline = pipeline; /* no events: an empty bytes field is not packed */
    fields = roo__data_batch__get_packed_size(&b);
    if (len > ROO__DATA_FRAME_MAX)
        return ROO_EMSGSIZE;
    batch = fields + 1 + varint_len(len) + len;
    msg = 1 + varint_len(batch) + batch;
    if (msg > ROO__DATA_FRAME_MAX)
        return ROO_EMSGSIZE;
    roo__store_be32(p, (uint32_t)msg);
    at = ROO__FRAME_HDR;
    p[at++] = (2u << 3) | 2u; /* field 2, length-delimited */
    at += put_varint(p + at, batch);
    at += roo__data_batch__pack(&b, p + at);
    p[at++] = (4u << 3) | 2u;
    at += put_varint(p + at, len);
    *ret_head_len = at;
    return 0;
}

int roo__wire_stream_ask_encode(uint64_t ask_id, uint64_t stream, roo__buf *out)
{
    Roo__DataMsg pb = ROO__DATA_MSG__INIT;
    Roo__StreamAsk a = ROO__STREAM_ASK__INIT;

    a.ask_id = ask_id;
    a.stream = stream;
    pb.msg_case = ROO__DATA_MSG__MSG_STREAM_ASK;
    pb.stream_ask = &a;
    return roo__wire_frame_append(&pb.base, ROO__DATA_FRAME_MAX, out);
}

int roo__wire_stream_answer_encode(uint64_t ask_id, uint64_t position, roo__buf *out)
{
    Roo__DataMsg pb = ROO__DATA_MSG__INIT;
    Roo__StreamAnswer a = ROO__STREAM_ANSWER__INIT;

    a.ask_id = ask_id;
    a.position = position;
    pb.msg_case = ROO__DATA_MSG__MSG_STREAM_ANSWER;
    pb.stream_answer = &a;
    return roo__wire_frame_append(&pb.base, ROO__DATA_FRAME_MAX, out);
}

int roo__wire_stream_decode(const uint8_t *p, size_t len, roo__data_kind *ret_kind,
                            uint64_t *ret_ask_id, uint64_t *ret_value)
{
    Roo__DataMsg *pb;
    int rc = 0;

    if (len > ROO__DATA_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__data_msg__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    if (pb->msg_case == ROO__DATA_MSG__MSG_STREAM_ASK) {
        *ret_kind = ROO__DATA_STREAM_ASK;
        *ret_ask_id = pb->stream_ask->ask_id;
        *ret_value = pb->stream_ask->stream;
    } else if (pb->msg_case == ROO__DATA_MSG__MSG_STREAM_ANSWER) {
        *ret_kind = ROO__DATA_STREAM_ANSWER;
        *ret_ask_id = pb->stream_answer->ask_id;
        *ret_value = pb->stream_answer->position;
    } else {
        rc = ROO_EWIRE;
    }
    roo__data_msg__free_unpacked(pb, NULL);
    return rc;
}

/*
 * protobuf-c's allocator for a data frame. The frame's first allocation of DIRECT_MIN bytes or
 * more (a batch's events) lands in the caller's empty events buffer, which a route keeps
 * from one use to the next: its pages are mapped already. From malloc, a buffer that size
 * was mapped and unmapped for every frame (a page fault per 4 KiB and a TLB shootdown).
 */
#define DIRECT_MIN 4096u
#define DIRECT_MAX (16u * 1024u * 1024u) /* larger frames: malloc's buffer, not kept */

typedef struct data_alloc {
    roo__buf *events;
    bool used;
} data_alloc;

static void *data_alloc_fn(void *ctx, size_t size)
{
    data_alloc *a = ctx;

    if (a->events && !a->used && size >= DIRECT_MIN && size <= a->events->cap) {
        a->used = true;
        return a->events->data;
    }
    return malloc(size);
}

static void data_free_fn(void *ctx, void *ptr)
{
    data_alloc *a = ctx;

    if (a->used && ptr == a->events->data)
        return;
    free(ptr);
}

int roo__wire_data_decode(const uint8_t *p, size_t len, roo__data_kind *ret_kind,
                          roo__data_hello *ret_hello, uint32_t *ret_thread, uint64_t *ret_seq,
                          uint32_t *ret_count, int64_t *ret_stamp, roo__buf *events_out)
{
    data_alloc da = { .events = NULL, .used = false };
    ProtobufCAllocator alloc = { .alloc = data_alloc_fn,
                                 .free = data_free_fn,
                                 .allocator_data = &da };
    Roo__DataMsg *pb;
    bool grown = false, batch;
    int rc = 0;

    if (len > ROO__DATA_FRAME_MAX)
        return ROO_EWIRE;
    if (events_out && events_out->len == 0 && len >= DIRECT_MIN && len <= DIRECT_MAX) {
        if (events_out->cap < len) { /* nothing in it to keep: no realloc's copy */
            roo__buf_finish(events_out);
            grown = true;
        }
        roo__buf_reserve(events_out, len); /* a bytes field is shorter than its frame */
        da.events = events_out;
    }
    pb = roo__data_msg__unpack(&alloc, len, p);
    if (!pb) {
        if (grown) /* a frame that is no message keeps no memory of its size */
            roo__buf_finish(events_out);
        return ROO_EWIRE;
    }
    switch (pb->msg_case) {
    case ROO__DATA_MSG__MSG_HELLO:
        *ret_kind = ROO__DATA_HELLO;
        ret_hello->protocol_version = pb->hello->protocol_version;
        ret_hello->cluster_id = pb->hello->cluster_id;
        ret_hello->incarnation = pb->hello->incarnation;
        snprintf(ret_hello->worker, sizeof(ret_hello->worker), "%s",
                 pb->hello->worker ? pb->hello->worker : "");
        break;
    case ROO__DATA_MSG__MSG_BATCH:
        *ret_kind = ROO__DATA_BATCH;
        *ret_thread = pb->batch->thread;
        *ret_seq = pb->batch->seq;
        *ret_count = pb->batch->count;
        if (ret_stamp) {
            ret_stamp[0] = pb->batch->read_time_ns;
            ret_stamp[1] = pb->batch->pipeline;
        }
        if (!events_out || !pb->batch->events.len)
            break;
        if (da.used && pb->batch->events.data == events_out->data)
            events_out->len = pb->batch->events.len; /* unpacked in place: no copy */
        else
            roo__buf_append(events_out, pb->batch->events.data, pb->batch->events.len);
        break;
    case ROO__DATA_MSG__MSG_ACK:
        *ret_kind = ROO__DATA_ACK;
        *ret_thread = pb->ack->thread;
        *ret_seq = pb->ack->seq;
        break;
    case ROO__DATA_MSG__MSG_CHUNK:
        *ret_kind = ROO__DATA_CHUNK;
        break;
    case ROO__DATA_MSG__MSG_STREAM_ASK:
        *ret_kind = ROO__DATA_STREAM_ASK;
        break;
    case ROO__DATA_MSG__MSG_STREAM_ANSWER:
        *ret_kind = ROO__DATA_STREAM_ANSWER;
        break;
    default:
        rc = ROO_EWIRE;
        break;
    }
    batch = pb->msg_case == ROO__DATA_MSG__MSG_BATCH;
    roo__data_msg__free_unpacked(pb, &alloc);
    if (grown && !batch) /* grown for a frame that brought no events: not kept */
        roo__buf_finish(events_out);
    return rc;
}

int roo__wire_data_ack_encode(uint32_t thread, uint64_t seq, roo__buf *out)
{
    Roo__DataMsg pb = ROO__DATA_MSG__INIT;
    Roo__DataAck a = ROO__DATA_ACK__INIT;

    a.thread = thread;
    a.seq = seq;
    pb.msg_case = ROO__DATA_MSG__MSG_ACK;
    pb.ack = &a;
    return roo__wire_frame_append(&pb.base, ROO__DATA_FRAME_MAX, out);
}

int roo__wire_data_chunk_encode(const roo__state_chunk *c, roo__buf *out)
{
    Roo__DataMsg pb = ROO__DATA_MSG__INIT;
    Roo__StateChunk sc = ROO__STATE_CHUNK__INIT;

    sc.epoch = c->epoch;
    sc.partition = c->partition;
    sc.last = c->last;
    sc.precopy = c->precopy;
    sc.round = c->round;
    sc.records.data = c->records.data;
    sc.records.len = c->records.len;
    sc.marks.data = c->marks.data;
    sc.marks.len = c->marks.len;
    pb.msg_case = ROO__DATA_MSG__MSG_CHUNK;
    pb.chunk = &sc;
    return roo__wire_frame_append(&pb.base, ROO__DATA_FRAME_MAX, out);
}

int roo__wire_data_chunk_decode(const uint8_t *p, size_t len, roo__state_chunk *ret_chunk)
{
    Roo__DataMsg *pb;
    int rc = 0;

    if (len > ROO__DATA_FRAME_MAX)
        return ROO_EWIRE;
    pb = roo__data_msg__unpack(NULL, len, p);
    if (!pb)
        return ROO_EWIRE;
    if (pb->msg_case != ROO__DATA_MSG__MSG_CHUNK || pb->chunk->partition > 65535) {
        rc = ROO_EWIRE;
    } else {
        ret_chunk->epoch = pb->chunk->epoch;
        ret_chunk->partition = pb->chunk->partition;
        ret_chunk->last = pb->chunk->last;
        ret_chunk->precopy = pb->chunk->precopy;
        ret_chunk->round = pb->chunk->round;
        if (pb->chunk->records.len)
            roo__buf_append(&ret_chunk->records, pb->chunk->records.data, pb->chunk->records.len);
        if (pb->chunk->marks.len)
            roo__buf_append(&ret_chunk->marks, pb->chunk->marks.data, pb->chunk->marks.len);
    }
    roo__data_msg__free_unpacked(pb, NULL);
    return rc;
}
