//! Sessions: the refresh-token families a password login starts (RFC 6749 §6, rotation as in
//! the OAuth 2.0 Security BCP §4.14).

use time::OffsetDateTime;

/// All refresh tokens descending from one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    /// The scope granted at login; refreshed access tokens carry a subset of it.
    pub scope: String,
    pub created_at: OffsetDateTime,
    /// When the family (the session) was ended; `None` while it lives.
    pub revoked_at: Option<OffsetDateTime>,
}

/// One refresh token, known by its keyed hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: Vec<u8>,
    pub family_id: String,
    /// The token it replaced; `None` for a family's first token.
    pub parent_hash: Option<Vec<u8>>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// When it was exchanged for its successor.
    pub used_at: Option<OffsetDateTime>,
    /// `jti` of the access token issued with it (none for tokens stored before migration 4),
    /// denied when the family is revoked.
    pub access_jti: Option<String>,
    /// `exp` of that access token, unix seconds.
    pub access_expires_at: Option<i64>,
}

/// A refresh token with its family and its successor, if it was rotated.
#[derive(Debug, Clone)]
pub struct RefreshLookup {
    pub token: RefreshTokenRecord,
    pub family: RefreshFamily,
    pub successor: Option<RefreshTokenRecord>,
}

/// Whose refresh families to revoke.
#[derive(Debug, Clone, Copy)]
pub enum FamilyOwner<'a> {
    /// A client id.
    Client(&'a str),
    /// A user id.
    User(&'a str),
    /// One user's families at one client (what withdrawing a consent ends).
    UserAtClient { user: &'a str, client: &'a str },
}

/// Which refresh families' access tokens to list.
#[derive(Debug, Clone, Copy)]
pub enum Families<'a> {
    /// One family, by id.
    One(&'a str),
    /// Every family of a client or user.
    Of(FamilyOwner<'a>),
}
