/* sink.c: delivering committed output to the sinks: one TCP client per --out address, a
 * FIFO of the batches each still has to write, and the output kept to resend after a reconnect.
 *
 * DESIGN
 *
 * Two threads write to a sink. The committer writes a committed batch's output itself when
 * the sink is idle (connected, nothing queued, no resend owed): one sendmsg(MSG_DONTWAIT)
 * right after the commit, with no hop to another thread (roo__sinks_write_committed). The
 * io thread does everything else: it connects and reconnects, resends kept output,
 * writes what the committer could not (EAGAIN, a partial write) and whatever queued behind
 * it, and handles the batches that also carry work for the cluster (acknowledgements,
 * routes to other workers), which only the io thread may do (roo__sinks_queue).
 *
 * Ownership: each sink has a mutex, `lock`, held briefly by whichever thread touches the
 * sink's output state: the FIFO, the stream offsets, the kept output, the socket while it
 * is connected, the published figures. Only one sink lock is held at a time, and nothing
 * that takes a sink lock is called with one held (the queues' locks are taken inside it).
 * The connection's machinery (the loop watcher, the retry timer, `connecting`) is the io
 * thread's alone, and a socket is closed only under the lock, so the committer never
 * writes to a closed or reused descriptor. The committer never calls the io loop: when it
 * leaves output in a FIFO that was empty (the socket was full, or the write failed), it
 * queues the sink's `kick` node on io_q, and io takes it from there (flushes, arms
 * EPOLLOUT, or disconnects with the committer's error). A FIFO that was not empty is
 * already io's to write: io keeps EPOLLOUT armed while a connected sink has output queued,
 * and flushes on connect.
 *
 * When batches are waiting for the next commit, the committer does not write: it queues the
 * output and kicks io, which writes while the next commit runs (the committer is then the
 * busiest thread, and a write before the next commit would delay every batch in it). So
 * the hop is saved where it shows, at light load, and costs nothing at heavy load.
 *
 * Order: batches reach the sinks in commit order. The committer writes directly only while
 * no committed batch is on its way to io (engine->sink_handoff is 0); once one is, every
 * later batch goes the same way until io has queued it. io holds one count of sink_handoff
 * from the start until it has queued the output recovered from the outbox, so that output
 * goes first.
 *
 * Completion: a batch is done when every sink has written its part (refs, atomic). The
 * thread that writes the last byte returns it to its shard and counts its latencies in its
 * own histograms (engine->written[by]: each roo__hist has one writer).
 *
 * Resend after a reconnect: bytes handed to the kernel are not bytes the sink has read. A
 * sink that dies loses what was in flight and in its receive buffer, so each sink keeps
 * the last --sink-replay bytes it wrote, with the stream offsets where batches began.
 * After a reconnect it first resends from the oldest batch start it still holds. The sink
 * may thus see up to --sink-replay bytes of output a second time (at least once).
 *
 * The bytes are kept in segments, end to end in the stream, of three kinds:
 *
 *   | kind   | when                                       | holds                         |
 *   |--------|--------------------------------------------|-------------------------------|
 *   | outbox | SEG_SWAP_MIN bytes or more, and the batch  | a reference: the sink's       |
 *   |        | changed state (its output is in the outbox)| outbox entry `seq`, `len`     |
 *   | buffer | SEG_SWAP_MIN bytes or more, no outbox entry| the batch's own buffer (its   |
 *   |        |                                            | room cut to twice its bytes)  |
 *   | chunk  | smaller outputs (light load)               | copies of several, end to end |
 *
 * The outbox already holds a state-changing batch's output, durably, so the sink keeps only
 * where it is: the committer deletes a sink's entries only below the oldest it refers to
 * (kept_from, roo__sinks_kept_from), and a resend copies them out of LMDB, or out of the
 * outbox log for big ones (state/outlog.h), a piece at a time (resend_piece, io thread).
 * The batch keeps its buffer, whose pages are then warm for its next output. (Before, the
 * buffer became the segment and the batch went home with a spare: the cold spares and the
 * growing, shrinking and freeing cost a 3-worker cluster about a tenth of its throughput.)
 * A buffer segment's batch goes home with a spare buffer in exchange: no copy. Chunks keep a
 * sink from holding many small buffers. What is kept in memory stays within about twice
 * --sink-replay, plus SPARE_MAX spare buffers; what the outbox keeps, about --sink-replay
 * per sink on disk.
 *
 *   segs:   [ seg | seg | ... | seg ] [ head batch, head_off bytes written ]
 *            ^ segs[0].start           ^ written - head_off                ^ written
 *   starts: batch starts at or after written - --sink-replay (older ones and the segments
 *           that end before that are dropped as batches complete)
 *
 * While a sink is down (not started yet, restarting) the FIFO grows until the shards run
 * out of batches and stop reading: output waits, nothing is dropped. Connecting retries
 * with exponential backoff (50 ms doubling to 2 s).
 */
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/ring.h"
#include "engine/engine-int.h"
#include "state/keys.h"
#include "state/outlog.h"

