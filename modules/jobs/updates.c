/* updates.c - delivering a product update (stoa/updates.h).
 *
 * `updates.fanout` writes the recipients in batches, each batch one
 * transaction with its feed rows, its mail jobs, its live event and the
 * update's cursor (the last account written): an audience of any size
 * never holds one transaction, and a worker killed mid-way leaves whole
 * batches only; the job runs again from the cursor (a batch run twice
 * writes nothing twice). One run writes batches back to back for up to
 * FANOUT_RUN_MS, then queues its continuation in its last batch, so the
 * fan-out neither waits behind the mail jobs it queues nor holds a worker
 * thread for long. `updates.mail` sends one recipient's mail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "stoa/crypto.h"
#include "stoa/json.h"
#include "stoa/log.h"
#include "stoa/realtime.h"
#include "stoa/updates.h"

/* Recipients a batch writes: at most one live-event job's channels. */
#define FANOUT_BATCH 1000
/* How long one run of the fan-out writes batches before it hands on. */
#define FANOUT_RUN_MS 2000
#if FANOUT_BATCH > STOA_REALTIME_MAX_CHANNELS
#error "a batch's live event names every recipient of the batch"
#endif

static const stoa_db_statement_t *fanout_statement(stoa_audience_kind_t k)
{
    switch (k) {
    case STOA_AUDIENCE_USER_IDS:
        return JOBS_SQL(UPDATE_FANOUT_USER_IDS);
    case STOA_AUDIENCE_ROLE:
        return JOBS_SQL(UPDATE_FANOUT_ROLE);
    case STOA_AUDIENCE_PLAN:
        return JOBS_SQL(UPDATE_FANOUT_PLAN);
    case STOA_AUDIENCE_ALL:
        break;
    }
    return JOBS_SQL(UPDATE_FANOUT_ALL);
}

/* update.created's data: the update as its recipients' feed shows it,
 * with the body's first 280 characters only (body_truncated says whether
 * that is all of it): nchan keeps each event once per recipient's channel
 * for the reconnect buffer, so an event stays small however long the body;
 * the feed (GET /v1/updates) has the whole of it. */
static char *event_data(jobs_thread_t *t, const char *id,
                        const stoa_db_result_t *up)
{
    stoa_jw_t *w = stoa_jw_arena(t->arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", id);
    stoa_jw_kv_string(w, "title", stoa_db_value(up, 0, UPDATE_COL_TITLE));
    stoa_jw_kv_string(w, "body_preview",
                      stoa_db_value(up, 0, UPDATE_COL_BODY_PREVIEW));
    stoa_jw_kv_bool(
        w, "body_truncated",
        strcmp(stoa_db_value(up, 0, UPDATE_COL_BODY_TRUNCATED), "t") == 0);
    stoa_jw_kv_bool(
        w, "action_required",
        strcmp(stoa_db_value(up, 0, UPDATE_COL_ACTION_REQUIRED), "t") == 0);
    stoa_jw_kv_string(w, "created_at",
                      stoa_db_value(up, 0, UPDATE_COL_CREATED_AT));
    stoa_jw_object_close(w);
    return stoa_jw_arena_text(t->arena, w);
}

/* "u.<id>" for each id of the comma-separated list (ids from Postgres). */
static const char **channels_of(jobs_thread_t *t, char *ids, size_t *n)
{
    size_t cap = 1;
    for (const char *p = ids; *p; p++)
        cap += *p == ',';
    const char **out = stoa_arena_alloc(t->arena, cap * sizeof(*out));
    *n = 0;
    for (char *save = NULL, *id = strtok_r(ids, ",", &save); id;
         id = strtok_r(NULL, ",", &save))
        out[(*n)++] = stoa_realtime_channel_user(t->arena, id);
    return out;
}

/* One batch, in its own transaction. *more: a full batch was written
 * (another may follow). With hand_on, a full batch also queues the job
 * that goes on from here. */
static int fanout_batch(jobs_thread_t *t, const char *id,
                        const stoa_db_result_t *up, stoa_audience_kind_t kind,
                        bool hand_on, bool *more, char *err, size_t errlen)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", FANOUT_BATCH);
    const char *p[] = {id, limit};
    const char *q[] = {id};
    stoa_db_result_t *lock, *res;
    *more = false;
    if (stoa_db_begin(t->db) != STOA_OK ||
        stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_FANOUT_LOCK), q, &lock) !=
            STOA_OK)
        goto failed;
    /* Gone, or finished by an earlier run of this job. */
    if (stoa_db_rows(lock) == 0 || strcmp(stoa_db_value(lock, 0, 0), "t") == 0)
        return stoa_db_commit(t->db) == STOA_OK ? STOA_OK : STOA_AGAIN;
    if (stoa_db_exec(t->db, t->arena, fanout_statement(kind), p, &res) !=
        STOA_OK)
        goto failed;
    long batch = atol(stoa_db_value(res, 0, FANOUT_COL_BATCH));
    const char *inserted = stoa_db_value(res, 0, FANOUT_COL_INSERTED);
    if (inserted && *inserted) {
        size_t n;
        const char **channels =
            channels_of(t, stoa_arena_strdup(t->arena, inserted), &n);
        char *data = event_data(t, id, up);
        if (!data || stoa_realtime_enqueue(t->db, t->arena, channels, n,
                                           STOA_REALTIME_EVENT_UPDATE_CREATED,
                                           data) != STOA_OK)
            goto failed;
    }
    *more = batch == FANOUT_BATCH;
    if (*more && hand_on) {
        /* Keyed by where this batch started: a batch run twice queues
         * one. */
        const char *from = stoa_db_value(up, 0, UPDATE_COL_FANOUT_AFTER);
        char *key =
            stoa_arena_sprintf(t->arena, "%s:%s", id, from ? from : "start");
        const char *next[] = {id, key};
        if (stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_FANOUT_NEXT), next,
                         NULL) != STOA_OK)
            goto failed;
    } else if (!*more &&
               stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_DELIVERED), q,
                            NULL) != STOA_OK) {
        goto failed;
    }
    if (stoa_db_commit(t->db) != STOA_OK)
        goto failed;
    stoa_log(STOA_LOG_INFO, "update %s: a batch of %ld accounts, %s mails", id,
             batch, stoa_db_value(res, 0, FANOUT_COL_MAILS));
    return STOA_OK;
