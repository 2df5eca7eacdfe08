/* gdpr.c - GDPR on behalf of a user: GET /v1/admin/users/{id}/export and
 * DELETE /v1/admin/users/{id}, the same document and the same erasure as
 * the user's own /v1/me routes (stoa/gdpr.h), audited with the acting
 * admin. */
#include <string.h>

#include "admin.h"
#include "stoa/accounts.h"
#include "stoa/crypto.h"
#include "stoa/gdpr.h"

int admin_users_export(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    const char *json;
    int rc = stoa_request_begin(req, NULL, NULL, NULL);
    if (rc != STOA_OK)
        return rc;
    rc = stoa_gdpr_export(stoa_request_db(req), req->arena, id, &json);
    if (rc == STOA_DECLINED) {
        stoa_db_rollback(stoa_request_db(req));
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    }
    /* Reading someone's data is itself an action on record. */
    if (rc != STOA_OK ||
        (rc = stoa_request_commit(req, "user.exported", id, NULL)) != STOA_OK)
        return rc;
    stoa_http_header(req, "Content-Disposition",
                     "attachment; filename=\"stoa-export.json\"");
    return stoa_http_raw_json(req, 200, json, strlen(json));
}

int admin_users_delete(stoa_request_t *req)
{
    /* The path is shared with GET /v1/admin/users/{id}, which finance may
     * read: the edge admits both roles, and only an admin erases. */
    if (!stoa_principal_has_role(&req->principal, "admin"))
        return stoa_http_fail(req, STOA_ERR_FORBIDDEN,
                              "only an admin erases an account");
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    stoa_db_t *db = stoa_request_db(req);
    stoa_actor_t actor = stoa_request_actor(req, NULL);
    stoa_db_result_t *revoked;
    bool last = false;
    int rc = stoa_request_begin(req, NULL, NULL, NULL);
    if (rc != STOA_OK ||
        (rc = stoa_account_last_admin(db, req->arena, id, &last)) != STOA_OK)
        return rc;
    if (last) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_LAST_ADMIN,
                              "the last active admin cannot be erased");
    }
    rc = stoa_gdpr_erase(db, req->arena, &actor, id, &revoked);
    if (rc == STOA_DECLINED) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    }
    if (rc != STOA_OK ||
        (rc = stoa_request_commit(req, NULL, NULL, NULL)) != STOA_OK)
        return rc;
    stoa_gdpr_erased(&req->conns, req->arena, id, revoked);
    return stoa_http_empty(req, 204);
}