#define MAX_IOV 64
#define SPARE_MAX 4 /* spare buffers a sink keeps to give batches */

#define SEG_SWAP_MIN (64u * 1024u) /* a batch's buffer is kept as it is from this size */
#define SEG_CHUNK (256u * 1024u)   /* smaller outputs are copied into chunks of this size */

/* Written output kept for resending: the stream offset of its first byte, and the bytes (a
 * batch's own buffer, or a chunk of copies of smaller ones), or, for a batch whose output
 * the outbox holds (seq != 0), where they are there: the sink's entry seq, of len bytes. */
typedef struct replay_seg {
    uint64_t start;
    roo__buf buf;
    bool chunk;
    uint64_t seq;
    size_t len;
} replay_seg;

static inline uint64_t seg_end(const replay_seg *g)
{
    return g->start + (g->seq ? g->len : g->buf.len);
}

struct roo__sink {
    /* Set at init, read-only after. */
    roo__engine *eng;
    unsigned idx;
    char addr_str[300];
    size_t ring_cap;

    /* io thread only: the connection's machinery. */
    roo__io io;
    bool connecting;
    roo__backoff retry;

    /* Committer -> io: output was left in the FIFO (kick_queued: the node is on io_q). */
    roo__qnode kick;
    _Atomic bool kick_queued;

    /* Everything below: guarded by lock (either thread). */
    pthread_mutex_t lock;
    int fd;
    bool connected;
    int write_err; /* the committer's write failed (-errno): io disconnects */

    /* FIFO of batches whose out[idx] is not fully written; head_off into the first. */
    ROO__RING(roo__batch *) fifo;
    size_t head_off;
    uint64_t pending_bytes;

    uint64_t written;   /* stream offset: bytes handed to the kernel, all connections */
    uint64_t conn_base; /* stream offset of this connection's first byte */

    /* The last ring_cap bytes written (none when ring_cap is 0), the offsets where batches
     * began, and spare buffers to give batches. */
    ROO__RING(replay_seg) segs;
    ROO__RING(uint64_t) starts;
    ROO__RING(roo__buf) spare;
    uint64_t replay_pos; /* < written while resending after a reconnect */
    roo__buf resend;     /* bytes of the outbox being resent (sink_write) */
    bool resend_lost;    /* an entry to resend was gone (logged once per reconnect) */
    /* The lowest outbox entry the kept output refers to (UINT64_MAX: none); the committer
     * deletes this sink's entries only below it (roo__sinks_kept_from). */
    _Atomic uint64_t kept_from;

    /* For the metrics, published as they change (roo__io_sink_counts). */
    uint64_t records; /* records written: a batch's count once its part is written */
    _Atomic uint64_t pub_records, pub_written, pub_held, pub_unacked;
    _Atomic bool pub_connected;
};

/* ---- FIFO of batches (lock held) ---- */

static void fifo_push(roo__sink *s, roo__batch *b)
{
    roo__ring_push(&s->fifo, b);
    s->pending_bytes += b->out[s->idx].len;
    atomic_store_explicit(&s->pub_held, s->pending_bytes, memory_order_relaxed);
}

/* ---- replay (lock held) ---- */

/* The biggest spare buffer, emptied, or an empty paged one. A batch's buffer that is out of room
 * grows at once to about what the thread's last batches wrote (steps.c, sink_more). */
static roo__buf spare_take(roo__sink *s)
{
    roo__buf b = { .paged = true }; /* a batch's output, as the spares were (common/buf.h) */
    size_t best = 0;

    if (!s->spare.len)
        return b;
    for (size_t i = 1; i < s->spare.len; i++)
        if (roo__ring_at(&s->spare, i).cap > roo__ring_at(&s->spare, best).cap)
            best = i;
    b = roo__ring_at(&s->spare, best);
    roo__ring_at(&s->spare, best) = roo__ring_at(&s->spare, 0);
    roo__ring_pop(&s->spare);
    b.len = 0;
    return b;
}

