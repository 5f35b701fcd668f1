/* queue.h: the only way roo's threads talk: a multi-producer queue plus a wakeup.
 *
 * DESIGN
 * Producers append nodes under the queue's lock; the consumer takes the whole list at once,
 * so each lock round trip moves a batch of messages, never one event. A push that finds the
 * queue empty wakes the consumer: by writing the queue's eventfd (consumers that run an
 * epoll loop register it) or by signalling its condition variable (consumers without a
 * loop, such as the committer, wait on it). Wakeups therefore coalesce: one per burst. The
 * lock is named `lock` and guards `head`, `tail` and `stopped` only.
 */
#ifndef ROO_QUEUE_H
#define ROO_QUEUE_H

#include <pthread.h>

#include "common/common.h"

/* Embed as the first member of anything that travels through a queue. */
typedef struct roo__qnode {
    struct roo__qnode *next;
    uint32_t kind;
} roo__qnode;

typedef struct roo__queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    roo__qnode *head;
    roo__qnode *tail;
    int efd; /* eventfd, or -1 for a condition-variable queue */
} roo__queue;

/* with_eventfd: true for a consumer with an epoll loop (register roo__queue_fd()). */
int roo__queue_init(roo__queue *q, bool with_eventfd);
void roo__queue_finish(roo__queue *q);
static inline int roo__queue_fd(const roo__queue *q)
{
    return q->efd;
}

void roo__queue_push(roo__queue *q, roo__qnode *n);

/* Take everything queued, oldest first; NULL if empty. Drains the eventfd. */
roo__qnode *roo__queue_take_all(roo__queue *q);

/* Nothing queued right now (any thread; a push may follow at once). */
bool roo__queue_is_empty(roo__queue *q);

/* Like take_all, but waits up to timeout_ms (-1: forever) for something to arrive. */
roo__qnode *roo__queue_wait_all(roo__queue *q, int timeout_ms);

#endif /* ROO_QUEUE_H */
