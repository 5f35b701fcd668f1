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

static int setup(roo_app *app, int argc, char **argv)
{
    roo_pipeline *p;
    int rc;

    (void)argc;
    (void)argv;
    rc = roo_app_set_name(app, "alphabet");
    if (rc == 0)
        rc = roo_app_add_pipeline(app, "votes",
                                  &(roo_source){ .framing = ROO_FRAMING_LENGTH,
                                                 .header_len = 4,
                                                 .byte_order = ROO_BIG_ENDIAN,
                                                 .decode = decode_vote },
                                  &p);
    if (rc == 0)
        rc = roo_pipeline_to_state(p, &(roo_state_step){ .name = "add votes",
                                                         .state = &letter_state,
                                                         .key = letter_key,
                                                         .compute = add_votes });
    if (rc == 0)
        rc = roo_pipeline_to_sink(p, &(roo_sink){ .encode = encode_total });
    return rc;
}

/* Unit tests include this file with ALPHABET_NO_MAIN to reach the codec functions. */
#ifndef ALPHABET_NO_MAIN
int main(int argc, char **argv)
{
    return roo_main(argc, argv, setup);
}
#endif
