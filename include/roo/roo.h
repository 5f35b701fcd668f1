/* roo.h: the public C API of roo, a distributed, stateful stream-processing engine. */
#ifndef ROO_ROO_H
#define ROO_ROO_H

/**
 * @mainpage roo
 *
 * An application is a set of pipelines. Each pipeline starts at a framed TCP source, runs
 * its messages through stateless and state computations, and ends at a TCP sink:
 *
 * @code
 *   static int setup(roo_app *app, int argc, char **argv)
 *   {
 *       roo_pipeline *p;
 *       int rc;
 *
 *       roo_app_set_name(app, "alphabet");
 *       rc = roo_app_add_pipeline(app, "votes",
 *               &(roo_source){ .framing = ROO_FRAMING_LENGTH, .header_len = 4,
 *                              .decode = decode_vote }, &p);
 *       if (rc == 0)
 *           rc = roo_pipeline_to_state(p, &(roo_state_step){ .name = "add votes",
 *                   .state = &letter_state, .key = letter_key, .compute = add_votes });
 *       if (rc == 0)
 *           rc = roo_pipeline_to_sink(p, &(roo_sink){ .encode = encode_total });
 *       return rc;
 *   }
 *
 *   int main(int argc, char **argv) { return roo_main(argc, argv, setup); }
 * @endcode
 *
 * Messages are flat byte strings that the application lays out as it likes (a packed
 * struct is fine: every worker of a cluster runs the same binary). The engine copies them
 * when it must keep them, so a message passed to roo_emit() is only borrowed. Messages the
 * engine hands to callbacks are aligned to 8 bytes, except the payload given to a decoder,
 * which points into a receive buffer and has no alignment.
 *
 * Threads: callbacks run on the engine's processing threads (`--threads`). A state
 * computation for a given key never runs on two threads at once, and runs for the key's
 * messages in the order they arrived on one source connection. Stateless callbacks, key
 * functions, decoders and encoders may run on several threads at once, so they must not
 * touch shared mutable data without their own locking. Callbacks must not block.
 *
 * Three state-type callbacks also run elsewhere, at the same time as the processing
 * threads, on copies of state objects that those threads never see:
 *
 *   callback     where else it runs
 *   format       the io thread, for `roo-ctl query` (on an object built by deserialize,
 *                or a copy of the saved bytes)
 *   deserialize  the io thread (query), and the main thread at start, while recovery
 *                rebuilds every key before any processing thread runs
 *   finish       the io thread (query, after format), and the main thread at the stop,
 *                after the processing threads have ended
 *
 * So these three must not touch data that processing threads change without locking.
 *
 * The builder functions (roo_app_*, roo_pipeline_*) are for setup only: call them from the
 * setup function that roo_main() runs (or before handing the application to the engine),
 * on one thread, never while the worker runs.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ROO_EXTERN __attribute__((visibility("default")))
#else
#define ROO_EXTERN
#endif

/** The roo release this header belongs to. */
#define ROO_VERSION_MAJOR 0
#define ROO_VERSION_MINOR 1
#define ROO_VERSION_PATCH 0
#define ROO_VERSION_STRING "0.1.0"

/** Largest message, in bytes, that roo_emit() accepts. */
#define ROO_MSG_MAX (16u * 1024u * 1024u)

/** Largest partition key, in bytes, that a key function may produce. */
#define ROO_KEY_MAX 480

/**
 * The error codes of roo, beyond negative errno values. All roo functions that can fail
 * return 0 or a negative value: either -errno or one of these. roo_strerror() names both.
 */
#define ROO_ERRNO_MAP(XX)                                                                          \
    XX(EFRAME, -30600, "malformed frame")                                                          \
    XX(EFRAMESIZE, -30601, "frame larger than the maximum frame size")                             \
    XX(EDECODE, -30602, "decoder rejected the payload")                                            \
    XX(EMSGSIZE, -30603, "message larger than ROO_MSG_MAX")                                        \
    XX(EKEYSIZE, -30604, "partition key longer than ROO_KEY_MAX")                                  \
    XX(ECALLBACK, -30605, "application callback failed")                                           \
    XX(ESETUP, -30606, "invalid application setup")                                                \
    XX(EUSAGE, -30607, "invalid command line")                                                     \
    XX(ESTATE, -30608, "state store error")                                                        \
    XX(EAPPMISMATCH, -30609, "resilience directory belongs to another application")                \
    XX(EFORMAT, -30610, "unsupported on-disk format version")                                      \
    XX(ELOCKED, -30611, "resilience directory is in use by another process")                       \
    XX(EWIRE, -30612, "malformed protocol message")                                                \
    XX(EVERSION, -30613, "incompatible protocol version")                                          \
    XX(ECLOSED, -30614, "connection closed")                                                       \
    XX(ESHUTDOWN, -30615, "shutting down")                                                         \
    XX(EAUTH, -30616, "the peer does not prove the cluster secret")                                \
    XX(ENONAME, -30617, "the host name does not resolve (Name or service not known)")              \
    XX(ENAMEAGAIN, -30618, "temporary failure in name resolution")

