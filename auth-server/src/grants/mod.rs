//! Token grants and token management: turn a parsed token request into tokens or into one of
//! the RFC 6749 §5.2 errors; introspect (RFC 7662) and revoke (RFC 7009) tokens. Nothing here
//! knows about HTTP frameworks.

pub mod client_auth;
pub mod client_credentials;
pub mod introspect;
pub mod password;
pub mod refresh;
pub mod request;
pub mod scope;

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;

use crate::issuer::TokenIssuer;
use crate::keys::{KeyError, KeyRing};
use crate::passwords::PasswordPool;
use crate::revocation::{DenyList, DenyListError};
use crate::store::{GrantType, Store, StoreError};
use crate::throttle::LoginThrottle;
use client_auth::ClientAuthenticator;
use refresh::RefreshTokens;
pub use request::TokenRequest;

/// Why a token request was refused (RFC 6749 §5.2), or failed on our side.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("{0}")]
    InvalidGrant(Cow<'static, str>),
    #[error("{0}")]
    UnauthorizedClient(Cow<'static, str>),
    #[error("{0}")]
    UnsupportedGrantType(Cow<'static, str>),
    #[error("{0}")]
    InvalidScope(Cow<'static, str>),
    /// Too many failed logins for the account or the source address.
    #[error("too many failed login attempts; retry in {retry_after} s")]
    LoginThrottled { retry_after: u64 },
    /// The password hashing pool is saturated.
    #[error("the server is busy; retry in {retry_after} s")]
    Busy { retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("password hashing failed")]
    Hashing,
    #[error("publishing the revocation failed: {0}")]
    DenyList(#[from] DenyListError),
}

impl GrantError {
    /// The RFC 6749 error code; `server_error` for failures on our side.
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::InvalidRequest(_) => "invalid_request",
            GrantError::InvalidClient(_) => "invalid_client",
            GrantError::InvalidGrant(_) | GrantError::LoginThrottled { .. } => "invalid_grant",
            GrantError::UnauthorizedClient(_) => "unauthorized_client",
            GrantError::UnsupportedGrantType(_) => "unsupported_grant_type",
            GrantError::InvalidScope(_) => "invalid_scope",
            GrantError::Busy { .. } => "temporarily_unavailable",
            GrantError::Store(_)
            | GrantError::Key(_)
            | GrantError::Hashing
            | GrantError::DenyList(_) => "server_error",
        }
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Grant types this server implements at the token endpoint.
pub const SUPPORTED_GRANT_TYPES: [GrantType; 3] = [
    GrantType::ClientCredentials,
    GrantType::Password,
    GrantType::RefreshToken,
];

/// Scope a client needs to introspect or revoke tokens issued to other clients.
pub const INTROSPECT_SCOPE: &str = "oauth:introspect";

/// Everything the grants need, built once at start.
pub struct TokenService {
    pub clients: ClientAuthenticator,
    pub issuer: TokenIssuer,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub passwords: PasswordPool,
    pub throttle: LoginThrottle,
    pub refresh: RefreshTokens,
    pub deny_list: DenyList,
}

impl TokenService {
    /// `POST /oauth/token`: authenticate the client, dispatch on `grant_type`.
    pub async fn exchange(&self, request: &TokenRequest) -> Result<TokenResponse, GrantError> {
        let grant_type = request
            .param("grant_type")
            .ok_or(GrantError::InvalidRequest(
                "missing parameter `grant_type`".into(),
            ))?;
        let grant = GrantType::parse(grant_type)
            .filter(|g| SUPPORTED_GRANT_TYPES.contains(g))
            .ok_or_else(|| {
                GrantError::UnsupportedGrantType(
                    format!("grant type `{grant_type}` is not supported").into(),
                )
            })?;
        let client = self.clients.authenticate(request).await?;
        if !client.grant_types.contains(&grant) {
            return Err(GrantError::UnauthorizedClient(
                format!("this client may not use the `{}` grant", grant.as_str()).into(),
            ));
        }
        match grant {
            GrantType::ClientCredentials => {
                client_credentials::grant(&client, request, &self.issuer)
            }
            GrantType::Password => password::grant(self, &client, request).await,
            GrantType::RefreshToken => refresh::grant(self, &client, request).await,
        }
    }
}

/// A required, non-empty form parameter.
fn required<'a>(request: &'a TokenRequest, name: &'static str) -> Result<&'a str, GrantError> {
    request
        .param(name)
        .ok_or_else(|| GrantError::InvalidRequest(format!("missing parameter `{name}`").into()))
}
