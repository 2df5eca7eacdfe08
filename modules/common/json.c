/* json.c - yajl tree parsing with a depth cap, typed reads, and a
 * generator that appends to a stoa_buf_t. */
#include "stoa/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "stoa/format.h"

/* stoa_json_t is an opaque alias of yajl's tree node. */
#define NODE(v) ((yajl_val)(v))

static void tree_free(void *data)
{
    yajl_tree_free((yajl_val)data);
}

/* One pass before yajl sees the text. yajl's tree parser has no depth
 * limit and accepts comments (which could also hide brackets from this
 * scan), so: nesting is measured, comments are refused (JSON has no '/'
 * outside strings), and an escaped NUL (\u0000) is refused because the
 * tree would silently cut the string there. */
static const char *prescan(const char *text, size_t len, int max_depth)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') {
                if (i + 5 < len && text[i + 1] == 'u' &&
                    memcmp(text + i + 2, "0000", 4) == 0)
                    return "escaped NUL in a string";
                i++;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return "too deep";
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c == '/') {
            return "comments are not JSON";
        }
    }
    return NULL;
}

/* Strings decoded from \u escapes can still be invalid (lone surrogates):
 * every key and string of the tree is checked once. */
static bool tree_utf8_valid(yajl_val v, int depth)
{
    if (depth > STOA_JSON_MAX_DEPTH + 2)
        return false;
    if (YAJL_IS_STRING(v))
        return stoa_utf8_valid(v->u.string, strlen(v->u.string));
    if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++)
            if (!stoa_utf8_valid(v->u.object.keys[i],
                                 strlen(v->u.object.keys[i])) ||
                !tree_utf8_valid(v->u.object.values[i], depth + 1))
                return false;
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            if (!tree_utf8_valid(v->u.array.values[i], depth + 1))
                return false;
    }
    return true;
}

int stoa_json_parse(stoa_arena_t *arena, const char *text, size_t len,
                    int max_depth, stoa_json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (memchr(text, '\0', len) || text[len] != '\0') {
        snprintf(err, errlen, "body contains a NUL byte");
        return STOA_DECLINED;
    }
    const char *why = prescan(text, len, max_depth);
    if (why) {
        if (strcmp(why, "too deep") == 0)
            snprintf(err, errlen, "JSON nested deeper than %d levels",
                     max_depth);
        else
            snprintf(err, errlen, "malformed JSON: %s", why);
        return STOA_DECLINED;
    }
    /* Strict UTF-8 (stoa_utf8_valid): yajl's own check lets overlong
     * forms and surrogates through, and Postgres would then refuse the
     * text with a 500 instead of our 400. */
    if (!stoa_utf8_valid(text, len)) {
        snprintf(err, errlen, "malformed JSON: invalid UTF-8");
        return STOA_DECLINED;
    }
    char yerr[256];
    yerr[0] = '\0';
    yajl_val root = yajl_tree_parse(text, yerr, sizeof(yerr));
    if (!root) {
        /* yajl's message is multi-line with a context excerpt: keep the
         * first line only. */
        char *nl = strchr(yerr, '\n');
        if (nl)
            *nl = '\0';
        snprintf(err, errlen, "malformed JSON: %s",
                 yerr[0] ? yerr : "parse error");
        return STOA_DECLINED;
    }
    stoa_arena_cleanup(arena, tree_free, root);
    if (!tree_utf8_valid(root, 0)) {
        snprintf(err, errlen, "malformed JSON: invalid UTF-8 in an escape");
        return STOA_DECLINED;
    }
    *out = (stoa_json_t *)root;
    return STOA_OK;
}

bool stoa_json_is_object(const stoa_json_t *v)
{
    return v && YAJL_IS_OBJECT(NODE(v));
}
bool stoa_json_is_array(const stoa_json_t *v)
{
    return v && YAJL_IS_ARRAY(NODE(v));
}
bool stoa_json_is_string(const stoa_json_t *v)
{
    return v && YAJL_IS_STRING(NODE(v));
}
bool stoa_json_is_integer(const stoa_json_t *v)
{
    return v && YAJL_IS_INTEGER(NODE(v));
}
bool stoa_json_is_number(const stoa_json_t *v)
{
    return v && YAJL_IS_NUMBER(NODE(v));
}
bool stoa_json_is_bool(const stoa_json_t *v)
{
    return v && (YAJL_IS_TRUE(NODE(v)) || YAJL_IS_FALSE(NODE(v)));
}
bool stoa_json_is_null(const stoa_json_t *v)
{
    return v && YAJL_IS_NULL(NODE(v));
}