/* After the kept segments changed: the lowest outbox entry they still refer to. */
static void publish_kept_from(roo__sink *s)
{
    uint64_t from = UINT64_MAX;

    for (size_t i = 0; i < s->segs.len; i++)
        if (roo__ring_at(&s->segs, i).seq) {
            from = roo__ring_at(&s->segs, i).seq;
            break;
        }
    atomic_store_explicit(&s->kept_from, from, memory_order_release);
}

/*
 * The batch whose output buffer ob was just written to its end (its last byte is the
 * stream's `written`): keep its bytes. Those the outbox holds (entry seq, not 0) stay there,
 * referred to, and the batch keeps its buffer, whose pages are then warm for its next
 * output: the committer deletes the entry only once it is older than ring_cap. Otherwise
 * take the buffer (the batch gets a spare) or copy the bytes into the newest chunk. Then
 * drop what ended more than ring_cap ago.
 */
static void replay_keep(roo__sink *s, roo__buf *ob, uint64_t seq)
{
    uint64_t start = s->written - ob->len;
    uint64_t oldest = s->written > s->ring_cap ? s->written - s->ring_cap : 0;
    bool refs = false;

    if (seq && ob->len >= SEG_SWAP_MIN) {
        roo__ring_push(&s->segs, (replay_seg){ .start = start, .seq = seq, .len = ob->len });
        refs = true;
    } else if (ob->len >= SEG_SWAP_MIN) {
        /* Kept at most twice its bytes: what is held stays bounded by what is kept. */
        roo__buf_shrink(ob, 2 * ob->len);
        roo__ring_push(&s->segs, (replay_seg){ .start = start, .buf = *ob });
        *ob = spare_take(s);
    } else {
        replay_seg *last = s->segs.len ? &roo__ring_last(&s->segs) : NULL;
        if (!last || !last->chunk || last->start + last->buf.len != start ||
            last->buf.cap - last->buf.len < ob->len) {
            roo__ring_push(&s->segs, (replay_seg){ .start = start, .chunk = true });
            last = &roo__ring_last(&s->segs);
            roo__buf_reserve(&last->buf, ROO__MAX((size_t)SEG_CHUNK, ob->len));
        }
        roo__buf_append(&last->buf, ob->data, ob->len);
    }
    while (s->segs.len > 1 && seg_end(&roo__ring_at(&s->segs, 0)) <= oldest) {
        replay_seg old = roo__ring_at(&s->segs, 0);
        roo__ring_pop(&s->segs);
        refs |= old.seq != 0;
        if (old.seq)
            continue;
        if (!old.chunk && s->spare.len < SPARE_MAX)
            roo__ring_push(&s->spare, old.buf);
        else
            roo__buf_finish(&old.buf);
    }
    while (s->starts.len && roo__ring_at(&s->starts, 0) < oldest)
        roo__ring_pop(&s->starts);
    if (refs)
        publish_kept_from(s);
}

/* ---- completing a batch ---- */

/* A batch rebuilt from the outbox at start belongs to no thread: free it when written. */
static void free_recovered(roo__engine *e, roo__batch *b)
{
    for (size_t i = 0; i < e->nsinks; i++)
        roo__buf_finish(&b->out[i]);
    free(b);
}

/*
 * Every sink has written the batch's output: its records' latencies end now, counted in
 * the histograms of the thread `by` that wrote the last byte. Each entry of the batch stands
 * for a read (or a route buffer) and the records it produced here.
 */
static void note_written(roo__engine *e, const roo__batch *b, roo__writer by)
{
    int64_t now = roo__wall_ns();

    roo__hist_add(&e->written[by].committed_to_written, now - b->t_committed, b->nout);
    for (uint32_t i = 0; i < b->nlat; i++)
        if (b->lat[i].records)
            roo__hist_add(&e->written[by].e2e[b->lat[i].pipeline], now - b->lat[i].read_ns,
                          b->lat[i].records);
}

/* Thread `by`: drop one reference to b; the last one returns it home (or frees it). */
static void batch_unref(roo__engine *e, roo__batch *b, roo__writer by)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) > 1)
        return;
    if (b->owner && b->nout)
        note_written(e, b, by);
    if (b->owner)
        roo__batch_return(b);
    else
        free_recovered(e, b);
}

/* ---- writing (lock held) ---- */

static void sink_schedule_connect(roo__sink *s);
static void sink_update_events(roo__sink *s);

