/* roo_test.h: an in-process test driver for roo applications: no sockets, threads or disk. */
#ifndef ROO_ROO_TEST_H
#define ROO_ROO_TEST_H

/**
 * @file
 * Unit-test a pipeline the way Kafka Streams users test a topology: build the application
 * from the same setup function the worker runs, push a source's bytes, commit, read what
 * the sinks would receive and the state of any key, and simulate a crash and restart.
 *
 * @code
 *   roo_test *t;
 *   const uint8_t *out;
 *   size_t len;
 *
 *   roo_test_create(setup, 0, NULL, &t);
 *   roo_test_push(t, 0, "\0\0\0\5a\0\0\0\3", 9);     // one Alphabet frame: 'a', 3 votes
 *   roo_test_commit(t);                              // saved updates durable, output out
 *   roo_test_take_output(t, 0, &out, &len);           // "\0\0\0\x09a" + u64 BE 3
 *   roo_test_restart(t);                              // as after kill -9: committed state only
 *   roo_test_destroy(t);
 * @endcode
 *
 * The driver follows the worker's rules exactly where a test can see them:
 *
 *   worker                                         driver
 *   a connection's bytes cut into frames           roo_test_push(): any split; partial
 *     by the source's framing                        frames wait for the rest
 *   a bad frame or a decoder error closes the      roo_test_push() returns the error; the
 *     connection; earlier frames are kept            unread rest is dropped, the next push
 *                                                    starts a new connection
 *   output leaves only after the state it          roo_test_commit() releases the output
 *     depends on is committed                        produced since the last commit
 *   a state computation's ROO_SAVE update is       roo_test_commit() stores each saved key
 *     committed with its batch                       through serialize (or its raw bytes)
 *   kill -9 and restart: the committed state       roo_test_restart(): live objects are
 *     comes back through deserialize; the rest       finished and rebuilt from the committed
 *     (unsaved updates, unwritten output) is         bytes; uncommitted updates and output
 *     gone                                           are lost
 *
 * An application's `_many` callbacks (roo.h) replace their one-message partners in the
 * driver: decode_many gets every whole frame of one roo_test_push() call, compute_many and
 * encode_many one message at a time (encode takes over where encode_many stops). To test
 * the one-message callbacks too, build the application without its `_many` callbacks in a
 * second driver (Alphabet's setup takes `--one-at-a-time` for that) and compare.
 *
 * Everything runs on the calling thread, inside these calls. Callbacks' errors are counted
 * (roo_test_errors()) and logged to stderr as the worker logs them. A driver belongs to one
 * thread at a time; separate drivers are independent.
 */

#include <stddef.h>
#include <stdint.h>

#include "roo/roo.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An application under test (opaque). */
typedef struct roo_test roo_test;

/**
 * @brief Build an application with @p setup, as roo_main() would, ready for input.
 * @param[in] setup The application's setup function.
 * @param[in] argc,argv Passed to @p setup (the application's own options; may be 0, NULL).
 * @param[out] ret_test The driver, to be released with roo_test_destroy().
 * @return 0, -EINVAL, or the code @p setup returned, or ROO_ESETUP (the application is not
 *         complete: no name, no pipeline, a pipeline without a sink; the reason is logged).
 */
ROO_EXTERN int roo_test_create(roo_setup_fn setup, int argc, char **argv, roo_test **ret_test);

/** @brief Release the driver and the application; finishes every live state object. Accepts
 *  NULL. */
ROO_EXTERN void roo_test_destroy(roo_test *t);

/**
 * @brief Feed bytes to source @p source (the pipelines' order), as its connection delivers
 *        them: every whole frame runs through the pipeline before this returns.
 * @return 0; ROO_EFRAMESIZE (a frame over 64 KiB, the worker's default --max-frame) or the
 *         decoder's negative code: the connection is closed, frames before the bad one are
 *         kept; -EINVAL for a source that does not exist.
 */
ROO_EXTERN int roo_test_push(roo_test *t, unsigned source, const void *bytes, size_t len);

/**
 * @brief Feed one frame: @p payload with the source's framing added (its length header,
 *        or a newline for line framing).
 * @return As roo_test_push(); -EINVAL also for a payload its header cannot express.
 */
ROO_EXTERN int roo_test_push_frame(roo_test *t, unsigned source, const void *payload, size_t len);

/**
 * @brief Commit: every update saved since the last commit becomes durable and the output
 *        produced since then is released to the sinks.
 * @return 0, or the first negative code a serialize callback returned (that key's update is
 *         not stored, as in the worker; the rest is committed).
 */
ROO_EXTERN int roo_test_commit(roo_test *t);

/**
 * @brief Take the bytes released to sink @p sink (numbered in the order sinks were added) and not
 *        taken yet: exactly what the worker would have written to that connection.
 * @param[out] ret_bytes,ret_len The bytes; valid until the next call on this driver.
 * @return 0, or -EINVAL for a sink that does not exist.
 */
ROO_EXTERN int roo_test_take_output(roo_test *t, unsigned sink, const uint8_t **ret_bytes,
                                    size_t *ret_len);

/**
 * @brief The live state object of @p key in the state type named @p state, as the next
 *        state computation would see it.
 * @return The object (valid until the next call that runs the pipeline or restarts), or
 *         NULL if the key has none or no state type has that name.
 */
ROO_EXTERN const void *roo_test_state(roo_test *t, const char *state, const void *key,
                                      size_t key_len);

/**
 * @brief The state object of @p key formatted as `roo-ctl query` shows it (the type's
 *        format callback, else the saved bytes as a hex string).
 * @param[out] buf,cap Where to write the text, NUL-terminated.
 * @return The length written, -ENOENT (no such key or state type), -ENOSPC (@p cap too
 *         small), or the format callback's error.
 */
ROO_EXTERN int roo_test_state_json(roo_test *t, const char *state, const void *key, size_t key_len,
                                   char *buf, size_t cap);

/** @return How many keys the state type named @p state holds (live objects). */
ROO_EXTERN size_t roo_test_state_count(roo_test *t, const char *state);

/**
 * @brief Crash and restart: what was not committed is lost, live state objects are finished
 *        and rebuilt from the committed bytes (through deserialize, as the worker recovers).
 * @return 0, or the first negative code deserialize returned (the worker would refuse to
 *         start; the key is left out).
 */
ROO_EXTERN int roo_test_restart(roo_test *t);

/** @return Callback errors so far: decoders, computations, key functions, encoders, init,
 *  serialize. */
ROO_EXTERN uint64_t roo_test_errors(const roo_test *t);

#ifdef __cplusplus
}
#endif

#endif /* ROO_ROO_TEST_H */
