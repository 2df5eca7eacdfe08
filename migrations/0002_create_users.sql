-- Accounts. Emails are stored normalised (trimmed, lower case); the unique
-- index on lower(email) keeps that true even for rows written by hand.
CREATE TABLE auth.users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    password_hash      text,
    role               text NOT NULL DEFAULT 'client'
                       CHECK (role IN ('client', 'finance', 'admin')),
    status             text NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'suspended', 'deleted')),
    email_verified_at  timestamptz,
    notification_prefs jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));
CREATE INDEX users_created_at_idx ON auth.users (created_at);
