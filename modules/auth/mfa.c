/* mfa.c - TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30 s, one
 * step of drift either way), recovery codes, and the login challenge.
 *
 * Against guessing: an mfa_token dies after CHALLENGE_MAX_FAILURES wrong
 * codes, and an account takes at most ACCOUNT_MAX_FAILURES wrong codes in
 * ACCOUNT_FAILURE_WINDOW_S, whatever the client addresses. Both counts
 * are Postgres row updates under the row locks verification already
 * takes (the challenge, then the account's TOTP row), so concurrent
 * guesses serialise on them and cannot overshoot, and they hold when
 * Redis is down (the per account+address login throttle in Redis then
 * stops, by design; these must not). */
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
/* The buffer a sealed secret opens into: room for TOTP_SECRET_LEN and
 * for longer secrets should they ever be imported. */
#define TOTP_SECRET_MAX 64
#define RECOVERY_CODES 10
#define RECOVERY_CODE_CHARS 10 /* "xxxxx-xxxxx" without the dash */
/* Limits of wrong codes, as the SQL parameters they are passed as. */
#define CHALLENGE_MAX_FAILURES "5"
#define ACCOUNT_MAX_FAILURES "10"
#define ACCOUNT_FAILURE_WINDOW_S "900"

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
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 |
                   (uint32_t)mac[off + 1] << 16 | (uint32_t)mac[off + 2] << 8 |
                   mac[off + 3];
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
    stoa_http_fail(req, STOA_ERR_MFA_UNAVAILABLE,
                   "two-factor authentication is not configured here");
    return false;
}

/* The user id is the AEAD's associated data: a sealed secret copied to
 * another account's row does not open. The box is bounded by the secret
 * buffer before anything is decrypted: AES-GCM writes the plaintext out
 * before it checks the tag, so an over-long box (a damaged or planted
 * row) must be refused here, not by the tag. */
static bool open_secret_for(stoa_request_t *req, const char *user_id,
                            const char *sealed_hex,
                            uint8_t secret[TOTP_SECRET_MAX], size_t *len)
{
    uint8_t sealed[TOTP_SECRET_MAX + STOA_AEAD_OVERHEAD];
    size_t n;
    if (stoa_bytea_decode(sealed_hex, sealed, sizeof(sealed), &n) != STOA_OK)
        return false;
    return stoa_aead_open(auth_state(req)->mfa_key, sealed, n, user_id,
                          strlen(user_id), secret, len) == STOA_OK;
}

/* A stored secret that does not open (damaged, or sealed under another
 * mfa_encryption_key) is the server's fault, not a wrong code: it is not
 * counted against the user, who can still use a recovery code. */
static int secret_unreadable(stoa_request_t *req, const char *user_id)
{
    stoa_log(STOA_LOG_ERR,
             "the sealed TOTP secret of user %s does not open (damaged, or "
             "sealed under another mfa_encryption_key)",
             user_id);
    return stoa_http_fail(req, STOA_ERR_MFA_UNAVAILABLE,
                          "the authenticator code cannot be checked now; "
                          "use a recovery code");
}

/* open_secret_for on the TOTP row in the caller's transaction; when the
 * secret does not open, rolls back, answers (secret_unreadable) and
 * returns false. */
static bool open_row_secret(stoa_request_t *req, const char *user_id,
                            const stoa_db_result_t *totp,
                            uint8_t secret[TOTP_SECRET_MAX], size_t *len)
{
    if (open_secret_for(req, user_id,
                        stoa_db_value(totp, 0, MFA_COL_SECRET_SEALED), secret,
                        len))
        return true;
    stoa_db_rollback(stoa_request_db(req));
    secret_unreadable(req, user_id);
    return false;
}

/* The account's lock on second-factor codes: STOA_OK when it takes
 * codes, else 429 with Retry-After is written (after a rollback when
 * in_transaction) and STOA_DECLINED returned. Inside a transaction the
 * TOTP row stays locked until it ends. */
