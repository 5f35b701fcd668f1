/* app.c: the application builder behind roo_app_* and roo_pipeline_* in roo.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine-int.h"

#define NAME_MAX_LEN 64

int roo_app_create(roo_app **ret_app)
{
    roo_app *app;

    if (!ret_app)
        return -EINVAL;
    app = roo__xcalloc(1, sizeof(*app));
    *ret_app = app;
    return 0;
}

void roo_app_destroy(roo_app *app)
{
    if (!app)
        return;
    for (size_t i = 0; i < app->npipelines; i++) {
        free(app->pipelines[i]->name);
        free(app->pipelines[i]);
    }
    for (size_t i = 0; i < app->nstages; i++)
        free(app->stages[i].name);
    free(app->pipelines);
    free(app->stages);
    free(app->state_types);
    free(app->name);
    free(app);
}

static bool valid_name(const char *name)
{
    size_t n;

    if (!name)
        return false;
    n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int roo_app_set_name(roo_app *app, const char *name)
{
    if (!app || !valid_name(name))
        return -EINVAL;
    free(app->name);
    app->name = roo__xstrdup(name);
    return 0;
}

int roo_app_add_pipeline(roo_app *app, const char *name, const roo_source *source,
                         roo_pipeline **ret_pipeline)
{
    roo_pipeline *p;
    roo__framer probe;

    if (!app || !name || !*name || !source || !source->decode || !ret_pipeline)
        return -EINVAL;
    if (roo__framer_init(&probe, source, 1) < 0)
        return -EINVAL;
    p = roo__xcalloc(1, sizeof(*p));
    p->app = app;
    p->index = (uint32_t)app->npipelines;
    p->name = roo__xstrdup(name);
    p->source = *source;
    p->first_stage = UINT32_MAX;
    p->last_stage = UINT32_MAX;
    app->pipelines = roo__xrealloc(app->pipelines, (app->npipelines + 1) * sizeof(*app->pipelines));
    app->pipelines[app->npipelines++] = p;
    *ret_pipeline = p;
    return 0;
}

static roo__stage *append_stage(roo_pipeline *p, roo__stage_kind kind, const char *name)
{
    roo_app *app = p->app;
    uint32_t idx = (uint32_t)app->nstages;
    roo__stage *st;

    app->stages = roo__xrealloc(app->stages, (app->nstages + 1) * sizeof(*app->stages));
    st = &app->stages[app->nstages++];
    memset(st, 0, sizeof(*st));
    st->kind = kind;
    st->pipeline = p->index;
    st->next = UINT32_MAX;
    st->name = roo__xstrdup(name && *name ? name : "(unnamed)");
    st->wire = p->msg_ops.pack ? &p->msg_ops : NULL;
    if (p->first_stage == UINT32_MAX)
        p->first_stage = idx;
    else
        app->stages[p->last_stage].next = idx;
    p->last_stage = idx;
    return st;
}

int roo_pipeline_to(roo_pipeline *p, const roo_step *step)
{
    roo__stage *st;

    if (!p || !step || !step->compute)
        return -EINVAL;
    if (p->ended)
        return ROO_ESETUP;
    st = append_stage(p, ROO__STAGE_STATELESS, step->name);
    st->compute = step->compute;
    st->ctx = step->ctx;
    return 0;
}

int roo_pipeline_to_state(roo_pipeline *p, const roo_state_step *step)
{
    roo_app *app;
    const roo_state_type *t;
    roo__stage *st;
    size_t id;

    if (!p || !step || !step->state || !step->key || !step->compute)
        return -EINVAL;
    t = step->state;
    if (!valid_name(t->name) || t->size == 0 || t->size > ROO_MSG_MAX)
        return -EINVAL;
    if ((t->serialize == NULL) != (t->deserialize == NULL))
        return -EINVAL;
    if (p->ended)
        return ROO_ESETUP;
    app = p->app;
    for (id = 0; id < app->nstate_types; id++) {
        if (strcmp(app->state_types[id]->name, t->name) == 0)
            break;
    }
    if (id < app->nstate_types && app->state_types[id] != t &&
        (app->state_types[id]->size != t->size || app->state_types[id]->serialize != t->serialize))
        return ROO_ESETUP;
    if (id == app->nstate_types) {
        if (id >= UINT16_MAX)
            return ROO_ESETUP;
        app->state_types = roo__xrealloc(app->state_types, (id + 1) * sizeof(*app->state_types));
        app->state_types[app->nstate_types++] = t;
    }
    st = append_stage(p, ROO__STAGE_STATE, step->name);
    st->state_compute = step->compute;
    st->state_compute_many = step->compute_many;
    st->key = step->key;
    st->state = app->state_types[id];
    st->state_id = (uint16_t)id;
    st->ctx = step->ctx;
    return 0;
}

int roo_pipeline_to_sink(roo_pipeline *p, const roo_sink *sink)
{
    return roo_pipeline_to_sinks(p, sink, 1);
}

int roo_pipeline_to_sinks(roo_pipeline *p, const roo_sink *sinks, size_t n)
{
    roo__stage *st;

    if (!p || !sinks || n == 0 || n > 64)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!sinks[i].encode)
            return -EINVAL;
    if (p->ended)
        return ROO_ESETUP;
    /* Chained: each sink stage runs the next one on the same message (steps.c run_step). */
    for (size_t i = 0; i < n; i++) {
        st = append_stage(p, ROO__STAGE_SINK, "sink");
        st->encode = sinks[i].encode;
        st->encode_many = sinks[i].encode_many;
        st->ctx = sinks[i].ctx;
        st->sink_idx = (uint32_t)p->app->nsinks++;
    }
    p->ended = true;
    return 0;
}

int roo__app_validate(const roo_app *app, char *msg, size_t cap)
{
    if (!app->name) {
        snprintf(msg, cap, "the application has no name (call roo_app_set_name)");
        return ROO_ESETUP;
    }
    if (app->npipelines == 0) {
        snprintf(msg, cap, "application '%s' has no pipeline", app->name);
        return ROO_ESETUP;
    }
    for (size_t i = 0; i < app->npipelines; i++) {
        const roo_pipeline *p = app->pipelines[i];
        if (!p->ended) {
            snprintf(msg, cap, "pipeline '%s' does not end in a sink (roo_pipeline_to_sink)",
                     p->name);
            return ROO_ESETUP;
        }
    }
    return 0;
}
