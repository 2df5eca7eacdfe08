-- Hours waiting for the rollup are marked per writing connection: an hour
-- has a row per Postgres backend that stored events in it since its last
-- rollup. Ingestion upserts its own row (taking its lock) in the batch's
-- transaction, so the rollup still waits for a batch in flight and then
-- sees it, but concurrent batches of one hour no longer queue on a single
-- row through each other's commits. The rollup takes every row of an hour.
ALTER TABLE analytics.rollup_pending
    ADD COLUMN writer integer NOT NULL DEFAULT 0;
ALTER TABLE analytics.rollup_pending
    DROP CONSTRAINT rollup_pending_pkey,
    ADD PRIMARY KEY (hour, writer);
