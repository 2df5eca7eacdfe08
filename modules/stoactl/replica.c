/* replica.c - `stoactl replica status` and `stoactl failover`: the streaming
 * replica named by replica_url, its lag, and its promotion in place of a
 * failed primary (docs/operations.md, "Replica and fail-over"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoactl.h"

/* Both servers are reached through handles of their own: the primary may
 * be dead (fail-over) and the replica is not database_url. */
enum { PRIMARY_SQL_SENDERS, PRIMARY_SQL_COUNT };
enum {
    SENDER_COL_NAME,
    SENDER_COL_STATE,
    SENDER_COL_SYNC,
    SENDER_COL_LAG_BYTES,
    SENDER_COL_LAG_SECONDS
};
static const stoa_db_statement_t primary_statements[PRIMARY_SQL_COUNT] = {
    /* replay_lag is NULL once the primary has been idle a while: nothing
     * to replay is no lag. Reading other users' senders takes pg_monitor. */
    [PRIMARY_SQL_SENDERS] =
        {"ctl_replica_senders",
         "SELECT coalesce(application_name, ''), coalesce(state, 'unknown'), "
         "coalesce(sync_state, 'unknown'), "
         "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint"
         "::text, 'unknown'), coalesce(extract(epoch FROM replay_lag)::numeric"
         "(12,3), 0)::text FROM pg_stat_replication ORDER BY 1",
         0},
};

enum { STANDBY_SQL_STATE, STANDBY_SQL_PROMOTE, STANDBY_SQL_COUNT };
enum {
    STANDBY_COL_IN_RECOVERY,
    STANDBY_COL_RECEIVER,
    STANDBY_COL_REPLAY_AGE,
    STANDBY_COL_UNREPLAYED_BYTES
};
static const stoa_db_statement_t standby_statements[STANDBY_SQL_COUNT] = {
    [STANDBY_SQL_STATE] =
        {"ctl_replica_state",
         "SELECT CASE WHEN pg_is_in_recovery() THEN 'yes' ELSE 'no' END, "
         "coalesce((SELECT status FROM pg_stat_wal_receiver), 'stopped'), "
         "coalesce(extract(epoch FROM now() - "
         "pg_last_xact_replay_timestamp())::numeric(12,3)::text, 'none'), "
         "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
         "pg_last_wal_replay_lsn())::bigint::text, '0')",
         0},
    /* WITH, not SELECT: the layer may repeat a read after a broken
     * connection, and a second promotion would fail on the first's
     * success. */
    [STANDBY_SQL_PROMOTE] = {"ctl_replica_promote",
                             "WITH p AS (SELECT pg_promote(true, $1::int) AS "
                             "done) SELECT CASE WHEN done THEN 'yes' ELSE "
                             "'no' END FROM p",
                             1},
};

static const stoa_db_table_t primary_table[] = {
    {primary_statements, PRIMARY_SQL_COUNT}};
static const stoa_db_table_t standby_table[] = {
    {standby_statements, STANDBY_SQL_COUNT}};

static int usage(void)
{
    fprintf(stderr, "usage: stoactl replica status\n"
                    "       stoactl failover [--fenced] [--timeout S]\n");
    return 2;
}

static double seconds_since(uint64_t start_us)
{
    return (double)(stoa_now_us() - start_us) / 1e6;
}

static bool no_replica(const stoactl_t *ctl, const char *what)
{
    if (*ctl->conf->replica_url)
        return false;
    fprintf(stderr,
            "stoactl %s: no replica: replica_url is not set (the dev stack "
            "sets it when replica = on; see docs/operations.md)\n",
            what);
    return true;
}

/* No statement timeout: the promotion waits up to --timeout by itself. */
static stoa_db_t *open_standby(const stoactl_t *ctl)
{
    return stoa_db_new(ctl->conf->replica_url, standby_table, 1, 0,
                       ctl->conf->db_connect_timeout_s);
}

/* The replica's own view; STOA_OK with *res, or a message on stderr. */
static int standby_state(stoactl_t *ctl, stoa_db_t *standby, const char *what,
                         stoa_db_result_t **res)
{
    if (stoa_db_exec(standby, ctl->arena,
                     &standby_statements[STANDBY_SQL_STATE], NULL,
                     res) != STOA_OK ||
        stoa_db_rows(*res) != 1) {
        fprintf(stderr, "stoactl %s: the replica cannot be reached: %s\n", what,
                stoa_db_last_error(standby));
        return STOA_ERROR;
    }
    return STOA_OK;
}

