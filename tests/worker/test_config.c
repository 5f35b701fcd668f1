/* test_config.c: the worker command line parses every flag in each spelling, fills defaults, and rejects bad input with ROO_EUSAGE and a message naming the option. */
#include <stdarg.h>
#include <stdlib.h>

#include "roo_test.h"
#include "worker/config.h"

typedef struct cmdline {
    char *argv[64];
    int argc;
    roo__config cfg;
    char msg[512];
    int rc;
} cmdline;

/* Parse "prog" followed by the NULL-terminated arguments; c keeps argv alive. */
static int parse(cmdline *c, ...)
{
    va_list ap;
    char *a;

    memset(c, 0, sizeof(*c));
    c->argv[c->argc++] = "/usr/bin/prog";
    va_start(ap, c);
    while ((a = va_arg(ap, char *)) != NULL) {
        ck_assert_int_lt(c->argc, (int)ROO__ARRAY_SIZE(c->argv) - 1);
        c->argv[c->argc++] = a;
    }
    va_end(ap);
    c->argv[c->argc] = NULL;
    c->rc = roo__config_parse(c->argc, c->argv, &c->cfg, c->msg, sizeof(c->msg));
    return c->rc;
}

static void done(cmdline *c)
{
    roo__config_finish(&c->cfg);
}

/* The parse failed with ROO_EUSAGE and its message names `needle`. */
static void assert_usage_error(cmdline *c, const char *needle)
{
    ck_assert_msg(c->rc == ROO_EUSAGE, "rc %d (msg '%s'), want ROO_EUSAGE", c->rc, c->msg);
    ck_assert_msg(strstr(c->msg, needle) != NULL, "message '%s' does not name '%s'", c->msg,
                  needle);
    done(c);
}

static void assert_addr(const roo__addr *a, const char *host, const char *port)
{
    ck_assert_str_eq(a->host, host);
    ck_assert_str_eq(a->port, port);
}

START_TEST(defaults_are_filled_in)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, NULL), 0);
    ck_assert_str_eq(c.msg, "");
    ck_assert_str_eq(c.cfg.program, "prog");
    ck_assert_uint_eq(c.cfg.nin, 1);
    assert_addr(&c.cfg.in[0], "127.0.0.1", "7010");
    ck_assert_uint_eq(c.cfg.nout, 1);
    assert_addr(&c.cfg.out[0], "127.0.0.1", "7002");
    ck_assert_str_eq(c.cfg.name, "initializer");
    ck_assert_str_eq(c.cfg.resilience_dir, "/var/tmp/roo/initializer");
    ck_assert_uint_eq(c.cfg.threads, 1);
    ck_assert_uint_eq(c.cfg.partitions, 256);
    ck_assert_uint_eq(c.cfg.max_frame, 65536);
    ck_assert_uint_eq(c.cfg.map_size, 1ull << 30);
    ck_assert_uint_eq(c.cfg.batch_bytes, 4u << 20);
    ck_assert_uint_eq(c.cfg.batches, 8);
    ck_assert_uint_eq(c.cfg.sink_replay, 16u << 20);
    ck_assert_uint_eq(c.cfg.shutdown_timeout_s, 10);
    ck_assert_uint_eq(c.cfg.worker_count, 1);
    ck_assert_int_eq(c.cfg.log_level, ROO_LOG_INFO);
    ck_assert(!c.cfg.initializer);
    ck_assert(!c.cfg.has_control && !c.cfg.has_data && !c.cfg.has_my_control &&
              !c.cfg.has_my_data && !c.cfg.has_external && !c.cfg.has_metrics && !c.cfg.has_join);
    ck_assert(!c.cfg.help && !c.cfg.version);
    done(&c);
}
END_TEST

