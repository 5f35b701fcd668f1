/* test_testdriver.c: the in-process test driver (roo/roo_test.h) runs an application with the
 * worker's framing, commit, output and recovery rules: Alphabet on Wallaroo's vectors, and a
 * state type that owns memory through a crash. */
#define ALPHABET_NO_MAIN
#include "../../examples/alphabet/alphabet.c"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "roo/roo_test.h"
#include "roo_test.h"

static uint8_t *read_file(const char *name, size_t *ret_len)
{
    const char *dir = getenv("ROO_TESTDATA");
    char path[512];
    uint8_t *data;
    FILE *f;
    long n;

    ck_assert_msg(dir != NULL, "ROO_TESTDATA is not set");
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    data = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    data[n] = '\0';
    *ret_len = (size_t)n;
    return data;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static const uint8_t vote_a3[9] = { 0, 0, 0, 5, 'a', 0, 0, 0, 3 };

START_TEST(wallaroo_vectors_in_any_split_end_at_the_expected_totals)
{
    size_t len, jlen, off = 0, outs;
    uint8_t *in = read_file("_test.txt", &len);
    char *json = (char *)read_file("_expected.json", &jlen);
    uint64_t sums[256] = { 0 };
    const uint8_t *out;
    size_t out_len;
    roo_test *t;

    ck_assert_int_eq(roo_test_create(setup, 0, NULL, &t), 0);
    srand(7);
    while (off < len) {
        size_t n = 1 + (size_t)rand() % 23; /* frames cut anywhere, as TCP may */
        if (n > len - off)
            n = len - off;
        ck_assert_int_eq(roo_test_push(t, 0, in + off, n), 0);
        off += n;
    }
    ck_assert_int_eq(roo_test_commit(t), 0);
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, 1000 * 13);
    /* Every output is the running total of its letter, in input order. */
    for (outs = 0; outs < 1000; outs++) {
        const uint8_t *i = in + outs * 9, *o = out + outs * 13;
        sums[i[4]] += (uint64_t)i[5] << 24 | (uint64_t)i[6] << 16 | i[7] << 8 | i[8];
        ck_assert_uint_eq(o[3], 9);
        ck_assert_uint_eq(o[4], i[4]);
        ck_assert_uint_eq(be64(o + 5), sums[i[4]]);
    }
    /* And the totals are Wallaroo's own expected ones. */
    for (char letter = 'a'; letter <= 'z'; letter++) {
        char name[8];
        const char *p;
        unsigned long long want;
        const letter_total *s;
        snprintf(name, sizeof(name), "\"%c\":", letter);
        p = strstr(json, name);
        ck_assert_msg(p != NULL, "'%c' is not in _expected.json", letter);
        ck_assert_int_eq(sscanf(p + 4, "%llu", &want), 1);
        s = roo_test_state(t, "letter-totals", &letter, 1);
        ck_assert_msg(s != NULL, "no state for '%c'", letter);
        ck_assert_uint_eq(s->total, want);
    }
    roo_test_destroy(t);
    free(in);
    free(json);
}
END_TEST

START_TEST(output_leaves_only_at_a_commit)
{
    const uint8_t *out;
    size_t len;
    roo_test *t;

    ck_assert_int_eq(roo_test_create(setup, 0, NULL, &t), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, sizeof(vote_a3)), 0);
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(roo_test_commit(t), 0);
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 13);
    ck_assert_uint_eq(be64(out + 5), 3);
    /* Taken once. */
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(roo_test_take_output(t, 1, &out, &len), -EINVAL);
    roo_test_destroy(t);
}
END_TEST

START_TEST(restart_keeps_what_was_committed_and_nothing_else)
{
    const uint8_t *out;
    const letter_total *s;
    char json[64];
    size_t len;
    roo_test *t;

    ck_assert_int_eq(roo_test_create(setup, 0, NULL, &t), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, sizeof(vote_a3)), 0);
    ck_assert_int_eq(roo_test_commit(t), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, sizeof(vote_a3)), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, 4), 0); /* half a frame when it dies */
    s = roo_test_state(t, "letter-totals", "a", 1);
    ck_assert_uint_eq(s->total, 6);
    ck_assert_int_eq(roo_test_restart(t), 0);
    s = roo_test_state(t, "letter-totals", "a", 1);
    ck_assert_uint_eq(s->total, 3);
    ck_assert_int_gt(roo_test_state_json(t, "letter-totals", "a", 1, json, sizeof(json)), 0);
    ck_assert_str_eq(json, "3");
    ck_assert_int_eq(roo_test_state_json(t, "letter-totals", "b", 1, json, sizeof(json)), -ENOENT);
    /* The output of the lost update is gone, the committed one was taken or not: here not. */
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 13);
    ck_assert_uint_eq(be64(out + 5), 3);
    /* The half frame died with its connection: a new one starts clean. */
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, sizeof(vote_a3)), 0);
    ck_assert_int_eq(roo_test_commit(t), 0);
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 13);
    ck_assert_uint_eq(be64(out + 5), 6);
    ck_assert_uint_eq(roo_test_state_count(t, "letter-totals"), 1);
    roo_test_destroy(t);
}
END_TEST