const stoa_json_t *stoa_json_get(const stoa_json_t *v, const char *key)
{
    if (!stoa_json_is_object(v))
        return NULL;
    yajl_val o = NODE(v);
    /* Last duplicate wins would let a validator and a reader disagree;
     * the first one is what every reader here sees. */
    for (size_t i = 0; i < o->u.object.len; i++)
        if (strcmp(o->u.object.keys[i], key) == 0)
            return (const stoa_json_t *)o->u.object.values[i];
    return NULL;
}

size_t stoa_json_len(const stoa_json_t *v)
{
    if (stoa_json_is_object(v))
        return NODE(v)->u.object.len;
    if (stoa_json_is_array(v))
        return NODE(v)->u.array.len;
    return 0;
}

const char *stoa_json_key_at(const stoa_json_t *v, size_t i)
{
    if (!stoa_json_is_object(v) || i >= NODE(v)->u.object.len)
        return NULL;
    return NODE(v)->u.object.keys[i];
}

const stoa_json_t *stoa_json_at(const stoa_json_t *v, size_t i)
{
    if (stoa_json_is_object(v))
        return i < NODE(v)->u.object.len
                   ? (const stoa_json_t *)NODE(v)->u.object.values[i]
                   : NULL;
    if (stoa_json_is_array(v))
        return i < NODE(v)->u.array.len
                   ? (const stoa_json_t *)NODE(v)->u.array.values[i]
                   : NULL;
    return NULL;
}

const char *stoa_json_string(const stoa_json_t *v)
{
    return stoa_json_is_string(v) ? NODE(v)->u.string : NULL;
}

bool stoa_json_integer(const stoa_json_t *v, int64_t *out)
{
    if (!stoa_json_is_integer(v))
        return false;
    *out = (int64_t)NODE(v)->u.number.i;
    return true;
}

bool stoa_json_bool(const stoa_json_t *v, bool *out)
{
    if (!stoa_json_is_bool(v))
        return false;
    *out = YAJL_IS_TRUE(NODE(v));
    return true;
}

#define JW_MAX_DEPTH 64

/* The writer keeps its own grammar state: yajl's generator does not catch
 * every misuse (a key without a value, "[}") and can read out of bounds
 * after an unbalanced close. Once a misuse is seen the writer stops
 * calling yajl and stoa_jw_ok() stays false until a reset. */
struct stoa_jw_s {
    yajl_gen gen;
    stoa_buf_t *out;
    bool ok;
    bool after_key; /* inside an object, a key waits for its value */
    bool done;      /* the top-level value is complete */
    int depth;
    char stack[JW_MAX_DEPTH]; /* 'o' object, 'a' array */
};

static void jw_print(void *ctx, const char *str, size_t len)
{
    stoa_jw_t *w = ctx;
    stoa_buf_append(w->out, str, len);
}

static yajl_gen jw_gen_new(stoa_jw_t *w)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g)
        stoa_assert_fail("yajl_gen_alloc", __FILE__, __LINE__);
    yajl_gen_config(g, yajl_gen_print_callback, jw_print, w);
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    return g;
}

static void jw_state_reset(stoa_jw_t *w)
{
    w->ok = true;
    w->after_key = false;
    w->done = false;
    w->depth = 0;
}

stoa_jw_t *stoa_jw_new(stoa_buf_t *out)
{
    stoa_jw_t *w = stoa_xcalloc(1, sizeof(*w));
    w->out = out;
    jw_state_reset(w);
    w->gen = jw_gen_new(w);
    return w;
}

