/* json.c - parsing into an arena tree (yajl's callback parser, a depth
 * cap, strict UTF-8), typed reads, and a generator that appends to a
 * stoa_buf_t. */
#include "stoa/json.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "stoa/format.h"

/* A node of a parsed document, built in the caller's arena by yajl's
 * callback parser: a large body's tree is a few big arena blocks given
 * back at reset, never thousands of small blocks left in malloc's free
 * lists (yajl's own tree mallocs every node, key and string). */
enum node_type {
    NODE_OBJECT,
    NODE_ARRAY,
    NODE_STRING,
    NODE_NUMBER,
    NODE_TRUE,
    NODE_FALSE,
    NODE_NULL,
};

struct stoa_json_s {
    unsigned char type; /* enum node_type */
    bool integer;       /* a number whose text is an int64 */
    const char *key;    /* the member's key, when the parent is an object */
    union {
        const char *string;
        struct {
            const char *text; /* as written, re-emitted by stoa_jw_value */
            int64_t value;    /* when integer */
        } number;
        struct {
            stoa_json_t **items; /* members or elements, in text order */
            /* The container's text as written, from its opening bracket
             * to its closing one; src NULL when not known. */
            const char *src;
            /* 32 bits each (texts are refused from 4 GiB on): a node
             * stays 40 bytes, and a tree of a large body of small values
             * costs little more than it did without the source. */
            uint32_t len;
            uint32_t src_len;
        } container;
    } u;
};
_Static_assert(sizeof(struct stoa_json_s) <= 40,
               "a parsed node stays within 40 bytes");

/* What prescan looks for, outside strings and inside them; every other
 * byte is skipped by one table look-up (the pass runs over every byte of
 * every body). */
enum { PS_NONE, PS_QUOTE, PS_OPEN, PS_CLOSE, PS_SLASH };

static const unsigned char prescan_class[256] = {
    ['"'] = PS_QUOTE, ['['] = PS_OPEN,  ['{'] = PS_OPEN,
    [']'] = PS_CLOSE, ['}'] = PS_CLOSE, ['/'] = PS_SLASH,
};

/* One pass before yajl sees the text. It measures nesting (so yajl never
 * builds more than max_depth levels), refuses comments (JSON has no '/'
 * outside strings; yajl would refuse them too, this says why) and refuses
 * an escaped NUL (\u0000), which the NUL-terminated accessors would
 * silently cut at. */
static const char *prescan(const char *text, size_t len, int max_depth)
{
    const unsigned char *p = (const unsigned char *)text;
    int depth = 0;
    size_t i = 0;
    for (;;) {
        while (i < len && prescan_class[p[i]] == PS_NONE)
            i++;
        if (i >= len)
            return NULL;
        switch (prescan_class[p[i++]]) {
        case PS_QUOTE:
            /* A string: only a quote or a backslash matters in it. */
            for (;;) {
                while (i < len && p[i] != '"' && p[i] != '\\')
                    i++;
                if (i >= len)
                    return NULL; /* unterminated: yajl says so */
                if (p[i++] == '"')
                    break;
                if (i >= len)
                    return NULL; /* a backslash last: yajl says so */
                if (i + 4 < len && p[i] == 'u' &&
                    memcmp(text + i + 1, "0000", 4) == 0)
                    return "escaped NUL in a string";
                i++; /* the escaped character */
            }
            break;
        case PS_OPEN:
            if (++depth > max_depth)
                return "too deep";
            break;
        case PS_CLOSE:
            depth--;
            break;
        default: /* PS_SLASH */
            return "comments are not JSON";
        }
    }
}

/* An open container while its children are parsed: they wait on the
 * builder's pending stack from index first on. */
typedef struct {
    stoa_json_t *node;
    size_t first;
} open_container_t;

typedef struct {
    stoa_arena_t *arena;
    const char *text; /* the input: strings pointing into it are raw */
    size_t len;
    /* Strings, keys and number texts, packed without alignment. Every
     * token's copy plus its NUL fits in the text it came from plus one
     * byte (a string token has two quotes, a number is followed by a
     * delimiter or the end), so one block of len + 1 bytes holds them
     * all; pool_copy still checks. */
    char *pool;
    size_t pool_left;
    /* Children of the open containers, innermost last; a container's
     * children move to an exact array of their own when it closes, so
     * lookups by index stay O(1) and nothing is grown in place. */
    stoa_json_t **pending;
    size_t npending, pending_cap;
    open_container_t *open;
    size_t nopen, open_cap;
    const char *key; /* the key of the member whose value comes next */
    stoa_json_t *root;
    bool bad_utf8; /* a decoded escape was not UTF-8 (a lone surrogate) */
    /* The parser, for its offset in the text when a container opens or
     * closes (yajl has just lexed the bracket when it calls back). */
    yajl_handle h;
} builder_t;

