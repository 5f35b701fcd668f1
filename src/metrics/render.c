/* render.c: a worker's figures as Prometheus text (exposition format 0.0.4), and the parse
 * of /proc/PID/stat behind the process_* metrics. Pure functions, unit-tested in
 * tests/metrics/test_metrics.c.
 *
 * Names follow Prometheus's conventions: the roo_ prefix, _total on counters, base units
 * (bytes, seconds), one label set per series. Every roo_ sample carries worker=; the
 * process_* families carry no label, as every Prometheus client library writes them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics/metrics.h"
#include "metrics/prom.h"

/* The text format's pieces are prom.h's; these take the worker's name from the snapshot. */
static void sample(roo__buf *b, const roo__engine_snapshot *s, const char *name,
                   const char *const *labels, const char *value)
{
    roo__prom_sample(b, s->worker, name, labels, value);
}

static void sample_u64(roo__buf *b, const roo__engine_snapshot *s, const char *name,
                       const char *const *labels, uint64_t v)
{
    roo__prom_sample_u64(b, s->worker, name, labels, v);
}

/* A family of one sample per worker. */
static void single(roo__buf *b, const roo__engine_snapshot *s, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    roo__prom_family(b, name, type, help);
    sample_u64(b, s, name, NULL, v);
}

/* Figures of the sources, one series per pipeline; `field` picks the figure. */
enum source_field { SRC_FRAMES, SRC_BYTES, SRC_REJECTED, SRC_OVERSIZE, SRC_CONNS, SRC_ACCEPTED };

static uint64_t source_field(const roo__snapshot_source *src, enum source_field f)
{
    switch (f) {
    case SRC_FRAMES:
        return src->frames;
    case SRC_BYTES:
        return src->bytes;
    case SRC_REJECTED:
        return src->rejected;
    case SRC_OVERSIZE:
        return src->oversize;
    case SRC_CONNS:
        return src->connections;
    case SRC_ACCEPTED:
        return src->connections_accepted;
    }
    return 0;
}

static void per_source(roo__buf *b, const roo__engine_snapshot *s, const char *name,
                       const char *type, const char *help, enum source_field f)
{
    roo__prom_family(b, name, type, help);
    for (size_t i = 0; i < s->nsources; i++) {
        const char *labels[] = { "pipeline", s->sources[i].pipeline, NULL };
        sample_u64(b, s, name, labels, source_field(&s->sources[i], f));
    }
}

static void histogram(roo__buf *b, const roo__engine_snapshot *s, const char *name,
                      const char *const *labels, const roo__hist_counts *c)
{
    roo__prom_histogram(b, s->worker, name, labels, c);
}

static void render_latency(roo__buf *out, const roo__engine_snapshot *s)
{
    static const char *const stages[] = { "read_to_sealed", "sealed_to_committed",
                                          "committed_to_written" };
    const roo__hist_counts *by_stage[] = { &s->read_to_sealed, &s->sealed_to_committed,
                                           &s->committed_to_written };

    roo__prom_family(
        out, "roo_end_to_end_latency_seconds", "histogram",
        "From a frame read (here, or on the worker that routed its message here) to its "
        "output handed to the sink's kernel, one sample per output record.");
    for (size_t i = 0; i < s->nsources; i++) {
        const char *labels[] = { "pipeline", s->sources[i].pipeline, NULL };
        histogram(out, s, "roo_end_to_end_latency_seconds", labels, &s->sources[i].latency);
    }
    roo__prom_family(
        out, "roo_stage_latency_seconds", "histogram",
        "The way to the sink by stage: read to its batch sealed (per frame read here), "
        "sealed to committed (per message), committed to written (per output record).");
    for (size_t i = 0; i < ROO__ARRAY_SIZE(stages); i++) {
        const char *labels[] = { "stage", stages[i], NULL };
        histogram(out, s, "roo_stage_latency_seconds", labels, by_stage[i]);
    }
    roo__prom_family(
        out, "roo_step_compute_seconds", "histogram",
        "Time in the step's own callbacks for one message in 1,024 (the steps it emits to "
        "not included).");
    for (size_t i = 0; i < s->nsteps; i++) {
        const char *labels[] = { "pipeline", s->steps[i].pipeline, "step", s->steps[i].step, NULL };
        histogram(out, s, "roo_step_compute_seconds", labels, &s->steps[i].compute);
    }
    roo__prom_family(out, "roo_commit_duration_seconds", "histogram",
                     "One group commit to LMDB, from the transaction's start to synced.");
    histogram(out, s, "roo_commit_duration_seconds", NULL, &s->commit_duration);
    single(out, s, "roo_commit_messages_total", "counter",
           "Messages (frames read here and messages routed here) of the committed batches.",
           s->commit_messages);
    single(out, s, "roo_commit_bytes_total", "counter",
           "State records and output written to LMDB by the commits.", s->commit_bytes);
    single(out, s, "roo_lmdb_map_size_bytes", "gauge", "Size of the LMDB map (it grows when full).",
           s->map_size);
    single(out, s, "roo_lmdb_map_used_bytes", "gauge",
           "Bytes of the LMDB map up to its last used page.", s->map_used);
    single(out, s, "roo_outbox_bytes", "gauge",
           "Committed output kept in LMDB until its sink took it (output recovered at start "
           "not counted).",
           s->outbox_bytes);
}

