/* updates.c - product updates: an admin sends one to an audience (the
 * fan-out to every recipient runs in stoa-jobs, see stoa/updates.h), lists
 * them with their delivery counts; each user reads their feed and marks
 * items read or done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/format.h"
#include "stoa/markdown.h"
#include "stoa/outbox.h"
#include "stoa/updates.h"

#define TITLE_MAX_CHARS 200
#define BODY_MAX_CHARS 20000

/* Code points of valid UTF-8 (the JSON parser has checked it). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return false;
    return true;
}

/* A required text member of 1..max_chars characters, not only blanks. */
static const char *text_field(stoa_request_t *req, const stoa_json_t *body,
                              const char *name, size_t max_chars)
{
    /* Four bytes a character at most: the byte bound only spares the
     * count on absurd input. */
    const char *v = stoa_field_string(req, body, name, STOA_FIELD_REQUIRED, 1,
                                      4 * max_chars);
    if (!v)
        return NULL;
    if (blank(v)) {
        stoa_request_field_error(req, name, "required");
        return NULL;
    }
    if (utf8_chars(v) > max_chars) {
        stoa_request_field_error(req, name, "too_long");
        return NULL;
    }
    return v;
}

typedef struct {
    stoa_audience_kind_t kind;
    const char *param; /* the statement's value: ids literal, role, plan */
    size_t ids;        /* distinct ids named (user_ids) */
} audience_t;

/* The uuid[] literal of a user_ids array: distinct, lower case; false
 * (field error recorded) when it is empty, too long or holds anything but
 * UUIDs. */
static bool ids_param(stoa_request_t *req, const stoa_json_t *ids,
                      audience_t *out)
{
    const char *field = "audience.user_ids";
    size_t n = stoa_json_len(ids);
    if (!stoa_json_is_array(ids) || n == 0) {
        stoa_request_field_error(req, field, ids ? "empty" : "required");
        return false;
    }
    if (n > STOA_AUDIENCE_MAX_IDS) {
        stoa_request_field_error(req, field, "too_many");
        return false;
    }
    char(*seen)[STOA_UUID_STR_LEN + 1] =
        stoa_arena_alloc(req->arena, n * sizeof(*seen));
    size_t distinct = 0;
    stoa_buf_t lit;
    stoa_buf_init(&lit);
    stoa_buf_puts(&lit, "{");
    for (size_t i = 0; i < n; i++) {
        const char *id = stoa_json_string(stoa_json_at(ids, i));
        if (!stoa_uuid_valid(id)) {
            stoa_request_field_error(req, field, "invalid_uuid");
            stoa_buf_free(&lit);
            return false;
        }
        char norm[STOA_UUID_STR_LEN + 1];
        for (size_t k = 0; k <= STOA_UUID_STR_LEN; k++)
            norm[k] =
                (char)((id[k] >= 'A' && id[k] <= 'F') ? id[k] + 32 : id[k]);
        bool dup = false;
        for (size_t k = 0; k < distinct && !dup; k++)
            dup = strcmp(seen[k], norm) == 0;
        if (dup)
            continue;
        memcpy(seen[distinct++], norm, sizeof(norm));
        stoa_buf_printf(&lit, "%s%s", distinct > 1 ? "," : "", norm);
    }
    stoa_buf_puts(&lit, "}");
    out->param = stoa_arena_strndup(req->arena, lit.data, lit.len);
    out->ids = distinct;
    stoa_buf_free(&lit);
    return true;
}

/* Reads `audience`: an object with exactly one of its members. Field
 * errors are recorded as audience.<member>. */
