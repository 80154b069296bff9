//! Resource-side verification of the auth server's access tokens (README, "Introspection and
//! token-guard apply one set of rules"), without a call to the auth server per request.
//!
//! - [`TokenGuard`] verifies a token: JWKS keys ([`JwksCache`]), the rules of [`verify`], the
//!   deny-list ([`RevocationList`]) and a bounded cache of verified tokens.
//! - [`Principal`] is an axum extractor for the caller; [`TokenGuard::require_scope`] is a
//!   per-route layer; both answer RFC 6750 errors ([`AuthError`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use token_guard::{GuardConfig, Principal, StaticRevocationList, TokenGuard};
//!
//! let config = GuardConfig::new("https://auth.example.com", "transcription-api");
//! let guard = TokenGuard::new(config, Arc::new(StaticRevocationList::new())).await?;
//! async fn create(principal: Principal) -> String { principal.sub }
//! let app: Router = Router::new()
//!     .route("/transcriptions", post(create).route_layer(guard.require_scope("transcriptions:write")))
//!     .with_state(guard);
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod http;
mod jwks;
pub mod revocation;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LEN, GuardConfig, MAX_LEEWAY};
pub use http::{AuthError, AuthFailure, RequireScope, RequireScopeLayer};
pub use jwks::{JwksCache, JwksError};
pub use revocation::{
    CutoffKind, RedisRevocationConfig, RedisRevocationList, Revocation, RevocationError,
    RevocationList, RevocationSubject, Revocations, StaticRevocationList, is_revoked_by,
    issued_at_ms,
};
pub use verify::VerifyError;

use cache::VerifiedCache;
pub use verify::{AccessClaims, AccessTokenRules, PublicKey};

/// The caller a valid access token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Client id (client_credentials) or user id (password grant).
    pub sub: String,
    /// The client application the token was issued to.
    pub client_id: String,
    /// The granted scopes (the token's space-delimited `scope`).
    pub scopes: BTreeSet<String>,
    /// Token id, as used by revocation.
    pub jti: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    pub iat: u64,
}

impl Principal {
    /// What the deny-list needs to know about this token.
    pub fn revocation_subject(&self) -> RevocationSubject<'_> {
        RevocationSubject::new(&self.jti, &self.sub, &self.client_id, self.iat)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Why the guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("token guard configuration: {0}")]
    Config(String),
    #[error("cannot load the auth server's keys: {0}")]
    Jwks(#[from] JwksError),
}

struct Inner {
    config: GuardConfig,
    realm: Arc<str>,
    jwks: JwksCache,
    rules: AccessTokenRules,
    revocations: Arc<dyn RevocationList>,
    verified: VerifiedCache,
}

/// Verifies access tokens; cheap to clone (put it in the service's state).
#[derive(Clone)]
pub struct TokenGuard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGuard")
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .field("jwks", &self.inner.jwks)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl TokenGuard {
    /// Validates `config`, fetches the JWKS (failing if the first fetch fails: a service
    /// should not start unable to verify anything) and starts its background refresh.
    pub async fn new(
        config: GuardConfig,
        revocations: Arc<dyn RevocationList>,
    ) -> Result<TokenGuard, GuardError> {
        config.validate().map_err(GuardError::Config)?;
        let jwks = JwksCache::start(&config).await?;
        Ok(TokenGuard {
            inner: Arc::new(Inner {
                realm: config.realm.as_str().into(),
                rules: AccessTokenRules::new(
                    &config.issuer,
                    &config.audience,
                    config.leeway,
                    config.max_token_len,
                ),
                verified: VerifiedCache::new(config.verified_cache_capacity),
                jwks,
                revocations,
                config,
            }),
        })
    }

    /// The settings the guard runs with.
    pub fn config(&self) -> &GuardConfig {
        &self.inner.config
    }

    /// The key cache (to inspect the trusted kids or force a refresh).
    pub fn jwks(&self) -> &JwksCache {
        &self.inner.jwks
    }

    pub(crate) fn realm(&self) -> Arc<str> {
        self.inner.realm.clone()
    }

    /// Verifies a bearer token and returns its principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let inner = &self.inner;
        inner.rules.check_shape(token)?;
        let hash = cache::token_hash(token);
        let now = unix_now();
        if let Some(principal) = inner.verified.get(&hash, now, inner.jwks.generation()) {
            if inner
                .revocations
                .is_revoked(&principal.revocation_subject())
            {
                inner.verified.remove(&hash);
                return Err(VerifyError::Revoked);
            }
            return Ok(Principal::clone(&principal));
        }
        let header = inner.rules.check_header(token)?;
        let (key, generation) = inner
            .jwks
            .key(&header.kid)
            .await
            .ok_or(VerifyError::UnknownKey)?;
        let claims = inner.rules.verify_with_key(token, &header, &key.key)?;
        let principal = Principal {
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            sub: claims.sub,
            client_id: claims.client_id,
            jti: claims.jti,
            exp: claims.exp,
            iat: claims.iat,
        };
        if inner
            .revocations
            .is_revoked(&principal.revocation_subject())
        {
            return Err(VerifyError::Revoked);
        }
        inner
            .verified
            .insert(hash, Arc::new(principal.clone()), unix_now(), generation);
        Ok(principal)
    }

    /// A layer that lets a request through only with a valid token granting `scope`; the
    /// handler can then take the [`Principal`] without verifying again.
    pub fn require_scope(&self, scope: impl Into<String>) -> RequireScopeLayer {
        RequireScopeLayer::new(self.clone(), scope.into())
    }
}
