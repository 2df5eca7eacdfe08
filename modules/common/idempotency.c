/* idempotency.c - stored answers for repeated Idempotency-Keys.
 *
 * An answer may carry a one-time secret (an API key, a webhook signing
 * secret), so every stored answer is sealed with AES-256-GCM before it
 * reaches Postgres: the key of a record is HMAC-SHA256 of the configured
 * idempotency_seal_key (never in the database) over the caller's scope and
 * the Idempotency-Key, and the status and request hash are the associated
 * data. A dump of the table alone opens nothing; a sealed answer copied to
 * another row, caller or status does not open either. Without a seal key
 * no answer is kept: the record still stops a second run, and a replay
 * answers 409 `idempotency_replay_unavailable`. */
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
     "SELECT request_hash = $3::bytea, status, body_sealed FROM "
     "admin.idempotency_keys WHERE scope = $1 AND key = $2",
     3},
    {"idem_store",
     "UPDATE admin.idempotency_keys SET status = $3::int, body_sealed = "
     "$4::bytea WHERE scope = $1 AND key = $2",
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
        return stoa_arena_sprintf(req->arena, "user:%s",
                                  req->principal.user_id);
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

/* The AEAD key of one record; false when no seal key is configured. The
 * key is bound to the caller and the Idempotency-Key, so a sealed answer
 * opens only in the row it was written for. */
static bool record_key(stoa_request_t *req, const char *scope,
                       uint8_t key[STOA_AEAD_KEY_LEN])
{
    const char *hex = req->ctx->conf.idempotency_seal_key;
    uint8_t master[STOA_AEAD_KEY_LEN];
    size_t n = 0;
    /* The config loader refused anything but empty or 64 hex digits. */
    if (!hex || strlen(hex) != 2 * sizeof(master) ||
        stoa_hex_decode(hex, 2 * sizeof(master), master, &n) != STOA_OK)
        return false;
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_printf(&b, "stoa idempotency answer v1\n%s\n%s", scope,
                    req->idempotency_key);
    stoa_hmac_sha256(master, sizeof(master), b.data, b.len, key);
    stoa_buf_free(&b);
    stoa_wipe(master, sizeof(master));
    return true;
}

/* Associated data: the stored status and the request hash (bytea text). */
static char *answer_aad(stoa_request_t *req, const char *status,
                        const char *hash)
{
    return stoa_arena_sprintf(req->arena, "%s\n%s", status, hash);
}

/* The sealed answer as a bytea parameter ("\x" + hex), arena-owned; NULL
 * when there is no seal key or sealing failed (nothing is kept). */
static const char *answer_seal(stoa_request_t *req, const char *scope,
                               const char *status, const char *hash,
                               const char *body, size_t len)
{
    uint8_t key[STOA_AEAD_KEY_LEN];
    if (!record_key(req, scope, key)) {
        stoa_log(STOA_LOG_WARN, "idempotency_seal_key is not set: the answer "
                                "to a repeated Idempotency-Key is not kept");
        return NULL;
    }
    const char *aad = answer_aad(req, status, hash);
    size_t sealed_len = len + STOA_AEAD_OVERHEAD;
    uint8_t *sealed = stoa_arena_alloc(req->arena, sealed_len);
    int rc = stoa_aead_seal(key, body, len, aad, strlen(aad), sealed);
    stoa_wipe(key, sizeof(key));
    if (rc != STOA_OK) {
        stoa_log(STOA_LOG_ERR, "idempotency answer could not be sealed");
        return NULL;
    }
    char *out = stoa_arena_alloc(req->arena, 3 + 2 * sealed_len);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(sealed, sealed_len, out + 2);
    return out;
}

/* Opens a stored answer (bytea text form); arena-owned, NUL-terminated,
 * or NULL when none was kept or it does not open (the seal key changed). */
static char *answer_open(stoa_request_t *req, const char *scope,
                         const char *status, const char *hash,
                         const char *sealed_hex, size_t *len)
{
    size_t hex_len = sealed_hex ? strlen(sealed_hex) : 0;
    uint8_t key[STOA_AEAD_KEY_LEN];
    if (hex_len < 2 || !record_key(req, scope, key))
        return NULL;
    size_t sealed_len = 0;
    uint8_t *sealed = stoa_arena_alloc(req->arena, hex_len / 2 + 1);
    char *plain = stoa_arena_alloc(req->arena, hex_len / 2 + 1);
    const char *aad = answer_aad(req, status, hash);
    int rc = stoa_hex_decode(sealed_hex + 2, hex_len - 2, sealed, &sealed_len);
    if (rc == STOA_OK)
        rc = stoa_aead_open(key, sealed, sealed_len, aad, strlen(aad),
                            (uint8_t *)plain, len);
    stoa_wipe(key, sizeof(key));
    if (rc != STOA_OK) {
        stoa_log(STOA_LOG_ERR, "a stored idempotency answer does not open "
                               "(was idempotency_seal_key changed?)");
        return NULL;
    }
    plain[*len] = '\0';
    return plain;
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
    size_t body_len;
    char *body = answer_open(req, params[0], status, params[2],
                             stoa_db_value(res, 0, 2), &body_len);
    if (!body) {
        stoa_http_error(req, 409, "idempotency_replay_unavailable",
                        "the request with this Idempotency-Key was done, but "
                        "its answer was not kept; use a new key to run it "
                        "again");
        return STOA_DECLINED;
    }
    stoa_http_raw_json(req, atoi(status), body, body_len);
    stoa_wipe(body, body_len);
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
        /* NULL (no seal key): the record keeps only that the work is done. */
        const char *sealed = answer_seal(
            req, scope, status, request_hash(req),
            req->body_out.data ? req->body_out.data : "", req->body_out.len);
        const char *params[] = {scope, req->idempotency_key, status, sealed};
        rc = stoa_db_exec(stoa_request_db(req), req->arena, "idem_store", params, NULL);
    } else {
        const char *params[] = {scope, req->idempotency_key};
        rc = stoa_db_exec(stoa_request_db(req), req->arena, "idem_release", params,
                          NULL);
    }
    if (rc != STOA_OK)
        stoa_log(STOA_LOG_ERR, "idempotency record not updated");
}
