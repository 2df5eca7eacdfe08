/* api_keys.c - /v1/auth/api-keys: API keys for agents and scripts:
 * `stoa_<prefix>_<secret>`, shown once, stored as SHA-256 of the secret and
 * found by prefix; traded at POST /v1/auth/token for an access token that
 * carries the key's scopes. Each exchange starts a session of the key
 * (auth.sessions with api_key_id), ending with the key at the latest: the
 * token's sid is that session, so whatever ends sessions (role change, reset,
 * erasure, suspension, the key's revocation) cuts key tokens off through the
 * same revocation markers.
 *
 * Only a login session manages keys (STOA_ROUTE_LOGIN): a key's token can
 * neither mint a key nor revoke one, so no key is ever wider than the login
 * that made it. */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/format.h"

#define SECRET_BYTES 32

int auth_api_keys_create(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"name", "scopes", "expires_at", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *name =
        stoa_field_string(req, body, "name", STOA_FIELD_REQUIRED, 1, 100);
    const stoa_json_t *scopes = stoa_json_get(body, "scopes");
    stoa_buf_t array;
    stoa_buf_init(&array);
    /* No scopes named: the whole of the owner's rights, said explicitly so
     * the key's tokens still carry a scope claim. An empty list is refused
     * rather than read as "everything". */
    char *scopes_param = "{\"*\"}";
    if (scopes && !stoa_json_is_null(scopes)) {
        size_t n = stoa_json_len(scopes);
        bool ok = stoa_json_is_array(scopes) && n >= 1 && n <= 20;
        stoa_buf_puts(&array, "{");
        for (size_t i = 0; ok && i < n; i++) {
            const char *s = stoa_json_string(stoa_json_at(scopes, i));
            ok = s && stoa_scope_valid(s);
            if (ok)
                stoa_buf_printf(&array, "%s\"%s\"", i ? "," : "", s);
        }
        stoa_buf_puts(&array, "}");
        if (ok)
            scopes_param = stoa_arena_strdup(req->arena, array.data);
        else
            stoa_request_field_error(req, "scopes", "invalid");
    }
    stoa_buf_free(&array);
    const char *expires =
        stoa_field_string(req, body, "expires_at", STOA_FIELD_OPTIONAL, 1, 40);
    if (expires && !stoa_time_shape_valid(expires, false))
        stoa_request_field_error(req, "expires_at", "invalid_time");
    else if (expires) {
        /* Compared as text: same shape, UTC, so lexical order is time
         * order. */
        char now[32];
        time_t t = (time_t)stoa_unix_time();
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (strcmp(expires, now) <= 0)
            stoa_request_field_error(req, "expires_at", "in_the_past");
    }
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    uint8_t prefix_raw[AUTH_KEY_PREFIX_LEN / 2], secret_raw[SECRET_BYTES];
    char prefix[AUTH_KEY_PREFIX_LEN + 1], secret[64];
    stoa_random_bytes(prefix_raw, sizeof(prefix_raw));
    stoa_random_bytes(secret_raw, sizeof(secret_raw));
    stoa_hex_encode(prefix_raw, sizeof(prefix_raw), prefix);
    stoa_b64url_encode(secret_raw, sizeof(secret_raw), secret);
    stoa_wipe(secret_raw, sizeof(secret_raw));
    char *hash = auth_token_hash_param(req, secret);
    char *key = stoa_arena_sprintf(req->arena, "stoa_%s_%s", prefix, secret);
    stoa_wipe(secret, sizeof(secret));
    const char *params[] = {req->principal.user_id, name,   prefix, hash,
                            scopes_param,           expires};
    stoa_db_result_t *res;
    int rc = stoa_request_begin(req, AUTH_SQL(API_KEY_INSERT), params, &res);
    if (rc != STOA_OK)
        return rc;
    const char *id = stoa_db_value(res, 0, KEY_INSERT_COL_ID);
    stoa_jw_t *d = stoa_jw_arena(req->arena);
    stoa_jw_object_open(d);
    stoa_jw_kv_string(d, "api_key_id", id);
    stoa_jw_kv_string(d, "prefix", prefix);
    stoa_jw_object_close(d);
    if ((rc =
             stoa_request_commit(req, "api_key.created", req->principal.user_id,
                                 stoa_jw_arena_text(req->arena, d))) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 201);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", id);
    stoa_jw_kv_string(w, "key", key);
    stoa_jw_kv_string(w, "prefix", prefix);
    stoa_jw_kv_string(w, "name", name);
    stoa_jw_key(w, "scopes");
    if (scopes && !stoa_json_is_null(scopes))
        stoa_jw_value(w, scopes);
    else {
        stoa_jw_array_open(w);
        stoa_jw_string(w, "*");
        stoa_jw_array_close(w);
    }
    stoa_jw_kv_string(w, "created_at",
                      stoa_db_value(res, 0, KEY_INSERT_COL_CREATED_AT));
    stoa_jw_kv_string(w, "expires_at",
                      stoa_db_value(res, 0, KEY_INSERT_COL_EXPIRES_AT));
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

static const stoa_column_t key_columns[] = {
    {"id", KEYS_COL_ID, STOA_COLUMN_TEXT},
    {"name", KEYS_COL_NAME, STOA_COLUMN_TEXT},
    {"prefix", KEYS_COL_PREFIX, STOA_COLUMN_TEXT},
    {"scopes", KEYS_COL_SCOPES, STOA_COLUMN_JSON},
    {"created_at", KEYS_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"last_used_at", KEYS_COL_LAST_USED_AT, STOA_COLUMN_TEXT},
    {"expires_at", KEYS_COL_EXPIRES_AT, STOA_COLUMN_TEXT},
};

int auth_api_keys_list(stoa_request_t *req)
{
    const char *params[] = {req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(API_KEYS_LIST), params, &res);
    if (rc != STOA_OK)
        return rc;
    /* At most the newest 100 (the statement's LIMIT): not paged. */
    static const stoa_list_t list = {key_columns, STOA_ARRAY_LEN(key_columns),
                                     NULL, 0, 0};
    return stoa_http_list(req, res, NULL, &list);
}

int auth_api_keys_delete(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such API key");
    stoa_db_t *db = stoa_request_db(req);
    const char *params[] = {id, req->principal.user_id};
    const char *p2[] = {req->principal.user_id, id, "api_key_revoked"};
    stoa_db_result_t *sessions;
    int rc = stoa_request_begin(req, AUTH_SQL(API_KEY_REVOKE), params, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such API key");
    char *details = stoa_json_pair(req->arena, "api_key_id", id);
    if (rc != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(API_KEY_SESSIONS_REVOKE),
                           p2, &sessions)) != STOA_OK ||
        (rc = stoa_request_commit(req, "api_key.revoked",
                                  req->principal.user_id, details)) != STOA_OK)
        return rc;
    auth_mark_revoked(req, sessions);
    return stoa_http_empty(req, 204);
}
