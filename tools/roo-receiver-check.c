/* roo-receiver-check.c: roo-receiver's Alphabet output checker: the --votes running sums, repeat
 * tracking and the final comparison with the expected totals. */
#include "roo-receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Large running-sum arrays get their own mapping with huge pages: tens of millions of
 * votes otherwise cost one page fault per 4 KiB, which dominated loading time in a VM.
 */
#define HUGE_ARRAY_BYTES (1u << 20)

/* Grows *arr (n entries used, *capp allocated) to hold at least need entries. */
static int u64_array_grow(uint64_t **arr, uint64_t *capp, uint64_t n, uint64_t need)
{
    uint64_t cap = *capp ? *capp : 4096;
    size_t oldb = (size_t)*capp * sizeof(uint64_t), newb;
    void *np;

    while (cap < need)
        cap *= 2;
    newb = (size_t)cap * sizeof(uint64_t);
    if (newb < HUGE_ARRAY_BYTES) {
        np = realloc(*arr, newb);
        if (!np)
            return -ENOMEM;
    } else if (oldb < HUGE_ARRAY_BYTES) {
        np = mmap(NULL, newb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (np == MAP_FAILED)
            return -ENOMEM;
        madvise(np, newb, MADV_HUGEPAGE);
        if (n)
            memcpy(np, *arr, (size_t)n * sizeof(uint64_t));
        free(*arr);
    } else {
        np = mremap(*arr, oldb, newb, MREMAP_MAYMOVE);
        if (np == MAP_FAILED)
            return -ENOMEM;
        madvise(np, newb, MADV_HUGEPAGE);
    }
    *arr = np;
    *capp = cap;
    return 0;
}

void rx_u64_array_free(uint64_t *arr, uint64_t cap)
{
    if ((size_t)cap * sizeof(uint64_t) >= HUGE_ARRAY_BYTES)
        munmap(arr, (size_t)cap * sizeof(uint64_t));
    else
        free(arr);
}

static int sums_grow(struct votes *vt, uint8_t li, uint64_t need)
{
    return u64_array_grow(&vt->prefix[li], &vt->cap[li], vt->n[li], need);
}

void rx_sums_free(struct votes *vt)
{
    int li;

    for (li = 0; li < NLETTERS; li++)
        rx_u64_array_free(vt->prefix[li], vt->cap[li]);
}

/* Appends nrec whole 9-byte vote records: validate and count first, then fill without checks. */
static int votes_append(struct rx *rx, const uint8_t *p, size_t nrec)
{
    struct votes *vt = &rx->votes;
    uint64_t cnt[NLETTERS] = { 0 }, sum[NLETTERS];
    uint64_t *dst[NLETTERS];
    size_t i;
    uint8_t li;
    int rc;

    for (i = 0; i < nrec; i++) {
        const uint8_t *r = p + i * VOTE_RECORD;

        li = rx->letter_idx[r[4]];
        if (tools_load_be32(r) != 5 || li == NO_LETTER) {
            rx_fail(rx,
                    "%s: record %" PRIu64
                    " is not an Alphabet vote (length %u, letter byte 0x%02x)",
                    vt->path, vt->records + i + 1, tools_load_be32(r), r[4]);
            vt->broken = true;
            return -EINVAL;
        }
        cnt[li]++;
    }
    for (li = 0; li < NLETTERS; li++) {
        if (vt->n[li] + cnt[li] > vt->cap[li]) {
            rc = sums_grow(vt, li, vt->n[li] + cnt[li]);
            if (rc < 0) {
                rx_fail(rx, "%s: out of memory for running sums", vt->path);
                vt->broken = true;
                return rc;
            }
        }
        dst[li] = vt->prefix[li] + vt->n[li];
        sum[li] = vt->n[li] ? vt->prefix[li][vt->n[li] - 1] : 0;
    }
    /* Local cursors and sums: stores through dst[] cannot alias them, so they stay in registers/L1. */
    for (i = 0; i < nrec; i++, p += VOTE_RECORD) {
        li = rx->letter_idx[p[4]];
        sum[li] += tools_load_be32(p + 5);
        *dst[li]++ = sum[li];
    }
    for (li = 0; li < NLETTERS; li++)
        vt->n[li] += cnt[li];
    vt->records += nrec;
    return 0;
}

/* Reads whatever the votes file holds beyond what was loaded; returns bytes read, 0 at EOF. */
static ssize_t votes_read_more(struct rx *rx)
{
    struct votes *vt = &rx->votes;
    const uint8_t *p, *end;
    size_t take;
    ssize_t n;

    if (vt->broken)
        return 0;
    if (vt->fd < 0) {
        vt->fd = open(vt->path, O_RDONLY | O_CLOEXEC);
        if (vt->fd < 0) {
            vt->open_err = errno;
            return 0;
        }
    }
    if (!vt->buf) {
        vt->buf = malloc(CHUNK);
        if (!vt->buf) {
            rx_fail(rx, "%s: out of memory", vt->path);
            vt->broken = true;
            return -ENOMEM;
        }
    }
    do {
        n = read(vt->fd, vt->buf, CHUNK);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        rx_fail(rx, "cannot read %s: %s", vt->path, strerror(errno));
        vt->broken = true;
        return -errno;
    }
    p = vt->buf;
    end = p + n;
    if (vt->carry_len) {
        take = VOTE_RECORD - vt->carry_len;
        if (take > (size_t)n)
            take = (size_t)n;
        memcpy(vt->carry + vt->carry_len, p, take);
        vt->carry_len += take;
        p += take;
        if (vt->carry_len < VOTE_RECORD)
            return n;
        vt->carry_len = 0;
        if (votes_append(rx, vt->carry, 1) < 0)
            return 0;
    }
    if (votes_append(rx, p, (size_t)(end - p) / VOTE_RECORD) < 0)
        return 0;
    p += (size_t)(end - p) / VOTE_RECORD * VOTE_RECORD;
    vt->carry_len = (size_t)(end - p);
    memcpy(vt->carry, p, vt->carry_len);
    return n;
}

/* Makes sure running sum number k (0-based) of letter li is loaded, if the file has it. */
static __attribute__((noinline)) bool votes_have(struct rx *rx, uint8_t li, uint64_t k)
{
    while (rx->votes.n[li] <= k)
        if (votes_read_more(rx) <= 0)
            return false;
    return true;
}

static bool find_sum(const uint64_t *a, uint64_t n, uint64_t v)
{
    uint64_t lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == v;
}

__attribute__((noinline)) int rx_check_votes(struct rx *rx, const struct conn *c, uint8_t li,
                                             uint64_t v, uint64_t recno)
{
    struct votes *vt = &rx->votes;
    struct letter_state *ls = &rx->let[li];
    uint64_t k = ls->next;
    bool have = k < vt->n[li] || votes_have(rx, li, k);
    char l = (char)rx->letter_chr[li];

    if (have && vt->prefix[li][k] == v) {
        ls->next = k + 1;
        return 0;
    }
    if (!have && vt->fd < 0) {
        rx_fail(rx, "cannot read %s: %s (record %" PRIu64 " on connection %u)", vt->path,
                strerror(vt->open_err), recno, c->id);
        return -EINVAL;
    }
    if (rx->opt.at_least_once) {
        if (k > 0 && v <= vt->prefix[li][k - 1] && find_sum(vt->prefix[li], k, v)) {
            rx->duplicates++;
            return 0;
        }
        if (have)
            rx_fail(rx,
                    "letter '%c' total %" PRIu64 " is neither the next running sum %" PRIu64
                    " (vote %" PRIu64 " of '%c') nor an earlier one (record %" PRIu64
                    " on connection %u)",
                    l, v, vt->prefix[li][k], k + 1, l, recno, c->id);
        else
            rx_fail(rx,
                    "letter '%c' total %" PRIu64 " is not an earlier running sum and all %" PRIu64
                    " votes of '%c' in %s are already accounted for (record %" PRIu64
                    " on connection %u)",
                    l, v, vt->n[li], l, vt->path, recno, c->id);
        return -EINVAL;
    }
    if (have)
        rx_fail(rx,
                "letter '%c' total %" PRIu64 " should be %" PRIu64
                ", the running sum of its first %" PRIu64 " votes (record %" PRIu64
                " on connection %u)",
                l, v, vt->prefix[li][k], k + 1, recno, c->id);
    else
        rx_fail(rx,
                "letter '%c' total %" PRIu64 " is output %" PRIu64
                " of '%c' but %s has only %" PRIu64 " votes for it (record %" PRIu64
                " on connection %u)",
                l, v, k + 1, l, vt->path, vt->n[li], recno, c->id);
    return -EINVAL;
}

__attribute__((noinline)) void rx_repeat_fail(struct rx *rx, const struct conn *c, uint8_t li,
                                              uint64_t v, uint64_t recno)
{
    rx_fail(rx,
            "letter '%c' total went from %" PRIu64 " to %" PRIu64
            ", which it never had before (record %" PRIu64 " on connection %u)",
            rx->letter_chr[li], rx->let[li].max, v, recno, c->id);
}

__attribute__((noinline)) bool rx_hist_grow(struct rx *rx, struct letter_state *ls)
{
    if (u64_array_grow(&ls->hist, &ls->hcap, ls->hn, ls->hn + 1) == 0)
        return true;
    rx_fail(rx, "out of memory for the totals seen (--allow-repeats)");
    return false;
}
/* A letter's result: its last total, or with --allow-repeats its highest (a repeat may come last). */
static uint64_t final_total(const struct rx *rx, int li)
{
    return rx->opt.allow_repeats ? rx->let[li].max : rx->let[li].last;
}

/* Same JSON shape as the sender's --expected file, so the two can be compared with cmp. */
void rx_print_totals(const struct rx *rx)
{
    struct tools_totals t;
    int li;

    memset(&t, 0, sizeof(t));
    for (li = 0; li < NLETTERS; li++) {
        if (!rx->let[li].seen)
            continue;
        t.present[rx->letter_chr[li]] = true;
        t.total[rx->letter_chr[li]] = final_total(rx, li);
    }
    if (tools_totals_print(stdout, &t) < 0 || fflush(stdout) != 0)
        tools_log(PROG, "cannot print the totals: %s", strerror(errno));
}

void rx_final_check(struct rx *rx)
{
    struct tools_totals exp;
    char err[512];
    int c, li;
    bool seen;

    if (!rx->check || rx->failed)
        return;
    if (tools_totals_read(rx->opt.check_file, &exp, err, sizeof(err)) < 0) {
        rx_fail(rx, "%s", err);
        return;
    }
    for (c = 0; c < 256; c++) {
        if (!exp.present[c])
            continue;
        li = rx->letter_idx[c];
        seen = li != NO_LETTER && rx->let[li].seen;
        if (!seen) {
            if (exp.total[c] != 0) {
                rx_fail(rx, "letter '%c' never arrived but expected %" PRIu64, c, exp.total[c]);
                return;
            }
        } else if (final_total(rx, li) != exp.total[c]) {
            rx_fail(rx, "letter '%c' ended at %" PRIu64 " but expected %" PRIu64, c,
                    final_total(rx, li), exp.total[c]);
            return;
        }
    }
    for (li = 0; li < NLETTERS; li++) {
        c = rx->letter_chr[li];
        if (rx->let[li].seen && !exp.present[c]) {
            rx_fail(rx, "letter '%c' arrived (last total %" PRIu64 ") but is not in %s", c,
                    final_total(rx, li), rx->opt.check_file);
            return;
        }
    }
    if (!rx->use_votes)
        return;
    /* Everything the sender saved is in the file by now; load the rest before judging. */
    while (votes_read_more(rx) > 0)
        ;
    if (rx->failed)
        return;
    if (rx->votes.fd < 0) {
        rx_fail(rx, "cannot read %s: %s", rx->votes.path, strerror(rx->votes.open_err));
        return;
    }
    for (li = 0; li < NLETTERS; li++) {
        if (rx->let[li].next < rx->votes.n[li]) {
            rx_fail(rx, "letter '%c': only %" PRIu64 " of its %" PRIu64 " running sums arrived",
                    rx->letter_chr[li], rx->let[li].next, rx->votes.n[li]);
            return;
        }
    }
}
