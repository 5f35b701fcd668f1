/* test_app.c: the roo_app builder validates its arguments, links pipelines in order, and shares state ids by state type name. */
#include <errno.h>
#include <stdlib.h>

#include "engine/engine-int.h"
#include "roo_test.h"

static int dummy_decode(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx)
{
    (void)payload;
    (void)len;
    (void)out;
    (void)ctx;
    return 0;
}

static int dummy_compute(const void *msg, size_t len, roo_emitter *out, void *ctx)
{
    (void)msg;
    (void)len;
    (void)out;
    (void)ctx;
    return 0;
}

static int dummy_key(const void *msg, size_t len, uint8_t *key_buf, void *ctx)
{
    (void)msg;
    (void)len;
    (void)ctx;
    key_buf[0] = 'k';
    return 1;
}

static int dummy_state_compute(const void *msg, size_t len, void *state, roo_emitter *out,
                               void *ctx)
{
    (void)msg;
    (void)len;
    (void)state;
    (void)out;
    (void)ctx;
    return ROO_NO_SAVE;
}

static int dummy_encode(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx)
{
    (void)msg;
    (void)buf;
    (void)cap;
    (void)ctx;
    return (int)len;
}

static int dummy_serialize(const void *state, uint8_t *buf, size_t cap, void *ctx)
{
    (void)state;
    (void)buf;
    (void)cap;
    (void)ctx;
    return 0;
}

static int dummy_deserialize(void *state, const uint8_t *buf, size_t len, void *ctx)
{
    (void)state;
    (void)buf;
    (void)len;
    (void)ctx;
    return 0;
}

static const roo_source good_source = { .framing = ROO_FRAMING_LENGTH,
                                        .header_len = 4,
                                        .decode = dummy_decode };
static const roo_state_type counter_type = { .name = "counter", .size = 8 };
static const roo_sink good_sink = { .encode = dummy_encode };

static roo_app *new_app(void)
{
    roo_app *app = NULL;

    ck_assert_int_eq(roo_app_create(&app), 0);
    ck_assert_ptr_nonnull(app);
    return app;
}

