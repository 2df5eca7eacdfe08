/* cache_keys.h - the Redis keys that more than one file or program spells:
 * defined once here, so a writer and the one who drops or reads the key
 * cannot drift apart (a profile cached under one name and dropped under
 * another would serve stale data for its whole TTL).
 *
 * Each key: what it holds, and who owns its TTL (sets it, and so decides
 * how long a missed invalidation can last). Losing any of them loses no
 * data: Postgres holds every fact, Redis only copies and markers.
 *
 * Keys used by a single file stay in that file: the login throttle's
 * "lf:", "ll:", "lc:" counters (auth/throttle.c) and the reset-mail
 * counter "pwreset:" (jobs/password_reset.c). */
#ifndef STOA_CACHE_KEYS_H
#define STOA_CACHE_KEYS_H

#include "stoa/arena.h"
#include "stoa/ctx.h"

/* "me:<user id>": the JSON answer of GET /v1/me (in Redis, and under the
 * same name in each process's host cache, stoa/hostcache.h). TTL owner:
 * auth/me.c (PROFILE_CACHE_TTL_S); dropped by the auth pool on every
 * profile change and by stoactl on role changes and suspensions. */
#define STOA_KEY_PROFILE_PREFIX "me:"

/* After a committed change to a user's profile (or role, status,
 * erasure): drops the Redis copy, then bumps the host cache's version
 * (after: a read that fetched the Redis copy meanwhile sees the version
 * move and keeps nothing). STOA_OK, or STOA_AGAIN when Redis could not
 * drop its copy (it then expires with its TTL; the host's copies are gone
 * either way). */
int stoa_profile_forget(stoa_conns_t *c, stoa_arena_t *arena,
                        const char *user_id);

/* "rv:u:<user id>": the user is suspended (no TTL: kept until
 * reactivated). "rv:s:<session id>": the session is revoked. TTL owner:
 * common/revoke.c (access token lifetime plus a margin). Read by every
 * pool on every authenticated request. */
#define STOA_KEY_REVOKED_USER_PREFIX "rv:u:"
#define STOA_KEY_REVOKED_SESSION_PREFIX "rv:s:"

/* "rv:synced": set (no TTL) by the jobs worker once every revocation
 * marker is in Redis; without it the pools ask Postgres. Dropped by any
 * program that fails to write a marker, and at start-up. */
#define STOA_KEY_REVOKE_SYNCED "rv:synced"

/* "billing:plans": the JSON answer of GET /v1/billing/plans. TTL owner:
 * billing/plans.c (PLANS_CACHE_TTL_S); dropped on every catalogue
 * change (admin routes, Stripe product and price events). */
#define STOA_KEY_PLANS "billing:plans"

/* "billing:ent:<user id>": the JSON answer of GET
 * /v1/billing/entitlements, as "<user generation>:<catalogue
 * generation>:<JSON>", served only while both generations are still the
 * current ones. TTL owner: billing/entitlements.c
 * (ENTITLEMENTS_CACHE_TTL_S). "billing:entgen:<user id>" is the user's
 * generation, counted up after a commit that changes the user's
 * subscriptions; "billing:entgen" the catalogue's, counted up after a
 * catalogue change. A reader that read the database before such a commit
 * and stores its answer after it stores it under the old generation, so
 * it is never served (a plain delete could be overtaken by that store).
 * The counters live a day (ENTITLEMENTS_GEN_TTL_S), far beyond a
 * value's TTL. */
#define STOA_KEY_ENTITLEMENTS_PREFIX "billing:ent:"
#define STOA_KEY_ENTITLEMENTS_GEN_PREFIX "billing:entgen:"
#define STOA_KEY_CATALOGUE_GEN "billing:entgen"

/* "rt:ticket:<hex SHA-256 of a ticket>": a live-channel ticket (POST
 * /v1/realtime/tickets), holding "<user id> <session id> <role>"; taken
 * with GETDEL by GET /v1/realtime, so it serves once. TTL owner:
 * auth/realtime.c (REALTIME_TICKET_TTL_S). The ticket itself is never
 * stored. */
#define STOA_KEY_REALTIME_TICKET_PREFIX "rt:ticket:"

/* The keys above for one id (a UUID, not checked). Arena-owned. */
char *stoa_key_profile(stoa_arena_t *arena, const char *user_id);
char *stoa_key_revoked_user(stoa_arena_t *arena, const char *user_id);
char *stoa_key_revoked_session(stoa_arena_t *arena, const char *session_id);
char *stoa_key_entitlements(stoa_arena_t *arena, const char *user_id);
char *stoa_key_entitlements_gen(stoa_arena_t *arena, const char *user_id);

#endif
