/* webhook.c - Stripe webhooks: verified on the raw body, stored by event
 * id (a repeat does nothing), applied so that reordering cannot move an
 * object backwards, and slow effects (mail, outbound events) queued in
 * the same transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing.h"
#include "stoa/crypto.h"
#include "stoa/events.h"
#include "stoa/log.h"
#include "stoa/mail.h"
#include "stoa/metrics.h"
#include "stoa/outbox.h"

#define SIGNATURE_TOLERANCE_S 300

typedef struct {
    stoa_request_t *req;
    const char *event_id;
    const char *type;
    const char *created; /* unix seconds, as text */
    const stoa_json_t *object;
    const char *touched_user; /* entitlements to drop after commit */
    /* The entitlements of entitled_user before the event was applied:
     * entitlements.changed is emitted when they differ after. */
    const char *entitled_user;
    const char *entitlements_before;
    /* The touched user's entitlements after, when a statement of the
     * event has already read them (else entitlements_event does). */
    const char *entitlements_after;
    bool catalogue_changed; /* plans cache to drop after commit */
    char error[200];        /* why the event could not be applied */
} event_t;

static const char *str(const stoa_json_t *obj, const char *key)
{
    return stoa_json_string(stoa_json_get(obj, key));
}

/* An integer member as text (arena), or NULL when absent/not integer. */
static const char *num(stoa_arena_t *arena, const stoa_json_t *obj,
                       const char *key)
{
    int64_t v;
    if (!stoa_json_integer(stoa_json_get(obj, key), &v))
        return NULL;
    return stoa_arena_sprintf(arena, "%lld", (long long)v);
}

static const char *boolean(const stoa_json_t *obj, const char *key)
{
    bool v = false;
    stoa_json_bool(stoa_json_get(obj, key), &v);
    return v ? "true" : "false";
}

/* An id field that may be a string or an expanded object with "id". */
static const char *ref(const stoa_json_t *obj, const char *key)
{
    const stoa_json_t *v = stoa_json_get(obj, key);
    return stoa_json_is_object(v) ? str(v, "id") : stoa_json_string(v);
}

static int exec(event_t *ev, const stoa_db_statement_t *st,
                const char *const *params, stoa_db_result_t **out)
{
    return stoa_db_exec(stoa_request_db(ev->req), ev->req->arena, st, params,
                        out);
}

/* An upsert guarded by the event's time (SUBSCRIPTION_UPSERT,
 * INVOICE_UPSERT): STOA_DECLINED when it matched no row because a newer
 * event was already applied (recorded as the event's outcome, not an
 * error), else exec's result. */
static int upsert(event_t *ev, const stoa_db_statement_t *st,
                  const char *const *params, stoa_db_result_t **res)
{
    int rc = exec(ev, st, params, res);
    if (rc == STOA_OK && stoa_db_rows(*res) == 0) {
        snprintf(ev->error, sizeof(ev->error),
                 "stale: a newer event was already applied");
        return STOA_DECLINED;
    }
    return rc;
}

/* The domain event about the subscription or invoice object_id, as this
 * transaction has just written it: its data carries the object as the
 * user's own route shows it (stoa/events.h), not Stripe's. */
