/* main.c - stoa-jobs: the outbox worker.
 *
 * The main thread holds a direct Postgres connection that LISTENs on the
 * outbox channel (and polls, since LISTEN does not survive PgBouncer's
 * transaction pooling) and enqueues scheduled jobs; jobs_concurrency
 * threads, each with its own connection, claim and run jobs. SIGTERM lets
 * each thread finish the job in hand. A heartbeat thread extends the
 * leases of every job this process holds; a job whose worker dies is
 * claimed again when its lease runs out, seconds later. With
 * --scrape-only it serves the host's metrics scrape alone (scrape_only). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/ctx.h"
#include "stoa/entitlements.h"
#include "stoa/log.h"
#include "stoa/mail.h"
#include "stoa/mail_link.h"
#include "stoa/metrics.h"
#include "stoa/outbox.h"
#include "stoa/realtime.h"
#include "stoa/updates.h"

#define JOBS_CHANNEL "stoa_jobs"
/* Leases are short and renewed: a job held by a killed worker (claimed
 * and waiting behind the one in hand, or in flight) is free again within
 * LEASE_S, while a job that runs long keeps its lease for as long as its
 * process lives. Three heartbeats fit in a lease, so one slow round trip
 * to Postgres does not hand a live job to another worker. */
#define LEASE_S 15
#define HEARTBEAT_S 5
/* A thread claims CLAIM_MIN jobs at a time, twice as many after each full
 * claim that held fewer than CLAIM_MIN slow jobs (see jobs_kind_t), up to
 * CLAIM_MAX: a backlog of quick jobs costs two statements (the claim, the
 * outcomes) per CLAIM_MAX jobs. Slow ones are spread over the threads a
 * few at a time: a thread keeps CLAIM_MIN of a claim's slow jobs and gives
 * the rest back at once, and then claims half as many. An empty claim
 * brings a thread back to CLAIM_MIN. */
#define CLAIM_MIN 4
#define CLAIM_MAX 128

static volatile sig_atomic_t stop_requested;
/* Set once every worker thread has returned: the heartbeat outlives them,
 * so jobs finishing after SIGTERM keep their leases to the end. */
static bool heartbeat_stop;
static pthread_mutex_t heartbeat_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t heartbeat_cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static unsigned long wake_generation;

static const int webhook_schedule[] = {5, 300, 1800, 7200, 18000, 36000, 36000};
/* A re-sync waits for Redis to come back: retried every 2 s. */
static const int resync_schedule[] = {2};
/* Live events are worth little late: a few quick tries (jobs/realtime.c
 * gives up after the fourth). */
static const int realtime_schedule[] = {1, 2, 5, 10};

/* "noop" does nothing and succeeds: operators enqueue it to see that a
 * worker is alive and how fast the outbox drains (docs/operations.md). */
static int noop_run(jobs_thread_t *t, const jobs_job_t *job, char *err,
                    size_t errlen)
{
    (void)t, (void)job, (void)err, (void)errlen;
    return STOA_OK;
}

static const jobs_kind_t kinds[] = {
    {STOA_MAIL_JOB_KIND, jobs_email_send, NULL, 0, false},
    {STOA_MAIL_LINK_RESET_JOB_KIND, jobs_password_reset, NULL, 0, false},
    /* One INSERT ... SELECT into the outbox. */
    {"event", jobs_event_fanout, NULL, 0, true},
    {"webhook.deliver", jobs_webhook_deliver, webhook_schedule,
     STOA_ARRAY_LEN(webhook_schedule), false},
    {"maintenance.cleanup", jobs_cleanup, NULL, 0, false},
    {"auth.revocation_sync", jobs_revocation_sync, resync_schedule,
     STOA_ARRAY_LEN(resync_schedule), false},
    {"noop", noop_run, NULL, 0, true},
    /* A batch of recipients: a few Postgres statements, but up to a
     * thousand rows each, so not counted among the quick. */
    {STOA_UPDATES_FANOUT_KIND, jobs_update_fanout, NULL, 0, false},
    {STOA_UPDATES_MAIL_KIND, jobs_update_mail, NULL, 0, false},
    /* Batches of users, each a lock per user and one INSERT. */
    {STOA_ENTITLEMENTS_FANOUT_KIND, jobs_entitlements_fanout, NULL, 0, false},
    /* One kept-alive request to nginx on a unix socket each. */
    {STOA_REALTIME_JOB_PUBLISH, jobs_realtime_publish, realtime_schedule,
     STOA_ARRAY_LEN(realtime_schedule), true},
    {STOA_REALTIME_JOB_CLOSE, jobs_realtime_close, realtime_schedule,
     STOA_ARRAY_LEN(realtime_schedule), true},
    /* DDL and whole-hour recomputations: not quick. */
    {"analytics.partitions", jobs_analytics_partitions, NULL, 0, false},
    {"analytics.rollup", jobs_analytics_rollup, NULL, 0, false},
};

