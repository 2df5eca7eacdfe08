/* password.c - Argon2id via libargon2, encoded as PHC strings, and the
 * password policy every place that sets a password applies. */
#include "stoa/password.h"

#include <argon2.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zxcvbn.h>

#include "stoa/crypto.h"

#define SALT_LEN 16
#define HASH_LEN 32

/* One Argon2id at a time per process: a hash takes a core for tens of
 * milliseconds and ~19 MiB, so a host runs as many at once as it has pool
 * processes (about its cores), and a storm of logins queues here instead
 * of thrashing every core. The database work of those logins, around the
 * hash, still runs in parallel. */
static pthread_mutex_t hashing = PTHREAD_MUTEX_INITIALIZER;

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
    pthread_mutex_lock(&hashing);
    int rc = argon2id_hash_encoded(params->iterations, params->memory_kib,
                                   params->parallelism, password,
                                   strlen(password), salt, SALT_LEN, HASH_LEN,
                                   out, STOA_PASSWORD_HASH_MAX);
    pthread_mutex_unlock(&hashing);
    return rc == ARGON2_OK ? STOA_OK : STOA_ERROR;
}

int stoa_password_verify(const char *phc, const char *password)
{
    if (!phc || strncmp(phc, "$argon2id$", 10) != 0)
        return STOA_DECLINED;
    pthread_mutex_lock(&hashing);
    int rc = argon2id_verify(phc, password, strlen(password));
    pthread_mutex_unlock(&hashing);
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

/* --- policy ------------------------------------------------------------ */

/* The shipped common-password list, sorted and lower-cased at build time
 * (scripts/gen-wordlist.sh). */
extern const char *const stoa_common_passwords[];
extern const size_t stoa_common_passwords_len;

/* log2(10^10): zxcvbn answers in bits, the rule is in guesses. */
#define MIN_ENTROPY_BITS 33.219280948873624
/* zxcvbn's cost grows fast with length (about 0.1 s for 1 KiB of one
 * repeated word). A prefix this long that is strong enough makes the
 * whole password strong enough, so longer ones are judged by it. */
#define ESTIMATE_MAX_BYTES 256
/* Words of the local part and the name: more than any real name has. */
#define USER_WORDS_MAX 16
#define USER_TEXT_MAX 512

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static void lower_copy(char *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[len] = '\0';
}

static int word_cmp(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

typedef struct {
    char text[USER_TEXT_MAX];
    size_t used;
    const char *words[USER_WORDS_MAX + 1]; /* NULL-terminated for zxcvbn */
    size_t n;
} user_words_t;

static void add_word(user_words_t *uw, const char *s, size_t len)
{
    /* Two-letter words match half of every dictionary: not worth it. */
    if (len < 3 || uw->n >= USER_WORDS_MAX ||
        uw->used + len + 1 > sizeof(uw->text))
        return;
    char *copy = uw->text + uw->used;
    lower_copy(copy, s, len);
    for (size_t i = 0; i < uw->n; i++)
        if (strcmp(uw->words[i], copy) == 0)
            return;
    uw->used += len + 1;
    uw->words[uw->n++] = copy;
    uw->words[uw->n] = NULL;
}

/* Adds text whole (when whole is set) and each of its runs of letters and
 * digits ("mary.o-neil" gives mary.o-neil, mary, neil); the bytes of
 * multibyte UTF-8 characters count as letters. */
static void add_words(user_words_t *uw, const char *text, size_t len,
                      bool whole)
{
    if (whole)
        add_word(uw, text, len);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)text[i] : 0;
        if (i < len && (isalnum(c) || c >= 0x80))
            continue;
        add_word(uw, text + start, i - start);
        start = i + 1;
    }
}

/* The local part of email when it is long enough to count, lower-cased
 * into out; false when there is none. */
static bool local_part(const char *email, char out[USER_TEXT_MAX])
{
    const char *at = email ? strchr(email, '@') : NULL;
    size_t len = at ? (size_t)(at - email) : 0;
    /* Very short local parts ("jo@") would refuse half the dictionary:
     * only names of 3+ characters count. */
    if (len < 3 || len >= USER_TEXT_MAX)
        return false;
    lower_copy(out, email, len);
    return true;
}

const char *stoa_password_refusal(const char *password, const char *email,
                                  const char *name)
{
    if (utf8_chars(password) < STOA_PASSWORD_MIN_CHARS)
        return "too_short";
    size_t len = strlen(password);
    if (len > STOA_PASSWORD_MAX_BYTES)
        return "too_long";
    const char *reason = NULL;
    char lower[STOA_PASSWORD_MAX_BYTES + 1];
    char local[USER_TEXT_MAX];
    char prefix[ESTIMATE_MAX_BYTES + 1];
    bool has_local = local_part(email, local);
    lower_copy(lower, password, len);
    if (bsearch(lower, stoa_common_passwords, stoa_common_passwords_len,
                sizeof(stoa_common_passwords[0]), word_cmp)) {
        reason = "too_common";
        goto out;
    }
    if (has_local && strstr(lower, local)) {
        reason = "contains_email";
        goto out;
    }
    /* The words an attacker who knows the account tries first. */
    user_words_t uw;
    uw.used = 0;
    uw.n = 0;
    uw.words[0] = NULL;
    if (has_local)
        add_words(&uw, local, strlen(local), true);
    if (name)
        add_words(&uw, name, strnlen(name, USER_TEXT_MAX / 2), false);
    size_t plen = len;
    if (plen > ESTIMATE_MAX_BYTES) {
        plen = ESTIMATE_MAX_BYTES;
        while (plen > 0 && ((unsigned char)password[plen] & 0xc0) == 0x80)
            plen--; /* cut on a character boundary */
    }
    memcpy(prefix, password, plen);
    prefix[plen] = '\0';
    if (ZxcvbnMatch(prefix, uw.words, NULL) < MIN_ENTROPY_BITS)
        reason = "too_weak";
out:
    stoa_wipe(lower, sizeof(lower));
    stoa_wipe(prefix, sizeof(prefix));
    return reason;
}
