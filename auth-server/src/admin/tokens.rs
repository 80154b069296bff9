//! Revoking tokens already issued: one access token, or everything of a client or a user
//! (RFC 7009 semantics, written where resource servers look: see [`crate::revocation`]).

use time::OffsetDateTime;

use super::{Admin, AdminError, Revoked};
use crate::model::User;
use crate::revocation::VERIFIER_LEEWAY;

impl Admin {
    /// Denies the access token `jti` until it would have expired: now + the longest
    /// access-token lifetime + the verifiers' leeway. Unknown `jti`s are denied all the same
    /// (the token is not stored).
    pub async fn revoke_access_token(&self, jti: &str) -> Result<(), AdminError> {
        let now = OffsetDateTime::now_utc();
        let until = now + self.revocation.access_token_ttl + VERIFIER_LEEWAY;
        self.deny_list()
            .await?
            .deny(jti, until.unix_timestamp(), now.unix_timestamp())
            .await?;
        Ok(())
    }

    /// Ends every session of the client and its access tokens issued so far. An unknown
    /// client is [`AdminError::ClientNotFound`]: a typo must not "revoke" nobody's tokens.
    pub async fn revoke_client_tokens(&self, client_id: &str) -> Result<Revoked, AdminError> {
        self.client(client_id).await?;
        Ok(self.deny_list().await?.revoke_client(client_id).await?)
    }

    /// Ends every session of the user (by id or e-mail) and their access tokens issued so far;
    /// the cutoff is on the user id (`sub`).
    pub async fn revoke_user_tokens(
        &self,
        id_or_email: &str,
    ) -> Result<(User, Revoked), AdminError> {
        let user = self.user(id_or_email).await?;
        let revoked = self.deny_list().await?.revoke_user(&user.id).await?;
        Ok((user, revoked))
    }
}
