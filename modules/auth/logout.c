/* logout.c - POST /v1/auth/logout: the caller's session ended. */

#include "auth.h"
#include "stoa/revoke.h"

int auth_logout(stoa_request_t *req)
{
    const stoa_principal_t *p = &req->principal;
    /* A key's token ends with its key: there is no login to end (revoke
     * the key instead). */
    if (!p->session_id || stoa_principal_from_api_key(p))
        return stoa_http_error(req, 400, "invalid_request",
                               "this token has no login session to end");
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *params[] = {p->session_id, p->user_id, "logout"};
    stoa_db_result_t *res;
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(SESSION_REVOKE_ONE), params,
                           &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 400, "invalid_request",
                               "this token has no login session to end");
    }
    if ((rc = stoa_request_audit(req, NULL, "logout", p->user_id, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    stoa_revoke_session_committed(&req->conns, req->arena, p->session_id);
    return stoa_http_empty(req, 204);
}