static bool audience_field(stoa_request_t *req, const stoa_json_t *body,
                           audience_t *out)
{
    const stoa_json_t *a = stoa_json_get(body, "audience");
    if (!a) {
        stoa_request_field_error(req, "audience", "required");
        return false;
    }
    if (!stoa_json_is_object(a) || stoa_json_len(a) != 1 ||
        !stoa_audience_kind(stoa_json_key_at(a, 0), &out->kind)) {
        stoa_request_field_error(req, "audience",
                                 stoa_json_is_object(a) && stoa_json_len(a) == 0
                                     ? "empty"
                                     : "invalid");
        return false;
    }
    const stoa_json_t *v = stoa_json_at(a, 0);
    out->param = NULL;
    out->ids = 0;
    switch (out->kind) {
    case STOA_AUDIENCE_USER_IDS:
        return ids_param(req, v, out);
    case STOA_AUDIENCE_ROLE:
        out->param = stoa_json_string(v);
        if (!out->param || !stoa_role_valid(out->param)) {
            stoa_request_field_error(req, "audience.role", "unknown");
            return false;
        }
        return true;
    case STOA_AUDIENCE_PLAN:
        out->param = stoa_json_string(v);
        if (!out->param || !*out->param || strlen(out->param) > 64) {
            stoa_request_field_error(req, "audience.plan", "invalid");
            return false;
        }
        return true;
    case STOA_AUDIENCE_ALL: {
        bool all = false;
        if (!stoa_json_bool(v, &all) || !all) {
            stoa_request_field_error(req, "audience.all", "must_be_true");
            return false;
        }
        return true;
    }
    }
    return false;
}

static const stoa_db_statement_t *audience_statement(stoa_audience_kind_t k)
{
    switch (k) {
    case STOA_AUDIENCE_USER_IDS:
        return ADMIN_SQL(AUDIENCE_USER_IDS);
    case STOA_AUDIENCE_ROLE:
        return ADMIN_SQL(AUDIENCE_ROLE);
    case STOA_AUDIENCE_PLAN:
        return ADMIN_SQL(AUDIENCE_PLAN);
    case STOA_AUDIENCE_ALL:
        break;
    }
    return ADMIN_SQL(AUDIENCE_ALL);
}

/* The audience's recipients, counted in the open transaction; STOA_DECLINED
 * (400 sent, rolled back) when it names an unknown plan or user. */
static int count_audience(stoa_request_t *req, const audience_t *a,
                          long *recipients)
{
    stoa_db_t *db = stoa_request_db(req);
    const char *params[] = {a->param};
    stoa_db_result_t *res;
    int rc;
    if (a->kind == STOA_AUDIENCE_PLAN) {
        if ((rc = stoa_db_exec(db, req->arena, ADMIN_SQL(PLAN_KEY_EXISTS),
                               params, &res)) != STOA_OK)
            return rc;
        if (stoa_db_rows(res) == 0) {
            stoa_db_rollback(db);
            stoa_request_field_error(req, "audience.plan", "unknown");
            stoa_http_invalid_fields(req);
            return STOA_DECLINED;
        }
    }
    if ((rc = stoa_db_exec(db, req->arena, audience_statement(a->kind), params,
                           &res)) != STOA_OK)
        return rc;
    *recipients = atol(stoa_db_value(res, 0, AUDIENCE_COL_RECIPIENTS));
    if (a->kind == STOA_AUDIENCE_USER_IDS &&
        (size_t)atol(stoa_db_value(res, 0, AUDIENCE_COL_KNOWN)) != a->ids) {
        stoa_db_rollback(db);
        stoa_request_field_error(req, "audience.user_ids", "unknown_user");
        stoa_http_invalid_fields(req);
        return STOA_DECLINED;
    }
    return STOA_OK;
}

static char *render_body(stoa_request_t *req, const char *body)
{
    stoa_buf_t html;
    stoa_buf_init(&html);
    char *out = NULL;
    if (stoa_markdown_html(body, strlen(body), &html) == STOA_OK)
        out = stoa_arena_strndup(req->arena, html.data ? html.data : "",
                                 html.len);
    stoa_buf_free(&html);
    return out;
}

