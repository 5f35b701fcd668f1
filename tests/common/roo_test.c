/* roo_test.c: shared helpers for roo's Check unit tests (suite runner, temp-dir fixture). */
#include "roo_test.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *tmp_base;

int roo_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    const char *tap = getenv("CK_TAP_LOG_FILE_NAME");
    int failed;

    srunner_run_all(sr, tap && *tap ? CK_SILENT : CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

TCase *roo_test_tcase(const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, timeout_s);
    return tc;
}

char *roo_test_mkdtemp(const char *prefix)
{
    size_t n = strlen("/tmp/") + strlen(prefix) + strlen("XXXXXX") + 1;
    char *path = malloc(n);

    if (!path)
        return NULL;
    snprintf(path, n, "/tmp/%sXXXXXX", prefix);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 ? -1 : 0;
    return unlink(path) < 0 ? -1 : 0;
}

int roo_test_rm_rf(const char *path)
{
    if (access(path, F_OK) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
        return -errno;
    return 0;
}

void roo_test_tmp_setup(void)
{
    tmp_base = roo_test_mkdtemp("roo-unit-");
    if (!tmp_base) {
        fprintf(stderr, "roo_test_tmp_setup: mkdtemp: %s\n", strerror(errno));
        abort();
    }
}

void roo_test_tmp_teardown(void)
{
    if (!tmp_base)
        return;
    if (roo_test_rm_rf(tmp_base) < 0)
        fprintf(stderr, "roo_test_tmp_teardown: cannot remove %s\n", tmp_base);
    free(tmp_base);
    tmp_base = NULL;
}

const char *roo_test_tmp(void)
{
    return tmp_base;
}

char *roo_test_path(const char *fmt, ...)
{
    char rel[1024], *path;
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    n = strlen(tmp_base) + 1 + strlen(rel) + 1;
    path = malloc(n);
    if (!path)
        abort();
    snprintf(path, n, "%s/%s", tmp_base, rel);
    return path;
}

double roo_test_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
