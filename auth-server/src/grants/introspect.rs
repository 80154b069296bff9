//! Token introspection (RFC 7662) and revocation (RFC 7009). Both require client
//! authentication; a client sees and revokes only its own tokens unless it holds the
//! [`INTROSPECT_SCOPE`] scope. Anything unknown, expired, revoked or not the caller's is
//! `{"active": false}`; revoking such a token is a silent success (RFC 7009 §2.2).

use serde_json::{Value, json};
use time::OffsetDateTime;
use token_guard::RevocationSubject;

use super::{GrantError, INTROSPECT_SCOPE, TokenRequest, TokenService, required};
use crate::store::{Client, RefreshLookup};

/// A token recognised as one of ours.
enum Known {
    Access(Value),
    Refresh(Box<RefreshLookup>),
}

impl TokenService {
    /// Classifies a token: a live access token (valid signature, `iss`, unexpired, not
    /// denied) or a live refresh token (unused, unexpired, family not revoked).
    async fn recognise(&self, token: &str, caller: &Client) -> Result<Option<Known>, GrantError> {
        let now = OffsetDateTime::now_utc();
        let privileged = caller.scopes.contains(INTROSPECT_SCOPE);
        let owned = |client_id: &str| privileged || client_id == caller.id;
        if let Some(claims) = self.keys.current().verify_jws(token) {
            let live = claims["iss"] == self.issuer.issuer()
                && claims["exp"]
                    .as_i64()
                    .is_some_and(|exp| exp > now.unix_timestamp())
                && claims["client_id"].as_str().is_some_and(owned);
            let token = RevocationSubject::new(
                claims["jti"].as_str().unwrap_or_default(),
                claims["sub"].as_str().unwrap_or_default(),
                claims["client_id"].as_str().unwrap_or_default(),
                claims["iat"].as_u64().unwrap_or_default(),
            );
            if live
                && !self
                    .deny_list
                    .is_revoked(&token, now.unix_timestamp())
                    .await?
            {
                return Ok(Some(Known::Access(claims)));
            }
            return Ok(None);
        }
        if let Some(lookup) = self.refresh.find(token).await? {
            let live = lookup.family.revoked_at.is_none()
                && lookup.token.used_at.is_none()
                && lookup.token.expires_at > now
                && owned(&lookup.family.client_id);
            if live {
                return Ok(Some(Known::Refresh(Box::new(lookup))));
            }
        }
        Ok(None)
    }

    /// `POST /oauth/introspect`.
    pub async fn introspect(&self, request: &TokenRequest) -> Result<Value, GrantError> {
        let caller = self.clients.authenticate(request).await?;
        let token = required(request, "token")?;
        Ok(match self.recognise(token, &caller).await? {
            None => json!({ "active": false }),
            Some(Known::Access(claims)) => json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims["scope"],
                "client_id": claims["client_id"],
                "sub": claims["sub"],
                "aud": claims["aud"],
                "iss": claims["iss"],
                "exp": claims["exp"],
                "iat": claims["iat"],
                "nbf": claims["nbf"],
                "jti": claims["jti"],
            }),
            Some(Known::Refresh(lookup)) => json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": lookup.family.scope,
                "client_id": lookup.family.client_id,
                "sub": lookup.family.user_id,
                "iss": self.issuer.issuer(),
                "exp": lookup.token.expires_at.unix_timestamp(),
                "iat": lookup.token.issued_at.unix_timestamp(),
            }),
        })
    }

    /// `POST /oauth/revoke`: a refresh token revokes its whole family and the access tokens
    /// issued from it (RFC 7009 §2.1); an access token goes on the deny-list until it expires.
    pub async fn revoke(&self, request: &TokenRequest) -> Result<(), GrantError> {
        let caller = self.clients.authenticate(request).await?;
        let token = required(request, "token")?;
        let now = OffsetDateTime::now_utc();
        match self.recognise(token, &caller).await? {
            None => {}
            Some(Known::Access(claims)) => {
                let jti = claims["jti"].as_str().unwrap_or_default();
                let exp = claims["exp"].as_i64().unwrap_or_default();
                self.deny_list.deny(jti, exp, now.unix_timestamp()).await?;
                tracing::info!(target: "security", jti, by = %caller.id, "access token revoked");
            }
            Some(Known::Refresh(lookup)) => {
                self.deny_list.revoke_family(&lookup.family.id, now).await?;
                tracing::info!(target: "security", family = %lookup.family.id, by = %caller.id, "refresh family revoked");
            }
        }
        Ok(())
    }
}
