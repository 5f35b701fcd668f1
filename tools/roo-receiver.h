/* roo-receiver.h: what roo-receiver's socket loop (roo-receiver.c) and its Alphabet output
 * checker (roo-receiver-check.c) share: options, connection and check state, and the per-record
 * check, inline here so the parse loop pays no call per record. */
#ifndef ROO_RECEIVER_H
#define ROO_RECEIVER_H

#include "tools-common.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROG "roo-receiver"

#define CHUNK (1u << 20)
/* Payloads up to this size are reassembled across reads; longer ones are only skipped. */
#define CARRY_PAYLOAD_MAX 60u
#define NLETTERS 52
#define NO_LETTER 0xff
#define OUTPUT_PAYLOAD 9u
#define VOTE_RECORD 9u
#define ROO_TOOLS_UNLIKELY(x) __builtin_expect(!!(x), 0)

struct options {
    const char *listen;
    bool listen_set;
    bool framed_set;
    bool newlines;
    const char *input;
    const char *output;
    uint64_t expect;
    bool expect_set;
    double idle_exit;
    bool idle_set;
    double timeout;
    bool timeout_set;
    const char *check_file;
    const char *votes_file;
    bool at_least_once;
    bool allow_repeats;
    bool quiet;
    bool print_totals;
};

/* Per-connection parse state: the head of a record split across reads. */
struct conn {
    int fd;
    uint32_t id;
    /* --output: this connection's bytes after its last whole record, not yet written */
    uint8_t *otail;
    size_t otail_len, otail_cap;
    uint32_t carry_len;
    uint64_t skip;
    uint8_t carry[4 + CARRY_PAYLOAD_MAX];
};

struct letter_state {
    uint64_t last;
    uint64_t next; /* prefix sums consumed: outputs so far (strict) or first appearances */
    bool seen;
    /*
     * --allow-repeats: every distinct total seen, in arrival order. A new total is only
     * accepted above the highest one, so the array is sorted and a repeat is found by a
     * binary search (or at once when a restarted worker replays its outputs in order:
     * hint is where the previous repeat was found).
     */
    uint64_t max;
    uint64_t *hist;
    uint64_t hn, hcap, hint;
};

/*
 * Per-letter running sums of the votes file. The receiver usually starts before the
 * sender, which truncates and rewrites the file, saving each batch just before sending
 * it. So the file is first opened when the first output needs it (never a stale copy
 * from an earlier run) and read further whenever an output needs a sum not loaded yet.
 */
struct votes {
    const char *path;
    int fd;
    int open_err;
    bool broken;
    uint8_t *buf;
    uint8_t carry[VOTE_RECORD];
    size_t carry_len;
    uint64_t records;
    uint64_t *prefix[NLETTERS];
    uint64_t n[NLETTERS];
    uint64_t cap[NLETTERS];
};

struct rx {
    struct options opt;
    uint8_t letter_idx[256];
    uint8_t letter_chr[NLETTERS];
    struct letter_state let[NLETTERS];
    struct votes votes;
    bool check;
    bool use_votes;
    bool stop;
    bool failed;
    bool timed_out;
    bool io_error;
    uint64_t records;
    uint64_t bytes;
    uint64_t duplicates;
    uint32_t connections;
    uint64_t first_ns;
    uint64_t last_ns;
    int out_fd;
    uint8_t *buf;
    char reason[512];
};

/* Keeps the first failure as the verdict's reason (roo-receiver.c). */
void rx_fail(struct rx *rx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the Alphabet output checker (roo-receiver-check.c) ---- */

void rx_u64_array_free(uint64_t *arr, uint64_t cap);
void rx_sums_free(struct votes *vt);
int rx_check_votes(struct rx *rx, const struct conn *c, uint8_t li, uint64_t v, uint64_t recno);
void rx_repeat_fail(struct rx *rx, const struct conn *c, uint8_t li, uint64_t v, uint64_t recno);
bool rx_hist_grow(struct rx *rx, struct letter_state *ls);
void rx_print_totals(const struct rx *rx);
void rx_final_check(struct rx *rx);

/* Was v (at most the letter's highest total) already one of its totals? */
static inline bool rx_seen_before(struct letter_state *ls, uint64_t v)
{
    const uint64_t *a = ls->hist;
    uint64_t lo = 0, hi = ls->hn, mid, h = ls->hint;

    /* A replay usually runs through the totals in order: try just after the last repeat. */
    if (h + 1 < ls->hn && a[h + 1] == v) {
        ls->hint = h + 1;
        return true;
    }
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < ls->hn && a[lo] == v) {
        ls->hint = lo;
        return true;
    }
    return false;
}

/*
 * --allow-repeats: a total above the highest so far is new (and checked against --votes);
 * one at or below it must be a total the letter already had.
 */
static inline void rx_check_repeat(struct rx *rx, const struct conn *c, uint8_t li, uint64_t v,
                                   uint64_t recno)
{
    struct letter_state *ls = &rx->let[li];

    if (!ls->seen || v > ls->max) {
        if (!rx->failed) {
            if (ROO_TOOLS_UNLIKELY(ls->hn == ls->hcap) && !rx_hist_grow(rx, ls))
                goto track;
            ls->hist[ls->hn++] = v;
            if (rx->use_votes)
                rx_check_votes(rx, c, li, v, recno);
        }
        ls->max = v;
    } else if (!rx->failed) {
        if (rx_seen_before(ls, v))
            rx->duplicates++;
        else
            rx_repeat_fail(rx, c, li, v, recno);
    }
track:
    ls->last = v;
    ls->seen = true;
}

static inline void rx_check_record(struct rx *rx, const struct conn *c, const uint8_t *pl,
                                   uint32_t len, uint64_t recno)
{
    struct letter_state *ls;
    uint64_t v;
    uint8_t li;

    if (len != OUTPUT_PAYLOAD) {
        rx_fail(rx, "record %" PRIu64 " on connection %u is %u bytes long, expected 9", recno,
                c->id, len);
        return;
    }
    li = rx->letter_idx[pl[0]];
    if (li == NO_LETTER) {
        rx_fail(rx,
                "record %" PRIu64 " on connection %u has letter byte 0x%02x, expected a..z or A..Z",
                recno, c->id, pl[0]);
        return;
    }
    v = tools_load_be64(pl + 1);
    if (rx->opt.allow_repeats) {
        rx_check_repeat(rx, c, li, v, recno);
        return;
    }
    ls = &rx->let[li];
    if (!rx->failed) {
        /* Under at-least-once a resend legitimately goes back; --votes decides if it is one. */
        if (ls->seen && v < ls->last && !rx->opt.at_least_once)
            rx_fail(rx,
                    "letter '%c' total went from %" PRIu64 " to %" PRIu64 " (record %" PRIu64
                    " on connection %u)",
                    pl[0], ls->last, v, recno, c->id);
        else if (rx->use_votes)
            rx_check_votes(rx, c, li, v, recno);
    }
    /* Tracked even after a failure, so --print-totals shows what really arrived last. */
    ls->last = v;
    ls->seen = true;
}

#endif
