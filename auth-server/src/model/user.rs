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
    /// Released as the OIDC `name` claim with the `profile` scope (OIDC Core §5.1).
    pub display_name: Option<String>,
    /// Released as `email_verified` with the `email` scope: set by an operator who checked it.
    pub email_verified: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"***")
            .field("permissions", &self.permissions)
            .field("disabled", &self.disabled)
            .field("display_name", &self.display_name)
            .field("email_verified", &self.email_verified)
            .finish()
    }
}
