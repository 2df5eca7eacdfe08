/* audit.h - the append-only audit log (admin.audit_log), written inside
 * the caller's transaction so the entry exists exactly when the action
 * does. */
#ifndef STOA_AUDIT_H
#define STOA_AUDIT_H

#include "stoa/db.h"
#include "stoa/http.h"

extern const stoa_db_statement_t stoa_audit_statements[];
extern const size_t stoa_audit_statements_len;

/* action: "login.succeeded", ...; target_id may be NULL; details_json a
 * JSON object of our own making or NULL. The actor is the request's
 * principal when present, else actor_id (may be NULL, e.g. a failed
 * login names its target only). IP and request id come from req. */
STOA_MUSTCHECK int stoa_audit(stoa_request_t *req, const char *actor_id,
                              const char *action, const char *target_id,
                              const char *details_json);

#endif
