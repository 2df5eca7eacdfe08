/* check_err.c - the table of API error codes (answering by id:
 * check_http.c). */
#include "check_util.h"
#include "stoa/core.h"
#include "stoa/err.h"

static bool snake_case(const char *s)
{
    if (!s || !(*s >= 'a' && *s <= 'z'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

START_TEST(every_entry_is_complete)
{
    ck_assert_uint_eq(stoa_err_table_len, STOA_ERR_COUNT);
    for (size_t i = 0; i < stoa_err_table_len; i++) {
        const stoa_err_info_t *e = &stoa_err_table[i];
        ck_assert_msg(snake_case(e->code), "entry %zu: code '%s'", i,
                      e->code ? e->code : "(none)");
        ck_assert_msg(e->status >= 400 && e->status <= 599,
                      "%s: status %d is not 4xx/5xx", e->code, e->status);
        ck_assert_msg(e->message && *e->message, "%s: no message", e->code);
        ck_assert_ptr_eq(stoa_err_info((stoa_err_t)i), e);
    }
}
END_TEST

START_TEST(codes_are_unique)
{
    for (size_t i = 0; i < stoa_err_table_len; i++) {
        for (size_t j = i + 1; j < stoa_err_table_len; j++)
            ck_assert_msg(
                strcmp(stoa_err_table[i].code, stoa_err_table[j].code) != 0,
                "%s listed twice", stoa_err_table[i].code);
        ck_assert_ptr_eq(stoa_err_find(stoa_err_table[i].code),
                         &stoa_err_table[i]);
    }
    ck_assert_ptr_null(stoa_err_find(NULL));
    ck_assert_ptr_null(stoa_err_find("no_such_code"));
}
END_TEST

/* The codes SPEC §3 and §4 name, with their statuses. */
static const struct {
    stoa_err_t id;
    const char *code;
    int status;
} spec_cases[] = {
    {STOA_ERR_INVALID_REQUEST, "invalid_request", 400},
    {STOA_ERR_INVALID_JSON, "invalid_json", 400},
    {STOA_ERR_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415},
    {STOA_ERR_PAYLOAD_TOO_LARGE, "payload_too_large", 413},
    {STOA_ERR_UNAUTHENTICATED, "unauthenticated", 401},
    {STOA_ERR_FORBIDDEN, "forbidden", 403},
    {STOA_ERR_EMAIL_TAKEN, "email_taken", 409},
    {STOA_ERR_INVALID_CREDENTIALS, "invalid_credentials", 401},
    {STOA_ERR_MFA_REQUIRED, "mfa_required", 401},
    {STOA_ERR_ACCOUNT_SUSPENDED, "account_suspended", 403},
    {STOA_ERR_TOKEN_REUSED, "token_reused", 401},
    {STOA_ERR_INVALID_TOKEN, "invalid_token", 401},
    {STOA_ERR_TOO_MANY_ATTEMPTS, "too_many_attempts", 429},
    {STOA_ERR_UNAVAILABLE, "unavailable", 503},
    {STOA_ERR_INTERNAL, "internal", 500},
};

START_TEST(spec_codes)
{
    const stoa_err_info_t *e = stoa_err_info(spec_cases[_i].id);
    ck_assert_str_eq(e->code, spec_cases[_i].code);
    ck_assert_int_eq(e->status, spec_cases[_i].status);
}
END_TEST

static Suite *err_suite(void)
{
    Suite *s = suite_create("err");
    TEST_CASE_OF(s, "table", NULL, NULL, ONCE(every_entry_is_complete),
                 ONCE(codes_are_unique), LOOP(spec_codes, spec_cases));
    return s;
}

TEST_MAIN(err_suite)
