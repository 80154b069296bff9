//! Sign-in for people: the authorization code flow (RFC 6749 §4.1) with PKCE (RFC 7636) and
//! OpenID Connect Core 1.0, through the server's own login and consent pages.

pub mod redirect_uri;