START_TEST(a_bad_frame_closes_its_connection_and_keeps_what_came_before)
{
    static const uint8_t bad[] = { 0, 0, 0, 4, 'a', 0, 0, 0 }; /* 4-byte payload */
    static const uint8_t huge[] = { 0, 1, 0, 1 };              /* over 64 KiB */
    uint8_t two[18];
    roo_test *t;

    memcpy(two, vote_a3, 9);
    memcpy(two + 9, bad, sizeof(bad));
    ck_assert_int_eq(roo_test_create(setup, 0, NULL, &t), 0);
    ck_assert_int_eq(roo_test_push(t, 0, two, 9 + sizeof(bad)), ROO_EDECODE);
    ck_assert_uint_eq(roo_test_errors(t), 1);
    ck_assert_uint_eq(((const letter_total *)roo_test_state(t, "letter-totals", "a", 1))->total, 3);
    ck_assert_int_eq(roo_test_push(t, 0, huge, sizeof(huge)), ROO_EFRAMESIZE);
    ck_assert_int_eq(roo_test_push_frame(t, 0, vote_a3 + 4, 5), 0);
    ck_assert_uint_eq(((const letter_total *)roo_test_state(t, "letter-totals", "a", 1))->total, 6);
    ck_assert_int_eq(roo_test_push(t, 1, vote_a3, 9), -EINVAL);
    ck_assert_ptr_null(roo_test_state(t, "no-such-state", "a", 1));
    roo_test_destroy(t);
}
END_TEST

/* ---- a state that owns memory: the words seen for a key, serialized as text ---- */

/* The driver calls Alphabet's `_many` callbacks (decode_many with every whole frame of a
 * push) or, with `-- --one-at-a-time`, the one-message ones: the outputs must be the same
 * bytes, and a malformed frame in the middle of a push keeps the frames before it. */