/* Grows one of the builder's stacks inside the arena: the old copy is
 * left for the reset, at most as much again as the final size. */
static void *stack_grow(stoa_arena_t *arena, void *old, size_t *cap,
                        size_t used, size_t item)
{
    /* Small first: most bodies are a handful of members. */
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > SIZE_MAX / item)
        stoa_assert_fail("JSON builder stack overflow", __FILE__, __LINE__);
    void *p = stoa_arena_alloc(arena, ncap * item);
    if (used)
        memcpy(p, old, used * item);
    *cap = ncap;
    return p;
}

static const char *pool_copy(builder_t *b, const unsigned char *s, size_t len)
{
    char *p;
    if (len < b->pool_left) {
        p = b->pool;
        b->pool += len + 1;
        b->pool_left -= len + 1;
    } else {
        p = stoa_arena_alloc(b->arena, len + 1);
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Attaches a new value to the open container (or makes it the root). */
static stoa_json_t *node_add(builder_t *b, enum node_type type)
{
    stoa_json_t *n = stoa_arena_alloc(b->arena, sizeof(*n));
    memset(n, 0, sizeof(*n));
    n->type = (unsigned char)type;
    if (b->nopen == 0) {
        b->root = n;
        return n;
    }
    if (b->open[b->nopen - 1].node->type == NODE_OBJECT) {
        n->key = b->key;
        b->key = NULL;
    }
    if (b->npending == b->pending_cap)
        b->pending = stack_grow(b->arena, b->pending, &b->pending_cap,
                                b->npending, sizeof(*b->pending));
    b->pending[b->npending++] = n;
    return n;
}

/* Strings yajl decoded (escapes) live in its buffer, not in the text; only
 * those can hold what the raw-text check did not see. */
static void check_decoded(builder_t *b, const unsigned char *s, size_t len)
{
    uintptr_t at = (uintptr_t)s, text = (uintptr_t)b->text;
    bool raw = at >= text && at - text <= b->len;
    if (!raw && !stoa_utf8_valid((const char *)s, len))
        b->bad_utf8 = true;
}

static int on_null(void *ctx)
{
    node_add(ctx, NODE_NULL);
    return 1;
}

static int on_boolean(void *ctx, int value)
{
    node_add(ctx, value ? NODE_TRUE : NODE_FALSE);
    return 1;
}

/* The text of an integer (no fraction, no exponent: yajl's lexer has
 * checked the grammar) as an int64; false when it does not fit. */
static bool integer_value(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool negative = s[0] == '-';
    if (negative)
        i++;
    /* Accumulated as a negative number, which reaches INT64_MIN. */
    int64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int digit = s[i] - '0';
        if (v < (INT64_MIN + digit) / 10)
            return false;
        v = v * 10 - digit;
    }
    if (!negative) {
        if (v == INT64_MIN)
            return false;
        v = -v;
    }
    *out = v;
    return true;
}

static int on_number(void *ctx, const char *s, size_t len)
{
    builder_t *b = ctx;
    stoa_json_t *n = node_add(b, NODE_NUMBER);
    n->u.number.text = pool_copy(b, (const unsigned char *)s, len);
    n->integer = integer_value(s, len, &n->u.number.value);
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    builder_t *b = ctx;
    check_decoded(b, s, len);
    stoa_json_t *n = node_add(b, NODE_STRING);
    n->u.string = pool_copy(b, s, len);
    return 1;
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    builder_t *b = ctx;
    check_decoded(b, s, len);
    b->key = pool_copy(b, s, len);
    return 1;
}

static int container_open(builder_t *b, enum node_type type)
{
    stoa_json_t *n = node_add(b, type);
    /* Where the opening bracket is; kept only when the offset points at
     * it, so a parser that reported offsets otherwise would leave the
     * source unknown, never wrong. */
    size_t at = b->h ? yajl_get_bytes_consumed(b->h) : 0;
    if (at >= 1 && at <= b->len &&
        b->text[at - 1] == (type == NODE_OBJECT ? '{' : '['))
        n->u.container.src = b->text + at - 1;
    if (b->nopen == b->open_cap)
        b->open = stack_grow(b->arena, b->open, &b->open_cap, b->nopen,
                             sizeof(*b->open));
    b->open[b->nopen++] = (open_container_t){n, b->npending};
    return 1;
}

static int container_close(void *ctx)
{
    builder_t *b = ctx;
    open_container_t o = b->open[--b->nopen];
    size_t len = b->npending - o.first;
    if (len) {
        o.node->u.container.items =
            stoa_arena_alloc(b->arena, len * sizeof(stoa_json_t *));
        memcpy(o.node->u.container.items, b->pending + o.first,
               len * sizeof(stoa_json_t *));
    }
    o.node->u.container.len = (uint32_t)len;
    b->npending = o.first;
    const char *src = o.node->u.container.src;
    size_t end = b->h ? yajl_get_bytes_consumed(b->h) : 0;
    char close = o.node->type == NODE_OBJECT ? '}' : ']';
    if (src && end <= b->len && b->text + end > src + 1 &&
        b->text[end - 1] == close)
        o.node->u.container.src_len = (uint32_t)(b->text + end - src);
    else
        o.node->u.container.src = NULL;
    return 1;
}

static int on_start_map(void *ctx)
{
    return container_open(ctx, NODE_OBJECT);
}

static int on_start_array(void *ctx)
{
    return container_open(ctx, NODE_ARRAY);
}

static const yajl_callbacks build_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = container_close,
    .yajl_start_array = on_start_array,
    .yajl_end_array = container_close,
};