static const stoa_column_t update_columns[] = {
    {"id", UPDATE_COL_ID, STOA_COLUMN_TEXT},
    {"title", UPDATE_COL_TITLE, STOA_COLUMN_TEXT},
    {"action_required", UPDATE_COL_ACTION_REQUIRED, STOA_COLUMN_BOOL},
    {"audience", UPDATE_COL_AUDIENCE, STOA_COLUMN_JSON},
    {"created_by", UPDATE_COL_CREATED_BY, STOA_COLUMN_TEXT},
    {"created_at", UPDATE_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"recipients", UPDATE_COL_RECIPIENTS, STOA_COLUMN_INTEGER},
    {"delivered", UPDATE_COL_DELIVERED, STOA_COLUMN_INTEGER},
    {"delivered_at", UPDATE_COL_DELIVERED_AT, STOA_COLUMN_TEXT},
};

/* The detail of update id (GET, and the answer of POST); 404 when there
 * is none. */
static int answer_update(stoa_request_t *req, const char *id, int status)
{
    const char *params[] = {id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          ADMIN_SQL(UPDATE_DETAIL), params, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such update");
    static const stoa_column_t more[] = {
        {"body", UPDATE_COL_BODY, STOA_COLUMN_TEXT},
        {"mailed", UPDATE_COL_MAILED, STOA_COLUMN_INTEGER},
        {"read", UPDATE_COL_READ, STOA_COLUMN_INTEGER},
        {"done", UPDATE_COL_DONE, STOA_COLUMN_INTEGER},
    };
    stoa_jw_t *w = stoa_http_json(req, status);
    stoa_jw_object_open(w);
    stoa_http_write_columns(w, res, 0, update_columns,
                            STOA_ARRAY_LEN(update_columns));
    stoa_http_write_columns(w, res, 0, more, STOA_ARRAY_LEN(more));
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

int admin_updates_create(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"title", "body", "audience",
                                          "action_required", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *title = text_field(req, body, "title", TITLE_MAX_CHARS);
    const char *text = text_field(req, body, "body", BODY_MAX_CHARS);
    bool action = false;
    stoa_field_bool(req, body, "action_required", STOA_FIELD_OPTIONAL, &action);
    audience_t audience;
    audience_field(req, body, &audience);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    char *html = render_body(req, text);
    if (!html)
        return STOA_ERROR;

    /* The audience as stored: the one member, ids normalised. */
    stoa_jw_t *w = stoa_jw_arena(req->arena);
    stoa_jw_object_open(w);
    stoa_jw_key(w, stoa_audience_members[audience.kind]);
    if (audience.kind == STOA_AUDIENCE_USER_IDS) {
        stoa_jw_array_open(w);
        const char *p = audience.param + 1;
        while (*p && *p != '}') {
            stoa_jw_stringn(w, p, STOA_UUID_STR_LEN);
            p += STOA_UUID_STR_LEN;
            if (*p == ',')
                p++;
        }
        stoa_jw_array_close(w);
    } else if (audience.kind == STOA_AUDIENCE_ALL) {
        stoa_jw_bool(w, true);
    } else {
        stoa_jw_string(w, audience.param);
    }
    stoa_jw_object_close(w);
    char *audience_json = stoa_jw_arena_text(req->arena, w);
    if (!audience_json)
        return STOA_ERROR;

    int rc = stoa_request_begin(req, NULL, NULL, NULL);
    if (rc != STOA_OK)
        return rc;
    long recipients = 0;
    if ((rc = count_audience(req, &audience, &recipients)) != STOA_OK)
        return rc == STOA_DECLINED ? STOA_OK : rc;
    char count[24];
    snprintf(count, sizeof(count), "%ld", recipients);
    const char *params[] = {title,
                            text,
                            html,
                            audience_json,
                            action ? "true" : "false",
                            req->principal.user_id,
                            count};
    stoa_db_t *db = stoa_request_db(req);
    stoa_db_result_t *res;
    if ((rc = stoa_db_exec(db, req->arena, ADMIN_SQL(UPDATE_INSERT), params,
                           &res)) != STOA_OK)
        return rc;
    const char *id = stoa_db_value(res, 0, UPDATE_INSERT_COL_ID);
    char *job = stoa_json_pair(req->arena, "update_id", id);
    if ((rc = stoa_outbox_enqueue(db, req->arena, STOA_UPDATES_FANOUT_KIND, job,
                                  id, 0)) != STOA_OK)
        return rc;
    stoa_jw_t *d = stoa_jw_arena(req->arena);
    stoa_jw_object_open(d);
    stoa_jw_kv_string(d, "update_id", id);
    stoa_jw_kv_integer(d, "recipients", recipients);
    stoa_jw_key(d, "audience");
    stoa_jw_raw(d, audience_json, strlen(audience_json));
    stoa_jw_object_close(d);
    char *details = stoa_jw_arena_text(req->arena, d);
    if (!details)
        return STOA_ERROR;
    if ((rc = stoa_request_commit(req, "update.sent", NULL, details)) !=
        STOA_OK)
        return rc;
    return answer_update(req, id, 201);
}

int admin_updates_list(stoa_request_t *req)
{
    static const char *const allowed[] = {"limit", "cursor", NULL};
    stoa_request_query_reject_unknown(req, allowed);
    static const stoa_list_t list = {update_columns,
                                     STOA_ARRAY_LEN(update_columns), NULL,
                                     UPDATE_COL_CURSOR_US, UPDATE_COL_ID};
    return stoa_http_keyset_list(req, ADMIN_SQL(UPDATES_LIST), &list);
}

int admin_updates_get(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such update");
    return answer_update(req, id, 200);
}

static const stoa_column_t feed_columns[] = {
    {"id", FEED_COL_ID, STOA_COLUMN_TEXT},
    {"title", FEED_COL_TITLE, STOA_COLUMN_TEXT},
    {"body", FEED_COL_BODY, STOA_COLUMN_TEXT},
    {"action_required", FEED_COL_ACTION_REQUIRED, STOA_COLUMN_BOOL},
    {"created_at", FEED_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"read_at", FEED_COL_READ_AT, STOA_COLUMN_TEXT},
    {"done_at", FEED_COL_DONE_AT, STOA_COLUMN_TEXT},
};

int admin_feed_list(stoa_request_t *req)
{
    static const char *const allowed[] = {"unread", "limit", "cursor", NULL};
    stoa_request_query_reject_unknown(req, allowed);
    stoa_page_t page;
    stoa_request_page(req, STOA_PAGE_KEYSET, &page);
    const char *unread = stoa_request_query(req, "unread");
    if (unread && strcmp(unread, "true") != 0 && strcmp(unread, "false") != 0)
        stoa_request_field_error(req, "unread", "must_be_boolean");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    const char *params[] = {req->principal.user_id, page.cursor_ts,
                            page.cursor_id, page.fetch};
    bool only_unread = unread && strcmp(unread, "true") == 0;
    stoa_db_result_t *res;
    int rc = stoa_db_exec(
        stoa_request_db(req), req->arena,
        only_unread ? ADMIN_SQL(FEED_UNREAD) : ADMIN_SQL(FEED), params, &res);
    if (rc != STOA_OK)
        return rc;
    static const stoa_list_t list = {feed_columns, STOA_ARRAY_LEN(feed_columns),
                                     NULL, FEED_COL_CURSOR_US, FEED_COL_ID};
    return stoa_http_list(req, res, &page, &list);
}

/* Marks the caller's own item; someone else's update, or none, is 404. */
static int feed_mark(stoa_request_t *req, const stoa_db_statement_t *st)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such update");
    const char *params[] = {id, req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, st, params, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such update");
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_http_write_columns(w, res, 0, feed_columns,
                            STOA_ARRAY_LEN(feed_columns));
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

int admin_feed_read(stoa_request_t *req)
{
    return feed_mark(req, ADMIN_SQL(FEED_READ));
}

int admin_feed_done(stoa_request_t *req)
{
    return feed_mark(req, ADMIN_SQL(FEED_DONE));
}