/* Account for n bytes just written from the FIFO (not resent from kept output). */
static void sink_advance(roo__sink *s, size_t n, roo__writer by)
{
    while (s->fifo.len) {
        roo__batch *b = roo__ring_at(&s->fifo, 0);
        roo__buf *ob = &b->out[s->idx];
        size_t take = ROO__MIN(n, ob->len - s->head_off);

        if (take) {
            if (s->head_off == 0 && s->ring_cap)
                roo__ring_push(&s->starts, s->written);
            s->written += take;
            s->head_off += take;
            s->pending_bytes -= take;
            n -= take;
        }
        if (s->head_off < ob->len)
            break;
        roo__ring_pop(&s->fifo);
        if (s->ring_cap && ob->len)
            replay_keep(s, ob, b->outbox_seq);
        s->head_off = 0;
        if (b->sink_nout) /* unknown for output resent from the outbox after a restart */
            s->records += b->sink_nout[s->idx];
        batch_unref(s->eng, b, by);
    }
    /* Only called once any resend is complete: nothing kept is owed. */
    s->replay_pos = s->written;
    atomic_store_explicit(&s->pub_records, s->records, memory_order_relaxed);
    atomic_store_explicit(&s->pub_written, s->written, memory_order_relaxed);
    atomic_store_explicit(&s->pub_held, s->pending_bytes, memory_order_relaxed);
}

/* Stream offset through which the sink's kernel acknowledged this connection's bytes. */
static uint64_t sink_acked(const roo__sink *s)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return s->conn_base;
    return s->conn_base + ti.tcpi_bytes_acked;
}

#define RESEND_PIECE (1024u * 1024u) /* bytes copied out of the outbox per resend write */

/* Bytes of the outbox entry named by key from `from` on, copied into s->resend from the
 * outbox log, where its reference (in LMDB) says it is; its length in *ret_total. */
static int resend_from_log(roo__sink *s, const uint8_t *key, size_t from, size_t *ret_total)
{
    roo__buf ref = { 0 };
    size_t n = 0;
    int rc = roo__store_get_part(s->eng->store, ROO__DB_OUTLOG, key, ROO__OUTBOX_KEY_LEN, 0,
                                 ROO__OUTLOG_REF_LEN, &ref, &n);

    if (rc == 0 && (n != ROO__OUTLOG_REF_LEN || ref.len != n))
        rc = -EIO;
    if (rc == 0) {
        uint64_t pos = roo__load_le64(ref.data), len = roo__load_le64(ref.data + 8);
        rc = len > SIZE_MAX / 2 ? -EIO
                                : roo__outlog_read(s->eng->outlog, pos, (size_t)len, from,
                                                   RESEND_PIECE, &s->resend);
        if (rc == 0)
            *ret_total = (size_t)len;
    }
    roo__buf_finish(&ref);
    return rc;
}

/*
 * The piece of kept output g (an outbox entry) from stream offset off on, copied into
 * s->resend, as *ret_iov. An entry that is gone (let go of on a full disk) or cannot be read
 * is skipped: replay_pos moves past it, *ret_iov is empty, and a warning says how much of
 * the resend was lost. Lock held.
 */
static void resend_piece(roo__sink *s, const replay_seg *g, uint64_t off, struct iovec *ret_iov)
{
    uint8_t key[ROO__OUTBOX_KEY_LEN];
    size_t total = 0;
    int rc;

    roo__key_outbox(key, s->idx, g->seq);
    s->resend.len = 0;
    rc = roo__store_get_part(s->eng->store, ROO__DB_OUTBOX, key, sizeof(key),
                             (size_t)(off - g->start), RESEND_PIECE, &s->resend, &total);
    /* A big output is in the outbox log, LMDB holding where. */
    if (rc == -ENOENT && s->eng->outlog)
        rc = resend_from_log(s, key, (size_t)(off - g->start), &total);
    if (rc < 0 || total != g->len || s->resend.len == 0) {
        char b[32];
        if (!s->resend_lost)
            roo__log_warn("sink %s: cannot resend %s of kept output (outbox entry %llu: %s); "
                          "resending what follows it",
                          s->addr_str, roo__fmt_bytes((size_t)(seg_end(g) - off), b, sizeof(b)),
                          (unsigned long long)g->seq,
                          rc < 0 ? roo_strerror(rc) : "not the size it was written with");
        s->resend_lost = true;
        s->replay_pos = seg_end(g);
        *ret_iov = (struct iovec){ NULL, 0 };
        return;
    }
    *ret_iov = (struct iovec){ s->resend.data, s->resend.len };
}

