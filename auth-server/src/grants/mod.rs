//! Token grants: turn a parsed token request into an access token, or into one of the
//! RFC 6749 §5.2 errors. Nothing here knows about HTTP frameworks.

pub mod client_auth;
pub mod client_credentials;
pub mod request;
pub mod scope;

use std::borrow::Cow;

use serde::Serialize;

use crate::issuer::TokenIssuer;
use crate::keys::KeyError;
use crate::store::{GrantType, StoreError};
use client_auth::ClientAuthenticator;
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl GrantError {
    /// The RFC 6749 error code; `server_error` for failures on our side.
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::InvalidRequest(_) => "invalid_request",
            GrantError::InvalidClient(_) => "invalid_client",
            GrantError::InvalidGrant(_) => "invalid_grant",
            GrantError::UnauthorizedClient(_) => "unauthorized_client",
            GrantError::UnsupportedGrantType(_) => "unsupported_grant_type",
            GrantError::InvalidScope(_) => "invalid_scope",
            GrantError::Store(_) | GrantError::Key(_) => "server_error",
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
pub const SUPPORTED_GRANT_TYPES: [GrantType; 1] = [GrantType::ClientCredentials];

/// The token endpoint's logic: authenticate the client, dispatch on `grant_type`.
pub struct TokenEndpoint {
    clients: ClientAuthenticator,
    issuer: TokenIssuer,
}

impl TokenEndpoint {
    pub fn new(clients: ClientAuthenticator, issuer: TokenIssuer) -> TokenEndpoint {
        TokenEndpoint { clients, issuer }
    }

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
            GrantType::Password | GrantType::RefreshToken => Err(GrantError::UnsupportedGrantType(
                format!("grant type `{}` is not supported", grant.as_str()).into(),
            )),
        }
    }
}
