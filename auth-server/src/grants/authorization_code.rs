//! The authorization code grant at the token endpoint (RFC 6749 §4.1.3) with PKCE (RFC 7636
//! §4.5–4.6) and, with the `openid` scope, an id_token (OIDC Core §3.1.3.3).
//!
//! Every failure about the code is `invalid_grant`: unknown, expired, already used, issued to
//! another client, another `redirect_uri` (compared byte for byte, RFC 6749 §4.1.3), or a
//! missing or wrong `code_verifier` (RFC 7636 §4.6). A code presented a second time also
//! revokes what its first exchange issued (RFC 6749 §4.1.2): the refresh family and its access
//! tokens, or the access token alone.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::{GrantError, Param, TokenRequest, TokenResponse, TokenService, required};
use crate::model::{AuthorizationCodeRecord, Client, CodeRedemption, GrantType};
use crate::signin::id_token::{self, IdTokenClaims};
use crate::signin::{is_identity_scope, pkce};

const INVALID_CODE: &str =
    "the authorization code is invalid, expired or was issued to another client";
const REPLAYED_CODE: &str = "the authorization code was already used";
const WRONG_REDIRECT: &str = "redirect_uri differs from the authorization request's";
const WRONG_VERIFIER: &str = "code_verifier does not match the code_challenge";

pub async fn grant(
    service: &TokenService,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, GrantError> {
    let code = required(request, Param::Code, GrantError::InvalidGrant(INVALID_CODE))?;
    // Read before the code is spent, but judged after: a request with a malformed value
    // still uses the code up, as a wrong one does.
    let redirect_uri = request.param(Param::RedirectUri).ok().flatten();
    let verifier = request.param(Param::CodeVerifier).ok().flatten();
    let record = match service.codes.redeem(code).await? {
        CodeRedemption::Fresh(record) => record,
        CodeRedemption::Invalid => return Err(GrantError::InvalidGrant(INVALID_CODE)),
        CodeRedemption::Replayed(record) => {
            revoke_what_it_issued(service, &record).await?;
            return Err(GrantError::InvalidGrant(REPLAYED_CODE));
        }
    };
    if record.client_id != client.id {
        return Err(GrantError::InvalidGrant(INVALID_CODE));
    }
    if redirect_uri != Some(record.redirect_uri.as_str()) {
        return Err(GrantError::InvalidGrant(WRONG_REDIRECT));
    }
    if !verifier.is_some_and(|v| pkce::verify_s256(v, &record.code_challenge)) {
        return Err(GrantError::InvalidGrant(WRONG_VERIFIER));
    }
    // The user as of now: one disabled or deleted since the login gets nothing, and
    // permissions taken away since then are not granted.
    let user = service
        .store
        .find_user(&record.user_id)
        .await?
        .filter(|user| !user.disabled)
        .ok_or(GrantError::InvalidGrant(INVALID_CODE))?;
    let scope: BTreeSet<&str> = record
        .scope
        .split_whitespace()
        .filter(|s| client.scopes.contains(*s))
        .filter(|s| is_identity_scope(s) || user.permissions.contains(*s))
        .collect();
    let scope = scope.into_iter().collect::<Vec<_>>().join(" ");
    let access = service.issuer.issue(&user.id, &client.id, &scope)?;
    let refresh_token = if client.grant_types.contains(&GrantType::RefreshToken) {
        Some(
            service
                .refresh
                .start_family(&client.id, &user.id, &scope, &access)
                .await?,
        )
    } else {
        None
    };
    let family_id = match &refresh_token {
        Some(token) => service.refresh.find(token).await?.map(|l| l.family.id),
        None => None,
    };
    service
        .store
        .record_code_issue(
            &record.code_hash,
            family_id.as_deref(),
            &access.jti,
            access.expires_at,
        )
        .await?;
    let id_token = if scope.split(' ').any(|s| s == "openid") {
        let iat = access.expires_at - access.expires_in as i64;
        let claims = IdTokenClaims {
            iss: service.issuer.issuer(),
            sub: &user.id,
            aud: &client.id,
            azp: &client.id,
            exp: access.expires_at,
            iat,
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            amr: record.amr.split_whitespace().collect(),
            at_hash: id_token::at_hash(&access.token),
        };
        Some(id_token::sign(
            &service.keys.current(),
            client.id_token_alg,
            &claims,
        )?)
    } else {
        None
    };
    let mut response = TokenResponse::bearer(access.token, access.expires_in, scope, refresh_token);
    response.id_token = id_token;
    Ok(response)
}

/// RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
/// server MUST deny the request and SHOULD revoke (when possible) all tokens previously issued
/// based on that authorization code."
async fn revoke_what_it_issued(
    service: &TokenService,
    record: &AuthorizationCodeRecord,
) -> Result<(), GrantError> {
    metrics::counter!("oauth_code_replay_detected_total").increment(1);
    tracing::warn!(
        target: "security",
        client_id = %record.client_id,
        sub = %record.user_id,
        "authorization code presented again: revoking what it issued"
    );
    let now = OffsetDateTime::now_utc();
    if let Some(family) = &record.family_id {
        service.deny_list.revoke_family(family, now).await?;
    } else if let (Some(jti), Some(exp)) = (&record.access_jti, record.access_expires_at) {
        service
            .deny_list
            .deny(jti, exp, now.unix_timestamp())
            .await?;
    }
    Ok(())
}
