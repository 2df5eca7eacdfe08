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

#include "stoa/db.h"

#define STOA_EVENT_USER_CREATED "user.created"
#define STOA_EVENT_USER_UPDATED "user.updated"
#define STOA_EVENT_USER_DELETED "user.deleted"
#define STOA_EVENT_USER_SUSPENDED "user.suspended"
#define STOA_EVENT_SUBSCRIPTION_UPDATED "subscription.updated"
#define STOA_EVENT_INVOICE_PAID "invoice.paid"
#define STOA_EVENT_INVOICE_PAYMENT_FAILED "invoice.payment_failed"
#define STOA_EVENT_ENTITLEMENTS_CHANGED "entitlements.changed"

/* What a subscription may name besides the events: every event. */
#define STOA_EVENT_ALL "*"

/* What an event's `data` holds: a snapshot of its object at the time of
 * the change, as Stripe's events do, so a receiver needs no call back
 * (and can act on an account erased since). */
typedef enum {
    /* The user (stoa_event_user): {"id", "email", "name", "role",
     * "status", "created_at"}; after an erasure, the anonymised row. */
    STOA_EVENT_DATA_USER,
    /* {"user_id", "stripe_id", "object"}: object is the subscription as
     * GET /v1/billing/subscription shows it. */
    STOA_EVENT_DATA_SUBSCRIPTION,
    /* {"user_id", "stripe_id", "object"}: object is the invoice as
     * GET /v1/billing/invoices shows it. */
    STOA_EVENT_DATA_INVOICE,
    /* {"user_id", "entitlements"}: entitlements as GET
     * /v1/billing/entitlements shows them, after the change. */
    STOA_EVENT_DATA_ENTITLEMENTS,
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

/* The statement the snapshots read; every program's connections prepare
 * it (stoa_ctx_open). */
extern const stoa_db_statement_t stoa_event_statements[];
extern const size_t stoa_event_statements_len;

/* Enqueues event type (a STOA_EVENT_DATA_USER event) about user_id in the
 * caller's open transaction, its data the user's row as this transaction
 * sees it: call it after the change. STOA_DECLINED when there is no such
 * user, else stoa_outbox_event()'s result. */
STOA_MUSTCHECK int stoa_event_user(stoa_db_t *db, stoa_arena_t *arena,
                                   const char *type, const char *user_id);

#endif
