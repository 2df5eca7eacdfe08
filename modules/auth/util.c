/* util.c - helpers shared by the auth handlers: users as JSON, emails,
 * password policy, tokens, sessions, mail, throttling. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/keys.h"
#include "stoa/log.h"
#include "stoa/outbox.h"
#include "stoa/revoke.h"

extern const char *const auth_common_passwords[];
extern const size_t auth_common_passwords_len;

auth_state_t *auth_state(stoa_request_t *req)
{
    return req->ctx->data;
}

void auth_write_user(stoa_jw_t *w, const stoa_db_result_t *res, int row,
                     int col)
{
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", stoa_db_value(res, row, col));
    stoa_jw_kv_string(w, "email", stoa_db_value(res, row, col + 1));
    stoa_jw_kv_string(w, "name", stoa_db_value(res, row, col + 2));
    stoa_jw_kv_string(w, "role", stoa_db_value(res, row, col + 3));
    const char *verified = stoa_db_value(res, row, col + 4);
    stoa_jw_kv_bool(w, "email_verified", verified && verified[0] == 't');
    const char *mfa = stoa_db_value(res, row, col + 7);
    stoa_jw_kv_bool(w, "mfa_enabled", mfa && mfa[0] == 't');
    stoa_jw_kv_string(w, "created_at", stoa_db_value(res, row, col + 5));
    stoa_jw_key(w, "notification_prefs");
    const char *prefs = stoa_db_value(res, row, col + 6);
    stoa_jw_raw(w, prefs ? prefs : "{}", prefs ? strlen(prefs) : 2);
    stoa_jw_object_close(w);
}

static int word_cmp(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

bool auth_password_acceptable(stoa_request_t *req, const char *field,
                              const char *password, const char *email)
{
    if (utf8_chars(password) < 12) {
        stoa_request_field_error(req, field, "too_short");
        return false;
    }
    if (strlen(password) > 1024) {
        stoa_request_field_error(req, field, "too_long");
        return false;
    }
    char *lower = stoa_arena_strdup(req->arena, password);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (bsearch(lower, auth_common_passwords, auth_common_passwords_len,
                sizeof(auth_common_passwords[0]), word_cmp)) {
        stoa_request_field_error(req, field, "too_common");
        return false;
    }
    if (email) {
        const char *at = strchr(email, '@');
        size_t local = at ? (size_t)(at - email) : 0;
        /* Very short local parts ("jo@") would refuse half the
         * dictionary: only names of 3+ characters count. */
        if (local >= 3) {
            char *needle = stoa_arena_strndup(req->arena, email, local);
            if (strstr(lower, needle)) {
                stoa_request_field_error(req, field, "contains_email");
                return false;
            }
        }
    }
    return true;
}

int auth_password_hash(stoa_request_t *req, const char *pw, char **phc)
{
    char *out = stoa_arena_alloc(req->arena, STOA_PASSWORD_HASH_MAX);
    if (stoa_password_hash(&auth_state(req)->params, pw, out) != STOA_OK)
        return STOA_ERROR;
    *phc = out;
    return STOA_OK;
}

char *auth_token_hash_param(stoa_request_t *req, const char *token)
{
    uint8_t digest[STOA_SHA256_LEN];
    stoa_sha256(token, strlen(token), digest);
    char *out = stoa_arena_alloc(req->arena, 2 + 2 * STOA_SHA256_LEN + 1);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(digest, sizeof(digest), out + 2);
    return out;
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
                             const char *scope, int64_t not_after,
                             char **token)
{
    const stoa_jwt_key_t *key = signing_key(req);
    if (!key)
        return STOA_ERROR;
    const stoa_conf_t *conf = &req->ctx->conf;
    int64_t now = stoa_unix_time();
    char jti[STOA_UUID_STR_LEN + 1];
    stoa_uuid_v4(jti);
    stoa_buf_t claims;
    stoa_buf_init(&claims);
    stoa_jw_t *w = stoa_jw_new(&claims);
    stoa_jw_object_open(w);
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
        *token = stoa_arena_strndup(req->arena, signed_token.data,
                                    signed_token.len);
    stoa_buf_free(&signed_token);
    if (rc != STOA_OK)
        return STOA_ERROR;
    return STOA_OK;
}

