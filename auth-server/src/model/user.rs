//! End users, who log in with the password grant.

use std::collections::BTreeSet;

use time::OffsetDateTime;

pub use crate::identifiers::normalize_username;

/// An end user who logs in with the password grant.
#[derive(Clone, serde::Serialize)]
pub struct User {
    /// A UUID, the `sub` of the user's tokens.
    pub id: String,
    /// As entered; uniqueness is on the RFC 8265 form ([`normalize_username`]).
    pub email: String,
    /// argon2id PHC string; never serialized.
    #[serde(skip)]
    pub password_hash: String,
    /// Scopes the user's tokens may carry, sorted.
    pub permissions: BTreeSet<String>,
    /// A disabled user's logins are refused.
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"***")
            .field("permissions", &self.permissions)
            .field("disabled", &self.disabled)
            .finish()
    }
}
