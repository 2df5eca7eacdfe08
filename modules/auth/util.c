/* util.c - helpers shared by the auth handlers: users as JSON, emails,
 * password policy, tokens, sessions, mail, throttling. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/keys.h"
#include "stoa/log.h"
#include "stoa/mail_link.h"
#include "stoa/outbox.h"
#include "stoa/revoke.h"

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

bool auth_password_acceptable(stoa_request_t *req, const char *field,
                              const char *password, const char *email,
                              const char *name)
{
    const char *reason = stoa_password_refusal(password, email, name);
    if (reason)
        stoa_request_field_error(req, field, reason);
    return reason == NULL;
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
    return stoa_mail_link_token_hash(req->arena, token);
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

int auth_user_for_session(stoa_request_t *req, const char *user_id,
                          const char *verified_hash, stoa_db_result_t **user)
{
    const char *p[] = {user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "user_for_session",
                          p, user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(*user) != 1 ||
        strcmp(stoa_db_value(*user, 0, AUTH_USER_NCOLUMNS + 1), "active") !=
            0)
        return stoa_http_error(req, 403, "account_suspended",
                               "this account is not active");
    const char *now_hash = stoa_db_value(*user, 0, AUTH_USER_NCOLUMNS);
    if (verified_hash && (!now_hash || strcmp(now_hash, verified_hash) != 0))
        return stoa_http_error(req, 401, "invalid_credentials",
                               "email or password is wrong");
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
    return stoa_mail_link_enqueue(stoa_request_db(req), req->arena, tmpl, to,
                                  data_json, NULL, NULL, dedupe_key);
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
 * Per (account, IP): 5 failures in 15 minutes lock the pair out; each
 * further lockout within a day doubles the lock (15 min, 30 min, 1 h, ...
 * at most a day).
 *
 * Per IP, failures only slow the address down: one address is often a
 * whole office or a mobile carrier, and a lock on it would let one person
 * lock everyone behind it out. From the 20th failure in 15 minutes, each
 * failure opens a cool-down (1 s, doubling with every further failure, at
 * most 5 min) during which attempts from the address at accounts that
 * have failed from it are refused without being looked at. An account
 * without recent failures from the address is judged at once, so the
 * colleague with the right password gets in; every guess the attacker
 * makes lengthens its own wait and spends its next guesses at the
 * accounts it tried.
 *
 * Redis cannot answer, or has lost failures: every failure is also a row
 * in auth.login_failures, and the pair's lock is judged from those rows
 * (5 in the window: refused until the oldest of them leaves it) while
 * Redis is unreachable, and until Redis has held one whole window of
 * failures since it came back (the key lf:since says since when it has:
 * missing after a restart or a flush, moved on by a process that could not
 * reach it). The normal path asks Postgres nothing; a failure costs one
 * insert besides its audit line. Postgres knows no doubling and no address
 * cool-down: slower and coarser, but the pair's lock holds. */
#define THROTTLE_WINDOW_S 900
#define THROTTLE_ACCOUNT_LIMIT 5
/* The same numbers as statement parameters (text). */
#define THROTTLE_TEXT_(n) #n
#define THROTTLE_TEXT(n) THROTTLE_TEXT_(n)
#define THROTTLE_WINDOW_PARAM THROTTLE_TEXT(THROTTLE_WINDOW_S)
#define THROTTLE_ACCOUNT_LIMIT_PARAM THROTTLE_TEXT(THROTTLE_ACCOUNT_LIMIT)
#define THROTTLE_MAX_LOCK_S 86400
#define THROTTLE_IP_SLOW_AFTER 20
#define THROTTLE_IP_MAX_WAIT_S 300
#define THROTTLE_SINCE_KEY "lf:since"

/* Where this process judges locks (auth_state_t.throttle_mode). */
enum {
    THROTTLE_ON_REDIS = 0, /* the zero value: a process starts trusting Redis */
    THROTTLE_REDIS_DOWN,
    THROTTLE_REDIS_WARMING
};

/* Records where the throttle looks now, and logs the change, once per
 * change and process rather than once per request. */
