/* outbox.c - the producer side of the transactional outbox. */
#include "stoa/outbox.h"

#include <stdio.h>

const stoa_db_statement_t stoa_outbox_statements[] = {
    {"outbox_enqueue",
     "INSERT INTO jobs.outbox (kind, payload, dedupe_key, run_at) "
     "VALUES ($1, $2::jsonb, $3, now() + make_interval(secs => $4::int)) "
     "ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL "
     "DO NOTHING",
     4},
};
const size_t stoa_outbox_statements_len = STOA_ARRAY_LEN(stoa_outbox_statements);

int stoa_outbox_enqueue(stoa_db_t *db, stoa_arena_t *arena, const char *kind,
                        const char *payload_json, const char *dedupe_key,
                        long delay_s)
{
    char delay[24];
    snprintf(delay, sizeof(delay), "%ld", delay_s < 0 ? 0 : delay_s);
    const char *params[] = {kind, payload_json, dedupe_key, delay};
    return stoa_db_exec(db, arena, "outbox_enqueue", params, NULL);
}