START_TEST(every_long_flag_is_parsed)
{
    cmdline c;

    ck_assert_int_eq(
        parse(&c, "--in", "0.0.0.0:9000", "--out", "sink:9001", "--name", "w-2", "--resilience-dir",
              "/tmp/rd", "--cluster-initializer", "--worker-count", "3", "--control", "c:1",
              "--data", "d:2", "--my-control", "mc:3", "--my-data", "md:4", "--external", "e:5",
              "--metrics", "m:6", "--threads", "4", "--log-level", "debug", "--max-frame", "1M",
              "--partitions", "1024", "--map-size", "2G", "--batch-bytes", "64K", "--batches", "16",
              "--sink-replay", "0", "--shutdown-timeout", "30", NULL),
        0);
    assert_addr(&c.cfg.in[0], "0.0.0.0", "9000");
    assert_addr(&c.cfg.out[0], "sink", "9001");
    ck_assert_str_eq(c.cfg.name, "w-2");
    ck_assert_str_eq(c.cfg.resilience_dir, "/tmp/rd");
    ck_assert(c.cfg.initializer);
    ck_assert_uint_eq(c.cfg.worker_count, 3);
    ck_assert(c.cfg.has_control);
    assert_addr(&c.cfg.control, "c", "1");
    ck_assert(c.cfg.has_data);
    assert_addr(&c.cfg.data, "d", "2");
    ck_assert(c.cfg.has_my_control);
    assert_addr(&c.cfg.my_control, "mc", "3");
    ck_assert(c.cfg.has_my_data);
    assert_addr(&c.cfg.my_data, "md", "4");
    ck_assert(c.cfg.has_external);
    assert_addr(&c.cfg.external, "e", "5");
    ck_assert(c.cfg.has_metrics);
    assert_addr(&c.cfg.metrics, "m", "6");
    ck_assert(!c.cfg.has_join);
    ck_assert_uint_eq(c.cfg.threads, 4);
    ck_assert_int_eq(c.cfg.log_level, ROO_LOG_DEBUG);
    ck_assert_uint_eq(c.cfg.max_frame, 1u << 20);
    ck_assert_uint_eq(c.cfg.partitions, 1024);
    ck_assert_uint_eq(c.cfg.map_size, 2ull << 30);
    ck_assert_uint_eq(c.cfg.batch_bytes, 64u << 10);
    ck_assert_uint_eq(c.cfg.batches, 16);
    ck_assert_uint_eq(c.cfg.sink_replay, 0);
    ck_assert_uint_eq(c.cfg.shutdown_timeout_s, 30);
    done(&c);

    /* --join is the one flag that cannot go with --cluster-initializer. */
    ck_assert_int_eq(parse(&c, "--join", "[::1]:7100", NULL), 0);
    ck_assert(c.cfg.has_join);
    assert_addr(&c.cfg.join, "::1", "7100");
    done(&c);
}
END_TEST

START_TEST(every_short_flag_is_parsed)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "-i", "h:1", "-o", "h:2", "-n", "short", "-r", "/tmp/s", "-t", "-w",
                           "5", "-c", "h:3", "-d", "h:4", "-x", "h:5", "-y", "h:6", "-e", "h:7",
                           "-m", "h:8", NULL),
                     0);
    assert_addr(&c.cfg.in[0], "h", "1");
    assert_addr(&c.cfg.out[0], "h", "2");
    ck_assert_str_eq(c.cfg.name, "short");
    ck_assert_str_eq(c.cfg.resilience_dir, "/tmp/s");
    ck_assert(c.cfg.initializer);
    ck_assert_uint_eq(c.cfg.worker_count, 5);
    assert_addr(&c.cfg.control, "h", "3");
    assert_addr(&c.cfg.data, "h", "4");
    assert_addr(&c.cfg.my_control, "h", "5");
    assert_addr(&c.cfg.my_data, "h", "6");
    assert_addr(&c.cfg.external, "h", "7");
    assert_addr(&c.cfg.metrics, "h", "8");
    done(&c);

    /* Attached values work too: -ih:1 */
    ck_assert_int_eq(parse(&c, "-ih:11", "-j", "h:9", NULL), 0);
    assert_addr(&c.cfg.in[0], "h", "11");
    ck_assert(c.cfg.has_join);
    assert_addr(&c.cfg.join, "h", "9");
    done(&c);
}
END_TEST

