//! Mints RFC 9068 JWT access tokens with the active key of `ACCESS_TOKEN_ALG`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use uuid::{NoContext, Timestamp, Uuid};

use crate::clock::Clock;
use crate::keys::{KeyError, KeyRing};

/// The path of an issuer URL (`/tenant` in `https://host/tenant`), or `""`.
pub fn issuer_path(issuer: &str) -> &str {
    let rest = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    rest.find('/').map_or("", |at| &rest[at..])
}

/// Claims of an access token (RFC 9068 §2.2).
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: &'a str,
    pub scope: &'a str,
}

/// A freshly signed access token.
pub struct IssuedToken {
    pub token: String,
    /// A UUIDv7 (RFC 9562 §5.7): its timestamp is the issue time in ms that revocation
    /// cutoffs compare with (`token_guard::issued_at_ms`).
    pub jti: String,
    pub expires_in: u64,
    /// `exp`, unix seconds.
    pub expires_at: i64,
}

/// Signs access tokens for one issuer and audience.
pub struct TokenIssuer {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    ttl: Duration,
    /// What tokens are stamped with ([`ServerConfig::token_clock`](crate::config::ServerConfig::token_clock)).
    clock: Arc<dyn Clock>,
}

impl TokenIssuer {
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: String,
        audience: String,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> TokenIssuer {
        TokenIssuer {
            keys,
            issuer,
            audience,
            ttl,
            clock,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues a token for `sub` on behalf of `client_id` carrying `scope` (space-delimited).
    pub fn issue(&self, sub: &str, client_id: &str, scope: &str) -> Result<IssuedToken, KeyError> {
        let issued = self.clock.now();
        let now = issued.unix_timestamp();
        let ttl = self.ttl.as_secs();
        // The jti's timestamp is the issue time to the millisecond (RFC 9562 §5.7).
        let jti = Uuid::new_v7(Timestamp::from_unix(
            NoContext,
            u64::try_from(now).unwrap_or_default(),
            issued.nanosecond(),
        ))
        .to_string();
        let exp = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let claims = AccessClaims {
            iss: &self.issuer,
            sub,
            aud: &self.audience,
            exp,
            iat: now,
            nbf: now,
            jti: jti.clone(),
            client_id,
            scope,
        };
        let token = self.keys.current().access().sign_jwt(&claims)?;
        Ok(IssuedToken {
            token,
            jti,
            expires_in: ttl,
            expires_at: exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_paths() {
        for (issuer, path) in [
            ("http://127.0.0.1:8080", ""),
            ("https://auth.example.com", ""),
            ("https://example.com/tenant", "/tenant"),
            ("https://example.com/a/b", "/a/b"),
        ] {
            assert_eq!(issuer_path(issuer), path, "{issuer}");
        }
    }
}
