-- Billing: the catalogue (plans and prices), the Stripe customer link,
-- subscriptions, invoices, charges, and every Stripe event received.
CREATE TABLE billing.plans (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key               text NOT NULL UNIQUE CHECK (key ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description       text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    features          jsonb NOT NULL DEFAULT '{}'::jsonb
                      CHECK (jsonb_typeof(features) = 'object'),
    active            boolean NOT NULL DEFAULT true,
    sort_order        integer NOT NULL DEFAULT 0,
    stripe_product_id text UNIQUE,
    -- `created` of the newest Stripe event applied to this row.
    stripe_event_at   bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE billing.prices (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    plan_id         uuid NOT NULL REFERENCES billing.plans (id),
    amount          bigint NOT NULL CHECK (amount >= 0),
    currency        text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    interval        text NOT NULL CHECK (interval IN ('month', 'year')),
    active          boolean NOT NULL DEFAULT true,
    stripe_price_id text UNIQUE,
    stripe_event_at bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prices_plan_idx ON billing.prices (plan_id);

CREATE TABLE billing.customers (
    user_id            uuid PRIMARY KEY REFERENCES auth.users (id),
    stripe_customer_id text NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE billing.subscriptions (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stripe_subscription_id text NOT NULL UNIQUE,
    user_id                uuid REFERENCES auth.users (id),
    stripe_customer_id     text NOT NULL,
    status                 text NOT NULL CHECK (status IN ('trialing', 'active',
                           'past_due', 'canceled', 'unpaid', 'incomplete',
                           'incomplete_expired', 'paused')),
    stripe_price_id        text,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean NOT NULL DEFAULT false,
    canceled_at            timestamptz,
    trial_end              timestamptz,
    -- Ordering guard: an event older than the last one applied is ignored.
    stripe_event_at        bigint NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_user_idx ON billing.subscriptions (user_id, updated_at DESC);
CREATE INDEX subscriptions_status_idx ON billing.subscriptions (status);

CREATE TABLE billing.invoices (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stripe_invoice_id      text NOT NULL UNIQUE,
    user_id                uuid REFERENCES auth.users (id),
    stripe_customer_id     text NOT NULL,
    stripe_subscription_id text,
    number                 text,
    status                 text NOT NULL,
    amount_due             bigint NOT NULL DEFAULT 0,
    amount_paid            bigint NOT NULL DEFAULT 0,
    amount_refunded        bigint NOT NULL DEFAULT 0,
    currency               text NOT NULL,
    created                timestamptz NOT NULL,
    hosted_invoice_url     text,
    invoice_pdf            text,
    stripe_event_at        bigint NOT NULL DEFAULT 0,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_user_idx ON billing.invoices (user_id, created DESC, id);
CREATE INDEX invoices_created_idx ON billing.invoices (created DESC, id);

CREATE TABLE billing.charges (
    stripe_charge_id  text PRIMARY KEY,
    stripe_invoice_id text,
    amount            bigint NOT NULL,
    amount_refunded   bigint NOT NULL DEFAULT 0,
    currency          text NOT NULL,
    status            text NOT NULL,
    refunded          boolean NOT NULL DEFAULT false,
    stripe_event_at   bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every event as received, by Stripe's id: a repeat is recognised here.
CREATE TABLE billing.stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    created      bigint NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    error        text
);
CREATE INDEX stripe_events_received_idx ON billing.stripe_events (received_at);

-- Idempotency-Key replay for POSTs that create things (any pool).
CREATE TABLE admin.idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea NOT NULL,
    status       integer,
    body         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON admin.idempotency_keys (created_at);