static roo_pipeline *add_pipeline(roo_app *app, const char *name)
{
    roo_pipeline *p = NULL;

    ck_assert_int_eq(roo_app_add_pipeline(app, name, &good_source, &p), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

static roo_state_step state_step(const char *name, const roo_state_type *t)
{
    return (roo_state_step){
        .name = name, .state = t, .key = dummy_key, .compute = dummy_state_compute
    };
}

START_TEST(set_name_accepts_valid_names)
{
    roo_app *app = new_app();
    char max[65];

    ck_assert_int_eq(roo_app_set_name(app, "alphabet"), 0);
    ck_assert_str_eq(app->name, "alphabet");
    ck_assert_int_eq(roo_app_set_name(app, "a"), 0);
    ck_assert_int_eq(roo_app_set_name(app, "A-b_c.9"), 0);
    memset(max, 'n', 64);
    max[64] = '\0';
    ck_assert_int_eq(roo_app_set_name(app, max), 0);
    ck_assert_str_eq(app->name, max);
    roo_app_destroy(app);
}
END_TEST

START_TEST(set_name_rejects_invalid_names_and_keeps_the_old_one)
{
    static const char *const bad[] = {
        "",
        "has space",
        "slash/name",
        "tab\t",
        "caf\xc3\xa9",
        "colon:",
        "sixty-five-characters-long-name-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    };
    roo_app *app = new_app();

    ck_assert_uint_eq(strlen(bad[6]), 65);
    ck_assert_int_eq(roo_app_set_name(app, "good"), 0);
    for (size_t i = 0; i < ROO__ARRAY_SIZE(bad); i++)
        ck_assert_msg(roo_app_set_name(app, bad[i]) == -EINVAL, "'%s' accepted", bad[i]);
    ck_assert_int_eq(roo_app_set_name(app, NULL), -EINVAL);
    ck_assert_int_eq(roo_app_set_name(NULL, "good"), -EINVAL);
    ck_assert_str_eq(app->name, "good");
    roo_app_destroy(app);
    roo_app_destroy(NULL);
    ck_assert_int_eq(roo_app_create(NULL), -EINVAL);
}
END_TEST

START_TEST(add_pipeline_with_null_decode_is_einval)
{
    roo_app *app = new_app();
    roo_pipeline *p = NULL;
    roo_source no_decode = { .framing = ROO_FRAMING_LENGTH, .header_len = 4 };

    ck_assert_int_eq(roo_app_add_pipeline(app, "p", &no_decode, &p), -EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(app->npipelines, 0);
    roo_app_destroy(app);
}
END_TEST

START_TEST(add_pipeline_with_missing_arguments_is_einval)
{
    roo_app *app = new_app();
    roo_pipeline *p = NULL;

    ck_assert_int_eq(roo_app_add_pipeline(NULL, "p", &good_source, &p), -EINVAL);
    ck_assert_int_eq(roo_app_add_pipeline(app, NULL, &good_source, &p), -EINVAL);
    ck_assert_int_eq(roo_app_add_pipeline(app, "", &good_source, &p), -EINVAL);
    ck_assert_int_eq(roo_app_add_pipeline(app, "p", NULL, &p), -EINVAL);
    ck_assert_int_eq(roo_app_add_pipeline(app, "p", &good_source, NULL), -EINVAL);
    ck_assert_uint_eq(app->npipelines, 0);
    roo_app_destroy(app);
}
END_TEST

START_TEST(add_pipeline_with_bad_framing_is_einval)
{
    roo_app *app = new_app();
    roo_pipeline *p = NULL;
    roo_source src = good_source;

    src.header_len = 3;
    ck_assert_int_eq(roo_app_add_pipeline(app, "p", &src, &p), -EINVAL);
    src.header_len = 16;
    ck_assert_int_eq(roo_app_add_pipeline(app, "p", &src, &p), -EINVAL);
    src.header_len = 4;
    src.framing = (roo_framing)2;
    ck_assert_int_eq(roo_app_add_pipeline(app, "p", &src, &p), -EINVAL);
    ck_assert_uint_eq(app->npipelines, 0);

    /* 0 means 4, and 1, 2, 8 and line framing are fine. */
    src = good_source;
    for (unsigned h = 0; h <= 8; h++) {
        if (h != 0 && h != 1 && h != 2 && h != 4 && h != 8)
            continue;
        src.header_len = h;
        ck_assert_int_eq(roo_app_add_pipeline(app, "p", &src, &p), 0);
        ck_assert_int_eq(roo_pipeline_to_sink(p, &good_sink), 0);
    }
    src = (roo_source){ .framing = ROO_FRAMING_LINE, .decode = dummy_decode };
    ck_assert_int_eq(roo_app_add_pipeline(app, "lines", &src, &p), 0);
    ck_assert_uint_eq(app->npipelines, 6);
    roo_app_destroy(app);
}
END_TEST

START_TEST(to_state_with_serialize_but_no_deserialize_is_einval)
{
    roo_app *app = new_app();
    roo_pipeline *p = add_pipeline(app, "p");
    roo_state_type only_ser = { .name = "s", .size = 8, .serialize = dummy_serialize };
    roo_state_type only_de = { .name = "s", .size = 8, .deserialize = dummy_deserialize };
    roo_state_type both = {
        .name = "s", .size = 8, .serialize = dummy_serialize, .deserialize = dummy_deserialize
    };
    roo_state_step step = state_step("st", &only_ser);

    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    step.state = &only_de;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    ck_assert_uint_eq(app->nstate_types, 0);
    ck_assert_uint_eq(app->nstages, 0);
    step.state = &both;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), 0);
    ck_assert_uint_eq(app->nstate_types, 1);
    roo_app_destroy(app);
}
END_TEST

START_TEST(to_state_with_bad_step_or_type_is_einval)
{
    roo_app *app = new_app();
    roo_pipeline *p = add_pipeline(app, "p");
    roo_state_type t = counter_type;
    roo_state_step step = state_step("st", &t);

    step.key = NULL;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    step = state_step("st", &t);
    step.compute = NULL;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    step = state_step("st", NULL);
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    ck_assert_int_eq(roo_pipeline_to_state(p, NULL), -EINVAL);
    ck_assert_int_eq(roo_pipeline_to_state(NULL, &step), -EINVAL);

    step = state_step("st", &t);
    t.size = 0;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    t.size = ROO_MSG_MAX + 1;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    t.size = ROO_MSG_MAX;
    t.name = NULL;
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    t.name = "bad name";
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), -EINVAL);
    ck_assert_uint_eq(app->nstages, 0);
    t.name = "ok";
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), 0);

    ck_assert_int_eq(roo_pipeline_to(p, &(roo_step){ .name = "x" }), -EINVAL);
    ck_assert_int_eq(roo_pipeline_to(p, NULL), -EINVAL);
    ck_assert_int_eq(roo_pipeline_to_sink(p, &(roo_sink){ 0 }), -EINVAL);
    ck_assert_int_eq(roo_pipeline_to_sink(p, NULL), -EINVAL);
    ck_assert(!p->ended);
    roo_app_destroy(app);
}
END_TEST

