-- Sign-in for people: the authorization code flow with PKCE, OpenID Connect, browser sessions
-- and consent (docs/decisions.md, "The authorization code flow is ours too").

-- Public clients (token_endpoint_auth_method "none": no secret, secret_hash is empty and never
-- matches), first-party clients (no consent page), the id_token signing algorithm, and the
-- registered redirect URIs (space-separated: a URI holds no space; compared as exact strings).
ALTER TABLE clients ADD COLUMN public_client BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN first_party BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN id_token_alg TEXT NOT NULL DEFAULT 'RS256'
    CHECK (id_token_alg IN ('RS256', 'ES256'));
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';

-- The OIDC `name` claim, and whether `email` is released as verified.
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- Browser sessions: only a keyed hash of the cookie's random id is stored. Unix seconds
-- (compared in SQL): the password login (OIDC auth_time), the last use, the absolute end.
CREATE TABLE browser_sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    amr        TEXT NOT NULL
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);

-- Authorization codes: keyed hash only, single use, 60 s. Rows stay 10 minutes past expiry so
-- a second presentation is recognised as a replay and revokes what the first one issued.
CREATE TABLE authorization_codes (
    code_hash         BLOB PRIMARY KEY,
    client_id         TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri      TEXT NOT NULL,
    scope             TEXT NOT NULL,
    code_challenge    TEXT NOT NULL,
    nonce             TEXT,
    auth_time         BIGINT NOT NULL,
    amr               TEXT NOT NULL,
    expires_at        BIGINT NOT NULL,
    used_at           BIGINT,
    family_id         TEXT,
    access_jti        TEXT,
    access_expires_at BIGINT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

-- What a user allowed a client: the union of the scope sets allowed, until withdrawn.
CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client ON consents (client_id);
