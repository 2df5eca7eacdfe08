/* jobs.c - `stoactl jobs list|dead|retry`: the outbox, for operators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stoactl.h"

static int usage(void)
{
    fprintf(stderr,
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
    if (stoa_db_query(
            ctl->db, ctl->arena,
            "SELECT id, kind, CASE WHEN done_at IS NOT NULL THEN 'done' WHEN "
            "dead_at IS NOT NULL THEN 'dead' WHEN locked_until >= now() THEN "
            "'running' ELSE 'queued' END AS state, attempts, max_attempts, "
            "to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "coalesce(last_error, '') FROM jobs.outbox o WHERE ($1::text IS NULL "
            "OR kind = $1) AND ($2::text IS NULL OR CASE WHEN done_at IS NOT "
            "NULL THEN 'done' WHEN dead_at IS NOT NULL THEN 'dead' WHEN "
            "locked_until >= now() THEN 'running' ELSE 'queued' END = $2) "
            "ORDER BY id DESC LIMIT $3::int",
            3, params, &res) != STOA_OK) {
        fprintf(stderr, "stoactl jobs: %s\n", stoa_db_last_error(ctl->db));
        return 1;
    }
    printf("%-10s %-22s %-8s %-9s %-21s %s\n", "ID", "KIND", "STATE",
           "ATTEMPTS", "RUN AT", "LAST ERROR");
    for (int i = 0; i < stoa_db_rows(res); i++)
        printf("%-10s %-22s %-8s %4s/%-4s %-21s %.80s\n",
               stoa_db_value(res, i, 0), stoa_db_value(res, i, 1),
               stoa_db_value(res, i, 2), stoa_db_value(res, i, 3),
               stoa_db_value(res, i, 4), stoa_db_value(res, i, 5),
               stoa_db_value(res, i, 6));
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
    if (stoa_db_query(ctl->db, ctl->arena,
                      "UPDATE jobs.outbox SET dead_at = NULL, attempts = 0, "
                      "run_at = now(), locked_by = NULL, locked_until = NULL "
                      "WHERE id = $1::bigint AND done_at IS NULL AND "
                      "(locked_until IS NULL OR locked_until < now()) "
                      "RETURNING kind",
                      1, params, &res) != STOA_OK) {
        fprintf(stderr, "stoactl jobs: %s\n", stoa_db_last_error(ctl->db));
        return 1;
    }
    if (stoa_db_rows(res) == 0) {
        fprintf(stderr, "stoactl jobs: job %s is unknown, done or running\n",
                id);
        return 1;
    }
    printf("job %s (%s) queued to run now\n", id, stoa_db_value(res, 0, 0));
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
