/* me.c - /v1/me and /v1/me/export: the caller's profile read, updated,
 * exported and erased.
 *
 * A read is served from the process's copy (hostcache.h), else from Redis,
 * else from Postgres; every change drops both copies after its commit
 * (auth_forget_profile), so the next read anywhere on the host has it. */
#include <string.h>

#include "auth.h"
#include "stoa/cache_keys.h"
#include "stoa/events.h"
#include "stoa/gdpr.h"
#include "stoa/hostcache.h"
#include "stoa/log.h"

#define PROFILE_CACHE_TTL_S 300

/* Notification preferences a user may set; each a boolean. */
static const char *const known_prefs[] = {"product_updates", "marketing",
                                          "billing", "security", NULL};

static int write_me(stoa_request_t *req, const stoa_db_result_t *user)
{
    stoa_jw_t *w = stoa_http_json(req, 200);
    auth_write_user(w, user, 0, 0);
    return stoa_http_send(req);
}

/* Keeps what a read fetched at version (read before the fetch): in Redis
 * when it came from Postgres, and in the process. A change committed on
 * this host since then has moved the version: such a copy is old and kept
 * nowhere. */
static void keep_profile(stoa_request_t *req, const char *key, uint64_t version,
                         bool in_redis)
{
    stoa_hostcache_t *hc = req->ctx->hostcache;
    if (stoa_hostcache_version(hc, key) != version)
        return;
    if (in_redis &&
        stoa_kv_set(stoa_request_kv(req), key, req->body_out.data,
                    req->body_out.len, PROFILE_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "profile not cached");
    stoa_hostcache_put(hc, key, version, req->body_out.data, req->body_out.len);
}

int auth_me_get(stoa_request_t *req)
{
    stoa_hostcache_t *hc = req->ctx->hostcache;
    char *key = stoa_key_profile(req->arena, req->principal.user_id);
    uint64_t version = stoa_hostcache_version(hc, key);
    char *cached;
    size_t len;
    if (stoa_hostcache_get(hc, req->arena, key, &cached, &len) == STOA_OK)
        return stoa_http_raw_json(req, 200, cached, len);
    if (stoa_kv_get(stoa_request_kv(req), req->arena, key, &cached, &len) ==
        STOA_OK) {
        stoa_hostcache_put(hc, key, version, cached, len);
        return stoa_http_raw_json(req, 200, cached, len);
    }
    const char *params[] = {req->principal.user_id};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(USER_BY_ID), params, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    rc = write_me(req, user);
    if (rc == STOA_OK)
        keep_profile(req, key, version, true);
    return rc;
}

/* Validates notification_prefs into a JSON object text (arena), or NULL
 * with field errors recorded. */
static char *prefs_json(stoa_request_t *req, const stoa_json_t *prefs)
{
    if (!stoa_json_is_object(prefs)) {
        stoa_request_field_error(req, "notification_prefs", "must_be_object");
        return NULL;
    }
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_jw_t *w = stoa_jw_new(&out);
    stoa_jw_object_open(w);
    bool ok = true;
    for (size_t i = 0; i < stoa_json_len(prefs); i++) {
        const char *k = stoa_json_key_at(prefs, i);
        bool known = false, v;
        for (const char *const *p = known_prefs; *p; p++)
            known = known || strcmp(*p, k) == 0;
        char *field =
            stoa_arena_sprintf(req->arena, "notification_prefs.%.64s", k);
        if (!known) {
            stoa_request_field_error(req, field, "unknown_field");
            ok = false;
        } else if (!stoa_json_bool(stoa_json_at(prefs, i), &v)) {
            stoa_request_field_error(req, field, "must_be_boolean");
            ok = false;
        } else {
            stoa_jw_kv_bool(w, k, v);
        }
    }
    stoa_jw_object_close(w);
    stoa_jw_free(w);
    char *json = ok ? stoa_arena_strndup(req->arena, out.data, out.len) : NULL;
    stoa_buf_free(&out);
    return json;
}

int auth_me_patch(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"name", "notification_prefs", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *name = auth_name_field(req, body, STOA_FIELD_OPTIONAL);
    const stoa_json_t *prefs = stoa_json_get(body, "notification_prefs");
    char *prefs_text = prefs ? prefs_json(req, prefs) : NULL;
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    stoa_db_t *db = stoa_request_db(req);
    const char *user_id = req->principal.user_id;
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *params[] = {user_id, name, prefs_text};
    stoa_db_result_t *user;
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(USER_UPDATE_PROFILE),
                           params, &user)) != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    }
    if ((rc = stoa_event_user(db, req->arena, STOA_EVENT_USER_UPDATED,
                              user_id)) != STOA_OK ||
        (rc = stoa_request_audit(req, NULL, "user.profile_updated", user_id,
                                 NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_forget_profile(req, user_id);
    return write_me(req, user);
}

int auth_me_export(stoa_request_t *req)
{
    const char *json;
    int rc = stoa_gdpr_export(stoa_request_db(req), req->arena,
                              req->principal.user_id, &json);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    if (rc != STOA_OK)
        return rc;
    stoa_http_header(req, "Content-Disposition",
                     "attachment; filename=\"stoa-export.json\"");
    return stoa_http_raw_json(req, 200, json, strlen(json));
}

int auth_me_delete(stoa_request_t *req)
{
    const char *password = stoa_request_only_string(req, "password", 4096);
    if (!password)
        return STOA_DECLINED;
    stoa_db_t *db = stoa_request_db(req);
    const char *user_id = req->principal.user_id;
    stoa_db_result_t *user;
    int rc = auth_caller_user(req, &user);
    if (rc != STOA_OK)
        return rc;
    const char *phc = stoa_db_value(user, 0, USER_COL_PASSWORD_HASH);
    if (!phc || stoa_password_verify(phc, password) != STOA_OK) {
        stoa_request_field_error(req, "password", "incorrect");
        return stoa_http_invalid_fields(req);
    }
    /* The same erasure an admin runs on the user's behalf (stoa/gdpr.h). */
    stoa_actor_t actor = stoa_request_actor(req, NULL);
    stoa_db_result_t *revoked;
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = auth_credentials_unchanged(req, phc)) != STOA_OK)
        return rc;
    rc = stoa_gdpr_erase(db, req->arena, &actor, user_id, &revoked);
    if (rc == STOA_DECLINED) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    }
    if (rc != STOA_OK || (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    stoa_gdpr_erased(&req->conns, req->arena, user_id, revoked);
    return stoa_http_empty(req, 204);
}
