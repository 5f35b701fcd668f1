/* host.c: the engine's side of host.h: message ops (packing a host's live message when it
 * is routed to another thread or worker, unpacking it on arrival) and the thread hooks. */
#include <errno.h>

#include "engine/shard-int.h"

int roo__pipeline_set_msg_ops(roo_pipeline *p, const roo__msg_ops *ops)
{
    if (!p || !ops || !ops->pack || !ops->unpack)
        return -EINVAL;
    p->msg_ops = *ops;
    for (size_t i = 0; i < p->app->nstages; i++)
        if (p->app->stages[i].pipeline == p->index)
            p->app->stages[i].wire = &p->msg_ops;
    return 0;
}

int roo__app_set_thread_hooks(roo_app *app, const roo__thread_hooks *hooks)
{
    if (!app || !hooks || !hooks->enter || !hooks->leave)
        return -EINVAL;
    app->thread_hooks = *hooks;
    return 0;
}

/* Out of line: C applications never get here, and for a host the packing costs far more
 * than the call. The handle means nothing on another thread or worker: its bytes travel. */
void roo__shard_route_packed(roo__shard *sh, const roo__stage *st, unsigned dest, uint32_t si,
                             const void *msg, size_t len, const roo__msg_id *id, uint16_t part)
{
    const roo__msg_ops *w = st->wire;
    roo__buf *b = &sh->pack_buf;
    size_t cap;
    int n;

    b->len = 0;
    roo__buf_reserve(b, ROO__PACKED_PREFIX + 256);
    cap = b->cap - ROO__PACKED_PREFIX;
    n = w->pack(msg, len, b->data + ROO__PACKED_PREFIX, cap, w->ctx);
    if (n > 0 && (size_t)n > cap) {
        roo__buf_reserve(b, ROO__PACKED_PREFIX + (size_t)n);
        cap = b->cap - ROO__PACKED_PREFIX;
        n = w->pack(msg, len, b->data + ROO__PACKED_PREFIX, cap, w->ctx);
        if (n > 0 && (size_t)n > cap)
            n = ROO_ECALLBACK; /* asked for more room twice */
    }
    if (n >= 0 && (size_t)n > ROO_MSG_MAX - ROO__PACKED_PREFIX)
        n = ROO_EMSGSIZE;
    if (n < 0) {
        roo__shard_callback_error(sh, st, "packing a message for another thread or worker", n);
        return;
    }
    memset(b->data, 0, ROO__PACKED_PREFIX);
    roo__store_le16(b->data, part);
    roo__shard_route(sh, dest, si, b->data, ROO__PACKED_PREFIX + (size_t)n, id);
}

void roo__shard_unpack_run(roo__shard *sh, const roo__stage *st, uint32_t si, const void *msg,
                           size_t len)
{
    roo_emitter em = roo__shard_emitter(sh, si);
    int rc;

    /* The bytes came from another thread or worker: the prefix must be there. */
    if (len < ROO__PACKED_PREFIX)
        rc = ROO_EMSGSIZE;
    else
        rc = st->wire->unpack((const uint8_t *)msg + ROO__PACKED_PREFIX, len - ROO__PACKED_PREFIX,
                              &em, st->wire->ctx);
    if (rc < 0)
        roo__shard_callback_error(sh, st, "unpacking a message from another thread or worker", rc);
}

void roo__shard_host_sleep(roo__loop *loop, bool asleep, void *data)
{
    const roo__thread_hooks *h = &((roo__shard *)data)->eng->app->thread_hooks;

    (void)loop;
    if (asleep)
        h->leave(h->ctx);
    else
        h->enter(h->ctx);
}