/* Recurring jobs: one outbox row per slot of `every_s` seconds, or of the
 * seconds in the config key at `every_conf` when that is not 0. */
static const struct {
    const char *kind;
    long every_s;
    size_t every_conf;
} schedule[] = {
    {"maintenance.cleanup", 3600, 0},
    {"auth.revocation_sync", 60, 0},
    {"analytics.partitions", 3600, 0},
    {"analytics.rollup", 0, offsetof(stoa_conf_t, analytics_rollup_interval_s)},
};

const jobs_kind_t *jobs_kind_find(const char *kind)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(kinds); i++)
        if (strcmp(kinds[i].kind, kind) == 0)
            return &kinds[i];
    return NULL;
}

long jobs_backoff_s(const jobs_kind_t *kind, int attempt)
{
    double base;
    if (kind && kind->schedule) {
        size_t i = attempt < 1 ? 0 : (size_t)attempt - 1;
        if (i >= kind->schedule_len)
            i = kind->schedule_len - 1;
        base = kind->schedule[i];
    } else {
        double a = attempt < 1 ? 1 : attempt;
        base = a * a * a * a;
    }
    uint32_t r;
    stoa_random_bytes(&r, sizeof(r));
    double jitter = 0.9 + 0.2 * ((double)r / 4294967295.0);
    long s = (long)(base * jitter + 0.5);
    return s < 1 ? 1 : s;
}

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* SIGTERM and SIGINT set stop_requested, and are blocked in this thread
 * (and so in every thread it starts) until *old is restored. */
static void catch_stop(sigset_t *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t block;
    stoa_signals_block_stop(&block, old);
}

