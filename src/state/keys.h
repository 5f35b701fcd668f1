/* keys.h: the one place where the LMDB keys and values of a resilience directory are laid
 * out, built and read back (pure inline functions; the store, the committer, recovery,
 * resumable streams and partition moves all go through here).
 *
 *   database  key                                        value
 *   state     u16 BE partition | u16 BE state id | key   the state object's bytes
 *   links     sender name | u32 BE thread                u64 BE incarnation | u64 BE seq
 *   streams   u64 BE stream | u16 BE partition           u64 BE frame offset | u32 BE position
 *   outbox    u32 BE sink | u64 BE outbox seq            output bytes
 *   outlog    u32 BE sink | u64 BE outbox seq            u64 LE position | u64 LE length
 *                                                        (the output, in outbox.log)
 *
 * Big-endian keys sort like the numbers they hold, so a partition's state records are one
 * contiguous range, and a sink's outbox entries come out in the order they were stored.
 * A `streams` key and value travel together, 22 bytes, in the marks of a StateChunk.
 */
#ifndef ROO_KEYS_H
#define ROO_KEYS_H

#include "common/common.h"

/* ---- state ---- */

#define ROO__STATE_KEY_PREFIX 4
#define ROO__STATE_KEY_MAX (ROO__STATE_KEY_PREFIX + ROO_KEY_MAX)

/* Build the state key of (partition, state id, key) in kb; its length. key_len <= ROO_KEY_MAX. */
static inline size_t roo__key_state(uint8_t kb[ROO__STATE_KEY_MAX], uint16_t partition,
                                    uint16_t state_id, const uint8_t *key, size_t key_len)
{
    roo__store_be16(kb, partition);
    roo__store_be16(kb + 2, state_id);
    memcpy(kb + ROO__STATE_KEY_PREFIX, key, key_len);
    return ROO__STATE_KEY_PREFIX + key_len;
}

/* The first two bytes of every state key of a partition. */
static inline void roo__key_state_partition(uint8_t prefix[2], uint16_t partition)
{
    roo__store_be16(prefix, partition);
}

/* Split a state key; false if it is too short to be one. */
static inline bool roo__key_state_parse(const uint8_t *k, size_t len, uint16_t *ret_partition,
                                        uint16_t *ret_state_id)
{
    if (len < ROO__STATE_KEY_PREFIX)
        return false;
    *ret_partition = roo__load_be16(k);
    *ret_state_id = roo__load_be16(k + 2);
    return true;
}

/* ---- links ---- */

#define ROO__LINK_NAME_MAX 71 /* longest sender name kept */
#define ROO__LINK_KEY_MAX (ROO__LINK_NAME_MAX + 4)
#define ROO__LINK_VAL_LEN 16

static inline size_t roo__key_link(uint8_t kb[ROO__LINK_KEY_MAX], const char *peer, uint32_t thread)
{
    size_t n = strnlen(peer, ROO__LINK_NAME_MAX);

    memcpy(kb, peer, n);
    roo__store_be32(kb + n, thread);
    return n + 4;
}

static inline void roo__val_link(uint8_t vb[ROO__LINK_VAL_LEN], uint64_t incarnation, uint64_t seq)
{
    roo__store_be64(vb, incarnation);
    roo__store_be64(vb + 8, seq);
}

/* Read a links record; the name goes to name (NUL-terminated). False if malformed. */
static inline bool roo__key_link_parse(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                                       char name[ROO__LINK_NAME_MAX + 1], uint32_t *ret_thread,
                                       uint64_t *ret_incarnation, uint64_t *ret_seq)
{
    if (klen < 5 || klen - 4 > ROO__LINK_NAME_MAX || vlen != ROO__LINK_VAL_LEN)
        return false;
    memcpy(name, k, klen - 4);
    name[klen - 4] = '\0';
    *ret_thread = roo__load_be32(k + klen - 4);
    *ret_incarnation = roo__load_be64(v);
    *ret_seq = roo__load_be64(v + 8);
    return true;
}

/* ---- streams ---- */

#define ROO__STREAM_KEY_LEN 10
#define ROO__STREAM_VAL_LEN 12
#define ROO__STREAM_MARK_LEN (ROO__STREAM_KEY_LEN + ROO__STREAM_VAL_LEN)

/* A stream's high-water mark in one partition: key and value, back to back (22 bytes). */
typedef struct roo__stream_mark {
    uint64_t stream;
    uint16_t partition;
    uint64_t offset;
    uint32_t sub;
} roo__stream_mark;

static inline void roo__key_stream(uint8_t kb[ROO__STREAM_KEY_LEN], uint8_t vb[ROO__STREAM_VAL_LEN],
                                   const roo__stream_mark *m)
{
    roo__store_be64(kb, m->stream);
    roo__store_be16(kb + 8, m->partition);
    roo__store_be64(vb, m->offset);
    roo__store_be32(vb + 8, m->sub);
}

static inline bool roo__key_stream_parse(const uint8_t *k, size_t klen, const uint8_t *v,
                                         size_t vlen, roo__stream_mark *ret_mark)
{
    if (klen != ROO__STREAM_KEY_LEN || vlen != ROO__STREAM_VAL_LEN)
        return false;
    ret_mark->stream = roo__load_be64(k);
    ret_mark->partition = roo__load_be16(k + 8);
    ret_mark->offset = roo__load_be64(v);
    ret_mark->sub = roo__load_be32(v + 8);
    return true;
}

/* The partition of a streams key (klen == ROO__STREAM_KEY_LEN). */
static inline uint16_t roo__key_stream_partition(const uint8_t *k)
{
    return roo__load_be16(k + 8);
}

/* ---- outbox ---- */

#define ROO__OUTBOX_KEY_LEN 12
#define ROO__OUTLOG_REF_LEN 16
#define ROO__OUTBOX_SINK_LEN 4 /* the prefix that names the sink */
/* The written mark's key is (ROO__OUTBOX_MARK_SINK, 0); its value a u64 LE outbox seq:
 * entries up to it were written to every sink (kept only to resend after a reconnect). */
#define ROO__OUTBOX_MARK_SINK UINT32_MAX

static inline void roo__key_outbox(uint8_t kb[ROO__OUTBOX_KEY_LEN], uint32_t sink, uint64_t seq)
{
    roo__store_be32(kb, sink);
    roo__store_be64(kb + 4, seq);
}

static inline bool roo__key_outbox_parse(const uint8_t *k, size_t klen, uint32_t *ret_sink,
                                         uint64_t *ret_seq)
{
    if (klen != ROO__OUTBOX_KEY_LEN)
        return false;
    *ret_sink = roo__load_be32(k);
    *ret_seq = roo__load_be64(k + 4);
    return true;
}

#endif /* ROO_KEYS_H */
