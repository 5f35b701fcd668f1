/* committer.c: the group-commit thread: many batches' state records, one LMDB transaction.
 *
 * The committer sleeps on its queue. Each wakeup takes every batch sealed since the last
 * commit, from all shards, writes their records in one write transaction and commits it
 * (durable: LMDB syncs data and meta pages). Only then is their output released: the
 * committer writes it itself to sinks that are idle (connected, nothing queued: one
 * non-blocking sendmsg, no hop to another thread), and passes the rest to the io thread
 * (sink.c has the rules). While one commit runs, shards keep filling new batches, so the
 * next commit is as big as the load needs: under heavy load commits grow, under light load
 * each commit is small and early. Until the outbox log is filled to its full size, the
 * committer uses its idle moments to fill the next few MiB (outlog.h): when nothing was
 * committed for 20 ms, or when the last commit put output into the log (heavy load, where a
 * commit syncs megabytes anyway). A commit waits behind at most one such step; a trickle
 * never does.
 *
 * Failures never drop a batch: a full map grows the map and retries; anything else (a
 * full disk, an I/O error) is logged once, then retried every second while the batches
 * wait. Shards run out of batches meanwhile and stop reading their sources. Batches that
 * arrive while a group fails wait behind it, in order; what they say the sinks took is
 * deleted from the outbox in a transaction of its own (with the store's reserve given back
 * on a full disk), which frees pages for the group's next try, and a group too big for the
 * room there is goes in smaller parts (commit_all).
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/engine-int.h"
#include "state/keys.h"
#include "state/outlog.h"

/* An output of this size or more goes to the outbox log, LMDB keeping a reference to it; a
 * smaller one (light load) goes into LMDB itself, which costs no sync of its own. */
#define OUTLOG_MIN (64u * 1024u)
/* Bytes of the outbox log filled ahead per idle moment of the committer (a few ms). */
#define PREFILL_STEP (4u << 20)
/* Fill ahead only after this long without a commit, unless the log is in use (below). */
#define PREFILL_QUIET_NS (20 * 1000000LL)

/*
 * Output of sink `sink` for outbox entry `seq`, in the outbox log with its reference in the
 * transaction: 0. 1: it was not written there (the ring is full, or the write failed: logged
 * once), so it goes into LMDB. A negative errno: the reference's put failed.
 */
static int put_in_log(roo__engine *e, roo__store *s, const uint8_t *key, uint32_t sink,
                      uint64_t seq, roo__buf *out)
{
    uint8_t ref[ROO__OUTLOG_REF_LEN];
    uint64_t pos;
    int rc = roo__outlog_append_buf(e->outlog, out, &pos);

    if (rc < 0) {
        if (rc != -ENOBUFS && !e->outlog_warned) {
            roo__log_warn("cannot write to %s/%s: %s; big outputs go into LMDB meanwhile",
                          e->cfg.resilience_dir, ROO__OUTLOG_FILE, roo_strerror(rc));
            e->outlog_warned = true;
        }
        return 1;
    }
    roo__store_le64(ref, pos);
    roo__store_le64(ref + 8, out->len);
    rc = roo__store_txn_put(s, ROO__DB_OUTLOG, key, ROO__OUTBOX_KEY_LEN, ref, sizeof(ref));
    if (rc < 0)
        return rc;
    roo__ring_push(
        &e->outlog_new,
        (struct roo__outlog_entry){ .end = roo__outlog_head(e->outlog), .seq = seq, .sink = sink });
    return 0;
}