static void wake_all(void)
{
    pthread_mutex_lock(&wake_lock);
    wake_generation++;
    pthread_cond_broadcast(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

/* Wakes one idle worker thread: the one a notification needs. A thread
 * whose claim comes back full wakes the next (worker_main), so a burst
 * draws in as many threads as it has work for, and a single job does not
 * set every idle thread claiming. */
static void wake_one(void)
{
    pthread_mutex_lock(&wake_lock);
    wake_generation++;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

static void wait_for_work(long ms, unsigned long seen)
{
    struct timespec ts = stoa_deadline_ms(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&wake_lock);
    while (!stop_requested && wake_generation == seen)
        if (pthread_cond_timedwait(&wake_cond, &wake_lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&wake_lock);
}

typedef struct {
    const stoa_conf_t *conf;
    stoa_ctx_t *ctx;
    int index;
    char worker_id[128];
    pthread_t thread;
} worker_t;

/* The jobs of one claim in a worker thread. Successes are written
 * together (record_done): once the claim's quick jobs have run, and after
 * each slow one, so no slow job stands between a job's effect and its
 * record.
 * A job whose success is not yet written keeps its lease (the heartbeat)
 * and, if its worker dies, runs again after the lease, like a job in
 * flight: handlers are idempotent. Failures are written at once, one by
 * one, as before (they are few, and each has its own delay and reason). */
typedef struct {
    jobs_thread_t *t;
    stoa_db_result_t *res;
    int rows;            /* jobs claimed */
    int done[CLAIM_MAX]; /* rows that succeeded, not yet written */
    int ndone;
    stoa_buf_t ids; /* scratch: a bigint[] literal */
} batch_t;

/* Fills b->ids with the ids of rows[0..n) as a bigint[] literal (ids are
 * digits from Postgres: nothing to quote). */
static const char *id_array(batch_t *b, const int *rows, int n)
{
    stoa_buf_reset(&b->ids);
    stoa_buf_append(&b->ids, "{", 1);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            stoa_buf_append(&b->ids, ",", 1);
        stoa_buf_puts(&b->ids, stoa_db_value(b->res, rows[i], CLAIM_COL_ID));
    }
    stoa_buf_append(&b->ids, "}", 1);
    return b->ids.data;
}

static void record_done(batch_t *b)
{
    if (b->ndone == 0)
        return;
    jobs_thread_t *t = b->t;
    const char *p[] = {id_array(b, b->done, b->ndone), t->worker_id};
    int rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(JOBS_DONE), p, NULL);
    if (rc != STOA_OK) {
        /* Once more, on a new connection if this one broke: running it
         * twice is harmless (a job already recorded is no longer held). */
        struct timespec ts = {0, STOA_DB_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
        rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(JOBS_DONE), p, NULL);
    }
    if (rc == STOA_OK) {
        for (int i = 0; i < b->ndone; i++)
            stoa_log(STOA_LOG_INFO, "job %s (%s) done on attempt %s",
                     stoa_db_value(b->res, b->done[i], CLAIM_COL_ID),
                     stoa_db_value(b->res, b->done[i], CLAIM_COL_KIND),
                     stoa_db_value(b->res, b->done[i], CLAIM_COL_ATTEMPTS));
    } else {
        /* The jobs run again once their leases lapse (when this process
         * stops, or its heartbeat cannot reach Postgres either): handlers
         * are idempotent, so that is safe. */
        stoa_log(STOA_LOG_ERR,
                 "could not record the outcome of %d jobs (first %s)", b->ndone,
                 stoa_db_value(b->res, b->done[0], CLAIM_COL_ID));
    }
    b->ndone = 0;
}

/* Gives back the claimed rows[0..n) that were not started, without
 * spending their attempts (if this fails, their lease still hands them
 * on). */
static void release(batch_t *b, const int *rows, int n)
{
    if (n <= 0)
        return;
    const char *p[] = {id_array(b, rows, n), b->t->worker_id};
    if (stoa_db_exec(b->t->db, b->t->arena, JOBS_SQL(JOBS_RELEASE), p, NULL) !=
        STOA_OK)
        stoa_log(STOA_LOG_WARN, "%d jobs left to their lease (first %s)", n,
                 stoa_db_value(b->res, rows[0], CLAIM_COL_ID));
}

static void finish(batch_t *b, int row, const jobs_job_t *job, int rc,
                   const char *err)
{
    if (rc == STOA_OK) {
        b->done[b->ndone++] = row;
        return;
    }
    jobs_thread_t *t = b->t;
    const jobs_kind_t *kind = jobs_kind_find(job->kind);
    int db_rc;
    bool dead = rc == STOA_DECLINED || job->attempt >= job->max_attempts;
    if (kind)
        stoa_metrics_job((size_t)(kind - kinds),
                         dead ? STOA_METRICS_JOB_FAILED
                              : STOA_METRICS_JOB_RETRIED);
    if (dead) {
        const char *p[] = {job->id, t->worker_id, err};
        db_rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(JOBS_DEAD), p, NULL);
        stoa_log(STOA_LOG_ERR, "job %s (%s) is dead after %d attempts: %s",
                 job->id, job->kind, job->attempt, err);
    } else {
        char delay[24];
        snprintf(delay, sizeof(delay), "%ld",
                 jobs_backoff_s(kind, job->attempt));
        const char *p[] = {job->id, t->worker_id, delay, err};
        db_rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(JOBS_RETRY), p, NULL);
        stoa_log(STOA_LOG_WARN,
                 "job %s (%s) attempt %d failed, retry in %s s: %s", job->id,
                 job->kind, job->attempt, delay, err);
    }
    if (db_rc != STOA_OK)
        /* The lease runs out and the job is claimed again: handlers are
         * idempotent, so that is safe. */
        stoa_log(STOA_LOG_ERR, "could not record the outcome of job %s",
                 job->id);
}

