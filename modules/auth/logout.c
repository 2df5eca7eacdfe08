/* logout.c - POST /v1/auth/logout: the caller's session ended. */

#include "auth.h"
#include "stoa/revoke.h"

int auth_logout(stoa_request_t *req)
{
    const stoa_principal_t *p = &req->principal;
    /* A key's token ends with its key: there is no login to end (revoke
     * the key instead). */
    if (!p->session_id || stoa_principal_from_api_key(p))
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "this token has no login session to end");
    const char *params[] = {p->session_id, p->user_id, "logout"};
    int rc =
        stoa_request_begin(req, AUTH_SQL(SESSION_REVOKE_ONE), params, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "this token has no login session to end");
    if (rc != STOA_OK ||
        (rc = stoa_request_commit(req, "logout", p->user_id, NULL)) != STOA_OK)
        return rc;
    stoa_revoke_session_committed(&req->conns, req->arena, p->session_id);
    return stoa_http_empty(req, 204);
}