START_TEST(long_flags_with_equals_values_are_parsed)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "--in=a:1,b:2", "--out=o:3", "--name=eq", "--resilience-dir=/d",
                           "--worker-count=2", "--control=c:4", "--threads=8",
                           "--log-level=warning", "--max-frame=512", "--partitions=7",
                           "--map-size=1MiB", "--batch-bytes=4K", "--batches=2", "--sink-replay=1K",
                           "--shutdown-timeout=0", NULL),
                     0);
    ck_assert_uint_eq(c.cfg.nin, 2);
    assert_addr(&c.cfg.out[0], "o", "3");
    ck_assert_str_eq(c.cfg.name, "eq");
    ck_assert_str_eq(c.cfg.resilience_dir, "/d");
    ck_assert_uint_eq(c.cfg.worker_count, 2);
    assert_addr(&c.cfg.control, "c", "4");
    ck_assert_uint_eq(c.cfg.threads, 8);
    ck_assert_int_eq(c.cfg.log_level, ROO_LOG_WARN);
    ck_assert_uint_eq(c.cfg.max_frame, 512);
    ck_assert_uint_eq(c.cfg.partitions, 7);
    ck_assert_uint_eq(c.cfg.map_size, 1u << 20);
    ck_assert_uint_eq(c.cfg.batch_bytes, 4096);
    ck_assert_uint_eq(c.cfg.batches, 2);
    ck_assert_uint_eq(c.cfg.sink_replay, 1024);
    ck_assert_uint_eq(c.cfg.shutdown_timeout_s, 0);
    done(&c);
}
END_TEST

START_TEST(in_list_gives_one_address_per_source)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "--in", "a:1,b:2", "--out", "x:7,[::1]:8,y:9", NULL), 0);
    ck_assert_uint_eq(c.cfg.nin, 2);
    assert_addr(&c.cfg.in[0], "a", "1");
    assert_addr(&c.cfg.in[1], "b", "2");
    ck_assert_uint_eq(c.cfg.nout, 3);
    assert_addr(&c.cfg.out[1], "::1", "8");
    done(&c);

    /* A repeated flag replaces the earlier list. */
    ck_assert_int_eq(parse(&c, "--in", "a:1,b:2", "--in", "c:3", NULL), 0);
    ck_assert_uint_eq(c.cfg.nin, 1);
    assert_addr(&c.cfg.in[0], "c", "3");
    done(&c);
}
END_TEST

START_TEST(name_picks_the_default_resilience_dir)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "--name", "worker.7", NULL), 0);
    ck_assert_str_eq(c.cfg.resilience_dir, "/var/tmp/roo/worker.7");
    done(&c);
}
END_TEST

START_TEST(app_args_follow_double_dash_with_argv0_first)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "--threads", "2", "--", "--threads", "0", "positional", NULL), 0);
    /* Flags after "--" belong to the application and are not parsed by roo. */
    ck_assert_uint_eq(c.cfg.threads, 2);
    ck_assert_int_eq(c.cfg.app_argc, 4);
    ck_assert_str_eq(c.cfg.app_argv[0], "/usr/bin/prog");
    ck_assert_str_eq(c.cfg.app_argv[1], "--threads");
    ck_assert_str_eq(c.cfg.app_argv[2], "0");
    ck_assert_str_eq(c.cfg.app_argv[3], "positional");
    ck_assert_ptr_null(c.cfg.app_argv[4]);
    done(&c);

    ck_assert_int_eq(parse(&c, "--", NULL), 0);
    ck_assert_int_eq(c.cfg.app_argc, 1);
    ck_assert_ptr_null(c.cfg.app_argv[1]);
    done(&c);

    ck_assert_int_eq(parse(&c, "--threads", "3", NULL), 0);
    ck_assert_int_eq(c.cfg.app_argc, 1);
    ck_assert_str_eq(c.cfg.app_argv[0], "/usr/bin/prog");
    ck_assert_ptr_null(c.cfg.app_argv[1]);
    done(&c);
}
END_TEST

