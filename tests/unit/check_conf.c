/* check_conf.c - the configuration table: defaults, syntax, bounds, secret
 * files, environment overrides, log levels and the redacted dump. */
#include "check_util.h"
#include "stoa/conf.h"
#include "stoa/log.h"

static stoa_conf_t conf;
static char err[512];

static void setup(void)
{
    memset(&conf, 0, sizeof(conf));
    err[0] = '\0';
}

static void teardown(void)
{
    stoa_conf_free(&conf);
}

static int parse(const char *text)
{
    stoa_conf_free(&conf);
    err[0] = '\0';
    return stoa_conf_parse(&conf, text, strlen(text), err, sizeof(err));
}

START_TEST(defaults)
{
    ck_assert_int_eq(parse(""), STOA_OK);
    ck_assert_str_eq(conf.redis_url, "redis://127.0.0.1:6379/0");
    ck_assert_str_eq(conf.jwt_audience, "stoa");
    ck_assert_str_eq(conf.stripe_secret_key, "");
    ck_assert_str_eq(conf.log_dir, "-");
    ck_assert_int_eq(conf.log_level, STOA_LOG_INFO);
    ck_assert_int_eq(conf.access_token_ttl, 900);
    ck_assert_int_eq(conf.refresh_token_ttl, 2592000);
    ck_assert_int_eq(conf.max_body_bytes, 1048576);
    ck_assert_int_eq(conf.max_event_body_bytes, 4194304);
    ck_assert_int_eq(conf.pool_processes, 2);

    /* stoa_conf_init alone gives the same defaults. */
    stoa_conf_free(&conf);
    stoa_conf_init(&conf);
    ck_assert_str_eq(conf.redis_url, "redis://127.0.0.1:6379/0");
    ck_assert_int_eq(conf.access_token_ttl, 900);
}
END_TEST

START_TEST(comments_and_blank_lines)
{
    const char *text = "# a comment\n"
                       "\n"
                       "   \t  \n"
                       "   # an indented comment = with equals\n"
                       "access_token_ttl = 120\n"
                       "#access_token_ttl = 999\n"
                       "\r\n";
    ck_assert_int_eq(parse(text), STOA_OK);
    ck_assert_int_eq(conf.access_token_ttl, 120);
}
END_TEST

START_TEST(whitespace_and_line_endings)
{
    const char *text = "  access_token_ttl\t=\t 300 \t\r\n"
                       "mail_from=  stoa team <a@b.c>  \n"
                       "redis_url =unix:///tmp/r.sock"; /* no final newline */
    ck_assert_int_eq(parse(text), STOA_OK);
    ck_assert_int_eq(conf.access_token_ttl, 300);
    ck_assert_str_eq(conf.mail_from, "stoa team <a@b.c>");
    ck_assert_str_eq(conf.redis_url, "unix:///tmp/r.sock");
}
END_TEST

START_TEST(later_line_wins_and_empty_optional)
{
    ck_assert_int_eq(parse("jwt_audience = one\njwt_audience = two\n"
                           "cors_origins =\n"),
                     STOA_OK);
    ck_assert_str_eq(conf.jwt_audience, "two");
    ck_assert_str_eq(conf.cors_origins, "");
}
END_TEST

/* Every numeric key with its documented bounds. */
static const struct {
    const char *name;
    long min;
    long max;
} numeric_keys[] = {
    {"access_token_ttl", 60, 86400},
    {"refresh_token_ttl", 3600, 31536000},
    {"refresh_reuse_interval", 0, 300},
    {"argon2_memory_kib", 8, 4194304},
    {"argon2_iterations", 1, 100},
    {"argon2_parallelism", 1, 64},
    {"max_body_bytes", 1024, 67108864},
    {"max_event_body_bytes", 1024, 67108864},
    {"db_statement_timeout_ms", 0, 3600000},
    {"db_connect_timeout_s", 1, 60},
    {"redis_timeout_ms", 10, 60000},
    {"pool_processes", 1, 256},
    {"jobs_concurrency", 1, 256},
    {"jobs_poll_interval_ms", 100, 600000},
};

