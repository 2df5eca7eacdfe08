/* fuzz_json.c - the JSON parser, its accessors and the writer.
 *
 * Oracles (abort() on violation): an accepted document is never deeper
 * than the cap; re-emitting it through the accessors and the writer gives
 * text that parses again and re-emits identically; the same text spliced
 * with stoa_jw_raw is unchanged; every string escaped with
 * stoa_buf_json_escape parses back to itself; every object and array
 * knows its source text, which runs from its opening bracket to its
 * closing one and parses alone to a container of the same kind and
 * length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_escape(stoa_arena_t *arena, const char *s)
{
    stoa_buf_t b;
    stoa_buf_init(&b);
    size_t len = strlen(s);
    stoa_buf_puts(&b, "\"");
    stoa_buf_json_escape(&b, s, len);
    stoa_buf_puts(&b, "\"");
    stoa_json_t *v;
    char err[128];
    if (stoa_json_parse(arena, b.data, b.len, 1, &v, err, sizeof(err)) !=
            STOA_OK ||
        !stoa_json_is_string(v) || strcmp(stoa_json_string(v), s) != 0)
        abort();
    stoa_buf_free(&b);
}

static void check_source(stoa_arena_t *arena, const stoa_json_t *v)
{
    const char *src;
    size_t len;
    if (!stoa_json_source(v, &src, &len))
        abort();
    bool object = stoa_json_is_object(v);
    if (len < 2 || src[0] != (object ? '{' : '[') ||
        src[len - 1] != (object ? '}' : ']'))
        abort();
    char *copy = stoa_arena_strndup(arena, src, len);
    stoa_json_t *again;
    char err[128];
    if (stoa_json_parse(arena, copy, len, STOA_JSON_MAX_DEPTH, &again, err,
                        sizeof(err)) != STOA_OK ||
        stoa_json_is_object(again) != object ||
        stoa_json_len(again) != stoa_json_len(v))
        abort();
}

/* Writes v through the public accessors. Non-integer numbers have no
 * accessor for their text, so they are written as null: the output is
 * still a fixed point of parse + emit. */
static void emit(stoa_arena_t *arena, stoa_jw_t *w, const stoa_json_t *v,
                 int depth, bool escape_strings)
{
    if (stoa_json_is_object(v) || stoa_json_is_array(v)) {
        if (depth >= STOA_JSON_MAX_DEPTH)
            abort(); /* the parser let a too deep document through */
        check_source(arena, v);
    }
    int64_t i;
    bool b;
    if (stoa_json_is_object(v)) {
        stoa_jw_object_open(w);
        for (size_t k = 0; k < stoa_json_len(v); k++) {
            const char *key = stoa_json_key_at(v, k);
            if (!key || !stoa_json_get(v, key))
                abort();
            stoa_jw_key(w, key);
            emit(arena, w, stoa_json_at(v, k), depth + 1, escape_strings);
        }
        if (stoa_json_key_at(v, stoa_json_len(v)) ||
            stoa_json_at(v, stoa_json_len(v)))
            abort();
        stoa_jw_object_close(w);
    } else if (stoa_json_is_array(v)) {
        stoa_jw_array_open(w);
        for (size_t k = 0; k < stoa_json_len(v); k++)
            emit(arena, w, stoa_json_at(v, k), depth + 1, escape_strings);
        if (stoa_json_at(v, stoa_json_len(v)) || stoa_json_key_at(v, 0))
            abort();
        stoa_jw_array_close(w);
    } else if (stoa_json_is_string(v)) {
        const char *s = stoa_json_string(v);
        if (!s || stoa_json_integer(v, &i) || stoa_json_bool(v, &b))
            abort();
        if (escape_strings)
            check_escape(arena, s);
        stoa_jw_string(w, s);
    } else if (stoa_json_integer(v, &i)) {
        if (!stoa_json_is_number(v) || stoa_json_string(v))
            abort();
        stoa_jw_integer(w, i);
    } else if (stoa_json_is_number(v)) {
        stoa_jw_null(w);
    } else if (stoa_json_bool(v, &b)) {
        stoa_jw_bool(w, b);
    } else if (stoa_json_is_null(v)) {
        stoa_jw_null(w);
    } else {
        abort(); /* a node of no known type */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    /* The parser wants text[len] == '\0'. */
    char *text = stoa_arena_strndup(arena, (const char *)data, size);
    stoa_json_t *doc;
    char err[256];
    int rc = stoa_json_parse(arena, text, size, STOA_JSON_MAX_DEPTH, &doc, err,
                             sizeof(err));
    if (rc != STOA_OK) {
        if (rc != STOA_DECLINED || doc || !memchr(err, '\0', sizeof(err)))
            abort();
        stoa_arena_destroy(arena);
        return 0;
    }

    stoa_buf_t first, second, spliced;
    stoa_buf_init(&first);
    stoa_buf_init(&second);
    stoa_buf_init(&spliced);
    stoa_jw_t *w = stoa_jw_new(&first);
    emit(arena, w, doc, 0, true);
    if (!stoa_jw_ok(w))
        abort();

    stoa_json_t *again;
    if (stoa_json_parse(arena, first.data ? first.data : "", first.len,
                        STOA_JSON_MAX_DEPTH, &again, err,
                        sizeof(err)) != STOA_OK)
        abort();
    stoa_jw_reset(w, &second);
    emit(arena, w, again, 0, false);
    if (!stoa_jw_ok(w) || second.len != first.len ||
        memcmp(second.data, first.data, first.len) != 0)
        abort();

    stoa_jw_reset(w, &spliced);
    stoa_jw_array_open(w);
    stoa_jw_raw(w, first.data, first.len);
    stoa_jw_array_close(w);
    if (!stoa_jw_ok(w) || spliced.len != first.len + 2 ||
        memcmp(spliced.data + 1, first.data, first.len) != 0)
        abort();

    stoa_jw_free(w);
    stoa_buf_free(&first);
    stoa_buf_free(&second);
    stoa_buf_free(&spliced);
    stoa_arena_destroy(arena);
    return 0;
}
