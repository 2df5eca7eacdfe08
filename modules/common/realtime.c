/* realtime.c - the live channel's names and its publish job, producer
 * side (stoa/realtime.h). */
#include "stoa/realtime.h"

#include <string.h>

#include "stoa/crypto.h"
#include "stoa/json.h"
#include "stoa/outbox.h"

char *stoa_realtime_channel_user(stoa_arena_t *arena, const char *user_id)
{
    return stoa_arena_sprintf(arena, STOA_REALTIME_CHANNEL_USER_PREFIX "%s",
                              user_id);
}

char *stoa_realtime_channel_session(stoa_arena_t *arena, const char *session_id)
{
    return stoa_arena_sprintf(arena, STOA_REALTIME_CHANNEL_SESSION_PREFIX "%s",
                              session_id);
}

bool stoa_realtime_channel_valid(const char *s)
{
    if (!s)
        return false;
    if (strcmp(s, STOA_REALTIME_CHANNEL_ADMIN) == 0)
        return true;
    /* Lower-case only: nchan compares channel ids byte for byte, and the
     * ids come from Postgres' uuid output, which is lower-case. */
    if ((strncmp(s, STOA_REALTIME_CHANNEL_USER_PREFIX, 2) != 0 &&
         strncmp(s, STOA_REALTIME_CHANNEL_SESSION_PREFIX, 2) != 0) ||
        !stoa_uuid_valid(s + 2))
        return false;
    for (const char *p = s + 2; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            return false;
    return true;
}

int stoa_realtime_enqueue(stoa_db_t *db, stoa_arena_t *arena,
                          const char *const *channels, size_t n,
                          const char *type, const char *data_json)
{
    if (n == 0 || n > STOA_REALTIME_MAX_CHANNELS || !type || !data_json)
        return STOA_DECLINED;
    for (size_t i = 0; i < n; i++)
        if (!stoa_realtime_channel_valid(channels[i]))
            return STOA_DECLINED;
    char *event = stoa_outbox_event_text(arena, type, data_json, NULL);
    if (!event)
        return STOA_DECLINED;
    stoa_jw_t *w = stoa_jw_arena(arena);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "channels");
    stoa_jw_array_open(w);
    for (size_t i = 0; i < n; i++)
        stoa_jw_string(w, channels[i]);
    stoa_jw_array_close(w);
    stoa_jw_key(w, "event");
    stoa_jw_raw(w, event, strlen(event));
    stoa_jw_object_close(w);
    char *payload = stoa_jw_arena_text(arena, w);
    if (!payload)
        return STOA_ERROR;
    /* No dedupe key: every call is its own event (its own id). */
    return stoa_outbox_enqueue(db, arena, STOA_REALTIME_JOB_PUBLISH, payload,
                               NULL, 0);
}
