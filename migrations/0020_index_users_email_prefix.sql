-- The admin list of users filters by an email prefix, case-insensitively,
-- and pages newest first. The unique index on lower(email) follows the
-- database's collation, which a prefix range cannot use; text_pattern_ops
-- compares bytes, so "prefix <= email < prefix + U+10FFFF" is an index
-- range whatever the collation. (created_at, id) is the list's keyset order.
CREATE INDEX users_email_prefix_idx ON auth.users (lower(email) text_pattern_ops);
CREATE INDEX users_created_id_idx ON auth.users (created_at, id);
-- The new index serves every use of the old one.
DROP INDEX auth.users_created_at_idx;
