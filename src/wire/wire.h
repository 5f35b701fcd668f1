/* wire.h: roo's protobuf messages, converted to and from plain C structs.
 *
 * This module is the only one that includes protobuf-c headers: the rest of roo sees the
 * engine types below. Decoders check sizes before they allocate, copy what they keep and
 * free what protobuf-c unpacked before returning. Encoders append one whole frame to a
 * roo__buf:
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       4     payload length N, u32 big-endian
 *   4       N     one protobuf message (ControlMsg, DataMsg, ExternalRequest/Reply)
 */
#ifndef ROO_WIRE_H
#define ROO_WIRE_H

#include "common/buf.h"
#include "common/hist.h"

/* On-disk format of the state database; a worker refuses a directory with another one. */
#define ROO__FORMAT_VERSION 1

/* Version of the cluster protocol; workers of different versions refuse each other.
 * 2: route buffers carry runs of messages (engine-int.h). */
#define ROO__PROTOCOL_VERSION 2

/* Frame size limits, checked before anything is allocated. */
#define ROO__META_MAX (16u * 1024u * 1024u)
#define ROO__CONTROL_FRAME_MAX (16u * 1024u * 1024u)
#define ROO__DATA_FRAME_MAX (256u * 1024u * 1024u)
#define ROO__EXTERNAL_FRAME_MAX (1u * 1024u * 1024u)
#define ROO__FRAME_HDR 4

typedef struct roo__worker_info {
    char *name;
    char *control_addr;
    char *data_addr;
    uint32_t threads;
    char *external_addr; /* "" when the worker has no --external */
    bool left;           /* it left the cluster: owns nothing, its index stays taken */
} roo__worker_info;

typedef struct roo__topology {
    uint64_t cluster_id;
    char *app_name;
    uint32_t partitions;
    roo__worker_info *workers;
    size_t nworkers;
    uint32_t *owner; /* partitions entries */
    uint64_t version;
    bool complete; /* formation finished: every worker had the table */
} roo__topology;

void roo__topology_finish(roo__topology *t);
void roo__topology_copy(const roo__topology *src, roo__topology *ret_copy);
void roo__worker_info_copy(const roo__worker_info *src, roo__worker_info *ret_copy);
void roo__worker_info_finish(roo__worker_info *w);

typedef struct roo__meta {
    uint32_t format_version;
    char *app_name;
    char *worker_name;
    uint32_t partitions;
    char **state_names;
    size_t nstate_names;
    char *roo_version;
    uint64_t created_unix_ms;
    bool has_topology;
    roo__topology topology;
    bool has_pending; /* a partition move under way: the table after it */
    roo__topology pending;
} roo__meta;

/* Append the encoding of *m to out (no frame header: it is stored, not sent). */
int roo__wire_meta_encode(const roo__meta *m, roo__buf *out);

/* Decode; on success *ret_meta owns its strings (release with roo__wire_meta_finish). */
int roo__wire_meta_decode(const uint8_t *p, size_t len, roo__meta *ret_meta);
void roo__wire_meta_finish(roo__meta *m);

/* ---- control channel ---- */

/* Room for WorkerStats' strings, their 0 included. */
#define ROO__STATS_VERSION_CAP 32
#define ROO__STATS_ADDR_CAP 128

typedef struct roo__worker_stats {
    char *name;
    uint64_t frames_in;
    uint64_t records_out;
    uint64_t routed_out;
    uint64_t routed_in;
    uint64_t keys;
    uint64_t commits;
    bool ready;
    uint32_t partitions_owned;
    uint32_t source_connections;
    /* Fixed arrays, not heap strings: copies of a worker's figures (status queries, the
     * initializer's peers) stay plain struct assignments with name the only thing to free.
     * The decoder refuses a message whose strings do not fit with their 0. */
    char version[ROO__STATS_VERSION_CAP];
    uint64_t uptime_ms;
    char metrics_address[ROO__STATS_ADDR_CAP]; /* "" without --metrics */
    uint32_t sinks, sinks_connected;
    uint64_t held_bytes;        /* committed output not yet written, all sinks */
    uint64_t undelivered_bytes; /* held, plus written but not acknowledged (TCP) */
    uint64_t callback_errors;
    uint64_t decoder_rejections;
    double frames_in_rate; /* per second over the last ~5 s; finite and >= 0 when decoded */
    double records_out_rate;
    /* End to end, every pipeline merged, since the start (common/hist.h's bins). */
    uint64_t latency_bins[ROO__HIST_BINS];
    uint64_t latency_count;
    uint64_t link_backlog_bytes; /* routed to peers, not yet acknowledged */
} roo__worker_stats;

