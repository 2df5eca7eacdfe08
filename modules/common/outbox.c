/* outbox.c - the producer side of the transactional outbox. */
#include "stoa/outbox.h"

#include <stdio.h>
#include <string.h>

#include "stoa/crypto.h"
#include "stoa/json.h"

const stoa_db_statement_t stoa_outbox_statements[STOA_OUTBOX_SQL_COUNT] = {
    [STOA_OUTBOX_SQL_ENQUEUE] =
        {"outbox_enqueue",
         "INSERT INTO jobs.outbox (kind, payload, dedupe_key, run_at) "
         "VALUES ($1, $2::jsonb, $3, now() + make_interval(secs => $4::int)) "
         "ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL "
         "DO NOTHING",
         4},
    /* Open jobs per kind: queued (due or waiting for a retry), running
     * (leased), dead. */
    [STOA_OUTBOX_SQL_JOB_COUNTS] =
        {"outbox_counts",
         "SELECT kind, count(*) FILTER (WHERE dead_at IS NULL AND "
         "(locked_until IS NULL OR locked_until < now())), count(*) FILTER "
         "(WHERE dead_at IS NULL AND locked_until >= now()), count(*) FILTER "
         "(WHERE dead_at IS NOT NULL) FROM jobs.outbox WHERE done_at IS NULL "
         "GROUP BY kind ORDER BY kind",
         0},
};
const size_t stoa_outbox_statements_len =
    STOA_ARRAY_LEN(stoa_outbox_statements);

int stoa_outbox_enqueue(stoa_db_t *db, stoa_arena_t *arena, const char *kind,
                        const char *payload_json, const char *dedupe_key,
                        long delay_s)
{
    char delay[24];
    snprintf(delay, sizeof(delay), "%ld", delay_s < 0 ? 0 : delay_s);
    const char *params[] = {kind, payload_json, dedupe_key, delay};
    return stoa_db_exec(db, arena, STOA_OUTBOX_SQL(ENQUEUE), params, NULL);
}

char *stoa_outbox_event_text(stoa_arena_t *arena, const char *type,
                             const char *data_json, const char **uuid)
{
    char id[STOA_UUID_STR_LEN + 1];
    stoa_uuid_v4(id);
    /* type is one of our own dotted names: no escaping needed, checked. */
    for (const char *p = type; *p; p++)
        STOA_ASSERT((*p >= 'a' && *p <= 'z') || *p == '.' || *p == '_');
    stoa_jw_t *w = stoa_jw_arena(arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", stoa_arena_sprintf(arena, "evt_%s", id));
    stoa_jw_kv_string(w, "type", type);
    stoa_jw_kv_integer(w, "created", stoa_unix_time());
    stoa_jw_key(w, "data");
    stoa_jw_raw(w, data_json, strlen(data_json));
    stoa_jw_object_close(w);
    if (uuid)
        *uuid = stoa_arena_strdup(arena, id);
    return stoa_jw_arena_text(arena, w);
}

int stoa_outbox_event(stoa_db_t *db, stoa_arena_t *arena, const char *type,
                      const char *data_json)
{
    const char *id;
    char *payload = stoa_outbox_event_text(arena, type, data_json, &id);
    if (!payload)
        return STOA_ERROR;
    return stoa_outbox_enqueue(db, arena, "event", payload, id, 0);
}
