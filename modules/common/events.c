/* events.c - the table of domain events. */
#include "stoa/events.h"

#include <string.h>

#include "stoa/core.h"
#include "stoa/outbox.h"

const stoa_event_t stoa_events[] = {
    {STOA_EVENT_USER_CREATED, "an account was registered or created",
     STOA_EVENT_DATA_USER},
    {STOA_EVENT_USER_UPDATED,
     "a user's profile, role or status (reactivation) changed",
     STOA_EVENT_DATA_USER},
    {STOA_EVENT_USER_DELETED,
     "an account was erased at its owner's request or by an admin",
     STOA_EVENT_DATA_USER},
    {STOA_EVENT_USER_SUSPENDED, "an account was suspended",
     STOA_EVENT_DATA_USER},
    {STOA_EVENT_SUBSCRIPTION_UPDATED,
     "a subscription was created, changed or canceled",
     STOA_EVENT_DATA_SUBSCRIPTION},
    {STOA_EVENT_INVOICE_PAID, "an invoice was paid", STOA_EVENT_DATA_INVOICE},
    {STOA_EVENT_INVOICE_PAYMENT_FAILED, "an invoice's payment failed",
     STOA_EVENT_DATA_INVOICE},
    {STOA_EVENT_ENTITLEMENTS_CHANGED,
     "a subscription change altered what a user's plan grants",
     STOA_EVENT_DATA_ENTITLEMENTS},
};
const size_t stoa_events_len = STOA_ARRAY_LEN(stoa_events);

const stoa_event_t *stoa_event_find(const char *name)
{
    for (size_t i = 0; name && i < stoa_events_len; i++)
        if (strcmp(stoa_events[i].name, name) == 0)
            return &stoa_events[i];
    return NULL;
}

enum { EVENT_SQL_USER_SNAPSHOT, EVENT_SQL_COUNT };

const stoa_db_statement_t stoa_event_statements[EVENT_SQL_COUNT] = {
    /* The members of STOA_EVENT_DATA_USER, built by Postgres so every
     * string is escaped once, by the same rules. */
    [EVENT_SQL_USER_SNAPSHOT] =
        {"event_user_snapshot",
         "SELECT json_build_object('id', id, 'email', email, 'name', name, "
         "'role', role, 'status', status, 'created_at', " STOA_DB_TS(
             "created_at") ")::text FROM auth.users WHERE id = $1::uuid",
         1},
};
const size_t stoa_event_statements_len = STOA_ARRAY_LEN(stoa_event_statements);

int stoa_event_user(stoa_db_t *db, stoa_arena_t *arena, const char *type,
                    const char *user_id)
{
    const char *params[] = {user_id};
    stoa_db_result_t *res;
    int rc =
        stoa_db_exec(db, arena, &stoa_event_statements[EVENT_SQL_USER_SNAPSHOT],
                     params, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return STOA_DECLINED;
    return stoa_outbox_event(db, arena, type, stoa_db_value(res, 0, 0));
}
