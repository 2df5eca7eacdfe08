/* password.h - Argon2id password hashing (libargon2), PHC strings, and the
 * password policy (SPEC §4), one function for every place a password is
 * set: registration, reset, change and `stoactl user create`. */
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

/* Gives back the memory the last hash kept for the next one when no hash
 * has run for 100 ms. True while memory is still kept (or a hash runs):
 * call again in a while. Never waits; cheap when nothing is kept. Pool
 * handler threads call it before they wait for work. */
bool stoa_password_release_idle(void);

/* STOA_OK when password matches phc, STOA_DECLINED when it does not or phc
 * is malformed. */
STOA_MUSTCHECK int stoa_password_verify(const char *phc, const char *password);

/* True when phc was made with other parameters than params. */
bool stoa_password_needs_rehash(const char *phc,
                                const stoa_password_params_t *params);

/* The policy: at least STOA_PASSWORD_MIN_CHARS characters (not bytes),
 * at most STOA_PASSWORD_MAX_BYTES bytes, not in the shipped list of common
 * passwords (any case), not containing the email's local part (when it has
 * 3+ characters), and judged by zxcvbn to need at least 10^10 guesses,
 * with the local part and the words of the name as the guesses an attacker
 * who knows the account tries first. */
#define STOA_PASSWORD_MIN_CHARS 12
#define STOA_PASSWORD_MAX_BYTES 1024

/* NULL when password is acceptable, else the first rule it breaks as the
 * API names it in details.fields: "too_short", "too_long", "too_common",
 * "contains_email" or "too_weak" (a static string). email (normalised) and
 * name may be NULL. Thread-safe; keeps no copy of password. */
const char *stoa_password_refusal(const char *password, const char *email,
                                  const char *name);

#endif