static void throttle_mode_set(stoa_request_t *req, int mode)
{
    int was = atomic_exchange(&auth_state(req)->throttle_mode, mode);
    if (was == mode)
        return;
    if (mode == THROTTLE_REDIS_DOWN)
        stoa_log(STOA_LOG_WARN,
                 "login throttle: Redis unreachable; failed logins are "
                 "judged from Postgres until it is back");
    else if (mode == THROTTLE_REDIS_WARMING)
        stoa_log(STOA_LOG_NOTICE,
                 "login throttle: Redis reachable but without a whole "
                 "window of failures (restarted, flushed or new); Postgres "
                 "is also asked for %d s",
                 THROTTLE_WINDOW_S);
    else
        stoa_log(STOA_LOG_NOTICE,
                 "login throttle: Redis holds a whole window again; "
                 "Postgres is no longer asked");
}

/* The identity of an account, as the Redis keys and the Postgres rows
 * name it: a hash, so neither stores the email. */
static char *subject_hash(stoa_request_t *req, const char *email)
{
    uint8_t d[STOA_SHA256_LEN];
    char *hex = stoa_arena_alloc(req->arena, 2 * 16 + 1);
    stoa_sha256(email, strlen(email), d);
    stoa_hex_encode(d, 16, hex);
    return hex;
}

static const char *address_of(const stoa_request_t *req)
{
    return req->remote_addr ? req->remote_addr : "-";
}

static char *account_key(stoa_request_t *req, const char *prefix,
                         const char *email)
{
    return stoa_arena_sprintf(req->arena, "%s:a:%s:%s", prefix,
                              subject_hash(req, email), address_of(req));
}

static char *ip_key(stoa_request_t *req, const char *prefix)
{
    return stoa_arena_sprintf(req->arena, "%s:i:%s", prefix, address_of(req));
}

/* 429 too_many_attempts with Retry-After = seconds. */
static int refuse_with(stoa_request_t *req, long seconds)
{
    char *retry = stoa_arena_sprintf(req->arena, "%ld", seconds < 1 ? 1 : seconds);
    stoa_http_header(req, "Retry-After", retry);
    return stoa_http_error(req, 429, "too_many_attempts",
                           "too many failed attempts; retry later");
}

/* 429 too_many_attempts with Retry-After = what is left of key. */
static int refuse_for(stoa_request_t *req, const char *key)
{
    long ttl = 0;
    if (stoa_kv_ttl(stoa_request_kv(req), key, &ttl) != STOA_OK || ttl < 1)
        ttl = 1;
    return refuse_with(req, ttl);
}

/* The pair's lock as the rows in Postgres tell it. A Postgres that cannot
 * answer either leaves the attempt to be judged (the handler's own
 * queries then fail it). */
static int check_in_postgres(stoa_request_t *req, const char *email)
{
    const char *p[] = {subject_hash(req, email), address_of(req),
                       THROTTLE_WINDOW_PARAM, THROTTLE_ACCOUNT_LIMIT_PARAM};
    stoa_db_result_t *res;
    if (stoa_db_exec(stoa_request_db(req), req->arena, "login_failure_lock", p,
                     &res) != STOA_OK) {
        stoa_log(STOA_LOG_ERR, "login throttle: Postgres could not judge "
                               "an attempt; the password alone decides");
        return STOA_OK;
    }
    if (stoa_db_rows(res) == 0)
        return STOA_OK;
    return refuse_with(req, atol(stoa_db_value(res, 0, 0)));
}

/* Whether Redis has held every failure of the last window, from the
 * value of THROTTLE_SINCE_KEY (NULL: missing). A missing key (Redis
 * restarted empty or flushed), or this process back from not reaching
 * Redis (failures it had could not be counted there), starts the clock
 * anew for every process. */
static bool redis_holds_window(stoa_request_t *req, const char *since)
{
    long long now = (long long)time(NULL);
    bool was_down = atomic_load(&auth_state(req)->throttle_mode) ==
                    THROTTLE_REDIS_DOWN;
    if (!since || was_down) {
        char value[24];
        int n = snprintf(value, sizeof(value), "%lld", now);
        if (stoa_kv_set(stoa_request_kv(req), THROTTLE_SINCE_KEY, value,
                        (size_t)n, 0) != STOA_OK) {
            throttle_mode_set(req, THROTTLE_REDIS_DOWN);
            return false;
        }
        throttle_mode_set(req, THROTTLE_REDIS_WARMING);
        return false;
    }
    if (now - atoll(since) < THROTTLE_WINDOW_S) {
        throttle_mode_set(req, THROTTLE_REDIS_WARMING);
        return false;
    }
    throttle_mode_set(req, THROTTLE_ON_REDIS);
    return true;
}

