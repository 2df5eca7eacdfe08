/* check_json.c - JSON in (strict parsing, depth cap, typed accessors) and
 * out (the writer, its escaping, raw splicing and misuse detection). */
#include <malloc.h>
#include <time.h>

#include "check_util.h"
#include "stoa/json.h"

static stoa_arena_t *arena;
static stoa_buf_t out;
static stoa_jw_t *jw;
static char err[256];

static void setup(void)
{
    arena = stoa_arena_create(0);
    stoa_buf_init(&out);
    jw = stoa_jw_new(&out);
    err[0] = '\0';
}

static void teardown(void)
{
    stoa_jw_free(jw);
    stoa_buf_free(&out);
    stoa_arena_destroy(arena);
}

/* Parses a NUL-terminated text with the API's default depth. */
static int parse_rc(const char *text, const stoa_json_t **doc)
{
    stoa_json_t *v = NULL;
    err[0] = '\0';
    int rc = stoa_json_parse(arena, text, strlen(text), STOA_JSON_MAX_DEPTH, &v,
                             err, sizeof(err));
    if (doc)
        *doc = v;
    return rc;
}

static const stoa_json_t *parse_ok(const char *text)
{
    const stoa_json_t *doc;
    int rc = parse_rc(text, &doc);
    ck_assert_msg(rc == STOA_OK, "'%s' refused: %s", text, err);
    ck_assert_ptr_nonnull(doc);
    return doc;
}

/* n nested arrays ("[[...]]") or objects ({"k":{"k":...0...}}),
 * arena-owned. */
static char *nested(size_t n, bool objects)
{
    stoa_buf_t b;
    stoa_buf_init(&b);
    for (size_t i = 0; i < n; i++)
        stoa_buf_puts(&b, objects ? "{\"k\":" : "[");
    stoa_buf_puts(&b, objects ? "0" : "");
    for (size_t i = 0; i < n; i++)
        stoa_buf_puts(&b, objects ? "}" : "]");
    char *s = stoa_arena_strdup(arena, b.data);
    stoa_buf_free(&b);
    return s;
}

/* ---- parsing ----------------------------------------------------------- */

enum kind { K_OBJECT, K_ARRAY, K_STRING, K_INTEGER, K_NUMBER, K_BOOL, K_NULL };

static const struct {
    const char *text;
    enum kind kind;
} valid_docs[] = {
    {"{}", K_OBJECT},
    {"[]", K_ARRAY},
    {" \t\r\n{ \"a\" : [ {} , [ ] ] }\n ", K_OBJECT},
    {"{\"a\":1,\"b\":\"x\",\"c\":[true,false,null]}", K_OBJECT},
    {"[1,-2.5,3e10,\"x\",true,false,null,{}]", K_ARRAY},
    {"\"plain\"", K_STRING},
    {"\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"",
     K_STRING},
    {"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", K_STRING},
    {"42", K_INTEGER},
    {"-0", K_INTEGER},
    {"1.5", K_NUMBER},
    {"true", K_BOOL},
    {"null", K_NULL},
};

START_TEST(parse_valid_documents)
{
    const stoa_json_t *v = parse_ok(valid_docs[_i].text);
    enum kind k = valid_docs[_i].kind;
    ck_assert(stoa_json_is_object(v) == (k == K_OBJECT));
    ck_assert(stoa_json_is_array(v) == (k == K_ARRAY));
    ck_assert(stoa_json_is_string(v) == (k == K_STRING));
    ck_assert(stoa_json_is_integer(v) == (k == K_INTEGER));
    ck_assert(stoa_json_is_number(v) == (k == K_INTEGER || k == K_NUMBER));
    ck_assert(stoa_json_is_bool(v) == (k == K_BOOL));
    ck_assert(stoa_json_is_null(v) == (k == K_NULL));
}
END_TEST

START_TEST(parse_decodes_escapes)
{
    const stoa_json_t *v =
        parse_ok("\"q\\\"b\\\\s\\/n\\n\\u00e9\\ud83d\\ude00\"");
    ck_assert_str_eq(stoa_json_string(v),
                     "q\"b\\s/n\n\xc3\xa9\xf0\x9f\x98\x80");
}
END_TEST

static const char *const doc_text =
    "{\"s\":\"str\",\"i\":-5,\"f\":1.5,\"t\":true,\"z\":false,\"n\":null,"
    "\"a\":[10,\"x\"],\"o\":{\"k\":\"v\"}}";

START_TEST(accessors_read_values)
{
    const stoa_json_t *doc = parse_ok(doc_text);
    ck_assert_uint_eq(stoa_json_len(doc), 8);
    ck_assert_str_eq(stoa_json_key_at(doc, 0), "s");
    ck_assert_str_eq(stoa_json_key_at(doc, 7), "o");
    ck_assert_ptr_null(stoa_json_key_at(doc, 8));
    ck_assert_ptr_eq(stoa_json_at(doc, 0), stoa_json_get(doc, "s"));
    ck_assert_ptr_null(stoa_json_at(doc, 8));

    ck_assert_str_eq(stoa_json_string(stoa_json_get(doc, "s")), "str");
    int64_t i = 0;
    ck_assert(stoa_json_integer(stoa_json_get(doc, "i"), &i));
    ck_assert_int_eq(i, -5);
    bool b = false;
    ck_assert(stoa_json_bool(stoa_json_get(doc, "t"), &b));
    ck_assert(b);
    ck_assert(stoa_json_bool(stoa_json_get(doc, "z"), &b));
    ck_assert(!b);
    ck_assert(stoa_json_is_null(stoa_json_get(doc, "n")));
    ck_assert(stoa_json_is_number(stoa_json_get(doc, "f")));

    const stoa_json_t *a = stoa_json_get(doc, "a");
    ck_assert_uint_eq(stoa_json_len(a), 2);
    ck_assert(stoa_json_integer(stoa_json_at(a, 0), &i));
    ck_assert_int_eq(i, 10);
    ck_assert_str_eq(stoa_json_string(stoa_json_at(a, 1)), "x");
    ck_assert_ptr_null(stoa_json_at(a, 2));

    const stoa_json_t *o = stoa_json_get(doc, "o");
    ck_assert_str_eq(stoa_json_string(stoa_json_get(o, "k")), "v");
    ck_assert_ptr_null(stoa_json_get(doc, "missing"));
    ck_assert_ptr_null(stoa_json_get(doc, "S")); /* keys are exact */
}
END_TEST