START_TEST(adding_after_to_sink_is_esetup)
{
    roo_app *app = new_app();
    roo_pipeline *p = add_pipeline(app, "p");
    roo_state_step step = state_step("st", &counter_type);

    ck_assert_int_eq(roo_pipeline_to_sink(p, &good_sink), 0);
    ck_assert(p->ended);
    ck_assert_int_eq(roo_pipeline_to(p, &(roo_step){ .name = "late", .compute = dummy_compute }),
                     ROO_ESETUP);
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), ROO_ESETUP);
    ck_assert_int_eq(roo_pipeline_to_sink(p, &good_sink), ROO_ESETUP);
    ck_assert_uint_eq(app->nstages, 1);
    ck_assert_uint_eq(app->nsinks, 1);
    roo_app_destroy(app);
}
END_TEST

/* roo.h: roo_app_add_pipeline returns "ROO_ESETUP (the previous pipeline has no sink)". */
START_TEST(pipelines_built_interleaved_keep_their_own_step_order)
{
    roo_app *app = new_app();
    roo_pipeline *a = add_pipeline(app, "first");
    roo_pipeline *b = add_pipeline(app, "second");
    char msg[256];

    ck_assert_int_eq(roo_pipeline_to(a, &(roo_step){ .name = "a1", .compute = dummy_compute }), 0);
    ck_assert_int_eq(roo_pipeline_to(b, &(roo_step){ .name = "b1", .compute = dummy_compute }), 0);
    ck_assert_int_eq(roo_pipeline_to_sink(b, &good_sink), 0);
    ck_assert_int_eq(roo_pipeline_to_sink(a, &good_sink), 0);
    ck_assert_str_eq(app->stages[a->first_stage].name, "a1");
    ck_assert_str_eq(app->stages[b->first_stage].name, "b1");
    ck_assert_int_eq(app->stages[app->stages[a->first_stage].next].kind, ROO__STAGE_SINK);
    ck_assert_int_eq(app->stages[app->stages[b->first_stage].next].kind, ROO__STAGE_SINK);
    /* Sinks are numbered in the order pipelines were ended: b's first. */
    ck_assert_uint_eq(app->stages[app->stages[b->first_stage].next].sink_idx, 0);
    ck_assert_uint_eq(app->stages[app->stages[a->first_stage].next].sink_idx, 1);
    ck_assert_int_eq(roo_app_set_name(app, "interleaved"), 0);
    ck_assert_int_eq(roo__app_validate(app, msg, sizeof(msg)), 0);
    roo_app_destroy(app);
}
END_TEST