/* The batch is the committer's until it is committed: its output buffers' headroom too. */
static int write_batch(roo__engine *e, roo__store *s, roo__batch *b)
{
    const uint8_t *p = b->recs.data, *end = p + b->recs.len;

    /* Output that depends on this commit's state is stored with it, so a restart can send
     * it again if the worker dies before writing it to the sink. */
    for (size_t i = 0; b->outbox_seq && i < e->app->nsinks; i++) {
        uint8_t key[ROO__OUTBOX_KEY_LEN];
        int rc;
        if (!b->out[i].len)
            continue;
        roo__key_outbox(key, (uint32_t)i, b->outbox_seq);
        if (e->outlog && b->out[i].len >= OUTLOG_MIN) {
            rc = put_in_log(e, s, key, (uint32_t)i, b->outbox_seq, &b->out[i]);
            if (rc < 0)
                return rc;
            if (rc == 0)
                continue;
        }
        rc = roo__store_txn_put(s, ROO__DB_OUTBOX, key, sizeof(key), b->out[i].data, b->out[i].len);
        if (rc < 0)
            return rc;
    }

    while (p < end) {
        uint16_t h16[4];
        uint32_t vlen;
        const uint8_t *key = p + ROO__REC_HDR, *val;
        int rc;

        memcpy(h16, p, 8);
        memcpy(&vlen, p + 8, 4);
        val = key + h16[2];
        switch (h16[3]) {
        case ROO__REC_STATE:
            rc = roo__store_txn_put_state(s, h16[0], h16[1], key, h16[2], val, vlen);
            break;
        case ROO__REC_LINK:
            rc = roo__store_txn_put(s, ROO__DB_LINKS, key, h16[2], val, vlen);
            break;
        case ROO__REC_STREAM:
            rc = roo__store_txn_put(s, ROO__DB_STREAMS, key, h16[2], val, vlen);
            break;
        case ROO__REC_DROP:
            rc = roo__store_txn_drop_partition(s, h16[0]);
            break;
        case ROO__REC_STREAM_DEL:
            rc = roo__store_txn_del(s, ROO__DB_STREAMS, key, h16[2]);
            break;
        default:
            roo__log_error("internal error: batch record of kind %u", h16[3]);
            abort();
        }
        if (rc < 0)
            return rc;
        p += ROO__REC_HDR + h16[2] + vlen;
    }
    return 0;
}

/* Sink i's outbox entries through this may go: those written to every sink (written), but
 * none that the sink keeps to resend after a reconnect (roo__sinks_kept_from), unless the
 * disk is full (trim: then the resend skips what is gone). */
static uint64_t outbox_through(roo__engine *e, size_t i, uint64_t written, bool trim)
{
    uint64_t through = trim ? written : ROO__MIN(written, roo__sinks_kept_from(e, i) - 1);

    return ROO__MAX(through, e->outbox_deleted_sink[i]);
}

/* Whether a commit has outbox entries to delete, or a higher written mark to store. */
static bool outbox_work(roo__engine *e, uint64_t written, bool trim)
{
    if (written > e->outbox_mark)
        return true;
    for (size_t i = 0; i < e->app->nsinks; i++)
        if (outbox_through(e, i, written, trim) > e->outbox_deleted_sink[i])
            return true;
    return false;
}

/*
 * After a commit: the log entries it referred to are live, and those whose references are
 * deleted (committed) and which their sink no longer keeps to resend (or all deleted ones,
 * after a full disk: trim) give their room back, in ring order (an entry still needed holds
 * back the ones after it).
 */
static void outlog_committed(roo__engine *e, bool trim)
{
    uint64_t tail = 0;

    for (size_t k = 0; k < e->outlog_new.len; k++)
        roo__ring_push(&e->outlog_live, roo__ring_at(&e->outlog_new, k));
    roo__ring_clear(&e->outlog_new);
    while (e->outlog_live.len) {
        const struct roo__outlog_entry *o = &roo__ring_at(&e->outlog_live, 0);
        if (o->sink < e->app->nsinks && (o->seq > e->outbox_deleted_sink[o->sink] ||
                                         (!trim && o->seq >= roo__sinks_kept_from(e, o->sink))))
            break;
        tail = o->end;
        roo__ring_pop(&e->outlog_live);
    }
    if (tail)
        roo__outlog_release(e->outlog, tail);
}

