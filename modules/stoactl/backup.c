/* backup.c - `stoactl backup [--type full|diff|incr] | list | check` and
 * `stoactl restore [--time T | --latest]`: pgBackRest backups of the
 * cluster and point-in-time recovery, on the database host.
 *
 * pgBackRest and pg_ctl run as child processes from argv arrays (never a
 * shell line), as the cluster's OS user (pg_os_user) when stoactl runs as
 * root: the repository and the data directory belong to that user. The
 * config keys pg_data_dir, pg_bin_dir, pg_os_user, backup_config and
 * backup_stanza say where everything is (stoa.conf.example). */
/* nftw() is an X/Open interface. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stoa/buf.h"
#include "stoa/ingest.h"
#include "stoa/json.h"
#include "stoactl.h"

/* The largest `pgbackrest info` answer read (a few KiB per backup). */
#define INFO_MAX (16u * 1024 * 1024)
/* The throwaway server of `backup check` listens only on a socket in its
 * own private directory, so any port number is free there. */
#define CHECK_PORT "5433"
/* How long pg_ctl waits for a server to start: a restore replays WAL
 * before the server accepts connections. */
#define START_TIMEOUT_S "3600"

typedef struct {
    stoactl_t *ctl;
    const char *pgbackrest_config; /* --config=... */
    const char *pgbackrest_stanza; /* --stanza=... */
    bool switch_user;              /* children run as the cluster's owner */
    uid_t uid;
    gid_t gid;
    const char *user;
} backup_t;

/* One backup set as `pgbackrest info` describes it. */
typedef struct {
    const char *label;
    const char *type;
    int64_t start, stop; /* seconds since the epoch */
    int64_t size;        /* bytes of the database, -1 unknown */
} backup_set_t;

static int usage(void)
{
    fprintf(stderr, "usage: stoactl backup [--type full|diff|incr]\n"
                    "       stoactl backup list\n"
                    "       stoactl backup check\n"
                    "       stoactl restore [--time T | --latest]\n"
                    "T: 2026-12-01T18:30:00Z or with an offset "
                    "(+01:00), optional fraction of a second\n");
    return 2;
}

static int setup(backup_t *b, stoactl_t *ctl, const char *command)
{
    const stoa_conf_t *conf = ctl->conf;
    memset(b, 0, sizeof(*b));
    b->ctl = ctl;
    if (!*conf->backup_config) {
        fprintf(stderr,
                "stoactl %s: backups are off (backup_config is empty)\n",
                command);
        return STOA_DECLINED;
    }
    if (access(conf->backup_config, F_OK) != 0) {
        fprintf(stderr, "stoactl %s: backup_config %s: %s\n", command,
                conf->backup_config, strerror(errno));
        return STOA_DECLINED;
    }
    b->pgbackrest_config =
        stoa_arena_sprintf(ctl->arena, "--config=%s", conf->backup_config);
    b->pgbackrest_stanza =
        stoa_arena_sprintf(ctl->arena, "--stanza=%s", conf->backup_stanza);
    if (geteuid() == 0 && *conf->pg_os_user) {
        struct passwd *pw = getpwnam(conf->pg_os_user);
        if (!pw) {
            fprintf(stderr, "stoactl %s: pg_os_user %s: no such user\n",
                    command, conf->pg_os_user);
            return STOA_DECLINED;
        }
        b->switch_user = true;
        b->uid = pw->pw_uid;
        b->gid = pw->pw_gid;
        b->user = stoa_arena_strdup(ctl->arena, conf->pg_os_user);
    }
    return STOA_OK;
}

/* Runs argv (argv[0] a path, or a name looked up in PATH) and waits for
 * it. out NULL: the child writes to our standard output and error; else
 * its standard output is captured into out (at most INFO_MAX bytes).
 * detach: its standard streams are /dev/null, for pg_ctl start, whose
 * server inherits them and would hold a caller's pipe open for as long as
 * it runs. Returns the exit status, or -1 when it could not run. */