static void expect_refused(const char *name, const char *value)
{
    char text[256];
    snprintf(text, sizeof(text), "# first line\n%s = %s\n", name, value);
    ck_assert_msg(parse(text) == STOA_DECLINED, "%s = '%s' was accepted", name,
                  value);
    ck_assert_msg(strstr(err, name) != NULL,
                  "error for %s = '%s' does not name the key: %s", name, value,
                  err);
    ck_assert_msg(strstr(err, ":2") != NULL,
                  "error for %s = '%s' does not name the line: %s", name, value,
                  err);
}

START_TEST(numeric_bounds)
{
    const char *name = numeric_keys[_i].name;
    long min = numeric_keys[_i].min, max = numeric_keys[_i].max;
    char text[256], value[64];

    /* Both ends are inclusive. */
    snprintf(text, sizeof(text), "%s = %ld\n", name, min);
    ck_assert_msg(parse(text) == STOA_OK, "%s: min refused: %s", name, err);
    snprintf(text, sizeof(text), "%s = %ld\n", name, max);
    ck_assert_msg(parse(text) == STOA_OK, "%s: max refused: %s", name, err);

    snprintf(value, sizeof(value), "%ld", min - 1);
    expect_refused(name, value);
    snprintf(value, sizeof(value), "%ld", max + 1);
    expect_refused(name, value);
    snprintf(value, sizeof(value), "%ldx", min);
    expect_refused(name, value);
    snprintf(value, sizeof(value), "%ld ms", min);
    expect_refused(name, value);
    snprintf(value, sizeof(value), "%ld.0", min);
    expect_refused(name, value);
    expect_refused(name, "");
    expect_refused(name, "-5");
    expect_refused(name, "abc");
    expect_refused(name, "0x10");
    expect_refused(name, "99999999999999999999999999");
}
END_TEST

START_TEST(value_is_applied)
{
    ck_assert_int_eq(parse("argon2_memory_kib = 64\nargon2_iterations = 3\n"
                           "argon2_parallelism = 2\nmax_body_bytes = 2048\n"),
                     STOA_OK);
    ck_assert_int_eq(conf.argon2_memory_kib, 64);
    ck_assert_int_eq(conf.argon2_iterations, 3);
    ck_assert_int_eq(conf.argon2_parallelism, 2);
    ck_assert_int_eq(conf.max_body_bytes, 2048);
}
END_TEST

START_TEST(unknown_key_names_key_and_line)
{
    ck_assert_int_eq(parse("# c\n\nbogus_key = 1\n"), STOA_DECLINED);
    ck_assert_msg(strstr(err, "bogus_key") != NULL, "err: %s", err);
    ck_assert_msg(strstr(err, ":3") != NULL, "err: %s", err);

    /* A near miss is still unknown. */
    ck_assert_int_eq(parse("access_token_ttls = 900\n"), STOA_DECLINED);
    ck_assert_msg(strstr(err, "access_token_ttls") != NULL, "err: %s", err);
}
END_TEST

START_TEST(line_without_equals)
{
    ck_assert_int_eq(parse("access_token_ttl = 900\naccess_token_ttl 900\n"),
                     STOA_DECLINED);
    ck_assert_msg(strstr(err, ":2") != NULL, "err: %s", err);
    ck_assert_int_eq(parse("= 900\n"), STOA_DECLINED);
    ck_assert_msg(strstr(err, ":1") != NULL, "err: %s", err);
}
END_TEST

START_TEST(required_string_must_not_be_empty)
{
    ck_assert_int_eq(parse("redis_url =\n"), STOA_DECLINED);
    ck_assert_msg(strstr(err, "redis_url") != NULL, "err: %s", err);
    ck_assert_int_eq(parse("database_url =   \n"), STOA_DECLINED);
    ck_assert_msg(strstr(err, "database_url") != NULL, "err: %s", err);
}
END_TEST

