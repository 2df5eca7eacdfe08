/* cleanup.c - the hourly maintenance job: expired sessions, tokens, sealed
 * refresh successors past their window, old finished jobs. */
#include <stdio.h>

#include "jobs.h"
#include "stoa/log.h"

int jobs_cleanup(jobs_thread_t *t, const jobs_job_t *job, char *err,
                 size_t errlen)
{
    (void)job;
    static const char *const steps[] = {
        "cleanup_sessions",     "cleanup_successors", "cleanup_refresh_tokens",
        "cleanup_email_tokens", "cleanup_outbox",
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