START_TEST(many_callbacks_and_one_at_a_time_give_the_same_output)
{
    char *many_argv[] = { "alphabet", NULL };
    char *one_argv[] = { "alphabet", "--one-at-a-time", NULL };
    uint8_t in[3000 * 9];
    const uint8_t *out;
    size_t out_len;
    uint8_t *first;
    roo_test *many, *one;

    srand(11);
    for (size_t i = 0; i < 3000; i++) {
        uint32_t votes = (uint32_t)rand();
        uint8_t *f = in + 9 * i;
        f[0] = f[1] = f[2] = 0;
        f[3] = 5;
        f[4] = (uint8_t)('a' + rand() % 26);
        f[5] = (uint8_t)(votes >> 24);
        f[6] = (uint8_t)(votes >> 16);
        f[7] = (uint8_t)(votes >> 8);
        f[8] = (uint8_t)votes;
    }
    ck_assert_int_eq(roo_test_create(setup, 1, many_argv, &many), 0);
    ck_assert_int_eq(roo_test_create(setup, 2, one_argv, &one), 0);
    /* In pieces that cut frames: the partial frame waits for its rest either way. */
    for (size_t off = 0; off < sizeof(in); off += 1000) {
        size_t n = sizeof(in) - off < 1000 ? sizeof(in) - off : 1000;
        ck_assert_int_eq(roo_test_push(many, 0, in + off, n), 0);
        ck_assert_int_eq(roo_test_push(one, 0, in + off, n), 0);
    }
    ck_assert_int_eq(roo_test_commit(many), 0);
    ck_assert_int_eq(roo_test_commit(one), 0);
    ck_assert_int_eq(roo_test_take_output(many, 0, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, 3000 * 13);
    first = malloc(out_len);
    memcpy(first, out, out_len);
    ck_assert_int_eq(roo_test_take_output(one, 0, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, 3000 * 13);
    ck_assert_mem_eq(first, out, out_len);
    free(first);

    /* 4 good frames, a 7-byte one, 1 good frame: one push, one decode_many call. */
    {
        uint8_t bad[6 * 9 + 2];
        memcpy(bad, in, 4 * 9);
        memcpy(bad + 4 * 9, "\0\0\0\7abcdefg", 11);
        memcpy(bad + 4 * 9 + 11, in + 9, 9);
        ck_assert_int_eq(roo_test_push(many, 0, bad, 4 * 9 + 11 + 9), ROO_EDECODE);
        ck_assert_uint_eq(roo_test_errors(many), 1);
        ck_assert_int_eq(roo_test_commit(many), 0);
        ck_assert_int_eq(roo_test_take_output(many, 0, &out, &out_len), 0);
        ck_assert_uint_eq(out_len, 4 * 13);
    }
    roo_test_destroy(many);
    roo_test_destroy(one);
}
END_TEST

static int finished;

typedef struct words {
    char *text; /* malloc'ed, space-separated */
} words;

static int line_decode(const uint8_t *p, size_t len, roo_emitter *out, void *ctx)
{
    (void)ctx;
    return len ? roo_emit(out, p, len) : ROO_EDECODE;
}

static int first_letter(const void *msg, size_t len, uint8_t *key, void *ctx)
{
    (void)len, (void)ctx;
    key[0] = *(const uint8_t *)msg;
    return 1;
}

static int remember(const void *msg, size_t len, void *state, roo_emitter *out, void *ctx)
{
    words *w = state;
    size_t have = w->text ? strlen(w->text) : 0;

    (void)ctx;
    w->text = realloc(w->text, have + len + 2);
    if (have)
        w->text[have++] = ' ';
    memcpy(w->text + have, msg, len);
    w->text[have + len] = '\0';
    roo_emit(out, w->text, strlen(w->text));
    return len > 1 ? ROO_SAVE : ROO_NO_SAVE; /* one-letter words are not worth saving */
}

static void words_finish(void *state, void *ctx)
{
    (void)ctx;
    free(((words *)state)->text);
    finished++;
}

static int words_serialize(const void *state, uint8_t *buf, size_t cap, void *ctx)
{
    const words *w = state;
    size_t n = strlen(w->text);

    (void)ctx;
    if (n <= cap)
        memcpy(buf, w->text, n);
    return (int)n;
}

static int words_deserialize(void *state, const uint8_t *buf, size_t len, void *ctx)
{
    words *w = state;

    (void)ctx;
    w->text = malloc(len + 1);
    memcpy(w->text, buf, len);
    w->text[len] = '\0';
    return 0;
}

static int line_encode(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    (void)ctx;
    if (len + 1 <= cap) {
        memcpy(buf, msg, len);
        buf[len] = '\n';
    }
    return (int)len + 1;
}

static const roo_state_type words_type = { .name = "words",
                                           .size = sizeof(words),
                                           .finish = words_finish,
                                           .serialize = words_serialize,
                                           .deserialize = words_deserialize };

static int words_setup(roo_app *app, int argc, char **argv)
{
    roo_pipeline *p;
    int rc;

    (void)argc, (void)argv;
    rc = roo_app_add_pipeline(
        app, "lines", &(roo_source){ .framing = ROO_FRAMING_LINE, .decode = line_decode }, &p);
    if (!rc)
        rc = roo_pipeline_to_state(p, &(roo_state_step){ .name = "remember",
                                                         .state = &words_type,
                                                         .key = first_letter,
                                                         .compute = remember });
    if (!rc)
        rc = roo_pipeline_to_sink(p, &(roo_sink){ .encode = line_encode });
    return rc;
}

START_TEST(owned_state_goes_through_serialize_and_deserialize_on_restart)
{
    const uint8_t *out;
    const words *w;
    char json[64];
    size_t len;
    roo_test *t;

    finished = 0;
    ck_assert_int_eq(roo_test_create(words_setup, 0, NULL, &t), 0);
    ck_assert_int_eq(roo_test_push(t, 0, "apple\nant\r\nbee\n", 15), 0);
    ck_assert_int_eq(roo_test_commit(t), 0);
    ck_assert_int_eq(roo_test_push_frame(t, 0, "a", 1), 0); /* not saved */
    w = roo_test_state(t, "words", "a", 1);
    ck_assert_str_eq(w->text, "apple ant a");
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 20);
    ck_assert_int_eq(memcmp(out, "apple\napple ant\nbee\n", 20), 0);
    ck_assert_int_eq(roo_test_restart(t), 0);
    ck_assert_int_eq(finished, 2); /* the live objects were finished */
    w = roo_test_state(t, "words", "a", 1);
    ck_assert_str_eq(w->text, "apple ant");
    /* No format callback: the saved bytes in hex, as roo-ctl query shows them. */
    ck_assert_int_eq(roo_test_state_json(t, "words", "b", 1, json, sizeof(json)), 8);
    ck_assert_str_eq(json, "\"626565\"");
    ck_assert_int_eq(roo_test_state_json(t, "words", "b", 1, json, 8), -ENOSPC);
    ck_assert_int_eq(roo_test_push_frame(t, 0, "a\nb", 3), -EINVAL);
    ck_assert_int_eq(roo_test_push(t, 0, "\n", 1), ROO_EDECODE);
    roo_test_destroy(t);
    ck_assert_int_eq(finished, 4);
}
END_TEST

static int bad_setup(roo_app *app, int argc, char **argv)
{
    roo_pipeline *p;

    (void)argc, (void)argv;
    return roo_app_add_pipeline(
        app, "no sink", &(roo_source){ .framing = ROO_FRAMING_LINE, .decode = line_decode }, &p);
}

START_TEST(an_incomplete_application_is_refused)
{
    roo_test *t = NULL;

    ck_assert_int_eq(roo_test_create(bad_setup, 0, NULL, &t), ROO_ESETUP);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(roo_test_create(NULL, 0, NULL, &t), -EINVAL);
    roo_test_destroy(NULL);
}
END_TEST

/* A second encoding of the same output: the letter alone. */
static int encode_letter(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    (void)len, (void)ctx;
    if (cap >= 1)
        buf[0] = ((const running_total *)msg)->letter;
    return 1;
}

static int two_sinks_setup(roo_app *app, int argc, char **argv)
{
    const roo_sink sinks[2] = { { .encode = encode_total }, { .encode = encode_letter } };
    roo_pipeline *p;
    int rc;

    (void)argc, (void)argv;
    rc = roo_app_set_name(app, "alphabet");
    if (rc == 0)
        rc = roo_app_add_pipeline(app, "votes",
                                  &(roo_source){ .header_len = 4, .decode = decode_vote }, &p);
    if (rc == 0)
        rc = roo_pipeline_to_state(p, &(roo_state_step){ .name = "add votes",
                                                         .state = &letter_state,
                                                         .key = letter_key,
                                                         .compute = add_votes });
    if (rc == 0)
        rc = roo_pipeline_to_sinks(p, sinks, 2);
    if (rc == 0)
        rc = roo_pipeline_to_sinks(p, sinks, 2) == ROO_ESETUP ? 0 : -1;
    return rc;
}

START_TEST(to_sinks_sends_every_output_to_each_sink)
{
    static const uint8_t vote_b1[9] = { 0, 0, 0, 5, 'b', 0, 0, 0, 1 };
    const uint8_t *out;
    size_t out_len;
    roo_test *t;

    ck_assert_int_eq(roo_test_create(two_sinks_setup, 0, NULL, &t), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, 9), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_b1, 9), 0);
    ck_assert_int_eq(roo_test_push(t, 0, vote_a3, 9), 0);
    ck_assert_int_eq(roo_test_commit(t), 0);
    ck_assert_int_eq(roo_test_take_output(t, 0, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, 3 * 13);
    ck_assert_uint_eq(be64(out + 13 + 5), 1);
    ck_assert_uint_eq(be64(out + 26 + 5), 6);
    ck_assert_int_eq(roo_test_take_output(t, 1, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, 3);
    ck_assert_int_eq(memcmp(out, "aba", 3), 0);
    ck_assert_int_eq(roo_test_take_output(t, 2, &out, &out_len), -EINVAL);
    roo_test_destroy(t);
}
END_TEST

static Suite *testdriver_suite(void)
{
    Suite *s = suite_create("testdriver");
    TCase *tc = roo_test_tcase("driver", 20);

    tcase_add_test(tc, wallaroo_vectors_in_any_split_end_at_the_expected_totals);
    tcase_add_test(tc, output_leaves_only_at_a_commit);
    tcase_add_test(tc, restart_keeps_what_was_committed_and_nothing_else);
    tcase_add_test(tc, a_bad_frame_closes_its_connection_and_keeps_what_came_before);
    tcase_add_test(tc, many_callbacks_and_one_at_a_time_give_the_same_output);
    tcase_add_test(tc, owned_state_goes_through_serialize_and_deserialize_on_restart);
    tcase_add_test(tc, an_incomplete_application_is_refused);
    tcase_add_test(tc, to_sinks_sends_every_output_to_each_sink);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(testdriver_suite());
}
