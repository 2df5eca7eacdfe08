-- Stored Idempotency-Key answers are kept sealed (AES-256-GCM under a key
-- derived from the config's idempotency_seal_key, which never reaches the
-- database): an answer may carry a one-time secret, an API key or a webhook
-- signing secret, that must not be readable from a dump (SPEC §3).
-- Answers stored in clear before this are blanked first, so their text
-- leaves the live rows (the space is reclaimed by vacuum), then the column
-- goes. Their records stay: a repeat of one is not run again, it answers
-- 409 idempotency_replay_unavailable.
UPDATE admin.idempotency_keys SET body = NULL WHERE body IS NOT NULL;
ALTER TABLE admin.idempotency_keys DROP COLUMN body;
ALTER TABLE admin.idempotency_keys ADD COLUMN body_sealed bytea;