stoa_jw_t *stoa_jw_object_new(stoa_buf_t *out)
{
    stoa_buf_init(out);
    stoa_jw_t *w = stoa_jw_new(out);
    stoa_jw_object_open(w);
    return w;
}

void stoa_jw_free(stoa_jw_t *w)
{
    if (!w)
        return;
    yajl_gen_free(w->gen);
    free(w);
}

void stoa_jw_reset(stoa_jw_t *w, stoa_buf_t *out)
{
    /* yajl_gen_reset keeps a misused generator in its error state; a fresh
     * generator is cheap and always clean. */
    yajl_gen_free(w->gen);
    w->out = out;
    jw_state_reset(w);
    w->gen = jw_gen_new(w);
}

bool stoa_jw_ok(const stoa_jw_t *w)
{
    return w->ok && !w->after_key;
}

/* May a value start here? (top level once, in an array, or after a key) */
static bool jw_value_allowed(stoa_jw_t *w)
{
    if (!w->ok)
        return false;
    if (w->depth == 0 ? !w->done
                      : (w->stack[w->depth - 1] == 'a' || w->after_key))
        return true;
    w->ok = false;
    return false;
}

/* Bookkeeping after a complete value. */
static void jw_value_done(stoa_jw_t *w)
{
    w->after_key = false;
    if (w->depth == 0)
        w->done = true;
}

static void jw_check(stoa_jw_t *w, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok)
        w->ok = false;
}

static void jw_open(stoa_jw_t *w, char kind)
{
    if (!jw_value_allowed(w))
        return;
    if (w->depth == JW_MAX_DEPTH) {
        w->ok = false;
        return;
    }
    jw_check(w, kind == 'o' ? yajl_gen_map_open(w->gen)
                            : yajl_gen_array_open(w->gen));
    w->stack[w->depth++] = kind;
    w->after_key = false;
}

static void jw_close(stoa_jw_t *w, char kind)
{
    if (!w->ok || w->depth == 0 || w->stack[w->depth - 1] != kind ||
        w->after_key) {
        w->ok = false;
        return;
    }
    jw_check(w, kind == 'o' ? yajl_gen_map_close(w->gen)
                            : yajl_gen_array_close(w->gen));
    w->depth--;
    jw_value_done(w);
}

void stoa_jw_object_open(stoa_jw_t *w)
{
    jw_open(w, 'o');
}
void stoa_jw_object_close(stoa_jw_t *w)
{
    jw_close(w, 'o');
}
void stoa_jw_array_open(stoa_jw_t *w)
{
    jw_open(w, 'a');
}
void stoa_jw_array_close(stoa_jw_t *w)
{
    jw_close(w, 'a');
}

void stoa_jw_null(stoa_jw_t *w)
{
    if (!jw_value_allowed(w))
        return;
    jw_check(w, yajl_gen_null(w->gen));
    jw_value_done(w);
}

void stoa_jw_bool(stoa_jw_t *w, bool v)
{
    if (!jw_value_allowed(w))
        return;
    jw_check(w, yajl_gen_bool(w->gen, v));
    jw_value_done(w);
}

void stoa_jw_integer(stoa_jw_t *w, int64_t v)
{
    if (!jw_value_allowed(w))
        return;
    jw_check(w, yajl_gen_integer(w->gen, (long long)v));
    jw_value_done(w);
}

void stoa_jw_stringn(stoa_jw_t *w, const char *s, size_t len)
{
    if (!jw_value_allowed(w))
        return;
    /* A NUL could not be read back (the parser refuses \u0000, Postgres
     * text cannot hold it): refused like invalid UTF-8. */
    if (!stoa_utf8_valid(s, len) || memchr(s, '\0', len)) {
        w->ok = false;
        return;
    }
    jw_check(w, yajl_gen_string(w->gen, (const unsigned char *)s, len));
    jw_value_done(w);
}

void stoa_jw_string(stoa_jw_t *w, const char *s)
{
    if (!s)
        stoa_jw_null(w);
    else
        stoa_jw_stringn(w, s, strlen(s));
}

