/* idempotency.h - Idempotency-Key replay for POSTs that create things
 * (SPEC §3). Routes opt in with STOA_ROUTE_IDEMPOTENT; the dispatcher
 * does the rest: the first request with a key runs and its answer is
 * stored (admin.idempotency_keys); a repeat with the same key and body gets
 * that answer again (header Idempotent-Replayed: true); the same key with
 * another body is 422 `idempotency_key_reused`; a repeat while the first
 * is still running is 409 `idempotency_in_progress`. 5xx answers are not
 * stored, so a retry after a failure runs again. Keys are scoped to the
 * caller (user id, or client address for anonymous routes).
 *
 * Stored answers may carry one-time secrets (SPEC §3), so they are kept
 * only sealed (AES-256-GCM under a per-record key derived from the
 * config's idempotency_seal_key, the caller and the Idempotency-Key).
 * Without a seal key, or when a stored answer no longer opens (the seal
 * key was replaced), the work is still not done twice: a repeat answers
 * 409 `idempotency_replay_unavailable`. */
#ifndef STOA_IDEMPOTENCY_H
#define STOA_IDEMPOTENCY_H

#include "stoa/arena.h"
#include "stoa/db.h"

extern const stoa_db_statement_t stoa_idempotency_statements[];
extern const size_t stoa_idempotency_statements_len;

/* One call made with an Idempotency-Key. All fields borrowed. */
typedef struct {
    const char *key;      /* the Idempotency-Key (stoa_idempotency_key_sane) */
    const char *scope;    /* the caller: "user:<id>" or "ip:<address>" */
    const char *hash;     /* stoa_idempotency_hash() of the request */
    const char *seal_key; /* conf idempotency_seal_key (may be empty) */
} stoa_idem_call_t;

typedef enum {
    STOA_IDEM_RUN,     /* claimed: do the work, then finish */
    STOA_IDEM_REPLAY,  /* done before: answer status + body again */
    STOA_IDEM_REUSED,  /* the key came with another request: 422 */
    STOA_IDEM_RUNNING, /* the first call is still running: 409 */
    STOA_IDEM_LOST,    /* done, its answer not kept or not opening: 409 */
} stoa_idem_state_t;

typedef struct {
    stoa_idem_state_t state;
    int status; /* REPLAY */
    char *body; /* REPLAY: arena-owned; the caller wipes it after use */
    size_t body_len;
} stoa_idem_outcome_t;

/* 1..255 printable ASCII characters. */
bool stoa_idempotency_key_sane(const char *key);
/* What a repeat must match: method, path and body; arena-owned bytea
 * text. */
char *stoa_idempotency_hash(stoa_arena_t *arena, const char *method,
                            const char *path, const char *body, size_t len);

/* The sealing of a stored answer, which claim and finish use (exposed so
 * its properties can be tested without Postgres). status is the stored
 * status as text ("201"); it and call->hash are the associated data, and
 * the key is bound to call->seal_key, call->scope and call->key.
 *   stoa_idempotency_seal  the sealed answer as a bytea parameter ("\x" +
 *                          hex), arena-owned; NULL when there is no seal
 *                          key or sealing failed (nothing is kept);
 *   stoa_idempotency_open  the answer again, arena-owned, NUL-terminated,
 *                          its length in *len; NULL when sealed_hex is
 *                          NULL (none kept) or it does not open: damaged,
 *                          another seal key, scope, key, status or hash. */
const char *stoa_idempotency_seal(stoa_arena_t *arena,
                                  const stoa_idem_call_t *call,
                                  const char *status, const char *body,
                                  size_t len);
char *stoa_idempotency_open(stoa_arena_t *arena, const stoa_idem_call_t *call,
                            const char *status, const char *sealed_hex,
                            size_t *len);

/* Claims the call's key or reads what became of its first call. STOA_OK
 * with *out, STOA_AGAIN when Postgres is down, STOA_ERROR otherwise. */
STOA_MUSTCHECK int stoa_idempotency_claim(stoa_db_t *db, stoa_arena_t *arena,
                                          const stoa_idem_call_t *call,
                                          stoa_idem_outcome_t *out);
/* After a claimed call: keeps its answer sealed (status 1..499) or, for a
 * 5xx or no answer (status 0), releases the key so a retry runs again. */
STOA_MUSTCHECK int stoa_idempotency_finish(stoa_db_t *db, stoa_arena_t *arena,
                                           const stoa_idem_call_t *call,
                                           int status, const char *body,
                                           size_t len);

#endif
