//! Token grants and token management: turn a parsed token request into tokens or into one of
//! the RFC 6749 §5.2 errors; introspect (RFC 7662) and revoke (RFC 7009) tokens. Nothing here
//! knows about HTTP frameworks.

pub(crate) mod authorization_code;
pub mod checkpoint;
pub mod client_auth;
pub(crate) mod client_credentials;
pub(crate) mod introspect;
pub(crate) mod password;
pub(crate) mod refresh;
pub(crate) mod request;
pub(crate) mod scope;

use std::sync::Arc;

use contracts::token::TokenResponse;

use crate::issuer::TokenIssuer;
use crate::keys::{KeyError, KeyRing};
use crate::model::GrantType;
use crate::passwords::PasswordPool;
use crate::revocation::{DenyList, DenyListError};
use crate::signin::codes::AuthorizationCodes;
use crate::store::{Store, StoreError};
use crate::throttle::LoginThrottle;
use checkpoint::{Checkpoint, Checkpoints};
use client_auth::ClientAuthenticator;
use refresh::RefreshTokens;
pub use request::{Param, TokenRequest};

/// Why a token request was refused (RFC 6749 §5.2), or failed on our side.
///
/// Every text here is fixed: a description names a parameter only from [`Param`]'s list and
/// never quotes what the caller sent (RFC 6749 §5.2 limits `error_description` to
/// `%x20-21 / %x23-5B / %x5D-7E`; echoing input invites log and UI injection). The HTTP layer
/// turns these into bodies in one function, `http::error::error_description`.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("missing parameter `{}`", .0.name())]
    MissingParameter(Param),
    #[error("{}", repeated_description(*.0))]
    RepeatedParameter(Option<Param>),
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("this client may not use the `{}` grant", .0.as_str())]
    UnauthorizedClient(GrantType),
    #[error("{0}")]
    UnsupportedGrantType(&'static str),
    #[error("{0}")]
    InvalidScope(&'static str),
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

fn repeated_description(param: Option<Param>) -> String {
    match param {
        Some(param) => format!("parameter `{}` is repeated", param.name()),
        None => "a parameter is repeated".to_owned(),
    }
}

impl GrantError {
    /// The RFC 6749 error code; `server_error` for failures on our side.
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::InvalidRequest(_)
            | GrantError::MissingParameter(_)
            | GrantError::RepeatedParameter(_) => "invalid_request",
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

/// Grant types this server implements at the token endpoint.
pub const SUPPORTED_GRANT_TYPES: [GrantType; 4] = [
    GrantType::AuthorizationCode,
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
    pub passwords: Arc<PasswordPool>,
    pub throttle: LoginThrottle,
    pub refresh: RefreshTokens,
    /// Authorization codes, issued by the sign-in pages and redeemed here.
    pub codes: AuthorizationCodes,
    pub deny_list: DenyList,
    /// The access-token rules resource servers apply, for introspection.
    pub rules: token_guard::AccessTokenRules,
    /// Where a test holds grants to drive races ([`checkpoint`]); `None` in servers.
    pub checkpoints: Option<Arc<dyn Checkpoints>>,
}

impl TokenService {
    /// `POST /oauth/token`: authenticate the client, dispatch on `grant_type`.
    pub async fn exchange(&self, request: &TokenRequest) -> Result<TokenResponse, GrantError> {
        const UNSUPPORTED: GrantError =
            GrantError::UnsupportedGrantType("this grant type is not supported");
        let grant_type = request
            .param(Param::GrantType)
            .map_err(|_| UNSUPPORTED)?
            .ok_or(GrantError::MissingParameter(Param::GrantType))?;
        let grant = GrantType::parse(grant_type)
            .filter(|g| SUPPORTED_GRANT_TYPES.contains(g))
            .ok_or(UNSUPPORTED)?;
        let authenticated = self.clients.authenticate_read(request).await?;
        let client = authenticated.client;
        if !client.grant_types.contains(&grant) {
            return Err(GrantError::UnauthorizedClient(grant));
        }
        let response = match grant {
            GrantType::ClientCredentials => {
                client_credentials::grant(&client, request, &self.issuer)
            }
            GrantType::Password => password::grant(self, &client, request).await,
            GrantType::RefreshToken => refresh::grant(self, &client, request).await,
            GrantType::AuthorizationCode => authorization_code::grant(self, &client, request).await,
        }?;
        // A disabled or deleted client's cutoff lies `CLIENT_CACHE_TTL` ahead of the change, so
        // it covers every token signed while the client record is younger than that. A grant
        // that outlived its record (a login that waited for a hashing thread) reads it again
        // before answering: a client disabled meanwhile gets nothing.
        if !self.clients.is_current(authenticated.read_at) {
            self.clients.authenticate(request).await?;
        }
        metrics::counter!("oauth_tokens_issued_total", "grant_type" => grant.as_str()).increment(1);
        Ok(response)
    }

    /// Holds the grant at `checkpoint` when a test asked for it ([`checkpoint`]).
    async fn checkpoint(&self, checkpoint: Checkpoint) {
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.reached(checkpoint).await;
        }
    }
}

/// A required, non-empty form parameter; `malformed` is the answer when its value failed the
/// length or character check of [`request`].
fn required(
    request: &TokenRequest,
    param: Param,
    malformed: GrantError,
) -> Result<&str, GrantError> {
    request
        .param(param)
        .map_err(|_| malformed)?
        .ok_or(GrantError::MissingParameter(param))
}
