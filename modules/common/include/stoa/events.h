/* events.h - the domain events stoa emits (outbox kind "event", fanned out
 * to outbound webhooks by stoa-jobs): their names, what each means, and
 * what its `data` carries.
 *
 * Producers (the auth and billing pools, through stoa_outbox_event) and
 * the webhook endpoints' subscriptions (the admin pool validates `events`
 * against this table) use these constants, never a bare literal: a name
 * spelled two ways is an event nobody receives. The names are public API
 * (docs/openapi.yaml, WebhookEvent) and never change once shipped. */
#ifndef STOA_EVENTS_H
#define STOA_EVENTS_H

#include <stddef.h>

#define STOA_EVENT_USER_CREATED "user.created"
#define STOA_EVENT_USER_UPDATED "user.updated"
#define STOA_EVENT_USER_DELETED "user.deleted"
#define STOA_EVENT_SUBSCRIPTION_UPDATED "subscription.updated"
#define STOA_EVENT_INVOICE_PAID "invoice.paid"
#define STOA_EVENT_INVOICE_PAYMENT_FAILED "invoice.payment_failed"

/* What a subscription may name besides the events: every event. */
#define STOA_EVENT_ALL "*"

/* What an event's `data` holds. */
typedef enum {
    /* {"id": user id}: a reference; the receiver reads the user through
     * the API (the account may be erased by the time it does). */
    STOA_EVENT_DATA_USER_ID,
    /* {"user_id", "stripe_id", "object"}: the Stripe object as received
     * (subscription or invoice), a snapshot at the time of the event. */
    STOA_EVENT_DATA_STRIPE_OBJECT,
} stoa_event_data_t;

typedef struct {
    const char *name;    /* the STOA_EVENT_* above */
    const char *meaning; /* one line, for humans */
    stoa_event_data_t data;
} stoa_event_t;

/* The table, in a stable order. Borrowed (static). */
extern const stoa_event_t stoa_events[];
extern const size_t stoa_events_len;

/* The entry named name, or NULL (also for NULL and for "*"). Borrowed
 * (static). */
const stoa_event_t *stoa_event_find(const char *name);

#endif