/*
 * Write what is owed, the resend of kept output first, then the FIFO, until done or the
 * socket is full. Returns 0 (all written or -EAGAIN internally) or the failed write's
 * -errno. Either thread, lock held, connected.
 */
static int sink_write(roo__sink *s, roo__writer by)
{
    while (s->replay_pos < s->written || s->fifo.len) {
        struct iovec iov[MAX_IOV];
        struct msghdr mh = { .msg_iov = iov };
        size_t niov = 0, replay_bytes = 0;
        ssize_t n;

        if (s->replay_pos < s->written) {
            /* Resend: the kept bytes from replay_pos on, then the head batch's written
             * part (they lie end to end in the stream). Bytes in the outbox go alone, a
             * piece at a time, copied out of it. */
            uint64_t off = s->replay_pos;
            bool from_outbox = false;
            for (size_t i = 0; i < s->segs.len && niov < MAX_IOV; i++) {
                const replay_seg *g = &roo__ring_at(&s->segs, i);
                uint64_t end = seg_end(g);
                if (end <= off)
                    continue;
                if (g->seq) {
                    if (niov == 0) {
                        resend_piece(s, g, off, &iov[niov++]);
                        from_outbox = true;
                    }
                    break;
                }
                iov[niov].iov_base = g->buf.data + (off - g->start);
                iov[niov++].iov_len = (size_t)(end - off);
                replay_bytes += (size_t)(end - off);
                off = end;
            }
            if (from_outbox) {
                if (iov[0].iov_len == 0) /* gone from the outbox: on to the next */
                    continue;
                replay_bytes = iov[0].iov_len;
            } else if (off < s->written && niov < MAX_IOV && s->fifo.len &&
                       off >= s->written - s->head_off) {
                const roo__buf *ob = &roo__ring_at(&s->fifo, 0)->out[s->idx];
                uint64_t head_start = s->written - s->head_off;
                iov[niov].iov_base = ob->data + (off - head_start);
                iov[niov++].iov_len = (size_t)(s->written - off);
                replay_bytes += (size_t)(s->written - off);
            }
            if (niov == 0) { /* nothing held from there (cannot happen): resend no more */
                s->replay_pos = s->written;
                continue;
            }
        } else {
            for (size_t i = 0; i < s->fifo.len && niov < MAX_IOV; i++) {
                roo__buf *ob = &roo__ring_at(&s->fifo, i)->out[s->idx];
                size_t skip = i == 0 ? s->head_off : 0;
                if (ob->len > skip) {
                    iov[niov].iov_base = ob->data + skip;
                    iov[niov++].iov_len = ob->len - skip;
                }
            }
            if (niov == 0) {
                /* Only empty outputs queued: retire them. */
                sink_advance(s, 0, by);
                continue;
            }
        }
        mh.msg_iovlen = niov;
        n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -errno;
        }
        if (replay_bytes)
            s->replay_pos += (uint64_t)n;
        else
            sink_advance(s, (size_t)n, by);
    }
    return 0;
}

/*
 * The connection ended. What must be sent again? A sink that closed cleanly (we read EOF:
 * its kernel sent FIN, so its receive buffer was empty when it closed) had read every byte
 * its kernel acknowledged: resend from the batch holding the first unacknowledged byte, or
 * nothing. A connection that was reset (a sink killed with unread data, a network failure)
 * may have lost acknowledged bytes too: resend everything still kept.
 * io thread, lock held.
 */
static void sink_disconnect(roo__sink *s, const char *why, int err, bool clean)
{
    uint64_t sent_upto = s->replay_pos < s->written ? s->replay_pos : s->written;
    uint64_t acked = s->connected ? sink_acked(s) : s->conn_base;
    size_t resend = 0;

    roo__io_stop(s->eng->io_loop, &s->io);
    close(s->fd);
    s->fd = -1;
    s->connected = s->connecting = false;
    s->write_err = 0;
    atomic_store_explicit(&s->pub_connected, false, memory_order_relaxed);
    if (clean && acked >= sent_upto && s->replay_pos >= s->written) {
        s->replay_pos = s->written;
    } else if (s->starts.len) {
        /* The last batch start at or before the first byte that may be unread. */
        uint64_t from = roo__ring_at(&s->starts, 0);
        if (clean) {
            for (size_t i = s->starts.len; i > 0; i--) {
                uint64_t st = roo__ring_at(&s->starts, i - 1);
                if (st <= acked) {
                    from = st;
                    break;
                }
            }
        }
        s->replay_pos = from;
        s->resend_lost = false;
        resend = (size_t)(s->written - s->replay_pos);
    } else {
        s->replay_pos = s->written;
    }
    if (!s->eng->io_stopping || s->pending_bytes) {
        char b1[32], b2[32];
        roo__log_warn("sink %s: %s%s%s; reconnecting, will resend the last %s written and "
                      "then %s of held output",
                      s->addr_str, why, err ? ": " : "", err ? roo_strerror(err) : "",
                      roo__fmt_bytes(resend, b1, sizeof(b1)),
                      roo__fmt_bytes(s->pending_bytes, b2, sizeof(b2)));
    }
    roo__backoff_reset(&s->retry);
    sink_schedule_connect(s);
}

