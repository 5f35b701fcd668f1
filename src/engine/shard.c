/* shard.c: a processing thread: its loop, its inbox, the route buffers other threads and
 * workers send it, its life; it runs the pipeline for every frame its source connections
 * read (source.c) through the steps of steps.c, keeps its partitions' state and seals
 * batches (batch.c; its side of partition tables and moves is partitions.c).
 *
 * No syscall, allocation, lock or protobuf message happens per frame: reads are 512 KiB,
 * buffers are reused from batch to batch, and the batch is handed on once per wakeup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/shard-int.h"
#include "wire/wire.h"

#define ROUTES_PER_DEST 4

/* ---- callbacks' errors ---- */

void roo__shard_callback_error(roo__shard *sh, const roo__stage *st, const char *what, int rc)
{
    uint64_t suppressed;

    atomic_fetch_add_explicit(&sh->callback_errors, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->step_errors[st - sh->stages], 1, memory_order_relaxed);
    if (!roo__ratelimit_allow(&sh->cb_rl, &suppressed))
        return;
    roo__log_warn("step '%s' of pipeline '%s': %s failed: %s; message dropped%s", st->name,
                  sh->eng->app->pipelines[st->pipeline]->name, what, roo_strerror(rc),
                  suppressed ? " (earlier similar errors not logged)" : "");
}

/* ---- routes from other shards ---- */

/*
 * A peer's batch is applied in the current batch: record it (links database, same commit
 * as the state it changed) and remember to acknowledge it once committed.
 */
static void note_link_applied(roo__shard *sh, const roo__route *r)
{
    roo__batch *b = sh->cur;
    uint8_t key[ROO__LINK_KEY_MAX], val[ROO__LINK_VAL_LEN];
    size_t klen = roo__key_link(key, r->link_peer, sh->idx);

    roo__val_link(val, r->link_incarnation, r->link_seq);
    roo__shard_append_kv(b, ROO__REC_LINK, key, klen, val, sizeof(val));
    if (b->nacks == b->acks_cap) {
        b->acks_cap = b->acks_cap ? b->acks_cap * 2 : 8;
        b->acks = roo__xrealloc(b->acks, b->acks_cap * sizeof(*b->acks));
    }
    b->acks[b->nacks++] =
        (roo__link_ack){ r->worker, sh->idx, r->link_incarnation, r->link_seq, r->link_conn };
}

static inline __attribute__((always_inline)) void run_routed(roo__shard *sh, uint32_t si,
                                                             const void *msg, size_t len)
{
    const roo__stage *st = &sh->stages[si];

    if (ROO__UNLIKELY(st->wire != NULL))
        roo__shard_unpack_run(sh, st, si, msg, len);
    else
        roo__shard_run(sh, si, msg, len);
}

/* A run of a route buffer this long runs where it lies (roo__shard_run_in_place): a copy
 * into the stage's queue costs more than it saves; a shorter one queues with its
 * neighbours. */
#define IN_PLACE_MIN 64