START_TEST(help_and_version_are_flagged)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "--help", NULL), 0);
    ck_assert(c.cfg.help);
    done(&c);
    ck_assert_int_eq(parse(&c, "-h", NULL), 0);
    ck_assert(c.cfg.help);
    done(&c);
    ck_assert_int_eq(parse(&c, "--version", NULL), 0);
    ck_assert(c.cfg.version);
    done(&c);
    ck_assert_int_eq(parse(&c, "-V", NULL), 0);
    ck_assert(c.cfg.version);
    done(&c);
}
END_TEST

START_TEST(unknown_option_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--bogus", NULL);
    assert_usage_error(&c, "--bogus");
    parse(&c, "--threads", "2", "--bogus=1", NULL);
    assert_usage_error(&c, "--bogus");
    parse(&c, "-z", NULL);
    assert_usage_error(&c, "-z");
}
END_TEST

/* "-zt": the unknown option is in a bundle; the message must still name it. */
START_TEST(unknown_short_option_in_a_bundle_is_named)
{
    cmdline c;

    parse(&c, "-zt", NULL);
    assert_usage_error(&c, "-z");
}
END_TEST

START_TEST(missing_value_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--in", NULL);
    assert_usage_error(&c, "--in");
    parse(&c, "--threads", NULL);
    assert_usage_error(&c, "--threads");
    parse(&c, "-n", NULL);
    assert_usage_error(&c, "-n");
    /* "--" ends roo's options, so a flag right before it has no value. */
    parse(&c, "--out", "--", "x", NULL);
    assert_usage_error(&c, "--out");
}
END_TEST

START_TEST(bad_number_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--threads", "abc", NULL);
    assert_usage_error(&c, "--threads");
    parse(&c, "--threads", "-1", NULL);
    assert_usage_error(&c, "--threads");
    parse(&c, "--threads", "65", NULL);
    assert_usage_error(&c, "--threads");
    parse(&c, "--partitions", "65536", NULL);
    assert_usage_error(&c, "--partitions");
    parse(&c, "--partitions", "0", NULL);
    assert_usage_error(&c, "--partitions");
    parse(&c, "-w", "0", NULL);
    assert_usage_error(&c, "--worker-count");
    parse(&c, "--batches", "1", NULL);
    assert_usage_error(&c, "--batches");
    parse(&c, "--shutdown-timeout", "3601", NULL);
    assert_usage_error(&c, "--shutdown-timeout");
    parse(&c, "--max-frame", "17M", NULL);
    assert_usage_error(&c, "--max-frame");
    parse(&c, "--max-frame", "0", NULL);
    assert_usage_error(&c, "--max-frame");
    parse(&c, "--map-size", "512K", NULL);
    assert_usage_error(&c, "--map-size");
    parse(&c, "--batch-bytes", "1X", NULL);
    assert_usage_error(&c, "--batch-bytes");
    parse(&c, "--sink-replay", "2G", NULL);
    assert_usage_error(&c, "--sink-replay");
}
END_TEST

START_TEST(threads_0_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--threads", "0", NULL);
    assert_usage_error(&c, "--threads");
    parse(&c, "--threads=0", NULL);
    assert_usage_error(&c, "--threads");
}
END_TEST

START_TEST(bad_address_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--in", "nohost", NULL);
    assert_usage_error(&c, "--in");
    parse(&c, "-o", "h:99999", NULL);
    assert_usage_error(&c, "--out");
    parse(&c, "--control", "::1:80", NULL);
    assert_usage_error(&c, "--control");
    parse(&c, "--data", "", NULL);
    assert_usage_error(&c, "--data");
    parse(&c, "-x", "x", NULL);
    assert_usage_error(&c, "--my-control");
    parse(&c, "--my-data", "y", NULL);
    assert_usage_error(&c, "--my-data");
    parse(&c, "--external", "e", NULL);
    assert_usage_error(&c, "--external");
    parse(&c, "--metrics", "m", NULL);
    assert_usage_error(&c, "--metrics");
    parse(&c, "--join", "j", NULL);
    assert_usage_error(&c, "--join");
}
END_TEST