void stoa_jw_key(stoa_jw_t *w, const char *key)
{
    size_t len = strlen(key);
    if (!w->ok || w->depth == 0 || w->stack[w->depth - 1] != 'o' ||
        w->after_key || !stoa_utf8_valid(key, len)) {
        w->ok = false;
        return;
    }
    jw_check(w, yajl_gen_string(w->gen, (const unsigned char *)key, len));
    w->after_key = true;
}

void stoa_jw_kv_string(stoa_jw_t *w, const char *key, const char *s)
{
    stoa_jw_key(w, key);
    stoa_jw_string(w, s);
}

void stoa_jw_kv_integer(stoa_jw_t *w, const char *key, int64_t v)
{
    stoa_jw_key(w, key);
    stoa_jw_integer(w, v);
}

void stoa_jw_kv_bool(stoa_jw_t *w, const char *key, bool v)
{
    stoa_jw_key(w, key);
    stoa_jw_bool(w, v);
}

static void jw_number(stoa_jw_t *w, const char *r)
{
    if (!jw_value_allowed(w))
        return;
    jw_check(w, yajl_gen_number(w->gen, r, strlen(r)));
    jw_value_done(w);
}

static void jw_tree(stoa_jw_t *w, yajl_val v)
{
    if (YAJL_IS_OBJECT(v)) {
        stoa_jw_object_open(w);
        for (size_t i = 0; i < v->u.object.len; i++) {
            stoa_jw_key(w, v->u.object.keys[i]);
            jw_tree(w, v->u.object.values[i]);
        }
        stoa_jw_object_close(w);
    } else if (YAJL_IS_ARRAY(v)) {
        stoa_jw_array_open(w);
        for (size_t i = 0; i < v->u.array.len; i++)
            jw_tree(w, v->u.array.values[i]);
        stoa_jw_array_close(w);
    } else if (YAJL_IS_STRING(v)) {
        stoa_jw_string(w, v->u.string);
    } else if (YAJL_IS_NUMBER(v)) {
        jw_number(w, v->u.number.r);
    } else if (YAJL_IS_TRUE(v)) {
        stoa_jw_bool(w, true);
    } else if (YAJL_IS_FALSE(v)) {
        stoa_jw_bool(w, false);
    } else {
        stoa_jw_null(w);
    }
}

void stoa_jw_value(stoa_jw_t *w, const stoa_json_t *v)
{
    if (!v) {
        stoa_jw_null(w);
        return;
    }
    jw_tree(w, NODE(v));
}

void stoa_jw_raw(stoa_jw_t *w, const char *json, size_t len)
{
    /* yajl's generator cannot splice text, so stored JSON (jsonb columns,
     * ours and already valid) is re-emitted through it: commas and
     * escaping stay the generator's job. */
    char *copy = stoa_xstrndup(json, len);
    char err[128];
    yajl_val v = yajl_tree_parse(copy, err, sizeof(err));
    free(copy);
    if (!v) {
        w->ok = false;
        stoa_jw_null(w);
        return;
    }
    jw_tree(w, v);
    yajl_tree_free(v);
}

typedef struct {
    stoa_buf_t text;
    stoa_jw_t *w;
} arena_writer_t;

static void arena_writer_free(void *data)
{
    arena_writer_t *a = data;
    stoa_jw_free(a->w);
    stoa_buf_free(&a->text);
}

stoa_jw_t *stoa_jw_arena(stoa_arena_t *arena)
{
    arena_writer_t *a = stoa_arena_alloc(arena, sizeof(*a));
    stoa_buf_init(&a->text);
    a->w = stoa_jw_new(&a->text);
    stoa_arena_cleanup(arena, arena_writer_free, a);
    return a->w;
}

char *stoa_jw_arena_text(stoa_arena_t *arena, stoa_jw_t *w)
{
    if (!stoa_jw_ok(w) || w->depth != 0 || !w->done)
        return NULL;
    return stoa_arena_strndup(arena, w->out->data, w->out->len);
}

char *stoa_json_pair(stoa_arena_t *arena, const char *key, const char *value)
{
    stoa_jw_t *w = stoa_jw_arena(arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, key, value);
    stoa_jw_object_close(w);
    return stoa_jw_arena_text(arena, w);
}
