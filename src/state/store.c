/* store.c: the LMDB side of roo: opening, recovery scans and group-commit transactions. */
#include "state/store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "state/keys.h"

struct roo__store {
    MDB_env *env;
    MDB_dbi meta_dbi;
    MDB_dbi state_dbi;
    MDB_dbi dbis[4]; /* roo__db */
    MDB_txn *wtxn;   /* committer thread */
    _Atomic uint64_t map_size;
    int lock_fd;
    char reserve_path[4200]; /* roo.reserve: room set aside for a full disk (see below) */
    uint64_t nudges;         /* committer: roo__store_nudge's counter */
    /*
     * Growing the map remaps the file (mdb_env_set_mapsize), which LMDB allows only while
     * no transaction is open in the process: every read transaction holds this lock for
     * reading from begin to end, and roo__store_grow() takes it for writing.
     */
    pthread_rwlock_t remap_lock;
};

/* The calling thread's last error text: several threads read while the committer writes. */
static _Thread_local char errmsg[4600];

/* LMDB returns positive errno values or its own negative MDB_* codes. */
static int map_err(roo__store *s, int rc, const char *what)
{
    (void)s;
    snprintf(errmsg, sizeof(errmsg), "%s: %s", what, mdb_strerror(rc));
    if (rc == MDB_MAP_FULL)
        return ROO__EMAPFULL;
    if (rc > 0)
        return -rc;
    return ROO_ESTATE;
}

static int mkdir_p(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* LMDB's meta page, as far as these checks read it (lmdb's mdb.c: MDB_page, MDB_meta):
 *
 *   OFFSET  SIZE  DESCRIPTION (from the start of a meta page)
 *   0       16    page header
 *   16      4     magic 0xBEEFC0DE
 *   20      4     data format version (1)
 *   40      4     page size (the free-list tree's md_pad)
 *   136     8     last page number in use
 *   144     8     transaction id (the newer meta page of the two is the current one)
 */
#define META_MAGIC 0xBEEFC0DEu

/* LMDB writes its meta pages in the host's byte order. */
static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#define META_READ 152

static bool file_exists(const char *dir, const char *name)
{
    char path[4200];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/*
 * Before LMDB maps data.mdb: a file it would fault on (truncated, not LMDB's) or one that
 * was emptied is refused with a clear line, rather than a SIGBUS or an empty start that
 * loses every key. used: the directory held a worker before (its lock files exist).
 */
static int check_data_file(const char *dir, bool used)
{
    char path[4200];
    uint8_t m[2][META_READ];
    uint64_t txn[2] = { 0, 0 }, last;
    uint32_t psize;
    struct stat st;
    int fd, best = -1;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && !used)
        return 0; /* a new directory */
    if (fd < 0 && errno == ENOENT) {
        snprintf(errmsg, sizeof(errmsg),
                 "%s is gone but this directory held a worker before: its state would be lost; "
                 "refusing to start empty (restore it, or remove the directory to start anew)",
                 path);
        return ROO_ESTATE;
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(errmsg, sizeof(errmsg), "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ROO_ESTATE;
    }
    if (st.st_size == 0) {
        close(fd);
        if (!used)
            return 0;
        snprintf(errmsg, sizeof(errmsg),
                 "%s is empty but this directory held a worker before: its state is gone; "
                 "refusing to start empty (restore it, or remove the directory to start anew)",
                 path);
        return ROO_ESTATE;
    }
    if (pread(fd, m[0], META_READ, 0) != META_READ || load_u32(m[0] + 16) != META_MAGIC ||
        load_u32(m[0] + 20) != 1) {
        close(fd);
        snprintf(errmsg, sizeof(errmsg),
                 "%s is not an LMDB file of a known format (damaged?); "
                 "refusing to start",
                 path);
        return ROO_ESTATE;
    }
    psize = load_u32(m[0] + 40);
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) != 0 ||
        (uint64_t)st.st_size < 2ull * psize || pread(fd, m[1], META_READ, psize) != META_READ) {
        close(fd);
        snprintf(errmsg, sizeof(errmsg),
                 "%s is damaged or cut short (%lld bytes); refusing to "
                 "start",
                 path, (long long)st.st_size);
        return ROO_ESTATE;
    }
    close(fd);
    for (int i = 0; i < 2; i++) {
        if (load_u32(m[i] + 16) != META_MAGIC)
            continue;
        memcpy(&txn[i], m[i] + 144, 8);
        if (best < 0 || txn[i] > txn[best])
            best = i;
    }
    memcpy(&last, m[best] + 136, 8);
    if (last >= (uint64_t)st.st_size / psize) {
        snprintf(errmsg, sizeof(errmsg),
                 "%s is cut short: it has %lld bytes but its last page, %llu, ends at %llu; "
                 "refusing to start (reading it would crash the worker)",
                 path, (long long)st.st_size, (unsigned long long)last,
                 (unsigned long long)((last + 1) * psize));
        return ROO_ESTATE;
    }
    return 0;
}

