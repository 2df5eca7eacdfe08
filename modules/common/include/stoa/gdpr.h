/* gdpr.h - what the law lets a person ask of their account (GDPR art. 15,
 * 17 and 20): everything stored about them as one JSON document, and its
 * erasure. The auth pool serves them to the user (/v1/me/export, DELETE
 * /v1/me), the admin pool on a user's behalf (/v1/admin/users/{id}/...):
 * both call these, so the two can never answer differently.
 *
 * Erasure keeps the user's id: billing records (kept by law) and the
 * audit trail (kept as the accounts' security record, by legitimate
 * interest: ids, addresses and actions, never an email or a name) still
 * point at one anonymous account. docs/architecture.md, "GDPR". The last
 * active admin's erasure is the caller's to refuse
 * (stoa_account_last_admin, stoa/accounts.h). */
#ifndef STOA_GDPR_H
#define STOA_GDPR_H

#include "stoa/ctx.h"
#include "stoa/db.h"

extern const stoa_db_statement_t stoa_gdpr_statements[];
extern const size_t stoa_gdpr_statements_len;

/* The export of user_id (a valid uuid): {"user", "sessions",
 * "audit_log"} as JSON text in *json (arena-owned). STOA_DECLINED when no
 * such user (or it is erased already), else STOA_OK or the failure. */
STOA_MUSTCHECK int stoa_gdpr_export(stoa_db_t *db, stoa_arena_t *arena,
                                    const char *user_id, const char **json);

/* Erases user_id inside the caller's open transaction: personal data
 * replaced, password, second factor, refresh and mailed tokens deleted,
 * every session and API key revoked, the user.deleted event and the audit
 * entry (action "user.deleted", by actor) written. The caller commits,
 * then calls stoa_gdpr_erased(). STOA_DECLINED when no such user (or it is
 * erased already); *revoked (arena) the ended sessions. */
STOA_MUSTCHECK int stoa_gdpr_erase(stoa_db_t *db, stoa_arena_t *arena,
                                   const stoa_actor_t *actor,
                                   const char *user_id,
                                   stoa_db_result_t **revoked);

/* After the commit: the revocation markers of *revoked, and the cached
 * copies of the profile dropped (Redis and this host's processes). */
void stoa_gdpr_erased(stoa_conns_t *c, stoa_arena_t *arena, const char *user_id,
                      const stoa_db_result_t *revoked);

#endif
