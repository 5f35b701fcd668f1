/* alphabet_mixed_emit.c: Alphabet whose compute_many sends its outputs both ways: in every
 * other chunk the first total goes with roo_emit and the rest with roo_emit_many. The
 * engine then encodes some outputs at once (roo_emit_many into a sink whose queue is empty),
 * queues others behind what waits (one message, or an array behind it), and drains a full
 * queue in the middle of the callback; outputs must still leave in message order
 * (tests/integration/alphabet_mixed_emit.sh). */
#define ALPHABET_NO_MAIN
#include "../../../examples/alphabet/alphabet.c"

static void add_votes_mixed(const void *const *msgs, const size_t *lens, void *const *states,
                            size_t n, int *results, roo_emitter *out, void *ctx)
{
    running_total r[CHUNK];
    size_t i = 0;

    (void)lens;
    (void)ctx;
    memset(r, 0, sizeof(r));
    for (unsigned chunk = 0; i < n; chunk++) {
        size_t k = 0;
        for (; i < n && k < CHUNK; i++, k++) {
            const vote *v = msgs[i];
            letter_total *t = states[i];
            t->total += v->count;
            r[k].total = t->total;
            r[k].letter = v->letter;
            results[i] = ROO_SAVE;
        }
        if (chunk % 2 == 1 && k > 0) {
            roo_emit(out, &r[0], sizeof(r[0]));
            roo_emit_many(out, &r[1], sizeof(r[0]), k - 1);
        } else {
            roo_emit_many(out, r, sizeof(r[0]), k);
        }
    }
}

static int setup_mixed(roo_app *app, int argc, char **argv)
{
    roo_pipeline *p;
    int rc;

    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "alphabet-mixed-emit: takes no options of its own\n");
        return ROO_EUSAGE;
    }
    rc = roo_app_set_name(app, "alphabet-mixed-emit");
    if (rc == 0)
        rc = roo_app_add_pipeline(app, "votes",
                                  &(roo_source){ .framing = ROO_FRAMING_LENGTH,
                                                 .header_len = 4,
                                                 .byte_order = ROO_BIG_ENDIAN,
                                                 .decode = decode_vote,
                                                 .decode_many = decode_votes },
                                  &p);
    if (rc == 0)
        rc = roo_pipeline_to_state(p, &(roo_state_step){ .name = "add votes",
                                                         .state = &letter_state,
                                                         .key = letter_key,
                                                         .compute = add_votes,
                                                         .compute_many = add_votes_mixed });
    if (rc == 0)
        rc = roo_pipeline_to_sink(
            p, &(roo_sink){ .encode = encode_total, .encode_many = encode_totals });
    return rc;
}

int main(int argc, char **argv)
{
    (void)setup; /* Alphabet's own, which this program replaces */
    return roo_main(argc, argv, setup_mixed);
}
