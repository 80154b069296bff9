//! Client applications: registration by the rules, secret rotation, and disabling or deleting
//! a client together with everything issued to it.

use std::collections::BTreeSet;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Admin, AdminError, Revoked};
use crate::grants::client_auth::CLIENT_CACHE_TTL;
use crate::model::{Client, GrantType, IdTokenAlg};
use crate::secrets::generate_client_secret;
use crate::signin::redirect_uri::check_registration;

/// A client to register, as an operator describes it; [`Admin::register_client`] applies the
/// rules.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// Shown to operators; must not be empty or only spaces (kept as given otherwise).
    pub name: String,
    /// Scopes the client may request; each must exist. Duplicates are ignored.
    pub scopes: Vec<String>,
    /// Grant types it may use: none means `client_credentials`; `password` and
    /// `authorization_code` imply `refresh_token`. Duplicates are ignored.
    pub grants: Vec<GrantType>,
    /// Redirect URIs of the authorization code flow (at least one with `authorization_code`,
    /// none without); each must pass [`check_registration`].
    pub redirect_uris: Vec<String>,
    /// Where the end-session endpoint may send the browser after logout (same rules).
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (no secret; RFC 6749 §2.1): allowed only with `authorization_code`.
    pub public: bool,
    /// Its users are not asked for consent.
    pub first_party: bool,
    /// The algorithm of its id_tokens.
    pub id_token_alg: IdTokenAlg,
}