typedef enum roo__ctl_kind {
    ROO__CTL_NONE = 0,
    ROO__CTL_HELLO,
    ROO__CTL_REFUSE,
    ROO__CTL_TOPOLOGY,
    ROO__CTL_CONNECTIONS_READY,
    ROO__CTL_CLUSTER_READY,
    ROO__CTL_HEARTBEAT,
    ROO__CTL_STATUS_QUERY,
    ROO__CTL_STATUS_REPLY,
    ROO__CTL_SHUTDOWN,
    ROO__CTL_DRAIN_QUERY,
    ROO__CTL_DRAIN_REPORT,
    ROO__CTL_EXIT,
    ROO__CTL_MIGRATE,
    ROO__CTL_MIGRATE_REPORT,
} roo__ctl_kind;

/* Phases of a partition move (Migrate.phase). */
#define ROO__MIG_HOLD 1
#define ROO__MIG_TRANSFER 2
#define ROO__MIG_PRECOPY 3 /* comes first: see proto/roo.proto, Migrate */
#define ROO__MIG_ABORT 4   /* not a phase: drop the move (see proto/roo.proto, Migrate) */

/* One control message; only the fields of its kind are meaningful. */
typedef struct roo__ctl {
    roo__ctl_kind kind;
    /* HELLO */
    uint32_t protocol_version;
    char *app_name;
    char *roo_version;
    roo__worker_info worker;
    uint64_t cluster_id; /* HELLO, CLUSTER_READY */
    bool join;           /* HELLO */
    uint32_t join_count;
    /* REFUSE, SHUTDOWN */
    char *reason;
    char *initializer; /* REFUSE: "" or where to ask instead */
    /* TOPOLOGY, MIGRATE */
    roo__topology topology;
    /* MIGRATE, MIGRATE_REPORT */
    uint64_t epoch;
    uint32_t phase;
    uint32_t precopy_round; /* MIGRATE, phase PRECOPY */
    /* CONNECTIONS_READY, DRAIN_REPORT, MIGRATE_REPORT */
    char *worker_name;
    /* HEARTBEAT: stats[0]; STATUS_REPLY: all */
    roo__worker_stats *stats;
    size_t nstats;
    /* STATUS_QUERY, STATUS_REPLY */
    uint64_t query_id;
    /* DRAIN_QUERY, DRAIN_REPORT */
    uint64_t round;
    bool idle;
    uint64_t sent;
    uint64_t received;
} roo__ctl;

int roo__wire_ctl_encode(const roo__ctl *m, roo__buf *out);
/* Decode one frame's payload; ROO_EWIRE if it is not a control message. */
int roo__wire_ctl_decode(const uint8_t *p, size_t len, roo__ctl *ret_msg);
void roo__wire_ctl_finish(roo__ctl *m);
const char *roo__wire_ctl_name(roo__ctl_kind kind);

/* ---- data channel ---- */

typedef enum roo__data_kind {
    ROO__DATA_NONE = 0,
    ROO__DATA_HELLO,
    ROO__DATA_BATCH,
    ROO__DATA_ACK,
    ROO__DATA_CHUNK,         /* decode it with roo__wire_data_chunk_decode */
    ROO__DATA_STREAM_ASK,    /* decode it with roo__wire_stream_decode */
    ROO__DATA_STREAM_ANSWER, /* ... */
} roo__data_kind;

typedef struct roo__state_chunk {
    uint64_t epoch;
    uint32_t partition;
    bool last;
    bool precopy;
    uint32_t round;   /* precopy: the pre-copy round (Migrate.round) */
    roo__buf records; /* see StateChunk in proto/roo.proto */
    roo__buf marks;
} roo__state_chunk;

int roo__wire_data_chunk_encode(const roo__state_chunk *c, roo__buf *out);
/* Decode a CHUNK frame's payload, appending its bytes to ret_chunk's buffers. */
int roo__wire_data_chunk_decode(const uint8_t *p, size_t len, roo__state_chunk *ret_chunk);

typedef struct roo__data_hello {
    uint32_t protocol_version;
    uint64_t cluster_id;
    uint64_t incarnation;
    char worker[72];
} roo__data_hello;

int roo__wire_data_ack_encode(uint32_t thread, uint64_t seq, roo__buf *out);

int roo__wire_data_hello_encode(const roo__data_hello *h, roo__buf *out);

/* Frame one batch of routed messages for the receiver's thread `thread`; read_ns and
 * pipeline stamp the read of its first message (for the latency histograms). */
int roo__wire_data_batch_encode(uint32_t thread, uint64_t seq, uint32_t count, int64_t read_ns,
                                uint32_t pipeline, const uint8_t *events, size_t len,
                                roo__buf *out);

