//! Consents: what users allowed clients (OIDC Core §3.1.2.4), listed and withdrawn. Withdrawing
//! a consent also ends what it allowed: the user's sessions (refresh families) at that client
//! and the access tokens issued from them.

use serde::Serialize;

use super::{Admin, AdminError};
use crate::model::{Consent, FamilyOwner, User};

/// What [`Admin::revoke_consents`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConsentsRevoked {
    /// Consents withdrawn (one per client).
    pub consents: u64,
    /// Refresh families (sessions) revoked, with their access tokens.
    pub sessions: u64,
}

impl Admin {
    /// Every consent of the user (by id or e-mail), by client id.
    pub async fn user_consents(&self, id_or_email: &str) -> Result<Vec<Consent>, AdminError> {
        let user = self.user(id_or_email).await?;
        Ok(self.store.list_consents(&user.id).await?)
    }

    /// Withdraws the user's consent to `client` (every client when `None`), so the consent
    /// page asks again, and revokes the user's refresh families at that client (at every
    /// client) with the access tokens issued from them (RFC 7009 §2.1). The user's other
    /// tokens, browser sessions and the client's tokens for other users stay valid. An unknown
    /// client is [`AdminError::ClientNotFound`]: a typo must not withdraw nothing quietly.
    pub async fn revoke_consents(
        &self,
        id_or_email: &str,
        client: Option<&str>,
    ) -> Result<(User, ConsentsRevoked), AdminError> {
        let user = self.user(id_or_email).await?;
        if let Some(client) = client {
            self.client(client).await?;
        }
        // The consent first, so no new code is issued on it while the families are revoked.
        let consents = self.store.delete_consents(&user.id, client).await?;
        let owner = match client {
            Some(client) => FamilyOwner::UserAtClient {
                user: &user.id,
                client,
            },
            None => FamilyOwner::User(&user.id),
        };
        let sessions = self.deny_list().await?.revoke_families(owner).await?;
        Ok((user, ConsentsRevoked { consents, sessions }))
    }
}
