/* json.h - JSON in (an arena tree, depth-limited) and out (yajl generator).
 *
 * Parsed documents are arena-owned: every node and string of the tree is in
 * the arena given to stoa_json_parse (nothing in malloc) and goes with its
 * reset. Values are read through typed accessors that return NULL/false
 * on a type mismatch instead of trusting the input. */
#ifndef STOA_JSON_H
#define STOA_JSON_H

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/core.h"

#define STOA_JSON_MAX_DEPTH 32

typedef struct stoa_json_s stoa_json_t; /* a node of a parsed document */

/* Parses len bytes of text. Returns STOA_OK and *out, or STOA_DECLINED with
 * a reason in err (malformed, deeper than max_depth, not UTF-8). */
STOA_MUSTCHECK int stoa_json_parse(stoa_arena_t *arena, const char *text,
                                   size_t len, int max_depth, stoa_json_t **out,
                                   char *err, size_t errlen);

bool stoa_json_is_object(const stoa_json_t *v);
bool stoa_json_is_array(const stoa_json_t *v);
bool stoa_json_is_string(const stoa_json_t *v);
bool stoa_json_is_integer(const stoa_json_t *v);
bool stoa_json_is_number(const stoa_json_t *v);
bool stoa_json_is_bool(const stoa_json_t *v);
bool stoa_json_is_null(const stoa_json_t *v);

/* Member of an object (NULL if v is not an object or has no such key). */
const stoa_json_t *stoa_json_get(const stoa_json_t *v, const char *key);
/* Object members and array items by index. */
size_t stoa_json_len(const stoa_json_t *v);
const char *stoa_json_key_at(const stoa_json_t *v, size_t i);
const stoa_json_t *stoa_json_at(const stoa_json_t *v, size_t i);
/* An object's or array's text as it came in the parsed body, brackets
 * included (valid JSON: the parser checked it; whitespace and escapes as
 * written): false when v is neither or its source is not known. */
bool stoa_json_source(const stoa_json_t *v, const char **text, size_t *len);
/* True when every number in v (v itself, or anywhere inside it) has at
 * most max_int digits before its decimal point and max_frac after it,
 * the exponent applied (1e3: 4 before; 1.5e-3: 4 after). */
bool stoa_json_numbers_fit(const stoa_json_t *v, long max_int, long max_frac);

/* Typed reads: NULL/false when the type does not match. */
const char *stoa_json_string(const stoa_json_t *v);
bool stoa_json_integer(const stoa_json_t *v, int64_t *out);
bool stoa_json_bool(const stoa_json_t *v, bool *out);

/* Writer: a yajl generator appending to a stoa_buf_t. */
typedef struct stoa_jw_s stoa_jw_t;

/* Writes into out (appending). Caller frees with stoa_jw_free(). */
stoa_jw_t *stoa_jw_new(stoa_buf_t *out);
void stoa_jw_free(stoa_jw_t *w);
/* Empties out (stoa_buf_init) and returns a writer into it with the
 * top-level object already open: the start of every JSON document built
 * member by member. Caller closes the object and frees the writer. */
stoa_jw_t *stoa_jw_object_new(stoa_buf_t *out);
/* Clears the generator state and makes it append to out again. */
void stoa_jw_reset(stoa_jw_t *w, stoa_buf_t *out);
void stoa_jw_object_open(stoa_jw_t *w);
void stoa_jw_object_close(stoa_jw_t *w);
void stoa_jw_array_open(stoa_jw_t *w);
void stoa_jw_array_close(stoa_jw_t *w);
void stoa_jw_key(stoa_jw_t *w, const char *key);
void stoa_jw_string(stoa_jw_t *w, const char *s); /* NULL writes null */
void stoa_jw_stringn(stoa_jw_t *w, const char *s, size_t len);
void stoa_jw_integer(stoa_jw_t *w, int64_t v);
void stoa_jw_bool(stoa_jw_t *w, bool v);
void stoa_jw_null(stoa_jw_t *w);
/* Re-emits a parsed value (and everything below it). */
void stoa_jw_value(stoa_jw_t *w, const stoa_json_t *v);
/* Inserts already-serialised JSON (e.g. a jsonb column) verbatim. */
void stoa_jw_raw(stoa_jw_t *w, const char *json, size_t len);
/* Key and value in one call. */
void stoa_jw_kv_string(stoa_jw_t *w, const char *key, const char *s);
void stoa_jw_kv_integer(stoa_jw_t *w, const char *key, int64_t v);
void stoa_jw_kv_bool(stoa_jw_t *w, const char *key, bool v);
/* False once the generator saw a misuse (unbalanced, key outside object). */
bool stoa_jw_ok(const stoa_jw_t *w);

/* A writer for JSON handed on as text (audit details, error details,
 * outbox payloads): writes into a buffer of its own; both are freed at
 * arena reset. */
stoa_jw_t *stoa_jw_arena(stoa_arena_t *arena);
/* The complete text written by a stoa_jw_arena() writer (arena-owned);
 * NULL when it refused a value or a container is still open. */
char *stoa_jw_arena_text(stoa_arena_t *arena, stoa_jw_t *w);
/* {"<key>":"<value>"} (value NULL: null), the usual detail of one id;
 * arena-owned. */
char *stoa_json_pair(stoa_arena_t *arena, const char *key, const char *value);

#endif
