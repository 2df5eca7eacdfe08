/* mfa.c - TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30 s, one
 * step of drift either way), recovery codes, and the login challenge. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/password.h"

#define TOTP_SECRET_LEN 20 /* 160 bits */
#define TOTP_STEP_S 30
#define RECOVERY_CODES 10
#define COL_PASSWORD_HASH AUTH_USER_NCOLUMNS
#define COL_STATUS (AUTH_USER_NCOLUMNS + 1)

static const char base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* RFC 4648 base32 without padding; out holds len*8/5+2 bytes. */
static void base32(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = base32_alphabet[(acc >> bits) & 31];
        }
    }
    if (bits)
        out[o++] = base32_alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

/* RFC 4226 HOTP value for one counter. */
static uint32_t hotp(const uint8_t *key, size_t key_len, uint64_t counter)
{
    uint8_t msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    HMAC(EVP_sha1(), key, (int)key_len, msg, sizeof(msg), mac, &mac_len);
    int off = mac[mac_len - 1] & 0x0f;
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
                   (uint32_t)mac[off + 2] << 8 | mac[off + 3];
    return bin % 1000000;
}

/* Finds the step (now-1, now, now+1) whose code matches and that is newer
 * than last_step; 0 when none does. Every candidate is computed, so the
 * time taken does not say which one matched. */
static int64_t totp_match(const uint8_t *key, size_t key_len, const char *code,
                          int64_t last_step)
{
    if (strlen(code) != 6)
        return 0;
    uint32_t want = 0;
    for (int i = 0; i < 6; i++) {
        if (code[i] < '0' || code[i] > '9')
            return 0;
        want = want * 10 + (uint32_t)(code[i] - '0');
    }
    int64_t now = stoa_unix_time() / TOTP_STEP_S, found = 0;
    for (int64_t step = now - 1; step <= now + 1; step++) {
        uint32_t v = hotp(key, key_len, (uint64_t)step);
        if (v == want && step > last_step && !found)
            found = step;
    }
    return found;
}

static bool need_key(stoa_request_t *req)
{
    if (auth_state(req)->mfa_key_set)
        return true;
    stoa_log(STOA_LOG_ERR, "mfa_encryption_key is not configured");
    stoa_http_error(req, 503, "mfa_unavailable",
                    "two-factor authentication is not configured here");
    return false;
}

/* The user id is the AEAD's associated data: a sealed secret copied to
 * another account's row does not open. */
static bool open_secret_for(stoa_request_t *req, const char *user_id,
                            const char *sealed_hex, uint8_t secret[64],
                            size_t *len)
{
    uint8_t sealed[128];
    size_t n, hl = sealed_hex ? strlen(sealed_hex) : 0;
    if (hl < 2 || hl - 2 > 2 * sizeof(sealed) ||
        stoa_hex_decode(sealed_hex + 2, hl - 2, sealed, &n) != STOA_OK)
        return false;
    return stoa_aead_open(auth_state(req)->mfa_key, sealed, n, user_id,
                          strlen(user_id), secret, len) == STOA_OK;
}

static char *bytea_param(stoa_request_t *req, const uint8_t *data, size_t len)
{
    char *out = stoa_arena_alloc(req->arena, 3 + 2 * len);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(data, len, out + 2);
    return out;
}

static void percent(stoa_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~' || c == '@') {
            stoa_buf_append(out, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            stoa_buf_append(out, e, 3);
        }
    }
}