static int account_lock_check(stoa_request_t *req, const char *user_id,
                              bool in_transaction)
{
    const char *p[] = {user_id, ACCOUNT_MAX_FAILURES, ACCOUNT_FAILURE_WINDOW_S};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(MFA_ACCOUNT_LOCK), p, &res);
    if (rc != STOA_OK)
        return rc;
    long left = stoa_db_rows(res) == 1
                    ? atol(stoa_db_value(res, 0, LOCK_COL_SECONDS))
                    : 0;
    if (left <= 0)
        return STOA_OK;
    if (in_transaction)
        stoa_db_rollback(stoa_request_db(req));
    stoa_http_header(req, "Retry-After",
                     stoa_arena_sprintf(req->arena, "%ld", left));
    return stoa_http_fail(req, STOA_ERR_TOO_MANY_ATTEMPTS,
                          "too many wrong codes for this account; retry "
                          "later");
}

/* Counts one wrong code against the account, in the caller's
 * transaction. */
static int count_account_failure(stoa_request_t *req, const char *user_id)
{
    const char *p[] = {user_id, ACCOUNT_FAILURE_WINDOW_S};
    return stoa_db_exec(stoa_request_db(req), req->arena,
                        AUTH_SQL(MFA_ACCOUNT_FAIL), p, NULL);
}

/* The current password, which turning TOTP on requires besides the
 * access token: a stolen token alone must not bind the account to the
 * thief's authenticator and lock the owner out. Wrong passwords count in
 * the failed-login throttle like a login's, so these routes are no side
 * door for guessing it. STOA_OK, or the answer (401, 429) is written and
 * STOA_DECLINED returned. */
static int check_password(stoa_request_t *req, const stoa_db_result_t *user,
                          const char *password)
{
    const char *email = stoa_db_value(user, 0, USER_COL_EMAIL);
    if (auth_throttle_check(req, email) != STOA_OK)
        return STOA_DECLINED;
    const char *phc = stoa_db_value(user, 0, USER_COL_PASSWORD_HASH);
    if (phc && stoa_password_verify(phc, password) == STOA_OK)
        return STOA_OK;
    auth_throttle_fail(req, email);
    const char *user_id = stoa_db_value(user, 0, USER_COL_ID);
    if (stoa_request_audit(req, NULL, "mfa.password_failed", user_id, NULL) !=
        STOA_OK)
        stoa_log(STOA_LOG_ERR, "audit of a failed MFA password not written");
    return stoa_http_fail(req, STOA_ERR_INVALID_CREDENTIALS,
                          "the password is wrong");
}

/* Reads {code} (6 digits). */
static const char *code_field(stoa_request_t *req, const stoa_json_t *body,
                              unsigned flags)
{
    const char *code = stoa_field_string(req, body, "code", flags, 1, 16);
    if (code && strlen(code) != 6)
        stoa_request_field_error(req, "code", "must_be_6_digits");
    return code;
}

/* Reads {password} and, when with_code, {code}: the bodies of enroll and
 * confirm, unknown fields refused. An empty body reads as {}, so a
 * client that sends none is told which field is missing. STOA_OK, or the
 * answer (400, 415) is written and STOA_DECLINED returned. */
static int enrolment_body(stoa_request_t *req, bool with_code,
                          const char **password, const char **code)
{
    *password = NULL;
    if (with_code)
        *code = NULL;
    if (req->body_len == 0) {
        stoa_request_field_error(req, "password", "required");
        if (with_code)
            stoa_request_field_error(req, "code", "required");
        return stoa_http_invalid_fields(req);
    }
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const password_only[] = {"password", NULL};
    static const char *const password_and_code[] = {"password", "code", NULL};
    stoa_field_reject_unknown(req, body,
                              with_code ? password_and_code : password_only);
    *password =
        stoa_field_string(req, body, "password", STOA_FIELD_REQUIRED, 1, 4096);
    if (with_code)
        *code = code_field(req, body, STOA_FIELD_REQUIRED);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    return STOA_OK;
}

/* The caller's user row (AUTH_USER_COLUMNS, password hash, status);
 * 404 when the account is gone. */
