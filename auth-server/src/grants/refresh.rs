//! Refresh tokens (RFC 6749 §6, OAuth 2.0 Security BCP §4.14): opaque, 256-bit, stored as a
//! keyed hash, single use and rotating, grouped in one family per login.
//!
//! Presenting a token that was already used revokes its whole family (theft detection), except
//! within a short grace period for the immediately previous token, which gets the very same
//! successor again so that concurrent refreshes from one app do not log the user out. The
//! successor is derived from its parent with an HMAC (`successor = HMAC(pepper, parent)`), so
//! the server can hand it out again without ever storing a token in the clear.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;

use super::checkpoint::Checkpoint;
use super::{GrantError, Param, TokenRequest, TokenResponse, TokenService, required, scope};
use crate::clock::Clock;
use crate::issuer::IssuedToken;
use crate::model::{Client, RefreshFamily, RefreshLookup, RefreshTokenRecord};
use crate::revocation::DenyList;
use crate::secrets::SecretHasher;
use crate::store::{Store, StoreError};

const INVALID: &str = "invalid refresh token";

/// Issues, looks up and rotates refresh tokens.
pub struct RefreshTokens {
    store: Arc<dyn Store>,
    hasher: SecretHasher,
    ttl: Duration,
    grace: Duration,
    clock: Arc<dyn Clock>,
}

impl RefreshTokens {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: SecretHasher,
        ttl: Duration,
        grace: Duration,
        clock: Arc<dyn Clock>,
    ) -> RefreshTokens {
        RefreshTokens {
            store,
            hasher,
            ttl,
            grace,
            clock,
        }
    }

    /// The stored form of a token.
    pub fn hash(&self, token: &str) -> Vec<u8> {
        self.hasher.hash(&format!("refresh-token:{token}"))
    }

    fn successor_of(&self, token: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.hasher.hash(&format!("refresh-successor:{token}")))
    }

    fn record(
        &self,
        token: &str,
        family_id: &str,
        parent: Option<Vec<u8>>,
        access: &IssuedToken,
        now: OffsetDateTime,
    ) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: self.hash(token),
            family_id: family_id.to_owned(),
            parent_hash: parent,
            issued_at: now,
            expires_at: now + self.ttl,
            used_at: None,
            access_jti: Some(access.jti.clone()),
            access_expires_at: Some(access.expires_at),
        }
    }

    /// Starts a family at login and returns its first token; `access` is the access token
    /// issued with it, denied if the family is revoked.
    pub async fn start_family(
        &self,
        client_id: &str,
        user_id: &str,
        scope: &str,
        access: &IssuedToken,
    ) -> Result<String, GrantError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| GrantError::Key(crate::keys::KeyError::Crypto))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.clock.now();
        let family = RefreshFamily {
            id: Uuid::new_v4().to_string(),
            client_id: client_id.to_owned(),
            user_id: user_id.to_owned(),
            scope: scope.to_owned(),
            created_at: now,
            revoked_at: None,
        };
        let first = self.record(&token, &family.id, None, access, now);
        self.store.create_refresh_family(&family, &first).await?;
        Ok(token)
    }

    /// Looks a presented token up; `None` when it is unknown.
    pub async fn find(&self, token: &str) -> Result<Option<RefreshLookup>, StoreError> {
        self.store.find_refresh_token(&self.hash(token)).await
    }

    /// Whether a used token may still be exchanged: less than the grace period since its use
    /// (so a grace of zero admits nothing) and the
    /// immediately previous token of its family (its successor is unused).
    fn in_grace(&self, lookup: &RefreshLookup, presented: &str, now: OffsetDateTime) -> bool {
        let (Some(used_at), Some(successor)) = (lookup.token.used_at, &lookup.successor) else {
            return false;
        };
        now - used_at < self.grace
            && successor.used_at.is_none()
            && successor.token_hash == self.hash(&self.successor_of(presented))
    }

    /// Revokes the family of a reused token with the access tokens issued from it, and logs it
    /// as a security event.
    async fn reject_reuse(&self, lookup: &RefreshLookup, deny_list: &DenyList) -> GrantError {
        let family = &lookup.family;
        tracing::warn!(
            target: "security",
            family = %family.id, client_id = %family.client_id, user_id = %family.user_id,
            "refresh token reuse detected: family revoked"
        );
        metrics::counter!("oauth_refresh_reuse_detected_total").increment(1);
        // The cutoff is compared with access tokens' `iat`, which is system time.
        if let Err(err) = deny_list
            .revoke_family(&family.id, OffsetDateTime::now_utc())
            .await
        {
            return err.into();
        }
        GrantError::InvalidGrant("refresh token was already used")
    }

    /// Exchanges `presented` for its successor, or hands the same successor out again in the
    /// grace period. Reuse outside it revokes the family. `access` is the access token issued
    /// with the successor; the one handed out again in the grace period is not linked (the
    /// successor keeps the access token of its first issue).
    async fn rotate(
        &self,
        lookup: RefreshLookup,
        presented: &str,
        access: &IssuedToken,
        deny_list: &DenyList,
    ) -> Result<String, GrantError> {
        let now = self.clock.now();
        let successor = self.successor_of(presented);
        if lookup.token.used_at.is_none() {
            let record = self.record(
                &successor,
                &lookup.family.id,
                Some(lookup.token.token_hash.clone()),
                access,
                now,
            );
            if self
                .store
                .rotate_refresh_token(&lookup.token.token_hash, now, &record)
                .await?
            {
                return Ok(successor);
            }
        }
        // Used before, or by a concurrent request a moment ago: read the current state.
        let current = self
            .find(presented)
            .await?
            .ok_or(GrantError::InvalidGrant(INVALID))?;
        if current.family.revoked_at.is_some() {
            // Revoked while this request ran: nothing to hand out, and no reuse to report.
            return Err(GrantError::InvalidGrant(INVALID));
        }
        if self.in_grace(&current, presented, now) {
            return Ok(successor);
        }
        Err(self.reject_reuse(&current, deny_list).await)
    }
}