int auth_mfa_enroll(stoa_request_t *req)
{
    if (!need_key(req))
        return STOA_DECLINED;
    const char *user_id = req->principal.user_id;
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {user_id};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(db, req->arena, "user_by_id", p1, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0)
        return stoa_http_error(req, 404, "not_found", "no such user");
    uint8_t secret[TOTP_SECRET_LEN], sealed[TOTP_SECRET_LEN + STOA_AEAD_OVERHEAD];
    stoa_random_bytes(secret, sizeof(secret));
    if (stoa_aead_seal(auth_state(req)->mfa_key, secret, sizeof(secret),
                       user_id, strlen(user_id), sealed) != STOA_OK)
        return STOA_ERROR;
    char b32[40];
    base32(secret, sizeof(secret), b32);
    stoa_wipe(secret, sizeof(secret));
    const char *p2[] = {user_id, bytea_param(req, sealed, sizeof(sealed))};
    stoa_db_result_t *res;
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_enroll", p2, &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 409, "mfa_already_enabled",
                               "two-factor authentication is already on");
    }
    if ((rc = stoa_audit(req, NULL, "mfa.enrolment_started", user_id, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    const char *issuer = req->ctx->conf.mfa_issuer;
    stoa_buf_t uri;
    stoa_buf_init(&uri);
    stoa_buf_puts(&uri, "otpauth://totp/");
    percent(&uri, issuer);
    stoa_buf_puts(&uri, ":");
    percent(&uri, stoa_db_value(user, 0, 1));
    stoa_buf_printf(&uri, "?secret=%s&issuer=", b32);
    percent(&uri, issuer);
    stoa_buf_puts(&uri, "&algorithm=SHA1&digits=6&period=30");
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "secret", b32);
    stoa_jw_kv_string(w, "otpauth_uri", uri.data);
    stoa_jw_object_close(w);
    stoa_buf_free(&uri);
    stoa_wipe(b32, sizeof(b32));
    return stoa_http_send(req);
}

/* Reads {code} (6 digits) with unknown fields refused. */
static const char *code_field(stoa_request_t *req, const stoa_json_t *body,
                              unsigned flags)
{
    const char *code = stoa_field_string(req, body, "code", flags, 1, 16);
    if (code && strlen(code) != 6)
        stoa_request_field_error(req, "code", "must_be_6_digits");
    return code;
}

int auth_mfa_confirm(stoa_request_t *req)
{
    if (!need_key(req))
        return STOA_DECLINED;
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"code", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *code = code_field(req, body, STOA_FIELD_REQUIRED);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    const char *user_id = req->principal.user_id;
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_get", p1, &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 409, "mfa_not_enrolled",
                               "start with POST /v1/auth/mfa/totp/enroll");
    }
    if (stoa_db_value(res, 0, 1)[0] == 't') {
        stoa_db_rollback(db);
        return stoa_http_error(req, 409, "mfa_already_enabled",
                               "two-factor authentication is already on");
    }
    uint8_t secret[64];
    size_t slen;
    if (!open_secret_for(req, user_id, stoa_db_value(res, 0, 0), secret,
                         &slen)) {
        stoa_db_rollback(db);
        return STOA_ERROR;
    }
    int64_t step = totp_match(secret, slen, code, 0);
    stoa_wipe(secret, sizeof(secret));
    if (!step) {
        stoa_db_rollback(db);
        stoa_request_field_error(req, "code", "incorrect");
        return stoa_http_invalid_fields(req);
    }
    /* Ten single-use recovery codes, shown once, stored as SHA-256. */
    char codes[RECOVERY_CODES][16];
    stoa_buf_t hashes;
    stoa_buf_init(&hashes);
    stoa_buf_puts(&hashes, "{");
    for (int i = 0; i < RECOVERY_CODES; i++) {
        uint8_t raw[7];
        char b32[16];
        stoa_random_bytes(raw, sizeof(raw));
        base32(raw, sizeof(raw), b32); /* 12 characters */
        for (char *p = b32; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        snprintf(codes[i], sizeof(codes[i]), "%.5s-%.5s", b32, b32 + 5);
        uint8_t d[STOA_SHA256_LEN];
        char hex[2 * STOA_SHA256_LEN + 1];
        stoa_sha256(codes[i], strlen(codes[i]), d);
        stoa_hex_encode(d, sizeof(d), hex);
        stoa_buf_printf(&hashes, "%s%s", i ? "," : "", hex);
    }
    stoa_buf_puts(&hashes, "}");
    char step_s[24];
    snprintf(step_s, sizeof(step_s), "%lld", (long long)step);
    const char *p2[] = {user_id, step_s};
    const char *p3[] = {user_id, hashes.data};
    if ((rc = stoa_db_exec(db, req->arena, "mfa_confirm", p2, NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_recovery_delete", p1, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_recovery_insert", p3, NULL)) !=
            STOA_OK ||
        (rc = stoa_audit(req, NULL, "mfa.enabled", user_id, NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK) {
        stoa_buf_free(&hashes);
        return rc;
    }
    stoa_buf_free(&hashes);
    auth_forget_profile(req, user_id);
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "recovery_codes");
    stoa_jw_array_open(w);
    for (int i = 0; i < RECOVERY_CODES; i++)
        stoa_jw_string(w, codes[i]);
    stoa_jw_array_close(w);
    stoa_jw_object_close(w);
    stoa_wipe(codes, sizeof(codes));
    return stoa_http_send(req);
}

int auth_mfa_disable(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"code", "password", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *code = code_field(req, body, STOA_FIELD_OPTIONAL);
    const char *password =
        stoa_field_string(req, body, "password", STOA_FIELD_OPTIONAL, 1, 4096);
    if (!code && !password && !stoa_request_has_field_errors(req))
        stoa_request_field_error(req, "code", "code_or_password_required");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    const char *user_id = req->principal.user_id;
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {user_id};
    stoa_db_result_t *user, *res;
    int rc = stoa_db_exec(db, req->arena, "user_by_id", p1, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0)
        return stoa_http_error(req, 404, "not_found", "no such user");
    const char *email = stoa_db_value(user, 0, 1);
    if (auth_throttle_check(req, email) != STOA_OK)
        return STOA_DECLINED;
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_get", p1, &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0 || stoa_db_value(res, 0, 1)[0] != 't') {
        stoa_db_rollback(db);
        return stoa_http_error(req, 409, "mfa_not_enabled",
                               "two-factor authentication is off");
    }
    bool ok;
    if (code) {
        if (!need_key(req)) {
            stoa_db_rollback(db);
            return STOA_DECLINED;
        }
        uint8_t secret[64];
        size_t slen;
        if (!open_secret_for(req, user_id, stoa_db_value(res, 0, 0), secret,
                             &slen)) {
            stoa_db_rollback(db);
            return STOA_ERROR;
        }
        ok = totp_match(secret, slen, code,
                        atoll(stoa_db_value(res, 0, 2))) != 0;
        stoa_wipe(secret, sizeof(secret));
    } else {
        const char *phc = stoa_db_value(user, 0, COL_PASSWORD_HASH);
        ok = phc && stoa_password_verify(phc, password) == STOA_OK;
    }
    if (!ok) {
        stoa_db_rollback(db);
        auth_throttle_fail(req, email);
        stoa_request_field_error(req, code ? "code" : "password", "incorrect");
        return stoa_http_invalid_fields(req);
    }
    if ((rc = stoa_db_exec(db, req->arena, "mfa_delete", p1, NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_recovery_delete", p1, NULL)) !=
            STOA_OK ||
        (rc = stoa_audit(req, NULL, "mfa.disabled", user_id, NULL)) != STOA_OK ||
        (rc = auth_mail_user(req, user, "mfa_disabled")) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_forget_profile(req, user_id);
    return stoa_http_empty(req, 204);
}

int auth_mfa_enabled(stoa_request_t *req, const char *user_id, bool *enabled)
{
    const char *p[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "mfa_enabled", p, &res);
    if (rc != STOA_OK)
        return rc;
    *enabled = stoa_db_value(res, 0, 0)[0] == 't';
    return STOA_OK;
}

int auth_mfa_challenge(stoa_request_t *req, const char *user_id)
{
    char *token, *hash;
    auth_new_token(req, &token, &hash);
    const char *p[] = {hash, user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "mfa_challenge_insert", p,
                          NULL);
    if (rc != STOA_OK)
        return rc;
    char *details = stoa_arena_sprintf(req->arena, "{\"mfa_token\":\"%s\"}",
                                       token);
    return stoa_http_error_details(req, 401, "mfa_required",
                                   "a second factor is required: POST "
                                   "/v1/auth/mfa/verify",
                                   details);
}

int auth_mfa_verify(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"mfa_token", "code", "recovery_code",
                                          NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *token = stoa_field_string(req, body, "mfa_token",
                                          STOA_FIELD_REQUIRED, 1, 200);
    const char *code = code_field(req, body, STOA_FIELD_OPTIONAL);
    const char *recovery = stoa_field_string(req, body, "recovery_code",
                                             STOA_FIELD_OPTIONAL, 1, 64);
    if (!code && !recovery && !stoa_request_has_field_errors(req))
        stoa_request_field_error(req, "code", "code_or_recovery_code_required");
    if (code && recovery)
        stoa_request_field_error(req, "recovery_code", "only_one_of_code_or_"
                                                       "recovery_code");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    if (!need_key(req))
        return STOA_DECLINED;
    stoa_db_t *db = stoa_request_db(req);
    char *token_hash = auth_token_hash_param(req, token);
    const char *p1[] = {token_hash};
    stoa_db_result_t *challenge, *user, *totp;
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "mfa_challenge_get", p1,
                           &challenge)) != STOA_OK)
        return rc;
    if (stoa_db_rows(challenge) == 0 ||
        stoa_db_value(challenge, 0, 1)[0] != 't') {
        stoa_db_rollback(db);
        return stoa_http_error(req, 401, "invalid_token",
                               "the mfa_token is unknown, used or expired");
    }
    const char *user_id = stoa_db_value(challenge, 0, 0);
    const char *p2[] = {user_id};
    if ((rc = stoa_db_exec(db, req->arena, "user_by_id", p2, &user)) != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0 ||
        strcmp(stoa_db_value(user, 0, COL_STATUS), "active") != 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 401, "invalid_token",
                               "the account is not active");
    }
    const char *email = stoa_db_value(user, 0, 1);
    if (auth_throttle_check(req, email) != STOA_OK) {
        stoa_db_rollback(db);
        return STOA_DECLINED;
    }
    bool ok = false, used_recovery = false;
    if (code) {
        if ((rc = stoa_db_exec(db, req->arena, "mfa_get", p2, &totp)) !=
            STOA_OK)
            return rc;
        uint8_t secret[64];
        size_t slen;
        if (stoa_db_rows(totp) == 1 &&
            open_secret_for(req, user_id, stoa_db_value(totp, 0, 0), secret,
                            &slen)) {
            int64_t step = totp_match(secret, slen, code,
                                      atoll(stoa_db_value(totp, 0, 2)));
            stoa_wipe(secret, sizeof(secret));
            if (step) {
                char step_s[24];
                snprintf(step_s, sizeof(step_s), "%lld", (long long)step);
                const char *p3[] = {user_id, step_s};
                stoa_db_result_t *used;
                if ((rc = stoa_db_exec(db, req->arena, "mfa_use_step", p3,
                                       &used)) != STOA_OK)
                    return rc;
                ok = stoa_db_rows(used) == 1;
            }
        }
    } else {
        /* Recovery codes are compared case-insensitively, dash optional. */
        char normal[16];
        size_t n = 0;
        for (const char *p = recovery; *p && n < 10; p++) {
            char c = *p;
            if (c == '-' || c == ' ')
                continue;
            normal[n++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        normal[n] = '\0';
        char formatted[16];
        snprintf(formatted, sizeof(formatted), "%.5s-%.5s", normal,
                 n > 5 ? normal + 5 : "");
        uint8_t d[STOA_SHA256_LEN];
        stoa_sha256(formatted, strlen(formatted), d);
        const char *p4[] = {user_id, bytea_param(req, d, sizeof(d))};
        stoa_db_result_t *used;
        if ((rc = stoa_db_exec(db, req->arena, "mfa_recovery_use", p4,
                               &used)) != STOA_OK)
            return rc;
        ok = used_recovery = stoa_db_rows(used) == 1;
    }
    if (!ok) {
        stoa_db_rollback(db);
        auth_throttle_fail(req, email);
        if (stoa_audit(req, user_id, "mfa.failed", user_id, NULL) != STOA_OK)
            stoa_log(STOA_LOG_ERR, "audit of a failed MFA code not written");
        return stoa_http_error(req, 401, "invalid_code",
                               "the code is wrong, expired or already used");
    }
    if ((rc = stoa_db_exec(db, req->arena, "mfa_challenge_use", p1, NULL)) !=
            STOA_OK ||
        (used_recovery &&
         ((rc = stoa_audit(req, user_id, "mfa.recovery_code_used", user_id,
                           NULL)) != STOA_OK ||
          (rc = auth_mail_user(req, user, "recovery_code_used")) != STOA_OK)) ||
        (rc = auth_start_session(req, user)) != STOA_OK ||
        (rc = stoa_audit(req, user_id, "login.succeeded", user_id,
                         "{\"mfa\":true}")) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_throttle_clear(req, email);
    return STOA_OK;
}
