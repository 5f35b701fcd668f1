/* store.h: a worker's durable state in LMDB: identity, keyed state, group commits.
 *
 * ON-DISK FORMAT (one LMDB environment in the resilience directory)
 *
 *   database "meta":   key "meta" -> protobuf roo.WorkerMeta (see proto/roo.proto)
 *   database "state":  key -> serialized state object, where key is
 *
 *     OFFSET  SIZE  DESCRIPTION
 *     0       2     partition, u16 big-endian (so a partition's keys are contiguous)
 *     2       2     state id, u16 big-endian (index into WorkerMeta.state_names)
 *     4       K     the application's partition key bytes (K <= ROO_KEY_MAX)
 *
 *   file "roo.lock": holds an exclusive flock while a worker uses the directory.
 *
 * LMDB RULES THIS MODULE KEEPS
 * - One write transaction at a time, always from the same thread (the committer); the
 *   txn functions below must not be called from two threads.
 * - Read transactions (recovery scan, meta) are short and copy values out before ending.
 * - The map grows on MDB_MAP_FULL: the committer aborts, calls roo__store_grow() (no
 *   transaction may be open then) and retries.
 * - The environment is never used across fork().
 */
#ifndef ROO_STORE_H
#define ROO_STORE_H

#include "common/buf.h"

typedef struct roo__store roo__store;

/* Returned by txn_put/txn_commit when the map is full: grow and retry the whole txn. */
#define ROO__EMAPFULL (-EFBIG)

/* State key prefix length (partition + state id). */
#define ROO__STORE_KEY_PREFIX 4

/*
 * Open (creating if needed, like mkdir -p) the store in dir. Fails with ROO_ELOCKED if
 * another process holds the directory. On error, errbuf (if given) describes it.
 */
int roo__store_open(const char *dir, uint64_t map_size, roo__store **ret_store, char *errbuf,
                    size_t errcap);
void roo__store_close(roo__store *s);

/* The last LMDB-level error text for context in logs (static or owned by the store). */
const char *roo__store_errmsg(const roo__store *s);

/* Whole-environment facts. */
uint64_t roo__store_map_size(const roo__store *s);
int roo__store_count(roo__store *s, uint64_t *ret_entries);

/*
 * Map the whole database into this process's page tables at once (before recovery reads
 * all of it): one call instead of a page fault per 4 KiB page. Best effort.
 */
void roo__store_prefault(roo__store *s);

/* Meta record: -ENOENT when the directory is new. */
int roo__store_meta_get(roo__store *s, roo__buf *out);
int roo__store_meta_put(roo__store *s, const void *p, size_t n);

/* One state record's value (copied into out); -ENOENT if absent. Any thread (read txn). */
int roo__store_get_state(roo__store *s, uint16_t partition, uint16_t state_id, const uint8_t *key,
                         size_t key_len, roo__buf *out);

/* Visit every state record in key order; stop and return the callback's error if < 0. */
typedef int (*roo__store_scan_fn)(void *arg, uint16_t partition, uint16_t state_id,
                                  const uint8_t *key, size_t key_len, const uint8_t *val,
                                  size_t val_len);
int roo__store_scan(roo__store *s, roo__store_scan_fn fn, void *arg);
/* The same, for the records of one partition only (a range: its keys are contiguous). */
int roo__store_scan_partition(roo__store *s, uint16_t partition, roo__store_scan_fn fn, void *arg);

/*
 * The other databases, each a plain key -> value map written in the same transactions as
 * the state:
 *   links    sending worker name | u32 BE thread -> u64 incarnation | u64 last applied seq
 *   streams  u64 BE stream id | u16 BE partition -> u64 offset | u32 sub (last applied message)
 *   outbox   u32 BE sink | u64 BE stream offset -> output bytes not yet known delivered
 */
typedef enum roo__db {
    ROO__DB_LINKS = 0,
    ROO__DB_STREAMS = 1,
    ROO__DB_OUTBOX = 2,
} roo__db;

typedef int (*roo__store_kv_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                                size_t val_len);
int roo__store_scan_db(roo__store *s, roo__db db, roo__store_kv_fn fn, void *arg);

/* Write transactions (committer thread only). */
int roo__store_txn_begin(roo__store *s);
int roo__store_txn_put_state(roo__store *s, uint16_t partition, uint16_t state_id,
                             const uint8_t *key, size_t key_len, const uint8_t *val,
                             size_t val_len);
int roo__store_txn_put(roo__store *s, roo__db db, const uint8_t *key, size_t key_len,
                       const uint8_t *val, size_t val_len);
/* Delete every key of db that sorts at or before `key` and starts with its first prefix_len
 * bytes. */
int roo__store_txn_del_through(roo__store *s, roo__db db, const uint8_t *key, size_t key_len,
                               size_t prefix_len);
/* Delete a partition's state records and its streams marks (it moved to another worker). */
int roo__store_txn_drop_partition(roo__store *s, uint16_t partition);
int roo__store_txn_commit(roo__store *s);
void roo__store_txn_abort(roo__store *s);

/* Double the map size; only with no write transaction open. */
int roo__store_grow(roo__store *s);

#endif /* ROO_STORE_H */
