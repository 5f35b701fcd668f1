/* word_count.c: counts words across a cluster: newline-framed text in, "word => count"
 * lines out, one state object per distinct word (so millions of keys, none declared).
 *
 *   line ---> split (stateless, one message per word) ---> count (state by word) ---> sink
 *
 * Words are maximal runs of letters, digits, '_', '-' and '\'' ; case is kept. A word longer
 * than ROO_KEY_MAX bytes is dropped with a log line.
 */
#include <roo/roo.h>
#include <stdio.h>
#include <string.h>

/* The message after the count: the word's new count, then the word's bytes. */
typedef struct counted {
    uint64_t count;
    char word[];
} counted;

typedef struct word_total {
    uint64_t count;
} word_total;

static int is_word_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '\'' || c >= 0x80;
}

static int decode_line(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx)
{
    (void)ctx;
    return len ? roo_emit(out, payload, len) : 0;
}

static int split_words(const void *msg, size_t len, roo_emitter *out, void *ctx)
{
    const uint8_t *p = msg, *end = p + len;

    (void)ctx;
    while (p < end) {
        const uint8_t *start;
        while (p < end && !is_word_char(*p))
            p++;
        start = p;
        while (p < end && is_word_char(*p))
            p++;
        if (p > start)
            roo_emit(out, start, (size_t)(p - start));
    }
    return 0;
}

static int word_key(const void *msg, size_t len, uint8_t *key_buf, void *ctx)
{
    (void)ctx;
    if (len > ROO_KEY_MAX)
        return ROO_EKEYSIZE;
    memcpy(key_buf, msg, len);
    return (int)len;
}

static int count_word(const void *msg, size_t len, void *state, roo_emitter *out, void *ctx)
{
    word_total *t = state;
    uint64_t buf[(sizeof(counted) + ROO_KEY_MAX) / 8 + 1];
    counted *c = (counted *)buf;

    (void)ctx;
    t->count++;
    c->count = t->count;
    memcpy(c->word, msg, len);
    roo_emit(out, c, sizeof(*c) + len);
    return ROO_SAVE;
}

static int encode_count(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    const counted *c = msg;
    size_t wlen = len - sizeof(*c);
    char num[24];
    int nlen = snprintf(num, sizeof(num), "%llu", (unsigned long long)c->count);
    size_t need = wlen + 4 + (size_t)nlen + 1;

    (void)ctx;
    if (need > cap)
        return (int)need;
    memcpy(buf, c->word, wlen);
    memcpy(buf + wlen, " => ", 4);
    memcpy(buf + wlen + 4, num, (size_t)nlen);
    buf[need - 1] = '\n';
    return (int)need;
}

static int format_count(const void *state, char *buf, size_t cap, void *ctx)
{
    const word_total *t = state;

    (void)ctx;
    return snprintf(buf, cap, "%llu", (unsigned long long)t->count);
}

static const roo_state_type word_state = {
    .name = "word-counts",
    .size = sizeof(word_total),
    .format = format_count,
};

static int setup(roo_app *app, int argc, char **argv)
{
    roo_pipeline *p;
    int rc;

    (void)argc;
    (void)argv;
    rc = roo_app_set_name(app, "word_count");
    if (rc == 0)
        rc = roo_app_add_pipeline(
            app, "lines", &(roo_source){ .framing = ROO_FRAMING_LINE, .decode = decode_line }, &p);
    if (rc == 0)
        rc = roo_pipeline_to(p, &(roo_step){ .name = "split", .compute = split_words });
    if (rc == 0)
        rc = roo_pipeline_to_state(
            p, &(roo_state_step){
                   .name = "count", .state = &word_state, .key = word_key, .compute = count_word });
    if (rc == 0)
        rc = roo_pipeline_to_sink(p, &(roo_sink){ .encode = encode_count });
    return rc;
}

int main(int argc, char **argv)
{
    return roo_main(argc, argv, setup);
}