static int domain_event(event_t *ev, const char *type, const char *user_id,
                        const char *object_id)
{
    bool subscription =
        stoa_event_find(type)->data == STOA_EVENT_DATA_SUBSCRIPTION;
    const char *p[] = {object_id, user_id};
    stoa_db_result_t *res;
    int rc = exec(ev,
                  subscription ? BILLING_SQL(SUBSCRIPTION_BY_STRIPE_ID)
                               : BILLING_SQL(INVOICE_BY_STRIPE_ID),
                  p, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return STOA_ERROR; /* written by this transaction a moment ago */
    /* The same row carries the owner's entitlements now: kept for
     * entitlements_event when the owner is the user the event touched. */
    if (subscription && user_id && ev->touched_user &&
        strcmp(user_id, ev->touched_user) == 0) {
        ev->entitlements_after =
            stoa_db_value(res, 0, SUBSCRIPTION_COL_ENTITLEMENTS);
        if (!ev->entitlements_after)
            return STOA_ERROR;
    }
    stoa_buf_t data;
    stoa_buf_init(&data);
    stoa_jw_t *w = stoa_jw_new(&data);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "user_id", user_id);
    stoa_jw_kv_string(w, "stripe_id", object_id);
    stoa_jw_key(w, "object");
    if (subscription) {
        billing_write_subscription(w, res);
    } else {
        stoa_jw_object_open(w);
        stoa_http_write_columns(w, res, 0, billing_invoice_columns,
                                BILLING_INVOICE_NCOLUMNS);
        stoa_jw_object_close(w);
    }
    stoa_jw_object_close(w);
    stoa_jw_free(w);
    rc = stoa_outbox_event(stoa_request_db(ev->req), ev->req->arena, type,
                           data.data);
    stoa_buf_free(&data);
    return rc;
}

/* Remembers user_id's entitlements before the event changes anything. */
static int entitlements_before(event_t *ev, const char *user_id)
{
    ev->entitled_user = user_id;
    return billing_entitlements_of(ev->req, user_id, &ev->entitlements_before);
}

/* After the event is applied: entitlements.changed about the user it
 * touched, when what the plan grants differs from before (or was not
 * known before), in the same transaction. */
static int entitlements_event(event_t *ev)
{
    const char *user_id = ev->touched_user;
    if (!user_id)
        return STOA_OK;
    const char *after = ev->entitlements_after;
    int rc;
    if (!after &&
        (rc = billing_entitlements_of(ev->req, user_id, &after)) != STOA_OK)
        return rc;
    if (ev->entitled_user && strcmp(ev->entitled_user, user_id) == 0 &&
        strcmp(ev->entitlements_before, after) == 0)
        return STOA_OK;
    stoa_jw_t *w = stoa_jw_arena(ev->req->arena);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "user_id", user_id);
    stoa_jw_key(w, "entitlements");
    stoa_jw_raw(w, after, strlen(after));
    stoa_jw_object_close(w);
    const char *data = stoa_jw_arena_text(ev->req->arena, w);
    if (!data)
        return STOA_ERROR;
    return stoa_outbox_event(stoa_request_db(ev->req), ev->req->arena,
                             STOA_EVENT_ENTITLEMENTS_CHANGED, data);
}

/* Mail to the user about a billing event; deduplicated per event. */
static int mail_user(event_t *ev, const char *user_id, const char *tmpl,
                     const char *amount, const char *currency)
{
    if (!user_id)
        return STOA_OK;
    const char *p[] = {user_id};
    stoa_db_result_t *res;
    int rc = exec(ev, BILLING_SQL(USER_CONTACT_ANY), p, &res);
    if (rc != STOA_OK || stoa_db_rows(res) == 0)
        return rc;
    stoa_buf_t payload;
    stoa_buf_init(&payload);
    stoa_jw_t *w = stoa_jw_new(&payload);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "name", stoa_db_value(res, 0, 1));
    if (amount && currency) {
        long long minor = atoll(amount);
        stoa_jw_kv_string(w, "amount",
                          stoa_arena_sprintf(ev->req->arena, "%lld.%02lld %s",
                                             minor / 100, minor % 100,
                                             currency));
    }
    stoa_jw_kv_string(w, "link", ev->req->ctx->conf.public_url);
    stoa_jw_object_close(w);
    stoa_jw_free(w);
    char *key = stoa_arena_sprintf(ev->req->arena, "%s:%s", tmpl, ev->event_id);
    const stoa_mail_t mail = {.template_name = tmpl,
                              .to = stoa_db_value(res, 0, 0),
                              .data_json = payload.data,
                              .dedupe_key = key};
    rc = stoa_mail_enqueue(stoa_request_db(ev->req), ev->req->arena, &mail);
    stoa_buf_free(&payload);
    return rc;
}

