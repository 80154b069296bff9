//! Token introspection (RFC 7662) and revocation (RFC 7009). Both require client
//! authentication; a client sees and revokes only its own tokens unless it holds the
//! [`INTROSPECT_SCOPE`] scope. Anything unknown, expired, revoked or not the caller's is
//! `{"active": false}`; revoking such a token is a silent success (RFC 7009 §2.2).

use serde_json::{Value, json};
use time::OffsetDateTime;
use token_guard::{AccessClaims, RevocationSubject};

use super::{GrantError, INTROSPECT_SCOPE, Param, TokenRequest, TokenService};
use crate::model::{Client, RefreshLookup};

/// A token recognised as one of ours.
enum Known {
    Access(AccessClaims),
    Refresh(Box<RefreshLookup>),
}

impl TokenService {
    /// Classifies a token: a live access token (valid by the very rules resource servers
    /// apply, [`token_guard::AccessTokenRules`], and not denied) or a live refresh token
    /// (unused, unexpired, family not revoked). A token of another client is unknown unless
    /// the caller holds [`INTROSPECT_SCOPE`].
    async fn recognise(&self, token: &str, caller: &Client) -> Result<Option<Known>, GrantError> {
        let now = OffsetDateTime::now_utc();
        let privileged = caller.scopes.contains(INTROSPECT_SCOPE);
        let owned = |client_id: &str| privileged || client_id == caller.id;
        if self.rules.check_shape(token).is_ok() {
            let keys = self.keys.current();
            let Ok(claims) = self.rules.verify(token, |kid| keys.public_key(kid)) else {
                return Ok(None);
            };
            let subject =
                RevocationSubject::new(&claims.jti, &claims.sub, &claims.client_id, claims.iat);
            if owned(&claims.client_id)
                && !self
                    .deny_list
                    .is_revoked(&subject, now.unix_timestamp())
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
        let known = match presented_token(request)? {
            Some(token) => self.recognise(token, &caller).await?,
            None => None,
        };
        Ok(match known {
            None => json!({ "active": false }),
            Some(Known::Access(claims)) => json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "exp": claims.exp,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "jti": claims.jti,
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
        let Some(token) = presented_token(request)? else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        match self.recognise(token, &caller).await? {
            None => {}
            Some(Known::Access(claims)) => {
                let jti = claims.jti.as_str();
                let exp = i64::try_from(claims.exp).unwrap_or(i64::MAX);
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

/// The `token` parameter: missing is `invalid_request`; a value over its cap or with control
/// characters cannot be one of ours, so it is `Ok(None)` (inactive, RFC 7662 §2.2; revoking it
/// is a silent success, RFC 7009 §2.2).
fn presented_token(request: &TokenRequest) -> Result<Option<&str>, GrantError> {
    match request.param(Param::Token) {
        Ok(Some(token)) => Ok(Some(token)),
        Ok(None) => Err(GrantError::MissingParameter(Param::Token)),
        Err(_) => Ok(None),
    }
}
