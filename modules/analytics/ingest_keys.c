/* ingest_keys.c - analytics ingest keys: create (the key is shown once,
 * only its SHA-256 is kept), list, revoke, and the check of a key sent
 * with an event batch, cached per process for ANALYTICS_KEY_CACHE_MS. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "analytics.h"
#include "stoa/crypto.h"

/* Keys found live, by digest: a web page sends a batch every few seconds
 * from each visitor, and one key serves them all. Shared by the handler
 * threads of the process under its own lock; entries older than
 * ANALYTICS_KEY_CACHE_MS are looked up again, so a revocation reaches
 * every process within that. Keys found dead are not kept: a forged key
 * costs a primary-key lookup, and the edge limits how many. */
#define KEY_CACHE_SLOTS 64
typedef struct {
    uint8_t digest[STOA_SHA256_LEN];
    uint64_t checked_us; /* 0: empty */
} key_slot_t;
static struct {
    pthread_mutex_t lock;
    key_slot_t slot[KEY_CACHE_SLOTS];
} key_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool cache_fresh(const uint8_t *digest)
{
    uint64_t now = stoa_now_us();
    pthread_mutex_lock(&key_cache.lock);
    const key_slot_t *s = &key_cache.slot[digest[0] % KEY_CACHE_SLOTS];
    bool hit = s->checked_us &&
               now - s->checked_us < (uint64_t)ANALYTICS_KEY_CACHE_MS * 1000 &&
               memcmp(s->digest, digest, STOA_SHA256_LEN) == 0;
    pthread_mutex_unlock(&key_cache.lock);
    return hit;
}

static void cache_store(const uint8_t *digest, uint64_t checked_us)
{
    pthread_mutex_lock(&key_cache.lock);
    key_slot_t *s = &key_cache.slot[digest[0] % KEY_CACHE_SLOTS];
    memcpy(s->digest, digest, STOA_SHA256_LEN);
    s->checked_us = checked_us;
    pthread_mutex_unlock(&key_cache.lock);
}

/* The key's shape: the tag, then base64url characters (bounded). */
static bool key_shape_valid(const char *key)
{
    size_t tag = strlen(ANALYTICS_KEY_TAG);
    if (!key || strncmp(key, ANALYTICS_KEY_TAG, tag) != 0)
        return false;
    size_t n = 0;
    for (const char *c = key + tag; *c; c++, n++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '_';
        if (!ok || n >= 64)
            return false;
    }
    return n >= 16;
}

/* "\x<hex>", a bytea parameter. */
static char *digest_param(stoa_arena_t *arena, const uint8_t *digest)
{
    char *p = stoa_arena_alloc(arena, 2 + 2 * STOA_SHA256_LEN + 1);
    p[0] = '\\';
    p[1] = 'x';
    stoa_hex_encode(digest, STOA_SHA256_LEN, p + 2);
    return p;
}

int analytics_ingest_key_check(stoa_request_t *req, const char *key)
{
    if (!key_shape_valid(key))
        return STOA_DECLINED;
    uint8_t digest[STOA_SHA256_LEN];
    stoa_sha256(key, strlen(key), digest);
    if (cache_fresh(digest))
        return STOA_OK;
    /* The time of the look-up, taken before it: the entry never outlives
     * the answer's age. */
    uint64_t asked = stoa_now_us();
    const char *params[] = {digest_param(req->arena, digest)};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          ANALYTICS_SQL(INGEST_KEY_FIND), params, &res);
    if (rc != STOA_OK)
        return rc == STOA_ERROR ? STOA_ERROR : STOA_AGAIN;
    if (stoa_db_rows(res) == 0)
        return STOA_DECLINED;
    cache_store(digest, asked);
    return STOA_OK;
}

static const stoa_column_t key_columns[] = {
    {"id", KEY_COL_ID, STOA_COLUMN_TEXT},
    {"name", KEY_COL_NAME, STOA_COLUMN_TEXT},
    {"prefix", KEY_COL_PREFIX, STOA_COLUMN_TEXT},
    {"created_by", KEY_COL_CREATED_BY, STOA_COLUMN_TEXT},
    {"created_at", KEY_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"revoked_at", KEY_COL_REVOKED_AT, STOA_COLUMN_TEXT},
};

int analytics_ingest_keys_create(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"name", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *name =
        stoa_field_string(req, body, "name", STOA_FIELD_REQUIRED, 1, 100);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    uint8_t raw[24];
    char encoded[40];
    stoa_random_bytes(raw, sizeof(raw));
    stoa_b64url_encode(raw, sizeof(raw), encoded);
    stoa_wipe(raw, sizeof(raw));
    char *key = stoa_arena_sprintf(req->arena, ANALYTICS_KEY_TAG "%s", encoded);
    stoa_wipe(encoded, sizeof(encoded));
    uint8_t digest[STOA_SHA256_LEN];
    stoa_sha256(key, strlen(key), digest);
    char *prefix =
        stoa_arena_strndup(req->arena, key, ANALYTICS_KEY_PREFIX_LEN);
    const char *params[] = {name, prefix, digest_param(req->arena, digest),
                            req->principal.user_id};
    stoa_db_result_t *res;
    int rc =
        stoa_request_begin(req, ANALYTICS_SQL(INGEST_KEY_INSERT), params, &res);
    if (rc != STOA_OK)
        return rc;
    const char *id = stoa_db_value(res, 0, KEY_COL_ID);
    if ((rc = stoa_request_commit(
             req, "ingest_key.created", NULL,
             stoa_json_pair(req->arena, "ingest_key_id", id))) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 201);
    stoa_jw_object_open(w);
    stoa_http_write_columns(w, res, 0, key_columns,
                            STOA_ARRAY_LEN(key_columns));
    stoa_jw_kv_string(w, "key", key);
    stoa_jw_object_close(w);
    int sent = stoa_http_send(req);
    stoa_wipe(key, strlen(key));
    return sent;
}

int analytics_ingest_keys_list(stoa_request_t *req)
{
    static const stoa_list_t list = {key_columns, STOA_ARRAY_LEN(key_columns),
                                     NULL, KEY_COL_CURSOR_US, KEY_COL_ID};
    return stoa_http_keyset_list(req, ANALYTICS_SQL(INGEST_KEY_LIST), &list);
}

int analytics_ingest_keys_delete(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such ingest key");
    const char *params[] = {id};
    int rc =
        stoa_request_begin(req, ANALYTICS_SQL(INGEST_KEY_REVOKE), params, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such ingest key");
    if (rc != STOA_OK ||
        (rc = stoa_request_commit(
             req, "ingest_key.revoked", NULL,
             stoa_json_pair(req->arena, "ingest_key_id", id))) != STOA_OK)
        return rc;
    return stoa_http_empty(req, 204);
}
