/* password.c - Argon2id via libargon2, encoded as PHC strings, and the
 * password policy every place that sets a password applies. */
#include "stoa/password.h"

#include <argon2.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zxcvbn.h>

#include "stoa/crypto.h"

#define SALT_LEN 16
#define HASH_LEN 32
/* Bounds a stored PHC string may name (ours are m=19456,t=2,p=1): enough
 * for any sane policy, and a planted hash cannot ask for gigabytes. */
#define PHC_MAX_MEMORY_KIB (1024u * 1024u)
#define PHC_MAX_ITERATIONS 64u
#define PHC_MAX_PARALLELISM 16u
#define PHC_MAX_FIELD 64 /* bytes of salt or hash */
#define HUGE_PAGE (2u * 1024u * 1024u)

/* One Argon2id at a time per process: a hash takes a core for tens of
 * milliseconds and ~19 MiB, so a host runs as many at once as it has pool
 * processes (about its cores), and a storm of logins queues here instead
 * of thrashing every core. The database work of those logins, around the
 * hash, still runs in parallel. */
static pthread_mutex_t hashing = PTHREAD_MUTEX_INITIALIZER;

/* Argon2's memory is mapped for a hash and given back to the system once
 * hashing stops, so an idle pool process does not hold it (SPEC §9: pool
 * RSS). Mapped as transparent huge pages where the kernel allows them
 * (madvise mode): 19 MiB is ten 2 MiB faults instead of ~4,900 4 KiB
 * ones, which cost a third of a login's CPU (page faults, zeroing and
 * memory-cgroup accounting).
 * While hashes follow each other (a login storm) the last one's mapping is
 * kept for the next: fresh pages cost the kernel's zeroing of all 19 MiB,
 * about 6% of a login. Argon2 writes every block before it reads one, so
 * what a kept mapping holds is never read. stoa_password_release_idle
 * gives it back once no hash has run for KEEP_IDLE_US. Guarded by
 * `hashing` (libargon2 maps and unmaps inside argon2_ctx). */
#define KEEP_IDLE_US 100000u
static struct {
    uint8_t *memory;
    size_t len;
    uint64_t since_us;
} kept;

static void kept_drop(void)
{
    if (kept.memory)
        munmap(kept.memory, kept.len);
    kept.memory = NULL;
}

