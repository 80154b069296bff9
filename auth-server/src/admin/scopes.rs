//! Scopes: the permissions tokens can carry.

use time::OffsetDateTime;

use super::{Admin, AdminError};
use crate::grants::scope::is_scope_token;
use crate::model::Scope;

/// Longest accepted scope name, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;

/// [`AdminError::InvalidScopeName`] unless `name` is an RFC 6749 §3.3 `scope-token` of at
/// most [`MAX_SCOPE_LEN`] bytes.
fn check_scope_name(name: &str) -> Result<(), AdminError> {
    if !is_scope_token(name) || name.len() > MAX_SCOPE_LEN {
        return Err(AdminError::InvalidScopeName(name.to_owned()));
    }
    Ok(())
}

impl Admin {
    /// Registers a scope; a taken name is
    /// [`StoreError::AlreadyExists`](crate::store::StoreError::AlreadyExists).
    pub async fn create_scope(&self, name: &str, description: &str) -> Result<Scope, AdminError> {
        check_scope_name(name)?;
        let scope = Scope {
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: OffsetDateTime::now_utc(),
        };
        self.store.create_scope(&scope).await?;
        Ok(scope)
    }

    /// Registers those of `scopes` (name, description) that do not exist yet; returns them.
    pub async fn ensure_scopes(&self, scopes: &[(&str, &str)]) -> Result<Vec<Scope>, AdminError> {
        let existing = self.list_scopes().await?;
        let mut created = Vec::new();
        for (name, description) in scopes {
            if !existing.iter().any(|scope| scope.name == *name)
                && !created.iter().any(|scope: &Scope| scope.name == *name)
            {
                created.push(self.create_scope(name, description).await?);
            }
        }
        Ok(created)
    }

    /// Every scope, by name.
    pub async fn list_scopes(&self) -> Result<Vec<Scope>, AdminError> {
        Ok(self.store.list_scopes().await?)
    }

    /// Deletes a scope that no client is allowed any more
    /// ([`StoreError::ScopeInUse`](crate::store::StoreError::ScopeInUse) otherwise).
    pub async fn delete_scope(&self, name: &str) -> Result<(), AdminError> {
        if crate::signin::is_identity_scope(name) {
            return Err(AdminError::BuiltInScope(name.to_owned()));
        }
        if !self.store.delete_scope(name).await? {
            return Err(AdminError::ScopeNotFound(name.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6749 §3.3 `scope-token`s of at most 128 bytes.
    #[test]
    fn scope_names() {
        let longest = "s".repeat(MAX_SCOPE_LEN);
        for good in [
            "a",
            "transcriptions:read",
            "oauth:introspect",
            "!#[]~",
            &longest,
        ] {
            assert!(check_scope_name(good).is_ok(), "{good:?}");
        }
        let too_long = "s".repeat(MAX_SCOPE_LEN + 1);
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\tb", &too_long] {
            assert!(
                matches!(check_scope_name(bad), Err(AdminError::InvalidScopeName(_))),
                "{bad:?}"
            );
        }
    }
}
