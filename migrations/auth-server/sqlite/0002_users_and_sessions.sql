-- End users, refresh-token families, the access-token deny-list and login throttling.
CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TEXT NOT NULL
);

CREATE TABLE user_permissions (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope   TEXT NOT NULL REFERENCES scopes (name) ON DELETE RESTRICT,
    PRIMARY KEY (user_id, scope)
);

CREATE INDEX user_permissions_scope ON user_permissions (scope);

-- One family per login; every rotation adds a token to it. Revoking the family kills them all.
CREATE TABLE refresh_families (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE INDEX refresh_families_client ON refresh_families (client_id);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

-- Only a keyed hash of each refresh token is stored.
CREATE TABLE refresh_tokens (
    token_hash  BLOB PRIMARY KEY,
    family_id   TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    parent_hash BLOB,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_hash);

-- Revoked access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    -- Unix seconds (compared in SQL, so an integer on both backends).
    expires_at BIGINT NOT NULL
);

CREATE INDEX revoked_access_tokens_expires ON revoked_access_tokens (expires_at);

-- Failed password logins per account and per source address.
CREATE TABLE login_failures (
    throttle_key TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    -- Unix seconds.
    window_start BIGINT NOT NULL,
    locked_until BIGINT
);