/* yajl's own state (its lexer, its stack, the buffer it decodes escapes
 * into) also comes from the arena. Its buffers grow by realloc, so each
 * allocation carries its size; free is a no-op, the reset takes it all. */
typedef struct {
    size_t size;
    _Alignas(16) unsigned char data[];
} yajl_block_t;

static void *yajl_arena_malloc(void *ctx, size_t size)
{
    if (size > SIZE_MAX - sizeof(yajl_block_t))
        return NULL;
    yajl_block_t *blk = stoa_arena_alloc(ctx, sizeof(*blk) + size);
    blk->size = size;
    return blk->data;
}

static void *yajl_arena_realloc(void *ctx, void *ptr, size_t size)
{
    if (!ptr)
        return yajl_arena_malloc(ctx, size);
    yajl_block_t *old =
        (yajl_block_t *)((unsigned char *)ptr - offsetof(yajl_block_t, data));
    if (size <= old->size)
        return ptr;
    void *p = yajl_arena_malloc(ctx, size);
    if (p)
        memcpy(p, ptr, old->size);
    return p;
}

static void yajl_arena_free(void *ctx, void *ptr)
{
    (void)ctx;
    (void)ptr;
}

/* Runs yajl over the whole text; NULL when it is well formed, else yajl's
 * reason (first line: the rest is a multi-line excerpt), arena-owned. */
static const char *yajl_run(yajl_handle h, const char *text, size_t len,
                            stoa_arena_t *arena)
{
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st == yajl_status_ok)
        return NULL;
    unsigned char *msg = yajl_get_error(h, 1, (const unsigned char *)text, len);
    const char *why = msg ? stoa_arena_strdup(arena, (const char *)msg) : NULL;
    if (msg)
        yajl_free_error(h, msg);
    if (why) {
        char *nl = strchr(why, '\n');
        if (nl)
            *nl = '\0';
    }
    return why && why[0] ? why : "parse error";
}

int stoa_json_parse(stoa_arena_t *arena, const char *text, size_t len,
                    int max_depth, stoa_json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len >= UINT32_MAX) {
        snprintf(err, errlen, "body too large to parse");
        return STOA_DECLINED;
    }
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
    builder_t b = {.arena = arena, .text = text, .len = len};
    b.pool = stoa_arena_alloc(arena, len + 1);
    b.pool_left = len + 1;
    yajl_alloc_funcs funcs = {yajl_arena_malloc, yajl_arena_realloc,
                              yajl_arena_free, arena};
    yajl_handle h = yajl_alloc(&build_callbacks, &funcs, &b);
    if (!h)
        stoa_assert_fail("yajl_alloc", __FILE__, __LINE__);
    b.h = h;
    why = yajl_run(h, text, len, arena);
    yajl_free(h);
    if (why) {
        snprintf(err, errlen, "malformed JSON: %s", why);
        return STOA_DECLINED;
    }
    /* Checked after the whole text, so a syntax error is reported as
     * such wherever the bad escape is. */
    if (b.bad_utf8) {
        snprintf(err, errlen, "malformed JSON: invalid UTF-8 in an escape");
        return STOA_DECLINED;
    }
    *out = b.root;
    return STOA_OK;
}

