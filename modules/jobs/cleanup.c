/* cleanup.c - the hourly maintenance job: expired sessions, tokens, sealed
 * refresh successors past their window, old finished jobs. */
#include <stdio.h>

#include "jobs.h"
#include "stoa/log.h"
#include "stoa/revoke.h"

int jobs_cleanup(jobs_thread_t *t, const jobs_job_t *job, char *err,
                 size_t errlen)
{
    (void)job;
    static const char *const steps[] = {
        "cleanup_sessions",       "cleanup_successors",
        "cleanup_refresh_tokens", "cleanup_email_tokens",
        "cleanup_outbox",         "cleanup_idempotency",
        "cleanup_mfa_challenges", "cleanup_webhook_deliveries",
        "cleanup_stripe_events",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(steps); i++) {
        stoa_db_result_t *res;
        int rc = stoa_db_exec(t->db, t->arena, steps[i], NULL, &res);
        if (rc != STOA_OK) {
            snprintf(err, errlen, "%s: %s", steps[i],
                     stoa_db_last_error(t->db));
            return STOA_AGAIN;
        }
        if (stoa_db_affected(res))
            stoa_log(STOA_LOG_INFO, "%s: %ld rows", steps[i],
                     stoa_db_affected(res));
    }
    return STOA_OK;
}

/* Re-writes the Redis markers of everything revoked within a token's life
 * from Postgres, the source of truth: a marker lost while Redis was down
 * (or with Redis itself) is back within a minute. SET is idempotent. */
int jobs_revocation_sync(jobs_thread_t *t, const jobs_job_t *job, char *err,
                         size_t errlen)
{
    (void)job;
    long ttl = t->conf->access_token_ttl;
    char window[24];
    snprintf(window, sizeof(window), "%ld", ttl + 120);
    const char *p[] = {window};
    stoa_db_result_t *sessions, *users;
    if (stoa_db_exec(t->db, t->arena, "revoked_recently", p, &sessions) !=
            STOA_OK ||
        stoa_db_exec(t->db, t->arena, "suspended_users", NULL, &users) !=
            STOA_OK) {
        snprintf(err, errlen, "lookup: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    if (stoa_kv_ping(t->kv) != STOA_OK) {
        snprintf(err, errlen, "redis unreachable");
        return STOA_AGAIN;
    }
    for (int i = 0; i < stoa_db_rows(sessions); i++)
        if (stoa_revoke_mark_session(t->kv, ttl, stoa_db_value(sessions, i, 0)) !=
            STOA_OK) {
            snprintf(err, errlen, "redis refused a marker");
            return STOA_AGAIN;
        }
    for (int i = 0; i < stoa_db_rows(users); i++)
        if (stoa_revoke_mark_user(t->kv, stoa_db_value(users, i, 0)) != STOA_OK) {
            snprintf(err, errlen, "redis refused a marker");
            return STOA_AGAIN;
        }
    /* Every marker is in: an absent marker means "live" again. */
    if (stoa_kv_set(t->kv, STOA_REVOKE_SYNCED_KEY, "1", 1, 0) != STOA_OK) {
        snprintf(err, errlen, "redis refused the sentinel");
        return STOA_AGAIN;
    }
    return STOA_OK;
}
