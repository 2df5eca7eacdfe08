/* statements.c - every query of the billing pool. */
#include "billing.h"
#include "stoa/entitlements.h"

#define EPOCH_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define FROM_US(p)                                                             \
    "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"

/* A subscription and an invoice as the user's own routes show them; the
 * domain events about them carry the same (SUBSCRIPTION_COL_*,
 * INVOICE_COL_*). */
#define SUBSCRIPTION_SELECT                                                                                             \
    "SELECT s.stripe_subscription_id, s.status, p.key, p.name, pr.id, "                                                 \
    "pr.amount, pr.currency, pr.interval, " STOA_DB_TS("s.current_period_end") ", s.cancel_at_period_end, " STOA_DB_TS( \
        "s.trial_end") ", s.stripe_price_id FROM billing.subscriptions "                                                \
                       "s LEFT JOIN billing.prices pr ON pr.stripe_price_id = s.stripe_price_id "                       \
                       "LEFT JOIN billing.plans p ON p.id = pr.plan_id"
#define INVOICE_SELECT                                                         \
    "SELECT i.id, i.number, i.amount_due, i.amount_paid, i.currency, "         \
    "i.status, " STOA_DB_TS(                                                   \
        "i.created") ", i.hosted_invoice_url, "                                \
                     "i.invoice_pdf, " EPOCH_US(                               \
                         "i.created") ", i.amount_refunded FROM "              \
                                      "billing.invoices i"

/* A subscription status's stage in its life (SUBSCRIPTION_UPSERT):
 * 0 incomplete, 1 live, 2 ended. */
#define STATUS_STAGE(col)                                                      \
    "(CASE " col " WHEN 'incomplete' THEN 0 WHEN 'canceled' THEN 2 WHEN "      \
    "'incomplete_expired' THEN 2 ELSE 1 END)"

