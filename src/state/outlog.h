/* outlog.h: the outbox's big entries, in a ring file beside LMDB (outbox.log).
 *
 * DESIGN
 * A batch's output is stored with its commit (the outbox) so that a restart can send it
 * again. Copied into LMDB, a big output costs LMDB an allocation and a copy of its own,
 * and its sync writes pages scattered over the map; here it is written once, where the
 * ring's head is, straight from the batch's buffer. LMDB keeps only a reference to it
 * (the outlog database: outbox key -> position and length), committed after the ring is
 * synced, so a committed reference always points at durable bytes.
 *
 * Positions are logical (a u64 that only grows); an entry lies at position % size in the
 * file and never wraps: one that does not fit before the file's end starts the next lap.
 * The live entries are [tail, head). The committer appends, syncs and releases; a full ring
 * is no error, the caller keeps that output in LMDB instead. The committer moves the tail
 * only past entries whose references are deleted in a committed transaction and which no
 * sink may read to resend, so an entry's bytes are never overwritten while anything could
 * read them. The file grows during its first lap and is overwritten in place after. Ahead
 * of the first lap, while the committer has nothing to commit, the file is filled with zeros
 * to its full size, a few MiB at a time past its end (where nothing was ever written), and
 * synced: a sync that must also allocate blocks and grow the file costs about twice one
 * that overwrites (measured here: 64 appends of 1 MiB, each synced, 50-60 ms on a new file,
 * 30 ms on a filled one), and posix_fallocate or a zeroed range do not help (their blocks
 * are marked unwritten, and the first write converts them). It fills only where the
 * filesystem would keep 1 GiB free after it; on a full disk it stops for good, and the room
 * it took is given back with the rest of the free room.
 *
 * Settled: on ext4 (which writes an allocated block in place), once every block of the ring
 * has been written and an fdatasync made that durable (filled ahead, or found whole at open:
 * full size, no hole), an append changes no metadata, so its sync need not flush the device
 * itself: sync_file_range writes the bytes and waits for the device, and LMDB's commit right
 * after flushes the device (its data sync, or with data=journal the journal commit that
 * holds these bytes too) before it writes its commit point, on the same device (data.mdb in
 * the same directory, checked at open). Two flushes, not three; measured here, one worker
 * 61 -> 70 M votes/s (A-B-B-A, 8 rounds). Anywhere else (another filesystem, a hole punched
 * on a full disk, the first lap still growing the file), every sync is an fdatasync.
 *
 * Direct: a batch's output buffer is paged (common/buf.h), and the committer writes it with
 * O_DIRECT, from where it lies: its header goes into the buffer's headroom, and header plus
 * bytes, rounded up to whole pages, go to a page-aligned position. Through the page cache,
 * writing the output cost the committer a copy of every byte and the page cache's
 * bookkeeping, about a third of its CPU time, for pages that nothing reads unless the worker
 * restarts. A direct write is on the device when it returns, so the sync of a settled ring
 * has nothing left to write, and the commit's flush makes it durable as above; before that,
 * fdatasync still syncs the metadata. Reads (a resend, a restart) go through the page cache,
 * which the kernel keeps coherent with direct writes. A filesystem that refuses O_DIRECT, at
 * open or at a write, gets every entry through the page cache.
 *
 * Each entry starts with a header, which a read checks before it trusts the bytes:
 *
 *   | bytes | field                                   |
 *   |-------|-----------------------------------------|
 *   | 4     | magic "rool"                            |
 *   | 4     | u32 LE payload length                   |
 *   | 8     | u64 LE the entry's position             |
 *   | len   | payload, then zeros to a multiple of 8  |
 *
 * A direct entry's zeros go on to its page boundary.
 *
 * Thread rules: append, sync, rewind, release, recovered, punch and prefill: the committer
 * (or the engine before its threads start). read: any thread (pread on a file descriptor
 * fixed at open).
 */
