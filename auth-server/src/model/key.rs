//! Signing keys as stored: their metadata and the sealed private key. The key material and
//! signing live in [`crate::keys`].

use serde::Serialize;
use time::OffsetDateTime;

/// JWS algorithms a signing key can use (RFC 7518 §3.1; EdDSA: RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum KeyAlgorithm {
    ES256,
    RS256,
    EdDSA,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order chains are listed and rotated.
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::ES256,
        KeyAlgorithm::RS256,
        KeyAlgorithm::EdDSA,
    ];

    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::ES256 => "ES256",
            KeyAlgorithm::RS256 => "RS256",
            KeyAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm whose `alg` value is `value`, exactly.
    pub fn parse(value: &str) -> Option<KeyAlgorithm> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == value)
    }
}

/// Life-cycle state of a signing key: `next → active → retired`, within the chain of its
/// algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, not yet signing.
    Next,
    /// Signs new tokens; at most one per algorithm at a time.
    Active,
    /// No longer signs; published until the tokens it signed have expired.
    Retired,
}

impl KeyState {
    /// The lower-case name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    /// The state whose name is `value`, exactly.
    pub fn parse(value: &str) -> Option<KeyState> {
        [KeyState::Next, KeyState::Active, KeyState::Retired]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

/// Metadata of a signing key (its private key is a [`StoredKey`]'s, sealed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    /// The JWS `kid`: 16 url-safe base64 characters.
    pub kid: String,
    pub alg: KeyAlgorithm,
    pub state: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it began to sign; `None` while `next`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When it stopped signing; `None` until `retired`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
}

/// A signing key as stored: its metadata and its PKCS#8 private key sealed under
/// `AUTH_SECRETS` ([`crate::sealed`]); `None` for a key created before migration 0005 whose
/// `KEYS_DIR/<kid>.pem` has not been imported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub sealed_private_key: Option<Vec<u8>>,
}
