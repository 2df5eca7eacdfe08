/* password.c - Argon2id via libargon2, encoded as PHC strings. */
#include "stoa/password.h"

#include <argon2.h>
#include <stdio.h>
#include <string.h>

#include "stoa/crypto.h"

#define SALT_LEN 16
#define HASH_LEN 32

int stoa_password_hash(const stoa_password_params_t *params,
                       const char *password, char out[STOA_PASSWORD_HASH_MAX])
{
    uint8_t salt[SALT_LEN];
    stoa_random_bytes(salt, sizeof(salt));
    size_t need = argon2_encodedlen(params->iterations, params->memory_kib,
                                    params->parallelism, SALT_LEN, HASH_LEN,
                                    Argon2_id);
    if (need > STOA_PASSWORD_HASH_MAX)
        return STOA_ERROR;
    int rc = argon2id_hash_encoded(params->iterations, params->memory_kib,
                                   params->parallelism, password,
                                   strlen(password), salt, SALT_LEN, HASH_LEN,
                                   out, STOA_PASSWORD_HASH_MAX);
    return rc == ARGON2_OK ? STOA_OK : STOA_ERROR;
}

int stoa_password_verify(const char *phc, const char *password)
{
    if (!phc || strncmp(phc, "$argon2id$", 10) != 0)
        return STOA_DECLINED;
    int rc = argon2id_verify(phc, password, strlen(password));
    return rc == ARGON2_OK ? STOA_OK : STOA_DECLINED;
}

bool stoa_password_needs_rehash(const char *phc,
                                const stoa_password_params_t *params)
{
    char want[64];
    snprintf(want, sizeof(want), "$argon2id$v=19$m=%u,t=%u,p=%u$",
             params->memory_kib, params->iterations, params->parallelism);
    return !phc || strncmp(phc, want, strlen(want)) != 0;
}
