/* test_outlog.c: the outbox log places entries in its ring without overwriting live ones, reads
 * back exactly what it wrote, refuses bytes that are not the entry asked for, and gives its
 * free room back. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "roo_test.h"
#include "state/outlog.h"

#define MIB ((uint64_t)1 << 20)

static roo__outlog *open_log(const char *dir, uint64_t size)
{
    roo__outlog *l = NULL;
    int rc;

    ck_assert_int_eq(mkdir(dir, 0755), 0);
    rc = roo__outlog_open(dir, size, &l);
    ck_assert_msg(rc == 0, "open %s: %d", dir, rc);
    return l;
}

/* The log file's stat in dir. */
static struct stat log_stat(const char *dir)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, ROO__OUTLOG_FILE);
    ck_assert_int_eq(stat(path, &st), 0);
    return st;
}

static off_t file_blocks(const char *dir)
{
    return log_stat(dir).st_blocks;
}

START_TEST(an_entry_that_does_not_fit_before_the_end_starts_the_next_lap)
{
    uint64_t pos = 1;

    ck_assert_int_eq(roo__outlog_place(1000, 0, 0, 100, &pos), 0);
    ck_assert_uint_eq(pos, 0);
    /* 950 + 100 passes the end: at 1000, the next lap, room there once the tail is past 50 */
    ck_assert_int_eq(roo__outlog_place(1000, 0, 950, 100, &pos), -ENOBUFS);
    ck_assert_int_eq(roo__outlog_place(1000, 100, 950, 100, &pos), 0);
    ck_assert_uint_eq(pos, 1000);
    /* the next lap's entry may not reach the live ones */
    ck_assert_int_eq(roo__outlog_place(1000, 1050, 1900, 200, &pos), -ENOBUFS);
    ck_assert_int_eq(roo__outlog_place(1000, 1200, 1900, 150, &pos), 0);
    ck_assert_uint_eq(pos, 2000);
    /* one that ends exactly at the file's end stays in this lap */
    ck_assert_int_eq(roo__outlog_place(1000, 1200, 1900, 100, &pos), 0);
    ck_assert_uint_eq(pos, 1900);
    /* bigger than the ring, or a nonsense range: no room */
    ck_assert_int_eq(roo__outlog_place(1000, 0, 0, 1001, &pos), -ENOBUFS);
    ck_assert_int_eq(roo__outlog_place(1000, 10, 5, 8, &pos), -ENOBUFS);
    ck_assert_int_eq(roo__outlog_place(1000, 0, 2000, 8, &pos), -ENOBUFS);
    ck_assert_int_eq(roo__outlog_place(0, 0, 0, 8, &pos), -ENOBUFS);
}
END_TEST

START_TEST(entries_read_back_exactly_in_pieces_across_laps)
{
    char *dir = roo_test_path("log");
    roo__outlog *l = open_log(dir, MIB);
    uint8_t *data = malloc(300000);
    uint64_t pos[10];

    for (size_t i = 0; i < 300000; i++)
        data[i] = (uint8_t)(i * 7 + i / 251);
    /* 300,000 bytes each: three fit in a lap, the fourth starts the next one */
    for (int i = 0; i < 10; i++) {
        if (i >= 3)
            roo__outlog_release(l, pos[i - 3] + roo__outlog_span(300000));
        ck_assert_int_eq(roo__outlog_append(l, data + i, 300000 - (size_t)i, &pos[i]), 0);
    }
    ck_assert_int_eq(roo__outlog_sync(l), 0);
    ck_assert_uint_eq(pos[3], MIB);
    for (int i = 7; i < 10; i++) {
        roo__buf b = { 0 };
        size_t len = 300000 - (size_t)i;
        for (size_t off = 0; off < len; off += 65536)
            ck_assert_int_eq(roo__outlog_read(l, pos[i], len, off, 65536, &b), 0);
        ck_assert_uint_eq(b.len, len);
        ck_assert_int_eq(memcmp(b.data, data + i, len), 0);
        roo__buf_finish(&b);
    }
    roo__outlog_close(l);
    free(data);
    free(dir);
}
END_TEST

