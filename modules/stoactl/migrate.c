/* migrate.c - forward-only migrations, each in its own transaction,
 * recorded with a checksum so an edited migration is refused. */
#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stoa/crypto.h"
#include "stoactl.h"

#define MAX_MIGRATIONS 1000

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *default_dir(void)
{
    const char *env = getenv("STOA_MIGRATIONS_DIR");
    if (env && *env)
        return env;
    if (access("migrations", R_OK) == 0)
        return "migrations";
    return "/usr/share/stoa/migrations";
}

/* Fails on any query error, printing libpq's message. */
static int must(stoactl_t *ctl, int rc, const char *what)
{
    if (rc != STOA_OK)
        fprintf(stderr, "stoactl migrate: %s failed: %s\n", what,
                stoa_db_last_error(ctl->db));
    return rc;
}

int stoactl_migrate(stoactl_t *ctl, int argc, char **argv)
{
    const char *dir = default_dir();
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: stoactl migrate [--dir DIR]\n");
            return 2;
        }
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "stoactl migrate: cannot open %s\n", dir);
        return 1;
    }
    regex_t re;
    if (regcomp(&re, "^[0-9]{4}_[a-z0-9_]+\\.sql$", REG_EXTENDED | REG_NOSUB)) {
        closedir(d);
        return 1;
    }
    char *names[MAX_MIGRATIONS];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_MIGRATIONS)
        if (regexec(&re, e->d_name, 0, NULL, 0) == 0)
            names[n++] = stoa_arena_strdup(ctl->arena, e->d_name);
    closedir(d);
    regfree(&re);
    qsort(names, n, sizeof(names[0]), name_cmp);

    if (stoa_db_connect(ctl->db) != STOA_OK) {
        fprintf(stderr, "stoactl migrate: cannot connect to Postgres: %s\n",
                stoa_db_last_error(ctl->db));
        return 1;
    }
    /* One migrator at a time, even across hosts. */
    if (must(ctl,
             stoa_db_query(ctl->db, NULL, "SELECT pg_advisory_lock(4242001)", 0,
                           NULL, NULL),
             "lock") != STOA_OK)
        return 1;
    if (must(ctl,
             stoa_db_query(ctl->db, NULL,
                           "CREATE TABLE IF NOT EXISTS "
                           "public.schema_migrations ("
                           " version text PRIMARY KEY,"
                           " checksum text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())",
                           0, NULL, NULL),
             "bookkeeping table") != STOA_OK)
        return 1;

    int applied = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        size_t len;
        char *sql =
            stoa_arena_read_file(ctl->arena, path, STOACTL_FILE_MAX, &len);
        if (!sql) {
            fprintf(stderr, "stoactl migrate: cannot read %s\n", path);
            return 1;
        }
        uint8_t digest[STOA_SHA256_LEN];
        char checksum[2 * STOA_SHA256_LEN + 1];
        stoa_sha256(sql, len, digest);
        stoa_hex_encode(digest, sizeof(digest), checksum);

        stoa_db_result_t *res;
        const char *p1[] = {names[i]};
        enum { APPLIED_COL_CHECKSUM };
        if (must(ctl,
                 stoa_db_query(ctl->db, ctl->arena,
                               "SELECT checksum FROM "
                               "public.schema_migrations WHERE version = $1",
                               1, p1, &res),
                 "lookup") != STOA_OK)
            return 1;
        if (stoa_db_rows(res) == 1) {
            const char *have = stoa_db_value(res, 0, APPLIED_COL_CHECKSUM);
            if (strcmp(have, checksum) != 0) {
                fprintf(stderr,
                        "stoactl migrate: %s was changed after it was applied "
                        "(recorded checksum %.12s..., file %.12s...). Applied "
                        "migrations are never edited: restore the file and "
                        "add a new migration instead.\n",
                        names[i], have, checksum);
                return 1;
            }
            continue;
        }
        if (must(ctl, stoa_db_begin(ctl->db), "BEGIN") != STOA_OK)
            return 1;
        if (stoa_db_script(ctl->db, sql) != STOA_OK) {
            fprintf(stderr, "stoactl migrate: %s failed: %s\n", names[i],
                    stoa_db_last_error(ctl->db));
            stoa_db_rollback(ctl->db);
            return 1;
        }
        const char *p2[] = {names[i], checksum};
        if (must(ctl,
                 stoa_db_query(ctl->db, NULL,
                               "INSERT INTO public.schema_migrations "
                               "(version, checksum) VALUES ($1, $2)",
                               2, p2, NULL),
                 "record") != STOA_OK ||
            must(ctl, stoa_db_commit(ctl->db), "COMMIT") != STOA_OK) {
            stoa_db_rollback(ctl->db);
            return 1;
        }
        printf("applied %s\n", names[i]);
        applied++;
    }
    printf("migrations up to date (%zu known, %d applied now)\n", n, applied);
    return 0;
}