static int caller_row(stoa_request_t *req, stoa_db_result_t **user)
{
    const char *p[] = {req->principal.user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(USER_BY_ID), p, user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(*user) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    return STOA_OK;
}

/* The start of enroll and confirm: the body, the caller's row, and the
 * password proven. STOA_OK, or the answer is written (or the database
 * failed) and its status returned. */
static int enrolment_start(stoa_request_t *req, bool with_code,
                           const char **code, stoa_db_result_t **user)
{
    const char *password;
    int rc;
    if ((rc = enrolment_body(req, with_code, &password, code)) != STOA_OK ||
        (rc = caller_row(req, user)) != STOA_OK)
        return rc;
    return check_password(req, *user, password);
}

/* Begins the caller's transaction for confirm and disable: the user's
 * row first (locked and checked unchanged since the caller's row was
 * read, auth_credentials_unchanged: a reset orders with this), then the
 * enrolment's row into *res (no row: none). */
static int begin_with_enrolment(stoa_request_t *req,
                                const stoa_db_result_t *user,
                                stoa_db_result_t **res)
{
    stoa_db_t *db = stoa_request_db(req);
    const char *p[] = {req->principal.user_id};
    int rc;
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = auth_credentials_unchanged(
             req, stoa_db_value(user, 0, USER_COL_PASSWORD_HASH))) != STOA_OK)
        return rc;
    return stoa_db_exec(db, req->arena, AUTH_SQL(MFA_GET), p, res);
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
    stoa_db_result_t *user;
    int rc = enrolment_start(req, false, NULL, &user);
    if (rc != STOA_OK)
        return rc;
    const char *user_id = req->principal.user_id;
    uint8_t secret[TOTP_SECRET_LEN],
        sealed[TOTP_SECRET_LEN + STOA_AEAD_OVERHEAD];
    stoa_random_bytes(secret, sizeof(secret));
    if (stoa_aead_seal(auth_state(req)->mfa_key, secret, sizeof(secret),
                       user_id, strlen(user_id), sealed) != STOA_OK)
        return STOA_ERROR;
    char b32[40];
    base32(secret, sizeof(secret), b32);
    stoa_wipe(secret, sizeof(secret));
    const char *p2[] = {user_id, bytea_param(req, sealed, sizeof(sealed))};
    stoa_db_result_t *res;
    rc = stoa_request_begin(req, AUTH_SQL(MFA_ENROLL), p2, &res);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_MFA_ALREADY_ENABLED,
                              "two-factor authentication is already on");
    if (rc != STOA_OK || (rc = stoa_request_commit(req, "mfa.enrolment_started",
                                                   user_id, NULL)) != STOA_OK)
        return rc;
    const char *issuer = req->ctx->conf.mfa_issuer;
    stoa_buf_t uri;
    stoa_buf_init(&uri);
    stoa_buf_puts(&uri, "otpauth://totp/");
    percent(&uri, issuer);
    stoa_buf_puts(&uri, ":");
    percent(&uri, stoa_db_value(user, 0, USER_COL_EMAIL));
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

