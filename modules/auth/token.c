/* token.c - POST /v1/auth/token: an API key traded for an access token. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"

int auth_token(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"grant_type", "api_key", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *grant =
        stoa_field_string(req, body, "grant_type", STOA_FIELD_REQUIRED, 1, 40);
    const char *key =
        stoa_field_string(req, body, "api_key", STOA_FIELD_REQUIRED, 1, 200);
    if (grant && strcmp(grant, "api_key") != 0)
        stoa_request_field_error(req, "grant_type", "unsupported");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    /* stoa_<12 hex>_<secret> */
    char prefix[AUTH_KEY_PREFIX_LEN + 1] = "";
    const char *secret = NULL;
    if (strncmp(key, "stoa_", 5) == 0 &&
        strlen(key) > 5 + AUTH_KEY_PREFIX_LEN + 1 &&
        key[5 + AUTH_KEY_PREFIX_LEN] == '_') {
        memcpy(prefix, key + 5, AUTH_KEY_PREFIX_LEN);
        prefix[AUTH_KEY_PREFIX_LEN] = '\0';
        secret = key + 6 + AUTH_KEY_PREFIX_LEN;
    }
    /* Exchanges are throttled like logins, per key prefix and address. */
    const char *throttle_id =
        stoa_arena_sprintf(req->arena, "apikey:%s", prefix);
    if (auth_throttle_check(req, throttle_id) != STOA_OK)
        return STOA_DECLINED;
    stoa_db_result_t *res = NULL;
    int rc = STOA_OK;
    bool ok = false;
    if (secret) {
        const char *p1[] = {prefix};
        if ((rc = stoa_db_exec(stoa_request_db(req), req->arena,
                               AUTH_SQL(API_KEY_LOOKUP), p1, &res)) != STOA_OK)
            return rc;
        if (stoa_db_rows(res) == 1) {
            const char *stored =
                stoa_db_value(res, 0, KEY_LOOKUP_COL_SECRET_HASH);
            const char *given = auth_token_hash_param(req, secret);
            ok = strlen(stored) == strlen(given) &&
                 stoa_ct_equal(stored, given, strlen(given)) &&
                 stoa_db_value(res, 0, KEY_LOOKUP_COL_USABLE)[0] == 't' &&
                 strcmp(stoa_db_value(res, 0, KEY_LOOKUP_COL_STATUS),
                        "active") == 0;
        }
    }
    if (!ok) {
        auth_throttle_fail(req, throttle_id);
        return stoa_http_fail(req, STOA_ERR_INVALID_CREDENTIALS,
                              "the API key is unknown, revoked or expired");
    }
    const char *key_id = stoa_db_value(res, 0, KEY_LOOKUP_COL_ID);
    const char *user_id = stoa_db_value(res, 0, KEY_LOOKUP_COL_USER_ID);
    const char *scope = stoa_db_value(res, 0, KEY_LOOKUP_COL_SCOPES);
    if (!scope || !*scope)
        scope = "*"; /* never reached since keys name their scopes */
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%ld", req->ctx->conf.access_token_ttl);
    const char *p2[] = {key_id, ttl, req->user_agent, req->remote_addr};
    stoa_db_result_t *session;
    char *access;
    if ((rc = stoa_db_exec(stoa_request_db(req), req->arena,
                           AUTH_SQL(API_KEY_SESSION_START), p2, &session)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(session) != 1) /* revoked or deleted meanwhile */
        return stoa_http_fail(req, STOA_ERR_INVALID_CREDENTIALS,
                              "the API key is unknown, revoked or expired");
    int64_t not_after =
        strtoll(stoa_db_value(session, 0, KEY_SESSION_COL_EXP), NULL, 10);
    /* The role as it is now, read under the lock with the session. */
    if ((rc = auth_access_token_scoped(
             req, user_id, stoa_db_value(session, 0, KEY_SESSION_COL_ROLE),
             stoa_db_value(session, 0, KEY_SESSION_COL_ID), scope, not_after,
             &access)) != STOA_OK)
        return rc;
    int64_t expires_in = not_after - stoa_unix_time();
    if (expires_in > req->ctx->conf.access_token_ttl)
        expires_in = req->ctx->conf.access_token_ttl;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "access_token", access);
    stoa_jw_kv_string(w, "token_type", "Bearer");
    stoa_jw_kv_integer(w, "expires_in", expires_in < 0 ? 0 : expires_in);
    stoa_jw_kv_string(w, "scope", scope);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
