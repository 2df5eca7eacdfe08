/* main.c - stoa-jobs: the outbox worker. Connects, LISTENs on the outbox
 * channel (with a polling fallback, since LISTEN does not survive
 * transaction pooling) and leaves cleanly on SIGTERM. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stoa/conf.h"
#include "stoa/db.h"
#include "stoa/log.h"
#include "stoa/outbox.h"

#define JOBS_CHANNEL "stoa_jobs"

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Count of runnable jobs: what a wake-up finds to do. */
static const stoa_db_statement_t jobs_statements[] = {
    {"jobs_pending",
     "SELECT count(*) FROM jobs.outbox WHERE done_at IS NULL AND "
     "dead_at IS NULL AND run_at <= now()",
     0},
};

static void report_pending(stoa_db_t *db, stoa_arena_t *arena)
{
    stoa_db_result_t *res;
    if (stoa_db_exec(db, arena, "jobs_pending", NULL, &res) == STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "pending jobs: %s", stoa_db_value(res, 0, 0));
    stoa_arena_reset(arena);
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else {
            fprintf(stderr, "usage: stoa-jobs [--config FILE]\n");
            return 2;
        }
    }
    stoa_conf_t conf;
    char err[512];
    if (stoa_conf_load(&conf, config, err, sizeof(err)) != STOA_OK) {
        fprintf(stderr, "stoa-jobs: configuration error: %s\n", err);
        stoa_conf_free(&conf);
        return 1;
    }
    if (stoa_log_open("stoa-jobs", conf.log_dir, (int)conf.log_level) !=
        STOA_OK) {
        fprintf(stderr, "stoa-jobs: cannot open log in %s\n", conf.log_dir);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    size_t nstatements = stoa_outbox_statements_len + 1;
    stoa_db_statement_t statements[8];
    memcpy(statements, stoa_outbox_statements,
           stoa_outbox_statements_len * sizeof(statements[0]));
    statements[stoa_outbox_statements_len] = jobs_statements[0];
    stoa_db_t *db = stoa_db_new(conf.database_url, statements, nstatements,
                                conf.db_statement_timeout_ms,
                                conf.db_connect_timeout_s);
    stoa_arena_t *arena = stoa_arena_create(0);
    bool listening = false;
    stoa_log(STOA_LOG_INFO, "started");
    while (!stop_requested) {
        if (!listening) {
            if (stoa_db_listen(db, JOBS_CHANNEL) == STOA_OK) {
                listening = true;
                stoa_log(STOA_LOG_INFO, "listening on %s", JOBS_CHANNEL);
                report_pending(db, arena);
            } else {
                struct timespec ts = {0, 500 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        struct pollfd pfd = {stoa_db_socket(db), POLLIN, 0};
        int n = poll(&pfd, 1, (int)conf.jobs_poll_interval_ms);
        if (n < 0 && errno == EINTR)
            continue;
        int count = 0;
        if (stoa_db_drain_notifications(db, &count) != STOA_OK) {
            stoa_log(STOA_LOG_WARN, "lost the Postgres connection; retrying");
            listening = false;
            continue;
        }
        /* A wake-up or the poll interval: look for due work. */
        report_pending(db, arena);
    }
    stoa_log(STOA_LOG_INFO, "stopping");
    stoa_arena_destroy(arena);
    stoa_db_free(db);
    stoa_conf_free(&conf);
    stoa_log_close();
    return 0;
}
