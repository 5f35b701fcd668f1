/* config.h: the worker's command line, parsed into one struct with defaults filled in. */
#ifndef ROO_CONFIG_H
#define ROO_CONFIG_H

#include <stdio.h>

#include "common/common.h"
#include "net/framer.h"
#include "net/net.h"

#define ROO__DEFAULT_IN "127.0.0.1:7010"
#define ROO__DEFAULT_OUT "127.0.0.1:7002"
#define ROO__DEFAULT_NAME "initializer"
#define ROO__DEFAULT_DIR_PREFIX "/var/tmp/roo/"
#define ROO__DEFAULT_THREADS 1
#define ROO__MAX_THREADS 64
#define ROO__DEFAULT_PARTITIONS 256
#define ROO__DEFAULT_MAX_FRAME ROO__FRAME_DEFAULT_MAX
#define ROO__DEFAULT_MAP_SIZE (1ull << 30)
#define ROO__DEFAULT_BATCH_BYTES (4u * 1024u * 1024u)
#define ROO__DEFAULT_BATCHES 8
#define ROO__DEFAULT_SINK_REPLAY (16u * 1024u * 1024u)
#define ROO__DEFAULT_SHUTDOWN_S 10
#define ROO__DEFAULT_LINK_BACKLOG (32u * 1024u * 1024u)
#define ROO__DEFAULT_MAX_CONNECTIONS 1024u
#define ROO__DEFAULT_STREAM_MAX_IDLE_S (7u * 86400u)
/* --metrics HOST:PORT tries PORT and the ports above it, this many in all (Flink's habit). */
#define ROO__METRICS_DEFAULT_PORTS 100u

typedef struct roo__config {
    char *program; /* basename of argv[0] */

    roo__addr *in;
    size_t nin;
    roo__addr *out;
    size_t nout;
    char *name;
    char *resilience_dir;
    char *config_file;    /* --config, or NULL */
    char *cluster_secret; /* --cluster-secret, or NULL */

    bool initializer;
    unsigned worker_count;
    bool has_control, has_data, has_my_control, has_my_data, has_external, has_metrics, has_join;
    roo__addr control, data, my_control, my_data, external, metrics, join;
    uint16_t metrics_last_port; /* --metrics HOST:PORT-LAST (or PORT + 99) */

    unsigned threads;
    uint32_t partitions;
    size_t max_frame;
    uint64_t map_size;
    size_t batch_bytes;
    unsigned batches;
    size_t sink_replay;
    size_t link_backlog;
    unsigned shutdown_timeout_s;
    unsigned max_connections;   /* per listener */
    unsigned stream_max_idle_s; /* 0: resumable streams are never forgotten */
    roo_log_level log_level;

    bool help;
    bool version;
    char warning[512]; /* something the worker should log at start ("" if nothing) */

    int app_argc; /* arguments after "--", with argv[0] first */
    char **app_argv;
} roo__config;

/*
 * Parse argv. On error returns ROO_EUSAGE and writes one line (without the program name)
 * into msg. The config then needs roo__config_finish either way.
 */
int roo__config_parse(int argc, char **argv, roo__config *ret_cfg, char *msg, size_t cap);
void roo__config_finish(roo__config *cfg);
void roo__config_usage(FILE *f, const char *program);

#endif /* ROO_CONFIG_H */
