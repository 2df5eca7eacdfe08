/* entitlements.h - what a user's plan grants, as SQL shared by the
 * billing pool (GET /v1/billing/entitlements, the entitlements.changed of
 * the Stripe webhooks) and stoa-jobs (the entitlements.changed of a
 * catalogue change), and the job that carries a catalogue change to the
 * users it touches.
 *
 * A catalogue change (a plan's features, a product's key or features, a
 * price arriving for subscriptions that named it already, a free plan
 * created) queues one billing.entitlements_fanout job in its own
 * transaction, only when what a plan grants changed. The job writes an
 * entitlements.changed event for every user whose entitlements now come
 * from that plan, in batches (jobs/entitlements.c). */
#ifndef STOA_ENTITLEMENTS_H
#define STOA_ENTITLEMENTS_H

/* The entitlements of the user `user` (an SQL expression) as one JSON
 * text: the plan of the newest entitling subscription (SPEC §6:
 * trialing, active, past_due) on a price of the catalogue, else the free
 * plan. It walks the catalogue's prices and takes the user's newest
 * subscription on each from subscriptions_entitling_idx (migration 0031),
 * so a user with thousands of subscriptions costs no more than one with
 * two. */
#define STOA_ENTITLEMENTS_SQL(user)                                            \
    "SELECT json_build_object('plan', coalesce(e.key, f.key), "                \
    "'subscription_status', coalesce(e.status, 'none'), 'features', "          \
    "coalesce(e.features, f.features, '{}'::jsonb))::text FROM (SELECT 1) "    \
    "one LEFT JOIN LATERAL (SELECT p.key, s.status, p.features FROM "          \
    "billing.prices pr JOIN billing.plans p ON p.id = pr.plan_id CROSS "       \
    "JOIN LATERAL (SELECT s.status, s.updated_at FROM "                        \
    "billing.subscriptions s WHERE s.user_id = " user " AND "                  \
    "s.stripe_price_id = pr.stripe_price_id AND s.status IN ('trialing', "     \
    "'active', 'past_due') ORDER BY s.updated_at DESC LIMIT 1) s ORDER BY "    \
    "s.updated_at DESC LIMIT 1) e ON true LEFT JOIN billing.plans f ON "       \
    "f.key = 'free' AND e.key IS NULL"

/* Takes the entitlements lock of the user whose id (a uuid expression) is
 * given, held to the commit. Whoever writes an entitlements.changed holds
 * it and reads the entitlements in a later statement (one that sees what
 * the lock's last holder committed), so the last event about a user tells
 * what the user has. Its space is 4242002 of the two-key form; stoactl's
 * migrations use the one-key form. A NULL id takes none (the function is
 * strict). */
#define STOA_ENTITLEMENTS_LOCK_SQL(id)                                         \
    "pg_advisory_xact_lock(4242002, hashtext((" id ")::text))"

/* The fan-out's outbox kind. Payload: {"plan_id", "price_id" (a Stripe
 * price id: only the users subscribed on it; null: everyone the plan
 * entitles), "change" (a uuid of the change: the events' ids derive from
 * it, so a batch written twice writes nothing twice), "after" (absent on
 * the first batch: the last user id of the one before)}. */
#define STOA_ENTITLEMENTS_FANOUT_KIND "billing.entitlements_fanout"

/* An INSERT of one fan-out per row of `from` (a FROM clause and its
 * WHERE), for the plan id and Stripe price id expressions given. */
#define STOA_ENTITLEMENTS_FANOUT_SQL(plan, price, from)                        \
    "INSERT INTO jobs.outbox (kind, payload) SELECT "                          \
    "'" STOA_ENTITLEMENTS_FANOUT_KIND "', jsonb_build_object('plan_id', " plan \
    ", 'price_id', " price ", 'change', gen_random_uuid()) " from

#endif
