/* updates.c - delivering a product update (stoa/updates.h).
 *
 * `updates.fanout` writes one batch of recipients per job, in one
 * transaction with the batch's mail jobs, its live event and the job of
 * the next batch: an audience of any size never holds one transaction,
 * and a worker killed mid-way leaves either a whole batch and its
 * successor or neither (the job runs again; a batch run twice writes
 * nothing twice). `updates.mail` sends one recipient's mail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "stoa/crypto.h"
#include "stoa/json.h"
#include "stoa/log.h"
#include "stoa/outbox.h"
#include "stoa/realtime.h"
#include "stoa/updates.h"

/* Recipients a batch writes: at most one live-event job's channels. */
#define FANOUT_BATCH 1000
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

/* update.created's data: the update as its recipients' feed shows it. */
static char *event_data(jobs_thread_t *t, const char *id,
                        const stoa_db_result_t *up)
{
    stoa_jw_t *w = stoa_jw_arena(t->arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", id);
    stoa_jw_kv_string(w, "title", stoa_db_value(up, 0, UPDATE_COL_TITLE));
    stoa_jw_kv_string(w, "body", stoa_db_value(up, 0, UPDATE_COL_BODY));
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

/* The batch's statements, on the open transaction. */
static int fanout_batch(jobs_thread_t *t, const char *id, const char *after,
                        const stoa_db_result_t *up, stoa_audience_kind_t kind,
                        char *err, size_t errlen)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", FANOUT_BATCH);
    const char *p[] = {id, after, limit};
    stoa_db_result_t *res;
    if (stoa_db_exec(t->db, t->arena, fanout_statement(kind), p, &res) !=
        STOA_OK) {
        snprintf(err, errlen, "batch: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    long batch = atol(stoa_db_value(res, 0, FANOUT_COL_BATCH));
    const char *inserted = stoa_db_value(res, 0, FANOUT_COL_INSERTED);
    int rc = STOA_OK;
    if (inserted && *inserted) {
        size_t n;
        const char **channels =
            channels_of(t, stoa_arena_strdup(t->arena, inserted), &n);
        char *data = event_data(t, id, up);
        rc = data ? stoa_realtime_enqueue(t->db, t->arena, channels, n,
                                          STOA_REALTIME_EVENT_UPDATE_CREATED,
                                          data)
                  : STOA_ERROR;
    }
    if (rc == STOA_OK && batch == FANOUT_BATCH) {
        const char *last = stoa_db_value(res, 0, FANOUT_COL_LAST_ID);
        stoa_jw_t *w = stoa_jw_arena(t->arena);
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "update_id", id);
        stoa_jw_kv_string(w, "after", last);
        stoa_jw_object_close(w);
        char *next = stoa_jw_arena_text(t->arena, w);
        /* Keyed by where it starts: a batch run twice queues one next. */
        char *key = stoa_arena_sprintf(t->arena, "%s:%s", id, last);
        rc = next ? stoa_outbox_enqueue(t->db, t->arena,
                                        STOA_UPDATES_FANOUT_KIND, next, key, 0)
                  : STOA_ERROR;
    } else if (rc == STOA_OK) {
        const char *q[] = {id};
        rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_DELIVERED), q, NULL);
    }
    if (rc != STOA_OK) {
        snprintf(err, errlen, "batch: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    stoa_log(STOA_LOG_INFO, "update %s: %ld accounts after %s, mails %s", id,
             batch, after ? after : "the start",
             stoa_db_value(res, 0, FANOUT_COL_MAILS));
    return STOA_OK;
}

int jobs_update_fanout(jobs_thread_t *t, const jobs_job_t *job, char *err,
                       size_t errlen)
{
    const char *id = stoa_json_string(stoa_json_get(job->payload, "update_id"));
    const stoa_json_t *a = stoa_json_get(job->payload, "after");
    const char *after = stoa_json_string(a);
    if (!stoa_uuid_valid(id) || (a && !stoa_uuid_valid(after))) {
        snprintf(err, errlen, "%s needs update_id (and after) uuids",
                 job->kind);
        return STOA_DECLINED;
    }
    const char *p[] = {id};
    stoa_db_result_t *up;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(UPDATE_FOR_FANOUT), p, &up) !=
        STOA_OK) {
        snprintf(err, errlen, "update: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    stoa_audience_kind_t kind;
    if (stoa_db_rows(up) == 0 ||
        !stoa_audience_kind(stoa_db_value(up, 0, UPDATE_COL_AUDIENCE_KIND),
                            &kind)) {
        snprintf(err, errlen, "no update %s with a known audience", id);
        return STOA_DECLINED;
    }
    if (stoa_db_begin(t->db) != STOA_OK) {
        snprintf(err, errlen, "begin: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    int rc = fanout_batch(t, id, after, up, kind, err, errlen);
    if (rc == STOA_OK && stoa_db_commit(t->db) != STOA_OK) {
        snprintf(err, errlen, "commit: %s", stoa_db_last_error(t->db));
        rc = STOA_AGAIN;
    }
    if (rc != STOA_OK)
        stoa_db_rollback(t->db);
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
