-- Private signing keys and the client-secret pepper live in the database, encrypted with
-- AUTH_SECRETS (docs/decisions.md, "Signing keys and the pepper in the database").

-- The PKCS#8 private key sealed under AUTH_SECRETS (auth-server/src/sealed.rs). NULL for keys
-- created before this migration until their `KEYS_DIR/<kid>.pem` is imported.
ALTER TABLE signing_keys ADD COLUMN private_key BYTEA;

-- Secrets of the server by name (the client-secret pepper), sealed under AUTH_SECRETS.
CREATE TABLE system_secrets (
    name       TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