failed:
    snprintf(err, errlen, "batch: %s", stoa_db_last_error(t->db));
    stoa_db_rollback(t->db);
    return STOA_AGAIN;
}

int jobs_update_fanout(jobs_thread_t *t, const jobs_job_t *job, char *err,
                       size_t errlen)
{
    const char *id = stoa_json_string(stoa_json_get(job->payload, "update_id"));
    if (!stoa_uuid_valid(id)) {
        snprintf(err, errlen, "%s needs an update_id", job->kind);
        return STOA_DECLINED;
    }
    /* Each batch's results in a scratch arena of this run (the thread's
     * arena holds the job itself). */
    jobs_thread_t bt = *t;
    bt.arena = stoa_arena_create(0);
    uint64_t deadline = stoa_now_us() + FANOUT_RUN_MS * 1000ull;
    int rc;
    for (;;) {
        const char *p[] = {id};
        stoa_db_result_t *up;
        if (stoa_db_exec(bt.db, bt.arena, JOBS_SQL(UPDATE_FOR_FANOUT), p,
                         &up) != STOA_OK) {
            snprintf(err, errlen, "update: %s", stoa_db_last_error(bt.db));
            rc = STOA_AGAIN;
            break;
        }
        stoa_audience_kind_t kind;
        if (stoa_db_rows(up) == 0 ||
            !stoa_audience_kind(stoa_db_value(up, 0, UPDATE_COL_AUDIENCE_KIND),
                                &kind)) {
            snprintf(err, errlen, "no update %s with a known audience", id);
            rc = STOA_DECLINED;
            break;
        }
        bool hand_on = stoa_now_us() >= deadline, more;
        rc = fanout_batch(&bt, id, up, kind, hand_on, &more, err, errlen);
        stoa_arena_reset(bt.arena);
        if (rc != STOA_OK || !more || hand_on)
            break;
    }
    stoa_arena_destroy(bt.arena);
    return rc;
}

int jobs_update_mail(jobs_thread_t *t, const jobs_job_t *job, char *err,
                     size_t errlen)
{
    const char *id = stoa_json_string(stoa_json_get(job->payload, "update_id"));
    const char *user = stoa_json_string(stoa_json_get(job->payload, "user_id"));
    if (!stoa_uuid_valid(id) || !stoa_uuid_valid(user)) {
        snprintf(err, errlen, "%s needs update_id and user_id", job->kind);
        return STOA_DECLINED;
    }
    const char *p[] = {id, user};
    stoa_db_result_t *res;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_MAIL_TARGET), p, &res) !=
        STOA_OK) {
        snprintf(err, errlen, "recipient: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    /* Gone, suspended, opted out since, or already mailed: nothing to do. */
    if (stoa_db_rows(res) == 0 ||
        strcmp(stoa_db_value(res, 0, UPDATE_MAIL_COL_WANTS_MAIL), "t") != 0 ||
        strcmp(stoa_db_value(res, 0, UPDATE_MAIL_COL_MAILED), "t") == 0)
        return STOA_OK;
    stoa_jw_t *w = stoa_jw_arena(t->arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "name", stoa_db_value(res, 0, UPDATE_MAIL_COL_NAME));
    stoa_jw_kv_string(w, "title", stoa_db_value(res, 0, UPDATE_MAIL_COL_TITLE));
    stoa_jw_kv_string(w, "body", stoa_db_value(res, 0, UPDATE_MAIL_COL_BODY));
    stoa_jw_kv_string(w, "body_html",
                      stoa_db_value(res, 0, UPDATE_MAIL_COL_BODY_HTML));
    bool action = strcmp(stoa_db_value(res, 0, UPDATE_MAIL_COL_ACTION_REQUIRED),
                         "t") == 0;
    stoa_jw_kv_string(w, "action_note",
                      action ? "This update asks you to act: you will find it "
                               "among your action items."
                             : "");
    stoa_jw_object_close(w);
    char *text = stoa_jw_arena_text(t->arena, w);
    stoa_json_t *data = NULL;
    if (!text ||
        stoa_json_parse(t->arena, text, strlen(text), STOA_JSON_MAX_DEPTH,
                        &data, err, errlen) != STOA_OK) {
        snprintf(err, errlen, "could not write the mail data");
        return STOA_DECLINED;
    }
    char *key = stoa_arena_sprintf(t->arena, "update-%s-%s", id, user);
    int rc = jobs_mail_send(t, "product_update",
                            stoa_db_value(res, 0, UPDATE_MAIL_COL_EMAIL), data,
                            key, err, errlen);
    if (rc != STOA_OK)
        return rc;
    /* Sent: if this is lost, the next run sends again (with the same
     * Message-ID), as every mail job may. */
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_MAILED), p, NULL) !=
        STOA_OK) {
        snprintf(err, errlen, "mailed: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    return STOA_OK;
}
