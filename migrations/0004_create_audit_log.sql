-- Append-only record of every admin action and auth event.
CREATE TABLE admin.audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor_id   uuid,
    actor      text NOT NULL,
    action     text NOT NULL,
    target_id  uuid,
    ip         inet,
    request_id text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON admin.audit_log (at);
CREATE INDEX audit_log_actor_idx ON admin.audit_log (actor_id, at);
CREATE INDEX audit_log_target_idx ON admin.audit_log (target_id, at);

-- Append-only: updates and deletes are refused for everyone.
CREATE FUNCTION admin.audit_log_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin.audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON admin.audit_log
    FOR EACH ROW EXECUTE FUNCTION admin.audit_log_immutable();
