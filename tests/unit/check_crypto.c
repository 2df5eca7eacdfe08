/* check_crypto.c - encodings (hex, base64url, base64) against published
 * vectors and strictness rules, SHA-256/HMAC vectors, constant-time
 * compare, random tokens and UUIDs. */
#include <ctype.h>

#include "check_util.h"
#include "stoa/crypto.h"

static stoa_arena_t *arena;

static void setup(void)
{
    arena = stoa_arena_create(0);
}

static void teardown(void)
{
    stoa_arena_destroy(arena);
}

static char *hex_of(const uint8_t *data, size_t len)
{
    char *s = stoa_arena_alloc(arena, 2 * len + 1);
    ck_assert_uint_eq(stoa_hex_encode(data, len, s), 2 * len);
    return s;
}

/* ---- hex --------------------------------------------------------------- */

START_TEST(hex_known_and_round_trip)
{
    static const uint8_t beef[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01};
    ck_assert_str_eq(hex_of(beef, sizeof(beef)), "deadbeef0001");
    ck_assert_str_eq(hex_of(beef, 0), "");

    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char *text = hex_of(all, sizeof(all));
    ck_assert_uint_eq(strlen(text), 512);
    for (size_t i = 0; i < 512; i++)
        ck_assert_msg(strchr("0123456789abcdef", text[i]) != NULL,
                      "upper case or foreign digit at %zu", i);
    size_t n = 0;
    ck_assert_int_eq(stoa_hex_decode(text, 512, back, &n), STOA_OK);
    ck_assert_uint_eq(n, 256);
    ck_assert_int_eq(memcmp(all, back, 256), 0);

    /* Upper case is read too. */
    ck_assert_int_eq(stoa_hex_decode("DEADbeef", 8, back, &n), STOA_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(memcmp(back, beef, 4), 0);
    ck_assert_int_eq(stoa_hex_decode("", 0, back, &n), STOA_OK);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(hex_decode_refuses)
{
    static const char *const bad[] = {"abc", "a",  "zz", "0g", "g0",
                                      "0 ",  " 0", "-1", "0x", "\xc3\xa9"};
    uint8_t out[8];
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        size_t n = 12345;
        ck_assert_msg(stoa_hex_decode(bad[i], strlen(bad[i]), out, &n) ==
                          STOA_DECLINED,
                      "'%s' accepted", bad[i]);
        ck_assert_uint_eq(n, 12345);
    }
    /* A NUL inside the counted length is not a digit. */
    size_t n;
    ck_assert_int_eq(stoa_hex_decode("a\0", 2, out, &n), STOA_DECLINED);
}
END_TEST

/* ---- bytea text form ("\x" + hex), as sealed columns read back ------- */

START_TEST(bytea_decode_reads_the_text_form)
{
    uint8_t out[4];
    size_t n = 0;
    ck_assert_int_eq(stoa_bytea_decode("\\xdeadBEEF", out, sizeof(out), &n),
                     STOA_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(memcmp(out, "\xde\xad\xbe\xef", 4), 0);
    /* An empty bytea is empty, not an error. */
    ck_assert_int_eq(stoa_bytea_decode("\\x", out, 0, &n), STOA_OK);
    ck_assert_uint_eq(n, 0);
    /* Exactly cap bytes fit. */
    ck_assert_int_eq(stoa_bytea_decode("\\x00ff", out, 2, &n), STOA_OK);
    ck_assert_uint_eq(n, 2);
}
END_TEST

START_TEST(bytea_decode_refuses)
{
    static const char *const bad[] = {
        "",     "\\",    "x00",    "00ff",   "\\X00",    "/x00",
        "\\x0", "\\x0g", "\\x 00", "\\x00 ", "\\x\\x00", "\\\\x00ff",
    };
    uint8_t out[8];
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        size_t n = 12345;
        ck_assert_msg(stoa_bytea_decode(bad[i], out, sizeof(out), &n) ==
                          STOA_DECLINED,
                      "'%s' accepted", bad[i]);
        ck_assert_uint_eq(n, 12345);
    }
    size_t n = 12345;
    ck_assert_int_eq(stoa_bytea_decode(NULL, out, sizeof(out), &n),
                     STOA_DECLINED);
    ck_assert_uint_eq(n, 12345);
}
END_TEST

START_TEST(bytea_decode_checks_room_before_writing)
{
    /* One byte more than the room: refused with the buffer untouched (a
     * planted over-long box must not overrun a stack buffer; ASan builds
     * would catch a write past out). */
    uint8_t out[4] = {1, 2, 3, 4};
    size_t n = 0;
    ck_assert_int_eq(stoa_bytea_decode("\\xaabbccddee", out, 4, &n),
                     STOA_DECLINED);
    ck_assert_int_eq(memcmp(out, "\x01\x02\x03\x04", 4), 0);
    ck_assert_int_eq(stoa_bytea_decode("\\xaa", out, 0, &n), STOA_DECLINED);
    ck_assert_int_eq(out[0], 1);
}
END_TEST

/* ---- base64url and base64 (RFC 4648 section 10) ------------------------- */

static const struct {
    const char *raw;
    const char *url; /* base64url, no padding */
    const char *std; /* base64, padded */
} rfc4648[] = {
    {"", "", ""},
    {"f", "Zg", "Zg=="},
    {"fo", "Zm8", "Zm8="},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg", "Zm9vYg=="},
    {"fooba", "Zm9vYmE", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

/* One of the two alphabets' encoder and decoder. */
typedef struct {
    size_t (*encoded_len)(size_t len);
    size_t (*encode)(const void *raw, size_t len, char *out);
    int (*decode)(const char *text, size_t len, uint8_t *out, size_t *outlen);
} b64_codec_t;

/* raw encodes to exactly want, and want decodes back to raw. */
static void check_vector(const b64_codec_t *codec, const char *raw,
                         const char *want)
{
    size_t len = strlen(raw);
    ck_assert_uint_eq(codec->encoded_len(len), strlen(want));
    char *enc = stoa_arena_alloc(arena, codec->encoded_len(len) + 1);
    ck_assert_uint_eq(codec->encode(raw, len, enc), strlen(want));
    ck_assert_str_eq(enc, want);

    uint8_t dec[16];
    size_t n = 99;
    ck_assert_int_eq(codec->decode(want, strlen(want), dec, &n), STOA_OK);
    ck_assert_uint_eq(n, len);
    ck_assert_int_eq(memcmp(dec, raw, len), 0);
}

START_TEST(b64url_rfc4648_vectors)
{
    static const b64_codec_t url = {stoa_b64url_encoded_len, stoa_b64url_encode,
                                    stoa_b64url_decode};
    check_vector(&url, rfc4648[_i].raw, rfc4648[_i].url);
}
END_TEST

START_TEST(b64_rfc4648_vectors)
{
    static const b64_codec_t std = {stoa_b64_encoded_len, stoa_b64_encode,
                                    stoa_b64_decode};
    check_vector(&std, rfc4648[_i].raw, rfc4648[_i].std);
}
END_TEST

START_TEST(b64_alphabets_differ_in_62_and_63)
{
    /* 0xfb 0xff 0xbf is 62,63,62,63 in 6-bit groups. */
    static const uint8_t raw[] = {0xfb, 0xff, 0xbf};
    char url[8], std[8];
    stoa_b64url_encode(raw, 3, url);
    stoa_b64_encode(raw, 3, std);
    ck_assert_str_eq(url, "-_-_");
    ck_assert_str_eq(std, "+/+/");
    uint8_t back[4];
    size_t n;
    ck_assert_int_eq(stoa_b64url_decode("-_-_", 4, back, &n), STOA_OK);
    ck_assert_int_eq(memcmp(back, raw, 3), 0);
    ck_assert_int_eq(stoa_b64_decode("+/+/", 4, back, &n), STOA_OK);
    ck_assert_int_eq(memcmp(back, raw, 3), 0);
    /* Each decoder refuses the other's alphabet. */
    ck_assert_int_eq(stoa_b64url_decode("+/+/", 4, back, &n), STOA_DECLINED);
    ck_assert_int_eq(stoa_b64_decode("-_-_", 4, back, &n), STOA_DECLINED);
}
END_TEST

START_TEST(b64_round_trip_all_lengths)
{
    uint8_t raw[70], back[70];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(raw); len++) {
        char url[100], std[100];
        size_t n;
        size_t ul = stoa_b64url_encode(raw, len, url);
        ck_assert_uint_eq(ul, stoa_b64url_encoded_len(len));
        ck_assert_int_eq(stoa_b64url_decode(url, ul, back, &n), STOA_OK);
        ck_assert_uint_eq(n, len);
        ck_assert_int_eq(memcmp(raw, back, len), 0);
        size_t sl = stoa_b64_encode(raw, len, std);
        ck_assert_uint_eq(sl, stoa_b64_encoded_len(len));
        ck_assert_int_eq(stoa_b64_decode(std, sl, back, &n), STOA_OK);
        ck_assert_uint_eq(n, len);
        ck_assert_int_eq(memcmp(raw, back, len), 0);
    }
}
END_TEST

static const char *const b64url_refused[] = {
    "Zg==",         /* padding */
    "Zm8=",         /* padding */
    "Zg=",          /* padding */
    "Zm9v+w",       /* standard alphabet */
    "Zm9v/w",       /* standard alphabet */
    "Zm 9v",        /* space */
    "Zm9v\n",       /* newline */
    "\tZm9v",       /* tab */
    "Z",            /* length % 4 == 1 */
    "Zm9vY",        /* length % 4 == 1 */
    "Zh",           /* non-canonical: "Zg" with low bits set */
    "Zm9",          /* non-canonical: "Zm8" with low bits set */
    "Zm9vYh",       /* non-canonical tail after a full group */
    "Zm9v.A",       /* foreign character */
    "Zm9v\xc3\xa9", /* non-ASCII */
};

START_TEST(b64url_decode_refuses)
{
    const char *in = b64url_refused[_i];
    uint8_t out[16];
    size_t n = 777;
    ck_assert_msg(stoa_b64url_decode(in, strlen(in), out, &n) == STOA_DECLINED,
                  "'%s' accepted", in);
    ck_assert_uint_eq(n, 777);
}
END_TEST

START_TEST(b64url_decode_refuses_embedded_nul)
{
    uint8_t out[8];
    size_t n;
    ck_assert_int_eq(stoa_b64url_decode("Zg\0A", 4, out, &n), STOA_DECLINED);
}
END_TEST

static const char *const b64_refused[] = {
    "Zg",         /* missing padding */
    "Zm8",        /* missing padding */
    "Zg=",        /* short padding */
    "Z===",       /* too much padding */
    "Zm9v====",   /* padding after a full group */
    "Zg=A",       /* data after padding */
    "=Zg=",       /* padding first */
    "Zh==",       /* non-canonical */
    "Zm9=",       /* non-canonical */
    "-_-_",       /* url alphabet */
    "Zm9v Zg==",  /* space */
    "Zm9v\nZg==", /* line break (MIME style) */
};

START_TEST(b64_decode_refuses)
{
    const char *in = b64_refused[_i];
    uint8_t out[16];
    size_t n = 777;
    ck_assert_msg(stoa_b64_decode(in, strlen(in), out, &n) == STOA_DECLINED,
                  "'%s' accepted", in);
    ck_assert_uint_eq(n, 777);
}
END_TEST

/* ---- hashes ------------------------------------------------------------ */

static const struct {
    const char *msg;
    const char *digest;
} sha256_vectors[] = {
    /* FIPS 180-2 appendix B examples and the empty string. */
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
};

START_TEST(sha256_vectors_match)
{
    uint8_t d[STOA_SHA256_LEN];
    stoa_sha256(sha256_vectors[_i].msg, strlen(sha256_vectors[_i].msg), d);
    ck_assert_str_eq(hex_of(d, sizeof(d)), sha256_vectors[_i].digest);
}
END_TEST

START_TEST(sha256_million_a)
{
    char *m = test_repeat('a', 1000000);
    uint8_t d[STOA_SHA256_LEN];
    stoa_sha256(m, 1000000, d);
    ck_assert_str_eq(
        hex_of(d, sizeof(d)),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(m);
}
END_TEST

START_TEST(hmac_sha256_rfc4231)
{
    uint8_t mac[STOA_SHA256_LEN];

    /* Test case 1. */
    uint8_t key1[20];
    memset(key1, 0x0b, sizeof(key1));
    stoa_hmac_sha256(key1, sizeof(key1), "Hi There", 8, mac);
    ck_assert_str_eq(
        hex_of(mac, sizeof(mac)),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    /* Test case 2: a key shorter than the block. */
    const char *data2 = "what do ya want for nothing?";
    stoa_hmac_sha256("Jefe", 4, data2, strlen(data2), mac);
    ck_assert_str_eq(
        hex_of(mac, sizeof(mac)),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Test case 6: a key longer than the block is hashed first. */
    uint8_t key6[131];
    memset(key6, 0xaa, sizeof(key6));
    const char *data6 =
        "Test Using Larger Than Block-Size Key - Hash Key First";
    stoa_hmac_sha256(key6, sizeof(key6), data6, strlen(data6), mac);
    ck_assert_str_eq(
        hex_of(mac, sizeof(mac)),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}
END_TEST

START_TEST(ct_equal)
{
    static const uint8_t a[] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t b[8];
    memcpy(b, a, 8);
    ck_assert(stoa_ct_equal(a, b, 8));
    ck_assert(stoa_ct_equal(a, b, 0));
    b[0] ^= 1;
    ck_assert(!stoa_ct_equal(a, b, 8));
    b[0] ^= 1;
    b[7] ^= 0x80;
    ck_assert(!stoa_ct_equal(a, b, 8));
    ck_assert(stoa_ct_equal(a, b, 7)); /* only len bytes count */
}
END_TEST

START_TEST(wipe_zeroes)
{
    char secret[32];
    memset(secret, 'S', sizeof(secret));
    stoa_wipe(secret, sizeof(secret));
    for (size_t i = 0; i < sizeof(secret); i++)
        ck_assert_int_eq(secret[i], 0);
}
END_TEST

/* ---- randomness -------------------------------------------------------- */

static bool is_b64url_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

START_TEST(random_token_shape)
{
    static const size_t sizes[] = {0, 1, 2, 3, 16, 32, 48, 128};
    for (size_t i = 0; i < STOA_ARRAY_LEN(sizes); i++) {
        char *t = stoa_random_token(arena, sizes[i]);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(strlen(t), stoa_b64url_encoded_len(sizes[i]));
        for (const char *p = t; *p; p++)
            ck_assert_msg(is_b64url_char(*p), "'%c' in token", *p);
        uint8_t raw[130];
        size_t n;
        ck_assert_int_eq(stoa_b64url_decode(t, strlen(t), raw, &n), STOA_OK);
        ck_assert_uint_eq(n, sizes[i]);
    }
    ck_assert_uint_eq(strlen(stoa_random_token(arena, 32)), 43);
}
END_TEST

START_TEST(random_tokens_differ)
{
    char *a = stoa_random_token(arena, 32);
    char *b = stoa_random_token(arena, 32);
    ck_assert_str_ne(a, b);

    /* Every output character shows up over enough samples: the encoder is
     * fed real randomness, not a constant or a narrow range. */
    bool seen[256] = {false};
    for (int i = 0; i < 200; i++)
        for (const char *p = stoa_random_token(arena, 48); *p; p++)
            seen[(unsigned char)*p] = true;
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        distinct += seen[c];
    ck_assert_int_eq(distinct, 64);

    uint8_t r1[16], r2[16];
    stoa_random_bytes(r1, sizeof(r1));
    stoa_random_bytes(r2, sizeof(r2));
    ck_assert_int_ne(memcmp(r1, r2, sizeof(r1)), 0);
}
END_TEST

START_TEST(uuid_v4_format)
{
    char prev[STOA_UUID_STR_LEN + 1] = "";
    for (int round = 0; round < 200; round++) {
        char u[STOA_UUID_STR_LEN + 1];
        stoa_uuid_v4(u);
        ck_assert_uint_eq(strlen(u), STOA_UUID_STR_LEN);
        for (size_t i = 0; i < STOA_UUID_STR_LEN; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                ck_assert_int_eq(u[i], '-');
            else
                ck_assert_msg(strchr("0123456789abcdef", u[i]) != NULL,
                              "'%c' at %zu in %s", u[i], i, u);
        }
        ck_assert_msg(u[14] == '4', "version nibble in %s", u);
        ck_assert_msg(strchr("89ab", u[19]) != NULL, "variant nibble in %s", u);
        ck_assert(stoa_uuid_valid(u));
        ck_assert_str_ne(u, prev);
        memcpy(prev, u, sizeof(u));
    }
}
END_TEST

static const text_case_t uuid_cases[] = {
    {"123e4567-e89b-42d3-a456-426614174000", true},
    {"00000000-0000-0000-0000-000000000000", true},
    {"123E4567-E89B-42D3-A456-426614174000", true},
    {"", false},
    {"123e4567-e89b-42d3-a456-42661417400", false},   /* 35 */
    {"123e4567-e89b-42d3-a456-4266141740000", false}, /* 37 */
    {"123e4567e89b42d3a456426614174000", false},      /* no dashes */
    {"123e4567-e89b42d3-a456-426614174000-", false},  /* dash moved */
    {"123e4567-e89b-42d3-a456_426614174000", false},
    {"123g4567-e89b-42d3-a456-426614174000", false},
    {"{23e4567-e89b-42d3-a456-42661417400}", false},
    {" 23e4567-e89b-42d3-a456-426614174000", false},
    {"123e4567-e89b-42d3-a456-42661417400\n", false},
    {"123e4567-e89b-42d3-a456-4266141740\xc3\xa9", false},
};

START_TEST(uuid_valid_table)
{
    ck_assert_msg(stoa_uuid_valid(uuid_cases[_i].s) == uuid_cases[_i].valid,
                  "'%s' should be %s", uuid_cases[_i].s,
                  uuid_cases[_i].valid ? "valid" : "invalid");
}
END_TEST

START_TEST(uuid_valid_null)
{
    ck_assert(!stoa_uuid_valid(NULL));
}
END_TEST

/* Bytes in the text's order, either case; anything stoa_uuid_valid
 * refuses is refused. */
START_TEST(uuid_bytes_known_and_refused)
{
    static const uint8_t want[16] = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b,
                                     0x42, 0xd3, 0xa4, 0x56, 0x42, 0x66,
                                     0x14, 0x17, 0x40, 0x00};
    uint8_t got[16];
    ck_assert_int_eq(
        stoa_uuid_bytes("123e4567-e89b-42d3-a456-426614174000", got), STOA_OK);
    ck_assert_mem_eq(got, want, 16);
    ck_assert_int_eq(
        stoa_uuid_bytes("123E4567-E89B-42D3-A456-426614174000", got), STOA_OK);
    ck_assert_mem_eq(got, want, 16);
    for (size_t i = 0; i < sizeof(uuid_cases) / sizeof(uuid_cases[0]); i++)
        ck_assert_int_eq(stoa_uuid_bytes(uuid_cases[i].s, got) == STOA_OK,
                         uuid_cases[i].valid);
    ck_assert_int_eq(stoa_uuid_bytes(NULL, got), STOA_DECLINED);
}
END_TEST

static Suite *crypto_suite(void)
{
    Suite *s = suite_create("crypto");
    TEST_CASE_OF(s, "encodings", setup, teardown,
                 ONCE(hex_known_and_round_trip), ONCE(hex_decode_refuses),
                 ONCE(bytea_decode_reads_the_text_form),
                 ONCE(bytea_decode_refuses),
                 ONCE(bytea_decode_checks_room_before_writing),
                 LOOP(b64url_rfc4648_vectors, rfc4648),
                 LOOP(b64_rfc4648_vectors, rfc4648),
                 ONCE(b64_alphabets_differ_in_62_and_63),
                 ONCE(b64_round_trip_all_lengths),
                 LOOP(b64url_decode_refuses, b64url_refused),
                 ONCE(b64url_decode_refuses_embedded_nul),
                 LOOP(b64_decode_refuses, b64_refused));

    TEST_CASE_OF(s, "hashes", setup, teardown,
                 LOOP(sha256_vectors_match, sha256_vectors),
                 ONCE(sha256_million_a), ONCE(hmac_sha256_rfc4231),
                 ONCE(ct_equal), ONCE(wipe_zeroes));

    TEST_CASE_OF(s, "random", setup, teardown, ONCE(random_token_shape),
                 ONCE(random_tokens_differ), ONCE(uuid_v4_format),
                 LOOP(uuid_valid_table, uuid_cases), ONCE(uuid_valid_null),
                 ONCE(uuid_bytes_known_and_refused));
    return s;
}

TEST_MAIN(crypto_suite)