START_TEST(accessors_refuse_type_mismatch)
{
    const stoa_json_t *doc = parse_ok(doc_text);
    const stoa_json_t *s = stoa_json_get(doc, "s");
    const stoa_json_t *i = stoa_json_get(doc, "i");
    const stoa_json_t *f = stoa_json_get(doc, "f");
    const stoa_json_t *n = stoa_json_get(doc, "n");
    const stoa_json_t *a = stoa_json_get(doc, "a");

    int64_t iv = 1234;
    bool bv = true;
    ck_assert_ptr_null(stoa_json_string(i));
    ck_assert_ptr_null(stoa_json_string(n));
    ck_assert_ptr_null(stoa_json_string(a));
    ck_assert(!stoa_json_integer(s, &iv));
    ck_assert(!stoa_json_integer(f, &iv)); /* 1.5 is not an integer */
    ck_assert(!stoa_json_integer(n, &iv));
    ck_assert_int_eq(iv, 1234); /* untouched on failure */
    ck_assert(!stoa_json_bool(i, &bv));
    ck_assert(!stoa_json_bool(n, &bv));
    ck_assert(!stoa_json_bool(s, &bv));
    ck_assert(bv);

    /* Container accessors on the wrong container or on scalars. */
    ck_assert_ptr_null(stoa_json_get(a, "0"));
    ck_assert_ptr_null(stoa_json_get(s, "s"));
    ck_assert_ptr_null(stoa_json_key_at(a, 0));
    ck_assert_uint_eq(stoa_json_len(s), 0);
    ck_assert_uint_eq(stoa_json_len(i), 0);
    ck_assert_ptr_null(stoa_json_at(s, 0));

    /* Quoted numbers and booleans stay strings. */
    const stoa_json_t *q = parse_ok("{\"n\":\"5\",\"b\":\"true\"}");
    ck_assert(!stoa_json_integer(stoa_json_get(q, "n"), &iv));
    ck_assert(!stoa_json_bool(stoa_json_get(q, "b"), &bv));
}
END_TEST

START_TEST(accessors_accept_null_node)
{
    int64_t iv;
    bool bv;
    ck_assert(!stoa_json_is_object(NULL));
    ck_assert(!stoa_json_is_array(NULL));
    ck_assert(!stoa_json_is_string(NULL));
    ck_assert(!stoa_json_is_integer(NULL));
    ck_assert(!stoa_json_is_number(NULL));
    ck_assert(!stoa_json_is_bool(NULL));
    ck_assert(!stoa_json_is_null(NULL));
    ck_assert_ptr_null(stoa_json_get(NULL, "a"));
    ck_assert_uint_eq(stoa_json_len(NULL), 0);
    ck_assert_ptr_null(stoa_json_key_at(NULL, 0));
    ck_assert_ptr_null(stoa_json_at(NULL, 0));
    ck_assert_ptr_null(stoa_json_string(NULL));
    ck_assert(!stoa_json_integer(NULL, &iv));
    ck_assert(!stoa_json_bool(NULL, &bv));
}
END_TEST

START_TEST(duplicate_key_first_wins)
{
    const stoa_json_t *doc =
        parse_ok("{\"role\":\"client\",\"role\":\"admin\"}");
    ck_assert_str_eq(stoa_json_string(stoa_json_get(doc, "role")), "client");
}
END_TEST

START_TEST(parsed_tree_lives_until_reset)
{
    const stoa_json_t *doc = parse_ok("{\"a\":\"b\"}");
    const char *s = stoa_json_string(stoa_json_get(doc, "a"));
    (void)stoa_arena_alloc(arena, 100000); /* new blocks do not move it */
    ck_assert_str_eq(s, "b");
    size_t used = stoa_arena_used(arena);
    ck_assert_uint_gt(used, 0);
    /* Reset frees the yajl tree through its cleanup (LeakSanitizer would
     * report it otherwise). */
    stoa_arena_reset(arena);
    ck_assert_uint_eq(stoa_arena_used(arena), 0);
}
END_TEST

static const char *const malformed[] = {
    "",           "   ",      "{",           "[1,2", "{\"a\":", "{\"a\" 1}",
    "{\"a\":1,}", "[1,]",     "[1 2]",       "{} x", /* trailing garbage */
    "{}{}",                                          /* two values */
    "1 2",        "{'a':1}",                         /* single quotes */
    "['a']",      "{a:1}",                           /* bare key */
    "\"\\q\"",                                       /* bad escape */
    "\"\\u12\"",                                     /* short \u escape */
    "\"\\x41\"",  "\"abc",                           /* unterminated string */
    "\"abc\\",    "[\"\\",    "{\"a\":\"\\", /* a backslash last, no quote after
                                              */
    "\"\\u000", /* a \u escape cut short at the end */
    "\"a\nb\"", /* raw control character in a string */
    "\"\xff\"", /* invalid UTF-8 */
    "\"\xc3\"", /* truncated UTF-8 sequence */
    "\"\x80\"", /* lone continuation byte */
    "NaN",        "Infinity", "01",          "-",    "1.",      ".5",
    "+1",         "tru",      "nul",         "True", "]",       "}",
};

START_TEST(parse_refuses_malformed)
{
    const stoa_json_t *doc = (const stoa_json_t *)&doc; /* poison */
    int rc = parse_rc(malformed[_i], &doc);
    ck_assert_msg(rc == STOA_DECLINED, "'%s' accepted", malformed[_i]);
    ck_assert_ptr_null(doc);
    ck_assert_msg(err[0] != '\0', "no reason given for '%s'", malformed[_i]);
}
END_TEST

START_TEST(parse_refuses_embedded_nul)
{
    static const char with_nul[] = "{\"a\":\"x\0y\"}";
    stoa_json_t *doc;
    ck_assert_int_eq(stoa_json_parse(arena, with_nul, sizeof(with_nul) - 1,
                                     STOA_JSON_MAX_DEPTH, &doc, err,
                                     sizeof(err)),
                     STOA_DECLINED);
    static const char trailing_nul[] = "{}\0";
    ck_assert_int_eq(
        stoa_json_parse(arena, trailing_nul, sizeof(trailing_nul) - 1,
                        STOA_JSON_MAX_DEPTH, &doc, err, sizeof(err)),
        STOA_DECLINED);
    /* Text that is not terminated right at len is refused rather than
     * read past len. */
    ck_assert_int_eq(stoa_json_parse(arena, "{}x", 2, STOA_JSON_MAX_DEPTH, &doc,
                                     err, sizeof(err)),
                     STOA_DECLINED);
}
END_TEST

