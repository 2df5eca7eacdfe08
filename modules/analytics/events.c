/* events.c - POST /v1/analytics/events: a batch from a signed-in user or
 * an ingest key, checked item by item (stoa/ingest.h), copied into the
 * connection's staging table and stored by one statement. */
#include <string.h>

#include "analytics.h"
#include "stoa/ingest.h"
#include "stoa/log.h"
#include "stoa/revoke.h"

/* Who sends: a live user token (the route's access is optional, so the
 * dispatcher leaves the checks of a user route to this handler) or an
 * ingest key, never both. STOA_OK, or the status of the answer sent. */
static int check_sender(stoa_request_t *req)
{
    const char *key = stoa_request_param(req, "HTTP_X_INGEST_KEY");
    stoa_principal_t *p = &req->principal;
    if (p->present && key)
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "send either a token or an ingest key, not both");
    if (p->present) {
        req->conns.ctx = req->ctx;
        int live = stoa_revoke_check(&req->conns, req->arena, p);
        if (live == STOA_AGAIN)
            return STOA_AGAIN;
        if (live != STOA_OK) {
            stoa_http_header(req, "WWW-Authenticate",
                             "Bearer error=\"invalid_token\"");
            return stoa_http_fail(req, STOA_ERR_UNAUTHENTICATED,
                                  "the session has been revoked");
        }
        if (!stoa_principal_scope_allows(p, req->route->scope, req->method))
            return stoa_http_fail(
                req, STOA_ERR_INSUFFICIENT_SCOPE,
                "this token's scopes do not cover this route");
        return STOA_OK;
    }
    if (!key) {
        stoa_http_header(req, "WWW-Authenticate", "Bearer");
        return stoa_http_fail(req, STOA_ERR_UNAUTHENTICATED,
                              "send a token or an X-Ingest-Key");
    }
    int rc = analytics_ingest_key_check(req, key);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_UNAUTHENTICATED,
                              "unknown or revoked ingest key");
    return rc;
}

/* Copies the rows into the staging table and stores them, in one
 * transaction (the staging table empties at its commit). */
static int store(stoa_request_t *req, const stoa_buf_t *rows)
{
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc == STOA_OK)
        rc = stoa_db_exec(db, req->arena, ANALYTICS_SQL(STAGING_CREATE), NULL,
                          NULL);
    if (rc == STOA_OK)
        rc = stoa_db_copy_in(db,
                             "COPY " ANALYTICS_STAGING
                             " (" STOA_INGEST_COPY_COLUMNS ") FROM STDIN",
                             rows->data, rows->len, NULL);
    if (rc == STOA_OK)
        rc = stoa_db_exec(db, req->arena, ANALYTICS_SQL(EVENTS_STORE), NULL,
                          NULL);
    if (rc == STOA_OK)
        rc = stoa_db_commit(db);
    if (rc != STOA_OK) {
        /* 23514: no partition for a row. Partitions are made a week
         * ahead and back to the retention: the worker has not run. */
        if (strcmp(stoa_db_sqlstate(db), "23514") == 0) {
            stoa_log(STOA_LOG_CRIT, "analytics: no partition for an event; "
                                    "is stoa-jobs running?");
            rc = STOA_AGAIN;
        }
        stoa_db_rollback(db);
    }
    return rc;
}

int analytics_events_ingest(stoa_request_t *req)
{
    int rc = check_sender(req);
    if (rc != STOA_OK)
        return rc;
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"events", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    if (!stoa_json_get(body, "events"))
        stoa_request_field_error(req, "events", "required");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    int64_t now = (int64_t)stoa_unix_time() * 1000000;
    stoa_ingest_opts_t opts = {
        .now_us = now,
        .oldest_us =
            now - req->ctx->conf.analytics_retention_days * 86400LL * 1000000,
        .user_id = req->principal.present ? req->principal.user_id : NULL,
    };
    stoa_buf_t rows;
    stoa_buf_init(&rows);
    stoa_ingest_batch_t batch = {.rows = &rows};
    switch (stoa_ingest_batch(req->arena, stoa_json_get(body, "events"), &opts,
                              &batch)) {
    case STOA_INGEST_OK:
        break;
    case STOA_INGEST_NOT_ARRAY:
        stoa_request_field_error(req, "events", "invalid");
        stoa_buf_free(&rows);
        return stoa_http_invalid_fields(req);
    case STOA_INGEST_EMPTY:
        stoa_request_field_error(req, "events", "empty");
        stoa_buf_free(&rows);
        return stoa_http_invalid_fields(req);
    case STOA_INGEST_TOO_MANY:
        stoa_buf_free(&rows);
        return stoa_http_fail(req, STOA_ERR_PAYLOAD_TOO_LARGE,
                              "at most 1000 events a batch");
    }
    rc = batch.accepted ? store(req, &rows) : STOA_OK;
    stoa_buf_free(&rows);
    if (rc != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 202);
    stoa_jw_object_open(w);
    stoa_jw_kv_integer(w, "accepted", (int64_t)batch.accepted);
    stoa_jw_key(w, "rejected");
    stoa_jw_array_open(w);
    for (size_t i = 0; i < batch.nrejected; i++) {
        stoa_jw_object_open(w);
        stoa_jw_kv_integer(w, "index", (int64_t)batch.rejected[i].index);
        stoa_jw_kv_string(w, "error", batch.rejected[i].error);
        stoa_jw_object_close(w);
    }
    stoa_jw_array_close(w);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
