/* resume.h: a processing thread's exactly-once bookkeeping for resumable sources.
 *
 * Identity: every message derived from frame k of resumable stream S carries (S, k, n), n
 * being its position among the messages of that frame that reach a state step. Messages
 * of one stream bound for one partition arrive at the partition's thread in that order,
 * whatever path they took, so one high-water mark per (stream, partition) recognises a
 * message seen before: the dedup table below. Its changes are written to the `streams`
 * database in the same transaction as the state they guard.
 *
 * Durability: a frame is durably applied once the batch that read it is committed and
 * every route buffer that batch sent to other threads or workers has been applied and
 * committed there. The durability FIFO tracks that per sealed batch; a resumable
 * connection remembers, per batch, how far its frames had got, and acknowledges to its
 * client up to the newest durable batch.
 *
 * Both belong to one shard; nothing here locks.
 */
#ifndef ROO_RESUME_H
#define ROO_RESUME_H

#include "common/buf.h"
#include "common/ring.h"
#include "state/keys.h"

typedef struct roo__dedup roo__dedup;

roo__dedup *roo__dedup_create(void);
void roo__dedup_destroy(roo__dedup *d);

/*
 * True if message (offset, sub) of stream for partition was applied before (skip it);
 * otherwise record it as the new high-water mark, to be saved with the current batch.
 */
bool roo__dedup_check(roo__dedup *d, uint64_t stream, uint16_t partition, uint64_t offset,
                      uint32_t sub);

/* Recovery: install a saved high-water mark. */
void roo__dedup_load(roo__dedup *d, uint64_t stream, uint16_t partition, uint64_t offset,
                     uint32_t sub);

/* Call fn for each mark changed since the last call (key and value of the streams database). */
typedef void (*roo__dedup_emit_fn)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                                   size_t vlen);
void roo__dedup_flush(roo__dedup *d, roo__dedup_emit_fn fn, void *arg);

/* The clock (monotonic seconds) that dates streams' last use; set at each seal. */
void roo__dedup_tick(roo__dedup *d, int64_t now_s);

/*
 * Forget every stream whose marks were last used before before_s: fn gets the streams
 * database key of each of its marks (val NULL, vlen 0) so that they can be deleted in the
 * current batch. Returns how many streams were forgotten.
 */
size_t roo__dedup_expire(roo__dedup *d, int64_t before_s, roo__dedup_emit_fn fn, void *arg);

/* Key and value layout of the streams database: state/keys.h. */
/* ---- durability of sealed batches ---- */

struct roo__dur_rec {
    uint64_t batch_seq;
    uint32_t routes_pending; /* route buffers sent, not yet committed where they went */
    bool returned;           /* the batch itself committed (and came back) */
};

typedef struct roo__durability {
    ROO__RING(struct roo__dur_rec) recs; /* sealed batches not yet durable, in seal order */
    uint64_t durable_seq;                /* every batch up to this one is durable */
    /* Route buffers of the batch not sealed yet that were done before it was (a thread
     * with no free batch still sends what it routed, and the peer may be quick). */
    uint64_t early_seq;
    uint32_t early_done;
} roo__durability;

void roo__dur_sealed(roo__durability *d, uint64_t batch_seq, uint32_t routes);
void roo__dur_returned(roo__durability *d, uint64_t batch_seq);
void roo__dur_route_done(roo__durability *d, uint64_t batch_seq);
/* A sealed batch sends n more route buffers (held messages of an aborted move, re-routed). */
void roo__dur_add_routes(roo__durability *d, uint64_t batch_seq, uint32_t n);
/* Advance durable_seq past complete batches; true if it moved. */
bool roo__dur_advance(roo__durability *d);
void roo__dur_finish(roo__durability *d);

#endif /* ROO_RESUME_H */