static int status(stoactl_t *ctl)
{
    if (no_replica(ctl, "replica"))
        return 1;
    stoa_db_t *standby = open_standby(ctl);
    stoa_db_result_t *st;
    int rc = 1;
    if (standby_state(ctl, standby, "replica", &st) != STOA_OK)
        goto out;
    const char *in_recovery = stoa_db_value(st, 0, STANDBY_COL_IN_RECOVERY);
    printf("%-16s %s\n", "in_recovery", in_recovery);
    printf("%-16s %s\n", "receiver",
           stoa_db_value(st, 0, STANDBY_COL_RECEIVER));
    printf("%-16s %s\n", "replay_age_s",
           stoa_db_value(st, 0, STANDBY_COL_REPLAY_AGE));
    printf("%-16s %s\n", "unreplayed_bytes",
           stoa_db_value(st, 0, STANDBY_COL_UNREPLAYED_BYTES));
    if (strcmp(in_recovery, "yes") != 0) {
        fprintf(stderr, "stoactl replica: the server at replica_url is not a "
                        "replica (promoted?)\n");
        goto out;
    }

    /* Bytes and seconds behind, as the primary counts them. */
    stoa_db_t *primary = stoa_db_new(ctl->conf->database_url, primary_table, 1,
                                     ctl->conf->db_statement_timeout_ms,
                                     ctl->conf->db_connect_timeout_s);
    stoa_db_result_t *senders;
    if (stoa_db_exec(primary, ctl->arena,
                     &primary_statements[PRIMARY_SQL_SENDERS], NULL,
                     &senders) != STOA_OK) {
        fprintf(stderr, "stoactl replica: the primary cannot be reached: %s\n",
                stoa_db_last_error(primary));
        stoa_db_free(primary);
        goto out;
    }
    if (stoa_db_rows(senders) == 0) {
        printf("%-16s %s\n", "state", "disconnected");
        fprintf(stderr, "stoactl replica: the primary streams to no replica\n");
        stoa_db_free(primary);
        goto out;
    }
    for (int i = 0; i < stoa_db_rows(senders); i++) {
        const char *sync = stoa_db_value(senders, i, SENDER_COL_SYNC);
        printf("%-16s %s\n", "name",
               stoa_db_value(senders, i, SENDER_COL_NAME));
        printf("%-16s %s\n", "state",
               stoa_db_value(senders, i, SENDER_COL_STATE));
        /* sync, quorum, potential, async: only the first two wait. */
        printf("%-16s %s (%s)\n", "mode",
               strcmp(sync, "sync") == 0 || strcmp(sync, "quorum") == 0
                   ? "sync"
                   : "async",
               sync);
        printf("%-16s %s\n", "lag_bytes",
               stoa_db_value(senders, i, SENDER_COL_LAG_BYTES));
        printf("%-16s %s\n", "lag_seconds",
               stoa_db_value(senders, i, SENDER_COL_LAG_SECONDS));
    }
    stoa_db_free(primary);
    rc = 0;
out:
    stoa_db_free(standby);
    return rc;
}

/* Runs an operator's command through the shell; true when it exits 0. */
static bool run_command(const char *what, const char *command)
{
    fflush(NULL);
    int status = system(command);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "stoactl failover: %s failed (%s %d)\n", what,
                status != -1 && WIFEXITED(status) ? "exit" : "status",
                status != -1 && WIFEXITED(status) ? WEXITSTATUS(status)
                                                  : status);
        return false;
    }
    return true;
}

/* Whether line sets key (`key = ...`, blanks allowed around). */
static bool line_sets(const char *line, const char *key)
{
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(key);
    if (strncmp(line, key, n) != 0)
        return false;
    line += n;
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == '=';
}

/* The config file made to name the promoted server: database_url becomes
 * replica_url's value, replica_url empty (there is no replica until one
 * joins), the rest kept byte for byte. Written beside and renamed over, so
 * a crash leaves the old file or the new, never half of one. */