static void run_job(batch_t *b, int row)
{
    jobs_thread_t *t = b->t;
    const stoa_db_result_t *res = b->res;
    jobs_job_t job;
    memset(&job, 0, sizeof(job));
    job.id = stoa_db_value(res, row, CLAIM_COL_ID);
    job.kind = stoa_db_value(res, row, CLAIM_COL_KIND);
    job.payload_text = stoa_db_value(res, row, CLAIM_COL_PAYLOAD);
    job.attempt = atoi(stoa_db_value(res, row, CLAIM_COL_ATTEMPTS));
    job.max_attempts = atoi(stoa_db_value(res, row, CLAIM_COL_MAX_ATTEMPTS));
    job.dedupe_key = stoa_db_value(res, row, CLAIM_COL_DEDUPE_KEY);
    job.created = stoa_db_value(res, row, CLAIM_COL_CREATED);
    char err[512] = "";
    stoa_json_t *payload = NULL;
    int rc;
    const jobs_kind_t *kind = jobs_kind_find(job.kind);
    if (!kind) {
        snprintf(err, sizeof(err), "unknown job kind");
        rc = STOA_DECLINED;
    } else if (stoa_json_parse(t->arena, job.payload_text,
                               strlen(job.payload_text), STOA_JSON_MAX_DEPTH,
                               &payload, err, sizeof(err)) != STOA_OK) {
        rc = STOA_DECLINED;
    } else {
        job.payload = payload;
        rc = kind->handler(t, &job, err, sizeof(err));
        stoa_metrics_job((size_t)(kind - kinds), STOA_METRICS_JOB_RUN);
    }
    finish(b, row, &job, rc, err[0] ? err : "failed");
}

/* Runs one claim's jobs: the quick ones first, in claim order, so that
 * none waits behind a slow one; then the slow ones, in claim order. Of
 * these a thread keeps CLAIM_MIN and gives the rest back before it starts,
 * to threads (here or elsewhere) that are free. When stopping, jobs
 * claimed but not started go back at once. Returns the number of the
 * claim's slow jobs (those beyond CLAIM_MIN were given back). */
static int run_batch(batch_t *b)
{
    int slow_rows[CLAIM_MAX], back[CLAIM_MAX];
    int nslow = 0, nback = 0;
    for (int i = 0; i < b->rows; i++) {
        const jobs_kind_t *kind =
            jobs_kind_find(stoa_db_value(b->res, i, CLAIM_COL_KIND));
        /* An unknown kind fails at once: as quick as any. */
        if (kind && !kind->quick)
            slow_rows[nslow++] = i;
    }
    int keep = nslow > CLAIM_MIN ? CLAIM_MIN : nslow;
    release(b, slow_rows + keep, nslow - keep);
    if (nslow > keep)
        wake_all();
    int next_slow = 0;
    for (int i = 0; i < b->rows; i++) {
        if (next_slow < nslow && slow_rows[next_slow] == i) {
            next_slow++;
            continue;
        }
        if (stop_requested)
            back[nback++] = i;
        else
            run_job(b, i);
    }
    record_done(b);
    for (int k = 0; k < keep; k++) {
        if (stop_requested) {
            back[nback++] = slow_rows[k];
            continue;
        }
        run_job(b, slow_rows[k]);
        record_done(b);
    }
    release(b, back, nback);
    return nslow;
}

/* How long an idle worker waits: the poll interval, or less when a job
 * falls due sooner (a delayed job, such as closing a revoked session's
 * live channel two seconds on, runs when it is due, not a poll later). */
static long idle_wait_ms(jobs_thread_t *t)
{
    long poll = t->conf->jobs_poll_interval_ms;
    char horizon[24];
    snprintf(horizon, sizeof(horizon), "%ld", poll / 1000 + 1);
    const char *p[] = {horizon};
    stoa_db_result_t *res;
    const char *next = NULL;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(JOBS_NEXT_DUE), p, &res) ==
        STOA_OK)
        next = stoa_db_value(res, 0, 0);
    long due = next ? atol(next) : poll;
    stoa_arena_reset(t->arena);
    return due < 1 ? 1 : due < poll ? due : poll;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const stoa_conf_t *conf = w->conf;
    jobs_thread_t t;
    memset(&t, 0, sizeof(t));
    t.conf = conf;
    t.worker_id = w->worker_id;
    t.arena = stoa_arena_create(0);
    /* The pools hold one connection of each kind per worker thread: a
     * worker keeps its own for its whole life. */
    t.db = stoa_ctx_db_take(w->ctx, STOA_CTX_WAIT_MS);
    t.kv = stoa_ctx_kv_take(w->ctx, STOA_CTX_WAIT_MS);
    batch_t b;
    memset(&b, 0, sizeof(b));
    b.t = &t;
    stoa_buf_init(&b.ids);
    char lease[16];
    snprintf(lease, sizeof(lease), "%d", LEASE_S);
    int claim = CLAIM_MIN;
    while (!stop_requested) {
        pthread_mutex_lock(&wake_lock);
        unsigned long seen = wake_generation;
        pthread_mutex_unlock(&wake_lock);
        char limit[16];
        snprintf(limit, sizeof(limit), "%d", claim);
        const char *p[] = {t.worker_id, lease, limit};
        int rc = stoa_db_exec(t.db, t.arena, JOBS_SQL(JOBS_CLAIM), p, &b.res);
        int rows = rc == STOA_OK ? stoa_db_rows(b.res) : 0;
        if (rows > claim) /* cannot happen (LIMIT); b.done has room for claim */
            rows = claim;
        b.rows = rows;
        b.ndone = 0;
        /* More may be waiting behind a full claim: another thread looks. */
        if (rows == claim)
            wake_one();
        int slow = rows > 0 ? run_batch(&b) : 0;
        if (rows == 0)
            claim = CLAIM_MIN;
        else if (slow > CLAIM_MIN) /* some were given back */
            claim = claim / 2 < CLAIM_MIN ? CLAIM_MIN : claim / 2;
        else if (rows == claim && slow < CLAIM_MIN)
            claim = claim * 2 > CLAIM_MAX ? CLAIM_MAX : claim * 2;
        stoa_arena_reset(t.arena);
        if (rows == 0)
            wait_for_work(rc == STOA_OK ? idle_wait_ms(&t) : 500, seen);
    }
    stoa_buf_free(&b.ids);
    stoa_ctx_db_give(w->ctx, t.db);
    stoa_ctx_kv_give(w->ctx, t.kv);
    stoa_arena_destroy(t.arena);
    stoa_log_thread_done();
    return NULL;
}

