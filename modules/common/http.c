/* http.c - request helpers, field validation, the error contract and the
 * router. Transport (FastCGI) lives in app.c. */
#include "stoa/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stoa/app.h"
#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/db.h"
#include "stoa/format.h"
#include "stoa/log.h"

const char *stoa_request_path_param(const stoa_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

bool stoa_request_id_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= STOA_REQUEST_ID_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return n > 0;
}

/* Decodes application/x-www-form-urlencoded text; NULL when malformed
 * (bad escape or an encoded NUL). */
static char *form_decode(stoa_arena_t *arena, const char *s, size_t len)
{
    char *out = stoa_arena_alloc(arena, len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= len)
                return NULL;
            int hi = stoa_hex_digit(s[i + 1]);
            int lo = stoa_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* One key=value pair of a query string; *q moves past it and its '&'.
 * False at the end. */
typedef struct {
    const char *key, *value;
    size_t klen, vlen, len; /* len: the whole pair */
} query_pair_t;

static bool query_next(const char **q, query_pair_t *p)
{
    const char *s = *q;
    if (!*s)
        return false;
    const char *amp = strchr(s, '&');
    p->len = amp ? (size_t)(amp - s) : strlen(s);
    const char *eq = memchr(s, '=', p->len);
    p->key = s;
    p->klen = eq ? (size_t)(eq - s) : p->len;
    p->value = eq ? eq + 1 : s + p->len;
    p->vlen = eq ? p->len - p->klen - 1 : 0;
    *q = s + p->len + (amp ? 1 : 0);
    return true;
}

const char *stoa_request_query(stoa_request_t *req, const char *key)
{
    const char *q = req->query ? req->query : "";
    size_t keylen = strlen(key);
    query_pair_t p;
    while (query_next(&q, &p)) {
        char *k = form_decode(req->arena, p.key, p.klen);
        if (k && strlen(k) == keylen && memcmp(k, key, keylen) == 0) {
            char *value = form_decode(req->arena, p.value, p.vlen);
            /* Every value goes to a handler as text, and may reach
             * Postgres, which refuses bytes that are not UTF-8 (a 500). */
            if (!value || !stoa_utf8_valid(value, strlen(value))) {
                stoa_request_field_error(req, key, "invalid_encoding");
                return NULL;
            }
            return value;
        }
    }
    return NULL;
}

void stoa_request_query_reject_unknown(stoa_request_t *req,
                                       const char *const *allowed)
{
    const char *q = req->query ? req->query : "";
    query_pair_t p;
    while (query_next(&q, &p)) {
        char *k = form_decode(req->arena, p.key, p.klen);
        bool known = false;
        for (const char *const *a = allowed; k && *a && !known; a++)
            known = strcmp(*a, k) == 0;
        /* A key that is not text is named by what it is, not echoed. */
        if (p.len && !known)
            stoa_request_field_error(
                req, k && stoa_utf8_valid(k, strlen(k)) ? k : "query",
                "unknown_field");
    }
}

void stoa_http_write_columns(stoa_jw_t *w, const stoa_db_result_t *res, int row,
                             const stoa_column_t *columns, size_t ncolumns)
{
    for (size_t i = 0; i < ncolumns; i++) {
        const stoa_column_t *c = &columns[i];
        const char *v = stoa_db_value(res, row, c->column);
        stoa_jw_key(w, c->name);
        if (!v) {
            stoa_jw_null(w);
            continue;
        }
        switch (c->kind) {
        case STOA_COLUMN_TEXT:
            stoa_jw_string(w, v);
            break;
        case STOA_COLUMN_INTEGER:
            stoa_jw_integer(w, atoll(v));
            break;
        case STOA_COLUMN_BOOL:
            stoa_jw_bool(w, v[0] == 't');
            break;
        case STOA_COLUMN_JSON:
            stoa_jw_raw(w, v, strlen(v));
            break;
        }
    }
}

int stoa_http_keyset_list(stoa_request_t *req, const stoa_db_statement_t *st,
                          const stoa_list_t *list)
{
    stoa_page_t page;
    if (!stoa_request_page(req, STOA_PAGE_KEYSET, &page))
        return stoa_http_invalid_fields(req);
    const char *params[] = {page.cursor_ts, page.cursor_id, page.fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, st, params, &res);
    if (rc != STOA_OK)
        return rc;
    return stoa_http_list(req, res, &page, list);
}

int stoa_http_list(stoa_request_t *req, const stoa_db_result_t *res,
                   const stoa_page_t *page, const stoa_list_t *list)
{
    int rows = stoa_db_rows(res);
    int shown = page && rows > page->limit ? page->limit : rows;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    for (int i = 0; i < shown; i++) {
        stoa_jw_object_open(w);
        stoa_http_write_columns(w, res, i, list->columns, list->ncolumns);
        if (list->more)
            list->more(req, w, res, i);
        stoa_jw_object_close(w);
    }
    stoa_jw_array_close(w);
    stoa_jw_key(w, "next_cursor");
    if (shown < rows && page->kind == STOA_PAGE_KEYSET)
        stoa_jw_string(
            w, stoa_arena_sprintf(
                   req->arena, "%s_%s",
                   stoa_db_value(res, shown - 1, list->cursor_column),
                   stoa_db_value(res, shown - 1, list->cursor_id_column)));
    else if (shown < rows)
        stoa_jw_string(w, stoa_db_value(res, shown - 1, list->cursor_column));
    else
        stoa_jw_null(w);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

/* A SERIAL cursor: digits only, a positive number (its range is left to
 * Postgres, which names the field). */
static bool serial_cursor(stoa_request_t *req, const char **id)
{
    const char *cursor = stoa_request_query(req, "cursor");
    *id = cursor;
    if (!cursor)
        return true;
    char *end;
    long long c = strtoll(cursor, &end, 10);
    if (!*cursor || *end || c < 1 || cursor[0] < '0' || cursor[0] > '9') {
        stoa_request_field_error(req, "cursor", "invalid");
        return false;
    }
    return true;
}

bool stoa_request_page(stoa_request_t *req, stoa_page_kind_t kind,
                       stoa_page_t *page)
{
    memset(page, 0, sizeof(*page));
    page->kind = kind;
    stoa_request_limit(req, &page->limit);
    if (kind == STOA_PAGE_KEYSET)
        stoa_request_cursor(req, &page->cursor_ts, &page->cursor_id);
    else
        serial_cursor(req, &page->cursor_id);
    snprintf(page->fetch, sizeof(page->fetch), "%d", page->limit + 1);
    /* Also a parameter that is not UTF-8 (stoa_request_query). */
    return !stoa_request_has_field_errors(req);
}

int stoa_request_begin(stoa_request_t *req, const stoa_db_statement_t *st,
                       const char *const *params, stoa_db_result_t **res)
{
    stoa_db_t *db = stoa_request_db(req);
    stoa_db_result_t *found = NULL;
    int rc = stoa_db_begin(db);
    if (rc == STOA_OK && st)
        rc = stoa_db_exec(db, req->arena, st, params, &found);
    if (res)
        *res = found;
    if (rc == STOA_OK && st && stoa_db_rows(found) == 0)
        rc = STOA_DECLINED;
    if (rc != STOA_OK)
        stoa_db_rollback(db);
    return rc;
}

int stoa_request_commit(stoa_request_t *req, const char *action,
                        const char *target_id, const char *details_json)
{
    stoa_db_t *db = stoa_request_db(req);
    int rc = STOA_OK;
    if (action)
        rc = stoa_request_audit(req, NULL, action, target_id, details_json);
    if (rc == STOA_OK)
        rc = stoa_db_commit(db);
    if (rc != STOA_OK)
        stoa_db_rollback(db);
    return rc;
}

bool stoa_request_limit(stoa_request_t *req, int *limit)
{
    const char *s = stoa_request_query(req, "limit");
    *limit = 20;
    if (!s)
        return true;
    long v = 0;
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= 3;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (s[i] - '0');
    }
    if (!ok || v < 1 || v > 100) {
        stoa_request_field_error(req, "limit", "out_of_range");
        return false;
    }
    *limit = (int)v;
    return true;
}

bool stoa_request_cursor(stoa_request_t *req, const char **ts, const char **id)
{
    *ts = *id = NULL;
    const char *c = stoa_request_query(req, "cursor");
    if (!c)
        return true;
    const char *sep = strchr(c, '_');
    bool ok = sep && sep > c && sep - c <= 18 && stoa_uuid_valid(sep + 1);
    for (const char *p = c; ok && p < sep; p++)
        ok = *p >= '0' && *p <= '9';
    if (!ok) {
        stoa_request_field_error(req, "cursor", "invalid");
        return false;
    }
    *ts = stoa_arena_strndup(req->arena, c, (size_t)(sep - c));
    *id = sep + 1;
    return true;
}

void stoa_request_field_error(stoa_request_t *req, const char *field,
                              const char *reason)
{
    if (req->field_errors.len)
        stoa_buf_puts(&req->field_errors, ",");
    stoa_buf_puts(&req->field_errors, "\"");
    stoa_buf_json_escape(&req->field_errors, field, strlen(field));
    stoa_buf_puts(&req->field_errors, "\":\"");
    stoa_buf_json_escape(&req->field_errors, reason, strlen(reason));
    stoa_buf_puts(&req->field_errors, "\"");
}

bool stoa_request_has_field_errors(const stoa_request_t *req)
{
    return req->field_errors.len > 0;
}

static bool is_json_media_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    char next = ct[sizeof(want) - 1];
    return next == '\0' || next == ';' || next == ' ';
}