START_TEST(depth_limit_arrays)
{
    parse_ok(nested(1, false));
    parse_ok(nested(STOA_JSON_MAX_DEPTH, false));
    ck_assert_int_eq(parse_rc(nested(STOA_JSON_MAX_DEPTH + 1, false), NULL),
                     STOA_DECLINED);
    ck_assert_int_eq(parse_rc(nested(1000, false), NULL), STOA_DECLINED);
}
END_TEST

START_TEST(depth_limit_objects)
{
    parse_ok(nested(STOA_JSON_MAX_DEPTH, true));
    ck_assert_int_eq(parse_rc(nested(STOA_JSON_MAX_DEPTH + 1, true), NULL),
                     STOA_DECLINED);
}
END_TEST

START_TEST(depth_limit_mixed_and_siblings)
{
    /* 16 objects around 16 arrays: 32 levels. */
    char *inner = nested(16, false);
    stoa_buf_t b;
    stoa_buf_init(&b);
    for (int i = 0; i < 16; i++)
        stoa_buf_puts(&b, "{\"k\":");
    stoa_buf_puts(&b, inner);
    for (int i = 0; i < 16; i++)
        stoa_buf_puts(&b, "}");
    parse_ok(b.data);
    /* One more level anywhere is refused. */
    stoa_buf_reset(&b);
    stoa_buf_puts(&b, "[");
    for (int i = 0; i < 16; i++)
        stoa_buf_puts(&b, "{\"k\":");
    stoa_buf_puts(&b, inner);
    for (int i = 0; i < 16; i++)
        stoa_buf_puts(&b, "}");
    stoa_buf_puts(&b, "]");
    ck_assert_int_eq(parse_rc(b.data, NULL), STOA_DECLINED);

    /* Depth is nesting, not the number of containers: many siblings at
     * depth 2 are fine. */
    stoa_buf_reset(&b);
    stoa_buf_puts(&b, "[");
    for (int i = 0; i < 200; i++)
        stoa_buf_puts(&b, i ? ",[]" : "[]");
    stoa_buf_puts(&b, "]");
    parse_ok(b.data);
    stoa_buf_free(&b);
}
END_TEST

START_TEST(depth_limit_ignores_brackets_in_strings)
{
    /* 32 real levels with a string full of brackets at the bottom. */
    stoa_buf_t b;
    stoa_buf_init(&b);
    for (int i = 0; i < STOA_JSON_MAX_DEPTH; i++)
        stoa_buf_puts(&b, "[");
    stoa_buf_puts(&b, "\"[[[[[[[[[[{{{{{{{{{{[[[[[[[[[[{{{{{{{{{{\",");
    /* An escaped quote must not end the string early. */
    stoa_buf_puts(&b, "\"\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\",");
    /* An escaped backslash right before the closing quote must end it. */
    stoa_buf_puts(&b, "\"\\\\\"");
    for (int i = 0; i < STOA_JSON_MAX_DEPTH; i++)
        stoa_buf_puts(&b, "]");
    parse_ok(b.data);

    /* Closing brackets inside strings do not lower the depth either. */
    stoa_buf_reset(&b);
    stoa_buf_puts(&b, "[\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\",");
    for (int i = 0; i < STOA_JSON_MAX_DEPTH; i++)
        stoa_buf_puts(&b, "[");
    for (int i = 0; i < STOA_JSON_MAX_DEPTH; i++)
        stoa_buf_puts(&b, "]");
    stoa_buf_puts(&b, "]");
    ck_assert_int_eq(parse_rc(b.data, NULL), STOA_DECLINED);
    stoa_buf_free(&b);
}
END_TEST

START_TEST(depth_limit_is_the_argument)
{
    stoa_json_t *doc;
    const char *three = "[[[]]]";
    ck_assert_int_eq(
        stoa_json_parse(arena, three, 6, 3, &doc, err, sizeof(err)), STOA_OK);
    ck_assert_int_eq(
        stoa_json_parse(arena, three, 6, 2, &doc, err, sizeof(err)),
        STOA_DECLINED);
    ck_assert_int_eq(stoa_json_parse(arena, "1", 1, 0, &doc, err, sizeof(err)),
                     STOA_OK);
}
END_TEST

START_TEST(integer_limits)
{
    int64_t v = 0;
    ck_assert(stoa_json_integer(parse_ok("9223372036854775807"), &v));
    ck_assert_int_eq(v, INT64_MAX);
    ck_assert(stoa_json_integer(parse_ok("-9223372036854775807"), &v));
    ck_assert_int_eq(v, -INT64_MAX);
    ck_assert(stoa_json_integer(parse_ok("0"), &v));
    ck_assert_int_eq(v, 0);

    /* 2^63 does not fit: a number, never a (wrapped) integer. */
    const stoa_json_t *big = parse_ok("9223372036854775808");
    ck_assert(!stoa_json_is_integer(big));
    ck_assert(stoa_json_is_number(big));
    ck_assert(!stoa_json_integer(big, &v));
    ck_assert(!stoa_json_is_integer(parse_ok("99999999999999999999999")));
    ck_assert(!stoa_json_is_integer(parse_ok("-9223372036854775809")));
    ck_assert(!stoa_json_is_integer(parse_ok("1e3")));
    ck_assert(!stoa_json_is_integer(parse_ok("1.0")));
}
END_TEST

/* ---- the arena tree: large documents, structure, edge cases ----------- */

/* What malloc has handed out and not had back, in bytes. */
static size_t malloc_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* The large body of tests/integration/test_memory.py: ~800 KB, 60,000
 * small objects (caller frees). */
