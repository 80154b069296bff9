//! The records of sign-in for people (the authorization code flow, RFC 6749 §4.1 with PKCE,
//! RFC 7636, and OpenID Connect Core): browser sessions, authorization codes and consents.
//! Times the store compares are unix seconds.

use std::collections::BTreeSet;

use time::OffsetDateTime;

/// A signed-in browser (single sign-on across authorization requests). The cookie holds a
/// random id; the store keeps only its keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserSession {
    /// HMAC of the cookie's id under the server pepper (32 bytes).
    pub id_hash: Vec<u8>,
    pub user_id: String,
    /// When the user last entered their password: OIDC Core §2 `auth_time` (unix seconds).
    pub auth_time: i64,
    /// The last authorization request it served (unix seconds); with the idle lifetime it ends
    /// the session.
    pub last_seen: i64,
    /// The absolute end (unix seconds).
    pub expires_at: i64,
    /// Authentication methods used, space-separated (RFC 8176 values: `pwd`).
    pub amr: String,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("id_hash", &"***")
            .field("user_id", &self.user_id)
            .field("auth_time", &self.auth_time)
            .field("last_seen", &self.last_seen)
            .field("expires_at", &self.expires_at)
            .field("amr", &self.amr)
            .finish()
    }
}

/// An authorization code as stored (RFC 6749 §4.1.2): bound to the client, the redirect URI,
/// the PKCE challenge (RFC 7636 §4.4), the nonce and the login it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    /// HMAC of the code under the server pepper; the code itself is stored nowhere.
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub user_id: String,
    /// The `redirect_uri` of the authorization request, byte for byte (RFC 6749 §4.1.3).
    pub redirect_uri: String,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The S256 `code_challenge` (43 base64url characters).
    pub code_challenge: String,
    /// The OIDC `nonce` of the request, copied into the id_token.
    pub nonce: Option<String>,
    /// The session's `auth_time` (unix seconds).
    pub auth_time: i64,
    /// The session's `amr`, space-separated.
    pub amr: String,
    /// Unix seconds; a code is redeemable until then.
    pub expires_at: i64,
    /// When it was redeemed (unix seconds); a second presentation is a replay.
    pub used_at: Option<i64>,
    /// What its exchange issued, revoked when the code is presented again (RFC 6749 §4.1.2):
    /// the refresh family, or the access token alone (`jti`, `exp`).
    pub family_id: Option<String>,
    pub access_jti: Option<String>,
    pub access_expires_at: Option<i64>,
}

impl std::fmt::Debug for AuthorizationCodeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationCodeRecord")
            .field("code_hash", &"***")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// What presenting a code found ([`SignInStore::redeem_authorization_code`](crate::store::SignInStore::redeem_authorization_code)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// Unused and unexpired: now marked used. Redeem it.
    Fresh(AuthorizationCodeRecord),
    /// Already used: a replay. What the first exchange issued must be revoked.
    Replayed(AuthorizationCodeRecord),
    /// Unknown or expired.
    Invalid,
}

/// What a user allowed a client (OIDC Core §3.1.2.4): the union of the scopes allowed so far.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    pub scopes: BTreeSet<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
}
