-- Product analytics: raw events partitioned by day on their event time,
-- the ids already stored (an id is stored once across days, which a unique
-- index on a partitioned table cannot say without the partition key), the
-- hours waiting to be rolled up, and the rollups the API reads.
CREATE TABLE analytics.events (
    id          uuid NOT NULL,
    ts          timestamptz NOT NULL,
    event       text NOT NULL,
    distinct_id text,
    -- The signed-in sender, when the batch came with a user token.
    user_id     uuid,
    properties  jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (ts);
-- Rows arrive roughly in time order: a BRIN index finds an hour (rollups)
-- or a range (export) for almost nothing at ingestion.
CREATE INDEX events_ts_brin ON analytics.events USING brin (ts);

-- Every client-given id stored so far, with its event time so that ids
-- past retention can go with their partition.
CREATE TABLE analytics.event_ids (
    id uuid PRIMARY KEY,
    ts timestamptz NOT NULL
);

-- Hours with new events since their last rollup. Ingestion upserts the
-- row (taking its lock) in the statement that stores the events, so the
-- rollup's DELETE waits for an ingestion in flight and then sees it.
CREATE TABLE analytics.rollup_pending (
    hour       timestamptz PRIMARY KEY,
    touched_at timestamptz NOT NULL DEFAULT now()
);

-- Counts per event name and bucket, recomputed whole from raw events.
CREATE TABLE analytics.rollup_hourly (
    event   text NOT NULL,
    bucket  timestamptz NOT NULL,
    events  bigint NOT NULL,
    uniques bigint NOT NULL,
    PRIMARY KEY (event, bucket)
);
CREATE TABLE analytics.rollup_daily (
    event   text NOT NULL,
    bucket  date NOT NULL,
    events  bigint NOT NULL,
    uniques bigint NOT NULL,
    PRIMARY KEY (event, bucket)
);
-- Who sent each event name on each day, by the MD5 of its distinct_id (a
-- uuid-sized digest, no personal text kept): daily uniques are its row
-- counts, weekly and monthly uniques the distinct digests over its days.
CREATE TABLE analytics.rollup_actors (
    event  text NOT NULL,
    day    date NOT NULL,
    actor  uuid NOT NULL,
    PRIMARY KEY (event, day, actor)
);
-- Signed-in users active on a day (any event with a user): DAU, WAU, MAU.
CREATE TABLE analytics.active_users (
    day     date NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (day, user_id)
);

-- The day partitions from first_day to last_day (inclusive) that do not
-- exist yet. One caller at a time: concurrent CREATEs of one name race.
CREATE FUNCTION analytics.create_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := first_day;
    made integer := 0;
    name text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('analytics.partitions'));
    WHILE d <= last_day LOOP
        name := 'events_' || to_char(d, 'YYYYMMDD');
        IF to_regclass('analytics.' || name) IS NULL THEN
            EXECUTE format('CREATE TABLE analytics.%I PARTITION OF analytics.events '
                           'FOR VALUES FROM (%L) TO (%L)', name,
                           d::timestamp AT TIME ZONE 'UTC',
                           (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END $$;

-- Drops the day partitions wholly before first_kept, and the ids stored
-- with them. Returns how many partitions went.
CREATE FUNCTION analytics.drop_partitions(first_kept date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('analytics.partitions'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE n.nspname = 'analytics' AND p.relname = 'events'
          AND c.relname ~ '^events_[0-9]{8}$'
          AND to_date(substr(c.relname, 8), 'YYYYMMDD') < first_kept
    LOOP
        EXECUTE format('DROP TABLE analytics.%I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM analytics.event_ids
    WHERE ts < first_kept::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END $$;

-- The default window at install time (90 days back, a week ahead); the
-- jobs worker keeps it to the configured retention from then on.
SELECT analytics.create_partitions(current_date - 90, current_date + 7);

-- The daily rollup reads a day's hourly rows; expiry deletes by time.
CREATE INDEX rollup_hourly_bucket_idx ON analytics.rollup_hourly (bucket);
CREATE INDEX rollup_actors_day_idx ON analytics.rollup_actors (day);