static char *large_body(size_t *len)
{
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_puts(&b, "{\"email\": \"nobody@example.com\", \"password\": "
                      "\"x\", \"pad\": [");
    for (int i = 0; i < 60000; i++)
        stoa_buf_printf(&b, "%s{\"k\": %d}", i ? ", " : "", i);
    stoa_buf_puts(&b, "]}");
    *len = b.len;
    return b.data;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(large_body_tree_holds_no_malloc)
{
    size_t len;
    char *text = large_body(&len);
    ck_assert_uint_gt(len, 700 * 1000);
    size_t before = malloc_in_use();
    stoa_json_t *doc = NULL;
    ck_assert_int_eq(stoa_json_parse(arena, text, len, STOA_JSON_MAX_DEPTH,
                                     &doc, err, sizeof(err)),
                     STOA_OK);
    /* The tree is alive and all of it is in the arena: malloc holds at
     * most the arena's small second block (yajl's tree held tens of MiB
     * of small blocks here). */
    size_t during = malloc_in_use();
    ck_assert_msg(during <= before + 64 * 1024,
                  "%zu bytes in malloc while the tree lives",
                  during > before ? during - before : 0);

    const stoa_json_t *pad = stoa_json_get(doc, "pad");
    ck_assert_uint_eq(stoa_json_len(doc), 3);
    ck_assert_str_eq(stoa_json_string(stoa_json_get(doc, "email")),
                     "nobody@example.com");
    ck_assert_uint_eq(stoa_json_len(pad), 60000);
    for (size_t i = 0; i < 60000; i += 997) {
        const stoa_json_t *o = stoa_json_at(pad, i);
        int64_t k = -1;
        ck_assert_str_eq(stoa_json_key_at(o, 0), "k");
        ck_assert(stoa_json_integer(stoa_json_get(o, "k"), &k));
        ck_assert_int_eq(k, (int64_t)i);
    }
    free(text);
}
END_TEST

START_TEST(large_body_parse_time)
{
    /* The cost of parsing the large body, printed for the record (no
     * bound: the machine is shared); every run must give the same tree. */
    enum { RUNS = 10 };
    size_t len;
    char *text = large_body(&len);
    double best = 1e9;
    for (int r = 0; r < RUNS; r++) {
        stoa_arena_reset(arena);
        stoa_json_t *doc = NULL;
        double t0 = seconds_now();
        ck_assert_int_eq(stoa_json_parse(arena, text, len, STOA_JSON_MAX_DEPTH,
                                         &doc, err, sizeof(err)),
                         STOA_OK);
        double t = seconds_now() - t0;
        if (t < best)
            best = t;
        ck_assert_uint_eq(stoa_json_len(stoa_json_get(doc, "pad")), 60000);
    }
    fprintf(stderr,
            "json: %zu-byte body (60000 objects) parsed in %.2f ms "
            "(best of %d), %zu arena bytes\n",
            len, best * 1e3, RUNS, stoa_arena_used(arena));
    free(text);
}
END_TEST

START_TEST(nested_children_stay_in_order)
{
    /* Children of inner containers close before their parent's next
     * sibling arrives: each container gets exactly its own. */
    const stoa_json_t *doc =
        parse_ok("{\"a\":[1,[2,3],{\"b\":[],\"c\":{\"d\":4}},5],\"e\":{},"
                 "\"f\":\"x\",\"g\":[[[]]]}");
    int64_t v;
    ck_assert_uint_eq(stoa_json_len(doc), 4);
    ck_assert_str_eq(stoa_json_key_at(doc, 3), "g");
    const stoa_json_t *a = stoa_json_get(doc, "a");
    ck_assert_uint_eq(stoa_json_len(a), 4);
    ck_assert(stoa_json_integer(stoa_json_at(a, 0), &v) && v == 1);
    const stoa_json_t *a1 = stoa_json_at(a, 1);
    ck_assert_uint_eq(stoa_json_len(a1), 2);
    ck_assert(stoa_json_integer(stoa_json_at(a1, 1), &v) && v == 3);
    const stoa_json_t *a2 = stoa_json_at(a, 2);
    ck_assert_uint_eq(stoa_json_len(a2), 2);
    ck_assert(stoa_json_is_array(stoa_json_get(a2, "b")));
    ck_assert_uint_eq(stoa_json_len(stoa_json_get(a2, "b")), 0);
    ck_assert_ptr_null(stoa_json_at(stoa_json_get(a2, "b"), 0));
    ck_assert(
        stoa_json_integer(stoa_json_get(stoa_json_get(a2, "c"), "d"), &v) &&
        v == 4);
    ck_assert(stoa_json_integer(stoa_json_at(a, 3), &v) && v == 5);
    ck_assert(stoa_json_is_object(stoa_json_get(doc, "e")));
    ck_assert_uint_eq(stoa_json_len(stoa_json_get(doc, "e")), 0);
    ck_assert_ptr_null(stoa_json_key_at(stoa_json_get(doc, "e"), 0));
    const stoa_json_t *g = stoa_json_get(doc, "g");
    ck_assert_uint_eq(stoa_json_len(g), 1);
    ck_assert_uint_eq(stoa_json_len(stoa_json_at(g, 0)), 1);
    ck_assert_uint_eq(stoa_json_len(stoa_json_at(stoa_json_at(g, 0), 0)), 0);
    /* Array elements have no key. */
    ck_assert_ptr_null(stoa_json_key_at(a, 0));
}
END_TEST

START_TEST(duplicate_keys_all_kept_in_order)
{
    const stoa_json_t *doc = parse_ok("{\"a\":1,\"b\":2,\"a\":3}");
    int64_t v;
    ck_assert_uint_eq(stoa_json_len(doc), 3);
    ck_assert_str_eq(stoa_json_key_at(doc, 2), "a");
    ck_assert(stoa_json_integer(stoa_json_get(doc, "a"), &v) && v == 1);
    ck_assert(stoa_json_integer(stoa_json_at(doc, 2), &v) && v == 3);
}
END_TEST

START_TEST(integer_min_is_an_integer)
{
    int64_t v = 0;
    ck_assert(stoa_json_integer(parse_ok("-9223372036854775808"), &v));
    ck_assert_int_eq(v, INT64_MIN);
    ck_assert(stoa_json_integer(parse_ok("[-1]"), &v) == false);
    ck_assert(stoa_json_integer(stoa_json_at(parse_ok("[-1]"), 0), &v));
    ck_assert_int_eq(v, -1);
    ck_assert(!stoa_json_is_integer(parse_ok("-1e0")));
    ck_assert(!stoa_json_is_integer(parse_ok("-0.0")));
}
END_TEST

START_TEST(escaped_keys_and_long_escaped_strings)
{
    const stoa_json_t *doc = parse_ok("{\"k\\u00e9\\n\":\"v\"}");
    ck_assert_str_eq(stoa_json_key_at(doc, 0), "k\xc3\xa9\n");
    ck_assert_str_eq(stoa_json_string(stoa_json_get(doc, "k\xc3\xa9\n")), "v");

    /* Far longer than yajl's first decoding buffer, which grows in the
     * arena. */
    enum { N = 100000 };
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_puts(&b, "[\"");
    for (int i = 0; i < N; i++)
        stoa_buf_puts(&b, i % 2 ? "\\n" : "\\u00e9");
    stoa_buf_puts(&b, "\",\"tail\"]");
    doc = parse_ok(b.data);
    const char *s = stoa_json_string(stoa_json_at(doc, 0));
    ck_assert_uint_eq(strlen(s), N / 2 * 3);
    ck_assert(memcmp(s, "\xc3\xa9\n\xc3\xa9\n", 6) == 0);
    ck_assert_str_eq(stoa_json_string(stoa_json_at(doc, 1)), "tail");
    stoa_buf_free(&b);
}
END_TEST

START_TEST(many_scalars_every_index)
{
    enum { N = 100000 };
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_puts(&b, "[");
    for (int i = 0; i < N; i++)
        stoa_buf_printf(&b, "%s%d", i ? "," : "", i);
    stoa_buf_puts(&b, "]");
    const stoa_json_t *doc = parse_ok(b.data);
    ck_assert_uint_eq(stoa_json_len(doc), N);
    for (size_t i = 0; i < N; i++) {
        int64_t v = -1;
        ck_assert(stoa_json_integer(stoa_json_at(doc, i), &v));
        ck_assert_int_eq(v, (int64_t)i);
    }
    stoa_buf_free(&b);
}
END_TEST

START_TEST(lone_surrogate_escapes_refused)
{
    ck_assert_int_eq(parse_rc("{\"\\udc00\":1}", NULL), STOA_DECLINED);
    ck_assert_str_eq(err, "malformed JSON: invalid UTF-8 in an escape");
    ck_assert_int_eq(parse_rc("[\"a\\udfff\"]", NULL), STOA_DECLINED);
    ck_assert_str_eq(err, "malformed JSON: invalid UTF-8 in an escape");
    /* A syntax error anywhere is reported as one, as yajl words it. */
    ck_assert_int_eq(parse_rc("[\"\\udc00\",]", NULL), STOA_DECLINED);
    ck_assert_msg(strncmp(err, "malformed JSON: parse error", 27) == 0, "%s",
                  err);
    ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(parse_error_messages)
{
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"{\"a\":", "malformed JSON: parse error: premature EOF"},
        {"{} x", "malformed JSON: parse error: trailing garbage"},
        {"{'a':1}", "malformed JSON: lexical error: invalid char in json "
                    "text."},
        {"{/**/}", "malformed JSON: comments are not JSON"},
        {"[\"\\u0000\"]", "malformed JSON: escaped NUL in a string"},
        {"\"\xff\"", "malformed JSON: invalid UTF-8"},
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++) {
        ck_assert_int_eq(parse_rc(cases[i].text, NULL), STOA_DECLINED);
        ck_assert_str_eq(err, cases[i].err);
    }
    ck_assert_int_eq(parse_rc(nested(STOA_JSON_MAX_DEPTH + 1, true), NULL),
                     STOA_DECLINED);
    ck_assert_str_eq(err, "JSON nested deeper than 32 levels");
}
END_TEST

