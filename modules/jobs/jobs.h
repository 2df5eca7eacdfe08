/* jobs.h - the outbox worker: job kinds, handlers and their context. */
#ifndef JOBS_H
#define JOBS_H

#include "stoa/arena.h"
#include <pthread.h>
#include <signal.h>

#include "stoa/conf.h"
#include "stoa/ctx.h"
#include "stoa/db.h"
#include "stoa/json.h"
#include "stoa/kv.h"

typedef struct {
    const stoa_conf_t *conf;
    stoa_db_t *db; /* this thread's connection */
    stoa_kv_t *kv; /* this thread's Redis connection */
    stoa_arena_t *arena;
    const char *worker_id; /* "host:pid:thread" */
} jobs_thread_t;

typedef struct {
    const char *id;
    const char *kind;
    const stoa_json_t *payload;
    const char *payload_text;
    int attempt; /* 1 for the first run */
    int max_attempts;
    const char *dedupe_key;
    const char *created; /* unix seconds */
} jobs_job_t;

/* A handler returns STOA_OK (done), STOA_AGAIN (retry later with the
 * kind's backoff) or STOA_DECLINED (permanent failure: dead at once).
 * On failure it writes a short reason into err. */
typedef int jobs_handler_t(jobs_thread_t *t, const jobs_job_t *job, char *err,
                           size_t errlen);
typedef jobs_handler_t *jobs_handler_fn;

typedef struct {
    const char *kind;
    jobs_handler_fn handler;
    /* Retry delays in seconds for attempts 1, 2, ...; NULL: attempt^4
     * seconds. The last entry repeats. */
    const int *schedule;
    size_t schedule_len;
    /* The handler only talks to Postgres, in a statement or two, and is
     * done in milliseconds. Such jobs are claimed many at a time and their
     * outcomes written together; a thread holds few of any other kind, so
     * a slow one never keeps others waiting behind it (see main.c). */
    bool quick;
} jobs_kind_t;

/* The delay before the next attempt after `attempt` failed: the kind's
 * schedule or attempt^4 s, each with +-10% jitter. */
long jobs_backoff_s(const jobs_kind_t *kind, int attempt);

const jobs_kind_t *jobs_kind_find(const char *kind);

/* Handlers (each a jobs_handler_t, declared through it). */
jobs_handler_t jobs_email_send;
jobs_handler_t jobs_event_fanout;
jobs_handler_t jobs_webhook_deliver;
jobs_handler_t jobs_cleanup;
jobs_handler_t jobs_revocation_sync;
jobs_handler_t jobs_password_reset;
jobs_handler_t jobs_update_fanout;
jobs_handler_t jobs_update_mail;
jobs_handler_t jobs_entitlements_fanout;
jobs_handler_t jobs_realtime_publish;
jobs_handler_t jobs_realtime_close;
/* The index-th URL of a comma-separated list (realtime_publish_url),
 * without its spaces, into out; false past the last one or when it does
 * not fit in outlen. */
bool jobs_realtime_url_at(const char *list, size_t index, char *out,
                          size_t outlen);

/* The live channel's share of a domain event (the "event" job's payload,
 * of type `type`): a realtime.publish row for the events it carries, to
 * the user or the admins (jobs/realtime.c); STOA_OK for the others. */
int jobs_realtime_route_event(jobs_thread_t *t, const jobs_job_t *job,
                              const char *type, char *err, size_t errlen);
jobs_handler_t jobs_analytics_partitions;
jobs_handler_t jobs_analytics_rollup;

/* Serves the host's metrics on metrics_listen from a thread of its own
 * (jobs/scrape.c) until *stop: kinds (nkinds, borrowed for the process's
 * life) are the job kinds every scrape lists. STOA_OK with *thread to
 * join; STOA_DECLINED when metrics_listen is empty; STOA_ERROR when it
 * cannot listen (logged). A ctx without pools (stoa-jobs --scrape-only:
 * the configuration alone) serves no outbox figures and never connects. */
int jobs_scrape_start(stoa_ctx_t *ctx, const char *const *kinds, size_t nkinds,
                      const volatile sig_atomic_t *stop, pthread_t *thread);

/* Mail: renders template `name` with data (a JSON object) and sends it
 * to `to` through smtp_url (or writes a .eml under file://). message_key
 * makes the Message-ID and the file name stable across retries. */
int jobs_mail_send(jobs_thread_t *t, const char *name, const char *to,
                   const stoa_json_t *data, const char *message_key, char *err,
                   size_t errlen);

#include "statements.h"

#endif