static int lock_dir(roo__store *s, const char *dir)
{
    char path[4200], pid[32];
    int fd, n;

    snprintf(path, sizeof(path), "%s/roo.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(errmsg, sizeof(errmsg), "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        char other[32] = "";
        ssize_t r = pread(fd, other, sizeof(other) - 1, 0);
        if (r > 0) {
            other[r] = '\0';
            other[strcspn(other, "\n")] = '\0';
        }
        snprintf(errmsg, sizeof(errmsg), "%s is locked by process %s", path,
                 other[0] ? other : "?");
        close(fd);
        return err == EWOULDBLOCK ? ROO_ELOCKED : -err;
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) {
        /* The pid is only a hint for the error message above. */
    }
    s->lock_fd = fd;
    return 0;
}

int roo__store_open(const char *dir, uint64_t map_size, roo__store **ret_store, char *errbuf,
                    size_t errcap)
{
    roo__store *s = roo__xcalloc(1, sizeof(*s));
    MDB_txn *txn;
    MDB_envinfo info;
    bool used;
    int rc;

    s->lock_fd = -1;
    errmsg[0] = '\0';
    pthread_rwlock_init(&s->remap_lock, NULL);
    rc = mkdir_p(dir);
    if (rc < 0) {
        snprintf(errmsg, sizeof(errmsg), "cannot create %s: %s", dir, strerror(-rc));
        goto err_free;
    }
    used = file_exists(dir, "roo.lock") || file_exists(dir, "lock.mdb");
    rc = lock_dir(s, dir);
    if (rc < 0)
        goto err_free;
    rc = check_data_file(dir, used);
    if (rc < 0)
        goto err_unlock;
    rc = mdb_env_create(&s->env);
    if (rc) {
        rc = map_err(s, rc, "mdb_env_create");
        goto err_unlock;
    }
    mdb_env_set_maxdbs(s->env, 8);
    mdb_env_set_mapsize(s->env, map_size);
    /* MDB_NOTLS: read transactions belong to the transaction, not the thread. */
    rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0644);
    if (rc) {
        rc = map_err(s, rc, "mdb_env_open");
        goto err_close_env;
    }
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc) {
        rc = map_err(s, rc, "mdb_txn_begin");
        goto err_close_env;
    }
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta_dbi);
    if (!rc)
        rc = mdb_dbi_open(txn, "state", MDB_CREATE, &s->state_dbi);
    if (!rc)
        rc = mdb_dbi_open(txn, "links", MDB_CREATE, &s->dbis[ROO__DB_LINKS]);
    if (!rc)
        rc = mdb_dbi_open(txn, "streams", MDB_CREATE, &s->dbis[ROO__DB_STREAMS]);
    if (!rc)
        rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->dbis[ROO__DB_OUTBOX]);
    if (!rc)
        rc = mdb_dbi_open(txn, "outlog", MDB_CREATE, &s->dbis[ROO__DB_OUTLOG]);
    if (rc) {
        mdb_txn_abort(txn);
        rc = map_err(s, rc, "mdb_dbi_open");
        goto err_close_env;
    }
    rc = mdb_txn_commit(txn);
    if (rc) {
        rc = map_err(s, rc, "mdb_txn_commit");
        goto err_close_env;
    }
    snprintf(s->reserve_path, sizeof(s->reserve_path), "%s/roo.reserve", dir);
    roo__store_make_reserve(s);
    *ret_store = s;
    return 0;