#ifndef ROO_OUTLOG_H
#define ROO_OUTLOG_H

#include "common/buf.h"
#include "common/common.h"

#define ROO__OUTLOG_HDR 16u
#define ROO__OUTLOG_FILE "outbox.log"

typedef struct roo__outlog roo__outlog;

/* Where an entry of need bytes (header included) goes in a ring of size bytes whose live
 * entries are [tail, head): its position in *ret_pos, or -ENOBUFS when it does not fit.
 * Pure. */
int roo__outlog_place(uint64_t size, uint64_t tail, uint64_t head, uint64_t need,
                      uint64_t *ret_pos);

/* Bytes an entry of payload len takes in the ring. */
static inline uint64_t roo__outlog_span(size_t len)
{
    return ROO__OUTLOG_HDR + (((uint64_t)len + 7) & ~(uint64_t)7);
}

/* Open (creating it empty if missing) dir/outbox.log, a ring of size bytes (a multiple of 8,
 * at least 1 MiB). */
int roo__outlog_open(const char *dir, uint64_t size, roo__outlog **ret_log);
void roo__outlog_close(roo__outlog *l);

/* Write an entry at the head; its position in *ret_pos. -ENOBUFS: the ring has no room for
 * it (nothing written); another negative errno: the write failed. */
int roo__outlog_append(roo__outlog *l, const void *data, size_t len, uint64_t *ret_pos);
/* The same for the bytes of b: a paged buffer (common/buf.h) goes to the disk from where it
 * lies, its header written into its headroom; any other through the page cache. The entry
 * ends at the head after it (a direct one is rounded up to pages). */
int roo__outlog_append_buf(roo__outlog *l, roo__buf *b, uint64_t *ret_pos);
/* Whether paged buffers are written direct (the filesystem took O_DIRECT, and has not refused
 * a write since). */
bool roo__outlog_direct(const roo__outlog *l);
/* The head, and going back to one (the entries after it were for a commit that failed). */
uint64_t roo__outlog_head(const roo__outlog *l);
void roo__outlog_rewind(roo__outlog *l, uint64_t head);
/*
 * Make every entry appended so far durable (nothing if none since the last), ahead of the
 * LMDB commit that refers to them: an fdatasync, or, once the ring is settled (above), a
 * write the device has acknowledged, made durable by the device flush of that commit's own
 * data sync, which LMDB does before it writes its meta page (the commit point). Either way
 * the entries are durable by the time the commit is.
 */
int roo__outlog_sync(roo__outlog *l);
/* Whether syncs need no flush of their own now (settled, above). */
bool roo__outlog_settled(const roo__outlog *l);
/* Entries before pos will not be read again: their room may be written. */
void roo__outlog_release(roo__outlog *l, uint64_t pos);
/* Give the file's room outside the live entries back to the filesystem (a full disk: LMDB
 * needs it); 0, or a negative errno (the filesystem cannot). */
int roo__outlog_punch(roo__outlog *l);
/* Fill up to max bytes more of the file with zeros past where anything was ever written,
 * and sync them: 1 while there is more to fill; 0 when there is nothing more to do (the
 * file has its full size, or filling stopped: a full disk, a filesystem without 1 GiB to
 * spare); a negative errno when a write or sync failed (filling then stops for good). */
int roo__outlog_prefill(roo__outlog *l, size_t max);
/* After a restart: the live entries are [tail, head). */
void roo__outlog_recovered(roo__outlog *l, uint64_t tail, uint64_t head);

/* Bytes [off, off + max) of the entry at pos, whose payload is len bytes, appended to out
 * (fewer where it ends). -EIO if the header there is not that entry's, before the read or
 * after it (its room was written again meanwhile: only possible once the committer let go of
 * it on a full disk); out is then as it was. Any thread. */
int roo__outlog_read(roo__outlog *l, uint64_t pos, size_t len, size_t off, size_t max,
                     roo__buf *out);

#endif /* ROO_OUTLOG_H */