START_TEST(a_full_ring_refuses_the_entry_and_writes_nothing)
{
    char *dir = roo_test_path("full");
    roo__outlog *l = open_log(dir, MIB);
    uint8_t data[200000] = { 1 };
    uint64_t pos;

    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(roo__outlog_append(l, data, sizeof(data), &pos), 0);
    ck_assert_int_eq(roo__outlog_append(l, data, sizeof(data), &pos), -ENOBUFS);
    ck_assert_uint_eq(roo__outlog_head(l), 5 * roo__outlog_span(sizeof(data)));
    roo__outlog_close(l);
    free(dir);
}
END_TEST

START_TEST(a_read_of_an_entry_that_is_not_there_fails)
{
    char *dir = roo_test_path("bad");
    roo__outlog *l = open_log(dir, MIB);
    uint8_t data[1000] = { 9 };
    roo__buf b = { 0 };
    uint64_t pos, pos2;

    ck_assert_int_eq(roo__outlog_append(l, data, sizeof(data), &pos), 0);
    /* a wrong length, a position where no entry starts, a later lap, past the file */
    ck_assert_int_eq(roo__outlog_read(l, pos, 999, 0, 1000, &b), -EIO);
    ck_assert_int_eq(roo__outlog_read(l, pos + 8, 1000, 0, 1000, &b), -EIO);
    ck_assert_int_eq(roo__outlog_read(l, pos + MIB, 1000, 0, 1000, &b), -EIO);
    ck_assert_int_eq(roo__outlog_read(l, MIB - 8, 1000, 0, 1000, &b), -EIO);
    ck_assert_uint_eq(b.len, 0);
    /* an entry written for a commit that failed is gone once rewound over */
    roo__outlog_rewind(l, pos);
    ck_assert_int_eq(roo__outlog_append(l, data, 500, &pos2), 0);
    ck_assert_uint_eq(pos2, pos);
    ck_assert_int_eq(roo__outlog_read(l, pos, 1000, 0, 1000, &b), -EIO);
    ck_assert_int_eq(roo__outlog_read(l, pos, 500, 0, 1000, &b), 0);
    ck_assert_uint_eq(b.len, 500);
    roo__buf_finish(&b);
    roo__outlog_close(l);
    free(dir);
}
END_TEST

START_TEST(live_entries_survive_a_reopen_and_free_room_goes_back)
{
    char *dir = roo_test_path("reopen");
    roo__outlog *l = open_log(dir, 4 * MIB);
    uint8_t *data = calloc(1, MIB);
    roo__buf b = { 0 };
    uint64_t pos[3];
    off_t before;

    for (int i = 0; i < 3; i++) {
        data[0] = (uint8_t)i;
        ck_assert_int_eq(roo__outlog_append(l, data, MIB, &pos[i]), 0);
    }
    ck_assert_int_eq(roo__outlog_sync(l), 0);
    roo__outlog_close(l);

    ck_assert_int_eq(roo__outlog_open(dir, 4 * MIB, &l), 0);
    roo__outlog_recovered(l, pos[2], pos[2] + roo__outlog_span(MIB));
    ck_assert_int_eq(roo__outlog_read(l, pos[2], MIB, 0, 1, &b), 0);
    ck_assert_uint_eq(b.len, 1);
    ck_assert_uint_eq(b.data[0], 2);
    /* the first two are free: their room goes back, the live one stays readable */
    before = file_blocks(dir);
    ck_assert_int_eq(roo__outlog_punch(l), 0);
    ck_assert_int_lt(file_blocks(dir), before);
    b.len = 0;
    ck_assert_int_eq(roo__outlog_read(l, pos[2], MIB, 0, 1, &b), 0);
    ck_assert_uint_eq(b.data[0], 2);
    /* nothing live: the whole file */
    roo__outlog_release(l, pos[2] + roo__outlog_span(MIB));
    ck_assert_int_eq(roo__outlog_punch(l), 0);
    ck_assert_int_eq(file_blocks(dir), 0);
    roo__buf_finish(&b);
    roo__outlog_close(l);
    free(data);
    free(dir);
}
END_TEST

static off_t file_size(const char *dir)
{
    return log_stat(dir).st_size;
}

/* ext4, where the log's settled syncs apply. */
static bool in_place_fs(const char *dir)
{
    struct statfs fs;

    ck_assert_int_eq(statfs(dir, &fs), 0);
    return (uint32_t)fs.f_type == 0xEF53u;
}

