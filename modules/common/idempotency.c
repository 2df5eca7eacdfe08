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

#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/log.h"

enum {
    IDEM_SQL_CLAIM,
    IDEM_SQL_GET,
    IDEM_SQL_STORE,
    IDEM_SQL_RELEASE,
    IDEM_SQL_COUNT
};
#define IDEM_SQL(id) (&stoa_idempotency_statements[IDEM_SQL_##id])
/* IDEM_SQL_GET: whether the request is the same, and the stored answer. */
enum { GET_COL_SAME_REQUEST, GET_COL_STATUS, GET_COL_BODY_SEALED };

const stoa_db_statement_t stoa_idempotency_statements[IDEM_SQL_COUNT] = {
    /* A claim left by a crashed process (no answer after a minute) may be
     * taken over. */
    [IDEM_SQL_CLAIM] =
        {"idem_claim",
         "INSERT INTO admin.idempotency_keys (scope, key, request_hash) VALUES "
         "($1, $2, $3::bytea) ON CONFLICT (scope, key) DO UPDATE SET "
         "request_hash = EXCLUDED.request_hash, created_at = now() WHERE "
         "admin.idempotency_keys.status IS NULL AND "
         "admin.idempotency_keys.created_at < now() - interval '60 seconds' "
         "RETURNING 1",
         3},
    [IDEM_SQL_GET] =
        {"idem_get",
         "SELECT request_hash = $3::bytea, status, body_sealed FROM "
         "admin.idempotency_keys WHERE scope = $1 AND key = $2",
         3},
    [IDEM_SQL_STORE] =
        {"idem_store",
         "UPDATE admin.idempotency_keys SET status = $3::int, body_sealed = "
         "$4::bytea WHERE scope = $1 AND key = $2",
         4},
    [IDEM_SQL_RELEASE] =
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

bool stoa_idempotency_key_sane(const char *key)
{
    return key_sane(key);
}

char *stoa_idempotency_hash(stoa_arena_t *arena, const char *method,
                            const char *path, const char *body, size_t len)
{
    uint8_t d[STOA_SHA256_LEN];
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_printf(&b, "%s\n%s\n", method, path);
    stoa_buf_append(&b, body, len);
    stoa_sha256(b.data, b.len, d);
    stoa_buf_free(&b);
    char *out = stoa_arena_alloc(arena, 3 + 2 * STOA_SHA256_LEN);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(d, sizeof(d), out + 2);
    return out;
}

/* The AEAD key of one record; false when no seal key is configured. The
 * key is bound to the caller and the Idempotency-Key, so a sealed answer
 * opens only in the row it was written for. */
static bool record_key(const stoa_idem_call_t *call,
                       uint8_t key[STOA_AEAD_KEY_LEN])
{
    const char *hex = call->seal_key;
    uint8_t master[STOA_AEAD_KEY_LEN];
    size_t n = 0;
    /* The config loader refused anything but empty or 64 hex digits. */
    if (!hex || strlen(hex) != 2 * sizeof(master) ||
        stoa_hex_decode(hex, 2 * sizeof(master), master, &n) != STOA_OK)
        return false;
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_printf(&b, "stoa idempotency answer v1\n%s\n%s", call->scope,
                    call->key);
    stoa_hmac_sha256(master, sizeof(master), b.data, b.len, key);
    stoa_buf_free(&b);
    stoa_wipe(master, sizeof(master));
    return true;
}

/* Associated data: the stored status and the request hash (bytea text). */
static char *answer_aad(stoa_arena_t *arena, const char *status,
                        const char *hash)
{
    return stoa_arena_sprintf(arena, "%s\n%s", status, hash);
}

const char *stoa_idempotency_seal(stoa_arena_t *arena,
                                  const stoa_idem_call_t *call,
                                  const char *status, const char *body,
                                  size_t len)
{
    uint8_t key[STOA_AEAD_KEY_LEN];
    if (!record_key(call, key)) {
        stoa_log(STOA_LOG_WARN, "idempotency_seal_key is not set: the answer "
                                "to a repeated Idempotency-Key is not kept");
        return NULL;
    }
    const char *aad = answer_aad(arena, status, call->hash);
    size_t sealed_len = len + STOA_AEAD_OVERHEAD;
    uint8_t *sealed = stoa_arena_alloc(arena, sealed_len);
    int rc = stoa_aead_seal(key, body, len, aad, strlen(aad), sealed);
    stoa_wipe(key, sizeof(key));
    if (rc != STOA_OK) {
        stoa_log(STOA_LOG_ERR, "idempotency answer could not be sealed");
        return NULL;
    }
    char *out = stoa_arena_alloc(arena, 3 + 2 * sealed_len);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(sealed, sealed_len, out + 2);
    return out;
}

char *stoa_idempotency_open(stoa_arena_t *arena, const stoa_idem_call_t *call,
                            const char *status, const char *sealed_hex,
                            size_t *len)
{
    size_t cap = sealed_hex ? strlen(sealed_hex) / 2 : 0;
    uint8_t key[STOA_AEAD_KEY_LEN];
    if (cap == 0 || !record_key(call, key))
        return NULL;
    size_t sealed_len = 0;
    uint8_t *sealed = stoa_arena_alloc(arena, cap);
    char *plain = stoa_arena_alloc(arena, cap + 1);
    const char *aad = answer_aad(arena, status, call->hash);
    int rc = stoa_bytea_decode(sealed_hex, sealed, cap, &sealed_len);
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

int stoa_idempotency_claim(stoa_db_t *db, stoa_arena_t *arena,
                           const stoa_idem_call_t *call,
                           stoa_idem_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *params[] = {call->scope, call->key, call->hash};
    stoa_db_result_t *res;
    for (;;) {
        int rc = stoa_db_exec(db, arena, IDEM_SQL(CLAIM), params, &res);
        if (rc != STOA_OK)
            return rc == STOA_AGAIN ? STOA_AGAIN : STOA_ERROR;
        if (stoa_db_rows(res) == 1) {
            out->state = STOA_IDEM_RUN;
            return STOA_OK;
        }
        if ((rc = stoa_db_exec(db, arena, IDEM_SQL(GET), params, &res)) !=
            STOA_OK)
            return rc == STOA_AGAIN ? STOA_AGAIN : STOA_ERROR;
        if (stoa_db_rows(res) == 1) /* else released meanwhile: again */
            break;
    }
    if (stoa_db_value(res, 0, GET_COL_SAME_REQUEST)[0] != 't') {
        out->state = STOA_IDEM_REUSED;
        return STOA_OK;
    }
    const char *status = stoa_db_value(res, 0, GET_COL_STATUS);
    if (!status) {
        out->state = STOA_IDEM_RUNNING;
        return STOA_OK;
    }
    out->body = stoa_idempotency_open(
        arena, call, status, stoa_db_value(res, 0, GET_COL_BODY_SEALED),
        &out->body_len);
    out->state = out->body ? STOA_IDEM_REPLAY : STOA_IDEM_LOST;
    out->status = atoi(status);
    return STOA_OK;
}

int stoa_idempotency_finish(stoa_db_t *db, stoa_arena_t *arena,
                            const stoa_idem_call_t *call, int status,
                            const char *body, size_t len)
{
    if (status > 0 && status < 500) {
        char text[16];
        snprintf(text, sizeof(text), "%d", status);
        /* NULL (no seal key): the record keeps only that the work is done. */
        const char *sealed =
            stoa_idempotency_seal(arena, call, text, body, len);
        const char *params[] = {call->scope, call->key, text, sealed};
        return stoa_db_exec(db, arena, IDEM_SQL(STORE), params, NULL);
    }
    const char *params[] = {call->scope, call->key};
    return stoa_db_exec(db, arena, IDEM_SQL(RELEASE), params, NULL);
}
