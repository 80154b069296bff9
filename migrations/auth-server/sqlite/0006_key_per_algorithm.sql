-- One active signing key per algorithm instead of one in all (docs/decisions.md, "One signing
-- key chain per algorithm"): access tokens are signed by the active key of ACCESS_TOKEN_ALG
-- (ES256 by default), OpenID Connect id_tokens by the active RS256 key (OIDC Core §15.1).
DROP INDEX signing_keys_one_active;

-- At most one active key per algorithm.
CREATE UNIQUE INDEX signing_keys_one_active_per_alg ON signing_keys (alg) WHERE state = 'active';
