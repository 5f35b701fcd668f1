/* streams.h: the worker's registry of resumable source streams: how far each was read (and
 * stored), and which ones have a live connection.
 *
 * A resumable hello says "continue stream S at frame N". The worker trusts N only as far as
 * S is known to have been read: every batch that reads frames of S also stores S's read
 * position (an `ingress` record, the streams mark of partition ROO__STREAM_INGRESS, see
 * keys.h) in the same commit, and an acknowledgement to the client never passes a committed
 * batch. So a client's N is at most the stored position, and a larger N (an impostor
 * pretending that frames were applied, so that the real client's frames would be dropped as
 * repeats) is refused.
 *
 * In a cluster a client may continue its stream on another worker. Each stream has a
 * keeper: the owner of partition partition_of(S). The batch that reads frames of S also
 * routes the read position to the keeper, which stores it as the mark of (S with bit 0
 * clear, that partition): it moves with the partition (grow, shrink) and ages with the
 * stream. A hello for more than this worker knows asks the keeper (shard -> io -> cluster ->
 * keeper and back); while the keeper cannot answer, the hello is refused and the client
 * tries again. One connection per stream at a time: a second one is refused while the first is
 * open. Streams idle for longer than the configured age are forgotten.
 *
 * Thread rule: every function may be called from any thread (processing threads at hellos,
 * closes and seals; the main thread at recovery); one mutex guards the registry. Nothing
 * here is on the per-frame path: calls happen per connection and per sealed batch.
 */
#ifndef ROO_STREAMS_H
#define ROO_STREAMS_H

#include "common/common.h"

/* The streams-mark partition that holds a stream's read position (never a real partition:
 * --partitions is at most 65,535, so partitions are 0..65,534). */
#define ROO__STREAM_INGRESS 0xFFFFu

typedef struct roo__streams roo__streams;

roo__streams *roo__streams_create(void);
void roo__streams_destroy(roo__streams *s);

/* Why a hello was refused, for the client and the log. */
typedef enum roo__stream_refusal {
    ROO__STREAM_OK = 0,
    ROO__STREAM_LIVE,  /* another connection of the stream is open */
    ROO__STREAM_AHEAD, /* next_offset past what this worker has read of the stream */
} roo__stream_refusal;

/*
 * A hello for `stream` at frame `next_offset` from `peer`: a next_offset past both the
 * stored position and `known` (what another worker said was read: the keeper's answer in
 * a cluster, 0 otherwise) is refused. On ROO__STREAM_OK the stream is live until
 * roo__streams_release(); else *ret_stored / ret_peer say why (ret_stored: the larger of
 * stored and known; ret_peer: the live connection's address).
 */
roo__stream_refusal roo__streams_claim(roo__streams *s, uint64_t stream, uint64_t next_offset,
                                       const char *peer, uint64_t known, int64_t now_s,
                                       uint64_t *ret_stored, char *ret_peer, size_t peer_cap);

/* How far the stream was read, by this worker's records (0: unknown). */
uint64_t roo__streams_position(roo__streams *s, uint64_t stream);

/* The stream's connection closed. */
void roo__streams_release(roo__streams *s, uint64_t stream, int64_t now_s);

/*
 * Frames below `offset` of the stream were read at time now_s: sealed into a batch, or,
 * at recovery, its stored read position or offset + 1 of a frame whose messages changed
 * state here (directories written before read positions were stored). Keeps the larger of
 * what it knew and `offset`.
 */
void roo__streams_advance(roo__streams *s, uint64_t stream, uint64_t offset, int64_t now_s);

/*
 * Forget streams that are not live and were last read before now_s - max_idle_s; for each,
 * fn(arg, stream) is called (with the registry's lock held: fn must not call back here).
 * Returns how many were forgotten.
 */
size_t roo__streams_expire(roo__streams *s, int64_t now_s, int64_t max_idle_s,
                           void (*fn)(void *arg, uint64_t stream), void *arg);

/* How many streams are known; how many have a live connection. */
void roo__streams_counts(roo__streams *s, size_t *ret_known, size_t *ret_live);

#endif /* ROO_STREAMS_H */
