/* test_addr.c: "HOST:PORT" and comma-separated address lists parse exactly as the --in/--out flags document. */
#include <errno.h>
#include <stdlib.h>

#include "net/net.h"
#include "roo_test.h"

static void assert_addr(const char *s, const char *host, const char *port)
{
    roo__addr a;
    int rc = roo__addr_parse(s, &a);

    ck_assert_msg(rc == 0, "'%s' gave %d", s, rc);
    ck_assert_str_eq(a.host, host);
    ck_assert_str_eq(a.port, port);
}

static void assert_bad_addr(const char *s)
{
    roo__addr a;

    memset(&a, 0x5A, sizeof(a));
    ck_assert_msg(roo__addr_parse(s, &a) == -EINVAL, "'%s' was accepted", s ? s : "(null)");
    /* A failed parse leaves the output alone. */
    ck_assert_uint_eq((uint8_t)a.host[0], 0x5A);
}

START_TEST(ipv4_address_with_port_parses)
{
    assert_addr("127.0.0.1:7010", "127.0.0.1", "7010");
    assert_addr("0.0.0.0:1", "0.0.0.0", "1");
}
END_TEST

START_TEST(hostname_with_port_parses)
{
    assert_addr("localhost:80", "localhost", "80");
    assert_addr("worker-1.example.com:443", "worker-1.example.com", "443");
}
END_TEST

START_TEST(bracketed_ipv6_with_port_parses)
{
    char buf[300];
    roo__addr a;

    assert_addr("[::1]:7000", "::1", "7000");
    assert_addr("[fe80::1:2]:9", "fe80::1:2", "9");
    /* Formatting puts the brackets back. */
    ck_assert_int_eq(roo__addr_parse("[::1]:7000", &a), 0);
    ck_assert_str_eq(roo__addr_str(&a, buf, sizeof(buf)), "[::1]:7000");
    ck_assert_int_eq(roo__addr_parse("10.0.0.1:5", &a), 0);
    ck_assert_str_eq(roo__addr_str(&a, buf, sizeof(buf)), "10.0.0.1:5");
}
END_TEST

START_TEST(empty_host_means_any_address)
{
    assert_addr(":8080", "", "8080");
}
END_TEST

START_TEST(port_0_and_65535_are_accepted)
{
    assert_addr("127.0.0.1:0", "127.0.0.1", "0");
    assert_addr("127.0.0.1:65535", "127.0.0.1", "65535");
    /* The port is normalized to plain decimal. */
    assert_addr("h:00080", "h", "80");
}
END_TEST

START_TEST(address_without_port_is_rejected)
{
    assert_bad_addr("127.0.0.1");
    assert_bad_addr("localhost");
    assert_bad_addr("localhost:");
    assert_bad_addr("[::1]");
    assert_bad_addr("[::1]:");
    assert_bad_addr("[::1]80");
}
END_TEST

START_TEST(port_out_of_range_or_not_a_number_is_rejected)
{
    assert_bad_addr("127.0.0.1:65536");
    assert_bad_addr("127.0.0.1:99999999999999999999999");
    assert_bad_addr("127.0.0.1:-1");
    assert_bad_addr("127.0.0.1:+1");
    assert_bad_addr("127.0.0.1: 1");
    assert_bad_addr("127.0.0.1:1 ");
    assert_bad_addr("127.0.0.1:80x");
    assert_bad_addr("127.0.0.1:http");
}
END_TEST

START_TEST(empty_and_null_are_rejected)
{
    assert_bad_addr("");
    assert_bad_addr(NULL);
}
END_TEST

START_TEST(unbracketed_ipv6_is_rejected)
{
    assert_bad_addr("::1:80");
    assert_bad_addr("fe80::1:7000");
    assert_bad_addr("[::1:80");
}
END_TEST

START_TEST(host_longer_than_255_bytes_is_rejected)
{
    char s[300];

    memset(s, 'h', 255);
    memcpy(s + 255, ":1", 3);
    roo__addr a;
    ck_assert_int_eq(roo__addr_parse(s, &a), 0);
    ck_assert_uint_eq(strlen(a.host), 255);

    memset(s, 'h', 256);
    memcpy(s + 256, ":1", 3);
    assert_bad_addr(s);
}
END_TEST

START_TEST(address_list_gives_every_address_in_order)
{
    roo__addr *v = NULL;
    size_t n = 0;

    ck_assert_int_eq(roo__addr_list_parse("a:1,b:2", &v, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(v[0].host, "a");
    ck_assert_str_eq(v[0].port, "1");
    ck_assert_str_eq(v[1].host, "b");
    ck_assert_str_eq(v[1].port, "2");
    free(v);

    ck_assert_int_eq(roo__addr_list_parse("127.0.0.1:7010,[::1]:7011,:7012", &v, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(v[1].host, "::1");
    ck_assert_str_eq(v[2].host, "");
    ck_assert_str_eq(v[2].port, "7012");
    free(v);

    ck_assert_int_eq(roo__addr_list_parse("only:9", &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    free(v);
}
END_TEST

START_TEST(address_list_with_a_bad_member_is_rejected)
{
    roo__addr *v = (roo__addr *)0x1;
    size_t n = 77;

    ck_assert_int_eq(roo__addr_list_parse("a:1,b", &v, &n), -EINVAL);
    ck_assert_int_eq(roo__addr_list_parse("a:1,b:65536", &v, &n), -EINVAL);
    ck_assert_int_eq(roo__addr_list_parse("", &v, &n), -EINVAL);
    ck_assert_int_eq(roo__addr_list_parse(",", &v, &n), -EINVAL);
    /* Outputs untouched on failure. */
    ck_assert_ptr_eq(v, (roo__addr *)0x1);
    ck_assert_uint_eq(n, 77);
}
END_TEST

/*
 * "a:1," almost certainly lost an address (a typo in --in/--out); so do ",a:1" and
 * "a:1,,b:2". Each must be an error, not silently a shorter list.
 */
START_TEST(address_list_with_empty_member_is_rejected)
{
    static const char *const bad[] = { "a:1,", ",a:1", "a:1,,b:2" };

    for (size_t i = 0; i < ROO__ARRAY_SIZE(bad); i++) {
        roo__addr *v = NULL;
        size_t n = 0;
        int rc = roo__addr_list_parse(bad[i], &v, &n);
        if (rc == 0)
            free(v);
        ck_assert_msg(rc == -EINVAL, "'%s' was accepted as %zu address(es)", bad[i], n);
    }
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc;

    tc = roo_test_tcase("parse", 10);
    tcase_add_test(tc, ipv4_address_with_port_parses);
    tcase_add_test(tc, hostname_with_port_parses);
    tcase_add_test(tc, bracketed_ipv6_with_port_parses);
    tcase_add_test(tc, empty_host_means_any_address);
    tcase_add_test(tc, port_0_and_65535_are_accepted);
    tcase_add_test(tc, address_without_port_is_rejected);
    tcase_add_test(tc, port_out_of_range_or_not_a_number_is_rejected);
    tcase_add_test(tc, empty_and_null_are_rejected);
    tcase_add_test(tc, unbracketed_ipv6_is_rejected);
    tcase_add_test(tc, host_longer_than_255_bytes_is_rejected);
    suite_add_tcase(s, tc);

    tc = roo_test_tcase("list", 10);
    tcase_add_test(tc, address_list_gives_every_address_in_order);
    tcase_add_test(tc, address_list_with_a_bad_member_is_rejected);
    tcase_add_test(tc, address_list_with_empty_member_is_rejected);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return roo_test_run(addr_suite());
}
