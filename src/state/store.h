/* store.h: a worker's durable state in LMDB: identity, keyed state, group commits.
 *
 * ON-DISK FORMAT (one LMDB environment in the resilience directory; the key and value
 * layouts of every database are in state/keys.h)
 *
 *   database "meta":     key "meta" -> protobuf roo.WorkerMeta (see proto/roo.proto)
 *   database "state":    partition | state id | key -> serialized state object
 *   databases "links", "streams", "outbox": see roo__db below
 *   file "roo.lock":     holds an exclusive flock while a worker uses the directory.
 *
 * THREADS (the way lmdb.h states them)
 *
 *   function                       who may call it
 *   open, close, prefault          the main thread, while no other thread uses the store
 *   txn_begin ... txn_commit/abort the committer only: one write transaction at a time,
 *   (every txn_* function), grow   never two threads; grow only with no write txn open
 *   meta_put                       the main thread before the committer starts, then the
 *                                  committer only (it is a write transaction of its own)
 *   meta_get, count, get_state,    any thread: each is one short read transaction that
 *   get_part, scan, scan_partition, copies what it returns (scans call back inside it; the
 *   scan_db                        bytes a callback sees are valid only during the call)
 *   errmsg                         any thread: the calling thread's own last error
 *   map_size, used_bytes           any thread
 *
 * Growing the map (roo__store_grow, when a commit finds it full) remaps the file, which
 * LMDB allows only while no transaction is open anywhere in the process: it waits for the
 * read transactions of other threads (a roo-ctl query, a partition move's scan on the io
 * thread) to end, and new ones wait for it. A scan callback must therefore not wait for the
 * committer. The environment is never used across fork().
 */
#ifndef ROO_STORE_H
#define ROO_STORE_H

#include "common/buf.h"

typedef struct roo__store roo__store;

/* Returned by txn_put/txn_commit when the map is full: grow and retry the whole txn. */
#define ROO__EMAPFULL (-EFBIG)

/*
 * Open (creating if needed, like mkdir -p) the store in dir. Fails with ROO_ELOCKED if
 * another process holds the directory. On error, errbuf (if given) describes it.
 */
int roo__store_open(const char *dir, uint64_t map_size, roo__store **ret_store, char *errbuf,
                    size_t errcap);
void roo__store_close(roo__store *s);

/* The calling thread's last LMDB-level error text, for context in logs. */
const char *roo__store_errmsg(const roo__store *s);

/* Whole-environment facts. */
uint64_t roo__store_map_size(const roo__store *s);
/* Bytes of the map in use: the pages up to the last one written (free pages inside count). */
uint64_t roo__store_used_bytes(roo__store *s);
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
/* The same, from the first record after (partition, state_id, key) on: a scan in pages.
 * Any thread (read txn). */
int roo__store_scan_after(roo__store *s, uint16_t partition, uint16_t state_id, const uint8_t *key,
                          size_t key_len, roo__store_scan_fn fn, void *arg);
/* The same, for the records of one partition only (a range: its keys are contiguous). */
int roo__store_scan_partition(roo__store *s, uint16_t partition, roo__store_scan_fn fn, void *arg);

/*
 * The other databases, each a plain key -> value map written in the same transactions as
 * the state:
 *   links    sending worker name | u32 BE thread -> u64 incarnation | u64 last applied seq
 *   streams  u64 BE stream id | u16 BE partition -> u64 offset | u32 sub (last applied message)
 *   outbox   u32 BE sink | u64 BE stream offset -> output bytes not yet known delivered
 *   outlog   the same key -> u64 LE position | u64 LE length of the output in outbox.log
 *            (state/outlog.h), for outputs kept there instead of in the outbox
 */
typedef enum roo__db {
    ROO__DB_LINKS = 0,
    ROO__DB_STREAMS = 1,
    ROO__DB_OUTBOX = 2,
    ROO__DB_OUTLOG = 3,
} roo__db;

typedef int (*roo__store_kv_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                                size_t val_len);
int roo__store_scan_db(roo__store *s, roo__db db, roo__store_kv_fn fn, void *arg);
/* Bytes [off, off + max) of key's value in db (fewer where it ends) appended to out, and the
 * value's whole length in *ret_total; -ENOENT if absent. Any thread (a read txn). */
int roo__store_get_part(roo__store *s, roo__db db, const uint8_t *key, size_t key_len, size_t off,
                        size_t max, roo__buf *out, size_t *ret_total);

/* Write transactions: the committer thread only. */
int roo__store_txn_begin(roo__store *s);
int roo__store_txn_put_state(roo__store *s, uint16_t partition, uint16_t state_id,
                             const uint8_t *key, size_t key_len, const uint8_t *val,
                             size_t val_len);
int roo__store_txn_put(roo__store *s, roo__db db, const uint8_t *key, size_t key_len,
                       const uint8_t *val, size_t val_len);
/* Delete one key of db; a key that is not there is no error. */
int roo__store_txn_del(roo__store *s, roo__db db, const uint8_t *key, size_t key_len);
/* Delete every key of db that sorts at or before `key` and starts with its first prefix_len
 * bytes. */
int roo__store_txn_del_through(roo__store *s, roo__db db, const uint8_t *key, size_t key_len,
                               size_t prefix_len);
/* Delete a partition's state records and its streams marks (it moved to another worker). */
int roo__store_txn_drop_partition(roo__store *s, uint16_t partition);
int roo__store_txn_commit(roo__store *s);
void roo__store_txn_abort(roo__store *s);

/*
 * A tiny write transaction (the meta database's "nudge" key). LMDB reuses the pages a
 * transaction freed only two transactions later (the one after must keep the snapshot
 * before it readable), so after the outbox is trimmed on a full disk, this makes the pages
 * it freed usable by the next commit. Committer thread only.
 */
int roo__store_nudge(roo__store *s);

/* Room set aside in the directory (roo.reserve) for a commit on a full disk. Release it
 * when a commit fails with ENOSPC (0, or -ENOENT when it is gone already); make it again
 * once commits work (best effort). Committer only. */
#define ROO__STORE_RESERVE (1u << 20)
int roo__store_release_reserve(roo__store *s);
void roo__store_make_reserve(roo__store *s);

/* Double the map size: committer only, with no write transaction open; waits for the other
 * threads' read transactions to end. */
int roo__store_grow(roo__store *s);

#endif /* ROO_STORE_H */