/** roo's own error codes (see ROO_ERRNO_MAP). */
typedef enum roo_error {
#define ROO__ERR_ENUM(name, value, text) ROO_##name = (value),
    ROO_ERRNO_MAP(ROO__ERR_ENUM)
#undef ROO__ERR_ENUM
} roo_error;

/**
 * @brief Describe an error code.
 * @param[in] err 0, a negative errno value or a ROO_E* code.
 * @return A static string; never NULL, also for unknown codes.
 */
ROO_EXTERN const char *roo_strerror(int err);

/** @return The version of the roo library the program runs with, e.g. "0.1.0". */
ROO_EXTERN const char *roo_version(void);

/** Opaque handles. */
typedef struct roo_app roo_app;           /**< An application: a set of pipelines. */
typedef struct roo_pipeline roo_pipeline; /**< One source-to-sink pipeline. */
typedef struct roo_emitter roo_emitter;   /**< Where a callback sends its outputs. */

/**
 * @brief Send one message to the next step of the pipeline.
 *
 * A decoder or computation calls this zero, one or many times per input: zero drops the
 * input, many fans it out. The engine runs the rest of the pipeline on @p msg or copies it
 * before this call returns, so @p msg is only borrowed.
 *
 * @param[in] out The emitter the engine passed to the callback; valid only during that call.
 * @param[in] msg The message bytes (may be NULL when @p len is 0).
 * @param[in] len Message length, at most ROO_MSG_MAX.
 * @return 0, or ROO_EMSGSIZE when @p len is too big (the message is not sent).
 */
ROO_EXTERN int roo_emit(roo_emitter *out, const void *msg, size_t len);

/**
 * @brief Send n messages of @p size bytes each, laid out one after the other from @p msgs:
 *        the same as roo_emit() on each in turn, in one call.
 *
 * For the `_many` callbacks below, whose outputs are often an array of one struct: the
 * engine then copies the array once instead of taking the messages one call at a time.
 *
 * @param[in] out The emitter the engine passed to the callback; valid only during that call.
 * @param[in] msgs The first message (may be NULL when @p n or @p size is 0); borrowed.
 * @param[in] size Bytes per message, at most ROO_MSG_MAX.
 * @param[in] n Number of messages.
 * @return 0, or ROO_EMSGSIZE when @p size is too big (nothing is sent).
 */
ROO_EXTERN int roo_emit_many(roo_emitter *out, const void *msgs, size_t size, size_t n);

/**
 * @brief Decode one framed payload into zero or more messages.
 *
 * @param[in] payload The frame's payload (the bytes after the length header, or one line
 *            without its newline); borrowed for the duration of the call; not aligned.
 * @param[in] len Payload length.
 * @param[in] out Emit the decoded message(s) here; emitting none drops the frame.
 * @param[in] ctx The source's `ctx`.
 * @return 0, or a negative code if the payload is malformed: the engine then logs one line
 *         and closes that connection (frames before it are kept), since a stream that
 *         produced one bad frame cannot be trusted further.
 */
typedef int (*roo_decode_fn)(const uint8_t *payload, size_t len, roo_emitter *out, void *ctx);

/** A frame's payload, as a many-frames decoder sees it (not aligned, borrowed). */
typedef struct roo_frame {
    const uint8_t *payload;
    size_t len;
} roo_frame;

/**
 * @brief Optional: decode several frames at once, exactly as the source's decode would one
 *        after the other (the engine calls one or the other, as it sees fit).
 *
 * The `_many` callbacks let an application pay a callback's cost once for many messages
 * and keep its own loop tight. They never replace the one-message callbacks, which stay
 * required: the engine still uses those for sampled, resent and routed messages, for the
 * test driver, and where a `_many` callback stopped.
 *
 * @param[in] frames,n The frames, in the order they arrived (n >= 1); borrowed.
 * @param[in] out Emit the decoded messages here, in frame order.
 * @param[in] ctx The source's `ctx`.
 * @return n when every frame decoded; a smaller i when frame i is malformed: its messages
 *         and those of later frames must not have been emitted, the frames before it are
 *         kept, and the engine logs one line and closes the connection (as when decode fails).
 */
