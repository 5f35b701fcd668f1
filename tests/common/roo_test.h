/* roo_test.h: shared helpers for roo's Check unit tests: running a suite, temp directories. */
#ifndef ROO_TEST_H
#define ROO_TEST_H

#include <check.h>
#include <stddef.h>

/*
 * Run one suite and return the process exit status. When CK_TAP_LOG_FILE_NAME is set
 * (meson sets it to "-"), Check writes TAP to stdout and the normal report is silenced so
 * the TAP stream stays clean; otherwise the normal report is printed.
 */
int roo_test_run(Suite *s);

/* A test case with the given per-test timeout in seconds. */
TCase *roo_test_tcase(const char *name, double timeout_s);

/*
 * Temporary directory fixture. Add it as an UNCHECKED fixture
 * (tcase_add_unchecked_fixture(tc, roo_test_tmp_setup, roo_test_tmp_teardown)): it runs in
 * the parent process, so the directory is removed even when a forked test fails or times
 * out. Each test then works in its own subdirectory (roo_test_path).
 */
void roo_test_tmp_setup(void);
void roo_test_tmp_teardown(void);

/* The fixture's base directory, e.g. /tmp/roo-unit-XXXXXX. */
const char *roo_test_tmp(void);

/* A path under the fixture's base directory, printf-style; free() it. Nothing is created. */
char *roo_test_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Create a fresh directory /tmp/<prefix>XXXXXX; free() the result. NULL on failure. */
char *roo_test_mkdtemp(const char *prefix);

/* Remove path and everything below it (does not follow symlinks). 0 or -errno. */
int roo_test_rm_rf(const char *path);

/* Monotonic milliseconds, for timing assertions. */
double roo_test_now_ms(void);

#endif /* ROO_TEST_H */