err_close_env:
    /* mdb_env_close is required even after a failed mdb_env_open. */
    mdb_env_close(s->env);
err_unlock:
    close(s->lock_fd);
err_free:
    pthread_rwlock_destroy(&s->remap_lock);
    if (errbuf && errcap)
        snprintf(errbuf, errcap, "%s", errmsg[0] ? errmsg : roo_strerror(rc));
    free(s);
    return rc;
}

/*
 * A full disk: LMDB copies every page it changes, so even deleting needs free pages, and on
 * a disk with none left nothing at all can be committed, not even the deletion of output
 * the sinks already took. So the store keeps ROO__STORE_RESERVE bytes in a file of its own
 * and gives them back when a commit finds the disk full: enough for that deletion, which
 * then frees the outbox's pages for LMDB to reuse. Best effort: no room, no reserve.
 */
void roo__store_make_reserve(roo__store *s)
{
    int fd = open(s->reserve_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0)
        return;
    if (posix_fallocate(fd, 0, ROO__STORE_RESERVE) != 0) {
        close(fd);
        unlink(s->reserve_path); /* a partial one would only take the last free bytes */
        return;
    }
    close(fd);
}

int roo__store_release_reserve(roo__store *s)
{
    return unlink(s->reserve_path) == 0 ? 0 : -errno;
}

void roo__store_close(roo__store *s)
{
    if (!s)
        return;
    if (s->wtxn)
        mdb_txn_abort(s->wtxn);
    mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_rwlock_destroy(&s->remap_lock);
    free(s);
}

const char *roo__store_errmsg(const roo__store *s)
{
    (void)s;
    return errmsg;
}

/* Begin a read transaction: no remap may happen until read_end(). */
static int read_begin(roo__store *s, MDB_txn **ret_txn)
{
    int rc;

    pthread_rwlock_rdlock(&s->remap_lock);
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, ret_txn);
    if (rc) {
        pthread_rwlock_unlock(&s->remap_lock);
        return map_err(s, rc, "mdb_txn_begin");
    }
    return 0;
}

static void read_end(roo__store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->remap_lock);
}

void roo__store_prefault(roo__store *s)
{
#ifdef MADV_POPULATE_READ
    MDB_envinfo info;
    MDB_stat st;

    pthread_rwlock_rdlock(&s->remap_lock);
    /* Older kernels answer EINVAL: then pages simply fault in one by one. */
    if (!mdb_env_info(s->env, &info) && !mdb_env_stat(s->env, &st) && info.me_mapaddr)
        madvise(info.me_mapaddr, (size_t)(info.me_last_pgno + 1) * st.ms_psize, MADV_POPULATE_READ);
    pthread_rwlock_unlock(&s->remap_lock);
#else
    (void)s;
#endif
}

uint64_t roo__store_map_size(const roo__store *s)
{
    return s->map_size;
}

uint64_t roo__store_used_bytes(roo__store *s)
{
    MDB_envinfo info;
    MDB_stat st;

    /* Both read the shared meta page: no transaction, no lock. */
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0)
        return 0;
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

int roo__store_count(roo__store *s, uint64_t *ret_entries)
{
    MDB_txn *txn;
    MDB_stat st;
    int rc = read_begin(s, &txn);

    if (rc < 0)
        return rc;
    rc = mdb_stat(txn, s->state_dbi, &st);
    read_end(s, txn);
    if (rc)
        return map_err(s, rc, "mdb_stat");
    *ret_entries = st.ms_entries;
    return 0;
}

int roo__store_meta_get(roo__store *s, roo__buf *out)
{
    MDB_txn *txn;
    MDB_val k = { 4, (void *)"meta" }, v;
    int rc = read_begin(s, &txn);

    if (rc < 0)
        return rc;
    rc = mdb_get(txn, s->meta_dbi, &k, &v);
    /* Copy out: the value lives in the map only until the transaction ends. */
    if (rc == 0)
        roo__buf_append(out, v.mv_data, v.mv_size);
    read_end(s, txn);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    return rc ? map_err(s, rc, "mdb_get meta") : 0;
}

