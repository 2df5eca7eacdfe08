-- Open jobs by kind, for the per-kind counts in /readyz and stoactl.
CREATE INDEX outbox_open_kind_idx ON jobs.outbox (kind)
    WHERE done_at IS NULL;
