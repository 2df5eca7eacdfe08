/* check_idempotency.c - what Idempotency-Key replay rests on, without
 * Postgres: key validation, the request hash a repeat must match, and the
 * sealing of stored answers (a sealed answer opens only with its own seal
 * key, caller, Idempotency-Key, status and request hash; a damaged one
 * does not open). Claim and finish against a Postgres that is down answer
 * STOA_AGAIN (the dispatcher's 503). */
#include "check_util.h"
#include "stoa/crypto.h"
#include "stoa/idempotency.h"

#define SEAL_KEY                                                               \
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define OTHER_SEAL_KEY                                                         \
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static stoa_arena_t *arena;

static void setup(void)
{
    arena = stoa_arena_create(0);
}

static void teardown(void)
{
    stoa_arena_destroy(arena);
}

/* ---- keys --------------------------------------------------------------- */

START_TEST(key_sane_bounds_and_alphabet)
{
    ck_assert(stoa_idempotency_key_sane("a"));
    ck_assert(stoa_idempotency_key_sane("4f1c-9a2e_b7:x/y=z"));
    ck_assert(stoa_idempotency_key_sane("!~")); /* both ends of printable */
    char *k = test_repeat('k', 255);
    ck_assert(stoa_idempotency_key_sane(k));
    free(k);
    k = test_repeat('k', 256);
    ck_assert(!stoa_idempotency_key_sane(k));
    free(k);
    static const char *const bad[] = {"",      " ",      "a b",  "a\tb",
                                      "a\nb",  "\x7f",   "\x1f", "\xc3\xa9",
                                      "key\r", "\x80key"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++)
        ck_assert_msg(!stoa_idempotency_key_sane(bad[i]), "'%s' accepted",
                      bad[i]);
}
END_TEST

/* ---- the request hash --------------------------------------------------- */

START_TEST(hash_known_answer_and_form)
{
    static const char body[] = "{\"url\":\"https://h.example/x\"}";
    const char *h = stoa_idempotency_hash(arena, "POST", "/v1/admin/webhooks",
                                          body, sizeof(body) - 1);
    /* SHA-256 of "POST\n/v1/admin/webhooks\n" + body, as bytea text. */
    ck_assert_str_eq(h, "\\x724b4248a2396208eb622d093a1276ae1f084eaf3f30d8fd03"
                        "33fc932a1f3c82");
    uint8_t raw[STOA_SHA256_LEN];
    size_t n;
    ck_assert_int_eq(stoa_bytea_decode(h, raw, sizeof(raw), &n), STOA_OK);
    ck_assert_uint_eq(n, STOA_SHA256_LEN);
}
END_TEST

START_TEST(hash_tells_requests_apart)
{
    const char *base = stoa_idempotency_hash(arena, "POST", "/v1/x", "{}", 2);
    ck_assert_str_eq(stoa_idempotency_hash(arena, "POST", "/v1/x", "{}", 2),
                     base);
    ck_assert_str_ne(stoa_idempotency_hash(arena, "PUT", "/v1/x", "{}", 2),
                     base);
    ck_assert_str_ne(stoa_idempotency_hash(arena, "POST", "/v1/y", "{}", 2),
                     base);
    ck_assert_str_ne(stoa_idempotency_hash(arena, "POST", "/v1/x", "{ }", 3),
                     base);
    /* The body counts by its length, NUL bytes included. */
    const char *nul1 = stoa_idempotency_hash(arena, "POST", "/v1/x", "a\0b", 3);
    const char *nul2 = stoa_idempotency_hash(arena, "POST", "/v1/x", "a\0c", 3);
    ck_assert_str_ne(nul1, nul2);
    ck_assert_str_ne(stoa_idempotency_hash(arena, "POST", "/v1/x", "a", 1),
                     nul1);
    /* An empty body hashes too. */
    ck_assert_str_ne(stoa_idempotency_hash(arena, "POST", "/v1/x", "", 0),
                     base);
}
END_TEST

/* ---- sealing ------------------------------------------------------------ */

