/* loop.h: a small epoll event loop; one per thread, never touched from another thread.
 *
 * DESIGN
 * A loop owns an epoll set, a handful of timers and an optional "prepare" hook that runs
 * before every poll. The hook is where a thread finishes the work of an iteration, e.g. a
 * processing thread seals its batch there, so durability work happens once per wakeup
 * rather than once per event (the before-sleep phase of redis's ae loop). Other threads
 * reach a loop only through a roo__queue whose eventfd the loop watches.
 */
#ifndef ROO_LOOP_H
#define ROO_LOOP_H

#include <sys/epoll.h>

#include "common/common.h"

typedef struct roo__loop roo__loop;
typedef struct roo__io roo__io;
typedef struct roo__timer roo__timer;

typedef void (*roo__io_cb)(roo__loop *loop, roo__io *io, uint32_t events);
typedef void (*roo__timer_cb)(roo__loop *loop, roo__timer *t);
/* Return true if more work is ready, so the loop polls without sleeping. */
typedef bool (*roo__prepare_cb)(roo__loop *loop, void *data);

struct roo__io {
    int fd;
    uint32_t events; /* EPOLLIN, EPOLLOUT, ... as registered */
    bool active;
    roo__io_cb cb;
    void *data;
};

struct roo__timer {
    int64_t due_ns;
    bool active;
    roo__timer_cb cb;
    void *data;
};

int roo__loop_create(roo__loop **ret_loop);
void roo__loop_destroy(roo__loop *loop);

void roo__loop_set_prepare(roo__loop *loop, roo__prepare_cb cb, void *data);

/* Called with asleep=true just before the loop waits for events and asleep=false as soon
 * as the wait returns (e.g. to release a lock that must not be held while sleeping). */
typedef void (*roo__sleep_cb)(roo__loop *loop, bool asleep, void *data);
void roo__loop_set_sleep(roo__loop *loop, roo__sleep_cb cb, void *data);

/* Watch io->fd for `events` (level-triggered); io->cb and io->data must be set. */
int roo__io_start(roo__loop *loop, roo__io *io, int fd, uint32_t events);
int roo__io_set_events(roo__loop *loop, roo__io *io, uint32_t events);
/* After this returns the io's memory may be freed, even from inside a callback. */
void roo__io_stop(roo__loop *loop, roo__io *io);

void roo__timer_start(roo__loop *loop, roo__timer *t, int64_t delay_ms);
void roo__timer_stop(roo__loop *loop, roo__timer *t);

/*
 * A reconnect schedule, the one every client connection of roo uses (sinks, data links,
 * the control link): the first retry after min_ms, each next one twice as late, at most
 * max_ms; a success starts again from min_ms. `failures` counts the attempts since the
 * last success, so that only the first failure of a run is logged as a warning.
 */
typedef struct roo__backoff {
    roo__timer timer; /* fires the retry: cb and data as given to init */
    int next_ms;
    int min_ms, max_ms;
    unsigned failures;
} roo__backoff;

#define ROO__BACKOFF_MIN_MS 50
#define ROO__BACKOFF_MAX_MS 2000

void roo__backoff_init(roo__backoff *b, roo__timer_cb cb, void *data);
/* Retry after the current delay, then double the delay. */
void roo__backoff_schedule(roo__loop *loop, roo__backoff *b);
/* Retry at once (the peer is known to be back); later delays start from min_ms. */
void roo__backoff_now(roo__loop *loop, roo__backoff *b);
/* Connected: the next failure counts as the first, and waits min_ms. */
void roo__backoff_reset(roo__backoff *b);
/* Count a failed attempt; true if it is the first since the last success. */
bool roo__backoff_failed(roo__backoff *b);
void roo__backoff_stop(roo__loop *loop, roo__backoff *b);

/*
 * A listener that cannot accept (out of file descriptors, EMFILE/ENFILE) would be ready
 * again at once and spin: stop watching it for ms, then watch it again. t is the listener's
 * own timer; its cb and data are set here.
 */
void roo__listener_pause(roo__loop *loop, roo__io *io, roo__timer *t, int64_t ms);

/* Run one iteration: prepare hook, poll (at most max_wait_ms, -1 = until an event or timer),
 * dispatch. */
int roo__loop_run_once(roo__loop *loop, int max_wait_ms);

/* Run until roo__loop_stop() is called from a callback on this loop's thread. */
int roo__loop_run(roo__loop *loop);
void roo__loop_stop(roo__loop *loop);

#endif /* ROO_LOOP_H */