int roo__store_meta_put(roo__store *s, const void *p, size_t n)
{
    MDB_txn *txn;
    MDB_val k = { 4, (void *)"meta" }, v = { n, (void *)p };
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);

    if (rc)
        return map_err(s, rc, "mdb_txn_begin");
    rc = mdb_put(txn, s->meta_dbi, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return map_err(s, rc, "mdb_put meta");
    }
    rc = mdb_txn_commit(txn);
    if (rc)
        return map_err(s, rc, "mdb_txn_commit meta");
    return 0;
}

int roo__store_nudge(roo__store *s)
{
    MDB_txn *txn;
    MDB_val k = { 5, (void *)"nudge" }, v;
    uint64_t n = ++s->nudges;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);

    if (rc)
        return map_err(s, rc, "mdb_txn_begin");
    v = (MDB_val){ sizeof(n), &n };
    rc = mdb_put(txn, s->meta_dbi, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return map_err(s, rc, "mdb_put nudge");
    }
    rc = mdb_txn_commit(txn);
    return rc ? map_err(s, rc, "mdb_txn_commit nudge") : 0;
}

int roo__store_get_state(roo__store *s, uint16_t partition, uint16_t state_id, const uint8_t *key,
                         size_t key_len, roo__buf *out)
{
    uint8_t kb[ROO__STATE_KEY_MAX];
    MDB_txn *txn;
    MDB_val k, v;
    int rc;

    if (key_len > ROO_KEY_MAX)
        return ROO_EKEYSIZE;
    k.mv_size = roo__key_state(kb, partition, state_id, key, key_len);
    k.mv_data = kb;
    rc = read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = mdb_get(txn, s->state_dbi, &k, &v);
    if (rc == 0)
        roo__buf_append(out, v.mv_data, v.mv_size);
    read_end(s, txn);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    return rc ? map_err(s, rc, "mdb_get") : 0;
}

/* Visit the keys of dbi that start with prefix (all keys if prefix_len is 0). */
static int scan_dbi_prefix(roo__store *s, MDB_dbi dbi, const uint8_t *prefix, size_t prefix_len,
                           roo__store_kv_fn fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = { prefix_len, (void *)prefix }, v;
    int rc = read_begin(s, &txn);

    if (rc < 0)
        return rc;
    rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) {
        read_end(s, txn);
        return map_err(s, rc, "mdb_cursor_open");
    }
    for (rc = mdb_cursor_get(cur, &k, &v, prefix_len ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int crc;
        if (prefix_len && (k.mv_size < prefix_len || memcmp(k.mv_data, prefix, prefix_len) != 0))
            break;
        crc = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (crc < 0) {
            mdb_cursor_close(cur);
            read_end(s, txn);
            return crc;
        }
    }
    rc = rc == MDB_NOTFOUND || rc == 0 ? 0 : map_err(s, rc, "mdb_cursor_get");
    mdb_cursor_close(cur);
    read_end(s, txn);
    return rc;
}

static int scan_dbi(roo__store *s, MDB_dbi dbi, roo__store_kv_fn fn, void *arg)
{
    return scan_dbi_prefix(s, dbi, NULL, 0, fn, arg);
}

typedef struct state_scan {
    roo__store *s;
    roo__store_scan_fn fn;
    void *arg;
} state_scan;

/* A state record's key is partition | state id | application key: split it. */
static int state_record(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    state_scan *ss = arg;
    uint16_t partition, state_id;

    if (!roo__key_state_parse(key, key_len, &partition, &state_id)) {
        snprintf(errmsg, sizeof(errmsg), "state record with a %zu-byte key", key_len);
        return ROO_ESTATE;
    }
    return ss->fn(ss->arg, partition, state_id, key + ROO__STATE_KEY_PREFIX,
                  key_len - ROO__STATE_KEY_PREFIX, val, val_len);
}

int roo__store_scan(roo__store *s, roo__store_scan_fn fn, void *arg)
{
    state_scan ss = { s, fn, arg };
    return scan_dbi(s, s->state_dbi, state_record, &ss);
}

