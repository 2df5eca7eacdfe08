/* analytics.c - the scheduled analytics jobs: day partitions (made ahead,
 * dropped past retention, rollups expired) and the rollups of the hours
 * that received events. Each runs once per schedule slot, whatever the
 * number of workers (main.c), and may run again harmlessly. */
#include <stdio.h>
#include <stdlib.h>

#include "jobs.h"
#include "stoa/log.h"

/* Hours rolled up per transaction, and transactions per run: a backlog
 * is worked off in bounded steps. */
#define ROLLUP_HOURS_PER_STEP 200
#define ROLLUP_STEPS_PER_RUN 20

static int fail(jobs_thread_t *t, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, stoa_db_last_error(t->db));
    stoa_db_rollback(t->db);
    return STOA_AGAIN;
}

int jobs_analytics_partitions(jobs_thread_t *t, const jobs_job_t *job,
                              char *err, size_t errlen)
{
    (void)job;
    char raw[24], rollups[24];
    snprintf(raw, sizeof(raw), "%ld", t->conf->analytics_retention_days);
    snprintf(rollups, sizeof(rollups), "%ld",
             t->conf->analytics_rollup_retention_days);
    const char *p_raw[] = {raw};
    const char *p_rollups[] = {rollups};
    stoa_db_result_t *made, *dropped;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(ANALYTICS_PARTITIONS_CREATE),
                     p_raw, &made) != STOA_OK)
        return fail(t, "create partitions", err, errlen);
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(ANALYTICS_PARTITIONS_DROP),
                     p_raw, &dropped) != STOA_OK)
        return fail(t, "drop partitions", err, errlen);
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(ANALYTICS_ROLLUPS_EXPIRE),
                     p_rollups, NULL) != STOA_OK)
        return fail(t, "expire rollups", err, errlen);
    stoa_log(STOA_LOG_INFO, "analytics partitions: %s made, %s dropped",
             stoa_db_value(made, 0, PARTITIONS_COL_COUNT),
             stoa_db_value(dropped, 0, PARTITIONS_COL_COUNT));
    return STOA_OK;
}

/* One step: takes up to ROLLUP_HOURS_PER_STEP marked hours and recomputes
 * their hourly buckets, actors, active users and days, in one
 * transaction. *taken: how many hours. */
static int rollup_step(jobs_thread_t *t, long *taken, char *err, size_t errlen)
{
    *taken = 0;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", ROLLUP_HOURS_PER_STEP);
    const char *p_limit[] = {limit};
    stoa_db_result_t *res;
    if (stoa_db_begin(t->db) != STOA_OK)
        return fail(t, "begin", err, errlen);
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(ANALYTICS_ROLLUP_TAKE), p_limit,
                     &res) != STOA_OK)
        return fail(t, "take hours", err, errlen);
    const char *hours = stoa_db_value(res, 0, ROLLUP_TAKE_COL_HOURS);
    if (hours) {
        static const int steps[] = {
            JOBS_SQL_ANALYTICS_ROLLUP_HOURS,
            JOBS_SQL_ANALYTICS_ROLLUP_DAILY,
        };
        const char *p_hours[] = {hours};
        for (size_t i = 0; i < STOA_ARRAY_LEN(steps); i++) {
            const stoa_db_statement_t *st = &jobs_statements[steps[i]];
            if (stoa_db_exec(t->db, t->arena, st, p_hours, NULL) != STOA_OK)
                return fail(t, st->name, err, errlen);
        }
        *taken = atol(stoa_db_value(res, 0, ROLLUP_TAKE_COL_COUNT));
    }
    if (stoa_db_commit(t->db) != STOA_OK)
        return fail(t, "commit", err, errlen);
    return STOA_OK;
}

int jobs_analytics_rollup(jobs_thread_t *t, const jobs_job_t *job, char *err,
                          size_t errlen)
{
    (void)job;
    for (int i = 0; i < ROLLUP_STEPS_PER_RUN; i++) {
        long taken;
        int rc = rollup_step(t, &taken, err, errlen);
        if (rc != STOA_OK)
            return rc;
        if (taken)
            stoa_log(STOA_LOG_INFO, "analytics rollup: %ld hours", taken);
        if (taken < ROLLUP_HOURS_PER_STEP)
            break;
    }
    return STOA_OK;
}