static int run(const backup_t *b, const char *const argv[], stoa_buf_t *out,
               bool detach)
{
    int fds[2] = {-1, -1};
    if (out && pipe(fds) != 0) {
        fprintf(stderr, "stoactl: pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "stoactl: fork: %s\n", strerror(errno));
        if (out) {
            close(fds[0]);
            close(fds[1]);
        }
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null < 0)
            _exit(126);
        dup2(null, 0);
        if (detach) {
            dup2(null, 1);
            dup2(null, 2);
        } else if (out) {
            dup2(fds[1], 1);
        }
        if (out) {
            close(fds[0]);
            close(fds[1]);
        }
        if (null > 2)
            close(null);
        /* Not async-signal-safe, but stoactl is single-threaded. */
        if (b->switch_user && (initgroups(b->user, b->gid) != 0 ||
                               setgid(b->gid) != 0 || setuid(b->uid) != 0))
            _exit(126);
        /* The cluster's user may not be able to enter our directory. */
        if (chdir("/") != 0)
            _exit(126);
        umask(077);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "stoactl: cannot run %s: %s\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    if (out) {
        close(fds[1]);
        char chunk[8192];
        for (;;) {
            ssize_t n = read(fds[0], chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            if (out->len + (size_t)n <= INFO_MAX)
                stoa_buf_append(out, chunk, (size_t)n);
        }
        close(fds[0]);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return -1;
}

/* Runs pgbackrest with the stack's config and stanza, then extra
 * arguments (NULL-terminated, at most 12). */
static int pgbackrest(const backup_t *b, stoa_buf_t *out, const char *command,
                      const char *const *extra)
{
    const char *argv[20] = {"pgbackrest", b->pgbackrest_config,
                            b->pgbackrest_stanza};
    size_t n = 3;
    for (; extra && *extra && n < 16; extra++)
        argv[n++] = *extra;
    argv[n++] = command;
    argv[n] = NULL;
    return run(b, argv, out, false);
}

/* The stanza's backup sets, oldest first, into *sets (arena-owned). */
static int load_sets(const backup_t *b, backup_set_t **sets, size_t *count)
{
    stoa_arena_t *arena = b->ctl->arena;
    stoa_buf_t out;
    stoa_buf_init(&out);
    const char *const extra[] = {"--output=json", NULL};
    int rc = pgbackrest(b, &out, "info", extra);
    if (rc != 0) {
        stoa_buf_free(&out);
        fprintf(stderr, "stoactl: pgbackrest info failed (exit %d)\n", rc);
        return STOA_ERROR;
    }
    stoa_json_t *doc;
    char err[256];
    char *text = stoa_arena_strndup(arena, out.data ? out.data : "", out.len);
    size_t len = out.len;
    stoa_buf_free(&out);
    if (stoa_json_parse(arena, text, len, 16, &doc, err, sizeof(err)) !=
            STOA_OK ||
        !stoa_json_is_array(doc) || stoa_json_len(doc) < 1) {
        fprintf(stderr, "stoactl: pgbackrest info answered no stanza\n");
        return STOA_ERROR;
    }
    const stoa_json_t *list = stoa_json_get(stoa_json_at(doc, 0), "backup");
    size_t n = list && stoa_json_is_array(list) ? stoa_json_len(list) : 0;
    *sets = stoa_arena_calloc(arena, n ? n : 1, sizeof(**sets));
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        const stoa_json_t *set = stoa_json_at(list, i);
        const stoa_json_t *ts = stoa_json_get(set, "timestamp");
        const stoa_json_t *info = stoa_json_get(set, "info");
        backup_set_t *s = &(*sets)[*count];
        s->label = stoa_json_string(stoa_json_get(set, "label"));
        s->type = stoa_json_string(stoa_json_get(set, "type"));
        if (!s->label || !s->type || !ts ||
            !stoa_json_integer(stoa_json_get(ts, "start"), &s->start) ||
            !stoa_json_integer(stoa_json_get(ts, "stop"), &s->stop))
            continue;
        if (!info || !stoa_json_integer(stoa_json_get(info, "size"), &s->size))
            s->size = -1;
        (*count)++;
    }
    return STOA_OK;
}

static const char *format_time(stoa_arena_t *arena, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char text[32];
    if (!gmtime_r(&tt, &tm) ||
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return "?";
    return stoa_arena_strdup(arena, text);
}

/* --- time targets ------------------------------------------------------ */

/* An RFC 3339 time with a zone (stoa_ingest_time_parse: a date that does
 * not exist, 24:00 or a missing zone is refused), narrowed to what a
 * recovery target can be: microseconds at most (what Postgres keeps), no
 * leap second, nothing before 1970. Sets *us to microseconds since the
 * epoch. */
static bool parse_time(const char *s, int64_t *us)
{
    if (!stoa_ingest_time_parse(s, us) || *us < 0 || s[17] == '6')
        return false;
    return s[19] != '.' || strspn(s + 20, "0123456789") <= 6;
}

/* --- the Postgres server ----------------------------------------------- */

static int pg_ctl(const backup_t *b, const char *data, const char *action,
                  const char *options)
{
    const stoa_conf_t *conf = b->ctl->conf;
    const char *bin =
        stoa_arena_sprintf(b->ctl->arena, "%s/pg_ctl", conf->pg_bin_dir);
    const char *argv[16] = {bin, action, "-D", data, "-w", "-s"};
    size_t n = 6;
    if (strcmp(action, "start") == 0) {
        argv[n++] = "-t";
        argv[n++] = START_TIMEOUT_S;
    } else {
        argv[n++] = "-m";
        argv[n++] = "fast";
        argv[n++] = "-t";
        argv[n++] = "120";
    }
    if (options) {
        argv[n++] = "-o";
        argv[n++] = options;
    }
    argv[n] = NULL;
    return run(b, argv, NULL, strcmp(action, "start") == 0);
}

/* Whether a server runs on the data directory (pg_ctl status: 0 it runs,
 * 3 it does not, 4 no usable data directory). */
static bool pg_running(const backup_t *b, const char *data)
{
    const char *bin = stoa_arena_sprintf(b->ctl->arena, "%s/pg_ctl",
                                         b->ctl->conf->pg_bin_dir);
    const char *argv[] = {bin, "status", "-D", data, NULL};
    stoa_buf_t ignored;
    stoa_buf_init(&ignored);
    int rc = run(b, argv, &ignored, false);
    stoa_buf_free(&ignored);
    return rc == 0;
}

/* Hot standby off: a server coming out of a restore accepts no
 * connection while it replays WAL, so nothing reads a half-replayed
 * database and no write fails on a read-only one. */
#define RECOVERY_OPTIONS "-c hot_standby=off"

/* pg_ctl -w returns once a server in recovery without hot standby is
 * "standby"; it is usable when the status line of postmaster.pid (the
 * 8th) says "ready". Fails when the file goes (the server gave up) or
 * after START_TIMEOUT_S. */
static int wait_ready(const backup_t *b, const char *data)
{
    const char *pidfile =
        stoa_arena_sprintf(b->ctl->arena, "%s/postmaster.pid", data);
    int64_t deadline = stoa_unix_time() + atoi(START_TIMEOUT_S);
    while (stoa_unix_time() < deadline) {
        FILE *f = fopen(pidfile, "r");
        if (!f)
            return STOA_ERROR;
        char line[256];
        int n = 0;
        bool ready = false;
        while (fgets(line, sizeof(line), f))
            if (++n == 8) {
                ready = strncmp(line, "ready", 5) == 0;
                break;
            }
        fclose(f);
        if (ready)
            return STOA_OK;
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return STOA_ERROR;
}

/* --- backup ------------------------------------------------------------ */

static int take_backup(const backup_t *b, const char *type)
{
    /* Creating the stanza is idempotent and cheap; doing it here keeps it
     * off the stack's start (see scripts/stack/backup.sh). */
    stoa_buf_t ignored;
    stoa_buf_init(&ignored);
    int rc = pgbackrest(b, &ignored, "stanza-create", NULL);
    stoa_buf_free(&ignored);
    if (rc != 0) {
        fprintf(stderr,
                "stoactl backup: pgbackrest stanza-create failed "
                "(exit %d)\n",
                rc);
        return 1;
    }
    const char *type_arg = stoa_arena_sprintf(b->ctl->arena, "--type=%s", type);
    const char *const extra[] = {type_arg, NULL};
    rc = pgbackrest(b, NULL, "backup", extra);
    if (rc != 0) {
        fprintf(stderr, "stoactl backup: pgbackrest backup failed (exit %d)\n",
                rc);
        return 1;
    }
    backup_set_t *sets;
    size_t n;
    if (load_sets(b, &sets, &n) != STOA_OK || n == 0)
        return 1;
    printf("backup %s (%s) done\n", sets[n - 1].label, sets[n - 1].type);
    return 0;
}

/* load_sets for a command that needs at least one backup: none is an
 * error, said in the command's name. */
static int load_some_sets(const backup_t *b, const char *command,
                          backup_set_t **sets, size_t *count)
{
    if (load_sets(b, sets, count) != STOA_OK)
        return STOA_ERROR;
    if (*count == 0) {
        fprintf(stderr, "stoactl %s: there is no backup\n", command);
        return STOA_ERROR;
    }
    return STOA_OK;
}

static int list(const backup_t *b)
{
    backup_set_t *sets;
    size_t n;
    if (load_sets(b, &sets, &n) != STOA_OK)
        return 1;
    if (n == 0) {
        printf("no backups\n");
        return 0;
    }
    printf("%-26s %-5s %-21s %-21s %s\n", "LABEL", "TYPE", "START", "STOP",
           "SIZE (MB)");
    for (size_t i = 0; i < n; i++)
        printf("%-26s %-5s %-21s %-21s %.1f\n", sets[i].label, sets[i].type,
               format_time(b->ctl->arena, sets[i].start),
               format_time(b->ctl->arena, sets[i].stop),
               sets[i].size < 0 ? 0.0 : (double)sets[i].size / 1e6);
    return 0;
}

/* --- backup check ------------------------------------------------------ */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path)
{
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int own_dir(const backup_t *b, const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    if (b->switch_user && chown(path, b->uid, b->gid) != 0)
        return -1;
    return 0;
}

/* The rows counted in a restored copy, as a quick sign that it holds the
 * data (a restore that "works" on an empty cluster would pass unseen). */
static const struct {
    const char *table;
    size_t statement;
} counted[] = {
    {"auth.users", STOACTL_SQL_COUNT_USERS},
    {"billing.subscriptions", STOACTL_SQL_COUNT_SUBSCRIPTIONS},
    {"jobs.outbox", STOACTL_SQL_COUNT_OUTBOX},
};

static int count_rows(const backup_t *b, const char *socket_dir)
{
    const char *conninfo = stoa_arena_sprintf(
        b->ctl->arena, "host=%s port=%s dbname=stoa user=postgres", socket_dir,
        CHECK_PORT);
    const stoa_db_table_t tables[] = {
        {stoactl_statements, stoactl_statements_len}};
    stoa_db_t *db = stoa_db_new(conninfo, tables, 1, 60000, 10);
    int rc = 0;
    for (size_t i = 0; i < STOA_ARRAY_LEN(counted); i++) {
        stoa_db_result_t *res;
        if (stoa_db_exec(db, b->ctl->arena,
                         &stoactl_statements[counted[i].statement], NULL,
                         &res) != STOA_OK ||
            stoa_db_rows(res) != 1) {
            fprintf(stderr, "stoactl backup check: counting %s: %s\n",
                    counted[i].table, stoa_db_last_error(db));
            rc = 1;
            break;
        }
        printf("%-22s %s\n", counted[i].table, stoa_db_value(res, 0, 0));
    }
    stoa_db_free(db);
    return rc;
}

/* Restores the latest backup into a scratch directory, starts a throwaway
 * server on it (private socket, no TCP, archiving off so it never writes
 * into the repository), counts rows, stops it and removes the copy. */
static int check(const backup_t *b)
{
    stoa_arena_t *arena = b->ctl->arena;
    backup_set_t *sets;
    size_t n;
    if (load_some_sets(b, "backup check", &sets, &n) != STOA_OK)
        return 1;
    const backup_set_t *latest = &sets[n - 1];
    const char *tmp = getenv("TMPDIR");
    char *scratch = stoa_arena_sprintf(arena, "%s/stoa-backup-check.XXXXXX",
                                       tmp && *tmp ? tmp : "/tmp");
    if (strlen(scratch) > 80 || !mkdtemp(scratch)) {
        fprintf(stderr, "stoactl backup check: no scratch directory: %s\n",
                strerror(errno));
        return 1;
    }
    const char *data = stoa_arena_sprintf(arena, "%s/data", scratch);
    const char *hba = stoa_arena_sprintf(arena, "%s/pg_hba.conf", scratch);
    int rc = 1;
    bool started = false;
    FILE *f;
    if (own_dir(b, scratch) != 0 || own_dir(b, data) != 0 ||
        !(f = fopen(hba, "w"))) {
        fprintf(stderr, "stoactl backup check: preparing %s: %s\n", scratch,
                strerror(errno));
        goto out;
    }
    /* Only the cluster's owner (and root) can enter the socket's
     * directory; inside it, no password is needed. */
    fputs("local all all trust\n", f);
    if (fclose(f) != 0 || (b->switch_user && chown(hba, b->uid, b->gid) != 0)) {
        fprintf(stderr, "stoactl backup check: writing %s failed\n", hba);
        goto out;
    }
    const char *path_arg = stoa_arena_sprintf(arena, "--pg1-path=%s", data);
    const char *set_arg = stoa_arena_sprintf(arena, "--set=%s", latest->label);
    const char *const extra[] = {path_arg,
                                 set_arg,
                                 "--no-delta",
                                 "--type=immediate",
                                 "--target-action=promote",
                                 "--archive-mode=off",
                                 NULL};
    int prc = pgbackrest(b, NULL, "restore", extra);
    if (prc != 0) {
        fprintf(stderr, "stoactl backup check: restoring %s failed (exit %d)\n",
                latest->label, prc);
        goto out;
    }
    const char *options = stoa_arena_sprintf(
        arena,
        RECOVERY_OPTIONS " -c port=" CHECK_PORT " -c listen_addresses= "
                         "-c unix_socket_directories=%s -c hba_file=%s "
                         "-c archive_mode=off -c logging_collector=off",
        scratch, hba);
    started = true;
    if (pg_ctl(b, data, "start", options) != 0 ||
        wait_ready(b, data) != STOA_OK) {
        fprintf(stderr,
                "stoactl backup check: the restored copy of %s did not "
                "start\n",
                latest->label);
        goto out;
    }
    printf("backup %s (%s, %s) restored into %s and started\n", latest->label,
           latest->type, format_time(arena, latest->stop), scratch);
    rc = count_rows(b, scratch);
out:
    if (started && pg_ctl(b, data, "stop", NULL) != 0)
        fprintf(stderr, "stoactl backup check: stopping the scratch server "
                        "failed\n");
    if (remove_tree(scratch) != 0)
        fprintf(stderr, "stoactl backup check: removing %s failed\n", scratch);
    if (rc == 0)
        printf("backup %s is good\n", latest->label);
    return rc;
}

/* --- restore ----------------------------------------------------------- */

static int restore(const backup_t *b, const char *when)
{
    stoactl_t *ctl = b->ctl;
    const stoa_conf_t *conf = ctl->conf;
    if (!*conf->pg_data_dir) {
        fprintf(stderr, "stoactl restore: pg_data_dir is empty\n");
        return 1;
    }
    int64_t target_us = 0;
    if (when && !parse_time(when, &target_us)) {
        fprintf(stderr,
                "stoactl restore: --time %s is not a valid time (expected "
                "e.g. 2026-12-01T18:30:00Z or 2026-12-01 19:30:00.5+01:00)\n",
                when);
        return 2;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (when &&
        target_us > (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000) {
        fprintf(stderr, "stoactl restore: --time %s is in the future\n", when);
        return 1;
    }
    backup_set_t *sets;
    size_t n;
    if (load_some_sets(b, "restore", &sets, &n) != STOA_OK)
        return 1;
    /* The latest backup that ended before the target: replay starts from
     * it. The stop time is rounded down to the second, so a target within
     * that second might precede the backup's consistent point. */
    const backup_set_t *set = &sets[n - 1];
    if (when) {
        set = NULL;
        for (size_t i = 0; i < n; i++)
            if ((sets[i].stop + 1) * 1000000 <= target_us)
                set = &sets[i];
        if (!set) {
            fprintf(stderr,
                    "stoactl restore: --time %s is before the end of the "
                    "oldest backup (%s): there is nothing to restore it "
                    "from\n",
                    when, format_time(ctl->arena, sets[0].stop));
            return 1;
        }
    }
    int rc;
    if (pg_running(b, conf->pg_data_dir)) {
        /* Replay to a time stops at the first commit after it; when none
         * was archived the server refuses to start. A transaction with an
         * id commits now (after the target), and pgbackrest check switches
         * to a new WAL segment and waits until the last one is archived,
         * so all committed so far is in the repository before the server
         * stops. */
        stoa_db_result_t *res;
        if (!ctl->db || stoa_db_exec(ctl->db, ctl->arena, STOACTL_SQL(WAL_MARK),
                                     NULL, &res) != STOA_OK) {
            fprintf(stderr,
                    "stoactl restore: Postgres runs but does not answer "
                    "(%s); nothing was changed\n",
                    ctl->db ? stoa_db_last_error(ctl->db) : "no connection");
            return 1;
        }
        stoa_buf_t ignored;
        stoa_buf_init(&ignored);
        rc = pgbackrest(b, &ignored, "check", NULL);
        stoa_buf_free(&ignored);
        if (rc != 0) {
            fprintf(stderr,
                    "stoactl restore: pgbackrest check failed (exit %d): WAL "
                    "is not being archived; nothing was changed\n",
                    rc);
            return 1;
        }
        if (pg_ctl(b, conf->pg_data_dir, "stop", NULL) != 0) {
            fprintf(stderr, "stoactl restore: Postgres did not stop; "
                            "nothing was changed\n");
            return 1;
        }
    } else {
        /* The disaster case: the server is down (or will not start). What
         * was archived is all there is. */
        printf("Postgres is not running: restoring from the repository as "
               "it is\n");
    }
    stoa_arena_t *arena = ctl->arena;
    const char *set_arg = stoa_arena_sprintf(arena, "--set=%s", set->label);
    int prc;
    if (when) {
        /* pgBackRest passes the target to recovery_target_time: UTC with
         * the microseconds, whatever zone it was given in. */
        time_t secs = (time_t)(target_us / 1000000);
        struct tm tm;
        char stamp[32];
        gmtime_r(&secs, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
        const char *target_arg =
            stoa_arena_sprintf(arena, "--target=%s.%06lld+00", stamp,
                               (long long)(target_us % 1000000));
        const char *const extra[] = {"--delta",
                                     set_arg,
                                     "--type=time",
                                     target_arg,
                                     "--target-action=promote",
                                     NULL};
        prc = pgbackrest(b, NULL, "restore", extra);
    } else {
        const char *const extra[] = {"--delta", set_arg, "--type=default",
                                     NULL};
        prc = pgbackrest(b, NULL, "restore", extra);
    }
    rc = 0;
    if (prc != 0) {
        fprintf(stderr,
                "stoactl restore: pgbackrest restore failed (exit "
                "%d); starting Postgres again\n",
                prc);
        rc = 1;
    }
    /* Started again whatever happened: a failed restore must not leave
     * the stack without its database when the old one can still run. */
    if (pg_ctl(b, conf->pg_data_dir, "start", RECOVERY_OPTIONS) != 0 ||
        wait_ready(b, conf->pg_data_dir) != STOA_OK) {
        fprintf(stderr,
                "stoactl restore: Postgres did not start (see its log); "
                "start it with pg_ctl start -D %s\n",
                conf->pg_data_dir);
        return 1;
    }
    if (rc == 0)
        printf("restored from backup %s to %s; Postgres is up\n", set->label,
               when ? when : "the end of the archived WAL");
    return rc;
}

int stoactl_backup(stoactl_t *ctl, int argc, char **argv)
{
    backup_t b;
    const char *type = "incr";
    if (argc == 1 && strcmp(argv[0], "list") == 0) {
        return setup(&b, ctl, "backup list") == STOA_OK ? list(&b) : 1;
    }
    if (argc == 1 && strcmp(argv[0], "check") == 0) {
        return setup(&b, ctl, "backup check") == STOA_OK ? check(&b) : 1;
    }
    if (argc == 2 && strcmp(argv[0], "--type") == 0) {
        type = argv[1];
        if (strcmp(type, "full") != 0 && strcmp(type, "diff") != 0 &&
            strcmp(type, "incr") != 0)
            return usage();
    } else if (argc != 0) {
        return usage();
    }
    return setup(&b, ctl, "backup") == STOA_OK ? take_backup(&b, type) : 1;
}

int stoactl_restore(stoactl_t *ctl, int argc, char **argv)
{
    const char *when = NULL;
    if (argc == 2 && strcmp(argv[0], "--time") == 0)
        when = argv[1];
    else if (!(argc == 0 || (argc == 1 && strcmp(argv[0], "--latest") == 0)))
        return usage();
    backup_t b;
    if (setup(&b, ctl, "restore") != STOA_OK)
        return 1;
    return restore(&b, when);
}