int roo__store_scan_after(roo__store *s, uint16_t partition, uint16_t state_id, const uint8_t *key,
                          size_t key_len, roo__store_scan_fn fn, void *arg)
{
    state_scan ss = { s, fn, arg };
    uint8_t from[ROO__STATE_KEY_MAX];
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (key_len > ROO_KEY_MAX)
        return -EINVAL;
    k.mv_size = roo__key_state(from, partition, state_id, key, key_len);
    k.mv_data = from;
    rc = read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = mdb_cursor_open(txn, s->state_dbi, &cur);
    if (rc) {
        read_end(s, txn);
        return map_err(s, rc, "mdb_cursor_open");
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == ROO__STATE_KEY_PREFIX + key_len &&
        memcmp(k.mv_data, from, k.mv_size) == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* strictly after */
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int crc = state_record(&ss, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (crc < 0) {
            mdb_cursor_close(cur);
            read_end(s, txn);
            return crc;
        }
    }
    rc = rc == MDB_NOTFOUND ? 0 : map_err(s, rc, "mdb_cursor_get");
    mdb_cursor_close(cur);
    read_end(s, txn);
    return rc;
}

int roo__store_scan_partition(roo__store *s, uint16_t partition, roo__store_scan_fn fn, void *arg)
{
    state_scan ss = { s, fn, arg };
    uint8_t prefix[2];

    roo__key_state_partition(prefix, partition);
    return scan_dbi_prefix(s, s->state_dbi, prefix, sizeof(prefix), state_record, &ss);
}

/*
 * In the write transaction: walk dbi from the first key at or after `from` (from_len 0: the
 * first key) and delete each key that match() gives 1; stop where it gives -1.
 */
typedef int (*key_match_fn)(const MDB_val *k, const void *arg);

static int del_keys(roo__store *s, MDB_dbi dbi, const uint8_t *from, size_t from_len,
                    key_match_fn match, const void *arg)
{
    MDB_cursor *cur;
    MDB_val k = { from_len, (void *)from }, v;
    int rc = mdb_cursor_open(s->wtxn, dbi, &cur), m;

    if (rc)
        return map_err(s, rc, "mdb_cursor_open");
    for (rc = mdb_cursor_get(cur, &k, &v, from_len ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        m = match(&k, arg);
        if (m < 0)
            break;
        /* After a delete LMDB's MDB_NEXT returns the key that followed the deleted one. */
        if (m > 0 && (rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return map_err(s, rc, "delete");
    return 0;
}

/* The keys of one partition in the state database: contiguous from its 2-byte prefix. */
static int state_in_partition(const MDB_val *k, const void *prefix)
{
    return k->mv_size >= 2 && memcmp(k->mv_data, prefix, 2) == 0 ? 1 : -1;
}

/* Stream marks are keyed stream first (u64 | u16 partition): look at every one. */
static int mark_of_partition(const MDB_val *k, const void *partition)
{
    return k->mv_size == ROO__STREAM_KEY_LEN &&
           roo__key_stream_partition(k->mv_data) == *(const uint16_t *)partition;
}

int roo__store_txn_drop_partition(roo__store *s, uint16_t partition)
{
    uint8_t prefix[2];
    int rc;

    roo__key_state_partition(prefix, partition);
    rc = del_keys(s, s->state_dbi, prefix, sizeof(prefix), state_in_partition, prefix);
    if (rc == 0)
        rc = del_keys(s, s->dbis[ROO__DB_STREAMS], NULL, 0, mark_of_partition, &partition);
    return rc;
}

int roo__store_scan_db(roo__store *s, roo__db db, roo__store_kv_fn fn, void *arg)
{
    return scan_dbi(s, s->dbis[db], fn, arg);
}

int roo__store_get_part(roo__store *s, roo__db db, const uint8_t *key, size_t key_len, size_t off,
                        size_t max, roo__buf *out, size_t *ret_total)
{
    MDB_val k = { key_len, (void *)key }, v;
    MDB_txn *txn;
    int rc = read_begin(s, &txn);

    if (rc < 0)
        return rc;
    rc = mdb_get(txn, s->dbis[db], &k, &v);
    if (rc == 0) {
        if (off < v.mv_size)
            roo__buf_append(out, (const uint8_t *)v.mv_data + off, ROO__MIN(max, v.mv_size - off));
        *ret_total = v.mv_size;
    }
    read_end(s, txn);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    return rc ? map_err(s, rc, "mdb_get") : 0;
}

int roo__store_txn_put(roo__store *s, roo__db db, const uint8_t *key, size_t key_len,
                       const uint8_t *val, size_t val_len)
{
    MDB_val k = { key_len, (void *)key }, v = { val_len, (void *)val };
    int rc = mdb_put(s->wtxn, s->dbis[db], &k, &v, 0);

    return rc ? map_err(s, rc, "mdb_put") : 0;
}

int roo__store_txn_del(roo__store *s, roo__db db, const uint8_t *key, size_t key_len)
{
    MDB_val k = { key_len, (void *)key };
    int rc = mdb_del(s->wtxn, s->dbis[db], &k, NULL);

    return rc && rc != MDB_NOTFOUND ? map_err(s, rc, "mdb_del") : 0;
}

typedef struct through {
    const uint8_t *key;
    size_t key_len, prefix_len;
} through;

/* Keys with the prefix that sort at or before `key`. */
static int at_or_before(const MDB_val *k, const void *arg)
{
    const through *t = arg;
    size_t n = ROO__MIN(k->mv_size, t->key_len);
    int cmp = memcmp(k->mv_data, t->key, n);

    if (k->mv_size < t->prefix_len || memcmp(k->mv_data, t->key, t->prefix_len) != 0)
        return -1;
    return cmp > 0 || (cmp == 0 && k->mv_size > t->key_len) ? -1 : 1;
}

int roo__store_txn_del_through(roo__store *s, roo__db db, const uint8_t *key, size_t key_len,
                               size_t prefix_len)
{
    through t = { key, key_len, prefix_len };

    return del_keys(s, s->dbis[db], key, prefix_len, at_or_before, &t);
}

int roo__store_txn_begin(roo__store *s)
{
    int rc;

    if (s->wtxn)
        return -EBUSY;
    rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
    if (rc) {
        s->wtxn = NULL;
        return map_err(s, rc, "mdb_txn_begin");
    }
    return 0;
}

int roo__store_txn_put_state(roo__store *s, uint16_t partition, uint16_t state_id,
                             const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    uint8_t kb[ROO__STATE_KEY_MAX];
    MDB_val k, v = { val_len, (void *)val };
    int rc;

    if (key_len > ROO_KEY_MAX)
        return ROO_EKEYSIZE;
    k.mv_size = roo__key_state(kb, partition, state_id, key, key_len);
    k.mv_data = kb;
    rc = mdb_put(s->wtxn, s->state_dbi, &k, &v, 0);
    if (rc)
        return map_err(s, rc, "mdb_put state");
    return 0;
}

/* Whether the environment's filesystem is (all but) full: under 1 MiB left for a write. */
static bool disk_full(roo__store *s)
{
    struct statvfs st;
    int fd;

    return mdb_env_get_fd(s->env, &fd) == 0 && fstatvfs(fd, &st) == 0 &&
           (uint64_t)st.f_bavail * st.f_frsize < ((uint64_t)1 << 20);
}

int roo__store_txn_commit(roo__store *s)
{
    int rc = mdb_txn_commit(s->wtxn);

    /* The transaction handle is freed whether the commit worked or not. */
    s->wtxn = NULL;
    /* LMDB reports a write cut short as EIO: on a full disk, say so. */
    if (rc == EIO && disk_full(s))
        rc = ENOSPC;
    if (rc)
        return map_err(s, rc, "mdb_txn_commit");
    return 0;
}

void roo__store_txn_abort(roo__store *s)
{
    if (s->wtxn)
        mdb_txn_abort(s->wtxn);
    s->wtxn = NULL;
}

int roo__store_grow(roo__store *s)
{
    uint64_t want = s->map_size * 2;
    MDB_envinfo info;
    int rc;

    if (s->wtxn)
        return -EBUSY;
    /* Waits for the read transactions of other threads (queries, moves) to end. */
    pthread_rwlock_wrlock(&s->remap_lock);
    rc = mdb_env_set_mapsize(s->env, want);
    if (rc == 0) {
        mdb_env_info(s->env, &info);
        s->map_size = info.me_mapsize;
    }
    pthread_rwlock_unlock(&s->remap_lock);
    return rc ? map_err(s, rc, "mdb_env_set_mapsize") : 0;
}