int stoa_request_json_body(stoa_request_t *req, const stoa_json_t **out)
{
    *out = NULL;
    if (!is_json_media_type(req->content_type))
        return stoa_http_fail(req, STOA_ERR_UNSUPPORTED_MEDIA_TYPE,
                              "Content-Type must be application/json");
    if (req->body_len == 0)
        return stoa_http_fail(req, STOA_ERR_INVALID_JSON,
                              "a JSON body is required");
    char err[200];
    stoa_json_t *doc;
    if (stoa_json_parse(req->arena, req->body, req->body_len,
                        STOA_JSON_MAX_DEPTH, &doc, err, sizeof(err)) != STOA_OK)
        return stoa_http_fail(req, STOA_ERR_INVALID_JSON, err);
    if (!stoa_json_is_object(doc))
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "the body must be a JSON object");
    *out = doc;
    return STOA_OK;
}

const char *stoa_field_string(stoa_request_t *req, const stoa_json_t *obj,
                              const char *name, unsigned flags, size_t min_len,
                              size_t max_len)
{
    const stoa_json_t *v = stoa_json_get(obj, name);
    if (!v || stoa_json_is_null(v)) {
        if (flags & STOA_FIELD_REQUIRED)
            stoa_request_field_error(req, name, "required");
        return NULL;
    }
    const char *s = stoa_json_string(v);
    if (!s) {
        stoa_request_field_error(req, name, "must_be_string");
        return NULL;
    }
    size_t len = strlen(s);
    if (len < min_len) {
        stoa_request_field_error(req, name,
                                 len == 0 ? "required" : "too_short");
        return NULL;
    }
    if (len > max_len) {
        stoa_request_field_error(req, name, "too_long");
        return NULL;
    }
    return s;
}