int auth_mfa_confirm(stoa_request_t *req)
{
    if (!need_key(req))
        return STOA_DECLINED;
    const char *code;
    stoa_db_result_t *user, *res;
    int rc = enrolment_start(req, true, &code, &user);
    if (rc != STOA_OK)
        return rc;
    const char *user_id = req->principal.user_id;
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {user_id};
    if ((rc = begin_with_enrolment(req, user, &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_MFA_NOT_ENROLLED,
                              "start with POST /v1/auth/mfa/totp/enroll");
    }
    if (stoa_db_value(res, 0, MFA_COL_CONFIRMED)[0] == 't') {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_MFA_ALREADY_ENABLED,
                              "two-factor authentication is already on");
    }
    uint8_t secret[TOTP_SECRET_MAX];
    size_t slen;
    if (!open_row_secret(req, user_id, res, secret, &slen))
        return STOA_DECLINED;
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
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_CONFIRM), p2, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_RECOVERY_DELETE), p1,
                           NULL)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_RECOVERY_INSERT), p3,
                           NULL)) != STOA_OK ||
        (rc = stoa_request_audit(req, NULL, "mfa.enabled", user_id, NULL)) !=
            STOA_OK ||
        (rc = auth_mail_user(req, user, "mfa_enabled")) != STOA_OK ||
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
    int rc = caller_row(req, &user);
    if (rc != STOA_OK)
        return rc;
    const char *email = stoa_db_value(user, 0, USER_COL_EMAIL);
    if (auth_throttle_check(req, email) != STOA_OK)
        return STOA_DECLINED;
    if ((rc = begin_with_enrolment(req, user, &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0 ||
        stoa_db_value(res, 0, MFA_COL_CONFIRMED)[0] != 't') {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_MFA_NOT_ENABLED,
                              "two-factor authentication is off");
    }
    bool ok;
    if (code) {
        if (!need_key(req)) {
            stoa_db_rollback(db);
            return STOA_DECLINED;
        }
        /* Codes tried here count against the account as at login: a
         * stolen access token must not buy unlimited guesses either. */
        if ((rc = account_lock_check(req, user_id, true)) != STOA_OK)
            return rc;
        uint8_t secret[TOTP_SECRET_MAX];
        size_t slen;
        if (!open_row_secret(req, user_id, res, secret, &slen))
            return STOA_DECLINED;
        ok = totp_match(secret, slen, code,
                        atoll(stoa_db_value(res, 0, MFA_COL_LAST_USED_STEP))) !=
             0;
        stoa_wipe(secret, sizeof(secret));
    } else {
        const char *phc = stoa_db_value(user, 0, USER_COL_PASSWORD_HASH);
        ok = phc && stoa_password_verify(phc, password) == STOA_OK;
    }
    if (!ok) {
        /* A wrong code is kept (committed) in the account's count; a
         * wrong password only in the login throttle. */
        if (code) {
            if ((rc = count_account_failure(req, user_id)) != STOA_OK ||
                (rc = stoa_db_commit(db)) != STOA_OK)
                return rc;
        } else {
            stoa_db_rollback(db);
        }
        auth_throttle_fail(req, email);
        stoa_request_field_error(req, code ? "code" : "password", "incorrect");
        return stoa_http_invalid_fields(req);
    }
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_DELETE), p1, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_RECOVERY_DELETE), p1,
                           NULL)) != STOA_OK ||
        (rc = stoa_request_audit(req, NULL, "mfa.disabled", user_id, NULL)) !=
            STOA_OK ||
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
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(MFA_ENABLED), p, &res);
    if (rc != STOA_OK)
        return rc;
    *enabled = stoa_db_value(res, 0, MFA_ENABLED_COL_ENABLED)[0] == 't';
    return STOA_OK;
}

int auth_mfa_challenge(stoa_request_t *req, const char *user_id,
                       char **mfa_token)
{
    /* An account that took too many wrong codes gets no new challenge,
     * from any address: fresh mfa_tokens must not mean fresh guesses. */
    int rc = account_lock_check(req, user_id, true);
    if (rc != STOA_OK)
        return rc;
    char *hash;
    auth_new_token(req, mfa_token, &hash);
    const char *p[] = {hash, user_id};
    return stoa_db_exec(stoa_request_db(req), req->arena,
                        AUTH_SQL(MFA_CHALLENGE_INSERT), p, NULL);
}

int auth_mfa_required(stoa_request_t *req, const char *mfa_token)
{
    return stoa_http_fail_details(
        req, STOA_ERR_MFA_REQUIRED,
        "a second factor is required: POST /v1/auth/mfa/verify",
        stoa_json_pair(req->arena, "mfa_token", mfa_token));
}

/* Recovery codes as people type them: case, dashes and spaces do not
 * matter, every other character does. The whole input must be the ten
 * characters of one code (a right code with anything after it is not
 * that code). Writes the "xxxxx-xxxxx" form the hashes are made of;
 * false when the input cannot be a code. */