/*
 * The same frame as roo__wire_data_batch_encode's, in two pieces: the bytes written to
 * ret_head (at most ROO__DATA_BATCH_HEAD_MAX: the frame's length, the message and the
 * batch's fields up to the events' length), then the len bytes of the events, which the
 * caller sends from where they are. The batch's fields go before its events (protobuf
 * readers take fields in any order).
 */
#define ROO__DATA_BATCH_HEAD_MAX 64
int roo__wire_data_batch_head(uint32_t thread, uint64_t seq, uint32_t count, int64_t read_ns,
                              uint32_t pipeline, size_t len, uint8_t *ret_head,
                              size_t *ret_head_len);

/*
 * Decode a data frame's payload. For a HELLO, *ret_hello is filled; for a BATCH, the
 * events are appended to events_out (NULL: not wanted; an empty events_out gets them
 * unpacked into its own buffer, grown to the frame's length, with no copy) and the header
 * fields returned (the read stamp only if
 * ret_stamp is not NULL: ret_stamp[0] the read's wall clock, [1] its pipeline, unchecked);
 * for an ACK, thread and seq.
 */
int roo__wire_data_decode(const uint8_t *p, size_t len, roo__data_kind *ret_kind,
                          roo__data_hello *ret_hello, uint32_t *ret_thread, uint64_t *ret_seq,
                          uint32_t *ret_count, int64_t *ret_stamp, roo__buf *events_out);

/* A StreamAsk (value: the stream) or a StreamAnswer (value: the position). */
int roo__wire_stream_ask_encode(uint64_t ask_id, uint64_t stream, roo__buf *out);
int roo__wire_stream_answer_encode(uint64_t ask_id, uint64_t position, roo__buf *out);
/* Decode either from a data frame's payload; ROO_EWIRE if it is neither. */
int roo__wire_stream_decode(const uint8_t *p, size_t len, roo__data_kind *ret_kind,
                            uint64_t *ret_ask_id, uint64_t *ret_value);

/* ---- resumable sources ---- */

/* The 8 bytes that open a resumable source connection: "ROO\0RSM1". */
#define ROO__SOURCE_MAGIC "ROO\0RSM1"
#define ROO__SOURCE_MAGIC_LEN 8
#define ROO__SOURCE_FRAME_MAX 4096u
#define ROO__STREAM_NAME_MAX 128

int roo__wire_source_hello_encode(const char *stream, uint64_t next_offset, roo__buf *out);
/* Payload of the hello frame (after magic and length); stream_buf gets the name. */
int roo__wire_source_hello_decode(const uint8_t *p, size_t len, char *stream_buf, size_t cap,
                                  uint64_t *ret_next_offset);

typedef enum roo__source_reply_kind {
    ROO__SRC_WELCOME = 1,
    ROO__SRC_ACK = 2,
    ROO__SRC_REFUSED = 3,
} roo__source_reply_kind;

/* A framed reply (u32 BE length + SourceReply). text is used by REFUSED only. */
int roo__wire_source_reply_encode(roo__source_reply_kind kind, uint64_t value, const char *text,
                                  roo__buf *out);
int roo__wire_source_reply_decode(const uint8_t *p, size_t len, roo__source_reply_kind *ret_kind,
                                  uint64_t *ret_value, char *text_buf, size_t text_cap);

/* ---- external channel ---- */

typedef enum roo__ext_command {
    ROO__EXT_STATUS = 0,
    ROO__EXT_SHUTDOWN = 1,
    ROO__EXT_QUERY = 2,
    ROO__EXT_SHRINK = 3,
    ROO__EXT_MOVE_ABORT = 4,
} roo__ext_command;

typedef struct roo__ext_request {
    roo__ext_command cmd;
    roo__buf *keys; /* QUERY: the keys asked for (none: all) */
    size_t nkeys;
    char *state;    /* QUERY: state type name, "" for the first */
    char **workers; /* SHRINK: by name */
    size_t nworkers;
    uint32_t count; /* SHRINK: or how many */
    bool dry_run;   /* SHRINK: only say which could leave */
    roo__buf after; /* QUERY of all keys: the previous page's "next" (empty: the first) */
} roo__ext_request;

int roo__wire_ext_request_encode(const roo__ext_request *req, roo__buf *out);
/* On success *ret_req owns its keys and state (release with roo__wire_ext_request_finish). */
int roo__wire_ext_request_decode(const uint8_t *p, size_t len, roo__ext_request *ret_req);
void roo__wire_ext_request_finish(roo__ext_request *req);
int roo__wire_ext_reply_encode(bool ok, const char *json, const char *error, roo__buf *out);
/* *ret_json / *ret_error are malloc'ed (possibly empty strings); free them. */
int roo__wire_ext_reply_decode(const uint8_t *p, size_t len, bool *ret_ok, char **ret_json,
                               char **ret_error);

#endif /* ROO_WIRE_H */
