/* loop.c: epoll-based event loop with a linear timer list (loops keep only a few timers). */
#include "loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_EVENTS 64

struct roo__loop {
    int epfd;
    bool stop;
    roo__prepare_cb prepare;
    void *prepare_data;
    roo__sleep_cb sleep;
    void *sleep_data;
    roo__timer **timers; /* active timers, unordered: loops keep a few dozen at most */
    unsigned ntimers, timers_cap;
    /* Watchers stopped while this round's events are dispatched: their memory may be gone,
     * so later events for them are skipped by pointer comparison, never dereferenced. */
    bool dispatching;
    bool skip_rest;
    unsigned ndead;
    const roo__io *dead[MAX_EVENTS];
};

int roo__loop_create(roo__loop **ret_loop)
{
    roo__loop *loop = roo__xcalloc(1, sizeof(*loop));

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int err = -errno;
        free(loop);
        return err;
    }
    *ret_loop = loop;
    return 0;
}

void roo__loop_destroy(roo__loop *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    free(loop->timers);
    free(loop);
}

void roo__loop_set_prepare(roo__loop *loop, roo__prepare_cb cb, void *data)
{
    loop->prepare = cb;
    loop->prepare_data = data;
}

void roo__loop_set_sleep(roo__loop *loop, roo__sleep_cb cb, void *data)
{
    loop->sleep = cb;
    loop->sleep_data = data;
}

int roo__io_start(roo__loop *loop, roo__io *io, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = io };

    io->fd = fd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    io->events = events;
    io->active = true;
    return 0;
}

int roo__io_set_events(roo__loop *loop, roo__io *io, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = io };

    if (!io->active || io->events == events)
        return 0;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    io->events = events;
    return 0;
}

void roo__io_stop(roo__loop *loop, roo__io *io)
{
    if (!io->active)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->active = false;
    if (loop->dispatching) {
        if (loop->ndead < MAX_EVENTS)
            loop->dead[loop->ndead++] = io;
        else
            loop->skip_rest = true; /* level-triggered: the rest report again next round */
    }
}

static bool is_dead(const roo__loop *loop, const roo__io *io)
{
    for (unsigned i = 0; i < loop->ndead; i++)
        if (loop->dead[i] == io)
            return true;
    return false;
}

void roo__timer_start(roo__loop *loop, roo__timer *t, int64_t delay_ms)
{
    t->due_ns = roo__now_ns() + delay_ms * 1000000;
    if (t->active)
        return;
    if (loop->ntimers == loop->timers_cap) {
        loop->timers_cap = loop->timers_cap ? loop->timers_cap * 2 : 16;
        loop->timers = roo__xrealloc(loop->timers, loop->timers_cap * sizeof(*loop->timers));
    }
    loop->timers[loop->ntimers++] = t;
    t->active = true;
}

void roo__timer_stop(roo__loop *loop, roo__timer *t)
{
    if (!t->active)
        return;
    for (unsigned i = 0; i < loop->ntimers; i++) {
        if (loop->timers[i] == t) {
            loop->timers[i] = loop->timers[--loop->ntimers];
            break;
        }
    }
    t->active = false;
}

static int next_timeout_ms(roo__loop *loop, int max_wait_ms)
{
    int64_t now, due = INT64_MAX;
    int ms;

    if (loop->ntimers == 0)
        return max_wait_ms;
    for (unsigned i = 0; i < loop->ntimers; i++)
        due = ROO__MIN(due, loop->timers[i]->due_ns);
    now = roo__now_ns();
    if (due <= now)
        return 0;
    /* Round up so a timer never fires a hair early and makes the loop spin. */
    ms = (int)ROO__MIN((due - now + 999999) / 1000000, (int64_t)24 * 3600 * 1000);
    if (max_wait_ms >= 0 && max_wait_ms < ms)
        return max_wait_ms;
    return ms;
}

static void run_timers(roo__loop *loop)
{
    int64_t now = roo__now_ns();

    /* A callback may start or stop timers, so rescan from the start after each one. */
    for (bool fired = true; fired;) {
        fired = false;
        for (unsigned i = 0; i < loop->ntimers; i++) {
            roo__timer *t = loop->timers[i];
            if (t->due_ns <= now) {
                roo__timer_stop(loop, t);
                t->cb(loop, t);
                fired = true;
                break;
            }
        }
    }
}

void roo__backoff_init(roo__backoff *b, roo__timer_cb cb, void *data)
{
    memset(b, 0, sizeof(*b));
    b->timer.cb = cb;
    b->timer.data = data;
    b->min_ms = b->next_ms = ROO__BACKOFF_MIN_MS;
    b->max_ms = ROO__BACKOFF_MAX_MS;
}

void roo__backoff_schedule(roo__loop *loop, roo__backoff *b)
{
    roo__timer_start(loop, &b->timer, b->next_ms);
    b->next_ms = ROO__MIN(b->next_ms * 2, b->max_ms);
}

void roo__backoff_now(roo__loop *loop, roo__backoff *b)
{
    b->next_ms = b->min_ms;
    roo__timer_start(loop, &b->timer, 0);
}

void roo__backoff_reset(roo__backoff *b)
{
    b->next_ms = b->min_ms;
    b->failures = 0;
}

bool roo__backoff_failed(roo__backoff *b)
{
    return b->failures++ == 0;
}

void roo__backoff_stop(roo__loop *loop, roo__backoff *b)
{
    roo__timer_stop(loop, &b->timer);
}

static void listener_resume(roo__loop *loop, roo__timer *t)
{
    roo__io *io = t->data;

    if (io->active)
        roo__io_set_events(loop, io, EPOLLIN);
}

void roo__listener_pause(roo__loop *loop, roo__io *io, roo__timer *t, int64_t ms)
{
    roo__io_set_events(loop, io, 0);
    t->cb = listener_resume;
    t->data = io;
    roo__timer_start(loop, t, ms);
}

int roo__loop_run_once(roo__loop *loop, int max_wait_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int timeout, n;

    if (loop->prepare && loop->prepare(loop, loop->prepare_data))
        max_wait_ms = 0;
    timeout = next_timeout_ms(loop, max_wait_ms);
    if (loop->sleep) {
        int err;
        loop->sleep(loop, true, loop->sleep_data);
        n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout);
        err = errno; /* the hook may change it */
        loop->sleep(loop, false, loop->sleep_data);
        errno = err;
    } else {
        n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout);
    }
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return -errno;
    }
    loop->dispatching = true;
    loop->ndead = 0;
    loop->skip_rest = false;
    for (int i = 0; i < n && !loop->skip_rest; i++) {
        roo__io *io = evs[i].data.ptr;
        /* An earlier callback in this round may have stopped (and freed) this watcher. */
        if (is_dead(loop, io) || !io->active)
            continue;
        io->cb(loop, io, evs[i].events);
    }
    loop->dispatching = false;
    run_timers(loop);
    return 0;
}

int roo__loop_run(roo__loop *loop)
{
    int rc = 0;

    loop->stop = false;
    while (!loop->stop && rc == 0)
        rc = roo__loop_run_once(loop, -1);
    return rc;
}

void roo__loop_stop(roo__loop *loop)
{
    loop->stop = true;
}
