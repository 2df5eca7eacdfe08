/* revoke.c - revocation markers and their per-process cache. */
#include "stoa/revoke.h"

#include <stdio.h>
#include <string.h>

#include "stoa/cache_keys.h"
#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/outbox.h"

/* Tokens live at most access_token_ttl (plus the gateway's leeway); a
 * marker must outlive all of them. */
#define MARKER_EXTRA_S 120
#define CACHE_SLOTS 256

enum {
    REVOKE_SQL_CHECK,
    REVOKE_SQL_LOCK_USER,
    REVOKE_SQL_MFA_CHALLENGES,
    REVOKE_SQL_SESSIONS,
    REVOKE_SQL_API_KEYS,
    REVOKE_SQL_COUNT
};
#define REVOKE_SQL(id) (&stoa_revoke_statements[REVOKE_SQL_##id])
/* REVOKE_SQL_CHECK: whether the user and session are live. */
enum { CHECK_COL_LIVE };
/* REVOKE_SQL_SESSIONS: the ended sessions (stoa_revoke_committed). */
enum { SESSIONS_COL_ID };

const stoa_db_statement_t stoa_revoke_statements[REVOKE_SQL_COUNT] = {
    /* The sid of a token is a session: a login's or, for tokens traded
     * from an API key, the exchange's (which ends with its key). */
    [REVOKE_SQL_CHECK] =
        {"revoke_check",
         "SELECT (u.status = 'active') AND ($2::uuid IS NULL OR EXISTS ("
         " SELECT 1 FROM auth.sessions s WHERE s.id = $2::uuid AND"
         " s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()))"
         " FROM auth.users u WHERE u.id = $1::uuid",
         2},
    /* Taken first by everything that ends sessions, so that a session
     * being started (which reads this row FOR SHARE) is either ended here
     * or sees the change. */
    [REVOKE_SQL_LOCK_USER] =
        {"revoke_lock_user",
         "SELECT 1 FROM auth.users WHERE id = $1::uuid FOR UPDATE", 1},
    [REVOKE_SQL_MFA_CHALLENGES] =
        {"revoke_mfa_challenges",
         "DELETE FROM auth.mfa_challenges WHERE user_id = $1::uuid", 1},
    [REVOKE_SQL_SESSIONS] =
        {"revoke_sessions",
         "UPDATE auth.sessions SET revoked_at = now(), revoke_reason = $3 "
         "WHERE user_id = $1::uuid AND revoked_at IS NULL AND expires_at > now() "
         "AND ($2::uuid IS NULL OR id <> $2::uuid) RETURNING id",
         3},
    [REVOKE_SQL_API_KEYS] =
        {"revoke_api_keys",
         "UPDATE auth.api_keys SET revoked_at = now() WHERE user_id = $1::uuid "
         "AND revoked_at IS NULL",
         1},
};
const size_t stoa_revoke_statements_len =
    STOA_ARRAY_LEN(stoa_revoke_statements);

typedef struct {
    char user_id[STOA_UUID_STR_LEN + 1];
    char session_id[STOA_UUID_STR_LEN + 1];
    uint64_t checked_us;
    bool live;
} cache_slot_t;

/* Per thread: handler threads never share a slot, so no lock; each
 * thread fills its own within the same one-second bound. */
static _Thread_local cache_slot_t cache[CACHE_SLOTS];