START_TEST(value_reemits_number_text)
{
    const stoa_json_t *doc =
        parse_ok("{\"n\":1.5e3,\"z\":-0,\"big\":99999999999999999999,"
                 "\"min\":-9223372036854775808,\"s\":\"\\u00e9\"}");
    stoa_jw_value(jw, doc);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data,
                     "{\"n\":1.5e3,\"z\":-0,\"big\":99999999999999999999,"
                     "\"min\":-9223372036854775808,\"s\":\"\xc3\xa9\"}");
}
END_TEST

START_TEST(parse_again_after_reset)
{
    size_t len;
    char *text = large_body(&len);
    stoa_json_t *doc = NULL;
    ck_assert_int_eq(stoa_json_parse(arena, text, len, STOA_JSON_MAX_DEPTH,
                                     &doc, err, sizeof(err)),
                     STOA_OK);
    stoa_arena_reset(arena);
    const stoa_json_t *small = parse_ok("{\"a\":[true]}");
    bool b = false;
    ck_assert(stoa_json_bool(stoa_json_at(stoa_json_get(small, "a"), 0), &b));
    ck_assert(b);
    /* A small document takes a few KiB of the arena's first block (most
     * of it yajl's lexer buffer). */
    ck_assert_uint_lt(stoa_arena_used(arena), 4096);
    free(text);
}
END_TEST

/* ---- writer ------------------------------------------------------------ */

START_TEST(writer_object)
{
    stoa_jw_object_open(jw);
    stoa_jw_kv_string(jw, "a", "x");
    stoa_jw_kv_integer(jw, "n", -7);
    stoa_jw_kv_bool(jw, "t", true);
    stoa_jw_kv_bool(jw, "f", false);
    stoa_jw_kv_string(jw, "s", NULL);
    stoa_jw_key(jw, "z");
    stoa_jw_null(jw);
    stoa_jw_key(jw, "o");
    stoa_jw_object_open(jw);
    stoa_jw_object_close(jw);
    stoa_jw_object_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data, "{\"a\":\"x\",\"n\":-7,\"t\":true,\"f\":false,"
                               "\"s\":null,\"z\":null,\"o\":{}}");
}
END_TEST

START_TEST(writer_array)
{
    stoa_jw_array_open(jw);
    stoa_jw_integer(jw, INT64_MIN);
    stoa_jw_integer(jw, INT64_MAX);
    stoa_jw_string(jw, "two");
    stoa_jw_bool(jw, false);
    stoa_jw_array_open(jw);
    stoa_jw_array_close(jw);
    stoa_jw_object_open(jw);
    stoa_jw_kv_integer(jw, "k", 0);
    stoa_jw_object_close(jw);
    stoa_jw_array_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data, "[-9223372036854775808,9223372036854775807,"
                               "\"two\",false,[],{\"k\":0}]");
}
END_TEST

