/* main.c - the auth pool: start-up (its routes: routes.manifest). */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/keys.h"
#include "stoa/log.h"

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

STOA_APP_MAIN("auth", auth_statements, auth_statements_len, auth_init)
