/* stream_ask.c: a resumable hello that claims more of its stream than this worker read is
 * checked with the stream's keeper, another worker (see engine/streams.h).
 *
 * The asking thread's question (roo__stream_ask) comes through the io hook; it goes out as
 * a StreamAsk on our data link to the keeper, written straight to the connection (not to
 * the backlog: a question lost with its connection is answered "cannot be asked" and the
 * client tries again). The keeper answers on the same connection from its streams registry.
 * A question the keeper does not answer within ASK_TIMEOUT_NS, or that cannot be sent (no
 * link, the keeper left), is answered "not reached" at once. Runs on the io thread.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster-int.h"

#define ASK_TIMEOUT_NS (3 * 1000000000LL)
#define ASKS_MAX 1024 /* questions in flight; more are answered "not reached" */

static void answer(cluster *cl, roo__stream_ask *a, bool reached, uint64_t position)
{
    a->reached = reached;
    a->position = position;
    roo__engine_stream_answer(cl->e, a);
}

void roo__cl_stream_ask(cluster *cl, roo__stream_ask *a)
{
    peer *p = a->worker < cl->npeers ? &cl->peers[a->worker] : NULL;

    snprintf(a->keeper, sizeof(a->keeper), "%s", p ? p->info.name : "?");
    if (!p || p->left || !p->data_open || cl->nasks >= ASKS_MAX) {
        answer(cl, a, false, 0);
        return;
    }
    a->ask_id = ++cl->next_ask;
    a->deadline_ns = roo__now_ns() + ASK_TIMEOUT_NS;
    if (roo__wire_stream_ask_encode(a->ask_id, a->stream, roo__fconn_outbuf(&p->data)) < 0) {
        answer(cl, a, false, 0);
        return;
    }
    roo__fconn_flush(&p->data);
    if (cl->nasks == cl->asks_cap) {
        cl->asks_cap = cl->asks_cap ? cl->asks_cap * 2 : 8;
        cl->asks = roo__xrealloc(cl->asks, cl->asks_cap * sizeof(*cl->asks));
    }
    cl->asks[cl->nasks++] = a;
}

/* The keeper's side: a peer (its DataHello accepted) asks about a stream. */
void roo__cl_stream_asked(cluster *cl, aconn *c, const uint8_t *payload, size_t len)
{
    roo__data_kind kind;
    uint64_t id, stream;

    if (roo__wire_stream_decode(payload, len, &kind, &id, &stream) < 0 ||
        kind != ROO__DATA_STREAM_ASK) {
        roo__log_warn("data connection from %s: a malformed stream question; closing it",
                      c->fc.peer);
        roo__cl_conn_kill(c);
        return;
    }
    roo__wire_stream_answer_encode(id, roo__streams_position(cl->e->streams, stream | 1),
                                   roo__fconn_outbuf(&c->fc));
    roo__fconn_flush(&c->fc);
}

/* The asker's side: the answer came back on our link to p. */
void roo__cl_stream_answered(cluster *cl, peer *p, const uint8_t *payload, size_t len)
{
    roo__data_kind kind;
    uint64_t id, position;

    if (roo__wire_stream_decode(payload, len, &kind, &id, &position) < 0 ||
        kind != ROO__DATA_STREAM_ANSWER) {
        roo__log_warn("data link to %s: a malformed stream answer; ignored", p->info.name);
        return;
    }
    for (size_t i = 0; i < cl->nasks; i++) {
        roo__stream_ask *a = cl->asks[i];
        if (a->ask_id != id || a->worker != p->index)
            continue;
        cl->asks[i] = cl->asks[--cl->nasks];
        answer(cl, a, true, position);
        return;
    }
    /* Too late (timed out): the client was told to try again. */
}

void roo__cl_stream_asks_tick(cluster *cl)
{
    int64_t now;

    if (!cl->nasks)
        return;
    now = roo__now_ns();
    for (size_t i = 0; i < cl->nasks;) {
        roo__stream_ask *a = cl->asks[i];
        if (now < a->deadline_ns) {
            i++;
            continue;
        }
        cl->asks[i] = cl->asks[--cl->nasks];
        answer(cl, a, false, 0);
    }
}

void roo__cl_stream_asks_finish(cluster *cl)
{
    for (size_t i = 0; i < cl->nasks; i++)
        free(cl->asks[i]);
    free(cl->asks);
    cl->asks = NULL;
    cl->nasks = cl->asks_cap = 0;
}
