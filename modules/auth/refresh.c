/* refresh.c - POST /v1/auth/refresh: a refresh token rotated, its reuse
 * detected. */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/revoke.h"

/* The key sealing a spent token's successor: derived from the spent token
 * itself, which the database never stores (only its SHA-256). */
static void successor_key(const char *token, uint8_t key[STOA_AEAD_KEY_LEN])
{
    static const char label[] = "stoa refresh successor v1";
    stoa_hmac_sha256(token, strlen(token), label, sizeof(label) - 1, key);
}

/* Replays the successor pair sealed in the spent row. */
static int replay_successor(stoa_request_t *req, const char *token,
                            const char *sealed_hex)
{
    uint8_t sealed[4096], plain[4096], key[STOA_AEAD_KEY_LEN];
    size_t sealed_len, plain_len;
    if (stoa_bytea_decode(sealed_hex, sealed, sizeof(sealed), &sealed_len) !=
        STOA_OK)
        return STOA_DECLINED;
    successor_key(token, key);
    int rc =
        stoa_aead_open(key, sealed, sealed_len, NULL, 0, plain, &plain_len);
    stoa_wipe(key, sizeof(key));
    if (rc != STOA_OK)
        return STOA_DECLINED;
    char *text = stoa_arena_strndup(req->arena, (char *)plain, plain_len);
    stoa_wipe(plain, plain_len);
    char *nl = strchr(text, '\n');
    if (!nl)
        return STOA_DECLINED;
    *nl = '\0';
    auth_write_tokens(req, text, nl + 1, NULL);
    return STOA_OK;
}

int auth_refresh(stoa_request_t *req)
{
    const char *token = stoa_request_only_string(req, "refresh_token", 200);
    if (!token)
        return STOA_DECLINED;

    const stoa_conf_t *conf = &req->ctx->conf;
    stoa_db_t *db = stoa_request_db(req);
    char *hash = auth_token_hash_param(req, token);
    char window[24], ttl[24];
    snprintf(window, sizeof(window), "%ld", conf->refresh_reuse_interval);
    snprintf(ttl, sizeof(ttl), "%ld", conf->refresh_token_ttl);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *p1[] = {hash, window};
    stoa_db_result_t *row;
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(REFRESH_LOOKUP), p1,
                           &row)) != STOA_OK)
        return rc;
    if (stoa_db_rows(row) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_INVALID_TOKEN,
                              "unknown or expired refresh token");
    }
    const char *session_id = stoa_db_value(row, 0, REFRESH_COL_SESSION_ID);
    bool spent = stoa_db_value(row, 0, REFRESH_COL_SPENT)[0] == 't';
    const char *in_window = stoa_db_value(row, 0, REFRESH_COL_SPENT_IN_WINDOW);
    const char *sealed = stoa_db_value(row, 0, REFRESH_COL_SUCCESSOR_SEALED);
    bool live = stoa_db_value(row, 0, REFRESH_COL_LIVE)[0] == 't';
    const char *user_id = stoa_db_value(row, 0, REFRESH_COL_USER_ID);
    const char *role = stoa_db_value(row, 0, REFRESH_COL_ROLE);
    bool active =
        strcmp(stoa_db_value(row, 0, REFRESH_COL_STATUS), "active") == 0;
    if (!live || !active) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_INVALID_TOKEN,
                              "the session has ended");
    }
    if (spent) {
        /* Two tabs refreshing at once: within the window the parent gives
         * back the same successor pair. */
        if (in_window && in_window[0] == 't' &&
            replay_successor(req, token, sealed) == STOA_OK) {
            stoa_db_rollback(db);
            return STOA_OK;
        }
        /* Reuse after the window: the token family is compromised. */
        const char *p2[] = {session_id, user_id, "refresh_token_reused"};
        if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(SESSION_REVOKE_ONE), p2,
                               NULL)) != STOA_OK ||
            (rc = stoa_request_audit(req, user_id, "refresh.reused", user_id,
                                     NULL)) != STOA_OK ||
            (rc = stoa_db_commit(db)) != STOA_OK)
            return rc;
        stoa_revoke_session_committed(&req->conns, req->arena, session_id);
        return stoa_http_fail(req, STOA_ERR_TOKEN_REUSED,
                              "this refresh token was already used; the "
                              "session has been revoked");
    }

    char *next, *next_hash, *access;
    auth_new_token(req, &next, &next_hash);
    if ((rc = auth_access_token(req, user_id, role, session_id, &access)) !=
        STOA_OK)
        return rc;
    size_t alen = strlen(access), nlen = strlen(next);
    size_t plain_len = alen + 1 + nlen;
    uint8_t key[STOA_AEAD_KEY_LEN];
    uint8_t *box = stoa_arena_alloc(req->arena, plain_len + STOA_AEAD_OVERHEAD);
    char *plain = stoa_arena_sprintf(req->arena, "%s\n%s", access, next);
    successor_key(token, key);
    rc = stoa_aead_seal(key, plain, plain_len, NULL, 0, box);
    stoa_wipe(key, sizeof(key));
    stoa_wipe(plain, plain_len);
    if (rc != STOA_OK)
        return STOA_ERROR;
    size_t box_len = plain_len + STOA_AEAD_OVERHEAD;
    char *box_hex = stoa_arena_alloc(req->arena, 2 + 2 * box_len + 1);
    box_hex[0] = '\\';
    box_hex[1] = 'x';
    stoa_hex_encode(box, box_len, box_hex + 2);
    const char *p3[] = {hash, box_hex};
    const char *p4[] = {next_hash, session_id, ttl};
    const char *p5[] = {session_id, ttl};
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(REFRESH_SPEND), p3,
                           NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(REFRESH_INSERT), p4,
                           NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(SESSION_TOUCH), p5,
                           NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_write_tokens(req, access, next, NULL);
    return STOA_OK;
}