typedef size_t (*roo_decode_many_fn)(const roo_frame *frames, size_t n, roo_emitter *out,
                                     void *ctx);

/** How a TCP source cuts its byte stream into frames. */
typedef enum roo_framing {
    /** A length header of `header_len` bytes, then that many payload bytes. */
    ROO_FRAMING_LENGTH = 0,
    /** Lines ending in '\n' (a trailing '\r' is removed); a last line without '\n' counts. */
    ROO_FRAMING_LINE = 1,
} roo_framing;

/** Byte order of a length header. */
typedef enum roo_byte_order {
    ROO_BIG_ENDIAN = 0, /**< network order, the default */
    ROO_LITTLE_ENDIAN = 1,
} roo_byte_order;

/**
 * A TCP source. Source number i of an application (in the order pipelines were added)
 * listens on the i-th address of the worker's `--in` list. Frames longer than the worker's
 * `--max-frame` close the connection that sent them.
 */
typedef struct roo_source {
    roo_framing framing; /**< ROO_FRAMING_LENGTH (default) or ROO_FRAMING_LINE */
    unsigned header_len; /**< length header size for ROO_FRAMING_LENGTH: 1, 2, 4 (0 means 4) or 8 */
    roo_byte_order byte_order;      /**< byte order of the length header */
    roo_decode_fn decode;           /**< required */
    void *ctx;                      /**< passed to decode; must outlive the application */
    roo_decode_many_fn decode_many; /**< optional: many frames at once (roo_decode_many_fn) */
} roo_source;

/**
 * @brief A stateless computation: one input message to zero, one or many outputs.
 * @param[in] msg,len The input message (borrowed for the call).
 * @param[in] out Emit outputs here.
 * @param[in] ctx The step's `ctx`.
 * @return 0, or a negative code: the engine logs it (rate-limited) and drops the input.
 */
typedef int (*roo_compute_fn)(const void *msg, size_t len, roo_emitter *out, void *ctx);

/** A stateless step. */
typedef struct roo_step {
    const char *name;       /**< shown in logs; copied */
    roo_compute_fn compute; /**< required */
    void *ctx;              /**< passed to compute; must outlive the application */
} roo_step;

/** Return value of a state computation: save the state update for recovery. */
#define ROO_SAVE 1
/** Return value of a state computation: the state did not change, or need not be saved. */
#define ROO_NO_SAVE 0

/**
 * A type of state. The engine keeps one state object per key, `size` bytes, 8-byte
 * aligned, created on the first message for its key. An object that only holds plain
 * values (no pointers) needs nothing but `name` and `size`: it starts zeroed and is saved
 * and restored as its raw bytes. An object that owns memory provides all the callbacks.
 */
typedef struct roo_state_type {
    const char *name; /**< names the state in the resilience directory; copied; required */
    size_t size;      /**< bytes per state object, 1..ROO_MSG_MAX; required */
    /**
     * Optional: initialize a fresh state object (already zeroed) for @p key.
     * @return 0 or a negative code (the message that needed the state is dropped).
     */
    int (*init)(void *state, const void *key, size_t key_len, void *ctx);
    /** Optional: release what the object owns; called when the worker stops, when the key's
     *  partition moves to another worker, and after a query formatted a copy. */
    void (*finish)(void *state, void *ctx);
    /**
     * Optional (with deserialize): write the object's persistent form to @p buf.
     * @return the number of bytes the form needs; if it is more than @p cap, nothing
     *         useful was written and the engine calls again with a bigger buffer; a
     *         negative code on failure (the update is not saved and an error is logged).
     */
    int (*serialize)(const void *state, uint8_t *buf, size_t cap, void *ctx);
    /**
     * Optional (with serialize): rebuild an object (zeroed, not initialized) from the
     * bytes @p serialize wrote; @p buf is borrowed.
     * @return 0 or a negative code (the worker refuses to start: its state is unreadable).
     */
    int (*deserialize)(void *state, const uint8_t *buf, size_t len, void *ctx);
    /**
     * Optional: write the object as one JSON value (a number, a string, an object...) for
     * `roo-ctl query`. Without it the query shows the saved bytes as a hex string.
     * @return the length written (without a terminator) or needed if more than @p cap, or a
     *         negative code.
     */
    int (*format)(const void *state, char *buf, size_t cap, void *ctx);
    void *ctx; /**< passed to the callbacks; must outlive the application */
} roo_state_type;