static int repoint_config(stoactl_t *ctl, const char *path)
{
    size_t len;
    char *text = stoa_arena_read_file(ctl->arena, path, STOACTL_FILE_MAX, &len);
    if (!text) {
        fprintf(stderr, "stoactl failover: cannot read %s\n", path);
        return STOA_ERROR;
    }
    stoa_buf_t out;
    stoa_buf_init(&out);
    int rc = STOA_ERROR;
    bool wrote_url = false;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        char *copy = stoa_arena_strndup(ctl->arena, line, n);
        if (line_sets(copy, "database_url")) {
            stoa_buf_printf(&out, "database_url = %s\n",
                            ctl->conf->replica_url);
            wrote_url = true;
        } else if (line_sets(copy, "database_url_file") ||
                   line_sets(copy, "replica_url_file")) {
            /* A file would win over the line written here. */
            stoa_buf_printf(&out, "# replaced by stoactl failover: %s\n", copy);
        } else if (line_sets(copy, "replica_url")) {
            stoa_buf_printf(&out, "replica_url =\n");
        } else {
            stoa_buf_printf(&out, "%s\n", copy);
        }
        line += n + (nl ? 1 : 0);
    }
    if (!wrote_url)
        stoa_buf_printf(&out, "database_url = %s\n", ctl->conf->replica_url);

    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.failover", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "stoactl failover: cannot write %s: %s\n", tmp,
                strerror(errno));
        goto out;
    }
    /* The file holds secrets: as closed as the one it replaces. */
    struct stat st;
    if (fchmod(fileno(f), stat(path, &st) == 0 ? (st.st_mode & 0777) : 0600) !=
            0 ||
        fwrite(out.data, 1, out.len, f) != out.len || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        fprintf(stderr, "stoactl failover: cannot write %s: %s\n", tmp,
                strerror(errno));
        fclose(f);
        unlink(tmp);
        goto out;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "stoactl failover: cannot replace %s: %s\n", path,
                strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = STOA_OK;
out:
    if (out.data)
        stoa_wipe(out.data, out.len);
    stoa_buf_free(&out);
    stoa_wipe(text, len);
    return rc;
}

static int failover(stoactl_t *ctl, int argc, char **argv)
{
    bool fenced = false;
    const char *timeout = "60";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--fenced") == 0) {
            fenced = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = argv[++i];
            char *end;
            long v = strtol(timeout, &end, 10);
            if (!*timeout || *end || v < 1 || v > 3600)
                return usage();
        } else {
            return usage();
        }
    }
    if (no_replica(ctl, "failover"))
        return 1;
    /* Never two primaries: without a way to fence, the operator must say
     * the old one is down for good. */
    if (!fenced && !*ctl->conf->replica_fence_command) {
        fprintf(stderr,
                "stoactl failover: replica_fence_command is not set; make "
                "sure the old primary cannot take writes, then run "
                "stoactl failover --fenced\n");
        return 1;
    }
    if (!ctl->config_path) {
        fprintf(stderr, "stoactl failover: no config file to repoint "
                        "(--config FILE)\n");
        return 1;
    }
    if (getenv("STOA_DATABASE_URL"))
        fprintf(stderr, "stoactl failover: warning: STOA_DATABASE_URL is "
                        "set and overrides the repointed config file\n");

    uint64_t t0 = stoa_now_us();
    stoa_db_t *standby = open_standby(ctl);
    stoa_db_result_t *st;
    int rc = 1;
    if (standby_state(ctl, standby, "failover", &st) != STOA_OK)
        goto out;
    if (strcmp(stoa_db_value(st, 0, STANDBY_COL_IN_RECOVERY), "yes") != 0) {
        fprintf(stderr, "stoactl failover: the server at replica_url is not "
                        "a replica (already promoted?)\n");
        goto out;
    }
    if (!fenced) {
        if (!run_command("replica_fence_command",
                         ctl->conf->replica_fence_command))
            goto out;
        printf("fenced the old primary (%.3f s)\n", seconds_since(t0));
    }
    /* What the replica received is replayed before it opens for writes. */
    const char *params[] = {timeout};
    stoa_db_result_t *promoted;
    if (stoa_db_exec(standby, ctl->arena,
                     &standby_statements[STANDBY_SQL_PROMOTE], params,
                     &promoted) != STOA_OK ||
        stoa_db_rows(promoted) != 1 ||
        strcmp(stoa_db_value(promoted, 0, 0), "yes") != 0) {
        fprintf(stderr, "stoactl failover: promotion failed or timed out: %s\n",
                stoa_db_last_error(standby));
        goto out;
    }
    printf("promoted the replica (%.3f s)\n", seconds_since(t0));
    if (repoint_config(ctl, ctl->config_path) != STOA_OK)
        goto out;
    printf("database_url in %s now names the promoted server\n",
           ctl->config_path);
    if (*ctl->conf->replica_repoint_command) {
        if (!run_command("replica_repoint_command",
                         ctl->conf->replica_repoint_command))
            goto out;
        printf("programs repointed (%.3f s)\n", seconds_since(t0));
    } else {
        printf("replica_repoint_command is not set: restart the pools and "
               "the jobs worker so they read database_url again\n");
    }
    printf("fail-over done in %.3f s\n", seconds_since(t0));
    rc = 0;
out:
    stoa_db_free(standby);
    return rc;
}

int stoactl_replica(stoactl_t *ctl, int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "status") == 0)
        return status(ctl);
    return usage();
}

int stoactl_failover(stoactl_t *ctl, int argc, char **argv)
{
    return failover(ctl, argc, argv);
}
