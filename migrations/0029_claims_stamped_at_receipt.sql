-- An id's claim is stamped with the time it was first received, not with
-- its event's time: ingestion no longer parses each event's time twice.
-- Claims still go with retention (analytics.drop_partitions deletes those
-- older than the first day kept): an event older than retention is
-- refused on arrival, so a claim kept for the retention after its receipt
-- outlives every event it can dedupe.
ALTER TABLE analytics.event_ids ALTER COLUMN ts SET DEFAULT now();
COMMENT ON COLUMN analytics.event_ids.ts IS
    'when the id was first received; claims older than the retention go with the partitions';