/**
 * @brief Extract the partition key of a message.
 * @param[in] msg,len The message.
 * @param[out] key_buf Write the key here, at most ROO_KEY_MAX bytes.
 * @param[in] ctx The step's `ctx`.
 * @return The key length (0..ROO_KEY_MAX), or a negative code to drop the message.
 */
typedef int (*roo_key_fn)(const void *msg, size_t len, uint8_t *key_buf, void *ctx);

/**
 * @brief A state computation: `(input, state) -> outputs + "save this update" flag`.
 * @param[in] msg,len The input message (borrowed for the call).
 * @param[in,out] state The key's state object; the computation may change it in place.
 * @param[in] out Emit outputs here (zero, one or many).
 * @param[in] ctx The step's `ctx`.
 * @return ROO_SAVE to have the update saved (it then becomes durable before any output of
 *         this message leaves the worker), ROO_NO_SAVE if it need not be (after a crash the
 *         key comes back as of its last saved update), or a negative code: the engine logs
 *         it and the state keeps whatever the computation did to it, unsaved.
 */
typedef int (*roo_state_compute_fn)(const void *msg, size_t len, void *state, roo_emitter *out,
                                    void *ctx);

/**
 * @brief Optional: the state computation over several messages at once, exactly as compute
 *        would run on each in turn.
 *
 * The engine has found each message's state object; the same key's messages share it and
 * come in the order they arrived, so a loop in index order sees each update of the one
 * before. (See roo_decode_many_fn for when the engine uses the `_many` callbacks.)
 *
 * @param[in] msgs,lens The messages (8-byte aligned) and their lengths; borrowed.
 * @param[in,out] states states[i] is message i's state object.
 * @param[in] n Number of messages (n >= 1).
 * @param[out] results results[i]: what compute would return for message i (ROO_SAVE,
 *             ROO_NO_SAVE or a negative code).
 * @param[in] out Emit the outputs here, in message order.
 * @param[in] ctx The step's `ctx`.
 */
typedef void (*roo_state_compute_many_fn)(const void *const *msgs, const size_t *lens,
                                          void *const *states, size_t n, int *results,
                                          roo_emitter *out, void *ctx);

/** A partitioned state step: messages are routed by key to the key's state object. */
typedef struct roo_state_step {
    const char *name;                       /**< shown in logs; copied */
    const roo_state_type *state;            /**< required; must outlive the application */
    roo_key_fn key;                         /**< required */
    roo_state_compute_fn compute;           /**< required */
    void *ctx;                              /**< passed to key, compute and compute_many */
    roo_state_compute_many_fn compute_many; /**< optional: many messages at once */
} roo_state_step;

/**
 * @brief Encode a message into the exact bytes to write to the sink (add framing here).
 * @param[in] msg,len The message.
 * @param[out] buf Where to write.
 * @param[in] cap Room in @p buf.
 * @param[in] ctx The sink's `ctx`.
 * @return The number of bytes the encoding needs; if more than @p cap, the engine calls
 *         again with a bigger buffer. A negative code drops the message with a log line.
 */
typedef int (*roo_encode_fn)(const void *msg, size_t len, uint8_t *buf, size_t cap, void *ctx);

/**
 * @brief Optional: encode several messages one after the other into @p buf, exactly as
 *        encode would on each in turn.
 *
 * @param[in] msgs,lens,n The messages (n >= 1); borrowed.
 * @param[out] buf Where to write.
 * @param[in] cap Room in @p buf.
 * @param[out] ret_len The bytes written for the messages encoded.
 * @param[in] ctx The sink's `ctx`.
 * @return How many messages, from the first, are encoded whole in buf[0, *ret_len). When it
 *         is fewer than n (no room for the next, or it cannot be encoded), the engine hands
 *         that message to encode, which makes room or reports the error, and calls again
 *         with the rest.
 */
typedef size_t (*roo_encode_many_fn)(const void *const *msgs, const size_t *lens, size_t n,
                                     uint8_t *buf, size_t cap, size_t *ret_len, void *ctx);

/**
 * A TCP sink. Sink number i of an application (in the order sinks were added, by
 * roo_pipeline_to_sink and roo_pipeline_to_sinks) connects to the i-th address of the
 * worker's `--out` list.
 */
typedef struct roo_sink {
    roo_encode_fn encode; /**< required */
    void *ctx;            /**< passed to encode and encode_many; must outlive the application */
    roo_encode_many_fn encode_many; /**< optional: many messages at once */
} roo_sink;