enum sink_field { SINK_RECORDS, SINK_BYTES, SINK_HELD, SINK_CONNECTED, SINK_UNDELIVERED };

static uint64_t sink_field(const roo__snapshot_sink *k, enum sink_field f)
{
    switch (f) {
    case SINK_RECORDS:
        return k->records;
    case SINK_BYTES:
        return k->bytes;
    case SINK_HELD:
        return k->held;
    case SINK_CONNECTED:
        return k->connected;
    case SINK_UNDELIVERED:
        return k->held + k->unacked;
    }
    return 0;
}

static void per_sink(roo__buf *b, const roo__engine_snapshot *s, const char *name, const char *type,
                     const char *help, enum sink_field f)
{
    roo__prom_family(b, name, type, help);
    for (size_t i = 0; i < s->nsinks; i++) {
        const char *labels[] = { "sink", s->sinks[i].sink, NULL };
        sample_u64(b, s, name, labels, sink_field(&s->sinks[i], f));
    }
}

static void render_process(roo__buf *b, const roo__process_stats *p)
{
    roo__prom_family(b, "process_cpu_seconds_total", "counter",
                     "Total user and system CPU time spent in seconds.");
    roo__prom_appendf(b, "process_cpu_seconds_total %.2f\n", p->cpu_seconds);
    roo__prom_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    roo__prom_appendf(b, "process_resident_memory_bytes %" PRIu64 "\n", p->resident_bytes);
    roo__prom_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    roo__prom_appendf(b, "process_virtual_memory_bytes %" PRIu64 "\n", p->virtual_bytes);
    roo__prom_family(b, "process_start_time_seconds", "gauge",
                     "Start time of the process since unix epoch in seconds.");
    roo__prom_appendf(b, "process_start_time_seconds %.2f\n", p->start_time_seconds);
    roo__prom_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    roo__prom_appendf(b, "process_open_fds %" PRIu64 "\n", p->open_fds);
    roo__prom_family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    roo__prom_appendf(b, "process_max_fds %" PRIu64 "\n", p->max_fds);
}

