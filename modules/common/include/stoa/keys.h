/* keys.h - the token signing keys on disk.
 *
 * Layout of keys_dir (0700):
 *   <kid>.pem       a private ES256 key (0600)
 *   <kid>.retired   unix time at which that key stopped signing
 *   current         the kid that signs now
 *   jwks.json       the public keys that may still verify live tokens
 *                   (served by the auth pool, read by the gateway)
 * Rotation writes the new key first and switches `current` and
 * `jwks.json` with atomic renames, so readers never see a half state. */
#ifndef STOA_KEYS_H
#define STOA_KEYS_H

#include "stoa/jwt.h"

/* Creates a key when keys_dir has none (first start). STOA_OK when a
 * signing key exists afterwards. */
STOA_MUSTCHECK int stoa_keys_ensure(const char *dir, long token_ttl, char *err,
                                    size_t errlen);

/* Adds a key, makes it the signing key, retires the previous one, drops
 * keys retired longer than token_ttl + 60 s ago, rewrites jwks.json.
 * The new kid is written to kid_out (STOA_JWT_KID_MAX + 1 bytes). */
STOA_MUSTCHECK int stoa_keys_rotate(const char *dir, long token_ttl,
                                    char *kid_out, char *err, size_t errlen);

/* Loads the current signing key. NULL when there is none. Caller frees
 * with stoa_jwt_key_free(). */
stoa_jwt_key_t *stoa_keys_load_current(const char *dir);

#endif