static void process_route(roo__shard *sh, roo__route *r)
{
    roo__route_iter it = roo__route_iter_of(r->data.data, r->data.len);
    roo__route_rec rec;
    uint64_t i = 0, sample_at = sh->sample_left;
    /* Outside a move, plain messages queue and run stage by stage like a read's (a move's
     * hold needs sh->routed per message). */
    const bool queue = !sh->hold_epoch;

    /* From a peer that sent no stamp: count from now. */
    roo__shard_lat_open(sh, r->read_ns > 0 ? r->read_ns : roo__wall_ns(),
                        r->pipeline < sh->eng->app->npipelines ? r->pipeline : 0);
    sh->cur->nrouted += r->nmsgs;
    while (roo__route_next(&it, &rec)) {
        if (ROO__LIKELY(queue && rec.stage != ROO__ROUTE_INGRESS && !rec.has_id && i != sample_at &&
                        !sh->stages[rec.stage].wire)) {
            /* The common case: no identity, not timed, not a host's packed message; with
             * the rest of its run, up to the next sampled message. */
            size_t stride = ROO__ALIGN8((size_t)rec.len);
            uint64_t n = ROO__MIN((uint64_t)it.run_left + 1, sample_at - i);

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            if (n >= IN_PLACE_MIN && rec.len <= ROO__STAGEQ_MSG_MAX &&
                ((uintptr_t)rec.msg & 7) == 0) {
                roo__shard_drain(sh, 0); /* what came before runs first */
                roo__shard_run_in_place(sh, rec.stage, (uint8_t *)(uintptr_t)rec.msg, rec.len, n);
            } else
#endif
                roo__shard_enqueue(sh, rec.stage, rec.msg, rec.len, stride, n);
            it.p += (n - 1) * stride;
            it.run_left -= (uint32_t)(n - 1);
            i += n;
            continue;
        }
        roo__shard_drain(sh, 0); /* what came before runs first */
        if (rec.stage == ROO__ROUTE_INGRESS) {
            roo__shard_apply_ingress(sh, roo__load_le64(rec.msg), roo__load_le64(rec.msg + 8));
            i++;
            continue;
        }
        sh->routed = true;
        if (ROO__LIKELY(!rec.has_id && i != sample_at && !sh->stages[rec.stage].wire)) {
            roo__shard_run(sh, rec.stage, rec.msg, rec.len);
            i++;
            sh->routed = false;
            continue;
        }
        if (rec.has_id) {
            /* The message's identity travels with it; do not number it again here. */
            sh->id = rec.id;
            sh->id_fixed = true;
        }
        if (ROO__UNLIKELY(i == sample_at)) {
            sh->timing = true; /* this message's steps are timed (metrics) */
            run_routed(sh, rec.stage, rec.msg, rec.len);
            sh->timing = false;
            sample_at += ROO__COMPUTE_SAMPLE_EVERY;
        } else {
            run_routed(sh, rec.stage, rec.msg, rec.len);
        }
        i++;
        sh->routed = false;
        sh->id.stream = 0;
        sh->id_fixed = false;
    }
    roo__shard_drain(sh, 0);
    sh->sample_left = sample_at - i;
    roo__shard_lat_close(sh, 0);
    if (r->link_seq)
        note_link_applied(sh, r);
    if (r->from) {
        /* Another thread's route buffer: tell it once this batch is committed. */
        roo__batch *b = sh->cur;
        if (b->ndone == b->done_cap) {
            b->done_cap = b->done_cap ? b->done_cap * 2 : 8;
            b->done = roo__xrealloc(b->done, b->done_cap * sizeof(*b->done));
        }
        b->done[b->ndone++] = (struct roo__done_note){ r->from, r->batch_seq };
    }
    r->node.kind = ROO__Q_ROUTE_RETURN;
    roo__queue_push(r->from ? &r->from->inbox : &sh->eng->io_q, &r->node);
}

/* ---- the loop ---- */

static void inbox_on_io(roo__loop *loop, roo__io *io, uint32_t events)
{
    roo__shard *sh = io->data;
    roo__qnode *n = roo__queue_take_all(&sh->inbox), *next;

    (void)events;
    for (; n; n = next) {
        next = n->next;
        switch (n->kind) {
        case ROO__Q_BATCH:
            roo__shard_batch_returned(sh, (roo__batch *)n);
            break;
        case ROO__Q_CONN: {
            roo__conn_msg *m = (roo__conn_msg *)n;
            if (sh->stopping) {
                close(m->fd);
                roo__source_gone(sh, m->pipeline);
            } else {
                roo__source_add(sh, m);
            }
            free(m);
            break;
        }
        case ROO__Q_ROUTE:
            n->next = NULL;
            if (sh->route_in_tail)
                sh->route_in_tail->next = n;
            else
                sh->route_in_head = n;
            sh->route_in_tail = n;
            break;
        case ROO__Q_ROUTE_RETURN: {
            roo__route *r = (roo__route *)n;
            if (!r->held)
                sh->routes_inflight--;
            else if (sh->held_out)
                sh->held_out--;                          /* sent on at a move's switch */
            r->node.next = (roo__qnode *)sh->route_pool; /* node is the first member */
            sh->route_pool = r;
            break;
        }
        case ROO__Q_ROUTES:
            roo__shard_set_routes(sh, (roo__routes_msg *)n);
            break;
        case ROO__Q_HELD_BACK:
            roo__shard_held_back(sh, (roo__route *)n);
            break;
        case ROO__Q_COMMITTED:
            roo__shard_batch_committed(sh, (struct roo__commit_note *)n);
            break;
        case ROO__Q_TRACK:
            roo__shard_track_start(sh, (roo__track_msg *)n);
            break;
        case ROO__Q_TRACK_DUMP:
            roo__shard_track_dump(sh, ((roo__track_msg *)n)->epoch);
            free(n);
            break;
        case ROO__Q_IMPORT:
            n->next = NULL;
            if (sh->imports_tail)
                sh->imports_tail->next = n;
            else
                sh->imports_head = n;
            sh->imports_tail = n;
            break;
        case ROO__Q_STREAM_ANSWER:
            roo__sources_stream_answer(sh, (roo__stream_ask *)n);
            break;
        case ROO__Q_ROUTE_DONE:
            roo__dur_route_done(&sh->dur, ((roo__route_done *)n)->batch_seq);
            free(n);
            roo__sources_ack(sh);
            break;
        case ROO__Q_STOP:
            sh->stopping = true;
            if (sh->nconns && !sh->eng->left_cluster)
                roo__log_info("thread %u: closing %u source connection(s) for shutdown", sh->idx,
                              sh->nconns);
            while (sh->conns) {
                /* Plain clients have no channel to be told on: the log says it, per client. */
                if (sh->eng->left_cluster)
                    roo__log_info("source '%s': closing the connection from %s: this worker "
                                  "left the cluster; the client should send to another worker",
                                  sh->conns->pipeline->name, sh->conns->peer);
                roo__source_abort(sh->conns);
            }
            free(n);
            break;
        case ROO__Q_EXIT:
            roo__loop_stop(loop);
            free(n);
            break;
        default:
            roo__log_error("internal error: shard got message kind %u", n->kind);
            abort();
        }
    }
}

