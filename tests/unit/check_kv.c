/* check_kv.c - Redis url parsing (no server needed). */
#include "check_util.h"
#include "stoa/kv.h"

static const struct {
    const char *url;
    const char *host;
    int port;
    int db;
    bool is_unix;
} good_urls[] = {
    {"redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, false},
    {"redis://localhost", "localhost", 6379, 0, false},
    {"redis://cache:6380/15", "cache", 6380, 15, false},
    {"redis://cache/3", "cache", 6379, 3, false},
    {"redis://h:1/", "h", 1, 0, false},
    {"redis://h:65535", "h", 65535, 0, false},
    {"unix:///run/stoa/redis.sock", "/run/stoa/redis.sock", 6379, 0, true},
    {"unix:///x", "/x", 6379, 0, true},
};

START_TEST(parse_good_urls)
{
    char host[64];
    int port = -1, db = -1;
    bool is_unix = !good_urls[_i].is_unix;
    int rc = stoa_kv_parse_url(good_urls[_i].url, host, sizeof(host), &port,
                               &db, &is_unix);
    ck_assert_msg(rc == STOA_OK, "'%s' refused", good_urls[_i].url);
    ck_assert_str_eq(host, good_urls[_i].host);
    ck_assert(is_unix == good_urls[_i].is_unix);
    if (!good_urls[_i].is_unix) {
        ck_assert_int_eq(port, good_urls[_i].port);
        ck_assert_int_eq(db, good_urls[_i].db);
    }
}
END_TEST

static const char *const bad_urls[] = {
    "",
    "redis://",
    "redis://:6379",
    "redis://h:",
    "redis://h:0",
    "redis://h:65536",
    "redis://h:-1",
    "redis://h:abc",
    "redis://h:6379x",
    "redis://h:99999999999999999999",
    "redis://h/16",
    "redis://h/-1",
    "redis://h/1x",
    "redis://h/1/",
    "redis://h:6379/0/extra",
    "redis://user:pass@h:6379",
    "rediss://h:6379",
    "http://h:6379",
    "REDIS://h",
    "h:6379",
    "unix://",
    "unix://relative.sock",
    "unix:",
};

START_TEST(parse_bad_urls)
{
    char host[64];
    int port, db;
    bool is_unix;
    ck_assert_msg(stoa_kv_parse_url(bad_urls[_i], host, sizeof(host), &port,
                                    &db, &is_unix) == STOA_DECLINED,
                  "'%s' accepted", bad_urls[_i]);
}
END_TEST

START_TEST(parse_host_too_long)
{
    char host[8];
    int port, db;
    bool is_unix;
    ck_assert_int_eq(stoa_kv_parse_url("redis://abcdefg:1", host, sizeof(host),
                                       &port, &db, &is_unix),
                     STOA_OK);
    ck_assert_str_eq(host, "abcdefg");
    ck_assert_int_eq(stoa_kv_parse_url("redis://abcdefgh:1", host,
                                       sizeof(host), &port, &db, &is_unix),
                     STOA_DECLINED);
    ck_assert_int_eq(stoa_kv_parse_url("unix:///abcdefg", host, sizeof(host),
                                       &port, &db, &is_unix),
                     STOA_DECLINED);
}
END_TEST

START_TEST(new_checks_url_without_connecting)
{
    /* Port 1 on loopback: nothing listens, and nothing is tried yet. */
    stoa_kv_t *kv = stoa_kv_new("redis://127.0.0.1:1/2", 100);
    ck_assert_ptr_nonnull(kv);
    stoa_kv_free(kv);
    ck_assert_ptr_null(stoa_kv_new("redis://h:0", 100));
    ck_assert_ptr_null(stoa_kv_new("memcached://h", 100));
    stoa_kv_free(NULL);
}
END_TEST

START_TEST(regression_port_and_db_refuse_whitespace)
{
    /* kv.c reads the port and db with bare strtol(), which skips leading
     * whitespace (and takes a sign), so these are accepted as 80 and 1. */
    static const char *const bad[] = {"redis://h: 80", "redis://h:\t80",
                                      "redis://h/ 1", "redis://h:80/\n1"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        char host[64];
        int port, db;
        bool is_unix;
        ck_assert_msg(stoa_kv_parse_url(bad[i], host, sizeof(host), &port, &db,
                                        &is_unix) == STOA_DECLINED,
                      "'%s' accepted", bad[i]);
    }
}
END_TEST

static Suite *kv_suite(void)
{
    Suite *s = suite_create("kv");
    TCase *tc = test_case("url", NULL, NULL);
    tcase_add_loop_test(tc, parse_good_urls, 0,
                        (int)STOA_ARRAY_LEN(good_urls));
    tcase_add_loop_test(tc, parse_bad_urls, 0, (int)STOA_ARRAY_LEN(bad_urls));
    tcase_add_test(tc, parse_host_too_long);
    tcase_add_test(tc, new_checks_url_without_connecting);
    suite_add_tcase(s, tc);

    tc = test_case("regression", NULL, NULL);
    tcase_add_test(tc, regression_port_and_db_refuse_whitespace);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(kv_suite());
}
