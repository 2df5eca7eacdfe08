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

#include "stoa/db.h"
#include "stoa/http.h"

extern const stoa_db_statement_t stoa_idempotency_statements[];
extern const size_t stoa_idempotency_statements_len;

/* Before the handler: STOA_OK when the handler should run (the key is
 * claimed, or there is no key), STOA_DECLINED when the answer has been
 * written (replay or refusal), STOA_AGAIN when Postgres is down. */
STOA_MUSTCHECK int stoa_idempotency_begin(stoa_request_t *req, bool *claimed);

/* After the handler, when begin claimed the key. */
void stoa_idempotency_end(stoa_request_t *req);

#endif
