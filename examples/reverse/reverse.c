/* reverse.c: the stateless example: every input word comes back reversed.
 *
 * Framing is chosen after "--" on the command line and applies to input and output:
 *   reverse --in ... --out ... -- --framing line     newline-terminated words (default)
 *   reverse --in ... --out ... -- --framing length   u32 big-endian length + word
 */
#include <roo/roo.h>
#include <stdio.h>
#include <string.h>

static int framing_line = 1;

static int decode_word(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx)
{
    (void)ctx;
    /* Empty lines carry no word: drop them. */
    if (len == 0)
        return 0;
    return roo_emit(out, payload, len);
}

static int reverse_word(const void *msg, size_t len, roo_emitter *out, void *ctx)
{
    const uint8_t *in = msg;
    uint8_t buf[4096];

    (void)ctx;
    if (len > sizeof(buf))
        return ROO_EMSGSIZE;
    for (size_t i = 0; i < len; i++)
        buf[i] = in[len - 1 - i];
    return roo_emit(out, buf, len);
}

static int encode_word(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    size_t need = len + (framing_line ? 1 : 4);

    (void)ctx;
    if (cap < need)
        return (int)need;
    if (framing_line) {
        memcpy(buf, msg, len);
        buf[len] = '\n';
    } else {
        buf[0] = (uint8_t)(len >> 24);
        buf[1] = (uint8_t)(len >> 16);
        buf[2] = (uint8_t)(len >> 8);
        buf[3] = (uint8_t)len;
        memcpy(buf + 4, msg, len);
    }
    return (int)need;
}

static int setup(roo_app *app, int argc, char **argv)
{
    roo_pipeline *p;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--framing") == 0 && i + 1 < argc) {
            const char *f = argv[++i];
            if (strcmp(f, "line") == 0) {
                framing_line = 1;
            } else if (strcmp(f, "length") == 0) {
                framing_line = 0;
            } else {
                fprintf(stderr, "reverse: --framing must be 'line' or 'length', not '%s'\n", f);
                return ROO_EUSAGE;
            }
        } else {
            fprintf(stderr,
                    "reverse: unknown application option '%s' (use --framing "
                    "line|length)\n",
                    argv[i]);
            return ROO_EUSAGE;
        }
    }
    rc = roo_app_set_name(app, "reverse");
    if (rc == 0)
        rc = roo_app_add_pipeline(
            app, "words",
            &(roo_source){ .framing = framing_line ? ROO_FRAMING_LINE : ROO_FRAMING_LENGTH,
                           .header_len = 4,
                           .decode = decode_word },
            &p);
    if (rc == 0)
        rc = roo_pipeline_to(p, &(roo_step){ .name = "reverse", .compute = reverse_word });
    if (rc == 0)
        rc = roo_pipeline_to_sink(p, &(roo_sink){ .encode = encode_word });
    return rc;
}

int main(int argc, char **argv)
{
    return roo_main(argc, argv, setup);
}