static int on_checkout_completed(event_t *ev)
{
    const char *user_id = str(ev->object, "client_reference_id");
    if (!user_id)
        user_id = str(stoa_json_get(ev->object, "metadata"), "user_id");
    const char *customer = ref(ev->object, "customer");
    if (!user_id || !stoa_uuid_valid(user_id) || !customer) {
        snprintf(ev->error, sizeof(ev->error),
                 "checkout session without a user or customer");
        return STOA_OK;
    }
    const char *p1[] = {user_id, customer};
    const char *p2[] = {customer};
    stoa_db_result_t *res;
    int rc;
    const char *p0[] = {user_id};
    if ((rc = exec(ev, BILLING_SQL(ENTITLEMENTS_LOCK), p0, NULL)) != STOA_OK ||
        (rc = entitlements_before(ev, user_id)) != STOA_OK ||
        (rc = exec(ev, BILLING_SQL(LINK_CUSTOMER), p1, NULL)) != STOA_OK ||
        (rc = exec(ev, BILLING_SQL(BACKFILL_SUBSCRIPTIONS), p2, &res)) !=
            STOA_OK ||
        (rc = exec(ev, BILLING_SQL(BACKFILL_INVOICES), p2, NULL)) != STOA_OK)
        return rc;
    ev->touched_user = user_id;
    return STOA_OK;
}

static int on_subscription(event_t *ev)
{
    const stoa_json_t *o = ev->object;
    const char *id = str(o, "id"), *customer = ref(o, "customer");
    const char *status = str(o, "status");
    if (!id || !customer || !status) {
        snprintf(ev->error, sizeof(ev->error),
                 "subscription without id, "
                 "customer or status");
        return STOA_OK;
    }
    /* The schema refuses any other status: a 500 Stripe would retry. */
    if (!billing_subscription_status_valid(status)) {
        snprintf(ev->error, sizeof(ev->error),
                 "unknown subscription status; ignored");
        return STOA_OK;
    }
    const stoa_json_t *items = stoa_json_get(stoa_json_get(o, "items"), "data");
    const stoa_json_t *price = stoa_json_get(stoa_json_at(items, 0), "price");
    const char *price_id =
        stoa_json_is_object(price) ? str(price, "id") : stoa_json_string(price);
    const char *meta_user = str(stoa_json_get(o, "metadata"), "user_id");
    if (meta_user && !stoa_uuid_valid(meta_user))
        meta_user = NULL;
    stoa_arena_t *a = ev->req->arena;
    /* Newer API versions moved the period onto the item. */
    const stoa_json_t *item = stoa_json_at(items, 0);
    const char *start = num(a, o, "current_period_start");
    const char *end = num(a, o, "current_period_end");
    if (!start)
        start = num(a, item, "current_period_start");
    if (!end)
        end = num(a, item, "current_period_end");
    const char *params[] = {id,
                            meta_user,
                            customer,
                            status,
                            price_id,
                            start,
                            end,
                            boolean(o, "cancel_at_period_end"),
                            num(a, o, "canceled_at"),
                            num(a, o, "trial_end"),
                            ev->created};
    stoa_db_result_t *res;
    const char *owner_params[] = {id, meta_user, customer};
    int rc = exec(ev, BILLING_SQL(SUBSCRIPTION_OWNER), owner_params, &res);
    if (rc != STOA_OK)
        return rc;
    /* Read once the lock is held, in a statement of its own: its snapshot
     * sees what an event about the same user committed meanwhile. */
    const char *owner = stoa_db_value(res, 0, OWNER_COL_USER_ID);
    if (owner && (rc = entitlements_before(ev, owner)) != STOA_OK)
        return rc;
    rc = upsert(ev, BILLING_SQL(SUBSCRIPTION_UPSERT), params, &res);
    if (rc != STOA_OK)
        return rc == STOA_DECLINED ? STOA_OK : rc;
    const char *user_id = stoa_db_value(res, 0, UPSERTED_COL_USER_ID);
    ev->touched_user = user_id;
    if (strcmp(ev->type, "customer.subscription.trial_will_end") == 0)
        return mail_user(ev, user_id, "trial_ending", NULL, NULL);
    return domain_event(ev, STOA_EVENT_SUBSCRIPTION_UPDATED, user_id, id);
}