/// The `refresh_token` grant.
pub async fn grant(
    service: &TokenService,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, GrantError> {
    let presented = required(
        request,
        Param::RefreshToken,
        GrantError::InvalidGrant(INVALID),
    )?;
    let invalid = || GrantError::InvalidGrant(INVALID);
    let refresh = &service.refresh;
    let lookup = refresh.find(presented).await?.ok_or_else(invalid)?;
    let now = refresh.clock.now();
    if lookup.family.client_id != client.id
        || lookup.family.revoked_at.is_some()
        || lookup.token.expires_at <= now
    {
        return Err(invalid());
    }
    if lookup.token.used_at.is_some() && !refresh.in_grace(&lookup, presented, now) {
        return Err(refresh.reject_reuse(&lookup, &service.deny_list).await);
    }
    let user = service.store.find_user(&lookup.family.user_id).await?;
    let Some(user) = user.filter(|u| !u.disabled) else {
        return Err(GrantError::InvalidGrant("the user is disabled"));
    };
    // Never wider than the login's scope, nor than what the user and client may have now.
    let allowed: BTreeSet<String> = lookup
        .family
        .scope
        .split(' ')
        .filter(|s| {
            (crate::signin::is_identity_scope(s) || user.permissions.contains(*s))
                && client.scopes.contains(*s)
        })
        .map(str::to_owned)
        .collect();
    let scope = scope::negotiate(scope::requested(request)?, &allowed)?;
    // Issued before the successor is stored, so the successor records its jti.
    let access = service.issuer.issue(&user.id, &client.id, &scope)?;
    service.checkpoint(Checkpoint::RefreshChecked).await;
    let successor = refresh
        .rotate(lookup, presented, &access, &service.deny_list)
        .await?;
    Ok(TokenResponse::bearer(
        access.token,
        access.expires_in,
        scope,
        Some(successor),
    ))
}