bool stoa_field_integer(stoa_request_t *req, const stoa_json_t *obj,
                        const char *name, unsigned flags, int64_t min,
                        int64_t max, int64_t *out)
{
    const stoa_json_t *v = stoa_json_get(obj, name);
    if (!v || stoa_json_is_null(v)) {
        if (flags & STOA_FIELD_REQUIRED)
            stoa_request_field_error(req, name, "required");
        return false;
    }
    int64_t n;
    if (!stoa_json_integer(v, &n)) {
        stoa_request_field_error(req, name, "must_be_integer");
        return false;
    }
    if (n < min || n > max) {
        stoa_request_field_error(req, name, "out_of_range");
        return false;
    }
    *out = n;
    return true;
}

bool stoa_field_bool(stoa_request_t *req, const stoa_json_t *obj,
                     const char *name, unsigned flags, bool *out)
{
    const stoa_json_t *v = stoa_json_get(obj, name);
    if (!v || stoa_json_is_null(v)) {
        if (flags & STOA_FIELD_REQUIRED)
            stoa_request_field_error(req, name, "required");
        return false;
    }
    if (!stoa_json_bool(v, out)) {
        stoa_request_field_error(req, name, "must_be_boolean");
        return false;
    }
    return true;
}

void stoa_field_reject_unknown(stoa_request_t *req, const stoa_json_t *obj,
                               const char *const *allowed)
{
    size_t n = stoa_json_len(obj);
    for (size_t i = 0; i < n; i++) {
        const char *key = stoa_json_key_at(obj, i);
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0) {
                known = true;
                break;
            }
        if (!known)
            stoa_request_field_error(req, key, "unknown_field");
    }
}

