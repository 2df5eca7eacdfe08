/* audit.h - the append-only audit log (admin.audit_log), written inside
 * the caller's transaction so the entry exists exactly when the action
 * does. Pools, the jobs worker and stoactl write it the same way; the
 * actor record says who acted (stoa_request_actor() for a request). */
#ifndef STOA_AUDIT_H
#define STOA_AUDIT_H

#include "stoa/ctx.h"
#include "stoa/db.h"

extern const stoa_db_statement_t stoa_audit_statements[];
extern const size_t stoa_audit_statements_len;

/* action: "login.succeeded", ...; target_id may be NULL; details_json a
 * JSON object of our own making or NULL. The entry's actor is
 * actor->user_id when set ("user"), else actor->label ("stoactl",
 * "jobs"), else "anonymous"; its address and request id come from the
 * actor too (either may be NULL). */
STOA_MUSTCHECK int stoa_audit(stoa_db_t *db, stoa_arena_t *arena,
                              const stoa_actor_t *actor, const char *action,
                              const char *target_id, const char *details_json);

#endif