typedef struct {
    stoa_ctx_t *ctx;
    /* The worker ids of this process as a Postgres text[] literal. */
    char *worker_ids;
    pthread_t thread;
} heartbeat_t;

/* Appends s to out as a double-quoted element of an array literal. */
static void array_element(stoa_buf_t *out, const char *s)
{
    stoa_buf_append(out, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            stoa_buf_append(out, "\\", 1);
        stoa_buf_append(out, s, 1);
    }
    stoa_buf_append(out, "\"", 1);
}

static void *heartbeat_main(void *arg)
{
    heartbeat_t *hb = arg;
    stoa_db_t *db = stoa_ctx_db_take(hb->ctx, STOA_CTX_WAIT_MS);
    stoa_arena_t *arena = stoa_arena_create(0);
    char lease[16];
    snprintf(lease, sizeof(lease), "%d", LEASE_S);
    pthread_mutex_lock(&heartbeat_lock);
    while (!heartbeat_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += HEARTBEAT_S;
        while (!heartbeat_stop &&
               pthread_cond_timedwait(&heartbeat_cond, &heartbeat_lock, &ts) !=
                   ETIMEDOUT)
            ;
        if (heartbeat_stop)
            break;
        pthread_mutex_unlock(&heartbeat_lock);
        const char *p[] = {hb->worker_ids, lease};
        /* A failed renewal is retried at the next beat; if Postgres stays
         * away longer than a lease, another worker may run the job too,
         * which handlers allow (they are idempotent). */
        if (!db)
            db = stoa_ctx_db_take(hb->ctx, STOA_CTX_WAIT_MS);
        if (!db || stoa_db_exec(db, arena, JOBS_SQL(JOBS_HEARTBEAT), p, NULL) !=
                       STOA_OK)
            stoa_log(STOA_LOG_WARN, "could not renew the job leases");
        stoa_arena_reset(arena);
        pthread_mutex_lock(&heartbeat_lock);
    }
    pthread_mutex_unlock(&heartbeat_lock);
    if (db)
        stoa_ctx_db_give(hb->ctx, db);
    stoa_arena_destroy(arena);
    stoa_log_thread_done();
    return NULL;
}

static void enqueue_scheduled(const stoa_conf_t *conf, stoa_db_t *db,
                              stoa_arena_t *arena)
{
    int64_t now = stoa_unix_time();
    for (size_t i = 0; i < STOA_ARRAY_LEN(schedule); i++) {
        long every = schedule[i].every_s;
        if (schedule[i].every_conf)
            memcpy(&every, (const char *)conf + schedule[i].every_conf,
                   sizeof(every));
        char slot[48];
        snprintf(slot, sizeof(slot), "slot:%lld", (long long)(now / every));
        const char *p[] = {schedule[i].kind, slot};
        if (stoa_db_exec(db, arena, JOBS_SQL(JOBS_SCHEDULE), p, NULL) !=
            STOA_OK)
            stoa_log(STOA_LOG_WARN, "could not enqueue %s", schedule[i].kind);
    }
    stoa_arena_reset(arena);
}