void stoa_http_header(stoa_request_t *req, const char *name, const char *value)
{
    /* Header injection guard: our own code sets these, but a value that
     * ever carried a CR or LF would split the response. */
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return;
    stoa_buf_printf(&req->headers, "%s: %s\r\n", name, value);
}

stoa_jw_t *stoa_http_json(stoa_request_t *req, int status)
{
    stoa_buf_reset(&req->body_out);
    stoa_jw_reset(req->jw, &req->body_out);
    req->status = status;
    return req->jw;
}

int stoa_http_send(stoa_request_t *req)
{
    if (!stoa_jw_ok(req->jw))
        return STOA_ERROR;
    req->responded = true;
    return STOA_OK;
}

int stoa_http_raw_json(stoa_request_t *req, int status, const char *json,
                       size_t len)
{
    stoa_buf_reset(&req->body_out);
    stoa_buf_append(&req->body_out, json, len);
    req->status = status;
    req->responded = true;
    return STOA_OK;
}

int stoa_http_empty(stoa_request_t *req, int status)
{
    stoa_buf_reset(&req->body_out);
    req->status = status;
    req->responded = true;
    return STOA_OK;
}

static const char *default_message(const char *code)
{
    const stoa_err_info_t *known = stoa_err_find(code);
    return known ? known->message : code;
}

int stoa_http_error_details(stoa_request_t *req, int status, const char *code,
                            const char *message, const char *details_json)
{
    stoa_jw_t *w = stoa_http_json(req, status);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "error");
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "code", code);
    stoa_jw_kv_string(w, "message", message ? message : default_message(code));
    stoa_jw_key(w, "details");
    if (details_json)
        stoa_jw_raw(w, details_json, strlen(details_json));
    else {
        stoa_jw_object_open(w);
        stoa_jw_object_close(w);
    }
    stoa_jw_object_close(w);
    stoa_jw_kv_string(w, "request_id", req->request_id);
    stoa_jw_object_close(w);
    req->responded = true;
    if (status == 503)
        return STOA_AGAIN;
    return status >= 500 ? STOA_ERROR : STOA_DECLINED;
}

int stoa_http_error(stoa_request_t *req, int status, const char *code,
                    const char *message)
{
    return stoa_http_error_details(req, status, code, message, NULL);
}

int stoa_http_fail_details(stoa_request_t *req, stoa_err_t err,
                           const char *message, const char *details_json)
{
    const stoa_err_info_t *e = stoa_err_info(err);
    return stoa_http_error_details(
        req, e->status, e->code, message ? message : e->message, details_json);
}

int stoa_http_fail(stoa_request_t *req, stoa_err_t err, const char *message)
{
    return stoa_http_fail_details(req, err, message, NULL);
}

int stoa_http_fail_as(stoa_request_t *req, int status, stoa_err_t err,
                      const char *message)
{
    STOA_ASSERT(status >= 400 && status <= 599);
    const stoa_err_info_t *e = stoa_err_info(err);
    return stoa_http_error_details(req, status, e->code,
                                   message ? message : e->message, NULL);
}