/*
 * One transaction for the batches in [head, NULL); 0 once committed. It also stores the
 * outbox's written mark (entries up to `written` were written to every sink: a restart does
 * not send them again) and deletes the entries no sink needs any more (outbox_through).
 */
static int commit_once(roo__engine *e, roo__qnode *head, uint64_t written, bool trim)
{
    roo__store *s = e->store;
    uint64_t *through = e->outbox_through_tmp;
    uint64_t log_head = e->outlog ? roo__outlog_head(e->outlog) : 0;
    int rc = roo__store_txn_begin(s);

    if (rc < 0)
        return rc;
    roo__ring_clear(&e->outlog_new);
    for (roo__qnode *n = head; n; n = n->next) {
        rc = write_batch(e, s, (roo__batch *)n);
        if (rc < 0)
            goto abort;
    }
    for (size_t i = 0; i < e->app->nsinks; i++) {
        uint8_t key[ROO__OUTBOX_KEY_LEN];
        through[i] = outbox_through(e, i, written, trim);
        if (through[i] <= e->outbox_deleted_sink[i])
            continue;
        roo__key_outbox(key, (uint32_t)i, through[i]);
        rc = roo__store_txn_del_through(s, ROO__DB_OUTBOX, key, sizeof(key), ROO__OUTBOX_SINK_LEN);
        if (rc == 0)
            rc = roo__store_txn_del_through(s, ROO__DB_OUTLOG, key, sizeof(key),
                                            ROO__OUTBOX_SINK_LEN);
        if (rc < 0)
            goto abort;
    }
    if (written > e->outbox_mark) {
        uint8_t key[ROO__OUTBOX_KEY_LEN], val[8];
        roo__key_outbox(key, ROO__OUTBOX_MARK_SINK, 0);
        roo__store_le64(val, written);
        rc = roo__store_txn_put(s, ROO__DB_OUTBOX, key, sizeof(key), val, sizeof(val));
        if (rc < 0)
            goto abort;
    }
    /* The log's bytes are durable before the references to them are committed. */
    if (e->outlog && (rc = roo__outlog_sync(e->outlog)) < 0)
        goto abort;
    rc = roo__store_txn_commit(s);
    if (rc < 0)
        goto failed;
    e->outbox_mark = ROO__MAX(e->outbox_mark, written);
    for (size_t i = 0; i < e->app->nsinks; i++)
        e->outbox_deleted_sink[i] = through[i];
    e->outlog_in_use = e->outlog_new.len > 0;
    if (e->outlog)
        outlog_committed(e, trim);
    return 0;

abort:
    roo__store_txn_abort(s);
failed:
    /* What this try wrote to the log is referred to by nothing: its room is free again. */
    if (e->outlog)
        roo__outlog_rewind(e->outlog, log_head);
    roo__ring_clear(&e->outlog_new);
    return rc;
}

/*
 * While a commit fails: take what else was queued, to see an EXIT. The rest waits, in order,
 * for the next rounds (it is not added to the failing group: a group's batches are numbered
 * for the outbox before its first try, and identity records are not batches). Returns
 * whether an EXIT came, and the highest outbox_written of the batches now waiting, which
 * tells what output the sinks took meanwhile.
 */
static bool exit_requested(roo__engine *e, uint64_t *ret_written)
{
    roo__qnode *more = roo__queue_take_all(&e->commit_q), *n, *next;
    uint64_t written = *ret_written;
    bool exit_seen = false;

    for (n = more; n; n = next) {
        next = n->next;
        if (n->kind == ROO__Q_EXIT) {
            free(n);
            exit_seen = true;
            continue;
        }
        n->next = NULL;
        if (e->commit_deferred_tail)
            e->commit_deferred_tail->next = n;
        else
            e->commit_deferred = n;
        e->commit_deferred_tail = n;
    }
    for (n = e->commit_deferred; n; n = n->next)
        if (n->kind != ROO__Q_META)
            written = ROO__MAX(written, ((const roo__batch *)n)->outbox_written);
    *ret_written = written;
    return exit_seen;
}

