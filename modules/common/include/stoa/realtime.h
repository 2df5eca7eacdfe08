/* realtime.h - the live channel (GET /v1/realtime): its channel names and
 * the two outbox jobs every producer writes and stoa-jobs reads.
 *
 * nginx's nchan module holds the subscribers; the auth pool only decides
 * which channels a caller hears (from the verified identity, never from
 * the client) and hands the connection over with X-Accel-Redirect. The
 * channels, all of nchan channel group "stoa":
 *
 *   u.<user uuid>     the user's own events
 *   s.<session uuid>  one login session's (session.revoked)
 *   admin             what admins hear besides their own
 *
 * Jobs (outbox kinds), written in the transaction of their cause:
 *
 *   realtime.publish  {"channels": ["u.<uuid>", ...],       1..1000 names
 *                      "event": {"id": "evt_<uuid>", "type": "<name>",
 *                                "created": <unix s>, "data": {...}}}
 *     stoa-jobs POSTs the event object's JSON text to the channels; the
 *     SSE `event:` line is its type. Delivery is at least once: a retry
 *     after a partial failure may repeat an event, which a client drops
 *     by its id.
 *   realtime.close    {"channels": [...]}
 *     deletes the channels, which closes every connection subscribed to
 *     one of them (a connection hears all its channels or none).
 *
 * Producers: stoa_realtime_enqueue (C), the trigger of migration 0023 on
 * auth.sessions (session.revoked, SQL), the domain-event fan-out of
 * stoa-jobs (jobs/webhooks.c). Reader: jobs/realtime.c. */
#ifndef STOA_REALTIME_H
#define STOA_REALTIME_H

#include <stddef.h>

#include "stoa/arena.h"
#include "stoa/db.h"

#define STOA_REALTIME_JOB_PUBLISH "realtime.publish"
#define STOA_REALTIME_JOB_CLOSE "realtime.close"

/* Channels one job may name. */
#define STOA_REALTIME_MAX_CHANNELS 1000

#define STOA_REALTIME_CHANNEL_USER_PREFIX "u."
#define STOA_REALTIME_CHANNEL_SESSION_PREFIX "s."
#define STOA_REALTIME_CHANNEL_ADMIN "admin"

/* The live channel's events besides the domain events of stoa/events.h
 * that also reach it. */
#define STOA_REALTIME_EVENT_SESSION_REVOKED "session.revoked"
/* A product update for its recipient (jobs/updates.c). */
#define STOA_REALTIME_EVENT_UPDATE_CREATED "update.created"

/* "u.<user_id>" and "s.<session_id>", arena-owned (the ids are UUIDs, not
 * checked here). */
char *stoa_realtime_channel_user(stoa_arena_t *arena, const char *user_id);
char *stoa_realtime_channel_session(stoa_arena_t *arena,
                                    const char *session_id);

/* True when s is a channel name this contract allows: "admin", or "u." or
 * "s." followed by a UUID. */
bool stoa_realtime_channel_valid(const char *s);

/* Writes a realtime.publish row in the caller's open transaction: event
 * `type` (a dotted lower-case name of our own) with data_json (a JSON
 * object of our own making) to channels[0..n) (1..1000 valid names).
 * STOA_DECLINED for a bad argument (nothing written), else
 * stoa_outbox_enqueue()'s result. */
STOA_MUSTCHECK int stoa_realtime_enqueue(stoa_db_t *db, stoa_arena_t *arena,
                                         const char *const *channels, size_t n,
                                         const char *type,
                                         const char *data_json);

#endif
