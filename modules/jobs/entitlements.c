/* entitlements.c - billing.entitlements_fanout (stoa/entitlements.h): the
 * entitlements.changed events of a catalogue change.
 *
 * The users go in batches of FANOUT_USERS, each one transaction: the
 * batch's entitlements locks, then one INSERT of its events, then (for the
 * run's last full batch) the job that goes on after it. A run writes
 * FANOUT_RUN_BATCHES batches and hands on, so a catalogue of any size
 * never holds a worker thread, a transaction or the users' locks for long.
 * A worker killed mid-way leaves whole batches; the job runs again from
 * where its payload starts, and the events' ids, derived from the change
 * and the user, make a batch written twice write nothing twice. */
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/entitlements.h"
#include "stoa/json.h"
#include "stoa/log.h"
#include "stoa/outbox.h"

/* Users a batch locks and writes: well inside Postgres' lock table
 * (max_locks_per_transaction x max_connections, 12,800 slots at least). */
#define FANOUT_USERS 500
/* Batches one run writes before it hands on: a count, not a time, so a
 * run done again after a crash hands on at the same user as the first
 * (one continuation, not two chains). */
#define FANOUT_RUN_BATCHES 8

typedef struct {
    const char *plan_id;
    const char *price_id; /* NULL: everyone the plan entitles */
    const char *change;
} fanout_t;

/* The job that goes on after user `after`; keyed by change and user, so
 * a batch run twice queues one. */
static int queue_next(jobs_thread_t *t, const fanout_t *f, const char *after)
{
    stoa_jw_t *w = stoa_jw_arena(t->arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "plan_id", f->plan_id);
    if (f->price_id)
        stoa_jw_kv_string(w, "price_id", f->price_id);
    stoa_jw_kv_string(w, "change", f->change);
    stoa_jw_kv_string(w, "after", after);
    stoa_jw_object_close(w);
    const char *payload = stoa_jw_arena_text(t->arena, w);
    const char *key = stoa_arena_sprintf(t->arena, "%s:%s", f->change, after);
    if (!payload)
        return STOA_ERROR;
    return stoa_outbox_enqueue(t->db, t->arena, STOA_ENTITLEMENTS_FANOUT_KIND,
                               payload, key, 0);
}

/* One batch after `after` (NULL: the first), in its own transaction;
 * `last` gets its last user. *more: the batch was full. */
static int fanout_batch(jobs_thread_t *t, const fanout_t *f, const char *after,
                        char *last, bool hand_on, bool *more)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", FANOUT_USERS);
    const char *p[] = {f->plan_id, f->price_id, after, limit};
    stoa_db_result_t *users;
    *more = false;
    if (stoa_db_begin(t->db) != STOA_OK ||
        stoa_db_exec(t->db, t->arena, JOBS_SQL(ENTITLEMENTS_FANOUT_USERS), p,
                     &users) != STOA_OK)
        goto failed;
    int n = stoa_db_rows(users);
    if (n == 0)
        return stoa_db_commit(t->db);
    /* The ids as a Postgres array literal: uuids need no quoting. */
    stoa_buf_t ids;
    stoa_buf_init(&ids);
    for (int i = 0; i < n; i++)
        stoa_buf_printf(&ids, "%c%s", i ? ',' : '{',
                        stoa_db_value(users, i, 0));
    stoa_buf_puts(&ids, "}");
    const char *e[] = {stoa_arena_strdup(t->arena, ids.data), f->plan_id,
                       f->change};
    stoa_buf_free(&ids);
    snprintf(last, STOA_UUID_STR_LEN + 1, "%s", stoa_db_value(users, n - 1, 0));
    *more = n == FANOUT_USERS;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(ENTITLEMENTS_FANOUT_EVENTS), e,
                     NULL) != STOA_OK ||
        (*more && hand_on && queue_next(t, f, last) != STOA_OK) ||
        stoa_db_commit(t->db) != STOA_OK)
        goto failed;
    return STOA_OK;
failed:
    stoa_db_rollback(t->db);
    return STOA_AGAIN;
}

int jobs_entitlements_fanout(jobs_thread_t *t, const jobs_job_t *job, char *err,
                             size_t errlen)
{
    const stoa_json_t *pl = job->payload;
    const stoa_json_t *price = stoa_json_get(pl, "price_id");
    fanout_t f = {
        .plan_id = stoa_json_string(stoa_json_get(pl, "plan_id")),
        .price_id = stoa_json_string(price),
        .change = stoa_json_string(stoa_json_get(pl, "change")),
    };
    const char *after = stoa_json_string(stoa_json_get(pl, "after"));
    if (!stoa_uuid_valid(f.plan_id) || !stoa_uuid_valid(f.change) ||
        (after && !stoa_uuid_valid(after)) ||
        (price && !stoa_json_is_null(price) && !f.price_id) ||
        (f.price_id && (!*f.price_id || strlen(f.price_id) > 255))) {
        snprintf(err, errlen, "%s needs plan_id and change", job->kind);
        return STOA_DECLINED;
    }
    /* Each batch's results in a scratch arena of this run (the thread's
     * arena holds the job itself). */
    jobs_thread_t bt = *t;
    bt.arena = stoa_arena_create(0);
    char last[STOA_UUID_STR_LEN + 1] = "";
    int rc;
    for (int batch = 1;; batch++) {
        bool hand_on = batch == FANOUT_RUN_BATCHES, more;
        rc = fanout_batch(&bt, &f, after, last, hand_on, &more);
        stoa_arena_reset(bt.arena);
        if (rc != STOA_OK) {
            snprintf(err, errlen, "batch: %s", stoa_db_last_error(bt.db));
            break;
        }
        if (!more || hand_on)
            break;
        after = last;
    }
    stoa_arena_destroy(bt.arena);
    return rc;
}
