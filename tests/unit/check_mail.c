/* check_mail.c - the email.send payload: what producers write is what the
 * worker reads. */
#include "check_util.h"
#include "stoa/mail.h"

#define USER "5b0d6a3e-8c1f-4a57-9d2e-0f6b7c8d9e10"

static stoa_arena_t *arena;

static void setup(void)
{
    arena = stoa_arena_create(0);
}
static void teardown(void)
{
    stoa_arena_destroy(arena);
}

static stoa_json_t *parse(const char *text)
{
    stoa_json_t *doc = NULL;
    char err[128];
    ck_assert_int_eq(stoa_json_parse(arena, text, strlen(text),
                                     STOA_JSON_MAX_DEPTH, &doc, err,
                                     sizeof(err)),
                     STOA_OK);
    return doc;
}

START_TEST(plain_mail_round_trip)
{
    const stoa_mail_t mail = {.template_name = "welcome",
                              .to = "ann@example.com",
                              .data_json = "{\"name\":\"Ann\"}",
                              .dedupe_key = "welcome:1"};
    char *text = stoa_mail_payload(arena, &mail);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text,
                     "{\"template\":\"welcome\",\"to\":\"ann@example.com\","
                     "\"data\":{\"name\":\"Ann\"}}");
    stoa_mail_job_t job;
    const char *why = NULL;
    ck_assert_int_eq(stoa_mail_read(parse(text), &job, &why), STOA_OK);
    ck_assert_str_eq(job.template_name, "welcome");
    ck_assert_str_eq(job.to, "ann@example.com");
    ck_assert_str_eq(stoa_json_string(stoa_json_get(job.data, "name")), "Ann");
    ck_assert_ptr_null(job.link);
}
END_TEST

START_TEST(link_mail_round_trip)
{
    const stoa_mail_t mail = {.template_name = "verify_email",
                              .to = "ann@example.com",
                              .link_purpose = "verify_email",
                              .link_user_id = USER};
    char *text = stoa_mail_payload(arena, &mail);
    ck_assert_ptr_nonnull(text);
    stoa_mail_job_t job;
    const char *why = NULL;
    ck_assert_int_eq(stoa_mail_read(parse(text), &job, &why), STOA_OK);
    ck_assert_ptr_nonnull(job.link);
    ck_assert_ptr_eq(job.link, stoa_mail_link_find("verify_email"));
    ck_assert_str_eq(job.link_user_id, USER);
    /* No data given: an empty object, which the reader requires. */
    ck_assert(stoa_json_is_object(job.data));
}
END_TEST

START_TEST(sql_written_payload_reads)
{
    /* The shape one worker statement writes with jsonb_build_object
     * (members in Postgres' order). */
    stoa_mail_job_t job;
    const char *why = NULL;
    ck_assert_int_eq(
        stoa_mail_read(parse("{\"to\": \"a@example.com\", \"data\": {\"url\": "
                             "\"https://h/\", \"name\": \"A\"}, \"template\": "
                             "\"webhook_disabled\"}"),
                       &job, &why),
        STOA_OK);
    ck_assert_str_eq(job.template_name, "webhook_disabled");
    ck_assert_str_eq(job.to, "a@example.com");
}
END_TEST

static const struct {
    const char *payload;
    const char *why;
} declined[] = {
    {"{\"to\":\"a@b.c\",\"data\":{}}",
     "email.send needs template, to and data"},
    {"{\"template\":\"welcome\",\"data\":{}}",
     "email.send needs template, to and data"},
    {"{\"template\":\"welcome\",\"to\":\"a@b.c\"}",
     "email.send needs template, to and data"},
    {"{\"template\":\"welcome\",\"to\":7,\"data\":{}}",
     "email.send needs template, to and data"},
    {"{\"template\":\"x\",\"to\":\"a@b.c\",\"data\":{},\"link\":{\"purpose\":"
     "\"nope\",\"user_id\":\"" USER "\"}}",
     "email.send asks for an unknown link"},
    {"{\"template\":\"x\",\"to\":\"a@b.c\",\"data\":{},\"link\":{\"purpose\":"
     "\"verify_email\"}}",
     "email.send asks for an unknown link"},
    {"{\"template\":\"x\",\"to\":\"a@b.c\",\"data\":{},\"link\":{\"purpose\":"
     "\"verify_email\",\"user_id\":\"\"}}",
     "email.send asks for an unknown link"},
};

START_TEST(malformed_payloads_declined)
{
    stoa_mail_job_t job;
    const char *why = NULL;
    ck_assert_int_eq(stoa_mail_read(parse(declined[_i].payload), &job, &why),
                     STOA_DECLINED);
    ck_assert_ptr_nonnull(why);
    ck_assert_str_eq(why, declined[_i].why);
    ck_assert_ptr_null(job.link);
}
END_TEST

START_TEST(mail_without_an_address_is_refused)
{
    const stoa_mail_t mail = {.template_name = "welcome", .to = NULL};
    ck_assert_ptr_null(stoa_mail_payload(arena, &mail));
    const stoa_mail_t bad_data = {.template_name = "welcome",
                                  .to = "a@example.com",
                                  .data_json = "{\"name\":"};
    ck_assert_ptr_null(stoa_mail_payload(arena, &bad_data));
}
END_TEST

START_TEST(kind_is_the_contract)
{
    ck_assert_str_eq(STOA_MAIL_JOB_KIND, "email.send");
}
END_TEST

static Suite *mail_suite(void)
{
    Suite *s = suite_create("mail");
    TEST_CASE_OF(s, "mail", setup, teardown, ONCE(plain_mail_round_trip),
                 ONCE(link_mail_round_trip), ONCE(sql_written_payload_reads),
                 LOOP(malformed_payloads_declined, declined),
                 ONCE(mail_without_an_address_is_refused),
                 ONCE(kind_is_the_contract));
    return s;
}

TEST_MAIN(mail_suite)
