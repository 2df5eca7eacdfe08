-- Failed logins per account and address, kept beside the Redis throttle so
-- that its lock (5 failures in 15 minutes) holds while Redis is away and
-- after Redis comes back without its counters. Not the audit log: the
-- throttle also counts identities that log names no user for (unknown
-- emails, API-key prefixes), and these rows are dropped once they are
-- older than the window. subject is a hash of the normalised identity,
-- never the email itself.
CREATE TABLE auth.login_failures (
    id      bigserial PRIMARY KEY,
    subject text NOT NULL,
    address text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
-- The count of one pair's recent failures, newest first.
CREATE INDEX login_failures_pair_idx ON auth.login_failures (subject, address, at);
-- The pruning of rows past the window, oldest first.
CREATE INDEX login_failures_at_idx ON auth.login_failures (at);