START_TEST(steps_are_linked_in_order_and_sinks_numbered)
{
    roo_app *app = new_app();
    roo_pipeline *a = add_pipeline(app, "a");
    roo_state_step step = state_step("count", &counter_type);

    ck_assert_uint_eq(a->index, 0);
    ck_assert_uint_eq(a->first_stage, UINT32_MAX);
    ck_assert_int_eq(roo_pipeline_to(a, &(roo_step){ .name = "parse", .compute = dummy_compute }),
                     0);
    ck_assert_int_eq(roo_pipeline_to_state(a, &step), 0);
    ck_assert_int_eq(roo_pipeline_to(a, &(roo_step){ .compute = dummy_compute }), 0);
    ck_assert_int_eq(roo_pipeline_to_sink(a, &good_sink), 0);

    roo_pipeline *b = add_pipeline(app, "b");
    ck_assert_uint_eq(b->index, 1);
    ck_assert_int_eq(roo_pipeline_to_sink(b, &good_sink), 0);

    ck_assert_uint_eq(app->nstages, 5);
    ck_assert_uint_eq(a->first_stage, 0);
    ck_assert_uint_eq(app->stages[0].kind, ROO__STAGE_STATELESS);
    ck_assert_str_eq(app->stages[0].name, "parse");
    ck_assert_uint_eq(app->stages[0].next, 1);
    ck_assert_uint_eq(app->stages[1].kind, ROO__STAGE_STATE);
    ck_assert_uint_eq(app->stages[1].next, 2);
    ck_assert_str_eq(app->stages[2].name, "(unnamed)");
    ck_assert_uint_eq(app->stages[2].next, 3);
    ck_assert_uint_eq(app->stages[3].kind, ROO__STAGE_SINK);
    ck_assert_uint_eq(app->stages[3].sink_idx, 0);
    ck_assert_uint_eq(a->last_stage, 3);
    ck_assert_uint_eq(b->first_stage, 4);
    ck_assert_uint_eq(app->stages[4].kind, ROO__STAGE_SINK);
    ck_assert_uint_eq(app->stages[4].pipeline, 1);
    ck_assert_uint_eq(app->stages[4].sink_idx, 1);
    ck_assert_uint_eq(app->nsinks, 2);
    roo_app_destroy(app);
}
END_TEST

START_TEST(steps_sharing_a_state_type_name_share_the_state_id)
{
    roo_app *app = new_app();
    roo_pipeline *a = add_pipeline(app, "a");
    static const roo_state_type other = { .name = "other", .size = 16 };
    /* A second type object with the same name and a compatible layout. */
    static const roo_state_type counter_again = { .name = "counter", .size = 8 };
    static const roo_state_type counter_bigger = { .name = "counter", .size = 16 };
    roo_state_step s1 = state_step("one", &counter_type);
    roo_state_step s2 = state_step("two", &other);
    roo_state_step s3 = state_step("three", &counter_type);
    roo_state_step s4 = state_step("four", &counter_again);
    roo_state_step s5 = state_step("five", &counter_bigger);

    ck_assert_int_eq(roo_pipeline_to_state(a, &s1), 0);
    ck_assert_int_eq(roo_pipeline_to_state(a, &s2), 0);
    ck_assert_int_eq(roo_pipeline_to_sink(a, &good_sink), 0);
    roo_pipeline *b = add_pipeline(app, "b");
    ck_assert_int_eq(roo_pipeline_to_state(b, &s3), 0);
    ck_assert_int_eq(roo_pipeline_to_state(b, &s4), 0);
    /* Same name, different layout: the objects cannot be shared. */
    ck_assert_int_eq(roo_pipeline_to_state(b, &s5), ROO_ESETUP);

    ck_assert_uint_eq(app->nstate_types, 2);
    ck_assert_uint_eq(app->stages[0].state_id, 0);
    ck_assert_uint_eq(app->stages[1].state_id, 1);
    ck_assert_uint_eq(app->stages[3].state_id, 0);
    ck_assert_uint_eq(app->stages[4].state_id, 0);
    ck_assert_ptr_eq(app->stages[4].state, &counter_type);
    roo_app_destroy(app);
}
END_TEST

