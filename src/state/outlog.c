/* outlog.c: the outbox's big entries, in a ring file beside LMDB (outlog.h has the design). */
#include "state/outlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAGIC 0x6c6f6f72u /* "rool" read as u32 LE */
_Static_assert(ROO__OUTLOG_HDR == ROO__BUF_HEADROOM, "a paged buffer's headroom holds a header");
/* Filling ahead only where the filesystem keeps this much free after it. */
#define PREFILL_SPARE ((uint64_t)1 << 30)
/* ext4's statfs f_type: it writes a file's allocated blocks in place (no copy on write, no
 * shared extents). Not XFS: a reflinked copy of the log (cp's default there) shares its
 * extents, and an overwrite then allocates. */
#define EXT4_MAGIC 0xEF53u

struct roo__outlog {
    int fd;
    int dfd; /* the same file opened O_DIRECT, for paged buffers; -1: none */
    uint64_t size;
    uint64_t tail, head;
    uint64_t end;    /* the file's size: nothing at or past it was ever written */
    bool dirty;      /* appended since the last sync */
    bool no_prefill; /* the disk was full, or the filesystem would not take zeros */
    bool in_place;   /* ext4: an overwrite of a written block changes no metadata */
    bool whole;      /* every block up to size written once (no hole, no growth left) */
    bool settled;    /* whole, and a sync made that durable: syncs need no metadata */
};

int roo__outlog_place(uint64_t size, uint64_t tail, uint64_t head, uint64_t need, uint64_t *ret_pos)
{
    uint64_t at, pos = head;

    if (size == 0 || need > size || head < tail || head - tail > size)
        return -ENOBUFS;
    at = head % size;
    if (at + need > size) /* not before the file's end: the next lap */
        pos = head + (size - at);
    if (pos + need - tail > size)
        return -ENOBUFS;
    *ret_pos = pos;
    return 0;
}

int roo__outlog_open(const char *dir, uint64_t size, roo__outlog **ret_log)
{
    char path[4096];
    roo__outlog *l;
    struct stat st, mdb;
    struct statfs fs;
    int fd, n;

    if (size < ((uint64_t)1 << 20) || size % 8)
        return -EINVAL;
    n = snprintf(path, sizeof(path), "%s/%s", dir, ROO__OUTLOG_FILE);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    l = roo__xcalloc(1, sizeof(*l));
    l->fd = fd;
    /* Where the filesystem takes it; the ring's positions map to pages only if its size is
     * a multiple of one. */
    l->dfd = size % ROO__PAGE ? -1 : open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    l->size = size;
    l->end = (uint64_t)st.st_size;
    l->in_place = fstatfs(fd, &fs) == 0 && (uint32_t)fs.f_type == EXT4_MAGIC;
    /* LMDB's file must be on the same device, for its flush to cover this one's bytes (a
     * data.mdb linked elsewhere is not). */
    n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (l->in_place && n > 0 && (size_t)n < sizeof(path) && stat(path, &mdb) == 0 &&
        mdb.st_dev != st.st_dev)
        l->in_place = false;
    /* Filled by an earlier run, and no hole punched since (a full disk): no block of it
     * needs allocating. (The first sync is an fdatasync all the same.) */
    l->whole = l->end >= size && lseek(fd, 0, SEEK_HOLE) >= (off_t)size;
    *ret_log = l;
    return 0;
}

void roo__outlog_close(roo__outlog *l)
{
    if (!l)
        return;
    close(l->fd);
    if (l->dfd >= 0)
        close(l->dfd);
    free(l);
}

/*
 * All of iov's bytes written at (write) or read from file offset off: one call in the common
 * case; a call cut short (a signal, a full disk, the file's end) goes on, or fails. iov is
 * used up.
 */