bool stoa_json_is_object(const stoa_json_t *v)
{
    return v && v->type == NODE_OBJECT;
}
bool stoa_json_is_array(const stoa_json_t *v)
{
    return v && v->type == NODE_ARRAY;
}
bool stoa_json_is_string(const stoa_json_t *v)
{
    return v && v->type == NODE_STRING;
}
bool stoa_json_is_integer(const stoa_json_t *v)
{
    return v && v->type == NODE_NUMBER && v->integer;
}
bool stoa_json_is_number(const stoa_json_t *v)
{
    return v && v->type == NODE_NUMBER;
}
bool stoa_json_is_bool(const stoa_json_t *v)
{
    return v && (v->type == NODE_TRUE || v->type == NODE_FALSE);
}
bool stoa_json_is_null(const stoa_json_t *v)
{
    return v && v->type == NODE_NULL;
}

const stoa_json_t *stoa_json_get(const stoa_json_t *v, const char *key)
{
    if (!stoa_json_is_object(v))
        return NULL;
    /* Last duplicate wins would let a validator and a reader disagree;
     * the first one is what every reader here sees. One linear scan: the
     * routes read a handful of named members, and a large object is only
     * ever walked by index. */
    for (size_t i = 0; i < v->u.container.len; i++)
        if (strcmp(v->u.container.items[i]->key, key) == 0)
            return v->u.container.items[i];
    return NULL;
}

size_t stoa_json_len(const stoa_json_t *v)
{
    if (stoa_json_is_object(v) || stoa_json_is_array(v))
        return v->u.container.len;
    return 0;
}

const char *stoa_json_key_at(const stoa_json_t *v, size_t i)
{
    if (!stoa_json_is_object(v) || i >= v->u.container.len)
        return NULL;
    return v->u.container.items[i]->key;
}

const stoa_json_t *stoa_json_at(const stoa_json_t *v, size_t i)
{
    if (!(stoa_json_is_object(v) || stoa_json_is_array(v)) ||
        i >= v->u.container.len)
        return NULL;
    return v->u.container.items[i];
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* One number's text (the grammar checked by the parser): digits before
 * its point at most max_int, after it at most max_frac, as a decimal
 * reader places the point (the exponent moves it; leading zeros do not
 * count before it, a zero has none). */
static bool number_fits(const char *s, long max_int, long max_frac)
{
    const char *p = s + (*s == '-');
    const char *int_part = p;
    while (is_digit(*p))
        p++;
    long int_len = p - int_part;
    const char *frac_part = p;
    long frac_len = 0;
    if (*p == '.') {
        frac_part = ++p;
        while (is_digit(*p))
            p++;
        frac_len = p - frac_part;
    }
    long e = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        bool negative = *p == '-';
        if (*p == '+' || *p == '-')
            p++;
        /* Saturated: far past any limit, and no overflow. */
        for (; is_digit(*p); p++)
            if (e < 100000000)
                e = e * 10 + (*p - '0');
        if (negative)
            e = -e;
    }
    if (frac_len - e > max_frac)
        return false;
    long first = -1; /* the first significant digit, in int then frac */
    for (long i = 0; i < int_len && first < 0; i++)
        if (int_part[i] != '0')
            first = i;
    for (long i = 0; i < frac_len && first < 0; i++)
        if (frac_part[i] != '0')
            first = int_len + i;
    return first < 0 || int_len + e - first <= max_int;
}

bool stoa_json_numbers_fit(const stoa_json_t *v, long max_int, long max_frac)
{
    if (!v)
        return true;
    if (v->type == NODE_NUMBER)
        return number_fits(v->u.number.text, max_int, max_frac);
    if (v->type == NODE_OBJECT || v->type == NODE_ARRAY)
        for (size_t i = 0; i < v->u.container.len; i++)
            if (!stoa_json_numbers_fit(v->u.container.items[i], max_int,
                                       max_frac))
                return false;
    return true;
}

bool stoa_json_source(const stoa_json_t *v, const char **text, size_t *len)
{
    if (!v || (v->type != NODE_OBJECT && v->type != NODE_ARRAY) ||
        !v->u.container.src)
        return false;
    *text = v->u.container.src;
    *len = v->u.container.src_len;
    return true;
}

const char *stoa_json_string(const stoa_json_t *v)
{
    return stoa_json_is_string(v) ? v->u.string : NULL;
}

bool stoa_json_integer(const stoa_json_t *v, int64_t *out)
{
    if (!stoa_json_is_integer(v))
        return false;
    *out = v->u.number.value;
    return true;
}

