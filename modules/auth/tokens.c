/* tokens.c - opaque tokens (refresh, emailed) and signed access tokens. */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/keys.h"
#include "stoa/log.h"
#include "stoa/mail_link.h"

char *auth_token_hash_param(stoa_request_t *req, const char *token)
{
    return stoa_mail_link_token_hash(req->arena, token);
}

int auth_link_exec(stoa_request_t *req, stoa_db_t *db,
                   const stoa_db_statement_t *st, const char *const *params,
                   stoa_db_result_t **res)
{
    int rc = stoa_db_exec(db, req->arena, st, params, res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(*res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail_as(req, 400, STOA_ERR_INVALID_TOKEN,
                                 "the link is invalid, used or expired");
    }
    return STOA_OK;
}

void auth_new_token(stoa_request_t *req, char **token, char **hash_param)
{
    *token = stoa_random_token(req->arena, 32);
    *hash_param = auth_token_hash_param(req, *token);
}

/* Reloads the signing key when `current` names another kid; checked at
 * most once a second, so a rotation needs no restart. */
static const stoa_jwt_key_t *signing_key(stoa_request_t *req)
{
    auth_state_t *st = auth_state(req);
    uint64_t now = stoa_now_us();
    pthread_mutex_lock(&st->lock);
    stoa_jwt_key_t *current = st->signing_key;
    if (current && now - st->keys_checked_us < 1000000) {
        pthread_mutex_unlock(&st->lock);
        return current;
    }
    st->keys_checked_us = now;
    stoa_jwt_key_t *key = stoa_keys_load_current(req->ctx->conf.keys_dir);
    if (!key) {
        if (!current)
            stoa_log(STOA_LOG_CRIT, "no signing key in %s",
                     req->ctx->conf.keys_dir);
    } else if (current &&
               strcmp(stoa_jwt_key_id(key), stoa_jwt_key_id(current)) == 0) {
        stoa_jwt_key_free(key);
    } else {
        /* The replaced key is freed AUTH_RETIRED_KEYS rotations later;
         * rotations are at least a second apart and a signature takes
         * microseconds, so nobody holds it by then. */
        unsigned slot = st->nretired++ % AUTH_RETIRED_KEYS;
        stoa_jwt_key_free(st->retired[slot]);
        st->retired[slot] = current;
        st->signing_key = current = key;
    }
    pthread_mutex_unlock(&st->lock);
    return current;
}

int auth_access_token(stoa_request_t *req, const char *user_id,
                      const char *role, const char *session_id, char **token)
{
    return auth_access_token_scoped(req, user_id, role, session_id, NULL, 0,
                                    token);
}

int auth_access_token_scoped(stoa_request_t *req, const char *user_id,
                             const char *role, const char *session_id,
                             const char *scope, int64_t not_after, char **token)
{
    const stoa_jwt_key_t *key = signing_key(req);
    if (!key)
        return STOA_ERROR;
    const stoa_conf_t *conf = &req->ctx->conf;
    int64_t now = stoa_unix_time();
    char jti[STOA_UUID_STR_LEN + 1];
    stoa_uuid_v4(jti);
    stoa_buf_t claims;
    stoa_jw_t *w = stoa_jw_object_new(&claims);
    stoa_jw_kv_string(w, "iss", conf->jwt_issuer);
    stoa_jw_kv_string(w, "aud", conf->jwt_audience);
    stoa_jw_kv_string(w, "sub", user_id);
    if (session_id)
        stoa_jw_kv_string(w, "sid", session_id);
    stoa_jw_kv_string(w, "role", role);
    stoa_jw_kv_integer(w, "iat", now);
    stoa_jw_kv_integer(w, "nbf", now);
    int64_t exp = now + conf->access_token_ttl;
    if (not_after > 0 && not_after < exp)
        exp = not_after;
    stoa_jw_kv_integer(w, "exp", exp);
    stoa_jw_kv_string(w, "jti", jti);
    if (scope)
        stoa_jw_kv_string(w, "scope", scope);
    stoa_jw_object_close(w);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    stoa_buf_t signed_token;
    stoa_buf_init(&signed_token);
    int rc = ok ? stoa_jwt_sign(key, claims.data, &signed_token) : STOA_ERROR;
    stoa_buf_free(&claims);
    if (rc == STOA_OK)
        *token =
            stoa_arena_strndup(req->arena, signed_token.data, signed_token.len);
    stoa_buf_free(&signed_token);
    if (rc != STOA_OK)
        return STOA_ERROR;
    return STOA_OK;
}
