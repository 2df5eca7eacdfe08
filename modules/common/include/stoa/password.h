/* password.h - Argon2id password hashing (libargon2), PHC strings. */
#ifndef STOA_PASSWORD_H
#define STOA_PASSWORD_H

#include "stoa/core.h"

#define STOA_PASSWORD_HASH_MAX 160

typedef struct {
    uint32_t memory_kib;
    uint32_t iterations;
    uint32_t parallelism;
} stoa_password_params_t;

/* Hashes password with a fresh 16-byte salt into out (a PHC string).
 * STOA_OK or STOA_ERROR. */
STOA_MUSTCHECK int stoa_password_hash(const stoa_password_params_t *params,
                                      const char *password,
                                      char out[STOA_PASSWORD_HASH_MAX]);

/* STOA_OK when password matches phc, STOA_DECLINED when it does not or phc
 * is malformed. */
STOA_MUSTCHECK int stoa_password_verify(const char *phc, const char *password);

/* True when phc was made with other parameters than params. */
bool stoa_password_needs_rehash(const char *phc,
                                const stoa_password_params_t *params);

#endif
