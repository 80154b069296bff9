//! [`GuardConfig`]: what a resource service tells the guard about its auth server, with the
//! defaults of the README ("Introspection and token-guard apply one set of rules"), validated
//! once when the guard starts.

use std::time::Duration;

/// Leeway on `exp` and `nbf` (60 s, as the README says for introspection and the guards).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Largest leeway allowed: revoked ids are kept this long past the token's `exp`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(120);
/// Longest token accepted; anything longer is rejected before it is parsed.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Settings of a [`TokenGuard`](crate::TokenGuard).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Expected `iss`, e.g. `https://auth.example.com` (`AUTH_ISSUER`).
    pub issuer: String,
    /// This service's name, which `aud` must contain (`TOKEN_AUDIENCE`).
    pub audience: String,
    /// Where the public keys are (`AUTH_JWKS_URL`); default `{issuer}/.well-known/jwks.json`.
    pub jwks_url: String,
    /// `realm` of the `WWW-Authenticate: Bearer` challenges; default: the audience.
    pub realm: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest token (in bytes) the guard looks at.
    pub max_token_len: usize,
    /// A token with an unknown `kid` makes the guard refetch the JWKS at most this often.
    pub unknown_kid_refetch_interval: Duration,
    /// Lower bound of the periodic JWKS refresh (also the retry delay after a failed fetch).
    pub min_refresh: Duration,
    /// Upper bound of the periodic JWKS refresh, whatever `Cache-Control: max-age` says.
    pub max_refresh: Duration,
    /// Timeout of one JWKS request.
    pub http_timeout: Duration,
    /// How many verified tokens are remembered; 0 disables the cache.
    pub verified_cache_capacity: usize,
}

impl GuardConfig {
    /// Defaults for tokens of `issuer` meant for `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> GuardConfig {
        let issuer = issuer.into();
        let audience = audience.into();
        GuardConfig {
            jwks_url: format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
            realm: audience.clone(),
            issuer,
            audience,
            leeway: DEFAULT_LEEWAY,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            unknown_kid_refetch_interval: Duration::from_secs(30),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(5),
            verified_cache_capacity: 10_000,
        }
    }

    /// Replaces the JWKS URL (when the keys are not served under the issuer URL).
    pub fn with_jwks_url(mut self, url: impl Into<String>) -> GuardConfig {
        self.jwks_url = url.into();
        self
    }

    /// Replaces the realm of the challenges.
    pub fn with_realm(mut self, realm: impl Into<String>) -> GuardConfig {
        self.realm = realm.into();
        self
    }

    /// Checks the settings, naming the first bad one.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() {
            return Err("issuer must not be empty".to_owned());
        }
        if self.audience.trim().is_empty() {
            return Err("audience must not be empty".to_owned());
        }
        if !(self.jwks_url.starts_with("https://") || self.jwks_url.starts_with("http://")) {
            return Err(format!(
                "JWKS URL must be an http(s) URL, got `{}`",
                self.jwks_url
            ));
        }
        let realm_ok = self
            .realm
            .bytes()
            .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\');
        if !realm_ok {
            return Err("realm must be printable ASCII without `\"` or `\\`".to_owned());
        }
        if self.leeway > MAX_LEEWAY {
            return Err(format!(
                "leeway must be at most {} s (revocations are kept that long past exp)",
                MAX_LEEWAY.as_secs()
            ));
        }
        if self.max_token_len == 0 {
            return Err("max_token_len must be positive".to_owned());
        }
        if self.min_refresh.is_zero() || self.min_refresh > self.max_refresh {
            return Err(
                "JWKS refresh bounds must satisfy 0 < min_refresh <= max_refresh".to_owned(),
            );
        }
        if self.http_timeout.is_zero() {
            return Err("http_timeout must be positive".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_issuer() {
        let config = GuardConfig::new("http://auth.local", "transcription-api");
        assert_eq!(config.jwks_url, "http://auth.local/.well-known/jwks.json");
        assert_eq!(config.realm, "transcription-api");
        assert_eq!(config.leeway, Duration::from_secs(60));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_settings_are_named() {
        let base = GuardConfig::new("http://auth.local", "api");
        let cases = [
            GuardConfig::new("", "api"),
            GuardConfig::new("http://auth.local", " "),
            base.clone().with_jwks_url("ftp://x"),
            base.clone().with_realm("a\"b"),
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
