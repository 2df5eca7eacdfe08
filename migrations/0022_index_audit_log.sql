-- GET /v1/admin/audit-log pages newest first by id (a keyset on the
-- bigserial, which grows with time): each filter column leads an index
-- ending in id, so a filtered page reads only the rows it shows, however
-- long the log grows. The time filters (from, to) use audit_log_at_idx.
CREATE INDEX audit_log_actor_id_idx ON admin.audit_log (actor_id, id);
CREATE INDEX audit_log_target_id_idx ON admin.audit_log (target_id, id);
CREATE INDEX audit_log_action_id_idx ON admin.audit_log (action, id);

-- Append-only, also against TRUNCATE (the row trigger of 0004 sees no
-- rows then). The log is never cleaned up by a job: its rows hold ids,
-- addresses and actions, no email or name, and are kept as the security
-- record of the accounts (docs/architecture.md, "Audit log").
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON admin.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION admin.audit_log_immutable();
