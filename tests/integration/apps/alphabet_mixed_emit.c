/* alphabet_mixed_emit.c: Alphabet whose compute_many sends its outputs both ways: in every
 * other chunk of 64 the first vote goes through Alphabet's one-message callback (roo_emit)
 * and the rest through its `_many` one (roo_emit_many). The engine then encodes some
 * outputs at once (roo_emit_many into a sink whose queue is empty), queues others behind
 * what waits, and drains a full queue in the middle of the callback; outputs must still
 * leave in message order (tests/integration/alphabet_mixed_emit.sh). */
#define ALPHABET_NO_MAIN
#include "../../../examples/alphabet/alphabet.c"

static void add_votes_mixed(const void *const *msgs, const size_t *lens, void *const *states,
                            size_t n, int *results, roo_emitter *out, void *ctx)
{
    for (size_t i = 0, chunk = 0; i < n; chunk++) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;

        if (chunk % 2 == 1) {
            results[i] = add_votes(msgs[i], lens[i], states[i], out, ctx);
            i++;
            k--;
        }
        add_votes_many(msgs + i, lens + i, states + i, k, results + i, out, ctx);
        i += k;
    }
}

static int setup_mixed(roo_app *app, int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "alphabet-mixed-emit: takes no options of its own\n");
        return ROO_EUSAGE;
    }
    return alphabet_pipeline(app, "alphabet-mixed-emit", decode_votes, add_votes_mixed,
                             encode_totals);
}

int main(int argc, char **argv)
{
    (void)setup; /* Alphabet's own, which this program replaces */
    return roo_main(argc, argv, setup_mixed);
}