int auth_throttle_check(stoa_request_t *req, const char *email)
{
    /* The pair's lock, the address's cool-down, the pair's failures, and
     * since when Redis has counted them all: one round trip. */
    char *keys[4] = {account_key(req, "ll", email), ip_key(req, "ll"),
                     account_key(req, "lf", email), THROTTLE_SINCE_KEY};
    char *values[4];
    if (stoa_kv_mget(stoa_request_kv(req), req->arena, 4,
                     (const char *const *)keys, values) != STOA_OK) {
        throttle_mode_set(req, THROTTLE_REDIS_DOWN);
        return check_in_postgres(req, email);
    }
    if (values[0])
        return refuse_for(req, keys[0]);
    if (values[1] && values[2])
        return refuse_for(req, keys[1]);
    if (redis_holds_window(req, values[3]))
        return STOA_OK;
    return check_in_postgres(req, email);
}

/* Each failure is a row whatever Redis does: the rows are what a Redis
 * restart cannot erase. */
static void record_failure(stoa_request_t *req, const char *email)
{
    const char *p[] = {subject_hash(req, email), address_of(req),
                       THROTTLE_WINDOW_PARAM};
    if (stoa_db_exec(stoa_request_db(req), req->arena, "login_failure_insert",
                     p, NULL) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "login throttle: a failure was not recorded "
                               "in Postgres");
}

static void count_account_failure(stoa_request_t *req, const char *email)
{
    char *counter = account_key(req, "lf", email);
    long long n = 0, locks = 0;
    if (stoa_kv_incr(stoa_request_kv(req), counter, THROTTLE_WINDOW_S, &n) !=
        STOA_OK) {
        throttle_mode_set(req, THROTTLE_REDIS_DOWN);
        return;
    }
    if (n < THROTTLE_ACCOUNT_LIMIT)
        return;
    if (stoa_kv_incr(stoa_request_kv(req), account_key(req, "lc", email), 86400,
                     &locks) != STOA_OK)
        locks = 1;
    long lock_s = THROTTLE_WINDOW_S;
    for (long long i = 1; i < locks && lock_s < THROTTLE_MAX_LOCK_S; i++)
        lock_s *= 2;
    if (lock_s > THROTTLE_MAX_LOCK_S)
        lock_s = THROTTLE_MAX_LOCK_S;
    if (stoa_kv_set(stoa_request_kv(req), account_key(req, "ll", email), "1", 1,
                    lock_s) == STOA_OK &&
        stoa_kv_del(stoa_request_kv(req), counter) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not reset a login failure counter");
}

static void count_address_failure(stoa_request_t *req)
{
    long long n = 0;
    if (stoa_kv_incr(stoa_request_kv(req), ip_key(req, "lf"), THROTTLE_WINDOW_S,
                     &n) != STOA_OK ||
        n < THROTTLE_IP_SLOW_AFTER)
        return;
    long wait_s = 1;
    for (long long i = THROTTLE_IP_SLOW_AFTER;
         i < n && wait_s < THROTTLE_IP_MAX_WAIT_S; i++)
        wait_s *= 2;
    if (wait_s > THROTTLE_IP_MAX_WAIT_S)
        wait_s = THROTTLE_IP_MAX_WAIT_S;
    if (stoa_kv_set(stoa_request_kv(req), ip_key(req, "ll"), "1", 1, wait_s) !=
        STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not set a login cool-down");
}

void auth_throttle_fail(stoa_request_t *req, const char *email)
{
    record_failure(req, email);
    count_account_failure(req, email);
    count_address_failure(req);
}

void auth_throttle_clear(stoa_request_t *req, const char *email)
{
    const char *p[] = {subject_hash(req, email), address_of(req)};
    if (stoa_db_exec(stoa_request_db(req), req->arena, "login_failure_clear", p,
                     NULL) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "login throttle: failures in Postgres not "
                                "cleared");
    if (stoa_kv_del(stoa_request_kv(req), account_key(req, "lf", email)) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "throttle counter not cleared");
}