/* io thread, lock held: write what is owed, or act on a write that failed. */
static void sink_flush(roo__sink *s)
{
    int rc;

    if (!s->connected)
        return;
    rc = s->write_err ? s->write_err : sink_write(s, ROO__BY_IO);
    if (rc < 0) {
        sink_disconnect(s, "write failed", rc, false);
        return;
    }
    sink_update_events(s);
}

/* io thread, lock held: want EPOLLOUT while anything is owed (the committer relies on it). */
static void sink_update_events(roo__sink *s)
{
    uint32_t ev = EPOLLIN | EPOLLRDHUP;

    if (!s->connected)
        return;
    if (s->replay_pos < s->written || s->fifo.len)
        ev |= EPOLLOUT;
    roo__io_set_events(s->eng->io_loop, &s->io, ev);
}

/* ---- connecting (io thread) ---- */

/* io thread, lock held: the connect finished (rc 0) or failed. */
static void sink_connected(roo__sink *s, int rc)
{
    if (rc < 0) {
        roo__io_stop(s->eng->io_loop, &s->io);
        close(s->fd);
        s->fd = -1;
        s->connecting = false;
        if (roo__backoff_failed(&s->retry))
            roo__log_warn("sink %s: cannot connect: %s; retrying with backoff and holding "
                          "output meanwhile",
                          s->addr_str, roo_strerror(rc));
        else
            roo__log_debug("sink %s: connect attempt %u failed: %s", s->addr_str, s->retry.failures,
                           roo_strerror(rc));
        sink_schedule_connect(s);
        return;
    }
    s->connecting = false;
    s->connected = true;
    atomic_store_explicit(&s->pub_connected, true, memory_order_relaxed);
    s->conn_base = s->replay_pos < s->written ? s->replay_pos : s->written;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
    if (s->replay_pos < s->written) {
        char b[32];
        roo__log_info("sink %s: connected; resending the last %s written before the "
                      "previous connection broke",
                      s->addr_str, roo__fmt_bytes(s->written - s->replay_pos, b, sizeof(b)));
    } else {
        roo__log_info("sink %s: connected", s->addr_str);
    }
    roo__backoff_reset(&s->retry);
    sink_flush(s);
}

/* io thread, lock held. */
static void sink_events(roo__sink *s, uint32_t events)
{
    if (s->connecting) {
        sink_connected(s, roo__tcp_connect_result(s->fd));
        return;
    }
    if (s->write_err) {
        /* The committer's write took the socket's error (a reset): recv would now read an
         * orderly EOF and resend too little. Its kick may still be on its way. */
        sink_disconnect(s, "write failed", s->write_err, false);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* A sink has nothing to say to us: drain and detect its close. */
        uint8_t junk[4096];
        ssize_t n = recv(s->fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (n == 0) {
            sink_disconnect(s, "connection closed by the sink", 0, true);
            return;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            sink_disconnect(s, "connection lost", -errno, false);
            return;
        }
    }
    if (events & EPOLLOUT)
        sink_flush(s);
}

/* io thread. */
static void sink_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__sink *s = io->data;

    (void)loop;
    pthread_mutex_lock(&s->lock);
    sink_events(s, events);
    pthread_mutex_unlock(&s->lock);
    roo__io_check_drained(s->eng);
}

