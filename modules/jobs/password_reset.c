/* password_reset.c - `auth.password_reset` jobs: the forgotten-password
 * request as the auth pool queued it, for any address. Here, away from the
 * request and its clock, the account is looked up and, when there is an
 * active one, its reset mail is queued (the link is made when that mail is
 * sent) and the request audited. An unknown address ends here, silently. */
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "stoa/audit.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/mail.h"
#include "stoa/mail_link.h"

/* Reset mails per address and hour: enough for a user who asks again, too
 * few to flood someone's inbox through the forgotten-password form. Kept
 * in Redis: when it is down, mails go out unlimited (SPEC §9: everything
 * but rate limiting keeps working). */
#define RESET_MAILS_PER_HOUR 5
#define RESET_WINDOW_S 3600

/* True when the address has had its share of reset mails this hour. */
static bool over_mail_limit(jobs_thread_t *t, const char *email)
{
    uint8_t digest[STOA_SHA256_LEN];
    char hex[2 * STOA_SHA256_LEN + 1];
    stoa_sha256(email, strlen(email), digest);
    stoa_hex_encode(digest, 16, hex);
    char *key = stoa_arena_sprintf(t->arena, "pwreset:%s", hex);
    long long n = 0;
    if (!t->kv || stoa_kv_incr(t->kv, key, RESET_WINDOW_S, &n) != STOA_OK)
        return false;
    return n > RESET_MAILS_PER_HOUR;
}

int jobs_password_reset(jobs_thread_t *t, const jobs_job_t *job, char *err,
                        size_t errlen)
{
    stoa_mail_link_reset_t reset;
    if (stoa_mail_link_reset_read(job->payload, &reset) != STOA_OK) {
        snprintf(err, errlen, "%s needs an email", job->kind);
        return STOA_DECLINED;
    }
    const char *p1[] = {reset.email};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(RESET_ACCOUNT), p1, &user);
    if (rc != STOA_OK) {
        snprintf(err, errlen, "account lookup failed: %s",
                 stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    if (stoa_db_rows(user) == 0)
        return STOA_OK; /* no active account: nothing to send, nothing told */
    const char *user_id = stoa_db_value(user, 0, RESET_ACCOUNT_COL_ID);
    if (over_mail_limit(t, reset.email)) {
        stoa_log(STOA_LOG_NOTICE,
                 "reset mail for user %s not sent: %d an hour at most", user_id,
                 RESET_MAILS_PER_HOUR);
        return STOA_OK;
    }
    stoa_buf_t data;
    stoa_buf_init(&data);
    stoa_jw_t *w = stoa_jw_new(&data);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "name",
                      stoa_db_value(user, 0, RESET_ACCOUNT_COL_NAME));
    stoa_jw_object_close(w);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    char *data_json = stoa_arena_strndup(t->arena, data.data, data.len);
    stoa_buf_free(&data);
    if (!ok) {
        snprintf(err, errlen, "could not write the mail data");
        return STOA_DECLINED;
    }
    /* Keyed by this job: a re-run after a lost acknowledgement queues the
     * mail once. */
    char *dedupe = stoa_arena_sprintf(t->arena, "password-reset:%s", job->id);
    /* The request's address and id travel in the job, so the entry reads
     * as if the pool had written it. */
    const stoa_actor_t actor = {.user_id = user_id,
                                .address = reset.ip,
                                .request_id = reset.request_id};
    const stoa_mail_t mail = {.template_name = "reset_password",
                              .to = stoa_db_value(user, 0, 1),
                              .data_json = data_json,
                              .link_purpose = "reset_password",
                              .link_user_id = user_id,
                              .dedupe_key = dedupe};
    if ((rc = stoa_db_begin(t->db)) != STOA_OK ||
        (rc = stoa_mail_enqueue(t->db, t->arena, &mail)) != STOA_OK ||
        (rc = stoa_audit(t->db, t->arena, &actor, "password.reset_requested",
                         user_id, NULL)) != STOA_OK ||
        (rc = stoa_db_commit(t->db)) != STOA_OK) {
        snprintf(err, errlen, "could not queue the reset mail: %s",
                 stoa_db_last_error(t->db));
        stoa_db_rollback(t->db);
        return STOA_AGAIN;
    }
    return STOA_OK;
}
