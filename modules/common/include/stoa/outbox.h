/* outbox.h - enqueue work for stoa-jobs inside the caller's transaction.
 *
 * The row is written on the caller's open transaction, so the job exists
 * exactly when the change that causes it commits. A dedupe key makes the
 * enqueue idempotent per (kind, key). */
#ifndef STOA_OUTBOX_H
#define STOA_OUTBOX_H

#include "stoa/arena.h"
#include "stoa/db.h"

/* Statements the outbox needs; every program's connections prepare them
 * (stoa_ctx_open). */
enum {
    STOA_OUTBOX_SQL_ENQUEUE,
    STOA_OUTBOX_SQL_JOB_COUNTS, /* open jobs per kind, for readiness */
    STOA_OUTBOX_SQL_COUNT
};
/* Columns of STOA_OUTBOX_SQL_JOB_COUNTS. */
enum {
    STOA_OUTBOX_COUNTS_COL_KIND,
    STOA_OUTBOX_COUNTS_COL_QUEUED,
    STOA_OUTBOX_COUNTS_COL_RUNNING,
    STOA_OUTBOX_COUNTS_COL_DEAD
};
#define STOA_OUTBOX_SQL(id) (&stoa_outbox_statements[STOA_OUTBOX_SQL_##id])
extern const stoa_db_statement_t stoa_outbox_statements[];
extern const size_t stoa_outbox_statements_len;

/* kind: "email.send", ...; payload_json: a JSON object (our own text);
 * dedupe_key may be NULL; delay_s >= 0. Returns STOA_OK (also when the
 * dedupe key already exists), STOA_AGAIN or STOA_ERROR. */
STOA_MUSTCHECK int stoa_outbox_enqueue(stoa_db_t *db, stoa_arena_t *arena,
                                       const char *kind,
                                       const char *payload_json,
                                       const char *dedupe_key, long delay_s);

/* A domain event (user.created, subscription.updated, ...) for outbound
 * webhooks: enqueued as kind "event" with payload
 * {"id","type","created","data"}; data_json is a JSON object of our own
 * making. The event id is its dedupe key. */
STOA_MUSTCHECK int stoa_outbox_event(stoa_db_t *db, stoa_arena_t *arena,
                                     const char *type, const char *data_json);

/* The event object of stoa_outbox_event ({"id": "evt_<uuid>", "type",
 * "created", "data"}) without enqueueing it; *uuid (may be NULL) gets the
 * id's UUID. Arena-owned; NULL when the JSON writer refused it. */
char *stoa_outbox_event_text(stoa_arena_t *arena, const char *type,
                             const char *data_json, const char **uuid);

#endif
