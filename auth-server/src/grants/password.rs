//! The resource owner password credentials grant (RFC 6749 §4.3) for first-party apps:
//! `sub` is the user id and the scope is bounded by the user's permissions and the client's
//! scopes. Unknown users cost one argon2 verification like wrong passwords and get the same
//! answer; attempts are reserved on the throttle per account and per source address before the
//! password is verified. User names and passwords are compared in their RFC 8265 forms
//! ([`crate::identifiers`]).

use std::collections::BTreeSet;

use secrecy::SecretString;

use super::checkpoint::Checkpoint;
use super::{GrantError, Param, TokenRequest, TokenResponse, TokenService, required, scope};
use crate::model::{Client, GrantType, User};
use crate::passwords::PasswordError;
use crate::throttle::Admission;

const BAD_CREDENTIALS: &str = "invalid username or password";

impl TokenService {
    /// Verifies a user's password, as the password grant and the login page do: the attempt is
    /// reserved on the throttle per account and per source address `ip` first; an unknown user
    /// costs the same argon2 work as a wrong password and gets the same answer; the user is
    /// read again after the verification, so a reset, disabling or deletion meanwhile wins.
    ///
    /// Errors: [`GrantError::InvalidGrant`] (wrong e-mail or password, disabled),
    /// [`GrantError::LoginThrottled`], [`GrantError::Busy`] (the hashing pool is saturated:
    /// the attempt is not counted), and failures on our side.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<User, GrantError> {
        let service = self;
        // Counted before verifying: parallel guesses cannot all pass one check.
        let permit = match service.throttle.reserve(username, ip).await? {
            Admission::Allowed(permit) => permit,
            Admission::Locked { retry_after } => {
                metrics::counter!("oauth_login_throttled_total").increment(1);
                return Err(GrantError::LoginThrottled { retry_after });
            }
        };
        // `None` too for a name RFC 8265 refuses: it is verified against the dummy hash below.
        let user = service.store.find_user_by_email(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let verified = service
            .passwords
            .verify(SecretString::from(password.to_owned()), hash)
            .await;
        let matched = match verified {
            Ok(matched) => matched,
            Err(PasswordError::Saturated) => {
                // Nothing was verified: the attempt does not count.
                service.throttle.cancel(permit).await?;
                return Err(GrantError::Busy { retry_after: 1 });
            }
            Err(_) => return Err(GrantError::Hashing),
        };
        let user = match user {
            Some(user) if matched && !user.disabled => user,
            _ => {
                metrics::counter!("oauth_login_failures_total").increment(1);
                service.throttle.failed(permit);
                return Err(GrantError::InvalidGrant(BAD_CREDENTIALS));
            }
        };
        service.throttle.succeeded(permit).await?;
        service.checkpoint(Checkpoint::PasswordVerified).await;
        // The record was read before a verification that can take a while: a password reset,
        // disabling or deletion in the meantime (whose cutoff is already set) must win, or this
        // login would start a session after the revocation.
        let current = service.store.find_user(&user.id).await?;
        let Some(user) =
            current.filter(|now| !now.disabled && now.password_hash == user.password_hash)
        else {
            return Err(GrantError::InvalidGrant(BAD_CREDENTIALS));
        };

        Ok(user)
    }
}

pub async fn grant(
    service: &TokenService,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, GrantError> {
    let username = required(
        request,
        Param::Username,
        GrantError::InvalidGrant(BAD_CREDENTIALS),
    )?;
    let password = required(
        request,
        Param::Password,
        GrantError::InvalidGrant(BAD_CREDENTIALS),
    )?;
    let user = service
        .login(username, password, request.client_ip())
        .await?;

    let allowed: BTreeSet<String> = user
        .permissions
        .intersection(&client.scopes)
        .cloned()
        .collect();
    let scope = scope::negotiate(scope::requested(request)?, &allowed)?;
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
    Ok(TokenResponse::bearer(
        access.token,
        access.expires_in,
        scope,
        refresh_token,
    ))
}