static int argon2_map(uint8_t **memory, size_t bytes)
{
    size_t len = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (kept.memory && kept.len == len) {
        *memory = kept.memory;
        kept.memory = NULL;
        return ARGON2_OK;
    }
    kept_drop(); /* another size: a stored hash with other parameters */
    uint8_t *raw = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return ARGON2_MEMORY_ALLOCATION_ERROR;
    /* Keep the 2 MiB-aligned part only, so every page can be a huge one. */
    uintptr_t start =
        ((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uint8_t *aligned = (uint8_t *)start;
    size_t head = (size_t)(aligned - raw);
    if (head)
        munmap(raw, head);
    if (HUGE_PAGE - head)
        munmap(aligned + len, HUGE_PAGE - head);
    (void)madvise(aligned, len, MADV_HUGEPAGE); /* a hint: 4 KiB pages else */
    *memory = aligned;
    return ARGON2_OK;
}

static void argon2_unmap(uint8_t *memory, size_t bytes)
{
    size_t len = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    kept_drop();
    kept.memory = memory;
    kept.len = len;
    kept.since_us = stoa_now_us();
}

bool stoa_password_release_idle(void)
{
    /* A hash in progress: its memory is in use, and this must not wait. */
    if (pthread_mutex_trylock(&hashing) != 0)
        return true;
    if (kept.memory && stoa_now_us() - kept.since_us >= KEEP_IDLE_US)
        kept_drop();
    bool holding = kept.memory != NULL;
    pthread_mutex_unlock(&hashing);
    return holding;
}

/* Raw Argon2id (version 0x13) of password into out[out_len]. */
static int argon2id_raw(const stoa_password_params_t *params,
                        const char *password, const uint8_t *salt,
                        size_t salt_len, uint8_t *out, size_t out_len)
{
    size_t pw_len = strlen(password);
    argon2_context c = {
        .out = out,
        .outlen = (uint32_t)out_len,
        /* libargon2 reads the password and never writes it (the clear flag
         * is not set). */
        .pwd = (uint8_t *)(uintptr_t)password,
        .pwdlen = (uint32_t)pw_len,
        .salt = (uint8_t *)(uintptr_t)salt,
        .saltlen = (uint32_t)salt_len,
        .t_cost = params->iterations,
        .m_cost = params->memory_kib,
        .lanes = params->parallelism,
        .threads = params->parallelism,
        .version = ARGON2_VERSION_13,
        .allocate_cbk = argon2_map,
        .free_cbk = argon2_unmap,
        .flags = ARGON2_DEFAULT_FLAGS,
    };
    pthread_mutex_lock(&hashing);
    int rc = argon2_ctx(&c, Argon2_id);
    pthread_mutex_unlock(&hashing);
    return rc;
}

/* The PHC text form libargon2 writes: standard base64 without padding. */
static size_t b64_unpadded(const uint8_t *in, size_t len, char *out)
{
    size_t n = stoa_b64_encode(in, len, out);
    while (n && out[n - 1] == '=')
        out[--n] = '\0';
    return n;
}

static bool b64_unpadded_decode(const char *in, size_t len, uint8_t *out,
                                size_t cap, size_t *out_len)
{
    char padded[PHC_MAX_FIELD * 2];
    if (len == 0 || len + 3 >= sizeof(padded) || len / 4 * 3 > cap)
        return false;
    memcpy(padded, in, len);
    while (len % 4)
        padded[len++] = '=';
    return stoa_b64_decode(padded, len, out, out_len) == STOA_OK &&
           *out_len <= cap;
}

int stoa_password_hash(const stoa_password_params_t *params,
                       const char *password, char out[STOA_PASSWORD_HASH_MAX])
{
    uint8_t salt[SALT_LEN], hash[HASH_LEN];
    stoa_random_bytes(salt, sizeof(salt));
    if (argon2id_raw(params, password, salt, sizeof(salt), hash,
                     sizeof(hash)) != ARGON2_OK)
        return STOA_ERROR;
    char salt_text[SALT_LEN * 2], hash_text[HASH_LEN * 2];
    b64_unpadded(salt, sizeof(salt), salt_text);
    b64_unpadded(hash, sizeof(hash), hash_text);
    int n =
        snprintf(out, STOA_PASSWORD_HASH_MAX,
                 "$argon2id$v=19$m=%u,t=%u,p=%u$%s$%s", params->memory_kib,
                 params->iterations, params->parallelism, salt_text, hash_text);
    stoa_wipe(hash, sizeof(hash));
    return n > 0 && n < STOA_PASSWORD_HASH_MAX ? STOA_OK : STOA_ERROR;
}

/* A decimal field of the PHC parameters: digits only, no leading zero,
 * within [1, max]; *p moves past it. */
static bool phc_number(const char **p, const char *name, uint32_t max,
                       uint32_t *out)
{
    size_t nlen = strlen(name);
    if (strncmp(*p, name, nlen) != 0)
        return false;
    const char *s = *p + nlen;
    if (*s < '1' || *s > '9')
        return false;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return false;
        s++;
    }
    *out = (uint32_t)v;
    *p = s;
    return true;
}

int stoa_password_verify(const char *phc, const char *password)
{
    /* $argon2id$v=19$m=M,t=T,p=P$<salt>$<hash> */
    static const char prefix[] = "$argon2id$v=19$";
    if (!phc || strncmp(phc, prefix, sizeof(prefix) - 1) != 0)
        return STOA_DECLINED;
    const char *p = phc + sizeof(prefix) - 1;
    stoa_password_params_t params;
    if (!phc_number(&p, "m=", PHC_MAX_MEMORY_KIB, &params.memory_kib) ||
        !phc_number(&p, ",t=", PHC_MAX_ITERATIONS, &params.iterations) ||
        !phc_number(&p, ",p=", PHC_MAX_PARALLELISM, &params.parallelism) ||
        *p++ != '$')
        return STOA_DECLINED;
    /* libargon2's own floor: 8 KiB per lane. */
    if (params.memory_kib < 8 * params.parallelism)
        return STOA_DECLINED;
    const char *dollar = strchr(p, '$');
    if (!dollar)
        return STOA_DECLINED;
    uint8_t salt[PHC_MAX_FIELD], want[PHC_MAX_FIELD], got[PHC_MAX_FIELD];
    size_t salt_len, want_len;
    if (!b64_unpadded_decode(p, (size_t)(dollar - p), salt, sizeof(salt),
                             &salt_len) ||
        !b64_unpadded_decode(dollar + 1, strlen(dollar + 1), want, sizeof(want),
                             &want_len) ||
        salt_len < ARGON2_MIN_SALT_LENGTH || want_len < ARGON2_MIN_OUTLEN)
        return STOA_DECLINED;
    if (argon2id_raw(&params, password, salt, salt_len, got, want_len) !=
        ARGON2_OK)
        return STOA_DECLINED;
    bool same = stoa_ct_equal(got, want, want_len);
    stoa_wipe(got, sizeof(got));
    return same ? STOA_OK : STOA_DECLINED;
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
