/* test_auth.c: the connection handshake: both ends prove the same secret or nothing opens;
 * another secret, another channel, a replayed proof or garbage are refused; secret files
 * are read with care. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/auth.h"
#include "roo_test.h"

static char *dir;

static char *write_secret(const char *name, const char *text, mode_t mode)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    FILE *f;

    ck_assert_ptr_nonnull(path);
    snprintf(path, n, "%s/%s", dir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static void load(const char *text, roo__auth_key *k)
{
    char *p = write_secret("s", text, 0600), msg[600];
    bool loose = true;

    ck_assert_int_eq(roo__auth_key_load(p, k, &loose, msg, sizeof(msg)), 0);
    ck_assert(!loose);
    ck_assert(k->secret);
    free(p);
}

/* Run a whole handshake between keys kc and ks on channels cc and cs; the step that failed
 * (1 server refused the hello, 2 client refused the reply, 3 server refused the proof), or 0. */
static int run(const roo__auth_key *kc, uint8_t cc, const roo__auth_key *ks, uint8_t cs)
{
    roo__auth c = { .key = kc, .channel = cc }, s = { .key = ks, .channel = cs };
    uint8_t hello[ROO__AUTH_HELLO_LEN], reply[ROO__AUTH_REPLY_LEN], proof[ROO__AUTH_PROOF_LEN];

    roo__auth_client_hello(&c, hello);
    if (roo__auth_server_reply(&s, hello, sizeof(hello), reply) < 0)
        return 1;
    if (roo__auth_client_proof(&c, reply, sizeof(reply), proof) < 0)
        return 2;
    if (roo__auth_server_check(&s, proof, sizeof(proof)) < 0)
        return 3;
    return 0;
}

START_TEST(the_same_secret_opens_every_channel)
{
    roo__auth_key a, b, none1, none2;

    load("correct horse battery staple\n", &a);
    load("correct horse battery staple", &b); /* trailing white space does not count */
    for (uint8_t ch = ROO__CHANNEL_CONTROL; ch <= ROO__CHANNEL_EXTERNAL; ch++)
        ck_assert_int_eq(run(&a, ch, &b, ch), 0);
    roo__auth_key_none(&none1);
    roo__auth_key_none(&none2);
    ck_assert(!none1.secret);
    ck_assert_int_eq(run(&none1, ROO__CHANNEL_DATA, &none2, ROO__CHANNEL_DATA), 0);
}
END_TEST

START_TEST(another_secret_or_none_is_caught_by_the_client_first)
{
    roo__auth_key a, b, none;

    load("0123456789abcdef0123", &a);
    load("0123456789abcdef0124", &b);
    roo__auth_key_none(&none);
    ck_assert_int_eq(run(&a, ROO__CHANNEL_CONTROL, &b, ROO__CHANNEL_CONTROL), 2);
    ck_assert_int_eq(run(&none, ROO__CHANNEL_CONTROL, &a, ROO__CHANNEL_CONTROL), 2);
    ck_assert_int_eq(run(&a, ROO__CHANNEL_CONTROL, &none, ROO__CHANNEL_CONTROL), 2);
}
END_TEST

START_TEST(a_hello_for_another_channel_or_garbage_is_refused)
{
    roo__auth_key a;
    roo__auth s = { .key = &a, .channel = ROO__CHANNEL_DATA };
    uint8_t reply[ROO__AUTH_REPLY_LEN], junk[ROO__AUTH_HELLO_LEN] = { 0 };

    load("0123456789abcdef0123", &a);
    ck_assert_int_eq(run(&a, ROO__CHANNEL_EXTERNAL, &a, ROO__CHANNEL_CONTROL), 1);
    ck_assert_int_eq(roo__auth_server_reply(&s, junk, sizeof(junk), reply), ROO_EAUTH);
    ck_assert_int_eq(roo__auth_server_reply(&s, junk, 5, reply), ROO_EAUTH);
}
END_TEST

START_TEST(a_proof_is_good_for_one_handshake_only)
{
    roo__auth_key k;
    roo__auth c = { .key = &k, .channel = ROO__CHANNEL_EXTERNAL };
    roo__auth s1 = c, s2 = c;
    uint8_t hello[ROO__AUTH_HELLO_LEN], r1[ROO__AUTH_REPLY_LEN], r2[ROO__AUTH_REPLY_LEN];
    uint8_t proof[ROO__AUTH_PROOF_LEN], bad[ROO__AUTH_PROOF_LEN];

    load("a secret of some length", &k);
    roo__auth_client_hello(&c, hello);
    ck_assert_int_eq(roo__auth_server_reply(&s1, hello, sizeof(hello), r1), 0);
    ck_assert_int_eq(roo__auth_client_proof(&c, r1, sizeof(r1), proof), 0);
    ck_assert_int_eq(roo__auth_server_check(&s1, proof, sizeof(proof)), 0);
    /* The same hello and proof played to another handshake: the server's nonce differs. */
    ck_assert_int_eq(roo__auth_server_reply(&s2, hello, sizeof(hello), r2), 0);
    ck_assert_int_ne(memcmp(r1, r2, ROO__AUTH_NONCE), 0);
    ck_assert_int_eq(roo__auth_server_check(&s2, proof, sizeof(proof)), ROO_EAUTH);
    memcpy(bad, proof, sizeof(bad));
    bad[7] ^= 1;
    ck_assert_int_eq(roo__auth_server_check(&s1, bad, sizeof(bad)), ROO_EAUTH);
    ck_assert_int_eq(roo__auth_server_check(&s1, proof, 31), ROO_EAUTH);
}
END_TEST

START_TEST(secret_files_are_read_with_care)
{
    roo__auth_key k;
    char msg[600], *p;
    bool loose = false;

    p = write_secret("short", "too short\n", 0600);
    ck_assert_int_eq(roo__auth_key_load(p, &k, &loose, msg, sizeof(msg)), ROO_EUSAGE);
    ck_assert_ptr_nonnull(strstr(msg, "at least 16"));
    free(p);
    p = write_secret("open", "a secret that anyone can read", 0644);
    ck_assert_int_eq(roo__auth_key_load(p, &k, &loose, msg, sizeof(msg)), 0);
    ck_assert(loose);
    ck_assert_ptr_nonnull(strstr(msg, "chmod 600"));
    free(p);
    ck_assert_int_lt(roo__auth_key_load("/nonexistent/secret", &k, &loose, msg, sizeof(msg)), 0);
    ck_assert_ptr_nonnull(strstr(msg, "cannot read the cluster secret"));
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = roo_test_tcase("handshake", 10);

    tcase_add_test(tc, the_same_secret_opens_every_channel);
    tcase_add_test(tc, another_secret_or_none_is_caught_by_the_client_first);
    tcase_add_test(tc, a_hello_for_another_channel_or_garbage_is_refused);
    tcase_add_test(tc, a_proof_is_good_for_one_handshake_only);
    tcase_add_test(tc, secret_files_are_read_with_care);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc;

    dir = roo_test_mkdtemp("roo-auth-");
    rc = roo_test_run(auth_suite());
    roo_test_rm_rf(dir);
    free(dir);
    return rc;
}
