//! End users: registration by the rules (RFC 8265 user names, an e-mail syntax check, the
//! password policy, argon2id hashing), permissions, their OIDC profile claims, and the events
//! that end their sessions (refresh families, access tokens and browser sessions).

use std::collections::BTreeSet;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Admin, AdminError, Revoked};
use crate::model::{User, normalize_username};
use crate::passwords::{check_policy, hash_password};

/// A user to register, checked: an e-mail whose RFC 8265 form exists ([`NewUser::new`]).
#[derive(Debug, Clone)]
pub struct NewUser {
    email: String,
    permissions: BTreeSet<String>,
    /// The OIDC `name` claim (OIDC Core §5.1), if any; [`Admin::register_user`] trims it and
    /// refuses an empty one or one with control characters
    /// ([`AdminError::InvalidDisplayName`]).
    pub display_name: Option<String>,
    /// Whether the e-mail is released as verified (`email_verified`).
    pub email_verified: bool,
}

impl NewUser {
    /// Checks a new user's e-mail before any password is asked for: surrounding whitespace is
    /// trimmed, its RFC 8265 UsernameCaseMapped form (what logins are compared in) must exist
    /// and be an e-mail address ([`is_email`]). `permissions` are the scopes the user's tokens
    /// may carry; each must exist.
    pub fn new(
        email: &str,
        permissions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<NewUser, AdminError> {
        let email = email.trim().to_owned();
        let normalized = normalize_username(&email)?;
        if !is_email(&normalized) {
            return Err(AdminError::NotAnEmail(email));
        }
        Ok(NewUser {
            email,
            permissions: permissions.into_iter().map(Into::into).collect(),
            display_name: None,
            email_verified: false,
        })
    }

    /// The e-mail as it will be stored (trimmed).
    pub fn email(&self) -> &str {
        &self.email
    }
}

/// A change to a user's OIDC profile claims (OIDC Core §5.1); a `None` field is kept as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// `Some(Some(name))` sets the `name` claim (the rules of [`NewUser::display_name`]),
    /// `Some(None)` removes it.
    pub display_name: Option<Option<String>>,
    /// Sets `email_verified`.
    pub email_verified: Option<bool>,
}

/// A display name as stored: trimmed, not empty, without control characters (it is shown on
/// one line on the consent page and in the CLI's text output).
fn check_display_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(AdminError::InvalidDisplayName);
    }
    Ok(name.to_owned())
}