int stoa_http_invalid_fields(stoa_request_t *req)
{
    /* field_errors holds the members "<field>":"<reason>", each escaped
     * when it was recorded (stoa_request_field_error). */
    stoa_jw_t *d = stoa_jw_arena(req->arena);
    stoa_jw_object_open(d);
    stoa_jw_key(d, "fields");
    stoa_buf_t members;
    stoa_buf_init(&members);
    stoa_buf_append(&members, "{", 1);
    if (req->field_errors.data)
        stoa_buf_append(&members, req->field_errors.data,
                        req->field_errors.len);
    stoa_buf_append(&members, "}", 1);
    stoa_jw_raw(d, members.data, members.len);
    stoa_buf_free(&members);
    stoa_jw_object_close(d);
    return stoa_http_fail_details(req, STOA_ERR_INVALID_REQUEST,
                                  "some fields are invalid",
                                  stoa_jw_arena_text(req->arena, d));
}

const char *stoa_request_only_string(stoa_request_t *req, const char *name,
                                     size_t max_len)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return NULL;
    const char *const allowed[] = {name, NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *value =
        stoa_field_string(req, body, name, STOA_FIELD_REQUIRED, 1, max_len);
    if (stoa_request_has_field_errors(req)) {
        stoa_http_invalid_fields(req);
        return NULL;
    }
    return value;
}

/* Matches one pattern against the path, capturing {name} segments. */
static bool pattern_match(stoa_request_t *req, const char *pattern,
                          const char *path)
{
    stoa_param_t params[STOA_ROUTE_MAX_PARAMS];
    size_t n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        const char *pe = p + strcspn(p, "/");
        const char *se = s + strcspn(s, "/");
        if (*p == '{') {
            if (se == s || n == STOA_ROUTE_MAX_PARAMS)
                return false;
            if (req) {
                params[n].name =
                    stoa_arena_strndup(req->arena, p + 1, (size_t)(pe - p - 2));
                params[n].value =
                    stoa_arena_strndup(req->arena, s, (size_t)(se - s));
            }
            n++;
        } else if (pe - p != se - s || memcmp(p, s, (size_t)(pe - p)) != 0) {
            return false;
        }
        p = pe;
        s = se;
    }
    if (*p || *s)
        return false;
    if (req) {
        memcpy(req->params, params, n * sizeof(params[0]));
        req->nparams = n;
    }
    return true;
}

bool stoa_route_pattern_matches(const char *pattern, const char *path)
{
    return pattern_match(NULL, pattern, path);
}

int stoa_router_match(stoa_request_t *req, const stoa_route_t *routes,
                      size_t nroutes, const char **allow)
{
    stoa_buf_t methods;
    stoa_buf_init(&methods);
    int found = -404;
    for (size_t i = 0; i < nroutes; i++) {
        if (!pattern_match(req, routes[i].pattern, req->path))
            continue;
        if (strcmp(routes[i].method, req->method) == 0) {
            found = (int)i;
            break;
        }
        found = -405;
        if (methods.len)
            stoa_buf_puts(&methods, ", ");
        stoa_buf_puts(&methods, routes[i].method);
    }
    if (found == -405 && allow)
        *allow = stoa_arena_strdup(req->arena, methods.data);
    stoa_buf_free(&methods);
    if (found < 0)
        req->nparams = 0;
    return found;
}

/* The request's connections, bound to its context (requests made by tests
 * and benches fill only req->ctx). */
static stoa_conns_t *request_conns(stoa_request_t *req)
{
    req->conns.ctx = req->ctx;
    return &req->conns;
}

stoa_db_t *stoa_request_db(stoa_request_t *req)
{
    return stoa_conns_db(request_conns(req));
}

stoa_kv_t *stoa_request_kv(stoa_request_t *req)
{
    return stoa_conns_kv(request_conns(req));
}

void stoa_request_release(stoa_request_t *req)
{
    stoa_conns_release(request_conns(req));
}

stoa_actor_t stoa_request_actor(const stoa_request_t *req, const char *actor_id)
{
    stoa_actor_t a = {
        .user_id = req->principal.present ? req->principal.user_id : actor_id,
        .address = req->remote_addr,
        .request_id = req->request_id,
    };
    return a;
}

int stoa_request_audit(stoa_request_t *req, const char *actor_id,
                       const char *action, const char *target_id,
                       const char *details_json)
{
    stoa_actor_t actor = stoa_request_actor(req, actor_id);
    return stoa_audit(stoa_request_db(req), req->arena, &actor, action,
                      target_id, details_json);
}