/*
 * The group cannot be committed (a full disk): first let go of the output the sinks took
 * since, in a transaction of its own, so that LMDB has those pages to reuse when the group
 * is tried again. Returns whether that freed anything.
 */
static bool trim_outbox(roo__engine *e, uint64_t written)
{
    int rc;

    if (!outbox_work(e, written, true))
        return false;
    rc = commit_once(e, NULL, written, true);
    if (rc == -ENOSPC && roo__store_release_reserve(e->store) == 0) {
        roo__log_warn("the disk is full: gave back the %u KiB set aside in %s/roo.reserve "
                      "to make room",
                      ROO__STORE_RESERVE / 1024, e->cfg.resilience_dir);
        rc = commit_once(e, NULL, written, true);
    }
    if (rc < 0) {
        roo__log_debug("cannot let go of the outbox's output up to entry %llu either: %s",
                       (unsigned long long)written, roo_strerror(rc));
        return false;
    }
    roo__log_info("let go of the outbox's output up to entry %llu, written to the sinks, to "
                  "make room (a sink that reconnects gets no resend of it)",
                  (unsigned long long)written);
    /* The outbox log's room that is free now goes back to the filesystem, for LMDB. */
    if (e->outlog && (rc = roo__outlog_punch(e->outlog)) < 0)
        roo__log_debug("cannot give the free room of %s/%s back: %s", e->cfg.resilience_dir,
                       ROO__OUTLOG_FILE, roo_strerror(rc));
    /* The pages it freed are the next commit's only after one more transaction. */
    rc = roo__store_nudge(e->store);
    if (rc < 0)
        roo__log_debug("cannot commit the transaction that frees those pages: %s",
                       roo_strerror(rc));
    return true;
}

/* The metrics of a commit that just succeeded (the committer's own counters). */
static void note_commit(roo__engine *e, roo__qnode *head, int64_t duration_ns)
{
    uint64_t msgs = 0, bytes = 0;

    roo__hist_add(&e->commit_duration, duration_ns, 1);
    for (roo__qnode *n = head; n; n = n->next) {
        const roo__batch *b = (const roo__batch *)n;
        uint64_t out = 0;
        for (size_t i = 0; i < e->app->nsinks; i++)
            out += b->out[i].len;
        msgs += b->nin + b->nrouted;
        bytes += b->recs.len + (b->outbox_seq ? out : 0);
        if (b->outbox_seq) {
            roo__ring_push(&e->outbox_sizes, (struct roo__outbox_size){ b->outbox_seq, out });
            e->outbox_bytes += out;
        }
    }
    /* What every sink took is counted no more (commit_once stored the mark with it). */
    while (e->outbox_sizes.len && roo__ring_at(&e->outbox_sizes, 0).seq <= e->outbox_mark) {
        e->outbox_bytes -= roo__ring_at(&e->outbox_sizes, 0).bytes;
        roo__ring_pop(&e->outbox_sizes);
    }
    atomic_fetch_add_explicit(&e->commit_messages, msgs, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->commit_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&e->outbox_bytes_pub, e->outbox_bytes, memory_order_relaxed);
    atomic_store_explicit(&e->map_used_pub, roo__store_used_bytes(e->store), memory_order_relaxed);
    atomic_store_explicit(&e->map_size_pub, roo__store_map_size(e->store), memory_order_relaxed);
}

/*
 * Committed batches go on: their threads may acknowledge, and their output goes to the
 * sinks, written here when the sinks are idle (sink.c), else by io. Committer thread, after
 * the commit: nothing is written before it is durable.
 */
