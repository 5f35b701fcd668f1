/* snapshot.c: the engine's figures for a metrics scrape, read from what the threads publish.
 *
 * Thread rule: roo__engine_take_snapshot() runs on a thread that is none of the engine's
 * (metrics/ calls it from libmicrohttpd's thread). It only reads relaxed atomics and what
 * never changes once the engine exists (the application graph, the configuration), so it
 * takes no lock and no engine thread ever waits for it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine-int.h"

static uint64_t load64(_Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/*
 * A label value unique among the first n of names (a pipeline or step name may repeat, and
 * two series with one label set would make the scrape invalid): name, or name#2, name#3...
 * within the same scope (scope NULL: all n are in it).
 */
static char *unique_label(char *const *names, const char *const *scopes, size_t n,
                          const char *scope, const char *name)
{
    char buf[512];
    unsigned k = 1;

    snprintf(buf, sizeof(buf), "%s", name);
    for (size_t i = 0; i < n; i++) {
        if ((scope && strcmp(scopes[i], scope) != 0) || strcmp(names[i], buf) != 0)
            continue;
        snprintf(buf, sizeof(buf), "%s#%u", name, ++k);
        i = (size_t)-1; /* the new name may be taken too: look again from the start */
    }
    return roo__xstrdup(buf);
}

static void take_sources(roo__engine *e, roo__engine_snapshot *s)
{
    const roo_app *app = e->app;
    char **names = roo__xcalloc(app->npipelines, sizeof(char *));

    s->nsources = app->npipelines;
    s->sources = roo__xcalloc(s->nsources, sizeof(*s->sources));
    for (size_t p = 0; p < s->nsources; p++) {
        roo__snapshot_source *src = &s->sources[p];
        uint64_t accepted = load64(&e->source_accepted[p]);
        uint64_t closed = load64(&e->source_closed[p]);

        src->pipeline = unique_label(names, NULL, p, NULL, app->pipelines[p]->name);
        names[p] = src->pipeline;
        for (unsigned i = 0; i < e->cfg.threads; i++) {
            roo__source_counts *c = &e->shards[i].source_counts[p];
            src->frames += load64(&c->frames);
            src->bytes += load64(&c->bytes);
            src->rejected += load64(&c->rejected);
            src->oversize += load64(&c->oversize);
        }
        for (int w = 0; w < ROO__NWRITERS; w++)
            roo__hist_merge(&e->written[w].e2e[p], &src->latency);
        s->decoder_rejections += src->rejected;
        /* Read apart, closed may be ahead of accepted for a moment. */
        src->connections = accepted > closed ? accepted - closed : 0;
        src->connections_accepted = accepted;
    }
    free(names);
}

static void take_sinks(roo__engine *e, roo__engine_snapshot *s)
{
    char **names = roo__xcalloc(e->nsinks ? e->nsinks : 1, sizeof(char *));

    s->nsinks = e->nsinks;
    s->sinks = roo__xcalloc(s->nsinks ? s->nsinks : 1, sizeof(*s->sinks));
    for (size_t i = 0; i < s->nsinks; i++) {
        char a[300];

        roo__io_sink_counts(e, i, &s->sinks[i]);
        roo__addr_str(&e->cfg.out[i], a, sizeof(a));
        s->sinks[i].sink = unique_label(names, NULL, i, NULL, a);
        names[i] = s->sinks[i].sink;
    }
    free(names);
}

