/* lmdb_commit.c: how long one durable LMDB commit takes on this disk, with and without an
 * outbox-like value written and the previous one deleted (see docs/performance.md).
 *
 * usage: roo-lmdb-commit DIR [VALUE_BYTES [COMMITS [nometasync]]]
 *
 * Each commit puts 26 8-byte state keys (Alphabet's letters) into a "state" database and,
 * when VALUE_BYTES > 0, one VALUE_BYTES value into an "outbox" database, deleting the
 * previous commit's value, as the engine does for output its sinks took. Prints the p50,
 * p90 and p99 of the commit time (mdb_txn_begin to mdb_txn_commit returned). DIR must be
 * an existing, empty directory.
 */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "roo-lmdb-commit: %s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    size_t vbytes = argc > 2 ? strtoul(argv[2], NULL, 10) : 8192;
    int n = argc > 3 ? atoi(argv[3]) : 2000;
    unsigned flags =
        MDB_NOTLS | (argc > 4 && strcmp(argv[4], "nometasync") == 0 ? MDB_NOMETASYNC : 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi state, outbox;
    int64_t *d;
    char *val;

    if (argc < 2 || n <= 0) {
        fprintf(stderr, "usage: roo-lmdb-commit DIR [VALUE_BYTES [COMMITS [nometasync]]]\n");
        return 2;
    }
    d = malloc((size_t)n * sizeof(*d));
    val = calloc(1, vbytes ? vbytes : 1);
    if (!d || !val)
        return 1;
    check(mdb_env_create(&env), "mdb_env_create");
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, (size_t)1 << 30);
    check(mdb_env_open(env, argv[1], flags, 0644), "mdb_env_open");
    check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, "state", MDB_CREATE, &state), "mdb_dbi_open");
    check(mdb_dbi_open(txn, "outbox", MDB_CREATE, &outbox), "mdb_dbi_open");
    check(mdb_txn_commit(txn), "mdb_txn_commit");
    for (int i = 0; i < n; i++) {
        int64_t t0 = now_ns();
        check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
        for (uint8_t k = 0; k < 26; k++) {
            uint8_t key[8] = { 0, 0, 0, k };
            uint64_t v = (uint64_t)i;
            MDB_val K = { sizeof(key), key }, V = { sizeof(v), &v };
            check(mdb_put(txn, state, &K, &V, 0), "mdb_put state");
        }
        if (vbytes) {
            uint64_t seq = __builtin_bswap64((uint64_t)i),
                     prev = __builtin_bswap64((uint64_t)i - 1);
            MDB_val K = { sizeof(seq), &seq }, V = { vbytes, val }, P = { sizeof(prev), &prev };
            check(mdb_put(txn, outbox, &K, &V, 0), "mdb_put outbox");
            if (i > 0)
                check(mdb_del(txn, outbox, &P, NULL), "mdb_del outbox");
        }
        check(mdb_txn_commit(txn), "mdb_txn_commit");
        d[i] = now_ns() - t0;
    }
    qsort(d, (size_t)n, sizeof(*d), cmp_i64);
    printf("value %zu B%s: %d commits, p50 %lld us, p90 %lld us, p99 %lld us\n", vbytes,
           flags & MDB_NOMETASYNC ? " (MDB_NOMETASYNC)" : "", n, (long long)d[n / 2] / 1000,
           (long long)d[n * 9 / 10] / 1000, (long long)d[n * 99 / 100] / 1000);
    mdb_env_close(env);
    free(d);
    free(val);
    return 0;
}
