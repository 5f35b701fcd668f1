/* queue.c: multi-producer queue with coalesced eventfd or condition-variable wakeups. */
#include "common/queue.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int roo__queue_init(roo__queue *q, bool with_eventfd)
{
    pthread_condattr_t ca;

    memset(q, 0, sizeof(*q));
    q->efd = -1;
    if (with_eventfd) {
        q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (q->efd < 0)
            return -errno;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void roo__queue_finish(roo__queue *q)
{
    if (q->efd >= 0)
        close(q->efd);
    q->efd = -1;
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

void roo__queue_push(roo__queue *q, roo__qnode *n)
{
    bool was_empty;

    n->next = NULL;
    pthread_mutex_lock(&q->lock);
    was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    if (was_empty && q->efd < 0)
        pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (was_empty && q->efd >= 0) {
        uint64_t one = 1;
        /* EAGAIN means the counter is already non-zero: the consumer will wake anyway. */
        ssize_t r = write(q->efd, &one, sizeof(one));
        (void)r;
    }
}

bool roo__queue_is_empty(roo__queue *q)
{
    bool empty;

    pthread_mutex_lock(&q->lock);
    empty = q->head == NULL;
    pthread_mutex_unlock(&q->lock);
    return empty;
}

roo__qnode *roo__queue_take_all(roo__queue *q)
{
    roo__qnode *head;

    if (q->efd >= 0) {
        uint64_t v;
        ssize_t r = read(q->efd, &v, sizeof(v));
        (void)r;
    }
    pthread_mutex_lock(&q->lock);
    head = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return head;
}

roo__qnode *roo__queue_wait_all(roo__queue *q, int timeout_ms)
{
    roo__qnode *head;
    struct timespec deadline =
        roo__timespec_after(CLOCK_MONOTONIC, timeout_ms >= 0 ? timeout_ms : 0);

    pthread_mutex_lock(&q->lock);
    while (!q->head) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&q->cond, &q->lock);
        } else if (pthread_cond_timedwait(&q->cond, &q->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    head = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return head;
}