START_TEST(bad_name_dir_or_log_level_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--name", "has space", NULL);
    assert_usage_error(&c, "--name");
    parse(&c, "--name", "", NULL);
    assert_usage_error(&c, "--name");
    parse(&c, "--resilience-dir", "", NULL);
    assert_usage_error(&c, "--resilience-dir");
    parse(&c, "--log-level", "loud", NULL);
    assert_usage_error(&c, "--log-level");
}
END_TEST

START_TEST(positional_argument_is_a_usage_error)
{
    cmdline c;

    parse(&c, "stray", NULL);
    assert_usage_error(&c, "stray");
    parse(&c, "--threads", "2", "stray", "--name", "x", NULL);
    assert_usage_error(&c, "stray");
}
END_TEST

START_TEST(cluster_initializer_with_join_is_a_usage_error)
{
    cmdline c;

    parse(&c, "--cluster-initializer", "--join", "h:1", NULL);
    assert_usage_error(&c, "--join");
    parse(&c, "-j", "h:1", "-t", NULL);
    assert_usage_error(&c, "--cluster-initializer");
}
END_TEST

/* getopt keeps state between calls; every parse must start from scratch. */
START_TEST(parse_after_a_failed_parse_starts_fresh)
{
    cmdline c;

    parse(&c, "-zt", NULL);
    ck_assert_int_eq(c.rc, ROO_EUSAGE);
    done(&c);
    ck_assert_int_eq(parse(&c, "--threads", "2", NULL), 0);
    ck_assert_msg(!c.cfg.initializer, "the previous argv's '-t' leaked into this parse");
    ck_assert_uint_eq(c.cfg.threads, 2);
    done(&c);

    parse(&c, "--threads", "0", NULL);
    ck_assert_int_eq(c.rc, ROO_EUSAGE);
    done(&c);
    ck_assert_int_eq(parse(&c, "-n", "again", NULL), 0);
    ck_assert_str_eq(c.cfg.name, "again");
    ck_assert_uint_eq(c.cfg.threads, 1);
    done(&c);
}
END_TEST

