/* check_err.c - the table of API error codes, and answering by id. */
#include "check_util.h"
#include "stoa/err.h"
#include "stoa/http.h"

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
            ck_assert_msg(strcmp(stoa_err_table[i].code,
                                 stoa_err_table[j].code) != 0,
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

static stoa_request_t req;

static void setup(void)
{
    memset(&req, 0, sizeof(req));
    req.arena = stoa_arena_create(0);
    stoa_buf_init(&req.headers);
    stoa_buf_init(&req.body_out);
    stoa_buf_init(&req.field_errors);
    req.jw = stoa_jw_new(&req.body_out);
    req.request_id = "rid";
}

static void teardown(void)
{
    stoa_jw_free(req.jw);
    stoa_buf_free(&req.headers);
    stoa_buf_free(&req.body_out);
    stoa_buf_free(&req.field_errors);
    stoa_arena_destroy(req.arena);
}

START_TEST(fail_takes_status_and_message_from_the_table)
{
    ck_assert_int_eq(stoa_http_fail(&req, STOA_ERR_EMAIL_TAKEN, NULL),
                     STOA_DECLINED);
    ck_assert_int_eq(req.status, 409);
    ck_assert_str_eq(req.body_out.data,
                     "{\"error\":{\"code\":\"email_taken\",\"message\":\"an "
                     "account with this email already exists\",\"details\":"
                     "{}},\"request_id\":\"rid\"}");
}
END_TEST

START_TEST(fail_keeps_an_explicit_message)
{
    ck_assert_int_eq(stoa_http_fail(&req, STOA_ERR_NOT_FOUND, "no such plan"),
                     STOA_DECLINED);
    ck_assert_int_eq(req.status, 404);
    ck_assert_ptr_nonnull(strstr(req.body_out.data,
                                 "\"code\":\"not_found\",\"message\":\"no "
                                 "such plan\""));
}
END_TEST

START_TEST(fail_statuses_map_to_results)
{
    ck_assert_int_eq(stoa_http_fail(&req, STOA_ERR_UNAVAILABLE, NULL),
                     STOA_AGAIN);
    ck_assert_int_eq(req.status, 503);
    ck_assert_int_eq(stoa_http_fail(&req, STOA_ERR_INTERNAL, NULL),
                     STOA_ERROR);
    ck_assert_int_eq(req.status, 500);
    ck_assert_int_eq(stoa_http_fail_details(&req,
                                            STOA_ERR_PAYMENT_PROVIDER_ERROR,
                                            NULL, "{\"provider_status\":402}"),
                     STOA_ERROR);
    ck_assert_int_eq(req.status, 502);
    ck_assert_ptr_nonnull(
        strstr(req.body_out.data, "\"details\":{\"provider_status\":402}"));
}
END_TEST

START_TEST(fail_as_keeps_the_code_at_another_status)
{
    ck_assert_int_eq(stoa_http_fail_as(&req, 400, STOA_ERR_INVALID_TOKEN,
                                       NULL),
                     STOA_DECLINED);
    ck_assert_int_eq(req.status, 400);
    ck_assert_ptr_nonnull(
        strstr(req.body_out.data, "\"code\":\"invalid_token\""));
}
END_TEST

START_TEST(code_text_form_uses_the_table_default)
{
    ck_assert_int_eq(stoa_http_error(&req, 409, "plan_exists", NULL),
                     STOA_DECLINED);
    ck_assert_ptr_nonnull(strstr(
        req.body_out.data,
        stoa_err_info(STOA_ERR_PLAN_EXISTS)->message));
}
END_TEST

static Suite *err_suite(void)
{
    Suite *s = suite_create("err");
    TCase *tc = test_case("table", NULL, NULL);
    tcase_add_test(tc, every_entry_is_complete);
    tcase_add_test(tc, codes_are_unique);
    tcase_add_loop_test(tc, spec_codes, 0, (int)STOA_ARRAY_LEN(spec_cases));
    suite_add_tcase(s, tc);
    tc = test_case("answers", setup, teardown);
    tcase_add_test(tc, fail_takes_status_and_message_from_the_table);
    tcase_add_test(tc, fail_keeps_an_explicit_message);
    tcase_add_test(tc, fail_statuses_map_to_results);
    tcase_add_test(tc, fail_as_keeps_the_code_at_another_status);
    tcase_add_test(tc, code_text_form_uses_the_table_default);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(err_suite());
}