/* Filling ahead writes zeros only past what was ever written, up to the ring's size, a step
 * at a time; the entries before it read back intact, and the next lap overwrites the
 * zeros. A full disk's punch stops it for good. */
START_TEST(filling_ahead_reaches_the_full_size_without_touching_entries)
{
    char *dir = roo_test_path("fill"), *path;
    roo__outlog *l = open_log(dir, 4 * MIB);
    uint8_t *data = malloc(300000);
    roo__buf b = { 0 };
    uint64_t pos, pos2;
    int steps = 0, rc;

    for (size_t i = 0; i < 300000; i++)
        data[i] = (uint8_t)(i * 13 + 1);
    ck_assert_int_eq(roo__outlog_append(l, data, 300000, &pos), 0);
    ck_assert_int_eq(file_size(dir), (off_t)roo__outlog_span(300000));
    ck_assert(!roo__outlog_settled(l)); /* still growing: fdatasync */
    while ((rc = roo__outlog_prefill(l, MIB)) == 1)
        steps++;
    ck_assert_int_eq(rc, 0);
    /* filled and synced: where blocks are written in place, syncs need no flush now */
    ck_assert(roo__outlog_settled(l) == in_place_fs(dir));
    ck_assert_int_eq(steps, 3); /* 4 MiB less one entry, 1 MiB a step */
    ck_assert_int_eq(file_size(dir), (off_t)(4 * MIB));
    ck_assert_int_eq(roo__outlog_prefill(l, MIB), 0);
    ck_assert_int_eq(roo__outlog_read(l, pos, 300000, 0, 300000, &b), 0);
    ck_assert_int_eq(memcmp(b.data, data, 300000), 0);
    /* an entry in the filled room reads back as written, the file keeps its size */
    ck_assert_int_eq(roo__outlog_append(l, data + 1, 299999, &pos2), 0);
    b.len = 0;
    ck_assert_int_eq(roo__outlog_read(l, pos2, 299999, 0, 299999, &b), 0);
    ck_assert_int_eq(memcmp(b.data, data + 1, 299999), 0);
    ck_assert_int_eq(file_size(dir), (off_t)(4 * MIB));
    roo__outlog_close(l);

    /* reopened whole: settled again after its first sync (an fdatasync) */
    ck_assert_int_eq(roo__outlog_open(dir, 4 * MIB, &l), 0);
    roo__outlog_recovered(l, pos, pos2 + roo__outlog_span(299999));
    ck_assert(!roo__outlog_settled(l));
    ck_assert_int_eq(roo__outlog_append(l, data, 1000, &pos2), 0);
    ck_assert_int_eq(roo__outlog_sync(l), 0);
    ck_assert(roo__outlog_settled(l) == in_place_fs(dir));
    roo__outlog_close(l);

    /* a short file reopened is filled again, unless its room was given back */
    path = roo_test_path("fill/%s", ROO__OUTLOG_FILE);
    ck_assert_int_eq(truncate(path, (off_t)MIB), 0);
    free(path);
    ck_assert_int_eq(roo__outlog_open(dir, 4 * MIB, &l), 0);
    roo__outlog_recovered(l, pos, pos + roo__outlog_span(300000));
    ck_assert_int_eq(roo__outlog_punch(l), 0);
    ck_assert_int_eq(roo__outlog_prefill(l, MIB), 0);
    ck_assert_int_eq(file_size(dir), (off_t)MIB);
    ck_assert(!roo__outlog_settled(l)); /* holes: a write may allocate */
    roo__buf_finish(&b);
    roo__outlog_close(l);
    free(data);
    free(dir);
}
END_TEST

/*
 * A paged buffer's entry goes to the disk from where it lies (O_DIRECT, which ext4 takes):
 * at a page-aligned position, in whole pages. Entries read back exactly, mixed with entries
 * written through the page cache, a direct one after a page-cache one starting on the next
 * page, and across laps that overwrite pages read through the page cache before.
 */
