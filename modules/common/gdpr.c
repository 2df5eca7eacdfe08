/* gdpr.c - an account's export and erasure, for the user and for an
 * admin acting on their behalf. */
#include "stoa/gdpr.h"

#include "stoa/audit.h"
#include "stoa/cache_keys.h"
#include "stoa/events.h"
#include "stoa/log.h"
#include "stoa/revoke.h"

enum {
    GDPR_SQL_EXPORT,
    GDPR_SQL_USER_LOCK,
    GDPR_SQL_USER_ERASE,
    GDPR_SQL_REFRESH_DELETE,
    GDPR_SQL_EMAIL_TOKENS_DELETE,
    GDPR_SQL_RECOVERY_CODES_DELETE,
    GDPR_SQL_TOTP_DELETE,
    GDPR_SQL_UPDATES_DELETE,
    GDPR_SQL_COUNT
};
#define GDPR_SQL(id) (&stoa_gdpr_statements[GDPR_SQL_##id])

const stoa_db_statement_t stoa_gdpr_statements[GDPR_SQL_COUNT] = {
    /* No row for an unknown or erased account. */
    [GDPR_SQL_EXPORT] =
        {"gdpr_export",
         "SELECT json_build_object("
         " 'user', (SELECT row_to_json(x) FROM (SELECT id, email, name, role, "
         "  status, email_verified_at, created_at, updated_at, notification_prefs "
         "  FROM auth.users WHERE id = $1::uuid) x),"
         " 'sessions', coalesce((SELECT json_agg(row_to_json(s) ORDER BY "
         "  s.created_at) FROM (SELECT id, created_at, last_used_at, expires_at, "
         "  revoked_at, revoke_reason, user_agent, host(ip) AS ip "
         "  FROM auth.sessions WHERE user_id = $1::uuid) s), '[]'::json),"
         " 'audit_log', coalesce((SELECT json_agg(row_to_json(a) ORDER BY a.at) "
         "  FROM (SELECT at, action, host(ip) AS ip, details FROM admin.audit_log "
         "  WHERE actor_id = $1::uuid OR target_id = $1::uuid) a), '[]'::json),"
         " 'updates', coalesce((SELECT json_agg(row_to_json(r) ORDER BY "
         "  r.delivered_at) FROM (SELECT r.update_id, up.title, r.delivered_at, "
         "  r.mailed_at, r.read_at, r.done_at FROM admin.update_recipients r "
         "  JOIN admin.updates up ON up.id = r.update_id WHERE r.user_id = "
         "  $1::uuid) r), '[]'::json)"
         ")::text FROM auth.users WHERE id = $1::uuid AND status <> 'deleted'",
         1},
    [GDPR_SQL_USER_LOCK] =
        {"gdpr_user_lock",
         "SELECT id FROM auth.users WHERE id = $1::uuid AND status <> 'deleted' "
         "FOR UPDATE",
         1},
    [GDPR_SQL_USER_ERASE] =
        {"gdpr_user_erase",
         "UPDATE auth.users SET email = 'deleted-' || id || '@invalid', "
         "name = 'Deleted user', password_hash = NULL, status = 'deleted', "
         "deleted_at = now(), notification_prefs = '{}'::jsonb, "
         "email_verified_at = NULL, updated_at = now() WHERE id = $1::uuid",
         1},
    [GDPR_SQL_REFRESH_DELETE] =
        {"gdpr_refresh_delete",
         "DELETE FROM auth.refresh_tokens rt USING auth.sessions s WHERE "
         "rt.session_id = s.id AND s.user_id = $1::uuid",
         1},
    [GDPR_SQL_EMAIL_TOKENS_DELETE] =
        {"gdpr_email_tokens_delete",
         "DELETE FROM auth.email_tokens WHERE user_id = $1::uuid", 1},
    [GDPR_SQL_RECOVERY_CODES_DELETE] =
        {"gdpr_recovery_codes_delete",
         "DELETE FROM auth.mfa_recovery_codes WHERE user_id = $1::uuid", 1},
    [GDPR_SQL_TOTP_DELETE] =
        {"gdpr_totp_delete",
         "DELETE FROM auth.mfa_totp WHERE user_id = $1::uuid", 1},
    /* The feed: what the user read and did (the updates themselves stay). */
    [GDPR_SQL_UPDATES_DELETE] =
        {"gdpr_updates_delete",
         "DELETE FROM admin.update_recipients WHERE user_id = $1::uuid", 1},
};
const size_t stoa_gdpr_statements_len = STOA_ARRAY_LEN(stoa_gdpr_statements);

int stoa_gdpr_export(stoa_db_t *db, stoa_arena_t *arena, const char *user_id,
                     const char **json)
{
    const char *params[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(db, arena, GDPR_SQL(EXPORT), params, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return STOA_DECLINED;
    *json = stoa_db_value(res, 0, 0);
    return *json ? STOA_OK : STOA_ERROR;
}

int stoa_gdpr_erase(stoa_db_t *db, stoa_arena_t *arena,
                    const stoa_actor_t *actor, const char *user_id,
                    stoa_db_result_t **revoked)
{
    const char *p[] = {user_id};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(db, arena, GDPR_SQL(USER_LOCK), p, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0)
        return STOA_DECLINED;
    /* The event last: its snapshot is the anonymised row, so a receiver
     * learns the id and nothing the erasure removed. */
    if ((rc = stoa_revoke_sessions(db, arena, user_id, NULL, "account_deleted",
                                   true, revoked)) != STOA_OK ||
        (rc = stoa_db_exec(db, arena, GDPR_SQL(USER_ERASE), p, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, arena, GDPR_SQL(REFRESH_DELETE), p, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, arena, GDPR_SQL(EMAIL_TOKENS_DELETE), p,
                           NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, arena, GDPR_SQL(RECOVERY_CODES_DELETE), p,
                           NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, arena, GDPR_SQL(TOTP_DELETE), p, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, arena, GDPR_SQL(UPDATES_DELETE), p, NULL)) !=
            STOA_OK ||
        (rc = stoa_event_user(db, arena, STOA_EVENT_USER_DELETED, user_id)) !=
            STOA_OK)
        return rc;
    return stoa_audit(db, arena, actor, "user.deleted", user_id, NULL);
}

void stoa_gdpr_erased(stoa_conns_t *c, stoa_arena_t *arena, const char *user_id,
                      const stoa_db_result_t *revoked)
{
    stoa_revoke_committed(c, arena, revoked);
    if (stoa_profile_forget(c, arena, user_id) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not drop cached profile");
}
