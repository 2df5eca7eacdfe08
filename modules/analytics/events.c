/* events.c - POST /v1/analytics/events: a batch from a signed-in user or
 * an ingest key, checked item by item (stoa/ingest.h); the client-given
 * ids are claimed by one statement and the fresh rows copied straight into
 * the events table. */
#include <stdlib.h>
#include <string.h>

#include "analytics.h"
#include "stoa/crypto.h"
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

/* Postgres' binary format of a one-dimensional uuid[] (array_recv): its
 * header, then each element as a length and 16 bytes, big-endian. Sent
 * so, a batch's ids cost Postgres no text parsing (array_in and uuid_in
 * were a sixth of the claim's time). */
#define UUID_OID 2950
#define UUID_ARRAY_HEADER 20
#define UUID_ARRAY_ITEM (4 + 16)

static unsigned char *put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static int compare_uuid_bytes(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* The client-given ids of the batch's rows (checked uuids, lower case),
 * in key order: Postgres orders uuids by their bytes, and the claim
 * inserts them in the array's order, so concurrent batches take their
 * ids' rows in one order and never wait on each other crosswise. */
static char *uuid_array(stoa_arena_t *arena, const stoa_ingest_batch_t *b,
                        int *len)
{
    size_t n = 0;
    for (size_t i = 0; i < b->accepted; i++)
        n += b->row[i].id_given;
    uint8_t(*ids)[16] = stoa_arena_alloc(arena, (n + 1) * 16);
    size_t k = 0;
    for (size_t i = 0; i < b->accepted; i++) {
        if (!b->row[i].id_given)
            continue;
        /* Checked by stoa_ingest_batch: a row holds a valid uuid. */
        if (stoa_uuid_bytes(b->row[i].id, ids[k]) == STOA_OK)
            k++;
    }
    n = k;
    qsort(ids, n, 16, compare_uuid_bytes);
    unsigned char *out =
        stoa_arena_alloc(arena, UUID_ARRAY_HEADER + n * UUID_ARRAY_ITEM);
    unsigned char *p = out;
    /* No element: zero dimensions, which is how Postgres sends '{}'. */
    p = put_be32(p, n ? 1 : 0);
    p = put_be32(p, 0); /* no NULLs */
    p = put_be32(p, UUID_OID);
    if (n) {
        p = put_be32(p, (uint32_t)n);
        p = put_be32(p, 1); /* lower bound */
    }
    for (size_t i = 0; i < n; i++) {
        p = put_be32(p, 16);
        memcpy(p, ids[i], 16);
        p += 16;
    }
    *len = (int)(p - out);
    return (char *)out;
}

/* The parameters of EVENTS_CLAIM: the client-given ids (binary, above),
 * and one time in each hour the batch's events fall in (a Postgres array
 * literal: our timestamps need no quoting). */
static void claim_params(stoa_arena_t *arena, const stoa_ingest_batch_t *b,
                         const char *params[2], int lengths[2])
{
    stoa_buf_t hours;
    stoa_buf_init(&hours);
    stoa_buf_append(&hours, "{", 1);
    int64_t *seen = stoa_arena_alloc(arena, b->accepted * sizeof(*seen));
    size_t nseen = 0;
    for (size_t i = 0; i < b->accepted; i++) {
        const stoa_ingest_row_t *r = &b->row[i];
        /* Floor division: an hour before 1970 is still one hour. A batch
         * spans a few hours: the linear search stays short. */
        int64_t hour = r->ts_us / 3600000000LL - (r->ts_us % 3600000000LL < 0);
        size_t k = 0;
        while (k < nseen && seen[k] != hour)
            k++;
        if (k < nseen)
            continue;
        seen[nseen++] = hour;
        if (hours.len > 1)
            stoa_buf_append(&hours, ",", 1);
        stoa_buf_append(&hours, "\"", 1);
        stoa_buf_puts(&hours, r->ts);
        stoa_buf_append(&hours, "\"", 1);
    }
    stoa_buf_append(&hours, "}", 1);
    params[0] = uuid_array(arena, b, &lengths[0]);
    params[1] = stoa_arena_strdup(arena, hours.data);
    lengths[1] = 0;
    stoa_buf_free(&hours);
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Keeps in rows (compacted in place) the rows to store: generated ids,
 * and each claimed id once, at its first item. claimed: EVENTS_CLAIM's
 * answer. Returns how many rows remain. */
static size_t keep_fresh(stoa_arena_t *arena, const stoa_ingest_batch_t *b,
                         const stoa_db_result_t *claimed)
{
    size_t nclaimed = (size_t)stoa_db_rows(claimed);
    const char **fresh =
        stoa_arena_alloc(arena, (nclaimed + 1) * sizeof(*fresh));
    for (size_t i = 0; i < nclaimed; i++)
        fresh[i] = stoa_db_value(claimed, (int)i, CLAIM_COL_ID);
    qsort(fresh, nclaimed, sizeof(*fresh), compare_ids);
    bool *taken = stoa_arena_alloc(arena, nclaimed + 1);
    memset(taken, 0, nclaimed + 1);
    stoa_buf_t *rows = b->rows;
    size_t kept = 0, at = 0;
    for (size_t i = 0; i < b->accepted; i++) {
        const stoa_ingest_row_t *r = &b->row[i];
        bool keep = !r->id_given;
        if (!keep) {
            const char *id = r->id;
            const char **hit =
                bsearch(&id, fresh, nclaimed, sizeof(*fresh), compare_ids);
            /* A claimed id is taken by its first item; a repeat in the
             * same batch is dropped. */
            if (hit && !taken[hit - fresh]) {
                keep = true;
                taken[hit - fresh] = true;
            }
        }
        if (!keep)
            continue;
        if (at != r->offset)
            memmove(rows->data + at, rows->data + r->offset, r->len);
        at += r->len;
        kept++;
    }
    rows->len = at;
    if (rows->data)
        rows->data[at] = '\0'; /* stoa_buf's promise */
    return kept;
}

/* Claims the ids and marks the hours, then copies the fresh rows straight
 * into their day partitions and commits in the copy's own query: one
 * transaction in three round trips (BEGIN with the claim, the copy's
 * start, its rows with the COMMIT), so a batch is stored whole or not at
 * all, and a concurrent batch with one of its ids waits on the claim
 * until this one ends. */
static int store(stoa_request_t *req, const stoa_ingest_batch_t *b)
{
    stoa_db_t *db = stoa_request_db(req);
    const char *params[2];
    int lengths[2];
    static const int formats[2] = {1, 0};
    claim_params(req->arena, b, params, lengths);
    stoa_db_result_t *claimed = NULL;
    int rc = stoa_db_begin_exec(db, req->arena, ANALYTICS_SQL(EVENTS_CLAIM),
                                params, lengths, formats, &claimed);
    if (rc == STOA_OK && keep_fresh(req->arena, b, claimed) > 0)
        rc = stoa_db_copy_in_commit(
            db,
            "COPY analytics.events (" STOA_INGEST_COPY_COLUMNS
            ") FROM STDIN; COMMIT",
            b->rows->data, b->rows->len, NULL);
    else if (rc == STOA_OK)
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
    rc = batch.accepted ? store(req, &batch) : STOA_OK;
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
