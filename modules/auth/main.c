/* main.c - the auth pool: routes, statements and process start-up. */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/keys.h"
#include "stoa/log.h"

#define AUTHED STOA_ROUTE_AUTH
#define LOGIN STOA_ROUTE_LOGIN
#define HASHES STOA_ROUTE_HASHES

static const stoa_route_t auth_routes[] = {
    {"POST", "/v1/auth/register", auth_register, STOA_ROUTE_IDEMPOTENT | HASHES,
     NULL},
    {"POST", "/v1/auth/verify-email", auth_verify_email, STOA_ROUTE_PUBLIC,
     NULL},
    {"POST", "/v1/auth/login", auth_login, STOA_ROUTE_PUBLIC | HASHES, NULL},
    {"POST", "/v1/auth/refresh", auth_refresh, STOA_ROUTE_PUBLIC, NULL},
    {"POST", "/v1/auth/logout", auth_logout, AUTHED, NULL},
    {"GET", "/v1/auth/sessions", auth_sessions_list, AUTHED, NULL},
    {"DELETE", "/v1/auth/sessions", auth_sessions_delete_others, LOGIN, NULL},
    {"DELETE", "/v1/auth/sessions/{id}", auth_sessions_delete, LOGIN, NULL},
    {"POST", "/v1/auth/password/forgot", auth_password_forgot,
     STOA_ROUTE_PUBLIC, NULL},
    {"POST", "/v1/auth/password/reset", auth_password_reset,
     STOA_ROUTE_PUBLIC | HASHES, NULL},
    {"POST", "/v1/auth/password/change", auth_password_change, LOGIN | HASHES,
     NULL},
    {"GET", "/v1/me", auth_me_get, AUTHED, NULL},
    {"PATCH", "/v1/me", auth_me_patch, AUTHED, NULL},
    {"DELETE", "/v1/me", auth_me_delete, LOGIN | HASHES, NULL},
    {"GET", "/v1/me/export", auth_me_export, AUTHED, NULL},
    {"GET", "/.well-known/jwks.json", auth_jwks, STOA_ROUTE_PUBLIC, NULL},
    {"POST", "/v1/auth/mfa/totp/enroll", auth_mfa_enroll, LOGIN | HASHES, NULL},
    {"POST", "/v1/auth/mfa/totp/confirm", auth_mfa_confirm, LOGIN | HASHES,
     NULL},
    {"DELETE", "/v1/auth/mfa/totp", auth_mfa_disable, LOGIN | HASHES, NULL},
    {"POST", "/v1/auth/mfa/verify", auth_mfa_verify, STOA_ROUTE_PUBLIC, NULL},
    {"POST", "/v1/auth/api-keys", auth_api_keys_create,
     LOGIN | STOA_ROUTE_IDEMPOTENT, NULL},
    {"GET", "/v1/auth/api-keys", auth_api_keys_list, AUTHED, NULL},
    {"DELETE", "/v1/auth/api-keys/{id}", auth_api_keys_delete, LOGIN, NULL},
    {"POST", "/v1/auth/token", auth_token, STOA_ROUTE_PUBLIC, NULL},
};

static auth_state_t state;

static int auth_init(stoa_ctx_t *ctx)
{
    state.params.memory_kib = (uint32_t)ctx->conf.argon2_memory_kib;
    state.params.iterations = (uint32_t)ctx->conf.argon2_iterations;
    state.params.parallelism = (uint32_t)ctx->conf.argon2_parallelism;
    /* The dummy hash is made once per process with the live parameters. */
    if (stoa_password_hash(&state.params, "stoa-dummy-password-for-timing",
                           state.dummy_hash) != STOA_OK)
        return STOA_ERROR;
    pthread_mutex_init(&state.lock, NULL);
    stoa_buf_init(&state.jwks);
    const char *mfa_key = ctx->conf.mfa_encryption_key;
    size_t n = 0;
    if (mfa_key[0]) {
        if (strlen(mfa_key) != 64 ||
            stoa_hex_decode(mfa_key, 64, state.mfa_key, &n) != STOA_OK) {
            stoa_log(STOA_LOG_CRIT, "mfa_encryption_key must be 64 hex digits");
            return STOA_ERROR;
        }
        state.mfa_key_set = true;
    }
    state.signing_key = stoa_keys_load_current(ctx->conf.keys_dir);
    if (!state.signing_key)
        stoa_log(STOA_LOG_ERR, "no signing key in %s: run stoactl keys ensure",
                 ctx->conf.keys_dir);
    ctx->data = &state;
    return STOA_OK;
}

static const stoa_app_t auth_app = {
    .name = "auth",
    .routes = auth_routes,
    .nroutes = STOA_ARRAY_LEN(auth_routes),
    .statements = auth_statements,
    .nstatements = 0, /* set in main: the table lives in another file */
    .init = auth_init,
};

int main(int argc, char **argv)
{
    stoa_app_t app = auth_app;
    app.nstatements = auth_statements_len;
    return stoa_app_main(argc, argv, &app);
}