static void report_status(roo__shard *sh, bool quiescent)
{
    roo__status_msg *m = roo__xcalloc(1, sizeof(*m));

    m->node.kind = ROO__Q_STATUS;
    m->shard = sh->idx;
    m->quiescent = quiescent;
    sh->reported_quiescent = quiescent;
    roo__queue_push(&sh->eng->io_q, &m->node);
}

static bool shard_prepare(roo__loop *loop, void *data)
{
    roo__shard *sh = data;
    bool want_pause;

    (void)loop;
    if (sh->acks_owed)
        roo__sources_ack(sh);
    if (sh->drop_pending && sh->cur)
        roo__shard_record_drops(sh);
    if (sh->expire_due && sh->cur)
        roo__sources_expire(sh);
    /* One piece of a moving partition per pass: its commit overlaps the next piece. */
    if (sh->imports_head && sh->cur) {
        roo__qnode *n = sh->imports_head;
        sh->imports_head = n->next;
        if (!sh->imports_head)
            sh->imports_tail = NULL;
        roo__shard_apply_import(sh, (roo__import_msg *)n);
    }
    while (sh->route_in_head && sh->cur) {
        roo__route *r = (roo__route *)sh->route_in_head;
        sh->route_in_head = r->node.next;
        if (!sh->route_in_head)
            sh->route_in_tail = NULL;
        process_route(sh, r);
    }
    if (!sh->route_in_head)
        sh->routes_first = false;
    /*
     * Seal when there is a free batch to continue in (otherwise keep filling this one: a
     * bigger batch when commits lag is exactly the group commit we want), when it is full,
     * or when stopping.
     */
    if (sh->cur && !roo__shard_batch_empty(sh) &&
        (sh->nfree > 0 || roo__shard_batch_full(sh) || sh->stopping))
        roo__shard_seal(sh);
    roo__shard_flush_routes(sh);

    want_pause =
        !sh->stopping && (!sh->cur || roo__shard_batch_full(sh) ||
                          sh->routes_inflight >= ROUTES_PER_DEST * (sh->ndests ? sh->ndests : 1));
    if (want_pause != sh->paused)
        roo__sources_pause(sh, want_pause);

    if (sh->stopping) {
        bool q = sh->nconns == 0 && sh->cur && roo__shard_batch_empty(sh) &&
                 sh->nfree + 1 == sh->nbatches && sh->routes_inflight == 0 && !sh->route_in_head &&
                 !sh->unhold;
        if (q != sh->reported_quiescent)
            report_status(sh, q);
    }
    return (sh->route_in_head || sh->imports_head) && sh->cur;
}

