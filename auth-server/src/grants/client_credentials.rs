//! The `client_credentials` grant (RFC 6749 §4.4): the client acts on its own behalf, so
//! `sub` is the client id and no refresh token is issued.

use super::{GrantError, TokenRequest, TokenResponse, scope};
use crate::issuer::TokenIssuer;
use crate::model::Client;

pub fn grant(
    client: &Client,
    request: &TokenRequest,
    issuer: &TokenIssuer,
) -> Result<TokenResponse, GrantError> {
    let scope = scope::negotiate(scope::requested(request)?, &client.scopes)?;
    let issued = issuer.issue(&client.id, &client.id, &scope)?;
    Ok(TokenResponse::bearer(
        issued.token,
        issued.expires_in,
        scope,
        None,
    ))
}