impl NewClient {
    /// A client called `name` allowed `scopes` with `grants` (the rules apply at registration).
    pub fn new(
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
        grants: impl IntoIterator<Item = GrantType>,
    ) -> NewClient {
        NewClient {
            name: name.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            grants: grants.into_iter().collect(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            public: false,
            first_party: false,
            id_token_alg: IdTokenAlg::default(),
        }
    }

    /// A client of the authorization code flow (people signing in through the server's pages)
    /// called `name`, allowed `scopes`, sending the browser back to `redirect_uris`.
    pub fn signing_in(
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
        redirect_uris: impl IntoIterator<Item = impl Into<String>>,
    ) -> NewClient {
        NewClient {
            redirect_uris: redirect_uris.into_iter().map(Into::into).collect(),
            ..NewClient::new(name, scopes, [GrantType::AuthorizationCode])
        }
    }

    /// The grant types the client gets: `client_credentials` when none is asked for, and
    /// `refresh_token` with `password` or `authorization_code` (a login is a session; README,
    /// "Admin CLI").
    pub fn grant_types(&self) -> BTreeSet<GrantType> {
        let mut grants: BTreeSet<GrantType> = self.grants.iter().copied().collect();
        if grants.is_empty() {
            grants.insert(GrantType::ClientCredentials);
        }
        if grants.contains(&GrantType::Password) || grants.contains(&GrantType::AuthorizationCode) {
            grants.insert(GrantType::RefreshToken);
        }
        grants
    }

    /// The registration rules of the authorization code flow, on top of the grant rules: its
    /// URIs pass [`check_registration`]; `authorization_code` needs a redirect URI and nothing
    /// else has one; a public client uses `authorization_code` (and `refresh_token`) only.
    fn check_sign_in(&self, grants: &BTreeSet<GrantType>) -> Result<(), AdminError> {
        for uri in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
        {
            check_registration(uri)?;
        }
        let code_flow = grants.contains(&GrantType::AuthorizationCode);
        if code_flow && self.redirect_uris.is_empty() {
            return Err(AdminError::ClientRules(
                "the authorization_code grant needs at least one redirect URI",
            ));
        }
        let has_uris = !self.redirect_uris.is_empty() || !self.post_logout_redirect_uris.is_empty();
        if !code_flow && has_uris {
            return Err(AdminError::ClientRules(
                "redirect URIs are for clients with the authorization_code grant",
            ));
        }
        if self.public
            && grants
                .iter()
                .any(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
        {
            return Err(AdminError::ClientRules(
                "a public client may use only the authorization_code grant (and its refresh_token)",
            ));
        }
        Ok(())
    }
}

/// A registered client and its secret, which exists nowhere else: only its HMAC is stored.
#[derive(Debug)]
pub struct RegisteredClient {
    pub client: Client,
    /// 256 random bits, base64url (43 characters); `None` for a public client.
    pub secret: Option<SecretString>,
}

impl Admin {
    /// Registers a client: checks the name, applies the grant rules
    /// ([`NewClient::grant_types`]), generates a secret and stores its HMAC under the pepper
    /// (needs `AUTH_SECRETS`). Unknown scopes are [`StoreError::UnknownScope`](crate::store::StoreError::UnknownScope).
    pub async fn register_client(&self, new: NewClient) -> Result<RegisteredClient, AdminError> {
        if new.name.trim().is_empty() {
            return Err(AdminError::EmptyClientName);
        }
        let grant_types = new.grant_types();
        new.check_sign_in(&grant_types)?;
        let sealed = self.sealed()?;
        let (secret, secret_hash) = if new.public {
            // No secret: an empty hash, which no presented secret's HMAC equals.
            (None, Vec::new())
        } else {
            let secret = generate_client_secret()?;
            let hash = sealed.hasher.hash(secret.expose_secret());
            (Some(secret), hash)
        };
        let client = Client {
            id: Uuid::new_v4().to_string(),
            grant_types,
            name: new.name,
            secret_hash,
            scopes: new.scopes.into_iter().collect(),
            disabled: false,
            created_at: OffsetDateTime::now_utc(),
            public: new.public,
            first_party: new.first_party,
            id_token_alg: new.id_token_alg,
            redirect_uris: new.redirect_uris,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
        };
        self.store.create_client(&client).await?;
        Ok(RegisteredClient { client, secret })
    }

    /// Every client.
    pub async fn list_clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(self.store.list_clients().await?)
    }

    /// The client `id`, or [`AdminError::ClientNotFound`].
    pub async fn client(&self, id: &str) -> Result<Client, AdminError> {
        self.store
            .find_client(id)
            .await?
            .ok_or_else(|| AdminError::ClientNotFound(id.to_owned()))
    }

    /// Refuses the client from now on (running servers within their 2 s client cache) and ends
    /// its sessions and the access tokens issued to it, including what servers still issue
    /// from their cache meanwhile.
    pub async fn disable_client(&self, id: &str) -> Result<Revoked, AdminError> {
        if !self.store.set_client_disabled(id, true).await? {
            return Err(AdminError::ClientNotFound(id.to_owned()));
        }
        let deny_list = self.deny_list().await?;
        Ok(deny_list
            .revoke_removed_client(id, CLIENT_CACHE_TTL)
            .await?)
    }

    /// Accepts the client's requests again (tokens revoked meanwhile stay revoked).
    pub async fn enable_client(&self, id: &str) -> Result<(), AdminError> {
        if !self.store.set_client_disabled(id, false).await? {
            return Err(AdminError::ClientNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Deletes the client, its sessions and (denied first, as the delete cascades to the
    /// sessions that list them) its access tokens.
    pub async fn delete_client(&self, id: &str) -> Result<Revoked, AdminError> {
        self.client(id).await?;
        let revoked = self
            .deny_list()
            .await?
            .revoke_removed_client(id, CLIENT_CACHE_TTL)
            .await?;
        if !self.store.delete_client(id).await? {
            return Err(AdminError::ClientNotFound(id.to_owned()));
        }
        Ok(revoked)
    }

    /// Replaces the client's secret with a new one (needs `AUTH_SECRETS`) and returns it;
    /// running servers refuse the old one within their 2 s client cache.
    pub async fn rotate_client_secret(&self, id: &str) -> Result<SecretString, AdminError> {
        if self.client(id).await?.public {
            return Err(AdminError::ClientRules(
                "a public client has no secret to rotate",
            ));
        }
        let sealed = self.sealed()?;
        let secret = generate_client_secret()?;
        if !self
            .store
            .set_client_secret_hash(id, &sealed.hasher.hash(secret.expose_secret()))
            .await?
        {
            return Err(AdminError::ClientNotFound(id.to_owned()));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GrantType::{AuthorizationCode, ClientCredentials, Password, RefreshToken};

    /// README, "Admin CLI": no grant means client_credentials; `--grant password` implies
    /// `refresh_token`; nothing else is added.
    #[test]
    fn grant_rules() {
        let table: [(&[GrantType], &[GrantType]); 7] = [
            (&[AuthorizationCode], &[AuthorizationCode, RefreshToken]),
            (&[], &[ClientCredentials]),
            (&[ClientCredentials], &[ClientCredentials]),
            (&[Password], &[Password, RefreshToken]),
            (&[Password, Password], &[Password, RefreshToken]),
            (&[RefreshToken], &[RefreshToken]),
            (
                &[Password, ClientCredentials],
                &[ClientCredentials, Password, RefreshToken],
            ),
        ];
        for (asked, granted) in table {
            let new = NewClient::new("c", ["a"], asked.iter().copied());
            assert_eq!(
                new.grant_types(),
                granted.iter().copied().collect::<BTreeSet<_>>(),
                "{asked:?}"
            );
        }
    }
}
