-- Product updates: what an admin sends (admin.updates) and who received
-- it (admin.update_recipients, one row per user: the user's feed). The
-- admin pool owns both; stoa-jobs writes the recipient rows in batches
-- (the `updates.fanout` job), each batch one transaction.
CREATE TABLE admin.updates (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    -- The body rendered from its Markdown subset, for the mail's HTML part.
    body_html       text NOT NULL,
    -- Exactly one of {"user_ids": [...]}, {"role": r}, {"plan": key},
    -- {"all": true}, as the admin sent it (validated by the pool).
    audience        jsonb NOT NULL CHECK (jsonb_typeof(audience) = 'object'),
    action_required boolean NOT NULL DEFAULT false,
    -- The admin who sent it. No foreign key: an update outlives the
    -- erasure of its author.
    created_by      uuid,
    -- The audience's size when the update was sent: the active accounts
    -- that matched it, none created later.
    recipients      integer NOT NULL CHECK (recipients >= 0),
    -- Feed rows written so far (the fan-out adds each batch's count in the
    -- batch's transaction), the last account id written (where the next
    -- batch starts, also after a crash) and when the last batch was written.
    delivered       integer NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    fanout_after    uuid,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- GET /v1/admin/updates pages newest first.
CREATE INDEX updates_created_idx ON admin.updates (created_at DESC, id DESC);

CREATE TABLE admin.update_recipients (
    update_id    uuid NOT NULL REFERENCES admin.updates (id),
    user_id      uuid NOT NULL REFERENCES auth.users (id),
    -- The update's created_at, copied so the feed is read from one index.
    posted_at    timestamptz NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    mailed_at    timestamptz,
    read_at      timestamptz,
    done_at      timestamptz,
    PRIMARY KEY (update_id, user_id)
);
-- GET /v1/updates: a user's feed, newest first, and its unread part.
CREATE INDEX update_recipients_feed_idx
    ON admin.update_recipients (user_id, posted_at DESC, update_id DESC);
CREATE INDEX update_recipients_unread_idx
    ON admin.update_recipients (user_id, posted_at DESC, update_id DESC)
    WHERE read_at IS NULL;
