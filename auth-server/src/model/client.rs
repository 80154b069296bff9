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

/// OAuth2 grant types a client may be allowed to use (RFC 6749 §4.3, §4.4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    Password,
    RefreshToken,
}

impl GrantType {
    /// Every grant type, in the order of their `grant_type` values.
    pub const ALL: [GrantType; 3] = [
        GrantType::ClientCredentials,
        GrantType::Password,
        GrantType::RefreshToken,
    ];

    /// The `grant_type` value of the token request.
    pub fn as_str(self) -> &'static str {
        match self {
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
            .finish()
    }
}