/* A seal key is empty (answers are not kept) or exactly 256 bits in hex. */
START_TEST(seal_key_is_empty_or_64_hex_digits)
{
    static const char good[] =
        "00112233445566778899aabbccddeeffFFEEDDCCBBAA99887766554433221100";
    char line[200];
    snprintf(line, sizeof(line), "idempotency_seal_key = %s\n", good);
    ck_assert_int_eq(parse(line), STOA_OK);
    ck_assert_str_eq(conf.idempotency_seal_key, good);
    ck_assert_int_eq(parse("idempotency_seal_key =\n"), STOA_OK);
    ck_assert_str_eq(conf.idempotency_seal_key, "");
    static const char *const bad[] = {
        "abc",
        /* 63 and 65 digits */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
        "g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        snprintf(line, sizeof(line), "idempotency_seal_key = %s\n", bad[i]);
        ck_assert_msg(parse(line) == STOA_DECLINED, "accepted %s", bad[i]);
        ck_assert_msg(strstr(err, "idempotency_seal_key") != NULL, "err: %s",
                      err);
        /* The message names the key, never the value. */
        ck_assert_msg(strstr(err, bad[i]) == NULL, "err: %s", err);
    }
}
END_TEST

START_TEST(nul_byte_and_long_line_refused)
{
    const char text[] = "jwt_audience = a\0b\n";
    ck_assert_int_eq(
        stoa_conf_parse(&conf, text, sizeof(text) - 1, err, sizeof(err)),
        STOA_DECLINED);
    stoa_conf_free(&conf);

    char *value = test_repeat('v', 9000);
    char *line = malloc(9100);
    snprintf(line, 9100, "jwt_audience = %s\n", value);
    ck_assert_int_eq(parse(line), STOA_DECLINED);
    free(line);
    free(value);
}
END_TEST

START_TEST(log_level_names)
{
    static const struct {
        const char *name;
        long level;
    } levels[] = {
        {"debug", STOA_LOG_DEBUG},   {"info", STOA_LOG_INFO},
        {"notice", STOA_LOG_NOTICE}, {"warn", STOA_LOG_WARN},
        {"err", STOA_LOG_ERR},       {"crit", STOA_LOG_CRIT},
    };
    char text[64];
    for (size_t i = 0; i < STOA_ARRAY_LEN(levels); i++) {
        snprintf(text, sizeof(text), "log_level = %s\n", levels[i].name);
        ck_assert_msg(parse(text) == STOA_OK, "%s: %s", levels[i].name, err);
        ck_assert_int_eq(conf.log_level, levels[i].level);
    }
    static const char *const bad[] = {"warning", "INFO", "3", "", "error"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        snprintf(text, sizeof(text), "log_level = %s\n", bad[i]);
        ck_assert_msg(parse(text) == STOA_DECLINED, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(err, "log_level") != NULL, "err: %s", err);
    }
}
END_TEST

START_TEST(secret_from_file)
{
    static const struct {
        const char *content;
        const char *value;
    } cases[] = {
        {"sk_test_123\n", "sk_test_123"},
        {"sk_test_123", "sk_test_123"},
        {"sk_test_123\r\n", "sk_test_123"},
        {"two\nlines\n", "two\nlines"},
        {"keep\n\n", "keep\n"}, /* only one trailing newline goes */
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++) {
        char *path =
            test_write_file(cases[i].content, strlen(cases[i].content));
        char text[256];
        snprintf(text, sizeof(text), "stripe_secret_key_file = %s\n", path);
        ck_assert_msg(parse(text) == STOA_OK, "case %zu: %s", i, err);
        ck_assert_str_eq(conf.stripe_secret_key, cases[i].value);
        test_remove_file(path);
    }
}
END_TEST

START_TEST(secret_file_missing)
{
    ck_assert_int_eq(
        parse("stripe_webhook_secret_file = /nonexistent/stoa-secret\n"),
        STOA_DECLINED);
    ck_assert_msg(strstr(err, "stripe_webhook_secret_file") != NULL, "err: %s",
                  err);
}
END_TEST

START_TEST(file_suffix_refused_for_non_secret)
{
    char *path = test_write_file("mail.example.com\n", 17);
    char text[256];
    snprintf(text, sizeof(text), "public_url_file = %s\n", path);
    ck_assert_int_eq(parse(text), STOA_DECLINED);
    ck_assert_msg(strstr(err, "public_url_file") != NULL, "err: %s", err);
    snprintf(text, sizeof(text), "access_token_ttl_file = %s\n", path);
    ck_assert_int_eq(parse(text), STOA_DECLINED);
    test_remove_file(path);
}
END_TEST