static void take_steps(roo__engine *e, roo__engine_snapshot *s)
{
    const roo_app *app = e->app;
    char **names = roo__xcalloc(app->nstages, sizeof(char *));
    const char **scopes = roo__xcalloc(app->nstages, sizeof(char *));

    s->nsteps = app->nstages;
    s->steps = roo__xcalloc(s->nsteps, sizeof(*s->steps));
    for (size_t i = 0; i < s->nsteps; i++) {
        const roo__stage *st = &app->stages[i];
        roo__snapshot_step *out = &s->steps[i];

        out->pipeline = roo__xstrdup(s->sources[st->pipeline].pipeline);
        out->step = unique_label(names, scopes, i, out->pipeline, st->name);
        names[i] = out->step;
        scopes[i] = out->pipeline;
        for (unsigned t = 0; t < e->cfg.threads; t++) {
            out->errors += load64(&e->shards[t].step_errors[i]);
            roo__hist_merge(&e->shards[t].compute[i], &out->compute);
        }
        s->callback_errors += out->errors;
    }
    free(names);
    free(scopes);
}

void roo__engine_take_snapshot(roo__engine *e, roo__engine_snapshot *ret_snap)
{
    roo__engine_snapshot s = { 0 };

    s.worker = roo__xstrdup(e->cfg.worker_name);
    s.app = roo__xstrdup(e->app->name);
    s.ready = atomic_load_explicit(&e->ready_pub, memory_order_relaxed);
    s.threads = e->cfg.threads;
    s.partitions = atomic_load_explicit(&e->shards[0].parts_pub, memory_order_relaxed);
    s.partitions_owned = atomic_load_explicit(&e->shards[0].parts_owned_pub, memory_order_relaxed);
    for (unsigned i = 0; i < e->cfg.threads; i++) {
        roo__shard *sh = &e->shards[i];
        s.keys += load64(&sh->keys_pub);
        s.duplicates += load64(&sh->duplicates);
        s.routed_out += load64(&sh->routed_out);
    }
    s.routed_in = load64(&e->routed_in);
    for (unsigned i = 0; i < e->cfg.threads; i++)
        roo__hist_merge(&e->shards[i].read_to_sealed, &s.read_to_sealed);
    roo__hist_merge(&e->sealed_to_committed, &s.sealed_to_committed);
    for (int w = 0; w < ROO__NWRITERS; w++)
        roo__hist_merge(&e->written[w].committed_to_written, &s.committed_to_written);
    roo__hist_merge(&e->commit_duration, &s.commit_duration);
    s.commit_messages = load64(&e->commit_messages);
    s.commit_bytes = load64(&e->commit_bytes);
    s.map_size = load64(&e->map_size_pub);
    s.map_used = load64(&e->map_used_pub);
    s.outbox_bytes = load64(&e->outbox_bytes_pub);
    s.uptime_seconds = (double)(roo__now_ns() - e->created_ns) / 1e9;
    s.commits = load64(&e->commits);
    s.committed_batches = load64(&e->committed_batches);
    s.recovered_keys = e->recovered_keys;
    s.recovery_seconds = (double)e->recovered_ms / 1000.0;
    take_sources(e, &s);
    take_sinks(e, &s);
    take_steps(e, &s);
    s.nstates = e->app->nstate_types;
    s.states = roo__xcalloc(s.nstates ? s.nstates : 1, sizeof(*s.states));
    for (size_t i = 0; i < s.nstates; i++) {
        s.states[i].state = roo__xstrdup(e->app->state_types[i]->name);
        for (unsigned t = 0; t < e->cfg.threads; t++)
            s.states[i].serialize_errors += load64(&e->shards[t].serialize_errors[i]);
    }
    *ret_snap = s;
}

void roo__engine_snapshot_finish(roo__engine_snapshot *s)
{
    for (size_t i = 0; s->sources && i < s->nsources; i++)
        free(s->sources[i].pipeline);
    for (size_t i = 0; s->sinks && i < s->nsinks; i++)
        free(s->sinks[i].sink);
    for (size_t i = 0; s->steps && i < s->nsteps; i++) {
        free(s->steps[i].pipeline);
        free(s->steps[i].step);
    }
    for (size_t i = 0; s->states && i < s->nstates; i++)
        free(s->states[i].state);
    free(s->worker);
    free(s->app);
    free(s->sources);
    free(s->sinks);
    free(s->steps);
    free(s->states);
    memset(s, 0, sizeof(*s));
}
