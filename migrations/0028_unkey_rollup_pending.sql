-- Hours waiting for the rollup become plain marks, one a batch and hour,
-- with no key to upsert: a unique hour made every batch of that hour
-- wait for the one before it through its commit (one row, one lock), and
-- the rollup held those locks while it recomputed. Now ingestion inserts
-- its marks in its transaction and waits for nobody; the rollup deletes
-- the marks committed before it began (an ingestion still in flight keeps
-- its marks, invisible to the rollup, for the next run) and recomputes
-- from events that include theirs.
ALTER TABLE analytics.rollup_pending DROP CONSTRAINT rollup_pending_pkey;
CREATE INDEX rollup_pending_hour_idx ON analytics.rollup_pending (hour);