START_TEST(validate_requires_a_name)
{
    roo_app *app = new_app();
    roo_pipeline *p = add_pipeline(app, "p");
    char msg[256] = "";

    ck_assert_int_eq(roo_pipeline_to_sink(p, &good_sink), 0);
    ck_assert_int_eq(roo__app_validate(app, msg, sizeof(msg)), ROO_ESETUP);
    ck_assert_msg(strstr(msg, "name") != NULL, "message: %s", msg);
    roo_app_destroy(app);
}
END_TEST

START_TEST(validate_requires_a_pipeline)
{
    roo_app *app = new_app();
    char msg[256] = "";

    ck_assert_int_eq(roo_app_set_name(app, "empty"), 0);
    ck_assert_int_eq(roo__app_validate(app, msg, sizeof(msg)), ROO_ESETUP);
    ck_assert_msg(strstr(msg, "pipeline") != NULL, "message: %s", msg);
    roo_app_destroy(app);
}
END_TEST

START_TEST(validate_requires_every_pipeline_to_end_in_a_sink)
{
    roo_app *app = new_app();
    roo_pipeline *a = add_pipeline(app, "complete");
    char msg[256] = "";

    ck_assert_int_eq(roo_app_set_name(app, "app"), 0);
    ck_assert_int_eq(roo_pipeline_to_sink(a, &good_sink), 0);
    roo_pipeline *b = add_pipeline(app, "unfinished");
    ck_assert_int_eq(roo_pipeline_to(b, &(roo_step){ .compute = dummy_compute }), 0);
    ck_assert_int_eq(roo__app_validate(app, msg, sizeof(msg)), ROO_ESETUP);
    ck_assert_msg(strstr(msg, "unfinished") != NULL, "message: %s", msg);
    roo_app_destroy(app);
}
END_TEST

START_TEST(validate_passes_a_complete_app)
{
    roo_app *app = new_app();
    roo_pipeline *p = add_pipeline(app, "votes");
    roo_state_step step = state_step("add", &counter_type);
    char msg[256] = "untouched";

    ck_assert_int_eq(roo_app_set_name(app, "alphabet"), 0);
    ck_assert_int_eq(roo_pipeline_to_state(p, &step), 0);
    ck_assert_int_eq(roo_pipeline_to_sink(p, &good_sink), 0);
    ck_assert_int_eq(roo__app_validate(app, msg, sizeof(msg)), 0);
    ck_assert_str_eq(msg, "untouched");
    roo_app_destroy(app);
}
END_TEST

static Suite *app_suite(void)
{
    Suite *s = suite_create("app");
    TCase *tc;

    tc = roo_test_tcase("builder", 10);
    tcase_add_test(tc, set_name_accepts_valid_names);
    tcase_add_test(tc, set_name_rejects_invalid_names_and_keeps_the_old_one);
    tcase_add_test(tc, add_pipeline_with_null_decode_is_einval);
    tcase_add_test(tc, add_pipeline_with_missing_arguments_is_einval);
    tcase_add_test(tc, add_pipeline_with_bad_framing_is_einval);
    tcase_add_test(tc, to_state_with_serialize_but_no_deserialize_is_einval);
    tcase_add_test(tc, to_state_with_bad_step_or_type_is_einval);
    tcase_add_test(tc, adding_after_to_sink_is_esetup);
    tcase_add_test(tc, pipelines_built_interleaved_keep_their_own_step_order);
    tcase_add_test(tc, steps_are_linked_in_order_and_sinks_numbered);
    tcase_add_test(tc, steps_sharing_a_state_type_name_share_the_state_id);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("validate", 10);
    tcase_add_test(tc, validate_requires_a_name);
    tcase_add_test(tc, validate_requires_a_pipeline);
    tcase_add_test(tc, validate_requires_every_pipeline_to_end_in_a_sink);
    tcase_add_test(tc, validate_passes_a_complete_app);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(app_suite());
}