static void pass_on(roo__engine *e, roo__qnode *head, unsigned nbatches)
{
    int64_t now = roo__wall_ns();
    /* Batches waiting for the next commit: start it now, and let io write this output. */
    bool write_now = roo__queue_is_empty(&e->commit_q);

    atomic_fetch_add_explicit(&e->committed_batches, nbatches, memory_order_relaxed);
    for (roo__qnode *n = head, *next; n; n = next) {
        roo__batch *b = (roo__batch *)n;
        next = n->next;
        b->t_committed = now;
        if (b->owner)
            roo__hist_add(&e->sealed_to_committed, now - b->t_sealed, b->nin + b->nrouted);
        /* Its thread may acknowledge what the batch made durable now, not after the sink. */
        if (b->owner) {
            b->commit_note.node.kind = ROO__Q_COMMITTED;
            b->commit_note.batch = b;
            roo__queue_push(&b->owner->inbox, &b->commit_note.node);
        }
        if (!roo__sinks_write_committed(e, b, write_now))
            roo__queue_push(&e->io_q, n);
    }
}

/*
 * Commit the group, in one transaction when it can. On a full disk that trimming the outbox
 * does not cure, it goes in smaller parts, in order (halving down to one batch): a part that
 * fits is committed and passed on, its output reaches the sinks, and the outbox entries the
 * sinks took make room for the rest. Without that, a group larger than the room freed waited
 * for ever. Returns false if an EXIT came while a commit failed.
 */
static bool commit_all(roo__engine *e, roo__qnode *head)
{
    bool has_records = false, failing = false, failed = false;
    uint64_t written = e->outbox_mark;
    unsigned nbatches = 0, part;
    int64_t t0;
    int rc;

    for (roo__qnode *n = head; n; n = n->next) {
        roo__batch *b = (roo__batch *)n;
        bool has_output = false;
        has_records |= b->nrecs > 0;
        for (size_t i = 0; i < e->app->nsinks; i++)
            has_output |= b->out[i].len > 0;
        /* Numbered in commit order, which is also the order sinks write them in. */
        b->outbox_seq = b->nrecs > 0 && has_output ? ++e->outbox_next : 0;
        written = ROO__MAX(written, b->outbox_written);
        nbatches++;
    }
    if (!has_records && !outbox_work(e, written, false)) {
        pass_on(e, head, nbatches);
        return true;
    }
    part = nbatches;
    while (head) {
        roo__qnode *last = head, *rest;
        unsigned n = 1;

        for (; n < part && last->next; n++)
            last = last->next;
        rest = last->next;
        last->next = NULL;
        t0 = roo__now_ns();
        rc = commit_once(e, head, written, false);
        if (rc == 0) {
            atomic_fetch_add_explicit(&e->commits, 1, memory_order_relaxed);
            note_commit(e, head, roo__now_ns() - t0);
            e->last_commit_ns = roo__now_ns();
            if (failing)
                roo__log_info("state commits work again%s",
                              rest ? " (the rest of the held batches follow)" : "");
            failing = false;
            pass_on(e, head, n);
            head = rest;
            nbatches -= n;
            part = nbatches;
            continue;
        }
        last->next = rest;
        if (rc == ROO__EMAPFULL) {
            int grc = roo__store_grow(e->store);
            if (grc == 0) {
                char buf[32];
                roo__log_info("state map full: grew it to %s",
                              roo__fmt_bytes(roo__store_map_size(e->store), buf, sizeof(buf)));
                continue;
            }
            rc = grc;
        }
        if (!failing)
            roo__log_error("cannot commit state to %s: %s%s (%s); holding %u batch(es) and "
                           "their output, retrying every second",
                           e->cfg.resilience_dir, rc == -ENOSPC ? "the disk is full: " : "",
                           roo_strerror(rc), roo__store_errmsg(e->store), nbatches);
        else
            roo__log_debug("commit of %u of %u held batch(es) failed again: %s (%s)", part,
                           nbatches, roo_strerror(rc), roo__store_errmsg(e->store));
        failing = failed = true;
        if (exit_requested(e, &written)) {
            roo__log_error("stopping with %u batch(es) uncommitted: their input is lost for "
                           "plain clients",
                           nbatches);
            return false;
        }
        if (trim_outbox(e, written))
            continue;
        if (rc == -ENOSPC && part > 1) {
            part = (part + 1) / 2;
            roo__log_info("the disk is full: committing %u of the %u held batch(es) first", part,
                          nbatches);
            continue;
        }
        sleep(1);
    }
    if (failed)
        roo__store_make_reserve(e->store); /* set aside again for the next full disk */
    return true;
}

