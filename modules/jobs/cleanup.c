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
    static const int steps[] = {
        JOBS_SQL_CLEANUP_SESSIONS,       JOBS_SQL_CLEANUP_SUCCESSORS,
        JOBS_SQL_CLEANUP_REFRESH_TOKENS, JOBS_SQL_CLEANUP_EMAIL_TOKENS,
        JOBS_SQL_CLEANUP_OUTBOX,         JOBS_SQL_CLEANUP_IDEMPOTENCY,
        JOBS_SQL_CLEANUP_MFA_CHALLENGES, JOBS_SQL_CLEANUP_WEBHOOK_DELIVERIES,
        JOBS_SQL_CLEANUP_STRIPE_EVENTS,
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(steps); i++) {
        const stoa_db_statement_t *st = &jobs_statements[steps[i]];
        stoa_db_result_t *res;
        int rc = stoa_db_exec(t->db, t->arena, st, NULL, &res);
        if (rc != STOA_OK) {
            snprintf(err, errlen, "%s: %s", st->name,
                     stoa_db_last_error(t->db));
            return STOA_AGAIN;
        }
        if (stoa_db_affected(res))
            stoa_log(STOA_LOG_INFO, "%s: %ld rows", st->name,
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
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(REVOKED_RECENTLY), p,
                     &sessions) != STOA_OK ||
        stoa_db_exec(t->db, t->arena, JOBS_SQL(SUSPENDED_USERS), NULL,
                     &users) != STOA_OK) {
        snprintf(err, errlen, "lookup: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    if (stoa_kv_ping(t->kv) != STOA_OK) {
        snprintf(err, errlen, "redis unreachable");
        return STOA_AGAIN;
    }
    for (int i = 0; i < stoa_db_rows(sessions); i++)
        if (stoa_revoke_mark_session(
                t->kv, ttl, stoa_db_value(sessions, i, REVOKED_COL_ID)) !=
            STOA_OK) {
            snprintf(err, errlen, "redis refused a marker");
            return STOA_AGAIN;
        }
    for (int i = 0; i < stoa_db_rows(users); i++)
        if (stoa_revoke_mark_user(
                t->kv, stoa_db_value(users, i, REVOKED_COL_ID)) != STOA_OK) {
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
