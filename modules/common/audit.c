/* audit.c - audit log entries. */
#include "stoa/audit.h"

#include "stoa/app.h"

const stoa_db_statement_t stoa_audit_statements[] = {
    {"audit_insert",
     "INSERT INTO admin.audit_log (actor_id, actor, action, target_id, ip, "
     "request_id, details) VALUES ($1::uuid, $2, $3, $4::uuid, "
     "$5::inet, $6, coalesce($7::jsonb, '{}'::jsonb))",
     7},
};
const size_t stoa_audit_statements_len = STOA_ARRAY_LEN(stoa_audit_statements);

int stoa_audit(stoa_request_t *req, const char *actor_id, const char *action,
               const char *target_id, const char *details_json)
{
    const char *actor = "anonymous";
    if (req->principal.present) {
        actor_id = req->principal.user_id;
        actor = "user";
    } else if (actor_id) {
        actor = "user";
    }
    const char *params[] = {actor_id,         actor,           action,
                            target_id,        req->remote_addr, req->request_id,
                            details_json};
    return stoa_db_exec(stoa_request_db(req), req->arena, "audit_insert", params, NULL);
}