/* Store the identity record; a full map grows, as for batches. */
static int put_meta(roo__engine *e, const roo__meta_msg *m)
{
    int rc = roo__store_meta_put(e->store, m->encoded.data, m->encoded.len);

    while (rc == ROO__EMAPFULL && (rc = roo__store_grow(e->store)) == 0) {
        char buf[32];
        roo__log_info("state map full: grew it to %s",
                      roo__fmt_bytes(roo__store_map_size(e->store), buf, sizeof(buf)));
        rc = roo__store_meta_put(e->store, m->encoded.data, m->encoded.len);
    }
    return rc;
}

/* Fill the next few MiB of the outbox log's first lap (outlog.h), between commits. A commit
 * that arrives meanwhile waits for one such step, a few milliseconds, once per directory. */
static void prefill_some(roo__engine *e)
{
    int rc = roo__outlog_prefill(e->outlog, PREFILL_STEP);

    if (rc > 0)
        return;
    e->outlog_filling = false;
    if (rc < 0)
        roo__log_info("outbox.log in %s: cannot fill its room ahead (%s); it grows as it is used",
                      e->cfg.resilience_dir, roo_strerror(rc));
}

void *roo__committer_main(void *arg)
{
    roo__engine *e = arg;

    for (;;) {
        roo__qnode *n = e->commit_deferred, *next;
        roo__qnode *head = NULL, *tail = NULL;
        bool exit_seen = false;

        if (n) {
            e->commit_deferred = e->commit_deferred_tail = NULL; /* queued before the rest */
        } else if (e->outlog_filling) {
            /* Nothing to commit right now: fill a little more of the outbox log ahead, if the
             * worker is quiet or already heavy enough to use the log (a step delays the
             * next commit by a few ms: nothing to a commit that syncs megabytes, too much
             * for a trickle, which waits for a quiet moment instead). */
            int64_t quiet = roo__now_ns() - e->last_commit_ns;
            n = roo__queue_take_all(&e->commit_q);
            if (!n && (quiet >= PREFILL_QUIET_NS || e->outlog_in_use)) {
                prefill_some(e);
                continue;
            }
            if (!n)
                n = roo__queue_wait_all(&e->commit_q,
                                        (int)((PREFILL_QUIET_NS - quiet) / 1000000 + 1));
            if (!n)
                continue;
        } else {
            n = roo__queue_wait_all(&e->commit_q, -1);
        }

        for (; n; n = next) {
            next = n->next;
            if (n->kind == ROO__Q_EXIT) {
                free(n);
                exit_seen = true;
                continue;
            }
            if (n->kind == ROO__Q_META) {
                /* Batches queued before it are committed first, so the order holds. */
                roo__meta_msg *m = (roo__meta_msg *)n;
                if (head && !commit_all(e, head))
                    return NULL;
                head = tail = NULL;
                m->result = put_meta(e, m);
                if (m->result < 0)
                    roo__log_error("cannot store the cluster identity in %s: %s",
                                   e->cfg.resilience_dir, roo__store_errmsg(e->store));
                roo__queue_push(&e->io_q, n);
                continue;
            }
            n->next = NULL;
            if (tail)
                tail->next = n;
            else
                head = n;
            tail = n;
        }
        if (head && !commit_all(e, head))
            return NULL;
        if (exit_seen)
            return NULL;
    }
}