int auth_start_session(stoa_request_t *req, const stoa_db_result_t *user)
{
    const stoa_conf_t *conf = &req->ctx->conf;
    const char *user_id = stoa_db_value(user, 0, 0);
    const char *role = stoa_db_value(user, 0, 3);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%ld", conf->refresh_token_ttl);
    const char *p1[] = {user_id, ttl, req->user_agent, req->remote_addr};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "session_insert", p1, &res);
    if (rc != STOA_OK)
        return rc;
    const char *session_id = stoa_db_value(res, 0, 0);
    char *refresh, *hash;
    auth_new_token(req, &refresh, &hash);
    const char *p2[] = {hash, session_id, ttl};
    rc = stoa_db_exec(stoa_request_db(req), req->arena, "refresh_insert", p2, NULL);
    if (rc != STOA_OK)
        return rc;
    char *access;
    rc = auth_access_token(req, user_id, role, session_id, &access);
    if (rc != STOA_OK)
        return rc;
    auth_write_tokens(req, access, refresh, user);
    return STOA_OK;
}

/* The token answer of login, refresh and MFA completion. user may be NULL
 * (refresh answers carry no user). */
void auth_write_tokens(stoa_request_t *req, const char *access,
                       const char *refresh, const stoa_db_result_t *user)
{
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "access_token", access);
    stoa_jw_kv_string(w, "token_type", "Bearer");
    stoa_jw_kv_integer(w, "expires_in", req->ctx->conf.access_token_ttl);
    stoa_jw_kv_string(w, "refresh_token", refresh);
    if (user) {
        stoa_jw_key(w, "user");
        auth_write_user(w, user, 0, 0);
    }
    stoa_jw_object_close(w);
    stoa_http_send(req);
}

int auth_revoke_sessions(stoa_request_t *req, const char *user_id,
                         const char *keep_session_id, const char *reason,
                         bool with_keys, stoa_db_result_t **revoked)
{
    return stoa_revoke_sessions(stoa_request_db(req), req->arena, user_id,
                                keep_session_id, reason, with_keys, revoked);
}

void auth_mark_revoked(stoa_request_t *req, const stoa_db_result_t *revoked)
{
    stoa_revoke_committed(&req->conns, req->arena, revoked);
}

int auth_queue_mail(stoa_request_t *req, const char *tmpl, const char *to,
                    const char *data_json, const char *dedupe_key)
{
    stoa_buf_t payload;
    stoa_buf_init(&payload);
    stoa_jw_t *w = stoa_jw_new(&payload);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "template", tmpl);
    stoa_jw_kv_string(w, "to", to);
    stoa_jw_key(w, "data");
    stoa_jw_raw(w, data_json, strlen(data_json));
    stoa_jw_object_close(w);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    char *json = stoa_arena_strndup(req->arena, payload.data, payload.len);
    stoa_buf_free(&payload);
    if (!ok)
        return STOA_ERROR;
    return stoa_outbox_enqueue(stoa_request_db(req), req->arena, "email.send", json,
                               dedupe_key, 0);
}

int auth_mail_name(stoa_request_t *req, const char *tmpl, const char *to,
                   const char *name, const char *dedupe_key)
{
    stoa_buf_t data;
    stoa_buf_init(&data);
    stoa_jw_t *w = stoa_jw_new(&data);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "name", name);
    stoa_jw_object_close(w);
    stoa_jw_free(w);
    int rc = auth_queue_mail(req, tmpl, to, data.data, dedupe_key);
    stoa_buf_free(&data);
    return rc;
}

int auth_mail_user(stoa_request_t *req, const stoa_db_result_t *user,
                   const char *tmpl)
{
    return auth_mail_name(req, tmpl, stoa_db_value(user, 0, 1),
                          stoa_db_value(user, 0, 2), NULL);
}

