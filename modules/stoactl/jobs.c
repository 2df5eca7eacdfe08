/* jobs.c - `stoactl jobs list|dead|retry`: the outbox, for operators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stoactl.h"

static int usage(void)
{
    fprintf(
        stderr,
        "usage: stoactl jobs list [--kind K] [--state queued|running|dead|done] "
        "[--limit N]\n"
        "       stoactl jobs dead [--limit N]\n"
        "       stoactl jobs retry ID\n");
    return 2;
}

static int list(stoactl_t *ctl, const char *kind, const char *state,
                const char *limit)
{
    static const char *const states[] = {"queued", "running", "dead", "done",
                                         NULL};
    if (state) {
        const char *const *s = states;
        while (*s && strcmp(*s, state) != 0)
            s++;
        if (!*s)
            return usage();
    }
    char *end;
    long n = strtol(limit, &end, 10);
    if (*end || n < 1 || n > 10000)
        return usage();
    const char *params[] = {kind, state, limit};
    stoa_db_result_t *res;
    if (stoa_db_exec(ctl->db, ctl->arena, STOACTL_SQL(JOBS_LIST), params,
                     &res) != STOA_OK) {
        fprintf(stderr, "stoactl jobs: %s\n", stoa_db_last_error(ctl->db));
        return 1;
    }
    printf("%-10s %-22s %-8s %-9s %-21s %s\n", "ID", "KIND", "STATE",
           "ATTEMPTS", "RUN AT", "LAST ERROR");
    for (int i = 0; i < stoa_db_rows(res); i++)
        printf("%-10s %-22s %-8s %4s/%-4s %-21s %.80s\n",
               stoa_db_value(res, i, JOBS_COL_ID),
               stoa_db_value(res, i, JOBS_COL_KIND),
               stoa_db_value(res, i, JOBS_COL_STATE),
               stoa_db_value(res, i, JOBS_COL_ATTEMPTS),
               stoa_db_value(res, i, JOBS_COL_MAX_ATTEMPTS),
               stoa_db_value(res, i, JOBS_COL_RUN_AT),
               stoa_db_value(res, i, JOBS_COL_LAST_ERROR));
    return 0;
}

/* A dead (or waiting) job runs again now, with a fresh attempt budget. */
static int retry(stoactl_t *ctl, const char *id)
{
    char *end;
    long long v = strtoll(id, &end, 10);
    if (!*id || *end || v < 1)
        return usage();
    const char *params[] = {id};
    stoa_db_result_t *res;
    if (stoa_db_exec(ctl->db, ctl->arena, STOACTL_SQL(JOB_RETRY), params,
                     &res) != STOA_OK) {
        fprintf(stderr, "stoactl jobs: %s\n", stoa_db_last_error(ctl->db));
        return 1;
    }
    if (stoa_db_rows(res) == 0) {
        fprintf(stderr, "stoactl jobs: job %s is unknown, done or running\n",
                id);
        return 1;
    }
    printf("job %s (%s) queued to run now\n", id,
           stoa_db_value(res, 0, RETRY_COL_KIND));
    return 0;
}

int stoactl_jobs(stoactl_t *ctl, int argc, char **argv)
{
    if (argc < 1)
        return usage();
    if (strcmp(argv[0], "retry") == 0)
        return argc == 2 ? retry(ctl, argv[1]) : usage();
    const char *kind = NULL, *state = NULL, *limit = "50";
    bool dead = strcmp(argv[0], "dead") == 0;
    if (!dead && strcmp(argv[0], "list") != 0)
        return usage();
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--kind") == 0 && !dead)
            kind = argv[++i];
        else if (strcmp(argv[i], "--state") == 0 && !dead)
            state = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0)
            limit = argv[++i];
        else
            return usage();
    }
    return list(ctl, kind, dead ? "dead" : state, limit);
}
