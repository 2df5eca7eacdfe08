/* idempotency.c - stored answers for repeated Idempotency-Keys. */
#include "stoa/idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/app.h"
#include "stoa/crypto.h"
#include "stoa/log.h"

const stoa_db_statement_t stoa_idempotency_statements[] = {
    /* A claim left by a crashed process (no answer after a minute) may be
     * taken over. */
    {"idem_claim",
     "INSERT INTO admin.idempotency_keys (scope, key, request_hash) VALUES "
     "($1, $2, $3::bytea) ON CONFLICT (scope, key) DO UPDATE SET "
     "request_hash = EXCLUDED.request_hash, created_at = now() WHERE "
     "admin.idempotency_keys.status IS NULL AND "
     "admin.idempotency_keys.created_at < now() - interval '60 seconds' "
     "RETURNING 1",
     3},
    {"idem_get",
     "SELECT request_hash = $3::bytea, status, body FROM "
     "admin.idempotency_keys WHERE scope = $1 AND key = $2",
     3},
    {"idem_store",
     "UPDATE admin.idempotency_keys SET status = $3::int, body = $4 WHERE "
     "scope = $1 AND key = $2",
     4},
    {"idem_release",
     "DELETE FROM admin.idempotency_keys WHERE scope = $1 AND key = $2", 2},
};
const size_t stoa_idempotency_statements_len =
    STOA_ARRAY_LEN(stoa_idempotency_statements);

static bool key_sane(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

static const char *scope_of(stoa_request_t *req)
{
    if (req->principal.present)
        return stoa_arena_sprintf(req->arena, "user:%s", req->principal.user_id);
    return stoa_arena_sprintf(req->arena, "ip:%s",
                              req->remote_addr ? req->remote_addr : "-");
}

static char *request_hash(stoa_request_t *req)
{
    uint8_t d[STOA_SHA256_LEN];
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_printf(&b, "%s\n%s\n", req->method, req->path);
    stoa_buf_append(&b, req->body, req->body_len);
    stoa_sha256(b.data, b.len, d);
    stoa_buf_free(&b);
    char *out = stoa_arena_alloc(req->arena, 3 + 2 * STOA_SHA256_LEN);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(d, sizeof(d), out + 2);
    return out;
}

int stoa_idempotency_begin(stoa_request_t *req, bool *claimed)
{
    *claimed = false;
    const char *key = req->idempotency_key;
    if (!key)
        return STOA_OK;
    if (!key_sane(key)) {
        stoa_request_field_error(req, "Idempotency-Key", "invalid");
        stoa_http_invalid_fields(req);
        return STOA_DECLINED;
    }
    stoa_db_t *db = stoa_request_db(req);
    const char *params[] = {scope_of(req), key, request_hash(req)};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(db, req->arena, "idem_claim", params, &res);
    if (rc != STOA_OK)
        return rc == STOA_AGAIN ? STOA_AGAIN : STOA_ERROR;
    if (stoa_db_rows(res) == 1) {
        *claimed = true;
        return STOA_OK;
    }
    if ((rc = stoa_db_exec(db, req->arena, "idem_get", params, &res)) !=
        STOA_OK)
        return rc == STOA_AGAIN ? STOA_AGAIN : STOA_ERROR;
    if (stoa_db_rows(res) == 0) /* released between the two statements */
        return stoa_idempotency_begin(req, claimed);
    if (stoa_db_value(res, 0, 0)[0] != 't') {
        stoa_http_error(req, 422, "idempotency_key_reused",
                        "this Idempotency-Key was used with another request");
        return STOA_DECLINED;
    }
    const char *status = stoa_db_value(res, 0, 1);
    if (!status) {
        stoa_http_error(req, 409, "idempotency_in_progress",
                        "a request with this Idempotency-Key is still running");
        return STOA_DECLINED;
    }
    const char *body = stoa_db_value(res, 0, 2);
    stoa_http_raw_json(req, atoi(status), body ? body : "",
                       body ? strlen(body) : 0);
    stoa_http_header(req, "Idempotent-Replayed", "true");
    return STOA_DECLINED;
}

void stoa_idempotency_end(stoa_request_t *req)
{
    const char *scope = scope_of(req);
    int rc;
    if (req->responded && req->status < 500) {
        char status[16];
        snprintf(status, sizeof(status), "%d", req->status);
        char *body = stoa_arena_strndup(req->arena,
                                        req->body_out.data ? req->body_out.data
                                                           : "",
                                        req->body_out.len);
        const char *params[] = {scope, req->idempotency_key, status, body};
        rc = stoa_db_exec(stoa_request_db(req), req->arena, "idem_store", params, NULL);
    } else {
        const char *params[] = {scope, req->idempotency_key};
        rc = stoa_db_exec(stoa_request_db(req), req->arena, "idem_release", params,
                          NULL);
    }
    if (rc != STOA_OK)
        stoa_log(STOA_LOG_ERR, "idempotency record not updated");
}