START_TEST(paged_buffers_are_written_direct_and_read_back_across_laps)
{
    char *dir = roo_test_path("direct");
    roo__outlog *l = open_log(dir, MIB);
    roo__buf paged = { .paged = true }, plain = { 0 }, b = { 0 };
    uint64_t pos[16], end[16];
    bool direct = roo__outlog_direct(l);
    uint8_t *data = malloc(200000);

    char *path = roo_test_path("direct/%s", ROO__OUTLOG_FILE);
    int fd = open(path, O_RDONLY);

    ck_assert_int_ge(fd, 0);
    for (size_t k = 0; k < 200000; k++)
        data[k] = (uint8_t)(k * 31 + k / 253 + 1);
    ck_assert(direct || !in_place_fs(dir));
    for (int i = 0; i < 16; i++) {
        roo__buf *w = i % 4 == 3 ? &plain : &paged;
        size_t len = 150000 + (size_t)(i * 7 % 16) * 777;
        w->len = 0;
        roo__buf_append(w, data + i, len);
        if (i >= 4)
            roo__outlog_release(l, end[i - 4]);
        ck_assert_int_eq(roo__outlog_append_buf(l, w, &pos[i]), 0);
        end[i] = roo__outlog_head(l);
        if (direct && w == &paged) {
            uint8_t tail[ROO__PAGE];
            size_t pad = (size_t)(end[i] - pos[i]) - ROO__OUTLOG_HDR - len;
            ck_assert_uint_eq(pos[i] % ROO__PAGE, 0);
            ck_assert_uint_eq(end[i] - pos[i],
                              (ROO__OUTLOG_HDR + len + ROO__PAGE - 1) / ROO__PAGE * ROO__PAGE);
            /* zeros after the bytes to the page's end, not what the buffer held there */
            ck_assert_int_eq(pread(fd, tail, pad, (off_t)((pos[i] % MIB) + ROO__OUTLOG_HDR + len)),
                             (ssize_t)pad);
            for (size_t k = 0; k < pad; k++)
                ck_assert_uint_eq(tail[k], 0);
        } else {
            ck_assert_uint_eq(end[i] - pos[i], roo__outlog_span(len));
        }
        ck_assert_uint_ge(pos[i], i ? end[i - 1] : 0);
        ck_assert_int_eq(roo__outlog_sync(l), 0);
        /* this entry and the one before, read through the page cache */
        for (int j = i ? i - 1 : 0; j <= i; j++) {
            size_t lj = 150000 + (size_t)(j * 7 % 16) * 777;
            b.len = 0;
            ck_assert_int_eq(roo__outlog_read(l, pos[j], lj, 0, lj, &b), 0);
            ck_assert_uint_eq(b.len, lj);
            ck_assert_int_eq(memcmp(b.data, data + j, lj), 0);
        }
    }
    ck_assert_uint_gt(pos[15], 2 * MIB); /* in its third lap */
    roo__buf_finish(&paged);
    roo__buf_finish(&plain);
    roo__buf_finish(&b);
    roo__outlog_close(l);
    close(fd);
    free(path);
    free(data);
    free(dir);
}
END_TEST

START_TEST(a_ring_that_is_too_small_or_unaligned_is_refused)
{
    char *dir = roo_test_path("size");
    roo__outlog *l = NULL;

    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(roo__outlog_open(dir, MIB - 8, &l), -EINVAL);
    ck_assert_int_eq(roo__outlog_open(dir, MIB + 4, &l), -EINVAL);
    ck_assert_ptr_null(l);
    free(dir);
}
END_TEST

static Suite *outlog_suite(void)
{
    Suite *s = suite_create("outlog");
    TCase *tc = roo_test_tcase("ring", 20);

    tcase_add_unchecked_fixture(tc, roo_test_tmp_setup, roo_test_tmp_teardown);
    tcase_add_test(tc, an_entry_that_does_not_fit_before_the_end_starts_the_next_lap);
    tcase_add_test(tc, entries_read_back_exactly_in_pieces_across_laps);
    tcase_add_test(tc, a_full_ring_refuses_the_entry_and_writes_nothing);
    tcase_add_test(tc, a_read_of_an_entry_that_is_not_there_fails);
    tcase_add_test(tc, live_entries_survive_a_reopen_and_free_room_goes_back);
    tcase_add_test(tc, a_ring_that_is_too_small_or_unaligned_is_refused);
    tcase_add_test(tc, filling_ahead_reaches_the_full_size_without_touching_entries);
    tcase_add_test(tc, paged_buffers_are_written_direct_and_read_back_across_laps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(outlog_suite());
}
