-- Revocation reaches access tokens already issued (docs/decisions.md, "Revocation reach").

-- "Not valid before" cutoffs: every access token of a `sub` (kind 'sub') or of a `client_id`
-- (kind 'client') issued at or before `not_before_ms` (unix ms) is revoked. Kept until
-- `expires_at` (unix seconds): by then every token the cutoff covers has expired.
CREATE TABLE revoked_subjects (
    kind          TEXT NOT NULL CHECK (kind IN ('sub', 'client')),
    subject       TEXT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);

CREATE INDEX revoked_subjects_expires ON revoked_subjects (expires_at);

-- The access token issued together with each refresh token, so revoking a family can deny
-- the access tokens it produced. NULL for refresh tokens issued before this migration.
ALTER TABLE refresh_tokens ADD COLUMN access_jti TEXT;
-- Unix seconds: the access token's `exp`.
ALTER TABLE refresh_tokens ADD COLUMN access_expires_at BIGINT;