START_TEST(writer_appends_to_existing_content)
{
    stoa_buf_puts(&out, "prefix:");
    stoa_jw_string(jw, "v");
    ck_assert_str_eq(out.data, "prefix:\"v\"");
}
END_TEST

START_TEST(writer_escapes_strings)
{
    static const char raw[] = "q\"b\\s/\n\t\r\b\f\x01\x1f\x7f \xc3\xa9";
    stoa_jw_array_open(jw);
    stoa_jw_string(jw, raw);
    stoa_jw_array_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data, "[\"q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001F"
                               "\x7f \xc3\xa9\"]");

    /* Whatever the spelling, the output parses back to the same bytes. */
    const stoa_json_t *doc = parse_ok(out.data);
    ck_assert_str_eq(stoa_json_string(stoa_json_at(doc, 0)), raw);
}
END_TEST

/* The writer never emits what the parser refuses: an embedded NUL. */
START_TEST(writer_refuses_nul)
{
    stoa_jw_array_open(jw);
    stoa_jw_stringn(jw, "a\0b", 3);
    stoa_jw_array_close(jw);
    ck_assert(!stoa_jw_ok(jw));
}
END_TEST

START_TEST(writer_escapes_keys)
{
    stoa_jw_object_open(jw);
    stoa_jw_kv_integer(jw, "we\"ird\nkey", 1);
    stoa_jw_object_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data, "{\"we\\\"ird\\nkey\":1}");
}
END_TEST

START_TEST(writer_invalid_utf8_is_not_ok)
{
    stoa_jw_array_open(jw);
    stoa_jw_string(jw, "ok");
    ck_assert(stoa_jw_ok(jw));
    stoa_jw_string(jw, "bad \xff byte");
    ck_assert(!stoa_jw_ok(jw));
    /* Sticky: later valid calls do not clear it. */
    stoa_jw_string(jw, "fine");
    stoa_jw_array_close(jw);
    ck_assert(!stoa_jw_ok(jw));

    stoa_jw_reset(jw, &out);
    stoa_jw_object_open(jw);
    stoa_jw_kv_string(jw, "k", "\xc3"); /* truncated sequence */
    ck_assert(!stoa_jw_ok(jw));
}
END_TEST

START_TEST(writer_detects_misuse)
{
    /* Closing more than was opened. */
    stoa_jw_object_open(jw);
    stoa_jw_object_close(jw);
    ck_assert(stoa_jw_ok(jw));
    stoa_jw_object_close(jw);
    ck_assert(!stoa_jw_ok(jw));

    /* A second top-level value. */
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_integer(jw, 1);
    ck_assert(stoa_jw_ok(jw));
    stoa_jw_integer(jw, 2);
    ck_assert(!stoa_jw_ok(jw));

    /* A key that is not a string. */
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_object_open(jw);
    stoa_jw_integer(jw, 1);
    ck_assert(!stoa_jw_ok(jw));

    /* Close at the very start. */
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_array_close(jw);
    ck_assert(!stoa_jw_ok(jw));
}
END_TEST

START_TEST(writer_reset_recovers_after_misuse)
{
    stoa_jw_object_open(jw);
    stoa_jw_integer(jw, 1); /* not a key */
    stoa_jw_string(jw, "\xff");
    ck_assert(!stoa_jw_ok(jw));

    stoa_buf_t other;
    stoa_buf_init(&other);
    stoa_jw_reset(jw, &other);
    ck_assert(stoa_jw_ok(jw));
    stoa_jw_object_open(jw);
    stoa_jw_kv_integer(jw, "a", 1);
    stoa_jw_object_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(other.data, "{\"a\":1}");
    /* The old buffer is no longer written to. */
    size_t old_len = out.len;
    stoa_jw_reset(jw, &other);
    stoa_jw_null(jw);
    ck_assert_uint_eq(out.len, old_len);
    stoa_buf_free(&other);
}
END_TEST

START_TEST(writer_raw_inside_object)
{
    const char *stored = "{\"x\":[1,{\"y\":\"z\"}],\"s\":\"a\\\"b\\u00e9\","
                         "\"n\":1.5e3,\"t\":true,\"nl\":null,\"e\":{}}";
    stoa_jw_object_open(jw);
    stoa_jw_kv_string(jw, "before", "b");
    stoa_jw_key(jw, "meta");
    stoa_jw_raw(jw, stored, strlen(stored));
    stoa_jw_kv_integer(jw, "after", 1);
    stoa_jw_object_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data,
                     "{\"before\":\"b\",\"meta\":{\"x\":[1,{\"y\":\"z\"}],"
                     "\"s\":\"a\\\"b\xc3\xa9\",\"n\":1.5e3,\"t\":true,"
                     "\"nl\":null,\"e\":{}},\"after\":1}");
    /* And the whole thing is one valid document. */
    const stoa_json_t *doc = parse_ok(out.data);
    const stoa_json_t *meta = stoa_json_get(doc, "meta");
    ck_assert_str_eq(stoa_json_string(stoa_json_get(meta, "s")),
                     "a\"b\xc3\xa9");
}
END_TEST

START_TEST(writer_raw_inside_array)
{
    stoa_jw_array_open(jw);
    stoa_jw_integer(jw, 1);
    stoa_jw_raw(jw, "[2,3]", 5);
    stoa_jw_raw(jw, "\"s\"", 3);
    /* len bounds the text: the rest is not read. */
    stoa_jw_raw(jw, "4,5,6", 1);
    stoa_jw_array_close(jw);
    ck_assert(stoa_jw_ok(jw));
    ck_assert_str_eq(out.data, "[1,[2,3],\"s\",4]");
}
END_TEST

START_TEST(writer_raw_invalid_is_not_ok)
{
    stoa_jw_array_open(jw);
    stoa_jw_raw(jw, "{\"a\":", 5);
    stoa_jw_array_close(jw);
    ck_assert(!stoa_jw_ok(jw));
}
END_TEST

