/* revoke.h - session and user revocation that takes effect on every pool
 * within a second, even for access tokens that have not expired.
 *
 * Markers live in Redis: rv:s:<session id> for a revoked session and
 * rv:u:<user id> for a suspended user, with a TTL that outlives every
 * access token. Every authenticated request checks them (one MGET),
 * cached per process for at most STOA_REVOKE_CACHE_MS. When Redis cannot
 * answer, Postgres is asked instead: never "allow" by default.
 *
 * Redis keeps no data across a restart, so an absent marker only means
 * "live" while the sentinel rv:synced exists: the jobs worker sets it
 * after writing every marker from Postgres (every minute, and again as
 * soon as Redis is back when a marker could not be written). Without the
 * sentinel the check asks Postgres. */
#ifndef STOA_REVOKE_H
#define STOA_REVOKE_H

#include "stoa/cache_keys.h"
#include "stoa/ctx.h"
#include "stoa/principal.h"

#define STOA_REVOKE_CACHE_MS 1000

extern const stoa_db_statement_t stoa_revoke_statements[];
extern const size_t stoa_revoke_statements_len;

/* STOA_OK when the principal's session and user are live, STOA_DECLINED
 * when revoked, suspended or (a key's token) past its exp, STOA_AGAIN
 * when neither Redis nor Postgres can tell. Takes Postgres from c only
 * when Redis cannot answer. */
STOA_MUSTCHECK int stoa_revoke_check(stoa_conns_t *c, stoa_arena_t *arena,
                                     const stoa_principal_t *p);

/* Ends sessions of user_id in the caller's transaction: every live one,
 * or all but keep_session_id; API-key exchanges included. With with_keys,
 * every API key and pending second-factor challenge of the user goes as
 * well (a reset, erasure, suspension). The user's row is locked first:
 * session starts read it FOR SHARE, so none slips in beside this.
 * *revoked (arena) holds the ended session ids for stoa_revoke_committed()
 * after the commit. */
STOA_MUSTCHECK int stoa_revoke_sessions(stoa_db_t *db, stoa_arena_t *arena,
                                        const char *user_id,
                                        const char *keep_session_id,
                                        const char *reason, bool with_keys,
                                        stoa_db_result_t **revoked);

/* After the commit: sets the marker of each session in *revoked (column
 * 0); when Redis cannot take one, queues an immediate re-sync so the
 * pools ask Postgres meanwhile. */
void stoa_revoke_committed(stoa_conns_t *c, stoa_arena_t *arena,
                           const stoa_db_result_t *revoked);
/* The same for one session id. */
void stoa_revoke_session_committed(stoa_conns_t *c, stoa_arena_t *arena,
                                   const char *session_id);

/* Sets the markers directly (Postgres stays the source of truth).
 * token_ttl: the access token lifetime (config access_token_ttl); the
 * session marker outlives every token of that session. */
STOA_MUSTCHECK int stoa_revoke_mark_session(stoa_kv_t *kv, long token_ttl,
                                            const char *session_id);
STOA_MUSTCHECK int stoa_revoke_mark_user(stoa_kv_t *kv, const char *user_id);
void stoa_revoke_unmark_user(stoa_kv_t *kv, const char *user_id);

/* The sentinel key; set by the jobs worker after a full re-sync. */
#define STOA_REVOKE_SYNCED_KEY STOA_KEY_REVOKE_SYNCED

/* Queues a re-sync (when a marker could not be written: Redis down). */
STOA_MUSTCHECK int stoa_revoke_request_sync(stoa_db_t *db, stoa_arena_t *arena);

#endif