static int io_all(int fd, struct iovec *iov, int niov, off_t off, bool write)
{
    for (;;) {
        ssize_t n;
        while (niov > 0 && iov->iov_len == 0) {
            iov++;
            niov--;
        }
        if (niov == 0)
            return 0;
        n = write ? pwritev(fd, iov, niov, off) : preadv(fd, iov, niov, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        off += n;
        for (; n > 0; iov++, niov--) {
            size_t k = ROO__MIN((size_t)n, iov->iov_len);
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= k;
            n -= (ssize_t)k;
            if (iov->iov_len)
                break;
        }
    }
}

/* An entry's header (the table in outlog.h). */
static void header_put(uint8_t *hdr, size_t len, uint64_t pos)
{
    roo__store_le32(hdr, MAGIC);
    roo__store_le32(hdr + 4, (uint32_t)len);
    roo__store_le64(hdr + 8, pos);
}

/* An entry of span bytes written at pos: the head moves past it. */
static void appended(roo__outlog *l, uint64_t pos, uint64_t span)
{
    l->head = pos + span;
    l->end = ROO__MAX(l->end, pos % l->size + span);
    l->dirty = true;
}

int roo__outlog_append(roo__outlog *l, const void *data, size_t len, uint64_t *ret_pos)
{
    uint64_t span = roo__outlog_span(len), pos;
    uint8_t hdr[ROO__OUTLOG_HDR], pad[8] = { 0 };
    struct iovec iov[3];
    int rc;

    if (len > UINT32_MAX)
        return -ENOBUFS;
    rc = roo__outlog_place(l->size, l->tail, l->head, span, &pos);
    if (rc < 0)
        return rc;
    header_put(hdr, len, pos);
    iov[0] = (struct iovec){ hdr, sizeof(hdr) };
    iov[1] = (struct iovec){ (void *)data, len };
    iov[2] = (struct iovec){ pad, (size_t)(span - ROO__OUTLOG_HDR - len) };
    rc = io_all(l->fd, iov, 3, (off_t)(pos % l->size), true);
    if (rc < 0)
        return rc;
    appended(l, pos, span);
    *ret_pos = pos;
    return 0;
}

/*
 * A paged buffer's entry, written from where it lies: the header in its headroom, header and
 * bytes rounded up to whole pages, at a page-aligned position (O_DIRECT takes nothing else).
 * 1: not written, the filesystem refused (a device whose blocks are bigger than a page, say):
 * direct writes stop for good and the caller writes it through the page cache.
 */
static int append_direct(roo__outlog *l, roo__buf *b, uint64_t *ret_pos)
{
    uint64_t head = (l->head + ROO__PAGE - 1) / ROO__PAGE * ROO__PAGE, pos;
    uint64_t span = (ROO__OUTLOG_HDR + b->len + ROO__PAGE - 1) / ROO__PAGE * ROO__PAGE;
    uint8_t *hdr = b->data - ROO__BUF_HEADROOM;
    struct iovec iov;
    int rc;

    rc = roo__outlog_place(l->size, l->tail, head, span, &pos);
    if (rc < 0)
        return rc;
    header_put(hdr, b->len, pos);
    /* zeros to the page's end, as after any entry (the buffer's room past its bytes) */
    memset(b->data + b->len, 0, (size_t)span - ROO__OUTLOG_HDR - b->len);
    iov = (struct iovec){ hdr, (size_t)span };
    rc = io_all(l->dfd, &iov, 1, (off_t)(pos % l->size), true);
    if (rc == -EINVAL && iov.iov_len == span) {
        close(l->dfd);
        l->dfd = -1;
        return 1;
    }
    if (rc < 0)
        return rc;
    appended(l, pos, span);
    *ret_pos = pos;
    return 0;
}

int roo__outlog_append_buf(roo__outlog *l, roo__buf *b, uint64_t *ret_pos)
{
    if (b->paged && b->len > 0 && b->len <= UINT32_MAX && l->dfd >= 0) {
        int rc = append_direct(l, b, ret_pos);
        if (rc <= 0)
            return rc;
    }
    return roo__outlog_append(l, b->data, b->len, ret_pos);
}

int roo__outlog_prefill(roo__outlog *l, size_t max)
{
    static const uint8_t zeros[1 << 16];
    struct iovec iov[64];
    struct statvfs vfs;
    uint64_t n;
    int niov = 0, rc;

    if (l->no_prefill || l->end >= l->size)
        return 0;
    if (fstatvfs(l->fd, &vfs) < 0 ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < l->size - l->end + PREFILL_SPARE) {
        l->no_prefill = true; /* a small or crowded filesystem: its room is for the state */
        return 0;
    }
    n = ROO__MIN((uint64_t)max, l->size - l->end);
    n = ROO__MIN(n, (uint64_t)sizeof(zeros) * 64);
    for (uint64_t left = n; left > 0; niov++) {
        size_t k = (size_t)ROO__MIN(left, (uint64_t)sizeof(zeros));
        iov[niov] = (struct iovec){ (void *)zeros, k };
        left -= k;
    }
    rc = io_all(l->fd, iov, niov, (off_t)l->end, true);
    if (rc == 0 && fdatasync(l->fd) < 0)
        rc = -errno;
    if (rc == 0 && l->end + n >= l->size) {
        l->whole = true;
        l->settled = l->in_place; /* synced just now, blocks and size */
    }
    if (rc < 0) {
        struct stat st;
        /* Some of it may be written: where the file ends now is what counts. */
        if (fstat(l->fd, &st) == 0 && (uint64_t)st.st_size > l->end)
            l->end = (uint64_t)st.st_size;
        l->no_prefill = true;
        return rc;
    }
    l->end += n;
    return l->end < l->size;
}

uint64_t roo__outlog_head(const roo__outlog *l)
{
    return l->head;
}

void roo__outlog_rewind(roo__outlog *l, uint64_t head)
{
    if (head >= l->tail && head <= l->head)
        l->head = head;
}

int roo__outlog_sync(roo__outlog *l)
{
    if (!l->dirty)
        return 0;
    if (l->settled) {
        /* Only data, over blocks allocated and written before: write it and wait for the
         * device to have it; the commit's flush that follows makes it durable. */
        if (sync_file_range(l->fd, 0, 0,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER) < 0)
            return -errno;
    } else {
        if (fdatasync(l->fd) < 0)
            return -errno;
        l->settled = l->whole && l->in_place;
    }
    l->dirty = false;
    return 0;
}

bool roo__outlog_direct(const roo__outlog *l)
{
    return l->dfd >= 0;
}

bool roo__outlog_settled(const roo__outlog *l)
{
    return l->settled;
}

void roo__outlog_release(roo__outlog *l, uint64_t pos)
{
    if (pos > l->tail)
        l->tail = ROO__MIN(pos, l->head);
}

/* Punch [from, to) of the file, within its size. */
static int punch(int fd, uint64_t from, uint64_t to)
{
    if (from >= to)
        return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) <
        0)
        return -errno;
    return 0;
}

