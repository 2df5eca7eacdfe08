/* accounts.c - role and status changes of an account, one transaction
 * each, shared by the admin pool and stoactl (stoa/accounts.h). */
#include "stoa/accounts.h"

#include <string.h>

#include "stoa/audit.h"
#include "stoa/cache_keys.h"
#include "stoa/events.h"
#include "stoa/json.h"
#include "stoa/kv.h"
#include "stoa/log.h"
#include "stoa/revoke.h"

enum {
    ACCOUNTS_SQL_LOCK_ADMINS,
    ACCOUNTS_SQL_LOCK_BY_ID,
    ACCOUNTS_SQL_LOCK_BY_EMAIL,
    ACCOUNTS_SQL_UPDATE,
    ACCOUNTS_SQL_COUNT
};
#define ACCOUNTS_SQL(id) (&stoa_accounts_statements[ACCOUNTS_SQL_##id])
/* ACCOUNTS_SQL_LOCK_ADMINS */
enum { ADMINS_COL_ID };
/* ACCOUNTS_SQL_LOCK_BY_ID, _LOCK_BY_EMAIL */
enum { LOCKED_COL_ID, LOCKED_COL_ROLE, LOCKED_COL_STATUS };

const stoa_db_statement_t stoa_accounts_statements[ACCOUNTS_SQL_COUNT] = {
    /* Taken before the account's own row, always in id order, by every
     * change: two changes at once queue here instead of each counting the
     * other's admin (a row changed meanwhile is read again after the wait
     * and drops out when it is no longer an active admin). */
    [ACCOUNTS_SQL_LOCK_ADMINS] =
        {"accounts_lock_admins",
         "SELECT id FROM auth.users WHERE role = 'admin' AND status = 'active' "
         "ORDER BY id FOR UPDATE",
         0},
    [ACCOUNTS_SQL_LOCK_BY_ID] =
        {"accounts_lock_by_id",
         "SELECT id, role, status FROM auth.users WHERE id = $1::uuid AND "
         "status <> 'deleted' FOR UPDATE",
         1},
    [ACCOUNTS_SQL_LOCK_BY_EMAIL] =
        {"accounts_lock_by_email",
         "SELECT id, role, status FROM auth.users WHERE lower(email) = $1 AND "
         "status <> 'deleted' FOR UPDATE",
         1},
    [ACCOUNTS_SQL_UPDATE] =
        {"accounts_update",
         "UPDATE auth.users SET role = $2, status = $3, updated_at = now() "
         "WHERE id = $1::uuid",
         3},
};
const size_t stoa_accounts_statements_len =
    STOA_ARRAY_LEN(stoa_accounts_statements);

static bool is_active_admin(const char *role, const char *status)
{
    return strcmp(role, "admin") == 0 && strcmp(status, "active") == 0;
}

/* {"<name>": new, "old_<name>": old}: what the audit entry keeps. */
static char *change_details(stoa_arena_t *arena, const char *name,
                            const char *old_value, const char *new_value)
{
    stoa_jw_t *w = stoa_jw_arena(arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, name, new_value);
    stoa_jw_kv_string(w, stoa_arena_sprintf(arena, "old_%s", name), old_value);
    stoa_jw_object_close(w);
    return stoa_jw_arena_text(arena, w);
}

/* Inside the transaction: locks, the last-admin rule, the row, the
 * sessions and the audit. *revoked: the ended sessions (or NULL). */