void roo__metrics_render(const roo__engine_snapshot *s, const roo__process_stats *proc,
                         roo__buf *out)
{
    char num[32];

    roo__prom_family(out, "roo_build_info", "gauge",
                     "Always 1; the labels name the roo version and the application.");
    {
        const char *labels[] = { "version", ROO_VERSION_STRING, "application", s->app, NULL };
        sample(out, s, "roo_build_info", labels, "1");
    }
    single(out, s, "roo_ready", "gauge",
           "1 once the worker serves its sources (its cluster formed), 0 before and while "
           "stopping.",
           s->ready);
    single(out, s, "roo_processing_threads", "gauge", "Processing threads (--threads).",
           s->threads);
    single(out, s, "roo_partitions", "gauge", "Key partitions of the cluster (--partitions).",
           s->partitions);
    single(out, s, "roo_partitions_owned", "gauge", "Key partitions whose state this worker holds.",
           s->partitions_owned);
    single(out, s, "roo_state_keys", "gauge", "Keys whose state this worker holds in memory.",
           s->keys);
    single(out, s, "roo_commits_total", "counter",
           "Group commits of state and output to LMDB (each synced).", s->commits);
    single(out, s, "roo_committed_batches_total", "counter",
           "Batches of processed messages made durable by the commits.", s->committed_batches);
    single(out, s, "roo_recovered_keys", "gauge",
           "Keys loaded from the resilience directory at start.", s->recovered_keys);
    roo__prom_family(out, "roo_recovery_duration_seconds", "gauge",
                     "Time the start took to load the state from the resilience directory.");
    snprintf(num, sizeof(num), "%.3f", s->recovery_seconds);
    sample(out, s, "roo_recovery_duration_seconds", NULL, num);

    per_source(out, s, "roo_source_frames_total", "counter",
               "Frames read from the pipeline's source connections and decoded.", SRC_FRAMES);
    per_source(out, s, "roo_source_bytes_total", "counter",
               "Bytes read from the pipeline's source connections.", SRC_BYTES);
    per_source(out, s, "roo_source_decoder_rejections_total", "counter",
               "Frames the pipeline's decoder rejected (each closed its connection).",
               SRC_REJECTED);
    per_source(out, s, "roo_source_oversize_frames_total", "counter",
               "Frames over --max-frame (each closed its connection).", SRC_OVERSIZE);
    per_source(out, s, "roo_source_connections", "gauge",
               "Source connections open on the pipeline's --in address.", SRC_CONNS);
    per_source(out, s, "roo_source_connections_accepted_total", "counter",
               "Source connections accepted on the pipeline's --in address.", SRC_ACCEPTED);
    single(out, s, "roo_resumable_duplicates_total", "counter",
           "Messages from resumable streams sent again and skipped (already applied).",
           s->duplicates);

    per_sink(out, s, "roo_sink_records_total", "counter",
             "Records written to the sink (output resent from the outbox after a restart is "
             "not counted).",
             SINK_RECORDS);
    per_sink(out, s, "roo_sink_bytes_total", "counter",
             "Bytes written to the sink, resends after a reconnect not counted.", SINK_BYTES);
    per_sink(out, s, "roo_sink_held_bytes", "gauge",
             "Committed output waiting to be written to the sink.", SINK_HELD);
    per_sink(out, s, "roo_sink_connected", "gauge", "1 while the sink's connection is up.",
             SINK_CONNECTED);
    per_sink(out, s, "roo_sink_undelivered_bytes", "gauge",
             "Committed output the sink's host has not acknowledged: held, plus written and "
             "not acknowledged (TCP) or to be resent after a reconnect.",
             SINK_UNDELIVERED);

    roo__prom_family(out, "roo_callback_errors_total", "counter",
                     "Callbacks of the step that failed (key, computation, state init or encode); "
                     "each dropped its message.");
    for (size_t i = 0; i < s->nsteps; i++) {
        const char *labels[] = { "pipeline", s->steps[i].pipeline, "step", s->steps[i].step, NULL };
        sample_u64(out, s, "roo_callback_errors_total", labels, s->steps[i].errors);
    }
    roo__prom_family(out, "roo_state_serialize_errors_total", "counter",
                     "Updates of the state type whose serialize callback failed (not saved).");
    for (size_t i = 0; i < s->nstates; i++) {
        const char *labels[] = { "state", s->states[i].state, NULL };
        sample_u64(out, s, "roo_state_serialize_errors_total", labels,
                   s->states[i].serialize_errors);
    }

    single(out, s, "roo_routed_messages_sent_total", "counter",
           "Messages sent to other workers, which own their keys.", s->routed_out);
    single(out, s, "roo_routed_messages_received_total", "counter",
           "Messages received from other workers for keys this worker owns.", s->routed_in);

    render_latency(out, s);
    if (proc)
        render_process(out, proc);
}

int roo__process_stats_parse(const char *stat, long ticks, long page_size, uint64_t boot_time,
                             roo__process_stats *ret_stats)
{
    /* Fields after the command, which is in parentheses and may hold anything, ')' too. */
    const char *p = strrchr(stat, ')');
    unsigned long long v[22];
    roo__process_stats st = { 0 };
    int n;

    if (!p || ticks <= 0 || page_size <= 0)
        return -EINVAL;
    p++;
    /* field 3 (state) is skipped; v[k] is field k + 4: utime 14, stime 15, starttime 22,
     * vsize 23, rss 24. */
    n = sscanf(
        p,
        " %*c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
        "%llu %llu %llu %llu %llu",
        &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11],
        &v[12], &v[13], &v[14], &v[15], &v[16], &v[17], &v[18], &v[19], &v[20]);
    if (n != 21)
        return -EINVAL;
    st.cpu_seconds = (double)(v[10] + v[11]) / (double)ticks;
    st.start_time_seconds = (double)boot_time + (double)v[18] / (double)ticks;
    st.virtual_bytes = v[19];
    st.resident_bytes = v[20] * (uint64_t)page_size;
    *ret_stats = st;
    return 0;
}