int roo__outlog_punch(roo__outlog *l)
{
    uint64_t at = l->tail % l->size, end = l->head % l->size;
    int rc;

    l->no_prefill = true;          /* the disk is full: zeros would take the room back */
    l->whole = l->settled = false; /* a write into a hole allocates: fdatasync again */
    if (l->head == l->tail) {      /* nothing live: the whole file */
        if (ftruncate(l->fd, 0) < 0)
            return -errno;
        l->end = 0;
        return 0;
    }
    if (l->head - l->tail >= l->size)
        return 0;
    if (end == 0)
        end = l->size;
    if (at < end) { /* live in [at, end): before and after it */
        rc = punch(l->fd, 0, at);
        return rc < 0 ? rc : punch(l->fd, end, l->size);
    }
    return punch(l->fd, end, at); /* live wraps: free between its end and its start */
}

void roo__outlog_recovered(roo__outlog *l, uint64_t tail, uint64_t head)
{
    l->tail = tail;
    l->head = head;
}

/* Whether the header at pos is that of the entry at pos with a payload of len bytes. */
static int header_check(roo__outlog *l, uint64_t pos, size_t len)
{
    uint8_t hdr[ROO__OUTLOG_HDR];
    struct iovec iov = { hdr, sizeof(hdr) };
    int rc = io_all(l->fd, &iov, 1, (off_t)(pos % l->size), false);

    if (rc < 0)
        return rc;
    if (roo__load_le32(hdr) != MAGIC || roo__load_le32(hdr + 4) != len ||
        roo__load_le64(hdr + 8) != pos)
        return -EIO;
    return 0;
}

int roo__outlog_read(roo__outlog *l, uint64_t pos, size_t len, size_t off, size_t max,
                     roo__buf *out)
{
    uint64_t at = pos % l->size;
    struct iovec iov;
    size_t want;
    int rc;

    if (pos % 8 || at + roo__outlog_span(len) > l->size)
        return -EIO;
    rc = header_check(l, pos, len);
    if (rc < 0 || off >= len)
        return rc;
    want = ROO__MIN(max, len - off);
    iov = (struct iovec){ roo__buf_reserve(out, want), want };
    rc = io_all(l->fd, &iov, 1, (off_t)(at + ROO__OUTLOG_HDR + off), false);
    /* An entry is written header first: still its header, still its bytes. */
    if (rc == 0)
        rc = header_check(l, pos, len);
    if (rc == 0)
        out->len += want;
    return rc;
}