/* --scrape-only: the host's metrics scrape and nothing else, for a host
 * that runs no worker (a gateway host: its gateway.metrics and nginx's
 * stub_status). A command-line switch rather than a configuration key:
 * such a host has no stoa.conf of its own (its unit sets STOA_* only), and
 * the same stoa.conf must never turn a worker's jobs off by accident.
 * Only the configuration is loaded: no pools, so no Postgres or Redis
 * connection is ever made (a gateway host has no database access), no job
 * thread, no LISTEN; the scrape leaves the outbox figures out. SIGTERM
 * ends it within the scrape thread's poll (half a second). */
static int scrape_only(const char *config)
{
    static stoa_ctx_t ctx;
    char err[512];
    if (stoa_conf_load(&ctx.conf, config, err, sizeof(err)) != STOA_OK) {
        fprintf(stderr, "stoa-jobs: configuration error: %s\n", err);
        stoa_conf_free(&ctx.conf);
        return 1;
    }
    snprintf(ctx.program, sizeof(ctx.program), "stoa-metrics");
    if (stoa_log_open(ctx.program, ctx.conf.log_dir, (int)ctx.conf.log_level) !=
        STOA_OK) {
        fprintf(stderr, "stoa-jobs: cannot open log in %s\n", ctx.conf.log_dir);
        stoa_conf_free(&ctx.conf);
        return 1;
    }
    sigset_t old;
    catch_stop(&old);
    pthread_t thread;
    int rc = jobs_scrape_start(&ctx, NULL, 0, &stop_requested, &thread);
    if (rc != STOA_OK) {
        if (rc == STOA_DECLINED)
            stoa_log(STOA_LOG_ERR, "--scrape-only: metrics_listen is empty");
        stoa_log_close();
        stoa_conf_free(&ctx.conf);
        return 1;
    }
    /* Signals reach this thread only, and only inside sigsuspend: a
     * SIGTERM that came before it is pending, never lost. */
    while (!stop_requested)
        sigsuspend(&old);
    pthread_join(thread, NULL);
    stoa_log(STOA_LOG_INFO, "stopped");
    stoa_log_close();
    stoa_conf_free(&ctx.conf);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    bool only_scrape = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--scrape-only") == 0) {
            only_scrape = true;
        } else {
            fprintf(stderr,
                    "usage: stoa-jobs [--config FILE] [--scrape-only]\n");
            return 2;
        }
    }
    if (only_scrape)
        return scrape_only(config);
    static stoa_ctx_t ctx;
    char err[512];
    /* A first look at the configuration for the pool sizes. */
    stoa_conf_t probe;
    if (stoa_conf_load(&probe, config, err, sizeof(err)) != STOA_OK) {
        fprintf(stderr, "stoa-jobs: configuration error: %s\n", err);
        stoa_conf_free(&probe);
        return 1;
    }
    size_t nworkers = (size_t)probe.jobs_concurrency;
    stoa_conf_free(&probe);
    /* One connection of each per worker, three more Postgres for LISTEN,
     * the heartbeat and the metrics scrape. */
    if (stoa_ctx_open(&ctx, "stoa-jobs", config, jobs_statements,
                      jobs_statements_len, nworkers + 3, nworkers, 0, err,
                      sizeof(err)) != STOA_OK) {
        fprintf(stderr, "stoa-jobs: %s\n", err);
        return 1;
    }
    const stoa_conf_t *conf = &ctx.conf;
    /* The kinds' names label the job counters and the outbox figures. */
    static const char *kind_names[STOA_ARRAY_LEN(kinds)];
    for (size_t i = 0; i < STOA_ARRAY_LEN(kinds); i++)
        kind_names[i] = kinds[i].kind;
    if (*conf->metrics_dir) {
        stoa_metrics_labels_t labels = {NULL, NULL, 0, kind_names,
                                        STOA_ARRAY_LEN(kinds)};
        if (stoa_metrics_open(conf->metrics_dir, "jobs", &labels, err,
                              sizeof(err)) != STOA_OK)
            stoa_log(STOA_LOG_ERR, "metrics are off: %s", err);
    }
    /* Signals go to the main thread only: workers see stop_requested. */
    sigset_t old;
    catch_stop(&old);

    /* What this process queues (event fan-outs, live events), its own
     * threads run: the wake-up after such a commit wakes one of them, not
     * a NOTIFY that would come back to this process's listener. A worker
     * elsewhere finds such jobs at its next claim or poll. */
    stoa_db_wake_jobs_with(wake_one);

    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    worker_t *workers = stoa_xcalloc(nworkers, sizeof(*workers));
    stoa_buf_t ids;
    stoa_buf_init(&ids);
    stoa_buf_append(&ids, "{", 1);
    for (size_t i = 0; i < nworkers; i++) {
        workers[i].conf = conf;
        workers[i].ctx = &ctx;
        workers[i].index = (int)i;
        snprintf(workers[i].worker_id, sizeof(workers[i].worker_id),
                 "%s:%ld:%zu", host, (long)getpid(), i);
        if (i > 0)
            stoa_buf_append(&ids, ",", 1);
        array_element(&ids, workers[i].worker_id);
        if (pthread_create(&workers[i].thread, NULL, worker_main,
                           &workers[i]) != 0) {
            stoa_log(STOA_LOG_CRIT, "cannot start worker threads");
            return 1;
        }
    }

    stoa_buf_append(&ids, "}", 1);
    heartbeat_t heartbeat = {&ctx, ids.data, 0};
    if (pthread_create(&heartbeat.thread, NULL, heartbeat_main, &heartbeat) !=
        0) {
        stoa_log(STOA_LOG_CRIT, "cannot start the heartbeat thread");
        return 1;
    }

    pthread_t scrape_thread;
    bool scraping =
        jobs_scrape_start(&ctx, kind_names, STOA_ARRAY_LEN(kinds),
                          &stop_requested, &scrape_thread) == STOA_OK;

    pthread_sigmask(SIG_SETMASK, &old, NULL);

    stoa_db_t *db = stoa_ctx_db_take(&ctx, STOA_CTX_WAIT_MS);
    stoa_arena_t *arena = stoa_arena_create(0);
    bool listening = false;
    uint64_t last_schedule_us = stoa_now_us();
    stoa_log(STOA_LOG_INFO, "started with %zu worker threads", nworkers);
    if (!*conf->realtime_socket && !*conf->realtime_publish_url)
        stoa_log(STOA_LOG_NOTICE,
                 "realtime_socket and realtime_publish_url are empty: the "
                 "live channel is off (its jobs do nothing)");
    while (!stop_requested) {
        if (!listening) {
            if (stoa_db_listen(db, JOBS_CHANNEL) != STOA_OK) {
                struct timespec ts = {0, 500 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            listening = true;
            stoa_log(STOA_LOG_INFO, "listening on %s", JOBS_CHANNEL);
            enqueue_scheduled(conf, db, arena);
            wake_all();
        }
        struct pollfd pfd = {stoa_db_socket(db), POLLIN, 0};
        int n = poll(&pfd, 1, (int)conf->jobs_poll_interval_ms);
        if (n < 0 && errno == EINTR)
            continue;
        int count = 0;
        if (stoa_db_drain_notifications(db, &count) != STOA_OK) {
            stoa_log(STOA_LOG_WARN, "lost the Postgres connection; retrying");
            listening = false;
            continue;
        }
        /* Schedule slots are checked at least every few seconds, busy or
         * not (a stream of notifications must not starve them). */
        uint64_t now_us = stoa_now_us();
        if (now_us - last_schedule_us >= 5000000) {
            enqueue_scheduled(conf, db, arena);
            last_schedule_us = now_us;
        }
        /* A notification: one worker looks (and draws in more if it finds
         * a full claim). The poll interval: all of them, as a sweep. */
        if (n > 0)
            wake_one();
        else
            wake_all();
    }
    stoa_log(STOA_LOG_INFO, "stopping: waiting for jobs in hand");
    wake_all();
    for (size_t i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
    pthread_mutex_lock(&heartbeat_lock);
    heartbeat_stop = true;
    pthread_cond_signal(&heartbeat_cond);
    pthread_mutex_unlock(&heartbeat_lock);
    pthread_join(heartbeat.thread, NULL);
    if (scraping)
        pthread_join(scrape_thread, NULL);
    stoa_metrics_close();
    stoa_buf_free(&ids);
    free(workers);
    stoa_arena_destroy(arena);
    stoa_ctx_db_give(&ctx, db);
    stoa_ctx_close(&ctx);
    return 0;
}