bool stoa_json_bool(const stoa_json_t *v, bool *out)
{
    if (!stoa_json_is_bool(v))
        return false;
    *out = v->type == NODE_TRUE;
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

static void jw_keyn(stoa_jw_t *w, const char *key, size_t len)
{
    if (!w->ok || w->depth == 0 || w->stack[w->depth - 1] != 'o' ||
        w->after_key || !stoa_utf8_valid(key, len)) {
        w->ok = false;
        return;
    }
    jw_check(w, yajl_gen_string(w->gen, (const unsigned char *)key, len));
    w->after_key = true;
}

void stoa_jw_key(stoa_jw_t *w, const char *key)
{
    jw_keyn(w, key, strlen(key));
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

static void jw_number(stoa_jw_t *w, const char *text, size_t len)
{
    if (!jw_value_allowed(w))
        return;
    jw_check(w, yajl_gen_number(w->gen, text, len));
    jw_value_done(w);
}

static void jw_tree(stoa_jw_t *w, const stoa_json_t *v)
{
    switch ((enum node_type)v->type) {
    case NODE_OBJECT:
        stoa_jw_object_open(w);
        for (size_t i = 0; i < v->u.container.len; i++) {
            stoa_jw_key(w, v->u.container.items[i]->key);
            jw_tree(w, v->u.container.items[i]);
        }
        stoa_jw_object_close(w);
        break;
    case NODE_ARRAY:
        stoa_jw_array_open(w);
        for (size_t i = 0; i < v->u.container.len; i++)
            jw_tree(w, v->u.container.items[i]);
        stoa_jw_array_close(w);
        break;
    case NODE_STRING:
        stoa_jw_string(w, v->u.string);
        break;
    case NODE_NUMBER:
        jw_number(w, v->u.number.text, strlen(v->u.number.text));
        break;
    case NODE_TRUE:
    case NODE_FALSE:
        stoa_jw_bool(w, v->type == NODE_TRUE);
        break;
    case NODE_NULL:
        stoa_jw_null(w);
        break;
    }
}

void stoa_jw_value(stoa_jw_t *w, const stoa_json_t *v)
{
    if (!v) {
        stoa_jw_null(w);
        return;
    }
    jw_tree(w, v);
}

/* stoa_jw_raw's callbacks: each parsed token goes straight to the writer,
 * and parsing stops at the writer's first refusal. The events that carry
 * no value have one shape: the writer's call, then whether it still
 * accepts more. */
#define RAW_EVENT(name, call)                                                  \
    static int name(void *ctx)                                                 \
    {                                                                          \
        call(ctx);                                                             \
        return ((stoa_jw_t *)ctx)->ok;                                         \
    }
RAW_EVENT(raw_null, stoa_jw_null)
RAW_EVENT(raw_start_map, stoa_jw_object_open)
RAW_EVENT(raw_end_map, stoa_jw_object_close)
RAW_EVENT(raw_start_array, stoa_jw_array_open)
RAW_EVENT(raw_end_array, stoa_jw_array_close)

static int raw_boolean(void *ctx, int value)
{
    stoa_jw_bool(ctx, value);
    return ((stoa_jw_t *)ctx)->ok;
}

static int raw_number(void *ctx, const char *s, size_t len)
{
    jw_number(ctx, s, len);
    return ((stoa_jw_t *)ctx)->ok;
}

static int raw_string(void *ctx, const unsigned char *s, size_t len)
{
    stoa_jw_stringn(ctx, (const char *)s, len);
    return ((stoa_jw_t *)ctx)->ok;
}

static int raw_map_key(void *ctx, const unsigned char *s, size_t len)
{
    jw_keyn(ctx, (const char *)s, len);
    return ((stoa_jw_t *)ctx)->ok;
}

static const yajl_callbacks raw_callbacks = {
    .yajl_null = raw_null,
    .yajl_boolean = raw_boolean,
    .yajl_number = raw_number,
    .yajl_string = raw_string,
    .yajl_start_map = raw_start_map,
    .yajl_map_key = raw_map_key,
    .yajl_end_map = raw_end_map,
    .yajl_start_array = raw_start_array,
    .yajl_end_array = raw_end_array,
};

void stoa_jw_raw(stoa_jw_t *w, const char *json, size_t len)
{
    /* yajl's generator cannot splice text, so stored JSON (jsonb columns,
     * ours and already valid) is re-emitted through it token by token:
     * commas and escaping stay the generator's job, and no tree is built.
     * yajl's own small state uses malloc here: there is no arena. */
    yajl_handle h = yajl_alloc(&raw_callbacks, NULL, w);
    if (!h)
        stoa_assert_fail("yajl_alloc", __FILE__, __LINE__);
    yajl_status st = yajl_parse(h, (const unsigned char *)json, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    if (st != yajl_status_ok)
        w->ok = false;
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
