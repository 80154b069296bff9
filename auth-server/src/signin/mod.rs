//! Sign-in for people: the authorization code flow (RFC 6749 §4.1) with PKCE (RFC 7636) and
//! OpenID Connect Core 1.0, through the server's own login and consent pages.

pub mod codes;
pub mod id_token;
pub mod pkce;
pub mod redirect_uri;

/// The OpenID Connect identity scopes (OIDC Core §3.1.2.1, §5.4) with their descriptions, as
/// the consent page shows them. They exist in every database and are not permissions: a client
/// registered with one may ask for it for any user.
pub const IDENTITY_SCOPES: [(&str, &str); 3] = [
    ("openid", "Know who you are (your user id)"),
    ("profile", "See your name"),
    ("email", "See your e-mail address"),
];

/// Whether `scope` is one of the [`IDENTITY_SCOPES`].
pub fn is_identity_scope(scope: &str) -> bool {
    IDENTITY_SCOPES.iter().any(|(name, _)| *name == scope)
}
