/* webhooks.c - outbound webhook endpoints: create (the secret is shown
 * once), list, delete, and the log of deliveries. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/events.h"
#include "stoa/net.h"

/* http(s) only, a host, no credentials in the URL, and not an internal IP
 * literal unless the host is allow-listed. Names are checked again at
 * delivery, on the address actually connected to. */
static bool url_acceptable(stoa_request_t *req, const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
    const char *reason = "invalid";
    if (ok && strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        ok = false;
        reason = "scheme_not_allowed";
    }
    if (ok && curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        ok = false;
        reason = "credentials_not_allowed";
    }
    if (ok) {
        char bare[256];
        size_t hl = strlen(host);
        if (hl >= sizeof(bare))
            ok = false;
        else if (host[0] == '[' && hl > 2) {
            memcpy(bare, host + 1, hl - 2);
            bare[hl - 2] = '\0';
        } else {
            memcpy(bare, host, hl + 1);
        }
        if (ok &&
            !stoa_net_host_listed(req->ctx->conf.webhook_allow_hosts, bare) &&
            (stoa_net_literal_forbidden(bare) ||
             strcasecmp(bare, "localhost") == 0)) {
            ok = false;
            reason = "internal_address";
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_url_cleanup(u);
    if (!ok)
        stoa_request_field_error(req, "url", reason);
    return ok;
}

/* events: a non-empty array of domain-event names (stoa/events.h) or "*"
 * (all), as a Postgres array literal (names are from our own table, so no
 * quoting is needed). */
static char *events_param(stoa_request_t *req, const stoa_json_t *body)
{
    const stoa_json_t *events = stoa_json_get(body, "events");
    size_t n = stoa_json_len(events);
    if (!stoa_json_is_array(events) || n == 0 || n > 50) {
        stoa_request_field_error(req, "events",
                                 events ? "invalid" : "required");
        return NULL;
    }
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_buf_puts(&out, "{");
    for (size_t i = 0; i < n; i++) {
        const char *name = stoa_json_string(stoa_json_at(events, i));
        const stoa_event_t *known = stoa_event_find(name);
        const char *k = known ? known->name
                        : name && strcmp(name, STOA_EVENT_ALL) == 0
                            ? STOA_EVENT_ALL
                            : NULL;
        if (!k) {
            stoa_request_field_error(req, "events", "unknown_event");
            stoa_buf_free(&out);
            return NULL;
        }
        stoa_buf_printf(&out, "%s\"%s\"", i ? "," : "", k);
    }
    stoa_buf_puts(&out, "}");
    char *param = stoa_arena_strndup(req->arena, out.data, out.len);
    stoa_buf_free(&out);
    return param;
}

/* whsec_ + base64 of 24 random bytes (Standard Webhooks' form). */
static char *new_secret(stoa_request_t *req)
{
    uint8_t raw[24];
    char b64[40];
    stoa_random_bytes(raw, sizeof(raw));
    stoa_b64_encode(raw, sizeof(raw), b64);
    stoa_wipe(raw, sizeof(raw));
    char *secret = stoa_arena_sprintf(req->arena, "whsec_%s", b64);
    stoa_wipe(b64, sizeof(b64));
    return secret;
}

int admin_webhooks_create(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"url", "events", "description", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *url =
        stoa_field_string(req, body, "url", STOA_FIELD_REQUIRED, 8, 2048);
    const char *description = stoa_field_string(req, body, "description",
                                                STOA_FIELD_OPTIONAL, 0, 500);
    char *events = events_param(req, body);
    if (url)
        url_acceptable(req, url);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    char *secret = new_secret(req);
    const char *params[] = {url, description, events, secret,
                            req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_request_begin(req, ADMIN_SQL(WEBHOOK_INSERT), params, &res);
    if (rc != STOA_OK)
        return rc;
    const char *id = stoa_db_value(res, 0, WEBHOOK_INSERT_COL_ID);
    char *details = stoa_json_pair(req->arena, "webhook_id", id);
    if ((rc = stoa_request_commit(req, "webhook.created", NULL, details)) !=
        STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 201);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", id);
    stoa_jw_kv_string(w, "url", url);
    stoa_jw_kv_string(w, "description", description);
    stoa_jw_key(w, "events");
    stoa_jw_value(w, stoa_json_get(body, "events"));
    stoa_jw_kv_string(w, "secret", secret);
    stoa_jw_kv_string(w, "created_at",
                      stoa_db_value(res, 0, WEBHOOK_INSERT_COL_CREATED_AT));
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

static const stoa_column_t webhook_columns[] = {
    {"id", WEBHOOK_COL_ID, STOA_COLUMN_TEXT},
    {"url", WEBHOOK_COL_URL, STOA_COLUMN_TEXT},
    {"description", WEBHOOK_COL_DESCRIPTION, STOA_COLUMN_TEXT},
    {"events", WEBHOOK_COL_EVENTS, STOA_COLUMN_JSON},
    {"created_at", WEBHOOK_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"disabled_at", WEBHOOK_COL_DISABLED_AT, STOA_COLUMN_TEXT},
    {"disabled_reason", WEBHOOK_COL_DISABLED_REASON, STOA_COLUMN_TEXT},
    {"failing_since", WEBHOOK_COL_FAILING_SINCE, STOA_COLUMN_TEXT},
    {"last_success_at", WEBHOOK_COL_LAST_SUCCESS_AT, STOA_COLUMN_TEXT},
};

int admin_webhooks_list(stoa_request_t *req)
{
    static const stoa_list_t list = {webhook_columns,
                                     STOA_ARRAY_LEN(webhook_columns), NULL,
                                     WEBHOOK_COL_CURSOR_US, WEBHOOK_COL_ID};
    return stoa_http_keyset_list(req, ADMIN_SQL(WEBHOOK_LIST), &list);
}

int admin_webhooks_delete(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such webhook");
    const char *params[] = {id};
    int rc = stoa_request_begin(req, ADMIN_SQL(WEBHOOK_DELETE), params, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such webhook");
    char *details = stoa_json_pair(req->arena, "webhook_id", id);
    if (rc != STOA_OK || (rc = stoa_request_commit(req, "webhook.deleted", NULL,
                                                   details)) != STOA_OK)
        return rc;
    return stoa_http_empty(req, 204);
}

static const stoa_column_t delivery_columns[] = {
    {"id", DELIVERY_COL_ID, STOA_COLUMN_INTEGER},
    {"event_id", DELIVERY_COL_EVENT_ID, STOA_COLUMN_TEXT},
    {"event_type", DELIVERY_COL_EVENT_TYPE, STOA_COLUMN_TEXT},
    {"attempt", DELIVERY_COL_ATTEMPT, STOA_COLUMN_INTEGER},
    {"at", DELIVERY_COL_AT, STOA_COLUMN_TEXT},
    {"status", DELIVERY_COL_STATUS, STOA_COLUMN_INTEGER},
    {"latency_ms", DELIVERY_COL_LATENCY_MS, STOA_COLUMN_INTEGER},
    {"error", DELIVERY_COL_ERROR, STOA_COLUMN_TEXT},
};

int admin_webhooks_deliveries(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such webhook");
    stoa_page_t page;
    if (!stoa_request_page(req, STOA_PAGE_SERIAL, &page))
        return stoa_http_invalid_fields(req);
    const char *p1[] = {id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          ADMIN_SQL(WEBHOOK_EXISTS), p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such webhook");
    /* Postgres checks the cursor's bigint range (a 400 naming it). */
    const char *p2[] = {id, page.cursor_id, page.fetch};
    static const char *const f2[] = {NULL, "cursor", NULL};
    if ((rc = stoa_db_exec_fields(stoa_request_db(req), req->arena,
                                  ADMIN_SQL(WEBHOOK_DELIVERIES), p2, f2,
                                  &res)) != STOA_OK)
        return rc;
    static const stoa_list_t list = {delivery_columns,
                                     STOA_ARRAY_LEN(delivery_columns), NULL,
                                     DELIVERY_COL_ID, 0};
    return stoa_http_list(req, res, &page, &list);
}

/* A new signing secret; the previous one keeps signing too for the
 * overlap (default a day), so a receiver can switch without a gap. */
int admin_webhooks_rotate_secret(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such webhook");
    int64_t overlap = 86400;
    if (req->body_len) {
        const stoa_json_t *body;
        if (stoa_request_json_body(req, &body) != STOA_OK)
            return STOA_DECLINED;
        static const char *const allowed[] = {"previous_valid_for_s", NULL};
        stoa_field_reject_unknown(req, body, allowed);
        stoa_field_integer(req, body, "previous_valid_for_s",
                           STOA_FIELD_OPTIONAL, 0, 7 * 86400, &overlap);
        if (stoa_request_has_field_errors(req))
            return stoa_http_invalid_fields(req);
    }
    char *secret = new_secret(req);
    char overlap_s[24];
    snprintf(overlap_s, sizeof(overlap_s), "%lld", (long long)overlap);
    const char *params[] = {id, secret, overlap_s};
    stoa_db_result_t *res;
    int rc = stoa_request_begin(req, ADMIN_SQL(WEBHOOK_ROTATE), params, &res);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such webhook");
    char *details = stoa_json_pair(req->arena, "webhook_id", id);
    if (rc != STOA_OK ||
        (rc = stoa_request_commit(req, "webhook.secret_rotated", NULL,
                                  details)) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", id);
    stoa_jw_kv_string(w, "secret", secret);
    stoa_jw_kv_string(w, "previous_valid_until",
                      stoa_db_value(res, 0, ROTATE_COL_PREVIOUS_VALID_UNTIL));
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