static stoa_idem_call_t call_of(const char *seal_key)
{
    stoa_idem_call_t c = {
        .key = "create-key-1",
        .scope = "session:6f1c0e7a-3b7e-4d0a-9a35-0b0e7c1d2a11:"
                 "0a8f5c2e-1111-4222-8333-944455556666",
        .hash =
            stoa_idempotency_hash(arena, "POST", "/v1/auth/api-keys", "{}", 2),
        .seal_key = seal_key,
    };
    return c;
}

static const char answer[] = "{\"id\":\"k1\",\"key\":\"stoa_sk_secret\"}";

/* The test answer sealed for call c. */
static const char *sealed_answer(const stoa_idem_call_t *c)
{
    const char *sealed =
        stoa_idempotency_seal(arena, c, "201", answer, sizeof(answer) - 1);
    ck_assert_ptr_nonnull(sealed);
    return sealed;
}

START_TEST(seal_round_trip_and_no_clear_text)
{
    stoa_idem_call_t c = call_of(SEAL_KEY);
    const char *sealed = sealed_answer(&c);
    ck_assert(sealed[0] == '\\' && sealed[1] == 'x');
    ck_assert_uint_eq(strlen(sealed),
                      2 + 2 * (sizeof(answer) - 1 + STOA_AEAD_OVERHEAD));
    /* The secret is not in the stored value, nor its hex. */
    ck_assert_ptr_null(strstr(sealed, "stoa_sk_secret"));
    char hex[2 * sizeof(answer) + 1];
    stoa_hex_encode(answer, sizeof(answer) - 1, hex);
    ck_assert_ptr_null(strstr(sealed, hex));
    size_t len = 0;
    char *plain = stoa_idempotency_open(arena, &c, "201", sealed, &len);
    ck_assert_ptr_nonnull(plain);
    ck_assert_uint_eq(len, sizeof(answer) - 1);
    ck_assert_str_eq(plain, answer);
    /* Two seals of one answer differ (a fresh nonce each). */
    ck_assert_str_ne(
        stoa_idempotency_seal(arena, &c, "201", answer, sizeof(answer) - 1),
        sealed);
    /* An empty answer seals and opens too. */
    const char *empty = stoa_idempotency_seal(arena, &c, "204", "", 0);
    ck_assert_ptr_nonnull(empty);
    plain = stoa_idempotency_open(arena, &c, "204", empty, &len);
    ck_assert_ptr_nonnull(plain);
    ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(open_refuses_another_binding)
{
    stoa_idem_call_t c = call_of(SEAL_KEY);
    const char *sealed = sealed_answer(&c);
    size_t len;

    stoa_idem_call_t other = c;
    other.scope = "session:6f1c0e7a-3b7e-4d0a-9a35-0b0e7c1d2a11:"
                  "0a8f5c2e-1111-4222-8333-944455556667";
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &other, "201", sealed, &len));
    other = c;
    other.scope = "user:6f1c0e7a-3b7e-4d0a-9a35-0b0e7c1d2a11";
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &other, "201", sealed, &len));
    other = c;
    other.key = "create-key-2";
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &other, "201", sealed, &len));
    other = c;
    other.seal_key = OTHER_SEAL_KEY;
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &other, "201", sealed, &len));
    other = c;
    other.hash =
        stoa_idempotency_hash(arena, "POST", "/v1/auth/api-keys", "{ }", 3);
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &other, "201", sealed, &len));
    /* The status is bound as well: a row's status changed does not open. */
    ck_assert_ptr_null(stoa_idempotency_open(arena, &c, "200", sealed, &len));
    /* Scope and key are not simply concatenated: moving the boundary
     * between them gives another record key. */
    other = c;
    other.scope = "ip:1";
    other.key = "0";
    stoa_idem_call_t moved = c;
    moved.scope = "ip:";
    moved.key = "10";
    const char *s2 = stoa_idempotency_seal(arena, &other, "201", "{}", 2);
    ck_assert_ptr_nonnull(s2);
    ck_assert_ptr_nonnull(
        stoa_idempotency_open(arena, &other, "201", s2, &len));
    ck_assert_ptr_null(stoa_idempotency_open(arena, &moved, "201", s2, &len));
    /* And the right binding still opens. */
    ck_assert_ptr_nonnull(
        stoa_idempotency_open(arena, &c, "201", sealed, &len));
}
END_TEST