void auth_forget_profile(stoa_request_t *req, const char *user_id)
{
    char *key = stoa_arena_sprintf(req->arena, "me:%s", user_id);
    if (stoa_kv_del(stoa_request_kv(req), key) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not drop cached profile");
}

/* --- failed-login throttle ---------------------------------------------
 * Counters per (account, IP) and per IP over a 15-minute window. Reaching
 * the limit locks the pair out; each further lockout within a day doubles
 * the lock (15 min, 30 min, 1 h, ... at most a day). Redis down: no
 * throttling (SPEC: everything but rate limiting keeps working). */
#define THROTTLE_WINDOW_S 900
#define THROTTLE_ACCOUNT_LIMIT 5
#define THROTTLE_IP_LIMIT 20
#define THROTTLE_MAX_LOCK_S 86400

static char *account_key(stoa_request_t *req, const char *prefix,
                         const char *email)
{
    uint8_t d[STOA_SHA256_LEN];
    char hex[2 * STOA_SHA256_LEN + 1];
    stoa_sha256(email, strlen(email), d);
    stoa_hex_encode(d, 16, hex);
    return stoa_arena_sprintf(req->arena, "%s:a:%s:%s", prefix, hex,
                              req->remote_addr ? req->remote_addr : "-");
}

static char *ip_key(stoa_request_t *req, const char *prefix)
{
    return stoa_arena_sprintf(req->arena, "%s:i:%s", prefix,
                              req->remote_addr ? req->remote_addr : "-");
}

int auth_throttle_check(stoa_request_t *req, const char *email)
{
    char *keys[2] = {account_key(req, "ll", email), ip_key(req, "ll")};
    char *values[2];
    if (stoa_kv_mget(stoa_request_kv(req), req->arena, 2, (const char *const *)keys,
                     values) != STOA_OK)
        return STOA_OK;
    for (int i = 0; i < 2; i++) {
        if (!values[i])
            continue;
        long ttl = 0;
        if (stoa_kv_ttl(stoa_request_kv(req), keys[i], &ttl) != STOA_OK || ttl < 1)
            ttl = 1;
        char *retry = stoa_arena_sprintf(req->arena, "%ld", ttl);
        stoa_http_header(req, "Retry-After", retry);
        return stoa_http_error(req, 429, "too_many_attempts",
                               "too many failed attempts; retry later");
    }
    return STOA_OK;
}

static void count_failure(stoa_request_t *req, char *counter, char *lock,
                          char *lockouts, long long limit)
{
    long long n = 0, locks = 0;
    if (stoa_kv_incr(stoa_request_kv(req), counter, THROTTLE_WINDOW_S, &n) != STOA_OK ||
        n < limit)
        return;
    if (stoa_kv_incr(stoa_request_kv(req), lockouts, 86400, &locks) != STOA_OK)
        locks = 1;
    long lock_s = THROTTLE_WINDOW_S;
    for (long long i = 1; i < locks && lock_s < THROTTLE_MAX_LOCK_S; i++)
        lock_s *= 2;
    if (lock_s > THROTTLE_MAX_LOCK_S)
        lock_s = THROTTLE_MAX_LOCK_S;
    if (stoa_kv_set(stoa_request_kv(req), lock, "1", 1, lock_s) == STOA_OK &&
        stoa_kv_del(stoa_request_kv(req), counter) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not reset a login failure counter");
}

void auth_throttle_fail(stoa_request_t *req, const char *email)
{
    count_failure(req, account_key(req, "lf", email),
                  account_key(req, "ll", email), account_key(req, "lc", email),
                  THROTTLE_ACCOUNT_LIMIT);
    count_failure(req, ip_key(req, "lf"), ip_key(req, "ll"), ip_key(req, "lc"),
                  THROTTLE_IP_LIMIT);
}

void auth_throttle_clear(stoa_request_t *req, const char *email)
{
    if (stoa_kv_del(stoa_request_kv(req), account_key(req, "lf", email)) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "throttle counter not cleared");
}
