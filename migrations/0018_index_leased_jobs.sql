-- The jobs worker renews the leases of the jobs it holds every few seconds
-- (UPDATE ... WHERE locked_by = ANY (...)): this index holds only leased
-- rows, so a renewal costs the same with a backlog of a million pending jobs.
CREATE INDEX outbox_leased_idx ON jobs.outbox (locked_by)
    WHERE locked_by IS NOT NULL;
