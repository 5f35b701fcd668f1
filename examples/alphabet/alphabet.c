/* alphabet.c: roo's flagship example, Wallaroo's Alphabet vote counter in C.
 *
 * Input frames (one vote batch for one letter):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       4     length = 5, u32 big-endian
 *   4       1     letter
 *   5       4     votes, u32 big-endian
 *
 * Output frames (the letter's running total after the vote):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       4     length = 9, u32 big-endian
 *   4       1     letter
 *   5       8     total votes, u64 big-endian
 *
 * State is partitioned by letter: each letter's total is its own state object, saved
 * after every update, so a restarted worker continues every total where it stopped.
 */
#include <endian.h>
#include <roo/roo.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A decoded vote: the state step's input, and what travels to the worker that keeps its
 * letter. Kept to 8 bytes: a message routed to another worker is copied and sent as it
 * is, so every byte of it is paid on each crossing. */
typedef struct vote {
    uint32_t count; /* votes, as in the frame */
    uint8_t letter;
} vote;

/* The output message: the letter's running total after the vote. */
typedef struct running_total {
    uint64_t total;
    uint8_t letter;
} running_total;

/* The state object of one letter. */
typedef struct letter_total {
    uint64_t total;
} letter_total;

static uint32_t load_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static int decode_vote(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx)
{
    vote v;

    (void)ctx;
    if (len != 5)
        return ROO_EDECODE;
    v.letter = payload[0];
    v.count = load_be32(payload + 1);
    return roo_emit(out, &v, sizeof(v));
}

static int letter_key(const void *msg, size_t len, uint8_t *key_buf, void *ctx)
{
    const vote *v = msg;

    (void)len;
    (void)ctx;
    key_buf[0] = v->letter;
    return 1;
}

static int add_votes(const void *msg, size_t len, void *state, roo_emitter *out, void *ctx)
{
    const vote *v = msg;
    letter_total *t = state;
    running_total r;

    (void)len;
    (void)ctx;
    t->total += v->count;
    r.total = t->total;
    r.letter = v->letter;
    roo_emit(out, &r, sizeof(r));
    return ROO_SAVE;
}

static int encode_total(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    const running_total *r = msg;
    uint32_t frame_len = htobe32(9);
    uint64_t total = htobe64(r->total);

    (void)len;
    (void)ctx;
    if (cap < 13)
        return 13;
    memcpy(buf, &frame_len, 4);
    buf[4] = r->letter;
    memcpy(buf + 5, &total, 8);
    return 13;
}

/*
 * The same three callbacks over many messages at once (roo.h's `_many` callbacks). The
 * engine calls these on its fast path and the ones above everywhere else, so both must
 * give the same results. Each loop keeps its outputs in a small array, sent with one
 * roo_emit_many.
 */
#define CHUNK 64

static size_t decode_votes(const roo_frame *frames, size_t n, roo_emitter *out, void *ctx)
{
    vote v[CHUNK];
    size_t i = 0;

    (void)ctx;
    memset(v, 0, sizeof(v)); /* no stale bytes in the padding, which may travel */
    while (i < n) {
        size_t k = 0;
        for (; i < n && k < CHUNK; i++, k++) {
            if (frames[i].len != 5) {
                roo_emit_many(out, v, sizeof(v[0]), k); /* the frames before it count */
                return i;
            }
            v[k].letter = frames[i].payload[0];
            v[k].count = load_be32(frames[i].payload + 1);
        }
        roo_emit_many(out, v, sizeof(v[0]), k);
    }
    return n;
}

static void add_votes_many(const void *const *msgs, const size_t *lens, void *const *states,
                           size_t n, int *results, roo_emitter *out, void *ctx)
{
    running_total r[CHUNK];
    size_t i = 0;

    (void)lens;
    (void)ctx;
    memset(r, 0, sizeof(r));
    while (i < n) {
        size_t k = 0;
        for (; i < n && k < CHUNK; i++, k++) {
            const vote *v = msgs[i];
            letter_total *t = states[i];
            t->total += v->count;
            r[k].total = t->total;
            r[k].letter = v->letter;
            results[i] = ROO_SAVE;
        }
        roo_emit_many(out, r, sizeof(r[0]), k);
    }
}

static size_t encode_totals(const void *const *msgs, const size_t *lens, size_t n, uint8_t *buf,
                            size_t cap, size_t *ret_len, void *ctx)
{
    size_t k = cap / 13 < n ? cap / 13 : n;

    (void)lens;
    (void)ctx;
    for (size_t i = 0; i < k; i++)
        encode_total(msgs[i], sizeof(running_total), buf + 13 * i, 13, NULL);
    *ret_len = 13 * k;
    return k;
}

/* For roo-ctl query: a letter's state is its total. */
static int format_total(const void *state, char *buf, size_t cap, void *ctx)
{
    const letter_total *t = state;

    (void)ctx;
    return snprintf(buf, cap, "%llu", (unsigned long long)t->total);
}

static const roo_state_type letter_state = {
    .name = "letter-totals",
    .size = sizeof(letter_total),
    .format = format_total,
};

/* The pipeline: votes in, a total per letter, totals out; with the given `_many` callbacks
 * (each may be NULL: the engine then calls the one-message ones). */
static int alphabet_pipeline(roo_app *app, const char *name, roo_decode_many_fn decode_many,
                             roo_state_compute_many_fn compute_many, roo_encode_many_fn encode_many)
{
    roo_pipeline *p;
    int rc = roo_app_set_name(app, name);

    if (rc == 0)
        rc = roo_app_add_pipeline(app, "votes",
                                  &(roo_source){ .framing = ROO_FRAMING_LENGTH,
                                                 .header_len = 4,
                                                 .byte_order = ROO_BIG_ENDIAN,
                                                 .decode = decode_vote,
                                                 .decode_many = decode_many },
                                  &p);
    if (rc == 0)
        rc = roo_pipeline_to_state(p, &(roo_state_step){ .name = "add votes",
                                                         .state = &letter_state,
                                                         .key = letter_key,
                                                         .compute = add_votes,
                                                         .compute_many = compute_many });
    if (rc == 0)
        rc = roo_pipeline_to_sink(
            p, &(roo_sink){ .encode = encode_total, .encode_many = encode_many });
    return rc;
}

/* The application's own options, after `--` on the worker's command line:
 *   --one-at-a-time   leave the `_many` callbacks out (the engine then calls the others) */
static int setup(roo_app *app, int argc, char **argv)
{
    bool many = true;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--one-at-a-time") == 0) {
            many = false;
        } else {
            fprintf(stderr, "alphabet: unknown option '%s' (it takes --one-at-a-time)\n", argv[i]);
            return ROO_EUSAGE;
        }
    }
    return alphabet_pipeline(app, "alphabet", many ? decode_votes : NULL,
                             many ? add_votes_many : NULL, many ? encode_totals : NULL);
}

/* Unit tests (and tests/integration/apps) include this file with ALPHABET_NO_MAIN to reach
 * its functions. */
#ifndef ALPHABET_NO_MAIN
int main(int argc, char **argv)
{
    return roo_main(argc, argv, setup);
}
#endif
