/* accounts.h - the changes of an account's role and status, made the same
 * way by every program that makes them (the admin pool, stoactl).
 *
 * One change is one transaction: the account row (locked), the sessions
 * it ends (all of them for a role change or a suspension; for a
 * suspension also every API key), one audit entry per changed attribute
 * with the actor, the old and the new value; then, after the commit, the
 * revocation markers (stoa/revoke.h), so no token from before the change
 * passes any pool's check for more than the revocation cache's second,
 * and the profile cache's copies are dropped (Redis and the host cache).
 *
 * The last active admin cannot stop being one (a demotion or a
 * suspension): the active admins are locked before the count, so two
 * admins demoting each other at once leave one of them admin. */
#ifndef STOA_ACCOUNTS_H
#define STOA_ACCOUNTS_H

#include "stoa/ctx.h"
#include "stoa/db.h"

extern const stoa_db_statement_t stoa_accounts_statements[];
extern const size_t stoa_accounts_statements_len;

/* Why a change was refused (STOA_DECLINED). */
typedef enum {
    STOA_ACCOUNT_REFUSED_NONE,
    STOA_ACCOUNT_REFUSED_NOT_FOUND,  /* no such account (or erased) */
    STOA_ACCOUNT_REFUSED_LAST_ADMIN, /* it is the last active admin */
} stoa_account_refusal_t;

/* The account to change, by id or (id NULL) by stored email, and what to
 * set: role (client, finance, admin) and status (active, suspended), each
 * NULL to leave as is. Values are checked by the caller. */
typedef struct {
    const char *user_id;
    const char *email; /* normalised (stoa_email_normalise) */
    const char *role;
    const char *status;
} stoa_account_change_t;

/* What happened. Strings are arena-owned. */
typedef struct {
    const char *user_id;
    const char *old_role, *old_status;
    const char *new_role, *new_status;
    int sessions_revoked;
    stoa_account_refusal_t refusal;
    /* Set when a marker or the cache drop could not reach Redis: the
     * change holds (Postgres decides, the re-sync restores the marker). */
    bool redis_warning;
} stoa_account_result_t;

/* Applies the change on the connections of c, audited as actor. A value
 * equal to the current one changes nothing for that attribute (no entry,
 * no revocation). STOA_OK: committed, *out filled; STOA_DECLINED: refused
 * (out->refusal), rolled back; STOA_AGAIN / STOA_ERROR: failed, rolled
 * back. */
STOA_MUSTCHECK int stoa_account_change(stoa_conns_t *c, stoa_arena_t *arena,
                                       const stoa_actor_t *actor,
                                       const stoa_account_change_t *change,
                                       stoa_account_result_t *out);

/* Whether user_id is the only active admin left, inside the caller's open
 * transaction, with the same lock as stoa_account_change (every active
 * admin's row, in id order), so an erasure and a demotion at once cannot
 * leave none. *last is false for an account that is not an active admin.
 * For changes made outside stoa_account_change (an erasure, stoa/gdpr.h). */
STOA_MUSTCHECK int stoa_account_last_admin(stoa_db_t *db, stoa_arena_t *arena,
                                           const char *user_id, bool *last);

#endif
