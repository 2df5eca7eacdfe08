/* audit.c - audit log entries. */
#include "stoa/audit.h"

enum { AUDIT_SQL_INSERT, AUDIT_SQL_COUNT };

const stoa_db_statement_t stoa_audit_statements[AUDIT_SQL_COUNT] = {
    [AUDIT_SQL_INSERT] =
        {"audit_insert",
         "INSERT INTO admin.audit_log (actor_id, actor, action, target_id, ip, "
         "request_id, details) VALUES ($1::uuid, $2, $3, $4::uuid, "
         "$5::inet, $6, coalesce($7::jsonb, '{}'::jsonb))",
         7},
};
const size_t stoa_audit_statements_len = STOA_ARRAY_LEN(stoa_audit_statements);

int stoa_audit(stoa_db_t *db, stoa_arena_t *arena, const stoa_actor_t *actor,
               const char *action, const char *target_id,
               const char *details_json)
{
    const char *kind = actor->user_id ? "user"
                       : actor->label ? actor->label
                                      : "anonymous";
    const char *params[] = {actor->user_id, kind,           action,
                            target_id,      actor->address, actor->request_id,
                            details_json};
    return stoa_db_exec(db, arena, &stoa_audit_statements[AUDIT_SQL_INSERT],
                        params, NULL);
}