/**
 * @brief Create an empty application. roo_main() does this for you; tests and embedders
 *        may call it directly.
 * @param[out] ret_app The new application, to be released with roo_app_destroy().
 * @return 0 or -ENOMEM.
 */
ROO_EXTERN int roo_app_create(roo_app **ret_app);

/** @brief Release an application and its pipelines. Accepts NULL. */
ROO_EXTERN void roo_app_destroy(roo_app *app);

/**
 * @brief Name the application. Workers of one cluster, and a worker and its resilience
 *        directory, must agree on the name.
 * @param[in] name 1..64 characters of [A-Za-z0-9_.-]; copied.
 * @return 0, -EINVAL or -ENOMEM.
 */
ROO_EXTERN int roo_app_set_name(roo_app *app, const char *name);

/**
 * @brief Start a pipeline at a TCP source. Pipelines may be built one after the other or
 *        interleaved; each must end in a sink before the worker runs.
 * @param[in] app The application.
 * @param[in] name Pipeline name for logs; copied.
 * @param[in] source The source; copied (the callbacks and ctx it points to are not).
 * @param[out] ret_pipeline The pipeline, owned by @p app.
 * @return 0, -EINVAL (bad arguments: no decode callback, header_len not 1, 2, 4 or 8), or
 *         -ENOMEM.
 */
ROO_EXTERN int roo_app_add_pipeline(roo_app *app, const char *name, const roo_source *source,
                                    roo_pipeline **ret_pipeline);

/**
 * @brief Append a stateless step.
 * @return 0, -EINVAL, ROO_ESETUP (the pipeline already ends in a sink) or -ENOMEM.
 */
ROO_EXTERN int roo_pipeline_to(roo_pipeline *p, const roo_step *step);

/**
 * @brief Append a partitioned state step. Steps that share a roo_state_type name share
 *        the state objects: the same key in both reaches the same object.
 * @return 0, -EINVAL, ROO_ESETUP (already ends in a sink, or two different types with one
 *         name) or -ENOMEM.
 */
ROO_EXTERN int roo_pipeline_to_state(roo_pipeline *p, const roo_state_step *step);

/**
 * @brief End the pipeline at a TCP sink. Nothing can be appended afterwards.
 * @return 0, -EINVAL, ROO_ESETUP (already ended) or -ENOMEM.
 */
ROO_EXTERN int roo_pipeline_to_sink(roo_pipeline *p, const roo_sink *sink);

/**
 * @brief End the pipeline at several TCP sinks: every output goes to each of them, encoded
 *        by each sink's own encode callback (fan-out). Each sink takes the next `--out`
 *        address. Nothing can be appended afterwards.
 * @param[in] sinks,n The sinks (1..64); copied (the callbacks and ctx are not).
 * @return 0, -EINVAL, ROO_ESETUP (already ended) or -ENOMEM.
 */
ROO_EXTERN int roo_pipeline_to_sinks(roo_pipeline *p, const roo_sink *sinks, size_t n);

/**
 * @brief Build the application.
 * @param[in] app The application to fill, created by roo_main() and already named after the
 *            program; the setup may rename it.
 * @param[in] argc,argv The arguments after a `--` on the worker's command line (argv[0] is
 *            the program), for the application's own options.
 * @return 0, or a negative code: the worker prints roo_strerror() of it and exits 1.
 */
typedef int (*roo_setup_fn)(roo_app *app, int argc, char **argv);

/**
 * @brief Run a worker: parse the command line, build the application, recover state,
 *        serve until SIGTERM/SIGINT (then commit and exit), and return the exit status.
 *
 * Call it from main(): `return roo_main(argc, argv, setup);`. Run the program with
 * `--help` for the flags.
 *
 * @return 0 after a clean stop, 1 on a runtime error, 2 on a command-line error.
 */
ROO_EXTERN int roo_main(int argc, char **argv, roo_setup_fn setup);

/** Log levels for roo_log(). */
typedef enum roo_log_level {
    ROO_LOG_ERROR = 0,
    ROO_LOG_WARN = 1,
    ROO_LOG_INFO = 2,
    ROO_LOG_DEBUG = 3,
} roo_log_level;

/**
 * @brief Write one line to the worker's log (stderr), with time, worker name and level.
 *        Lines above the worker's `--log-level` are skipped. Safe from any thread.
 */
ROO_EXTERN void roo_log(roo_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif /* ROO_ROO_H */