static int change_in_transaction(stoa_db_t *db, stoa_arena_t *arena,
                                 const stoa_actor_t *actor,
                                 const stoa_account_change_t *change,
                                 stoa_account_result_t *out,
                                 stoa_db_result_t **revoked)
{
    stoa_db_result_t *admins, *row;
    int rc = stoa_db_exec(db, arena, ACCOUNTS_SQL(LOCK_ADMINS), NULL, &admins);
    if (rc != STOA_OK)
        return rc;
    const char *p1[] = {change->user_id ? change->user_id : change->email};
    rc = stoa_db_exec(db, arena,
                      change->user_id ? ACCOUNTS_SQL(LOCK_BY_ID)
                                      : ACCOUNTS_SQL(LOCK_BY_EMAIL),
                      p1, &row);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(row) == 0) {
        out->refusal = STOA_ACCOUNT_REFUSED_NOT_FOUND;
        return STOA_DECLINED;
    }
    const char *id = stoa_db_value(row, 0, LOCKED_COL_ID);
    out->user_id = id;
    out->old_role = stoa_db_value(row, 0, LOCKED_COL_ROLE);
    out->old_status = stoa_db_value(row, 0, LOCKED_COL_STATUS);
    out->new_role = change->role ? change->role : out->old_role;
    out->new_status = change->status ? change->status : out->old_status;
    bool role_changes = strcmp(out->new_role, out->old_role) != 0;
    bool status_changes = strcmp(out->new_status, out->old_status) != 0;
    if (!role_changes && !status_changes)
        return STOA_OK;
    /* The locked set holds this account when it is an active admin. */
    if (is_active_admin(out->old_role, out->old_status) &&
        !is_active_admin(out->new_role, out->new_status) &&
        stoa_db_rows(admins) <= 1) {
        out->refusal = STOA_ACCOUNT_REFUSED_LAST_ADMIN;
        return STOA_DECLINED;
    }
    const char *p2[] = {id, out->new_role, out->new_status};
    if ((rc = stoa_db_exec(db, arena, ACCOUNTS_SQL(UPDATE), p2, NULL)) !=
        STOA_OK)
        return rc;
    /* A role lives in access tokens, so every session ends with it (keys
     * stay and trade for tokens with the new role); a suspension also
     * revokes every key: a reactivated account signs in and makes new
     * ones. The same library call as logout and password reset. */
    bool suspends = status_changes && strcmp(out->new_status, "suspended") == 0;
    if ((role_changes || suspends) &&
        (rc = stoa_revoke_sessions(db, arena, id, NULL,
                                   suspends ? "suspended" : "role_changed",
                                   suspends, revoked)) != STOA_OK)
        return rc;
    if (role_changes &&
        (rc = stoa_audit(db, arena, actor, "user.role_changed", id,
                         change_details(arena, "role", out->old_role,
                                        out->new_role))) != STOA_OK)
        return rc;
    if (status_changes &&
        (rc = stoa_audit(db, arena, actor,
                         suspends ? "user.suspended" : "user.activated", id,
                         change_details(arena, "status", out->old_status,
                                        out->new_status))) != STOA_OK)
        return rc;
    /* One domain event per change, carrying the row as changed. */
    return stoa_event_user(
        db, arena,
        suspends ? STOA_EVENT_USER_SUSPENDED : STOA_EVENT_USER_UPDATED, id);
}

int stoa_account_last_admin(stoa_db_t *db, stoa_arena_t *arena,
                            const char *user_id, bool *last)
{
    stoa_db_result_t *admins;
    int rc = stoa_db_exec(db, arena, ACCOUNTS_SQL(LOCK_ADMINS), NULL, &admins);
    if (rc != STOA_OK)
        return rc;
    *last = stoa_db_rows(admins) == 1 &&
            strcmp(stoa_db_value(admins, 0, ADMINS_COL_ID), user_id) == 0;
    return STOA_OK;
}

int stoa_account_change(stoa_conns_t *c, stoa_arena_t *arena,
                        const stoa_actor_t *actor,
                        const stoa_account_change_t *change,
                        stoa_account_result_t *out)
{
    memset(out, 0, sizeof(*out));
    stoa_db_t *db = stoa_conns_db(c);
    stoa_db_result_t *revoked = NULL;
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    rc = change_in_transaction(db, arena, actor, change, out, &revoked);
    if (rc == STOA_OK)
        rc = stoa_db_commit(db);
    if (rc != STOA_OK) {
        stoa_db_rollback(db);
        return rc;
    }
    bool status_changes = strcmp(out->new_status, out->old_status) != 0;
    if (!revoked && !status_changes &&
        strcmp(out->new_role, out->old_role) == 0)
        return STOA_OK; /* nothing changed */

    /* Committed: now the markers. One Redis cannot take queues a re-sync
     * (stoa_revoke_committed), as everywhere else. */
    if (revoked) {
        stoa_revoke_committed(c, arena, revoked);
        out->sessions_revoked = stoa_db_rows(revoked);
    }
    stoa_kv_t *kv = stoa_conns_kv(c);
    if (status_changes && strcmp(out->new_status, "suspended") == 0) {
        if (stoa_revoke_mark_user(kv, out->user_id) != STOA_OK) {
            out->redis_warning = true;
            if (stoa_revoke_request_sync(db, arena) != STOA_OK)
                stoa_log(STOA_LOG_CRIT, "suspension marker not set and no "
                                        "re-sync queued; the minute re-sync "
                                        "sets it");
        }
    } else if (status_changes) {
        stoa_revoke_unmark_user(kv, out->user_id);
    }
    /* The profile shows role and status: every copy goes. */
    if (stoa_profile_forget(c, arena, out->user_id) != STOA_OK)
        out->redis_warning = true;
    return STOA_OK;
}