START_TEST(writer_raw_refuses_more_than_one_value)
{
    static const char *const bad[] = {"1 2", "{}x",  "",
                                      "  ",  "[1,]", "{\"a\":1}}"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        stoa_buf_reset(&out);
        stoa_jw_reset(jw, &out);
        stoa_jw_array_open(jw);
        stoa_jw_raw(jw, bad[i], strlen(bad[i]));
        stoa_jw_array_close(jw);
        ck_assert_msg(!stoa_jw_ok(jw), "'%s' spliced: %s", bad[i], out.data);
    }
    /* Where no value may go, none is spliced. */
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_object_open(jw);
    stoa_jw_raw(jw, "1", 1);
    ck_assert(!stoa_jw_ok(jw));
}
END_TEST

/* ---- regressions: behaviour the contract promises that the library does
 * not deliver yet. Each states the expected behaviour. ------------------- */

START_TEST(regression_parse_refuses_comments)
{
    /* RFC 8259 JSON has no comments; SPEC §3 wants malformed bodies
     * refused. yajl_tree_parse() turns yajl_allow_comments on. */
    static const char *const with_comments[] = {
        "{/* c */}",
        "// line comment\n{}",
        "{\"a\":1 /* c */}",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(with_comments); i++)
        ck_assert_msg(parse_rc(with_comments[i], NULL) == STOA_DECLINED,
                      "comment accepted in '%s'", with_comments[i]);
}
END_TEST

START_TEST(regression_comment_cannot_hide_nesting)
{
    /* The depth pre-scan does not know about comments: a quote inside a
     * comment makes it treat the rest of the text as a string, so the
     * depth cap is skipped entirely. */
    const char *deep = nested(STOA_JSON_MAX_DEPTH + 8, false);
    char *text = stoa_arena_sprintf(arena, "/*\"*/%s", deep);
    ck_assert_msg(parse_rc(text, NULL) == STOA_DECLINED,
                  "%d levels accepted behind a comment",
                  STOA_JSON_MAX_DEPTH + 8);
    /* Closing brackets in a comment lower the counted depth the same way. */
    text = stoa_arena_sprintf(arena, "/*]]]]]]]]]]*/%s", deep);
    ck_assert_msg(parse_rc(text, NULL) == STOA_DECLINED,
                  "%d levels accepted behind a comment",
                  STOA_JSON_MAX_DEPTH + 8);
}
END_TEST

START_TEST(regression_deep_nesting_behind_comment_no_crash)
{
    /* The same hole with a body just under the default max_body_bytes:
     * yajl builds a 500000-level tree and its recursive free overflows
     * the stack (SIGSEGV) when the arena is reset. Expected: refused. */
    char *deep = nested(500000, false);
    char *text = stoa_arena_sprintf(arena, "/*\"*/%s", deep);
    stoa_json_t *doc = NULL;
    int rc = stoa_json_parse(arena, text, strlen(text), STOA_JSON_MAX_DEPTH,
                             &doc, err, sizeof(err));
    stoa_arena_reset(arena); /* where the crash happens today */
    ck_assert_msg(rc == STOA_DECLINED, "500000 levels accepted");
}
END_TEST

START_TEST(regression_parse_refuses_escaped_nul)
{
    /* "\u0000" decodes to a NUL that the C-string accessors silently cut
     * at: "a@b.c\u0000x" reads as "a@b.c" while the raw body (stored,
     * hashed for idempotency, or put into jsonb, which rejects \u0000)
     * says otherwise. Expected: refused like a raw NUL. */
    const stoa_json_t *doc;
    int rc = parse_rc("{\"email\":\"a@b.c\\u0000x\"}", &doc);
    ck_assert_msg(rc == STOA_DECLINED, "\\u0000 accepted, email read as '%s'",
                  rc == STOA_OK ? stoa_json_string(stoa_json_get(doc, "email"))
                                : "");
}
END_TEST