START_TEST(open_refuses_damaged_values)
{
    stoa_idem_call_t c = call_of(SEAL_KEY);
    const char *sealed = sealed_answer(&c);
    size_t n = strlen(sealed), len;
    /* One bit flipped anywhere (nonce, ciphertext, tag) fails the tag. */
    for (size_t i = 2; i < n; i += 7) {
        char *t = stoa_arena_strdup(arena, sealed);
        t[i] = t[i] == '0' ? '1' : '0';
        ck_assert_msg(!stoa_idempotency_open(arena, &c, "201", t, &len),
                      "opened with digit %zu changed", i);
    }
    /* Cut short, cut to nothing, no "\x", not hex. */
    ck_assert_ptr_null(stoa_idempotency_open(
        arena, &c, "201", stoa_arena_strndup(arena, sealed, n - 2), &len));
    ck_assert_ptr_null(stoa_idempotency_open(arena, &c, "201", "\\x", &len));
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &c, "201", sealed + 2, &len));
    char *bad = stoa_arena_strdup(arena, sealed);
    bad[5] = 'g';
    ck_assert_ptr_null(stoa_idempotency_open(arena, &c, "201", bad, &len));
    /* None kept (SQL NULL). */
    ck_assert_ptr_null(stoa_idempotency_open(arena, &c, "201", NULL, &len));
}
END_TEST

START_TEST(no_seal_key_keeps_nothing)
{
    stoa_idem_call_t none = call_of("");
    ck_assert_ptr_null(
        stoa_idempotency_seal(arena, &none, "201", answer, sizeof(answer) - 1));
    stoa_idem_call_t null_key = call_of(NULL);
    ck_assert_ptr_null(stoa_idempotency_seal(arena, &null_key, "201", answer,
                                             sizeof(answer) - 1));
    /* A seal key of the wrong form is no key (the config loader refuses
     * it; this is the last line). */
    stoa_idem_call_t shorter = call_of("0011");
    ck_assert_ptr_null(stoa_idempotency_seal(arena, &shorter, "201", answer,
                                             sizeof(answer) - 1));
    stoa_idem_call_t not_hex = call_of(
        "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    ck_assert_ptr_null(stoa_idempotency_seal(arena, &not_hex, "201", answer,
                                             sizeof(answer) - 1));
    /* A stored answer does not open once the seal key is gone. */
    stoa_idem_call_t c = call_of(SEAL_KEY);
    const char *sealed =
        stoa_idempotency_seal(arena, &c, "201", answer, sizeof(answer) - 1);
    size_t len;
    ck_assert_ptr_null(
        stoa_idempotency_open(arena, &none, "201", sealed, &len));
}
END_TEST

/* ---- Postgres down ------------------------------------------------------ */

START_TEST(claim_and_finish_without_postgres)
{
    /* A socket directory that does not exist: the connect fails at once. */
    const stoa_db_table_t table = {stoa_idempotency_statements,
                                   stoa_idempotency_statements_len};
    stoa_db_t *db = stoa_db_new("host=/nonexistent/stoa-check port=1 "
                                "dbname=x user=x",
                                &table, 1, 1000, 1);
    ck_assert_ptr_nonnull(db);
    stoa_idem_call_t c = call_of(SEAL_KEY);
    stoa_idem_outcome_t out;
    ck_assert_int_eq(stoa_idempotency_claim(db, arena, &c, &out), STOA_AGAIN);
    ck_assert_int_eq(stoa_idempotency_finish(db, arena, &c, 201, "{}", 2),
                     STOA_AGAIN);
    ck_assert_int_eq(stoa_idempotency_finish(db, arena, &c, 500, "{}", 2),
                     STOA_AGAIN);
    stoa_db_free(db);
}
END_TEST

TEST_MAIN_ONE_CASE("idempotency", setup, teardown, key_sane_bounds_and_alphabet,
                   hash_known_answer_and_form, hash_tells_requests_apart,
                   seal_round_trip_and_no_clear_text,
                   open_refuses_another_binding, open_refuses_damaged_values,
                   no_seal_key_keeps_nothing, claim_and_finish_without_postgres)
