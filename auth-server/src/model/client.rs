//! Scopes, grant types and the client applications allowed them.

use std::collections::BTreeSet;

use time::OffsetDateTime;

/// A permission that tokens can carry (RFC 6749 §3.3 `scope-token`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    /// The scope token, e.g. `transcriptions:read`.
    pub name: String,
    /// Free text for operators; may be empty.
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// OAuth2 grant types a client may be allowed to use (RFC 6749 §4.1, §4.3, §4.4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    Password,
    RefreshToken,
}

impl GrantType {
    /// Every grant type, in the order of their `grant_type` values.
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::Password,
        GrantType::RefreshToken,
    ];

    /// The `grant_type` value of the token request.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    /// The grant type whose `grant_type` value is `value`, exactly.
    pub fn parse(value: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == value)
    }
}

/// A registered client application.
#[derive(Clone, serde::Serialize)]
pub struct Client {
    /// A UUID, the `client_id` of RFC 6749 §2.2.
    pub id: String,
    pub name: String,
    /// HMAC-SHA-256 of the client secret under the server pepper; never serialized.
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    pub grant_types: BTreeSet<GrantType>,
    /// Scopes this client may request, sorted.
    pub scopes: BTreeSet<String>,
    /// A disabled client is refused at the token endpoint.
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A public client (RFC 6749 §2.1; `token_endpoint_auth_method` `none`) has no secret: it
    /// identifies itself with `client_id` and proves possession with PKCE. Only the
    /// `authorization_code` grant (and its `refresh_token`) is allowed to one.
    pub public: bool,
    /// A first-party client's users are not asked for consent.
    pub first_party: bool,
    /// The algorithm of its id_tokens (OIDC Core §3.1.3.7: RS256 unless registered otherwise).
    pub id_token_alg: IdTokenAlg,
    /// Where the authorization endpoint may send the browser back, compared as exact strings
    /// (RFC 6749 §3.1.2.3; RFC 8252 §7.3: for `http://127.0.0.1` and `http://[::1]` any port).
    pub redirect_uris: Vec<String>,
    /// Where the end-session endpoint may send the browser after logout (OIDC RP-Initiated
    /// Logout 1.0 §3), exact strings.
    pub post_logout_redirect_uris: Vec<String>,
}

/// JWS algorithms an id_token can be signed with: RS256 (OIDC Core §15.1 requires it) and
/// ES256. Not EdDSA, whose `at_hash` common relying-party libraries cannot check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum IdTokenAlg {
    #[default]
    RS256,
    ES256,
}

impl IdTokenAlg {
    /// The JWS `alg` value, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenAlg::RS256 => "RS256",
            IdTokenAlg::ES256 => "ES256",
        }
    }

    /// The algorithm whose `alg` value is `value`, exactly.
    pub fn parse(value: &str) -> Option<IdTokenAlg> {
        [IdTokenAlg::RS256, IdTokenAlg::ES256]
            .into_iter()
            .find(|alg| alg.as_str() == value)
    }

    /// The signing-key algorithm.
    pub fn key_algorithm(self) -> super::KeyAlgorithm {
        match self {
            IdTokenAlg::RS256 => super::KeyAlgorithm::RS256,
            IdTokenAlg::ES256 => super::KeyAlgorithm::ES256,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret_hash", &"***")
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("disabled", &self.disabled)
            .field("public", &self.public)
            .field("first_party", &self.first_party)
            .field("id_token_alg", &self.id_token_alg)
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .finish()
    }
}