void *roo__shard_main(void *arg)
{
    roo__shard *sh = arg;
    const roo__thread_hooks *h = &sh->eng->app->thread_hooks;
    int rc;

    if (h->enter)
        h->enter(h->ctx);
    rc = roo__loop_run(sh->loop);
    if (h->enter)
        h->leave(h->ctx);

    if (rc < 0)
        roo__log_error("thread %u: event loop failed: %s", sh->idx, roo_strerror(rc));
    return NULL;
}

int roo__shard_init(roo__engine *e, roo__shard *sh, unsigned idx)
{
    size_t nsinks = e->app->nsinks;
    int rc;

    sh->eng = e;
    sh->idx = idx;
    sh->stages = e->app->stages;
    sh->partitions = e->cfg.partitions;
    atomic_store_explicit(&sh->parts_pub, sh->partitions, memory_order_relaxed);
    sh->dedup = roo__dedup_create();
    sh->table = roo__table_create();
    sh->batch_seq = 1; /* 0 is the dirty mark of entries never saved */
    sh->cb_rl = (roo__ratelimit)ROO__RATELIMIT_INIT(10000, 5);
    sh->route_out = roo__xcalloc(e->nshards, sizeof(*sh->route_out));
    sh->route_cap = e->nshards;
    sh->ndests = 0;
    roo__buf_reserve(&sh->rbuf, ROO__READ_CHUNK + e->cfg.max_frame + 16);
    sh->source_counts = roo__xcalloc(e->app->npipelines, sizeof(*sh->source_counts));
    sh->step_errors = roo__xcalloc(e->app->nstages, sizeof(*sh->step_errors));
    sh->compute = roo__xcalloc(e->app->nstages, sizeof(*sh->compute));
    sh->queues = roo__xcalloc(e->app->nstages, sizeof(*sh->queues));
    for (size_t i = 0; i < e->app->nstages; i++)
        sh->queues[i].data = roo__xcalloc(ROO__STAGEQ_WORDS, sizeof(uint64_t));
    sh->pending = roo__xcalloc(e->app->nstages, sizeof(*sh->pending));
    sh->out_hint = roo__xcalloc(e->app->nsinks ? e->app->nsinks : 1, sizeof(*sh->out_hint));
    for (size_t i = 0; i < e->app->nstages; i++)
        for (size_t j = 0; j < ROO__MANY_MAX; j++)
            sh->pending[i].results[j] = ROO_SAVE;
    sh->lat_cur = UINT32_MAX;
    sh->sample_left = 0; /* the first message is timed, so even a short run shows its steps */
    sh->serialize_errors = roo__xcalloc(e->app->nstate_types ? e->app->nstate_types : 1,
                                        sizeof(*sh->serialize_errors));
    sh->nbatches = e->cfg.batches_per_shard;
    sh->all_batches = roo__xcalloc(sh->nbatches, sizeof(*sh->all_batches));
    for (unsigned i = 0; i < sh->nbatches; i++) {
        /* One allocation: the batch, its output buffers, then its per-sink record counts. */
        roo__batch *b =
            roo__xcalloc(1, sizeof(*b) + nsinks * (sizeof(roo__buf) + sizeof(*b->sink_nout)));
        b->sink_nout = (uint64_t *)&b->out[nsinks];
        for (size_t k = 0; k < nsinks; k++)
            b->out[k].paged = true; /* written to the outbox log from where it lies */
        b->lat = roo__xcalloc(ROO__LAT_ENTS, sizeof(*b->lat));
        b->node.kind = ROO__Q_BATCH;
        b->owner = sh;
        sh->all_batches[i] = b;
        if (i == 0) {
            sh->cur = b;
        } else {
            b->node.next = (roo__qnode *)sh->free_batches; /* node is the first member */
            sh->free_batches = b;
            sh->nfree++;
        }
    }
    rc = roo__queue_init(&sh->inbox, true);
    if (rc < 0)
        return rc;
    rc = roo__loop_create(&sh->loop);
    if (rc < 0)
        return rc;
    sh->inbox_io.cb = inbox_on_io;
    sh->inbox_io.data = sh;
    rc = roo__io_start(sh->loop, &sh->inbox_io, roo__queue_fd(&sh->inbox), EPOLLIN);
    if (rc < 0)
        return rc;
    roo__loop_set_prepare(sh->loop, shard_prepare, sh);
    if (e->app->thread_hooks.enter)
        roo__loop_set_sleep(sh->loop, roo__shard_host_sleep, sh);
    roo__sources_expire_start(sh);
    return 0;
}