START_TEST(load_file_then_env_override)
{
    const char *text = "access_token_ttl = 300\n"
                       "redis_url = redis://from-file:6379/1\n"
                       "jwt_audience = file-audience\n";
    char *path = test_write_file(text, strlen(text));
    char *secret = test_write_file("whsec_env\n", 10);

    ck_assert_int_eq(setenv("STOA_ACCESS_TOKEN_TTL", "600", 1), 0);
    ck_assert_int_eq(setenv("STOA_REDIS_URL", "unix:///tmp/env.sock", 1), 0);
    ck_assert_int_eq(setenv("STOA_STRIPE_WEBHOOK_SECRET_FILE", secret, 1), 0);
    int rc = stoa_conf_load(&conf, path, err, sizeof(err));
    unsetenv("STOA_ACCESS_TOKEN_TTL");
    unsetenv("STOA_REDIS_URL");
    unsetenv("STOA_STRIPE_WEBHOOK_SECRET_FILE");

    ck_assert_msg(rc == STOA_OK, "load: %s", err);
    ck_assert_int_eq(conf.access_token_ttl, 600);
    ck_assert_str_eq(conf.redis_url, "unix:///tmp/env.sock");
    ck_assert_str_eq(conf.jwt_audience, "file-audience"); /* file kept */
    ck_assert_str_eq(conf.stripe_webhook_secret, "whsec_env");

    /* Without the environment the file's values stand. */
    stoa_conf_free(&conf);
    ck_assert_int_eq(stoa_conf_load(&conf, path, err, sizeof(err)), STOA_OK);
    ck_assert_int_eq(conf.access_token_ttl, 300);
    ck_assert_str_eq(conf.redis_url, "redis://from-file:6379/1");

    test_remove_file(path);
    test_remove_file(secret);
}
END_TEST

START_TEST(env_bad_value_names_variable)
{
    ck_assert_int_eq(setenv("STOA_POOL_PROCESSES", "0", 1), 0);
    int rc = stoa_conf_load(&conf, NULL, err, sizeof(err));
    unsetenv("STOA_POOL_PROCESSES");
    ck_assert_int_eq(rc, STOA_DECLINED);
    ck_assert_msg(strstr(err, "pool_processes") != NULL, "err: %s", err);
    ck_assert_msg(strstr(err, "STOA_POOL_PROCESSES") != NULL, "err: %s", err);
}
END_TEST

START_TEST(load_without_file_and_parse_ignores_env)
{
    ck_assert_int_eq(setenv("STOA_JWT_AUDIENCE", "env-aud", 1), 0);
    int rc = stoa_conf_load(&conf, NULL, err, sizeof(err));
    ck_assert_int_eq(rc, STOA_OK);
    ck_assert_str_eq(conf.jwt_audience, "env-aud");
    /* stoa_conf_parse is the pure string form: no environment. */
    ck_assert_int_eq(parse("access_token_ttl = 100\n"), STOA_OK);
    unsetenv("STOA_JWT_AUDIENCE");
    ck_assert_str_eq(conf.jwt_audience, "stoa");
}
END_TEST

START_TEST(load_missing_file)
{
    ck_assert_int_eq(
        stoa_conf_load(&conf, "/nonexistent/stoa.conf", err, sizeof(err)),
        STOA_DECLINED);
    ck_assert_msg(strstr(err, "/nonexistent/stoa.conf") != NULL, "err: %s",
                  err);
}
END_TEST

START_TEST(load_reports_file_path_and_line)
{
    const char *text = "access_token_ttl = 300\nnope = 1\n";
    char *path = test_write_file(text, strlen(text));
    ck_assert_int_eq(stoa_conf_load(&conf, path, err, sizeof(err)),
                     STOA_DECLINED);
    char want[128];
    snprintf(want, sizeof(want), "%s:2", path);
    ck_assert_msg(strstr(err, want) != NULL, "err: %s", err);
    ck_assert_msg(strstr(err, "nope") != NULL, "err: %s", err);
    test_remove_file(path);
}
END_TEST

static char *dump(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ck_assert_ptr_nonnull(f);
    stoa_conf_dump(&conf, f);
    ck_assert_int_eq(fclose(f), 0);
    return out;
}