const stoa_db_statement_t billing_statements[BILLING_SQL_COUNT] = {
    /* --- catalogue ---------------------------------------------------- */
    [BILLING_SQL_PLANS_PUBLIC] = {"plans_public",
                                  "SELECT " BILLING_PLAN_COLUMNS
                                  " FROM billing.plans p WHERE p.active "
                                  "ORDER BY p.sort_order, p.key",
                                  1},
    [BILLING_SQL_PLAN_BY_ID] = {"plan_by_id",
                                "SELECT " BILLING_PLAN_COLUMNS
                                " FROM billing.plans p WHERE p.id = "
                                "$2::uuid",
                                2},
    /* A new plan entitles no one yet, but for a new free plan: every user
     * without a subscription gets its features (stoa/entitlements.h). */
    [BILLING_SQL_PLAN_INSERT] =
        {"plan_insert",
         "WITH ins AS (INSERT INTO billing.plans (key, name, description, "
         "features, active, sort_order) VALUES ($1, $2, coalesce($3, ''), "
         "coalesce($4::jsonb, '{}'::jsonb), coalesce($5::bool, true), "
         "coalesce($6::int, 0)) ON CONFLICT (key) DO NOTHING RETURNING id, "
         "key), fan AS (" STOA_ENTITLEMENTS_FANOUT_SQL(
             "ins.id", "NULL::text",
             "FROM ins WHERE ins.key = 'free'") ") SELECT id FROM ins",
         6},
    /* The features before and after: a fan-out when they differ. The row
     * is locked by reading it before the update (`seen`; a locking read
     * after it would skip the row this statement updated), so a
     * concurrent change is seen whole. */
    [BILLING_SQL_PLAN_UPDATE] =
        {"plan_update",
         "WITH old AS (SELECT id, features FROM billing.plans WHERE id = "
         "$1::uuid FOR UPDATE), upd AS (UPDATE billing.plans SET name = "
         "coalesce($2, name), description = coalesce($3, description), "
         "features = coalesce($4::jsonb, features), active = "
         "coalesce($5::bool, active), sort_order = coalesce($6::int, "
         "sort_order), updated_at = now() FROM (SELECT count(*) FROM old) seen "
         "WHERE id = $1::uuid RETURNING id, features), fan AS (" STOA_ENTITLEMENTS_FANOUT_SQL(
             "upd.id", "NULL::text",
             "FROM upd JOIN old USING (id) WHERE upd.features IS DISTINCT FROM "
             "old.features") ") SELECT id FROM upd",
         6},
    [BILLING_SQL_PRICE_INSERT] =
        {"price_insert",
         "INSERT INTO billing.prices (plan_id, amount, currency, interval) "
         "SELECT $1::uuid, $2::bigint, $3, $4 WHERE EXISTS (SELECT 1 FROM "
         "billing.plans WHERE id = $1::uuid) RETURNING id",
         4},
    [BILLING_SQL_PLAN_FOR_SYNC] =
        {"plan_for_sync",
         "SELECT id, key, name, description, features::text, active, "
         "stripe_product_id FROM billing.plans WHERE id = $1::uuid FOR UPDATE",
         1},
    [BILLING_SQL_PRICES_FOR_SYNC] =
        {"prices_for_sync",
         "SELECT id, amount, currency, interval, active, stripe_price_id FROM "
         "billing.prices WHERE plan_id = $1::uuid ORDER BY created_at",
         1},
    [BILLING_SQL_PLAN_SET_PRODUCT] =
        {"plan_set_product",
         "UPDATE billing.plans SET stripe_product_id = $2 WHERE id = $1::uuid",
         2},
    [BILLING_SQL_PRICE_SET_STRIPE] =
        {"price_set_stripe",
         "UPDATE billing.prices SET stripe_price_id = $2 WHERE id = $1::uuid",
         2},

    /* --- the caller's billing ----------------------------------------- */
    [BILLING_SQL_PRICE_FOR_CHECKOUT] =
        {"price_for_checkout",
         "SELECT pr.stripe_price_id, pr.active AND p.active FROM billing.prices "
         "pr JOIN billing.plans p ON p.id = pr.plan_id WHERE pr.id = $1::uuid",
         1},
    [BILLING_SQL_CUSTOMER_OF_USER] =
        {"customer_of_user",
         "SELECT stripe_customer_id FROM billing.customers WHERE user_id = "
         "$1::uuid",
         1},
    [BILLING_SQL_USER_CONTACT] =
        {"user_contact",
         "SELECT email, name FROM auth.users WHERE id = $1::uuid AND status = "
         "'active'",
         1},
    [BILLING_SQL_CUSTOMER_INSERT] =
        {"customer_insert",
         "INSERT INTO billing.customers (user_id, stripe_customer_id) VALUES "
         "($1::uuid, $2) ON CONFLICT DO NOTHING",
         2},
    [BILLING_SQL_LIVE_SUBSCRIPTION_OF_USER] =
        {"live_subscription_of_user",
         "SELECT stripe_subscription_id FROM billing.subscriptions WHERE user_id "
         "= $1::uuid AND status IN ('trialing', 'active', 'past_due') LIMIT 1",
         1},
    [BILLING_SQL_SUBSCRIPTION_OF_USER] =
        {"subscription_of_user",
         SUBSCRIPTION_SELECT
         " WHERE s.user_id = $1::uuid ORDER BY (s.status IN "
         "('trialing', 'active', 'past_due')) DESC, s.updated_at DESC LIMIT 1",
         1},
    [BILLING_SQL_SUBSCRIPTION_SET_CANCEL] =
        {"subscription_set_cancel",
         "UPDATE billing.subscriptions SET cancel_at_period_end = true, "
         "updated_at = now() WHERE stripe_subscription_id = $1",
         1},
    [BILLING_SQL_INVOICES_OF_USER] =
        {"invoices_of_user",
         INVOICE_SELECT
         " WHERE i.user_id = $1::uuid AND ($2::bigint IS NULL OR (i.created, i.id) "
         "< (" FROM_US("$2") ", $3::uuid)) ORDER BY i.created DESC, i.id DESC "
                             "LIMIT $4::int",
         4},
    /* The answer of GET /v1/billing/entitlements, built once here for the
     * route and for the entitlements.changed event alike (ENTITLEMENTS,
     * above). */
    [BILLING_SQL_ENTITLEMENTS_OF_USER] = {"entitlements_of_user",
                                          STOA_ENTITLEMENTS_SQL("$1::uuid"), 1},
    /* Whose subscription an event is about, before it is applied (the
     * user SUBSCRIPTION_UPSERT keeps or links, in the same order), with
     * that user's entitlements lock taken: two events about one user (an
     * upgrade's deletion and creation) apply one after the other, so each
     * reads the entitlements before it with the other's committed, and
     * the last entitlements.changed tells what the user has. No user, no
     * lock. */
    [BILLING_SQL_SUBSCRIPTION_OWNER] =
        {"subscription_owner",
         "SELECT o.id, " STOA_ENTITLEMENTS_LOCK_SQL(
             "o.id") " FROM (SELECT coalesce((SELECT user_id FROM "
                     "billing.subscriptions WHERE stripe_subscription_id = "
                     "$1), (SELECT id FROM auth.users WHERE id = $2::uuid), "
                     "(SELECT user_id FROM billing.customers WHERE "
                     "stripe_customer_id = $3)) AS id) o",
         3},
    /* The same lock, for a user known already (a checkout's). */
    [BILLING_SQL_ENTITLEMENTS_LOCK] = {"entitlements_lock",
                                       "SELECT " STOA_ENTITLEMENTS_LOCK_SQL(
                                           "$1::uuid"),
                                       1},

    /* --- Stripe webhooks ---------------------------------------------- */
    /* The primary key makes a repeat (also a concurrent one, which waits
     * on the index) insert nothing. The row is stored as processed: the
     * event is applied in the same transaction, or nothing of it stays. */
    [BILLING_SQL_EVENT_INSERT] =
        {"event_insert",
         "INSERT INTO billing.stripe_events (id, type, created, payload, "
         "processed_at) VALUES ($1, $2, $3::bigint, $4::jsonb, now()) ON "
         "CONFLICT (id) DO NOTHING RETURNING id",
         4},
    /* Why an applied event changed nothing (stale, malformed, ignored). */
    [BILLING_SQL_EVENT_ERROR] =
        {"event_error",
         "UPDATE billing.stripe_events SET error = $2 WHERE id = $1", 2},
    [BILLING_SQL_LINK_CUSTOMER] =
        {"link_customer",
         "INSERT INTO billing.customers (user_id, stripe_customer_id) SELECT "
         "u.id, $2 FROM auth.users u WHERE u.id = $1::uuid ON CONFLICT DO "
         "NOTHING",
         2},
    [BILLING_SQL_BACKFILL_SUBSCRIPTIONS] =
        {"backfill_subscriptions",
         "UPDATE billing.subscriptions SET user_id = c.user_id FROM "
         "billing.customers c WHERE c.stripe_customer_id = $1 AND "
         "billing.subscriptions.stripe_customer_id = $1 AND "
         "billing.subscriptions.user_id IS NULL RETURNING c.user_id",
         1},
    [BILLING_SQL_BACKFILL_INVOICES] =
        {"backfill_invoices",
         "UPDATE billing.invoices SET user_id = c.user_id FROM billing.customers "
         "c WHERE c.stripe_customer_id = $1 AND billing.invoices."
         "stripe_customer_id = $1 AND billing.invoices.user_id IS NULL",
         1},
    /* Applied only when the event is not older than the last one applied.
     * Stripe's times are whole seconds, and a subscription's creation
     * (incomplete) and its first payment (active) often share one: at
     * equal times the status may only move forward in its life,
     * incomplete, then the live ones (trialing, active, past_due, unpaid,
     * paused: the later delivery wins among them), then the ended ones,
     * which are never undone. */
    [BILLING_SQL_SUBSCRIPTION_UPSERT] =
        {"subscription_upsert",
         "INSERT INTO billing.subscriptions AS s (stripe_subscription_id, "
         "user_id, stripe_customer_id, status, stripe_price_id, "
         "current_period_start, current_period_end, cancel_at_period_end, "
         "canceled_at, trial_end, stripe_event_at) VALUES ($1, coalesce((SELECT "
         "id FROM auth.users WHERE id = $2::uuid), (SELECT user_id FROM "
         "billing.customers WHERE stripe_customer_id = $3)), $3, $4, $5, "
         "to_timestamp($6::bigint), to_timestamp($7::bigint), $8::bool, "
         "to_timestamp($9::bigint), to_timestamp($10::bigint), $11::bigint) "
         "ON CONFLICT (stripe_subscription_id) DO UPDATE SET user_id = "
         "coalesce(s.user_id, EXCLUDED.user_id), status = EXCLUDED.status, "
         "stripe_price_id = coalesce(EXCLUDED.stripe_price_id, "
         "s.stripe_price_id), current_period_start = "
         "EXCLUDED.current_period_start, current_period_end = "
         "EXCLUDED.current_period_end, cancel_at_period_end = "
         "EXCLUDED.cancel_at_period_end, canceled_at = EXCLUDED.canceled_at, "
         "trial_end = EXCLUDED.trial_end, stripe_event_at = "
         "EXCLUDED.stripe_event_at, updated_at = now() WHERE s.stripe_event_at "
         "< EXCLUDED.stripe_event_at OR (s.stripe_event_at = "
         "EXCLUDED.stripe_event_at AND " STATUS_STAGE("EXCLUDED.status") " >= " STATUS_STAGE(
             "s.status") ") RETURNING s.user_id, s.status",
         11},
    [BILLING_SQL_INVOICE_UPSERT] =
        {"invoice_upsert",
         "INSERT INTO billing.invoices AS i (stripe_invoice_id, user_id, "
         "stripe_customer_id, stripe_subscription_id, number, status, "
         "amount_due, amount_paid, currency, created, hosted_invoice_url, "
         "invoice_pdf, stripe_event_at) VALUES ($1, (SELECT user_id FROM "
         "billing.customers WHERE stripe_customer_id = $2), $2, $3, $4, $5, "
         "$6::bigint, $7::bigint, $8, to_timestamp($9::bigint), $10, $11, "
         "$12::bigint) ON CONFLICT (stripe_invoice_id) DO UPDATE SET user_id = "
         "coalesce(i.user_id, EXCLUDED.user_id), stripe_subscription_id = "
         "coalesce(EXCLUDED.stripe_subscription_id, i.stripe_subscription_id), "
         "number = coalesce(EXCLUDED.number, i.number), status = "
         "EXCLUDED.status, amount_due = EXCLUDED.amount_due, amount_paid = "
         "greatest(i.amount_paid, EXCLUDED.amount_paid), hosted_invoice_url = "
         "coalesce(EXCLUDED.hosted_invoice_url, i.hosted_invoice_url), "
         "invoice_pdf = coalesce(EXCLUDED.invoice_pdf, i.invoice_pdf), "
         "stripe_event_at = EXCLUDED.stripe_event_at, updated_at = now() WHERE "
         "i.stripe_event_at <= EXCLUDED.stripe_event_at AND NOT (i.status IN "
         "('paid', 'void', 'uncollectible') AND EXCLUDED.status IN ('draft', "
         "'open')) RETURNING i.user_id",
         12},
    [BILLING_SQL_USER_CONTACT_ANY] =
        {"user_contact_any",
         "SELECT email, name FROM auth.users WHERE id = $1::uuid AND status = "
         "'active'",
         1},
    /* Refunds only grow: the larger figure wins whatever the order. */
    [BILLING_SQL_CHARGE_UPSERT] =
        {"charge_upsert",
         "INSERT INTO billing.charges AS c (stripe_charge_id, stripe_invoice_id, "
         "amount, amount_refunded, currency, status, refunded, stripe_event_at) "
         "VALUES ($1, $2, $3::bigint, $4::bigint, $5, $6, $7::bool, $8::bigint) "
         "ON CONFLICT (stripe_charge_id) DO UPDATE SET amount_refunded = "
         "greatest(c.amount_refunded, EXCLUDED.amount_refunded), refunded = "
         "c.refunded OR EXCLUDED.refunded, stripe_invoice_id = coalesce("
         "c.stripe_invoice_id, EXCLUDED.stripe_invoice_id), status = CASE WHEN "
         "c.stripe_event_at <= EXCLUDED.stripe_event_at THEN EXCLUDED.status "
         "ELSE c.status END, stripe_event_at = greatest(c.stripe_event_at, "
         "EXCLUDED.stripe_event_at), updated_at = now()",
         8},
    [BILLING_SQL_INVOICE_REFUNDED] =
        {"invoice_refunded",
         "UPDATE billing.invoices SET amount_refunded = greatest("
         "amount_refunded, $2::bigint), updated_at = now() WHERE "
         "stripe_invoice_id = $1",
         2},
    /* A product named by metadata.plan_key links to our plan of that key
     * when that plan has no product yet (a plan made here and never
     * synced); otherwise the product id itself is the key. */
    [BILLING_SQL_PRODUCT_LINK_BY_KEY] =
        {"product_link_by_key",
         "UPDATE billing.plans SET stripe_product_id = $2 WHERE key = $1 AND "
         "stripe_product_id IS NULL AND NOT EXISTS (SELECT 1 FROM billing.plans "
         "WHERE stripe_product_id = $2)",
         2},
    /* With a fan-out when the plan is new or its key or features changed
     * (the row locked first, as in PLAN_UPDATE). */
    [BILLING_SQL_PRODUCT_UPSERT] =
        {"product_upsert",
         "WITH old AS (SELECT id, key, features FROM billing.plans WHERE "
         "stripe_product_id = $6 FOR UPDATE), up AS ("
         "INSERT INTO billing.plans AS p (key, name, description, features, "
         "active, stripe_product_id, stripe_event_at) SELECT CASE WHEN EXISTS "
         "(SELECT 1 FROM billing.plans WHERE key = $1 AND stripe_product_id IS "
         "DISTINCT FROM $6) THEN lower($6) ELSE $1 END, $2, $3, $4::jsonb, "
         "$5::bool, $6, $7::bigint FROM (SELECT count(*) FROM old) seen ON CONFLICT (stripe_product_id) DO UPDATE "
         "SET key = CASE WHEN p.key = lower(p.stripe_product_id) AND NOT EXISTS "
         "(SELECT 1 FROM billing.plans WHERE key = EXCLUDED.key) THEN "
         "EXCLUDED.key ELSE p.key END, "
         "name = EXCLUDED.name, description = EXCLUDED.description, "
         "features = EXCLUDED.features, active = EXCLUDED.active, "
         "stripe_event_at = EXCLUDED.stripe_event_at, updated_at = now() WHERE "
         "p.stripe_event_at <= EXCLUDED.stripe_event_at RETURNING p.id, p.key, "
         "p.features), fan AS (" STOA_ENTITLEMENTS_FANOUT_SQL(
             "up.id", "NULL::text",
             "FROM up LEFT JOIN old USING (id) WHERE old.id IS NULL OR up.key "
             "IS DISTINCT FROM old.key OR up.features IS DISTINCT FROM "
             "old.features") ") SELECT count(*) FROM up",
         7},
    /* A price may arrive before its product: a hidden placeholder plan
     * holds it until the product event fills the plan in. */
    [BILLING_SQL_PRODUCT_PLACEHOLDER] =
        {"product_placeholder",
         "INSERT INTO billing.plans (key, name, active, stripe_product_id) "
         "VALUES (lower($1), $1, false, $1) ON CONFLICT DO NOTHING",
         1},
    /* A price only ever arrives once for its plan (the plan is not
     * updated): the subscriptions that named it before it came now take
     * their entitlements from its plan, a fan-out to their users. Queued
     * for every new price: the job, after this commit, also sees a
     * subscription whose webhook is still open now (and finds no one for
     * a price nobody subscribed to yet). */
    [BILLING_SQL_PRICE_UPSERT] =
        {"price_upsert",
         "WITH up AS (INSERT INTO billing.prices AS pr (plan_id, amount, currency, interval, "
         "active, stripe_price_id, stripe_event_at) VALUES ((SELECT id FROM "
         "billing.plans WHERE stripe_product_id = $1), $2::bigint, $3, $4, "
         "$5::bool, $6, $7::bigint) ON CONFLICT (stripe_price_id) DO UPDATE SET "
         "active = EXCLUDED.active, stripe_event_at = EXCLUDED.stripe_event_at "
         "WHERE pr.stripe_event_at <= EXCLUDED.stripe_event_at RETURNING "
         "pr.plan_id, pr.stripe_price_id, pr.xmax = 0 AS inserted), fan AS "
         "(" STOA_ENTITLEMENTS_FANOUT_SQL(
             "up.plan_id", "up.stripe_price_id",
             "FROM up WHERE up.inserted") ") SELECT count(*) FROM up",
         7},

    /* --- finance views ------------------------------------------------ */
    [BILLING_SQL_FINANCE_SUBSCRIPTIONS] =
        {"finance_subscriptions",
         "SELECT s.id, s.user_id, u.email, s.status, p.key, s.stripe_price_id, " STOA_DB_TS("s.current_period_end") ", s.cancel_at_period_end, " STOA_DB_TS(
             "s.updated_at") ", " EPOCH_US("s.updated_at") ", "
                                                           "s.stripe_subscription_id FROM billing.subscriptions s LEFT JOIN "
                                                           "auth.users u ON u.id = s.user_id LEFT JOIN billing.prices pr ON "
                                                           "pr.stripe_price_id = s.stripe_price_id LEFT JOIN billing.plans p ON "
                                                           "p.id = pr.plan_id WHERE ($1::text IS NULL OR s.status = $1) AND "
                                                           "($2::text IS NULL OR p.key = $2) AND ($3::timestamptz IS NULL OR "
                                                           "s.updated_at >= $3::timestamptz) AND ($4::timestamptz IS NULL OR "
                                                           "s.updated_at < $4::timestamptz) AND ($5::bigint IS NULL OR "
                                                           "(s.updated_at, s.id) < (" FROM_US(
                                                               "$5") ", $6::uuid)) ORDER BY "
                                                                     "s.updated_at DESC, s.id DESC LIMIT $7::int",
         7},
    [BILLING_SQL_FINANCE_INVOICES] =
        {"finance_invoices",
         "SELECT i.id, i.user_id, u.email, i.number, i.status, i.amount_due, "
         "i.amount_paid, i.amount_refunded, i.currency, " STOA_DB_TS("i.created") ", " EPOCH_US(
             "i.created") ", i.hosted_invoice_url, p.key FROM "
                          "billing.invoices i LEFT JOIN auth.users u ON u.id = i.user_id LEFT "
                          "JOIN billing.subscriptions s ON s.stripe_subscription_id = "
                          "i.stripe_subscription_id LEFT JOIN billing.prices pr ON "
                          "pr.stripe_price_id = s.stripe_price_id LEFT JOIN billing.plans p ON "
                          "p.id = pr.plan_id WHERE ($1::text IS NULL OR i.status = $1) AND "
                          "($2::text IS NULL OR p.key = $2) AND ($3::timestamptz IS NULL OR "
                          "i.created >= $3::timestamptz) AND ($4::timestamptz IS NULL OR "
                          "i.created < $4::timestamptz) AND ($5::bigint IS NULL OR (i.created, "
                          "i.id) < (" FROM_US(
                              "$5") ", $6::uuid)) ORDER BY i.created DESC, i.id "
                                    "DESC LIMIT $7::int",
         7},
    /* --- the objects of domain events -------------------------------- */
    /* The subscription as a webhook has just written it, for its domain
     * event, and the entitlements of user $2 (its owner) now, for
     * entitlements.changed: one round trip. */
    [BILLING_SQL_SUBSCRIPTION_BY_STRIPE_ID] =
        {"subscription_by_stripe_id",
         "SELECT sub.*, (" STOA_ENTITLEMENTS_SQL(
             "$2::uuid") ") FROM (" SUBSCRIPTION_SELECT
                         " WHERE s.stripe_subscription_id = $1) sub",
         2},
    [BILLING_SQL_INVOICE_BY_STRIPE_ID] = {"invoice_by_stripe_id",
                                          INVOICE_SELECT
                                          " WHERE i.stripe_invoice_id = $1",
                                          1},
};
const size_t billing_statements_len = STOA_ARRAY_LEN(billing_statements);