/* io thread (or main, before the io thread starts). */
static void sink_try_connect(roo__sink *s)
{
    const roo__addr *a = &s->eng->cfg.out[s->idx];
    int rc, fd;

    rc = roo__tcp_connect_start(a, &fd);
    if (rc < 0) {
        if (roo__backoff_failed(&s->retry))
            roo__log_warn("sink %s: cannot connect: %s; retrying with backoff and holding "
                          "output meanwhile",
                          s->addr_str, roo_strerror(rc));
        sink_schedule_connect(s);
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->fd = fd;
    s->connecting = true;
    s->io.cb = sink_on_io;
    s->io.data = s;
    rc = roo__io_start(s->eng->io_loop, &s->io, fd, EPOLLOUT);
    if (rc < 0) {
        roo__log_error("sink %s: cannot watch socket: %s", s->addr_str, roo_strerror(rc));
        close(fd);
        s->fd = -1;
        s->connecting = false;
        sink_schedule_connect(s);
    }
    pthread_mutex_unlock(&s->lock);
}

static void sink_on_retry(roo__loop *loop, roo__timer *t)
{
    (void)loop;
    sink_try_connect(t->data);
}

/* io thread. */
static void sink_schedule_connect(roo__sink *s)
{
    roo__backoff_schedule(s->eng->io_loop, &s->retry);
}

/* ---- committed batches ---- */

/*
 * Queue the output of committed batch b on every sink that has some, in commit order, for
 * thread `by`. For the committer (the batch's sinks are idle, as far as it knows) it also
 * writes what it can at once, and hands the rest to io with the sink's kick. The batch's
 * references: one per sink with output, and one held here until every sink has it.
 */
static void queue_batch(roo__engine *e, roo__batch *b, roo__writer by, bool write_now)
{
    atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        bool was_empty;

        if (b->out[i].len == 0)
            continue;
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        pthread_mutex_lock(&s->lock);
        was_empty = s->fifo.len == 0;
        fifo_push(s, b);
        if (by == ROO__BY_COMMITTER && was_empty) {
            /* io owns a sink that is down, resending or failing; else it is ours to try. */
            if (write_now && s->connected && s->replay_pos >= s->written && !s->write_err)
                s->write_err = sink_write(s, by);
            if (s->fifo.len &&
                !atomic_exchange_explicit(&s->kick_queued, true, memory_order_acq_rel))
                roo__queue_push(&e->io_q, &s->kick);
        }
        pthread_mutex_unlock(&s->lock);
    }
    batch_unref(e, b, by);
}

void roo__sinks_queue(roo__engine *e, roo__batch *b)
{
    queue_batch(e, b, ROO__BY_IO, false);
}

bool roo__sinks_write_committed(roo__engine *e, roo__batch *b, bool write_now)
{
    if (atomic_load_explicit(&e->sink_handoff, memory_order_acquire) > 0 ||
        ((b->nacks || b->remote) && e->hooks.batch_committed)) {
        atomic_fetch_add_explicit(&e->sink_handoff, 1, memory_order_relaxed);
        return false;
    }
    queue_batch(e, b, ROO__BY_COMMITTER, write_now);
    return true;
}

void roo__sinks_handed_off(roo__engine *e)
{
    atomic_fetch_sub_explicit(&e->sink_handoff, 1, memory_order_release);
}

void roo__sinks_kicked(roo__qnode *n)
{
    roo__sink *s = ROO__CONTAINER_OF(n, roo__sink, kick);

    /* n->next was read already: the committer may queue the node again from here on. */
    atomic_store_explicit(&s->kick_queued, false, memory_order_release);
}

void roo__sinks_flush(roo__engine *e)
{
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        pthread_mutex_lock(&s->lock);
        sink_flush(s);
        pthread_mutex_unlock(&s->lock);
    }
}

/* ---- the io thread's views ---- */

bool roo__io_sinks_idle(const roo__engine *e)
{
    bool idle = true;

    for (size_t i = 0; i < e->nsinks && idle; i++) {
        roo__sink *s = &e->sinks[i];
        pthread_mutex_lock(&s->lock);
        idle = s->fifo.len == 0;
        pthread_mutex_unlock(&s->lock);
    }
    return idle;
}

void roo__io_sinks_mark(const roo__engine *e, uint64_t *ret_marks)
{
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        pthread_mutex_lock(&s->lock);
        ret_marks[i] = s->written + s->pending_bytes;
        pthread_mutex_unlock(&s->lock);
    }
}

bool roo__io_sinks_reached(const roo__engine *e, const uint64_t *marks)
{
    bool reached = true;

    for (size_t i = 0; i < e->nsinks && reached; i++) {
        roo__sink *s = &e->sinks[i];
        pthread_mutex_lock(&s->lock);
        reached = s->written >= marks[i];
        pthread_mutex_unlock(&s->lock);
    }
    return reached;
}