START_TEST(dump_redacts_secrets)
{
    ck_assert_int_eq(parse("stripe_secret_key = sk_live_TOPSECRET\n"
                           "stripe_webhook_secret = whsec_HIDDEN\n"
                           "database_url = host=db password=hunter2\n"
                           "smtp_url = smtp://user:mailpass@mx:25\n"
                           "access_token_ttl = 321\n"),
                     STOA_OK);
    char *out = dump();
    ck_assert_ptr_null(strstr(out, "TOPSECRET"));
    ck_assert_ptr_null(strstr(out, "HIDDEN"));
    ck_assert_ptr_null(strstr(out, "hunter2"));
    ck_assert_ptr_null(strstr(out, "mailpass"));
    ck_assert_ptr_nonnull(strstr(out, "stripe_secret_key = <redacted>\n"));
    ck_assert_ptr_nonnull(strstr(out, "stripe_webhook_secret = <redacted>\n"));
    ck_assert_ptr_nonnull(strstr(out, "database_url = <redacted>\n"));
    /* redis_url may hold a password. */
    ck_assert_ptr_nonnull(strstr(out, "redis_url = <redacted>\n"));
    /* Non-secrets are shown as they are. */
    ck_assert_ptr_nonnull(strstr(out, "access_token_ttl = 321\n"));
    free(out);
}
END_TEST

START_TEST(dump_lists_every_key)
{
    ck_assert_int_eq(parse(""), STOA_OK);
    char *out = dump();
    for (size_t i = 0; i < STOA_ARRAY_LEN(numeric_keys); i++) {
        char want[96];
        snprintf(want, sizeof(want), "\n%s = ", numeric_keys[i].name);
        ck_assert_msg(strstr(out, want) != NULL, "%s missing from dump",
                      numeric_keys[i].name);
    }
    free(out);
}
END_TEST

/* The replica switches and pool_batch_scheduling are on or off; anything
 * else names the key. The replica's connection string is a secret like
 * database_url. */
START_TEST(replica_keys)
{
    ck_assert_int_eq(parse(""), STOA_OK);
    ck_assert_str_eq(conf.replica, "off");
    ck_assert_str_eq(conf.replica_sync, "on");
    ck_assert_str_eq(conf.replica_url, "");
    ck_assert_str_eq(conf.pool_batch_scheduling, "on");
    ck_assert_int_eq(parse("pool_batch_scheduling = off\n"), STOA_OK);
    ck_assert_str_eq(conf.pool_batch_scheduling, "off");
    ck_assert_int_eq(parse("replica = on\nreplica_sync = off\n"), STOA_OK);
    ck_assert_str_eq(conf.replica, "on");
    ck_assert_str_eq(conf.replica_sync, "off");
    static const char *const bad[] = {"replica = yes\n",
                                      "replica =\n",
                                      "replica_sync = ON\n",
                                      "replica_sync = 1\n",
                                      "pool_batch_scheduling = batch\n",
                                      "pool_batch_scheduling =\n"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        ck_assert_msg(parse(bad[i]) == STOA_DECLINED, "accepted %s", bad[i]);
        ck_assert_msg(strstr(err, "must be on or off") != NULL, "err: %s", err);
    }
    ck_assert_int_eq(parse("replica_url = host=/r port=5433 password=hush\n"),
                     STOA_OK);
    char *out = dump();
    ck_assert_msg(strstr(out, "hush") == NULL, "dump: %s", out);
    free(out);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TEST_CASE_OF(
        s, "parse", setup, teardown, ONCE(defaults),
        ONCE(comments_and_blank_lines), ONCE(whitespace_and_line_endings),
        ONCE(later_line_wins_and_empty_optional),
        LOOP(numeric_bounds, numeric_keys), ONCE(value_is_applied),
        ONCE(unknown_key_names_key_and_line), ONCE(line_without_equals),
        ONCE(required_string_must_not_be_empty),
        ONCE(nul_byte_and_long_line_refused),
        ONCE(seal_key_is_empty_or_64_hex_digits), ONCE(log_level_names),
        ONCE(replica_keys));

    TEST_CASE(s, "secrets_and_env", setup, teardown, secret_from_file,
              secret_file_missing, file_suffix_refused_for_non_secret,
              load_file_then_env_override, env_bad_value_names_variable,
              load_without_file_and_parse_ignores_env, load_missing_file,
              load_reports_file_path_and_line, dump_redacts_secrets,
              dump_lists_every_key);
    return s;
}

TEST_MAIN(conf_suite)