START_TEST(regression_parse_refuses_invalid_utf8_forms)
{
    /* yajl's UTF-8 check only looks at lead/continuation byte shapes.
     * RFC 3629 forbids these; PostgreSQL refuses them in text columns,
     * which would turn a 400 into a 500. */
    static const char *const bad[] = {
        "\"\xc0\x80\"",         /* overlong NUL */
        "\"\xc1\xbf\"",         /* overlong '\x7f' */
        "\"\xe0\x80\xaf\"",     /* overlong '/' */
        "\"\xed\xa0\x80\"",     /* UTF-16 surrogate D800 */
        "\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++)
        ck_assert_msg(parse_rc(bad[i], NULL) == STOA_DECLINED,
                      "invalid UTF-8 case %zu accepted", i);
}
END_TEST

START_TEST(regression_writer_key_without_value_is_misuse)
{
    stoa_jw_object_open(jw);
    stoa_jw_key(jw, "k");
    stoa_jw_object_close(jw);
    ck_assert_msg(!stoa_jw_ok(jw), "'%s' reported ok", out.data);
}
END_TEST

START_TEST(regression_writer_mismatched_close_is_misuse)
{
    stoa_jw_array_open(jw);
    stoa_jw_object_close(jw);
    ck_assert_msg(!stoa_jw_ok(jw), "'%s' reported ok", out.data);
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_object_open(jw);
    stoa_jw_array_close(jw);
    ck_assert_msg(!stoa_jw_ok(jw), "'%s' reported ok", out.data);
}
END_TEST

START_TEST(regression_writer_key_outside_object_is_misuse)
{
    /* json.h: ok turns false on "key outside object". */
    stoa_jw_key(jw, "k");
    ck_assert_msg(!stoa_jw_ok(jw), "key at top level: '%s' reported ok",
                  out.data);
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_array_open(jw);
    stoa_jw_key(jw, "k");
    ck_assert_msg(!stoa_jw_ok(jw), "key in array: '%s' reported ok", out.data);
}
END_TEST

START_TEST(regression_writer_refuses_invalid_utf8_forms)
{
    stoa_jw_array_open(jw);
    stoa_jw_string(jw, "\xc0\x80");
    ck_assert_msg(!stoa_jw_ok(jw), "overlong NUL written");
    stoa_buf_reset(&out);
    stoa_jw_reset(jw, &out);
    stoa_jw_array_open(jw);
    stoa_jw_string(jw, "\xed\xa0\x80");
    ck_assert_msg(!stoa_jw_ok(jw), "surrogate written");
}
END_TEST

START_TEST(regression_writer_survives_calls_after_unbalanced_close)
{
    /* A close with nothing open leaves yajl's unsigned depth wrapped
     * (yajl_gen.c DECREMENT_DEPTH), and the next call indexes its state
     * array with it: SIGSEGV. Once ok is false the writer must not call
     * into yajl again (or must refuse the close itself). */
    stoa_jw_object_close(jw);
    ck_assert(!stoa_jw_ok(jw));
    stoa_jw_string(jw, "x");
    stoa_jw_object_open(jw);
    ck_assert(!stoa_jw_ok(jw));
    stoa_jw_reset(jw, &out);
    stoa_jw_integer(jw, 1);
    ck_assert(stoa_jw_ok(jw));
}
END_TEST

/* Objects and arrays know their text as written: brackets included,
 * whitespace kept, brackets inside strings not taken for theirs. */
static void assert_source(const stoa_json_t *v, const char *want)
{
    const char *text;
    size_t len;
    ck_assert(stoa_json_source(v, &text, &len));
    ck_assert_uint_eq(len, strlen(want));
    ck_assert(memcmp(text, want, len) == 0);
}

START_TEST(containers_keep_their_source)
{
    const char *text = " { \"a\" : {\"b\" : [1, 2, {\"s\":\"}]{[\\\"\"}]} ,"
                       "\"c\":[ ],\"d\":{},\"e\":\"x\"}\n";
    const stoa_json_t *v = parse_ok(text);
    const char *open = strchr(text, '{'), *close = strrchr(text, '}');
    char *whole = stoa_arena_strndup(arena, open, (size_t)(close - open) + 1);
    assert_source(v, whole);
    const stoa_json_t *a = stoa_json_get(v, "a");
    assert_source(a, "{\"b\" : [1, 2, {\"s\":\"}]{[\\\"\"}]}");
    const stoa_json_t *b = stoa_json_get(a, "b");
    assert_source(b, "[1, 2, {\"s\":\"}]{[\\\"\"}]");
    assert_source(stoa_json_at(b, 2), "{\"s\":\"}]{[\\\"\"}");
    assert_source(stoa_json_get(v, "c"), "[ ]");
    assert_source(stoa_json_get(v, "d"), "{}");
    /* Scalars have none. */
    const char *src;
    size_t len;
    ck_assert(!stoa_json_source(stoa_json_get(v, "e"), &src, &len));
    ck_assert(!stoa_json_source(stoa_json_at(b, 0), &src, &len));
    ck_assert(!stoa_json_source(NULL, &src, &len));
    /* Siblings in an array of objects, each its own. */
    v = parse_ok("[{\"x\":1},{\"y\":[2]}]");
    assert_source(stoa_json_at(v, 0), "{\"x\":1}");
    assert_source(stoa_json_at(v, 1), "{\"y\":[2]}");
}
END_TEST

/* Digits before and after the point as Postgres' numeric counts them,
 * at the limits it has (131072, 16383) and past them. */
static const struct {
    const char *text;
    bool fits;
} number_cases[] = {
    {"[1, -2.5, 0, 1e3, 1.5e-3, 12345678901234567890]", true},
    {"1e131071", true},
    {"1e131072", false},
    {"-1e131072", false},
    {"0.0001e131075", true}, /* 1e131071: leading zeros do not count */
    {"10e131071", false},
    {"1e-16383", true},
    {"1e-16384", false},
    {"0.1e-16383", false},
    {"1E+131072", false},
    {"0e-10", true},
    {"0e-16384", false},
    {"1e99999999999999999999", false}, /* the exponent saturates */
    {"1e-99999999999999999999", false},
    {"{\"a\": {\"b\": [1, {\"c\": 1e200000}]}}", false},
    {"{\"a\": \"1e200000\"}", true}, /* a string, not a number */
};

START_TEST(numbers_fit_numeric)
{
    const stoa_json_t *v = parse_ok(number_cases[_i].text);
    ck_assert_msg(stoa_json_numbers_fit(v, 131072, 16383) ==
                      number_cases[_i].fits,
                  "%s", number_cases[_i].text);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TEST_CASE_OF(
        s, "parse", setup, teardown, LOOP(parse_valid_documents, valid_docs),
        ONCE(parse_decodes_escapes), ONCE(accessors_read_values),
        ONCE(accessors_refuse_type_mismatch), ONCE(accessors_accept_null_node),
        ONCE(duplicate_key_first_wins), ONCE(parsed_tree_lives_until_reset),
        LOOP(parse_refuses_malformed, malformed),
        ONCE(parse_refuses_embedded_nul), ONCE(depth_limit_arrays),
        ONCE(depth_limit_objects), ONCE(depth_limit_mixed_and_siblings),
        ONCE(depth_limit_ignores_brackets_in_strings),
        ONCE(depth_limit_is_the_argument), ONCE(integer_limits));

    TEST_CASE(s, "tree", setup, teardown, large_body_tree_holds_no_malloc,
              large_body_parse_time, nested_children_stay_in_order,
              duplicate_keys_all_kept_in_order, integer_min_is_an_integer,
              escaped_keys_and_long_escaped_strings, many_scalars_every_index,
              lone_surrogate_escapes_refused, parse_error_messages,
              value_reemits_number_text, parse_again_after_reset,
              containers_keep_their_source);
    TEST_CASE_OF(s, "numbers", setup, teardown,
                 LOOP(numbers_fit_numeric, number_cases));

    TEST_CASE(s, "writer", setup, teardown, writer_object, writer_array,
              writer_appends_to_existing_content, writer_escapes_strings,
              writer_refuses_nul, writer_escapes_keys,
              writer_invalid_utf8_is_not_ok, writer_detects_misuse,
              writer_reset_recovers_after_misuse, writer_raw_inside_object,
              writer_raw_inside_array, writer_raw_invalid_is_not_ok,
              writer_raw_refuses_more_than_one_value);

    TEST_CASE(s, "regression", setup, teardown,
              regression_parse_refuses_comments,
              regression_comment_cannot_hide_nesting,
              regression_deep_nesting_behind_comment_no_crash,
              regression_parse_refuses_escaped_nul,
              regression_parse_refuses_invalid_utf8_forms,
              regression_writer_key_without_value_is_misuse,
              regression_writer_mismatched_close_is_misuse,
              regression_writer_key_outside_object_is_misuse,
              regression_writer_refuses_invalid_utf8_forms,
              regression_writer_survives_calls_after_unbalanced_close);
    return s;
}

TEST_MAIN(json_suite)
