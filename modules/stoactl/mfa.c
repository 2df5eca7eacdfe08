/* mfa.c - `stoactl mfa reseal --old-key F --new-key F`: rotating the TOTP
 * sealing key (mfa_encryption_key).
 *
 * Every stored TOTP secret (auth.mfa_totp.secret_sealed) is sealed with
 * AES-256-GCM under that key, with the user id as associated data. A new
 * key alone would leave every secret unreadable, so rotation opens each
 * secret with the old key and seals it again under the new one, in one
 * transaction. A secret that already opens with the new key is left as it
 * is, so the command can run again after the pools have switched keys (to
 * catch enrolments sealed under the old key in between). */
#include <stdio.h>
#include <string.h>

#include "stoa/crypto.h"
#include "stoactl.h"

/* Room for the longest secret the auth pool opens (its TOTP_SECRET_MAX). */
#define SECRET_MAX 64

static int usage(void)
{
    fprintf(stderr,
            "usage: stoactl mfa reseal --old-key FILE --new-key FILE\n"
            "       (each file: 64 hex digits, as mfa_encryption_key_file)\n");
    return 2;
}

static int read_key(stoactl_t *ctl, const char *path,
                    uint8_t key[STOA_AEAD_KEY_LEN])
{
    size_t len;
    char *text = stoa_arena_read_file(ctl->arena, path, 4096, &len);
    if (!text) {
        fprintf(stderr, "stoactl mfa reseal: cannot read %s\n", path);
        return STOA_DECLINED;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    size_t n = 0;
    int rc = len == 2 * STOA_AEAD_KEY_LEN &&
                     stoa_hex_decode(text, len, key, &n) == STOA_OK &&
                     n == STOA_AEAD_KEY_LEN
                 ? STOA_OK
                 : STOA_DECLINED;
    stoa_wipe(text, len);
    if (rc != STOA_OK)
        fprintf(stderr, "stoactl mfa reseal: %s does not hold 64 hex digits\n",
                path);
    return rc;
}

static char *bytea_text(stoa_arena_t *arena, const uint8_t *data, size_t len)
{
    char *out = stoa_arena_alloc(arena, 3 + 2 * len);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(data, len, out + 2);
    return out;
}

static int reseal(stoactl_t *ctl, const uint8_t old_key[STOA_AEAD_KEY_LEN],
                  const uint8_t new_key[STOA_AEAD_KEY_LEN])
{
    stoa_db_t *db = ctl->db;
    stoa_db_result_t *res;
    if (!db || stoa_db_begin(db) != STOA_OK ||
        stoa_db_exec(db, ctl->arena, STOACTL_SQL(MFA_SECRETS), NULL, &res) !=
            STOA_OK) {
        fprintf(stderr, "stoactl mfa reseal: %s\n",
                db ? stoa_db_last_error(db) : "no database connection");
        if (db)
            stoa_db_rollback(db);
        return 1;
    }
    int resealed = 0, current = 0, unreadable = 0;
    for (int i = 0; i < stoa_db_rows(res); i++) {
        const char *user_id = stoa_db_value(res, i, MFA_COL_USER_ID);
        uint8_t sealed[SECRET_MAX + STOA_AEAD_OVERHEAD];
        uint8_t secret[SECRET_MAX + STOA_AEAD_OVERHEAD];
        size_t sealed_len, len;
        if (stoa_bytea_decode(stoa_db_value(res, i, MFA_COL_SEALED), sealed,
                              sizeof(sealed), &sealed_len) != STOA_OK) {
            unreadable++;
            continue;
        }
        if (stoa_aead_open(new_key, sealed, sealed_len, user_id,
                           strlen(user_id), secret, &len) == STOA_OK) {
            current++;
            stoa_wipe(secret, sizeof(secret));
            continue;
        }
        if (stoa_aead_open(old_key, sealed, sealed_len, user_id,
                           strlen(user_id), secret, &len) != STOA_OK) {
            unreadable++;
            stoa_wipe(secret, sizeof(secret));
            continue;
        }
        uint8_t box[SECRET_MAX + STOA_AEAD_OVERHEAD];
        int rc =
            stoa_aead_seal(new_key, secret, len, user_id, strlen(user_id), box);
        stoa_wipe(secret, sizeof(secret));
        if (rc != STOA_OK) {
            stoa_db_rollback(db);
            fprintf(stderr, "stoactl mfa reseal: sealing failed\n");
            return 1;
        }
        const char *params[] = {
            user_id, bytea_text(ctl->arena, box, len + STOA_AEAD_OVERHEAD)};
        if (stoa_db_exec(db, ctl->arena, STOACTL_SQL(MFA_RESEAL), params,
                         NULL) != STOA_OK) {
            fprintf(stderr, "stoactl mfa reseal: %s\n", stoa_db_last_error(db));
            stoa_db_rollback(db);
            return 1;
        }
        resealed++;
    }
    if (stoa_db_commit(db) != STOA_OK) {
        fprintf(stderr, "stoactl mfa reseal: %s\n", stoa_db_last_error(db));
        return 1;
    }
    printf("resealed %d TOTP secret(s); %d already under the new key; %d "
           "open with neither key\n",
           resealed, current, unreadable);
    if (unreadable) {
        fprintf(stderr,
                "stoactl mfa reseal: %d secret(s) open with neither "
                "key and were left unchanged\n",
                unreadable);
        return 1;
    }
    return 0;
}

int stoactl_mfa(stoactl_t *ctl, int argc, char **argv)
{
    const char *old_path = NULL, *new_path = NULL;
    if (argc < 1 || strcmp(argv[0], "reseal") != 0)
        return usage();
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--old-key") == 0)
            old_path = argv[++i];
        else if (strcmp(argv[i], "--new-key") == 0)
            new_path = argv[++i];
        else
            return usage();
    }
    if (!old_path || !new_path)
        return usage();
    uint8_t old_key[STOA_AEAD_KEY_LEN], new_key[STOA_AEAD_KEY_LEN];
    int rc = 1;
    if (read_key(ctl, old_path, old_key) == STOA_OK &&
        read_key(ctl, new_path, new_key) == STOA_OK) {
        if (memcmp(old_key, new_key, sizeof(old_key)) == 0) {
            fprintf(stderr, "stoactl mfa reseal: the two keys are the same\n");
            rc = 2;
        } else {
            rc = reseal(ctl, old_key, new_key);
        }
    }
    stoa_wipe(old_key, sizeof(old_key));
    stoa_wipe(new_key, sizeof(new_key));
    return rc;
}