static cache_slot_t *slot_for(const char *user_id, const char *session_id)
{
    /* FNV-1a over both ids: cheap, and a collision only costs a lookup. */
    uint32_t h = 2166136261u;
    for (const char *p = user_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = session_id ? session_id : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return &cache[h % CACHE_SLOTS];
}

static int check_postgres(stoa_conns_t *c, stoa_arena_t *arena,
                          const stoa_principal_t *p, bool *live)
{
    const char *params[] = {p->user_id, p->session_id};
    stoa_db_result_t *res;
    int rc =
        stoa_db_exec(stoa_conns_db(c), arena, REVOKE_SQL(CHECK), params, &res);
    if (rc != STOA_OK)
        return STOA_AGAIN;
    const char *v = stoa_db_value(res, 0, CHECK_COL_LIVE);
    *live = v && v[0] == 't';
    return STOA_OK;
}

int stoa_revoke_check(stoa_conns_t *c, stoa_arena_t *arena,
                      const stoa_principal_t *p)
{
    if (strlen(p->user_id) > STOA_UUID_STR_LEN ||
        (p->session_id && strlen(p->session_id) > STOA_UUID_STR_LEN))
        return STOA_DECLINED;
    /* A key's token ends exactly with the key: the gateway's leeway is for
     * clock skew between hosts, not a grace period past a key's expiry. */
    if (stoa_principal_from_api_key(p) && p->expires_at > 0 &&
        stoa_unix_time() >= p->expires_at)
        return STOA_DECLINED;
    cache_slot_t *slot = slot_for(p->user_id, p->session_id);
    uint64_t now = stoa_now_us();
    if (slot->checked_us &&
        now - slot->checked_us < (uint64_t)STOA_REVOKE_CACHE_MS * 1000 &&
        strcmp(slot->user_id, p->user_id) == 0 &&
        strcmp(slot->session_id, p->session_id ? p->session_id : "") == 0)
        return slot->live ? STOA_OK : STOA_DECLINED;

    bool live;
    char *keys[3], *values[3];
    keys[0] = stoa_key_revoked_user(arena, p->user_id);
    keys[1] =
        stoa_key_revoked_session(arena, p->session_id ? p->session_id : "-");
    keys[2] = STOA_REVOKE_SYNCED_KEY;
    int rc = stoa_kv_mget(stoa_conns_kv(c), arena, 3, (const char *const *)keys,
                          values);
    if (rc == STOA_OK && (values[0] || values[1])) {
        live = false;
    } else if (rc == STOA_OK && values[2]) {
        live = true;
    } else if (check_postgres(c, arena, p, &live) != STOA_OK) {
        /* Redis down or not (yet) holding every marker: Postgres decides,
         * and when it cannot, nobody is let in. */
        return STOA_AGAIN;
    }
    snprintf(slot->user_id, sizeof(slot->user_id), "%s", p->user_id);
    snprintf(slot->session_id, sizeof(slot->session_id), "%s",
             p->session_id ? p->session_id : "");
    slot->checked_us = now;
    slot->live = live;
    return live ? STOA_OK : STOA_DECLINED;
}

static int mark(stoa_kv_t *kv, const char *prefix, const char *id, long ttl)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, id);
    if (stoa_kv_set(kv, key, "1", 1, ttl) == STOA_OK)
        return STOA_OK;
    /* Without its marker the session would pass once Redis answers again:
     * drop the sentinel so checks go to Postgres until a re-sync. If Redis
     * is down this fails too, and the sentinel then dies with Redis or is
     * checked by the re-sync the caller queues. */
    stoa_log(STOA_LOG_ERR, "could not set revocation marker %s", key);
    if (stoa_kv_del(kv, STOA_REVOKE_SYNCED_KEY) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "could not clear the revocation sentinel");
    return STOA_AGAIN;
}

int stoa_revoke_request_sync(stoa_db_t *db, stoa_arena_t *arena)
{
    char slot[32];
    snprintf(slot, sizeof(slot), "now:%lld", (long long)(stoa_unix_time() / 5));
    return stoa_outbox_enqueue(db, arena, "auth.revocation_sync", "{}", slot,
                               0);
}

int stoa_revoke_mark_session(stoa_kv_t *kv, long token_ttl,
                             const char *session_id)
{
    return mark(kv, STOA_KEY_REVOKED_SESSION_PREFIX, session_id,
                token_ttl + MARKER_EXTRA_S);
}

int stoa_revoke_mark_user(stoa_kv_t *kv, const char *user_id)
{
    /* A suspended user stays marked until reactivated. */
    return mark(kv, STOA_KEY_REVOKED_USER_PREFIX, user_id, 0);
}

void stoa_revoke_session_committed(stoa_conns_t *c, stoa_arena_t *arena,
                                   const char *session_id)
{
    if (stoa_revoke_mark_session(stoa_conns_kv(c),
                                 c->ctx->conf.access_token_ttl,
                                 session_id) == STOA_OK)
        return;
    if (stoa_revoke_request_sync(stoa_conns_db(c), arena) != STOA_OK)
        stoa_log(STOA_LOG_CRIT, "revocation re-sync not queued; the minute "
                                "re-sync will restore the marker");
}

void stoa_revoke_committed(stoa_conns_t *c, stoa_arena_t *arena,
                           const stoa_db_result_t *revoked)
{
    for (int i = 0; i < stoa_db_rows(revoked); i++)
        stoa_revoke_session_committed(
            c, arena, stoa_db_value(revoked, i, SESSIONS_COL_ID));
}

int stoa_revoke_sessions(stoa_db_t *db, stoa_arena_t *arena,
                         const char *user_id, const char *keep_session_id,
                         const char *reason, bool with_keys,
                         stoa_db_result_t **revoked)
{
    const char *p1[] = {user_id};
    const char *p2[] = {user_id, keep_session_id, reason};
    int rc = stoa_db_exec(db, arena, REVOKE_SQL(LOCK_USER), p1, NULL);
    if (rc != STOA_OK)
        return rc;
    /* Second-factor challenges are sessions half begun (with what was the
     * password, or before the sessions ended): they go whenever sessions
     * do, or they would still open one. Keys go when asked. */
    if ((rc = stoa_db_exec(db, arena, REVOKE_SQL(MFA_CHALLENGES), p1, NULL)) !=
            STOA_OK ||
        (with_keys && (rc = stoa_db_exec(db, arena, REVOKE_SQL(API_KEYS), p1,
                                         NULL)) != STOA_OK))
        return rc;
    return stoa_db_exec(db, arena, REVOKE_SQL(SESSIONS), p2, revoked);
}

void stoa_revoke_unmark_user(stoa_kv_t *kv, const char *user_id)
{
    char key[64];
    snprintf(key, sizeof(key), STOA_KEY_REVOKED_USER_PREFIX "%s", user_id);
    if (stoa_kv_del(kv, key) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "could not clear revocation marker %s", key);
}