static bool recovery_code_canonical(const char *typed,
                                    char out[RECOVERY_CODE_CHARS + 2])
{
    char chars[RECOVERY_CODE_CHARS];
    size_t n = 0;
    for (const char *p = typed; *p; p++) {
        char c = *p;
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        bool in_alphabet = (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
        if (!in_alphabet || n == RECOVERY_CODE_CHARS)
            return false;
        chars[n++] = c;
    }
    if (n != RECOVERY_CODE_CHARS)
        return false;
    snprintf(out, RECOVERY_CODE_CHARS + 2, "%.5s-%.5s", chars, chars + 5);
    stoa_wipe(chars, sizeof(chars));
    return true;
}

/* Spends the user's unused recovery code that matches typed, in the
 * caller's transaction. The digest is compared with every unused code's
 * in constant time, all of them whatever matches, so the answer's timing
 * says nothing about how close a guess came. */
static int use_recovery_code(stoa_request_t *req, const char *user_id,
                             const char *typed, bool *used)
{
    *used = false;
    char canonical[RECOVERY_CODE_CHARS + 2];
    if (!recovery_code_canonical(typed, canonical))
        return STOA_OK;
    uint8_t d[STOA_SHA256_LEN];
    stoa_sha256(canonical, strlen(canonical), d);
    stoa_wipe(canonical, sizeof(canonical));
    const char *p1[] = {user_id};
    stoa_db_result_t *codes;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(MFA_RECOVERY_UNUSED), p1, &codes);
    if (rc != STOA_OK)
        return rc;
    bool match = false;
    for (int i = 0; i < stoa_db_rows(codes); i++) {
        const char *hex = stoa_db_value(codes, i, RECOVERY_COL_CODE_HASH);
        uint8_t stored[STOA_SHA256_LEN];
        size_t n = 0;
        /* bytea text form: "\x" then 64 hex digits. */
        if (hex && strlen(hex) == 2 + 2 * sizeof(stored) &&
            stoa_hex_decode(hex + 2, 2 * sizeof(stored), stored, &n) ==
                STOA_OK &&
            n == sizeof(stored))
            match |= stoa_ct_equal(stored, d, sizeof(d));
    }
    if (!match)
        return STOA_OK;
    const char *p2[] = {user_id, bytea_param(req, d, sizeof(d))};
    stoa_db_result_t *spent;
    if ((rc = stoa_db_exec(stoa_request_db(req), req->arena,
                           AUTH_SQL(MFA_RECOVERY_USE), p2, &spent)) != STOA_OK)
        return rc;
    *used = stoa_db_rows(spent) == 1;
    return STOA_OK;
}

/* Checks a TOTP code against the user's secret, spending its step, in
 * the caller's transaction. When the stored secret does not open, the
 * 503 is written and its status (STOA_AGAIN) returned. */
static int use_totp_code(stoa_request_t *req, const char *user_id,
                         const char *code, bool *used)
{
    *used = false;
    const char *p[] = {user_id};
    stoa_db_result_t *totp;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, AUTH_SQL(MFA_GET),
                          p, &totp);
    if (rc != STOA_OK || stoa_db_rows(totp) != 1)
        return rc;
    uint8_t secret[TOTP_SECRET_MAX];
    size_t slen;
    if (!open_secret_for(req, user_id,
                         stoa_db_value(totp, 0, MFA_COL_SECRET_SEALED), secret,
                         &slen))
        return secret_unreadable(req, user_id);
    int64_t step =
        totp_match(secret, slen, code,
                   atoll(stoa_db_value(totp, 0, MFA_COL_LAST_USED_STEP)));
    stoa_wipe(secret, sizeof(secret));
    if (!step)
        return STOA_OK;
    char step_s[24];
    snprintf(step_s, sizeof(step_s), "%lld", (long long)step);
    const char *p2[] = {user_id, step_s};
    stoa_db_result_t *spent;
    if ((rc = stoa_db_exec(stoa_request_db(req), req->arena,
                           AUTH_SQL(MFA_USE_STEP), p2, &spent)) != STOA_OK)
        return rc;
    *used = stoa_db_rows(spent) == 1;
    return STOA_OK;
}