static int on_invoice(event_t *ev)
{
    const stoa_json_t *o = ev->object;
    const char *id = str(o, "id"), *customer = ref(o, "customer");
    const char *status = str(o, "status"), *currency = str(o, "currency");
    stoa_arena_t *a = ev->req->arena;
    const char *created = num(a, o, "created");
    if (!id || !customer || !status || !currency || !created) {
        snprintf(ev->error, sizeof(ev->error),
                 "invoice without id, customer, "
                 "status, currency or created");
        return STOA_OK;
    }
    const char *due = num(a, o, "amount_due"), *paid = num(a, o, "amount_paid");
    const char *params[] = {id,
                            customer,
                            ref(o, "subscription"),
                            str(o, "number"),
                            status,
                            due ? due : "0",
                            paid ? paid : "0",
                            currency,
                            created,
                            str(o, "hosted_invoice_url"),
                            str(o, "invoice_pdf"),
                            ev->created};
    stoa_db_result_t *res;
    int rc = upsert(ev, BILLING_SQL(INVOICE_UPSERT), params, &res);
    if (rc != STOA_OK)
        return rc == STOA_DECLINED ? STOA_OK : rc;
    const char *user_id = stoa_db_value(res, 0, UPSERTED_COL_USER_ID);
    if (strcmp(ev->type, "invoice.paid") == 0) {
        if ((rc = domain_event(ev, STOA_EVENT_INVOICE_PAID, user_id, id)) !=
            STOA_OK)
            return rc;
        return mail_user(ev, user_id, "receipt", paid, currency);
    }
    if (strcmp(ev->type, "invoice.payment_failed") == 0) {
        if ((rc = domain_event(ev, STOA_EVENT_INVOICE_PAYMENT_FAILED, user_id,
                               id)) != STOA_OK)
            return rc;
        return mail_user(ev, user_id, "payment_failed", due, currency);
    }
    return STOA_OK;
}

static int on_charge_refunded(event_t *ev)
{
    const stoa_json_t *o = ev->object;
    stoa_arena_t *a = ev->req->arena;
    const char *id = str(o, "id"), *amount = num(a, o, "amount");
    const char *refunded = num(a, o, "amount_refunded");
    const char *currency = str(o, "currency");
    if (!id || !amount || !refunded || !currency) {
        snprintf(ev->error, sizeof(ev->error), "charge without id or amounts");
        return STOA_OK;
    }
    const char *invoice = ref(o, "invoice");
    const char *status = str(o, "status");
    const char *p1[] = {id,
                        invoice,
                        amount,
                        refunded,
                        currency,
                        status ? status : "succeeded",
                        boolean(o, "refunded"),
                        ev->created};
    int rc = exec(ev, BILLING_SQL(CHARGE_UPSERT), p1, NULL);
    if (rc != STOA_OK || !invoice)
        return rc;
    const char *p2[] = {invoice, refunded};
    return exec(ev, BILLING_SQL(INVOICE_REFUNDED), p2, NULL);
}

