-- Outbound webhook endpoints (n8n, Zapier, ...) and the log of every
-- delivery attempt.
CREATE TABLE admin.webhook_endpoints (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url             text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    description     text CHECK (length(description) <= 500),
    events          text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
    -- whsec_<base64>: the signing secret, needed in clear to sign.
    secret          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      uuid,
    -- Failing since this time without a single success (NULL: healthy).
    failing_since   timestamptz,
    last_success_at timestamptz,
    disabled_at     timestamptz,
    disabled_reason text,
    deleted_at      timestamptz
);
CREATE INDEX webhook_endpoints_live_idx ON admin.webhook_endpoints (created_at)
    WHERE deleted_at IS NULL AND disabled_at IS NULL;

CREATE TABLE admin.webhook_deliveries (
    id          bigserial PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES admin.webhook_endpoints (id)
                ON DELETE CASCADE,
    event_id    text NOT NULL,
    event_type  text NOT NULL,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status      integer,
    latency_ms  integer,
    error       text
);
CREATE INDEX webhook_deliveries_endpoint_idx
    ON admin.webhook_deliveries (endpoint_id, at DESC);