/* Write text to a fresh file under the fixture's directory; free() the path. */
static char *write_ini(const char *name, const char *text)
{
    char *path = roo_test_path("%s", name);
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static const char three_hosts[] = "# a 3-host layout\n"
                                  "[cluster]\n"
                                  "worker-count = 3\n"
                                  "control = 10.1.0.1:12500\n"
                                  "data = 10.1.0.1:12501\n"
                                  "out = 10.1.0.9:7002\n"
                                  "partitions = 512\n"
                                  "\n"
                                  "[worker w2]\n"
                                  "my-control = 10.1.0.2:12500\n"
                                  "my-data = 10.1.0.2:12501\n"
                                  "in = 10.1.0.2:7010, 10.1.0.2:7011\n"
                                  "resilience-dir = /var/lib/roo/w2\n"
                                  "\n"
                                  "[worker initializer]\n"
                                  "cluster-initializer = true\n"
                                  "in = 10.1.0.1:7010\n";

START_TEST(config_file_gives_shared_and_own_settings)
{
    char *path = write_ini("a.ini", three_hosts);
    cmdline c;

    ck_assert_int_eq(parse(&c, "--config", path, "--name", "w2", NULL), 0);
    ck_assert_uint_eq(c.cfg.worker_count, 3);
    ck_assert_uint_eq(c.cfg.partitions, 512);
    ck_assert(c.cfg.has_control && c.cfg.has_data && c.cfg.has_my_control);
    assert_addr(&c.cfg.control, "10.1.0.1", "12500");
    assert_addr(&c.cfg.my_data, "10.1.0.2", "12501");
    ck_assert_uint_eq(c.cfg.nin, 2);
    assert_addr(&c.cfg.in[1], "10.1.0.2", "7011");
    assert_addr(&c.cfg.out[0], "10.1.0.9", "7002");
    ck_assert_str_eq(c.cfg.resilience_dir, "/var/lib/roo/w2");
    ck_assert(!c.cfg.initializer);
    done(&c);

    /* No --name: the default name picks [worker initializer]. */
    ck_assert_int_eq(parse(&c, "--config", path, NULL), 0);
    ck_assert(c.cfg.initializer);
    ck_assert_uint_eq(c.cfg.nin, 1);
    assert_addr(&c.cfg.in[0], "10.1.0.1", "7010");
    ck_assert_str_eq(c.cfg.resilience_dir, "/var/tmp/roo/initializer");
    done(&c);
    free(path);
}
END_TEST

START_TEST(flags_override_the_config_file_wherever_they_stand)
{
    char *path = write_ini("b.ini", three_hosts);
    cmdline c;

    ck_assert_int_eq(parse(&c, "--partitions", "64", "--name", "w2", "--config", path, "--in",
                           "127.0.0.1:9000", NULL),
                     0);
    ck_assert_uint_eq(c.cfg.partitions, 64);
    ck_assert_uint_eq(c.cfg.nin, 1);
    assert_addr(&c.cfg.in[0], "127.0.0.1", "9000");
    ck_assert_uint_eq(c.cfg.worker_count, 3);
    done(&c);
    free(path);
}
END_TEST

START_TEST(own_section_overrides_shared_keys_in_any_order)
{
    char *path = write_ini("c.ini", "[worker w3]\nthreads = 4\n[cluster]\nthreads = 2\n"
                                    "name = w3\n");
    cmdline c;

    ck_assert_int_eq(parse(&c, "--config", path, NULL), 0);
    ck_assert_str_eq(c.cfg.name, "w3");
    ck_assert_uint_eq(c.cfg.threads, 4);
    ck_assert_str_eq(c.cfg.resilience_dir, "/var/tmp/roo/w3");
    done(&c);
    free(path);
}
END_TEST

START_TEST(config_file_errors_name_the_file_and_line)
{
    char *path;
    cmdline c;

    path = write_ini("d.ini", "[cluster]\nworker-count = 3\nthreds = 2\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "d.ini:3: unknown key 'threds'");
    free(path);

    path = write_ini("e.ini", "[cluster]\n\nworker-count = many\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "e.ini:3: --worker-count: 'many' is not a whole number");
    free(path);

    path = write_ini("f.ini", "[workers]\nthreads = 2\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "f.ini:2: unknown section [workers]"); /* at its first key */
    free(path);

    path = write_ini("g.ini", "[cluster]\nthis line has no equals sign\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "g.ini:2: not a '[section]' or 'key = value' line");
    free(path);

    path = write_ini("h.ini", "cluster-initializer = maybe\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "h.ini:1: cluster-initializer: 'maybe' is not true or false");
    free(path);

    path = write_ini("i.ini", "[worker w2]\nname = w3\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "the section already names the worker");
    free(path);

    path = write_ini("j.ini", "config = other.ini\n");
    parse(&c, "--config", path, NULL);
    assert_usage_error(&c, "unknown key 'config'");
    free(path);

    parse(&c, "--config", "/nonexistent/roo.ini", NULL);
    assert_usage_error(&c, "--config: cannot read '/nonexistent/roo.ini': No such file");
}
END_TEST

START_TEST(other_workers_sections_are_checked_but_not_applied)
{
    char *path = write_ini("k.ini", "[worker w9]\nthreads = 8\n[worker w2]\nthreads = 3\n");
    cmdline c;

    ck_assert_int_eq(parse(&c, "--config", path, "-n", "w2", NULL), 0);
    ck_assert_uint_eq(c.cfg.threads, 3);
    done(&c);
    free(path);

    path = write_ini("l.ini", "[worker w9]\nthreads = 0\n");
    parse(&c, "--config", path, "-n", "w2", NULL);
    ck_assert_int_eq(c.rc, 0); /* w9's values are w9's business */
    done(&c);
    free(path);
}
END_TEST

START_TEST(metrics_takes_a_port_or_a_range_of_ports)
{
    cmdline c;

    ck_assert_int_eq(parse(&c, "--metrics", "127.0.0.1:5001", NULL), 0);
    assert_addr(&c.cfg.metrics, "127.0.0.1", "5001");
    ck_assert_uint_eq(c.cfg.metrics_last_port, 5100); /* a hundred ports, as documented */
    done(&c);
    ck_assert_int_eq(parse(&c, "--metrics", "my-host:5001-5003", NULL), 0);
    assert_addr(&c.cfg.metrics, "my-host", "5001");
    ck_assert_uint_eq(c.cfg.metrics_last_port, 5003);
    done(&c);
    ck_assert_int_eq(parse(&c, "--metrics", "[::1]:7000-7000", NULL), 0);
    assert_addr(&c.cfg.metrics, "::1", "7000");
    ck_assert_uint_eq(c.cfg.metrics_last_port, 7000);
    done(&c);
    ck_assert_int_eq(parse(&c, "--metrics", "127.0.0.1:65500", NULL), 0);
    ck_assert_uint_eq(c.cfg.metrics_last_port, 65535);
    done(&c);
    ck_assert_int_eq(parse(&c, "--metrics", "127.0.0.1:0", NULL), 0);
    ck_assert_uint_eq(c.cfg.metrics_last_port, 0); /* the kernel picks one */
    done(&c);

    parse(&c, "--metrics", "127.0.0.1:5003-5001", NULL);
    assert_usage_error(&c, "--metrics");
    parse(&c, "--metrics", "127.0.0.1:5001-", NULL);
    assert_usage_error(&c, "--metrics");
    parse(&c, "--metrics", "127.0.0.1:0-10", NULL);
    assert_usage_error(&c, "--metrics");
    parse(&c, "--metrics", "127.0.0.1:5001-70000", NULL);
    assert_usage_error(&c, "--metrics");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = roo_test_tcase("parse", 10);
    tcase_add_test(tc, defaults_are_filled_in);
    tcase_add_test(tc, every_long_flag_is_parsed);
    tcase_add_test(tc, every_short_flag_is_parsed);
    tcase_add_test(tc, long_flags_with_equals_values_are_parsed);
    tcase_add_test(tc, in_list_gives_one_address_per_source);
    tcase_add_test(tc, name_picks_the_default_resilience_dir);
    tcase_add_test(tc, app_args_follow_double_dash_with_argv0_first);
    tcase_add_test(tc, help_and_version_are_flagged);
    tcase_add_test(tc, parse_after_a_failed_parse_starts_fresh);
    tcase_add_test(tc, metrics_takes_a_port_or_a_range_of_ports);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("errors", 10);
    tcase_add_test(tc, unknown_option_is_a_usage_error);
    tcase_add_test(tc, unknown_short_option_in_a_bundle_is_named);
    tcase_add_test(tc, missing_value_is_a_usage_error);
    tcase_add_test(tc, bad_number_is_a_usage_error);
    tcase_add_test(tc, threads_0_is_a_usage_error);
    tcase_add_test(tc, bad_address_is_a_usage_error);
    tcase_add_test(tc, bad_name_dir_or_log_level_is_a_usage_error);
    tcase_add_test(tc, positional_argument_is_a_usage_error);
    tcase_add_test(tc, cluster_initializer_with_join_is_a_usage_error);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("config_file", 10);
    tcase_add_unchecked_fixture(tc, roo_test_tmp_setup, roo_test_tmp_teardown);
    tcase_add_test(tc, config_file_gives_shared_and_own_settings);
    tcase_add_test(tc, flags_override_the_config_file_wherever_they_stand);
    tcase_add_test(tc, own_section_overrides_shared_keys_in_any_order);
    tcase_add_test(tc, config_file_errors_name_the_file_and_line);
    tcase_add_test(tc, other_workers_sections_are_checked_but_not_applied);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(config_suite());
}