static int on_product(event_t *ev)
{
    const stoa_json_t *o = ev->object;
    const char *id = str(o, "id"), *name = str(o, "name");
    const char *description = str(o, "description");
    if (!id || !name) {
        snprintf(ev->error, sizeof(ev->error), "product without id or name");
        return STOA_OK;
    }
    /* The bounds of the plans table (a CHECK the insert would fail). */
    if (!*name || strlen(name) > 200 ||
        (description && strlen(description) > 2000)) {
        snprintf(ev->error, sizeof(ev->error),
                 "product name or description too long or empty; ignored");
        return STOA_OK;
    }
    const stoa_json_t *meta = stoa_json_get(o, "metadata");
    const char *key = str(meta, "plan_key");
    stoa_arena_t *a = ev->req->arena;
    /* A plan_key the schema would refuse falls back to the product id
     * (a leading '-' or '_' would otherwise fail the insert, and Stripe
     * would retry the event for ever). */
    if (!key || !billing_plan_key_valid(key)) {
        char *lower = stoa_arena_strdup(a, id);
        for (char *p = lower; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        key = lower;
    }
    /* Features arrive as a JSON string in metadata.features. */
    const char *features = "{}";
    const char *ftext = str(meta, "features");
    if (ftext) {
        stoa_json_t *f;
        char err[64];
        if (stoa_json_parse(a, ftext, strlen(ftext), 8, &f, err, sizeof(err)) ==
                STOA_OK &&
            stoa_json_is_object(f))
            features = ftext;
        else
            snprintf(ev->error, sizeof(ev->error),
                     "metadata.features is not a JSON object; ignored");
    }
    bool deleted = strcmp(ev->type, "product.deleted") == 0;
    const char *active = deleted ? "false" : boolean(o, "active");
    const char *p1[] = {key, id};
    const char *p2[] = {key,        name,   description ? description : "",
                        features,   active, id,
                        ev->created};
    int rc;
    if ((rc = exec(ev, BILLING_SQL(PRODUCT_LINK_BY_KEY), p1, NULL)) !=
            STOA_OK ||
        (rc = exec(ev, BILLING_SQL(PRODUCT_UPSERT), p2, NULL)) != STOA_OK)
        return rc;
    ev->catalogue_changed = true;
    return STOA_OK;
}

static int on_price(event_t *ev)
{
    const stoa_json_t *o = ev->object;
    stoa_arena_t *a = ev->req->arena;
    const char *id = str(o, "id"), *product = ref(o, "product");
    const char *amount = num(a, o, "unit_amount"),
               *currency = str(o, "currency");
    const char *interval = str(stoa_json_get(o, "recurring"), "interval");
    if (!id || !product || !amount || !currency || !interval ||
        (strcmp(interval, "month") != 0 && strcmp(interval, "year") != 0)) {
        snprintf(ev->error, sizeof(ev->error),
                 "not a monthly or yearly recurring price; ignored");
        return STOA_OK;
    }
    /* The bounds of the prices table (a CHECK the insert would fail). */
    bool iso = strlen(currency) == 3;
    for (int i = 0; iso && i < 3; i++)
        iso = currency[i] >= 'a' && currency[i] <= 'z';
    if (amount[0] == '-' || !iso) {
        snprintf(ev->error, sizeof(ev->error),
                 "negative amount or not an ISO currency; ignored");
        return STOA_OK;
    }
    bool deleted = strcmp(ev->type, "price.deleted") == 0;
    const char *p1[] = {product};
    const char *p2[] = {product,
                        amount,
                        currency,
                        interval,
                        deleted ? "false" : boolean(o, "active"),
                        id,
                        ev->created};
    int rc;
    if ((rc = exec(ev, BILLING_SQL(PRODUCT_PLACEHOLDER), p1, NULL)) !=
            STOA_OK ||
        (rc = exec(ev, BILLING_SQL(PRICE_UPSERT), p2, NULL)) != STOA_OK)
        return rc;
    ev->catalogue_changed = true;
    return STOA_OK;
}

static int apply(event_t *ev)
{
    const char *t = ev->type;
    if (strcmp(t, "checkout.session.completed") == 0)
        return on_checkout_completed(ev);
    if (strncmp(t, "customer.subscription.", 22) == 0)
        return on_subscription(ev);
    if (strcmp(t, "invoice.paid") == 0 ||
        strcmp(t, "invoice.payment_failed") == 0 ||
        strcmp(t, "invoice.finalized") == 0 ||
        strcmp(t, "invoice.updated") == 0 || strcmp(t, "invoice.created") == 0)
        return on_invoice(ev);
    if (strcmp(t, "charge.refunded") == 0)
        return on_charge_refunded(ev);
    if (strncmp(t, "product.", 8) == 0)
        return on_product(ev);
    if (strncmp(t, "price.", 6) == 0)
        return on_price(ev);
    return STOA_OK; /* stored and acknowledged, nothing to do */
}

static int acknowledge(stoa_request_t *req, bool duplicate)
{
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_bool(w, "received", true);
    stoa_jw_kv_bool(w, "duplicate", duplicate);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

int billing_webhook(stoa_request_t *req)
{
    /* The signature covers the raw bytes: check before parsing anything. */
    const char *sig = stoa_request_param(req, "HTTP_STRIPE_SIGNATURE");
    if (stoa_stripe_verify_signature(
            sig, req->body, req->body_len, req->ctx->conf.stripe_webhook_secret,
            stoa_unix_time(), SIGNATURE_TOLERANCE_S) != STOA_OK) {
        stoa_log(STOA_LOG_NOTICE, "stripe webhook with a bad or stale "
                                  "signature refused");
        stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_FAILED);
        return stoa_http_fail(req, STOA_ERR_INVALID_SIGNATURE,
                              "missing, wrong or stale Stripe-Signature");
    }
    stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_RECEIVED);
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK) {
        stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_FAILED);
        return STOA_DECLINED;
    }
    event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.req = req;
    ev.event_id = str(body, "id");
    ev.type = str(body, "type");
    ev.created = num(req->arena, body, "created");
    ev.object = stoa_json_get(stoa_json_get(body, "data"), "object");
    if (!ev.event_id || strlen(ev.event_id) > 255 || !ev.type ||
        strlen(ev.type) > 100 || !ev.created ||
        !stoa_json_is_object(ev.object)) {
        stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_FAILED);
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "not a Stripe event");
    }
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {ev.event_id, ev.type, ev.created, req->body};
    /* No row: the event was seen before (rolled back, nothing to do). */
    int rc = stoa_request_begin(req, BILLING_SQL(EVENT_INSERT), p1, NULL);
    if (rc == STOA_DECLINED) {
        stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_DUPLICATE);
        return acknowledge(req, true);
    }
    /* A failure rolls back: Stripe retries the delivery. */
    if (rc == STOA_OK && (rc = apply(&ev)) == STOA_OK)
        rc = entitlements_event(&ev);
    if (rc == STOA_OK && ev.error[0]) {
        const char *p2[] = {ev.event_id, ev.error};
        rc = stoa_db_exec(db, req->arena, BILLING_SQL(EVENT_ERROR), p2, NULL);
    }
    if (rc == STOA_OK)
        rc = stoa_request_commit(req, NULL, NULL, NULL);
    if (rc != STOA_OK) {
        stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_FAILED);
        return rc;
    }
    /* From the event's creation at Stripe to its effect committed here. */
    long long created = atoll(ev.created);
    long long now = (long long)stoa_unix_time();
    stoa_metrics_stripe_lag(now > created ? (uint64_t)(now - created) : 0);
    if (ev.error[0])
        stoa_log(STOA_LOG_NOTICE, "stripe event %s (%s): %s", ev.event_id,
                 ev.type, ev.error);
    /* Caches are dropped after the commit, so no reader can refill them
     * from the state before it. */
    billing_forget_entitlements(req, ev.touched_user);
    if (ev.catalogue_changed)
        billing_forget_plans(req);
    return acknowledge(req, false);
}
