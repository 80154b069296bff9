//! The successful answer of the auth server's `POST /oauth/token` (RFC 6749 §5.1): written by
//! the auth server for every grant, read by the worker's token client.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The only token type the auth server issues (RFC 6750 bearer tokens).
pub const BEARER: &str = "Bearer";

/// A successful token response (RFC 6749 §5.1), sent as JSON with `Cache-Control: no-store`.
///
/// The auth server always sends every field but `refresh_token`. A reader accepts what RFC 6749
/// allows a server to leave out: `expires_in` (RECOMMENDED) and `scope` (OPTIONAL when it is
/// the requested one) may be missing, and a missing `token_type` is read as [`BEARER`].
/// `Debug` never shows the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token (a signed JWT).
    pub access_token: String,
    /// [`BEARER`].
    #[serde(default = "bearer")]
    pub token_type: String,
    /// Lifetime of the access token, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// The granted scopes, space-separated (RFC 6749 §3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A refresh token (password and refresh_token grants of a client allowed refresh tokens);
    /// absent from the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// An OpenID Connect id_token (OIDC Core §3.1.3.3): authorization_code grants with the
    /// `openid` scope; absent from the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

fn bearer() -> String {
    BEARER.to_owned()
}

impl TokenResponse {
    /// A [`BEARER`] token response as the auth server issues it: `access_token` valid for
    /// `expires_in` seconds with the granted `scope` (space-separated), and a refresh token when
    /// one was issued.
    pub fn bearer(
        access_token: String,
        expires_in: u64,
        scope: String,
        refresh_token: Option<String>,
    ) -> Self {
        TokenResponse {
            access_token,
            token_type: bearer(),
            expires_in: Some(expires_in),
            scope: Some(scope),
            refresh_token,
            id_token: None,
        }
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("id_token", &self.id_token.as_ref().map(|_| "***"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn token_responses_serialize_as_rfc_6749_says() {
        let plain = TokenResponse::bearer("a.b.c".into(), 900, "x:read x:write".into(), None);
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":900,"scope":"x:read x:write"}"#
        );
        let with_refresh = TokenResponse::bearer("a.b.c".into(), 900, "x".into(), Some("r".into()));
        assert_eq!(
            serde_json::to_value(&with_refresh).unwrap(),
            json!({"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 900,
                   "scope": "x", "refresh_token": "r"})
        );
    }

    #[test]
    fn a_reader_takes_what_rfc_6749_lets_a_server_leave_out() {
        let full: TokenResponse = serde_json::from_value(json!({
            "access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s",
            "refresh_token": "r"
        }))
        .unwrap();
        assert_eq!(
            full,
            TokenResponse::bearer("t".into(), 300, "s".into(), Some("r".into()))
        );
        let bare: TokenResponse = serde_json::from_value(json!({"access_token": "t"})).unwrap();
        assert_eq!(bare.token_type, "Bearer");
        assert_eq!(
            (bare.expires_in, bare.scope, bare.refresh_token),
            (None, None, None)
        );
        assert!(serde_json::from_value::<TokenResponse>(json!({"expires_in": 300})).is_err());
    }

    #[test]
    fn debug_hides_the_tokens() {
        let response =
            TokenResponse::bearer("secret-jwt".into(), 1, "s".into(), Some("secret-rt".into()));
        let debug = format!("{response:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
