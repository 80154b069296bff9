-- User names are compared in their RFC 8265 UsernameCaseMapped form from now on, which SQL
-- cannot compute: this row asks the auth server (`Store::migrate`, right after this file) to
-- re-compute `users.email_normalized` for every existing user once, in Rust, then delete it.
CREATE TABLE pending_data_migrations (
    name TEXT PRIMARY KEY
);

INSERT INTO pending_data_migrations (name) VALUES ('renormalize user emails (RFC 8265)');

-- Throttle keys of accounts (`account:<form>`) change form too; ASCII names keep theirs, and the
-- old keys of the others lapse with their window. Locks in force are left alone.