/// A pragmatic syntax check: one `@`, a non-empty local part, a dotted domain, no spaces. (The
/// 254-byte limit applies to the RFC 8265 form: [`normalize_username`].)
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Admin {
    /// Registers a user with `password`, which must pass the policy (at least 8 characters,
    /// not a common password, not the e-mail); it is stored as an argon2id hash of its
    /// RFC 8265 OpaqueString form. An e-mail whose RFC 8265 form is taken is
    /// [`StoreError::AlreadyExists`](crate::store::StoreError::AlreadyExists).
    pub async fn register_user(
        &self,
        new: NewUser,
        password: SecretString,
    ) -> Result<User, AdminError> {
        let display_name = new
            .display_name
            .as_deref()
            .map(check_display_name)
            .transpose()?;
        let password_hash = self.hash_new_password(password, &new.email).await?;
        let user = User {
            id: Uuid::new_v4().to_string(),
            email: new.email,
            password_hash,
            permissions: new.permissions,
            disabled: false,
            created_at: OffsetDateTime::now_utc(),
            display_name,
            email_verified: new.email_verified,
        };
        self.store.create_user(&user).await?;
        Ok(user)
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<User>, AdminError> {
        Ok(self.store.list_users().await?)
    }

    /// The user named by an id or (containing `@`) an e-mail, compared in its RFC 8265 form;
    /// [`AdminError::UserNotFound`] otherwise.
    pub async fn user(&self, id_or_email: &str) -> Result<User, AdminError> {
        let found = if id_or_email.contains('@') {
            self.store.find_user_by_email(id_or_email).await?
        } else {
            self.store.find_user(id_or_email).await?
        };
        found.ok_or_else(|| AdminError::UserNotFound(id_or_email.to_owned()))
    }

    /// Replaces a user's permissions (each must exist); returns the user as now stored.
    pub async fn set_user_permissions(
        &self,
        id_or_email: &str,
        permissions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<User, AdminError> {
        let mut user = self.user(id_or_email).await?;
        user.permissions = permissions.into_iter().map(Into::into).collect();
        if !self
            .store
            .set_user_permissions(&user.id, &user.permissions)
            .await?
        {
            return Err(AdminError::UserNotFound(id_or_email.to_owned()));
        }
        Ok(user)
    }

    /// Changes the user's OIDC profile claims (`name`, `email_verified`; OIDC Core §5.1) as
    /// `update` says; returns the user as now stored. An invalid name is
    /// [`AdminError::InvalidDisplayName`].
    pub async fn set_user_profile(
        &self,
        id_or_email: &str,
        update: ProfileUpdate,
    ) -> Result<User, AdminError> {
        let mut user = self.user(id_or_email).await?;
        if let Some(name) = update.display_name {
            user.display_name = name.as_deref().map(check_display_name).transpose()?;
        }
        if let Some(verified) = update.email_verified {
            user.email_verified = verified;
        }
        if !self
            .store
            .set_user_profile(&user.id, user.display_name.as_deref(), user.email_verified)
            .await?
        {
            return Err(AdminError::UserNotFound(id_or_email.to_owned()));
        }
        Ok(user)
    }

    /// Sets a new password (the policy of [`Admin::register_user`]) and ends the user's
    /// sessions: their browser sessions (they sign in again), their refresh families and the
    /// access tokens issued to them so far.
    pub async fn reset_password(
        &self,
        id_or_email: &str,
        password: SecretString,
    ) -> Result<(User, Revoked), AdminError> {
        let user = self.user(id_or_email).await?;
        let hash = self.hash_new_password(password, &user.email).await?;
        self.store.set_user_password_hash(&user.id, &hash).await?;
        self.store.delete_user_browser_sessions(&user.id).await?;
        let revoked = self.deny_list().await?.revoke_user(&user.id).await?;
        Ok((user, revoked))
    }

    /// Refuses the user's logins and ends their browser sessions, refresh families and access
    /// tokens.
    pub async fn disable_user(&self, id_or_email: &str) -> Result<(User, Revoked), AdminError> {
        let mut user = self.user(id_or_email).await?;
        self.store.set_user_disabled(&user.id, true).await?;
        user.disabled = true;
        self.store.delete_user_browser_sessions(&user.id).await?;
        let revoked = self.deny_list().await?.revoke_user(&user.id).await?;
        Ok((user, revoked))
    }

    /// Accepts the user's logins again (tokens revoked meanwhile stay revoked).
    pub async fn enable_user(&self, id_or_email: &str) -> Result<User, AdminError> {
        let mut user = self.user(id_or_email).await?;
        self.store.set_user_disabled(&user.id, false).await?;
        user.disabled = false;
        Ok(user)
    }

    /// Deletes the user, their browser sessions, refresh families and (denied first, as the
    /// delete cascades to the sessions that list them) their access tokens.
    pub async fn delete_user(&self, id_or_email: &str) -> Result<(User, Revoked), AdminError> {
        let user = self.user(id_or_email).await?;
        // Ended explicitly, not left to the cascade: a browser must not stay signed in as a
        // user whose row a failed delete kept.
        self.store.delete_user_browser_sessions(&user.id).await?;
        let revoked = self.deny_list().await?.revoke_user(&user.id).await?;
        self.store.delete_user(&user.id).await?;
        Ok((user, revoked))
    }

    /// Checks `password` against the policy for `email` and hashes it: on the server's pool
    /// when there is one, else on a blocking thread with its own 19 MiB.
    async fn hash_new_password(
        &self,
        password: SecretString,
        email: &str,
    ) -> Result<String, AdminError> {
        check_policy(password.expose_secret(), email)?;
        match &self.passwords {
            Some(pool) => Ok(pool.hash(password).await?),
            None => tokio::task::spawn_blocking(move || hash_password(password.expose_secret()))
                .await
                .map_err(|_| AdminError::HashingInterrupted)?
                .map_err(AdminError::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The e-mail is trimmed, must have an RFC 8265 form and look like an address; it is
    /// stored as entered (but trimmed).
    #[test]
    fn new_users_are_checked_before_any_password() {
        for (email, stored) in [
            ("ada@example.com", "ada@example.com"),
            ("  Ada@Example.com\n", "Ada@Example.com"),
            ("jose\u{301}@example.com", "jose\u{301}@example.com"),
        ] {
            let new = NewUser::new(email, ["a"]).unwrap();
            assert_eq!(new.email(), stored, "{email:?}");
        }
        for email in [
            "",
            "ada",
            "ada@localhost",
            "@example.com",
            "ada@example.",
            "a@b@c.d",
        ] {
            assert!(
                matches!(
                    NewUser::new(email, ["a"]),
                    Err(AdminError::NotAnEmail(_) | AdminError::InvalidUsername(_))
                ),
                "{email:?}"
            );
        }
        for email in ["a b@example.com", "ada\u{7}@example.com"] {
            assert!(
                matches!(
                    NewUser::new(email, ["a"]),
                    Err(AdminError::InvalidUsername(_))
                ),
                "{email:?}"
            );
        }
    }

    /// Display names are trimmed; empty ones and control characters are refused.
    #[test]
    fn display_names() {
        assert_eq!(
            check_display_name("  Ada Lovelace ").unwrap(),
            "Ada Lovelace"
        );
        assert_eq!(check_display_name("José <b>").unwrap(), "José <b>");
        for bad in ["", "   ", "Ada\nLovelace", "Ada\u{7}"] {
            assert!(
                matches!(check_display_name(bad), Err(AdminError::InvalidDisplayName)),
                "{bad:?}"
            );
        }
    }
}