void roo__sinks_warn_held(roo__engine *e)
{
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        pthread_mutex_lock(&s->lock);
        if (s->fifo.len) {
            char b[32];
            roo__log_warn("sink %s: stopping with %s of committed output not delivered "
                          "(the sink is not taking it)",
                          s->addr_str, roo__fmt_bytes(s->pending_bytes, b, sizeof(b)));
        }
        pthread_mutex_unlock(&s->lock);
    }
}

uint64_t roo__sinks_kept_from(roo__engine *e, size_t i)
{
    return atomic_load_explicit(&e->sinks[i].kept_from, memory_order_acquire);
}

void roo__sinks_publish_unacked(roo__engine *e)
{
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        uint64_t from;
        pthread_mutex_lock(&s->lock);
        from = s->connected ? ROO__MIN(sink_acked(s), s->written)
                            : ROO__MIN(s->replay_pos, s->written);
        atomic_store_explicit(&s->pub_unacked, s->written - from, memory_order_relaxed);
        pthread_mutex_unlock(&s->lock);
    }
}

void roo__io_sink_counts(const roo__engine *e, size_t i, roo__snapshot_sink *ret_counts)
{
    roo__sink *s = &e->sinks[i];

    ret_counts->records = atomic_load_explicit(&s->pub_records, memory_order_relaxed);
    ret_counts->bytes = atomic_load_explicit(&s->pub_written, memory_order_relaxed);
    ret_counts->held = atomic_load_explicit(&s->pub_held, memory_order_relaxed);
    ret_counts->unacked = atomic_load_explicit(&s->pub_unacked, memory_order_relaxed);
    ret_counts->connected = atomic_load_explicit(&s->pub_connected, memory_order_relaxed);
}

/* ---- set-up ---- */

void roo__sinks_init(roo__engine *e)
{
    size_t buffers = roo__tcp_buffers_max();

    e->nsinks = e->app->nsinks;
    e->sinks = roo__xcalloc(e->nsinks, sizeof(roo__sink));
    /* io's count until it has queued the output recovered from the outbox (roo__io_main). */
    atomic_store_explicit(&e->sink_handoff, 1, memory_order_relaxed);
    for (size_t i = 0; i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        s->eng = e;
        s->idx = (unsigned)i;
        s->fd = -1;
        s->kick.kind = ROO__Q_SINK_KICK;
        pthread_mutex_init(&s->lock, NULL);
        roo__backoff_init(&s->retry, sink_on_retry, s);
        roo__addr_str(&e->cfg.out[i], s->addr_str, sizeof(s->addr_str));
        s->ring_cap = e->cfg.sink_replay_bytes;
        atomic_init(&s->kept_from, UINT64_MAX);
        /* Kept output must cover what a dead sink may not have read: everything the
         * connection's buffers hold (a sink on this host can buffer up to tcp_rmem's
         * maximum, 32 MiB on the project's machine, more than the default). */
        if (s->ring_cap && s->ring_cap < buffers) {
            char b1[32], b2[32];
            roo__log_debug("sink %s: keeping the last %s written to resend after a broken "
                           "connection: --sink-replay %s is less than this host's TCP "
                           "buffers hold",
                           s->addr_str, roo__fmt_bytes(buffers, b1, sizeof(b1)),
                           roo__fmt_bytes(s->ring_cap, b2, sizeof(b2)));
            s->ring_cap = buffers;
        }
    }
}

void roo__sinks_connect(roo__engine *e)
{
    for (size_t i = 0; i < e->nsinks; i++)
        sink_try_connect(&e->sinks[i]);
}

void roo__sinks_finish(roo__engine *e)
{
    for (size_t i = 0; e->sinks && i < e->nsinks; i++) {
        roo__sink *s = &e->sinks[i];
        if (s->fd >= 0)
            close(s->fd);
        roo__ring_free(&s->fifo);
        for (size_t j = 0; j < s->segs.len; j++)
            roo__buf_finish(&roo__ring_at(&s->segs, j).buf);
        roo__ring_free(&s->segs);
        roo__ring_free(&s->starts);
        for (size_t j = 0; j < s->spare.len; j++)
            roo__buf_finish(&roo__ring_at(&s->spare, j));
        roo__ring_free(&s->spare);
        roo__buf_finish(&s->resend);
        pthread_mutex_destroy(&s->lock);
    }
    free(e->sinks);
    e->sinks = NULL;
}