/* The audit detail of a login completed with a second factor. */
static char *mfa_detail(stoa_request_t *req)
{
    stoa_jw_t *w = stoa_jw_arena(req->arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_bool(w, "mfa", true);
    stoa_jw_object_close(w);
    return stoa_jw_arena_text(req->arena, w);
}

int auth_mfa_verify(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"mfa_token", "code", "recovery_code",
                                          NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *token =
        stoa_field_string(req, body, "mfa_token", STOA_FIELD_REQUIRED, 1, 200);
    const char *code = code_field(req, body, STOA_FIELD_OPTIONAL);
    const char *recovery = stoa_field_string(req, body, "recovery_code",
                                             STOA_FIELD_OPTIONAL, 1, 64);
    if (!code && !recovery && !stoa_request_has_field_errors(req))
        stoa_request_field_error(req, "code", "code_or_recovery_code_required");
    if (code && recovery)
        stoa_request_field_error(req, "recovery_code",
                                 "only_one_of_code_or_"
                                 "recovery_code");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    if (!need_key(req))
        return STOA_DECLINED;
    stoa_db_t *db = stoa_request_db(req);
    char *token_hash = auth_token_hash_param(req, token);
    const char *p1[] = {token_hash};
    const char *p_get[] = {token_hash, CHALLENGE_MAX_FAILURES};
    stoa_db_result_t *owner, *challenge, *user;
    /* Locks in the order every session-ending change takes them: the
     * user's row (FOR SHARE here), then the challenge. A reset deletes
     * the user's challenges under that lock, so a challenge started with
     * the old password cannot finish after it. */
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_CHALLENGE_OWNER), p1,
                           &owner)) != STOA_OK)
        return rc;
    if (stoa_db_rows(owner) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_INVALID_TOKEN,
                              "the mfa_token is unknown, used or expired");
    }
    const char *user_id = stoa_db_value(owner, 0, TOKEN_COL_USER_ID);
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(USER_FOR_SESSION), &user_id,
                           &user)) != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0 ||
        strcmp(stoa_db_value(user, 0, USER_COL_STATUS), "active") != 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_INVALID_TOKEN,
                              "the account is not active");
    }
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_CHALLENGE_GET), p_get,
                           &challenge)) != STOA_OK)
        return rc;
    if (stoa_db_rows(challenge) == 0 ||
        strcmp(stoa_db_value(challenge, 0, CHALLENGE_COL_USER_ID), user_id) !=
            0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_INVALID_TOKEN,
                              "the mfa_token is unknown, used or expired");
    }
    /* The address lock first: an address that is locked out is told so,
     * whatever it presents. */
    const char *email = stoa_db_value(user, 0, USER_COL_EMAIL);
    if (auth_throttle_check(req, email) != STOA_OK) {
        stoa_db_rollback(db);
        return STOA_DECLINED;
    }
    /* Used, expired, or killed by its wrong codes: gone, even for the
     * right code. */
    if (stoa_db_value(challenge, 0, CHALLENGE_COL_USABLE)[0] != 't') {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_INVALID_TOKEN,
                              "the mfa_token is unknown, used or expired");
    }
    if ((rc = account_lock_check(req, user_id, true)) != STOA_OK)
        return rc;
    bool ok = false;
    rc = code ? use_totp_code(req, user_id, code, &ok)
              : use_recovery_code(req, user_id, recovery, &ok);
    if (rc != STOA_OK) {
        stoa_db_rollback(db);
        return rc;
    }
    if (!ok) {
        /* Committed, not rolled back: the next guess on this challenge
         * or account, waiting on the row locks, must see this one. */
        if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_CHALLENGE_FAIL), p1,
                               NULL)) != STOA_OK ||
            (rc = count_account_failure(req, user_id)) != STOA_OK ||
            (rc = stoa_request_audit(req, user_id, "mfa.failed", user_id,
                                     NULL)) != STOA_OK ||
            (rc = stoa_db_commit(db)) != STOA_OK)
            return rc;
        auth_throttle_fail(req, email);
        return stoa_http_fail(req, STOA_ERR_INVALID_CODE,
                              "the code is wrong, expired or already used");
    }
    bool used_recovery = !code;
    auth_tokens_t tokens;
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(MFA_CHALLENGE_USE), p1,
                           NULL)) != STOA_OK ||
        (used_recovery &&
         ((rc = stoa_request_audit(req, user_id, "mfa.recovery_code_used",
                                   user_id, NULL)) != STOA_OK ||
          (rc = auth_mail_user(req, user, "recovery_code_used")) != STOA_OK)) ||
        (rc = auth_start_session(req, user, &tokens)) != STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "login.succeeded", user_id,
                                 mfa_detail(req))) != STOA_OK ||
        (rc = stoa_request_commit(req, NULL, NULL, NULL)) != STOA_OK)
        return rc;
    auth_write_tokens(req, tokens.access, tokens.refresh, user);
    auth_throttle_clear(req, email);
    return STOA_OK;
}