static void free_batch(roo__batch *b, size_t nsinks)
{
    free(b->lat);
    free(b->acks);
    free(b->done);
    roo__buf_finish(&b->recs);
    for (size_t i = 0; i < nsinks; i++)
        roo__buf_finish(&b->out[i]);
    free(b);
}

static void finish_entry(roo__entry *en, void *arg)
{
    roo__engine *e = arg;
    const roo_state_type *t = e->app->state_types[en->state_id];

    if (t->finish && (en->flags & ROO__ENTRY_READY))
        t->finish(roo__entry_state(en), t->ctx);
}

void roo__shard_finish(roo__shard *sh)
{
    size_t nsinks;

    if (!sh->eng)
        return;
    nsinks = sh->eng->app->nsinks;
    while (sh->conns)
        roo__source_close(sh->conns, false);
    /* Messages still queued to us (before the batches go: commit notes live in them). */
    for (roo__qnode *n = roo__queue_take_all(&sh->inbox), *next; n; n = next) {
        next = n->next;
        if (n->kind == ROO__Q_BATCH || n->kind == ROO__Q_COMMITTED)
            continue; /* both live inside batches, freed below */
        if (n->kind == ROO__Q_ROUTE || n->kind == ROO__Q_ROUTE_RETURN ||
            n->kind == ROO__Q_HELD_BACK)
            roo__buf_finish(&((roo__route *)n)->data);
        if (n->kind == ROO__Q_CONN)
            close(((roo__conn_msg *)n)->fd);
        if (n->kind == ROO__Q_IMPORT) {
            roo__buf_finish(&((roo__import_msg *)n)->records);
            roo__buf_finish(&((roo__import_msg *)n)->marks);
        }
        if (n->kind == ROO__Q_TRACK)
            free(((roo__track_msg *)n)->parts);
        if (n->kind == ROO__Q_ROUTES) {
            roo__routes_msg *m = (roo__routes_msg *)n;
            free(m->part_dest);
            free(m->dests);
            free(m->part_old);
            free(m->drop);
        }
        free(n);
    }
    for (unsigned i = 0; sh->all_batches && i < sh->nbatches; i++)
        free_batch(sh->all_batches[i], nsinks);
    free(sh->all_batches);
    /* Inbound routes never processed (a stop that timed out) are ours to free now. */
    while (sh->route_in_head) {
        roo__route *r = (roo__route *)sh->route_in_head;
        sh->route_in_head = r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    while (sh->route_pool) {
        roo__route *r = sh->route_pool;
        sh->route_pool = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    while (sh->remote_pending) {
        roo__route *r = sh->remote_pending;
        sh->remote_pending = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    roo__shard_moves_finish(sh);
    free(sh->part_dest);
    free(sh->dests);
    free(sh->part_old);
    free(sh->drop_pending);
    free(sh->import_waits);
    free(sh->track);
    free(sh->tracked);
    while (sh->held_head) {
        roo__route *r = sh->held_head;
        sh->held_head = (roo__route *)r->node.next;
        roo__buf_finish(&r->data);
        free(r);
    }
    while (sh->imports_head) {
        roo__import_msg *im = (roo__import_msg *)sh->imports_head;
        sh->imports_head = im->node.next;
        roo__buf_finish(&im->records);
        roo__buf_finish(&im->marks);
        free(im);
    }
    for (unsigned d = 0; sh->route_out && d < sh->route_cap; d++) {
        if (sh->route_out[d]) {
            roo__buf_finish(&sh->route_out[d]->data);
            free(sh->route_out[d]);
        }
    }
    free(sh->route_out);
    roo__dedup_destroy(sh->dedup);
    roo__dur_finish(&sh->dur);
    roo__table_destroy(sh->table, finish_entry, sh->eng);
    free(sh->dirty);
    free(sh->source_counts);
    free((void *)sh->step_errors);
    free(sh->compute);
    for (size_t i = 0; sh->queues && i < sh->eng->app->nstages; i++)
        free(sh->queues[i].data);
    free(sh->queues);
    free(sh->pending);
    free(sh->out_hint);
    free((void *)sh->serialize_errors);
    roo__buf_finish(&sh->rbuf);
    roo__buf_finish(&sh->pack_buf);
    roo__loop_destroy(sh->loop);
    roo__queue_finish(&sh->inbox);
}
