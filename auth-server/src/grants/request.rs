//! A token request as the grants see it: the known form parameters, each checked once for
//! length and characters before anything looks it up, and the raw `Authorization` header.
//!
//! Parsing is strict (RFC 6749 §3.2: UTF-8, no repeated parameters). Unknown parameters are
//! ignored (RFC 6749 §3.1) and their text is never kept, so nothing a caller sends under an
//! unknown name can reach a database, a log or an `error_description`. A known parameter whose
//! value is not UTF-8 makes the request `invalid_request`; one over its cap or containing a
//! control character (C0, DEL, C1: NUL included) is recorded as malformed, and each grant
//! turns that into its own contract answer
//! (`invalid_client`, `invalid_grant`, `invalid_scope`, `active: false`, …) through
//! [`TokenRequest::param`].

use std::borrow::Cow;
use std::collections::HashSet;

use percent_encoding::percent_decode;

use super::GrantError;

/// A form parameter the endpoints read, with the longest value accepted (in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    GrantType,
    ClientId,
    ClientSecret,
    Scope,
    Username,
    Password,
    RefreshToken,
    Token,
    TokenTypeHint,
    Code,
    RedirectUri,
    CodeVerifier,
}

impl Param {
    /// Every parameter the endpoints know.
    pub const ALL: [Param; 12] = [
        Param::GrantType,
        Param::ClientId,
        Param::ClientSecret,
        Param::Scope,
        Param::Username,
        Param::Password,
        Param::RefreshToken,
        Param::Token,
        Param::TokenTypeHint,
        Param::Code,
        Param::RedirectUri,
        Param::CodeVerifier,
    ];

    /// The parameter's name on the wire (RFC 6749 §4–6, RFC 7662 §2.1, RFC 7009 §2.1).
    pub fn name(self) -> &'static str {
        match self {
            Param::GrantType => "grant_type",
            Param::ClientId => "client_id",
            Param::ClientSecret => "client_secret",
            Param::Scope => "scope",
            Param::Username => "username",
            Param::Password => "password",
            Param::RefreshToken => "refresh_token",
            Param::Token => "token",
            Param::TokenTypeHint => "token_type_hint",
            Param::Code => "code",
            Param::RedirectUri => "redirect_uri",
            Param::CodeVerifier => "code_verifier",
        }
    }

    /// Longest accepted value in bytes. Client ids are UUIDs, e-mail addresses are at most
    /// 254 octets (RFC 5321 §4.5.3.1.3; 320 leaves room before normalisation), passwords are
    /// bounded by `MAX_PASSWORD_LEN` (1024 bytes), access tokens by the resource
    /// servers' cap (8 KiB), refresh tokens and authorization codes are 43 characters,
    /// redirect URIs at most 2048 bytes, and a PKCE `code_verifier` at most 128 characters
    /// (RFC 7636 §4.1).
    pub fn max_len(self) -> usize {
        match self {
            Param::GrantType | Param::TokenTypeHint => 64,
            Param::ClientId | Param::ClientSecret => 255,
            Param::Scope => 2048,
            Param::Username => 320,
            Param::Password => crate::passwords::MAX_PASSWORD_LEN,
            Param::RefreshToken => 512,
            Param::Token => 8 * 1024,
            Param::Code => 64,
            Param::RedirectUri => crate::signin::redirect_uri::MAX_REDIRECT_URI_LEN,
            Param::CodeVerifier => 128,
        }
    }

    fn from_name(name: &[u8]) -> Option<Param> {
        Param::ALL
            .into_iter()
            .find(|param| param.name().as_bytes() == name)
    }
}

/// A known parameter's value failed its length or character check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub Param);

/// Whether `value` is acceptable text for `param`: within its cap and free of control
/// characters (`char::is_control`: U+0000–U+001F, U+007F–U+009F).
pub fn is_acceptable(param: Param, value: &str) -> bool {
    value.len() <= param.max_len() && !value.chars().any(char::is_control)
}

/// The parameters and credentials of one token, introspection or revocation request.
#[derive(Default)]
pub struct TokenRequest {
    /// Known parameters in arrival order: the value, or `Err` when it was malformed.
    params: Vec<(Param, Result<String, Malformed>)>,
    authorization: Option<String>,
    client_ip: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.params.iter().map(|(p, _)| p.name()).collect();
        f.debug_struct("TokenRequest")
            .field("params", &names)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl TokenRequest {
    /// Parses an `application/x-www-form-urlencoded` body and the `Authorization` header.
    ///
    /// Errors: a repeated parameter (known or not) or a known one that is not UTF-8 is
    /// `invalid_request` (RFC 6749 §3.2); a header that is not UTF-8 is `invalid_client`.
    pub fn from_form(
        body: &[u8],
        authorization: Option<&[u8]>,
    ) -> Result<TokenRequest, GrantError> {
        let mut params: Vec<(Param, Result<String, Malformed>)> = Vec::new();
        // A set, not a list: a 16 KiB body can carry thousands of distinct unknown names.
        let mut seen_unknown: HashSet<Cow<'_, [u8]>> = HashSet::new();
        for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if value.is_empty() {
                continue;
            }
            let name = form_bytes(name);
            let Some(param) = Param::from_name(&name) else {
                if !seen_unknown.insert(name) {
                    return Err(GrantError::RepeatedParameter(None));
                }
                continue;
            };
            if params.iter().any(|(existing, _)| *existing == param) {
                return Err(GrantError::RepeatedParameter(Some(param)));
            }
            let value = decode_form_component(value).ok_or(GrantError::InvalidRequest(
                "request parameters must be UTF-8",
            ))?;
            let value = Some(value)
                .filter(|value| is_acceptable(param, value))
                .ok_or(Malformed(param));
            params.push((param, value));
        }
        let authorization = authorization
            .map(|raw| {
                std::str::from_utf8(raw)
                    .map(str::to_owned)
                    .map_err(|_| GrantError::InvalidClient("malformed Authorization header"))
            })
            .transpose()?;
        Ok(TokenRequest {
            params,
            authorization,
            client_ip: None,
        })
    }

    /// Records the address the request came from (for login throttling).
    pub fn with_client_ip(mut self, ip: std::net::IpAddr) -> TokenRequest {
        self.client_ip = Some(ip);
        self
    }

    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client_ip
    }

    /// The value of a parameter: `Ok(None)` when absent or empty, `Err` when it failed its
    /// length or character check. Callers answer `Err` with their contract's error.
    pub fn param(&self, param: Param) -> Result<Option<&str>, Malformed> {
        match self.params.iter().find(|(p, _)| *p == param) {
            None => Ok(None),
            Some((_, Ok(value))) => Ok(Some(value.as_str())),
            Some((_, Err(malformed))) => Err(*malformed),
        }
    }

    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }
}

/// The name bytes with `+` and percent-escapes decoded (not necessarily UTF-8).
fn form_bytes(raw: &[u8]) -> Cow<'_, [u8]> {
    let plus_as_space: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    match plus_as_space {
        Cow::Borrowed(raw) => percent_decode(raw).into(),
        Cow::Owned(raw) => Cow::Owned(percent_decode(&raw).collect()),
    }
}

/// Decodes one form-urlencoded component (`+` is a space); `None` when it is not UTF-8.
pub fn decode_form_component(raw: &[u8]) -> Option<String> {
    String::from_utf8(form_bytes(raw).into_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<TokenRequest, GrantError> {
        TokenRequest::from_form(body.as_bytes(), None)
    }

    #[test]
    fn decodes_percent_and_plus() {
        let req = parse("grant_type=client_credentials&scope=a+b%20c&username=%C3%A9").unwrap();
        assert_eq!(req.param(Param::GrantType), Ok(Some("client_credentials")));
        assert_eq!(req.param(Param::Scope), Ok(Some("a b c")));
        assert_eq!(req.param(Param::Username), Ok(Some("é")));
    }

    #[test]
    fn table_of_repeated_parameters() {
        for (body, param) in [
            ("scope=a&scope=b", Some(Param::Scope)),
            ("grant_type=a&grant_type=a", Some(Param::GrantType)),
            ("sc%6Fpe=a&scope=b", Some(Param::Scope)),
            ("x=1&x=2", None),
            ("%22x=1&%22x=2", None),
            ("%FF=1&%FF=2", None),
        ] {
            assert!(
                matches!(parse(body), Err(GrantError::RepeatedParameter(p)) if p == param),
                "{body}"
            );
        }
    }

    #[test]
    fn table_of_malformed_values() {
        let long = |n| "a".repeat(n);
        let cases = [
            ("scope=%00".to_owned(), Param::Scope),
            ("username=a%00b".to_owned(), Param::Username),
            ("client_id=%1F".to_owned(), Param::ClientId),
            ("client_secret=%7F".to_owned(), Param::ClientSecret),
            ("password=%C2%85".to_owned(), Param::Password),
            ("grant_type=a%0Ab".to_owned(), Param::GrantType),
            (format!("client_id={}", long(256)), Param::ClientId),
            (
                format!("token_type_hint={}", long(65)),
                Param::TokenTypeHint,
            ),
            (format!("username={}", long(321)), Param::Username),
            (format!("token={}", long(8 * 1024 + 1)), Param::Token),
        ];
        for (body, param) in cases {
            let req = parse(&body).unwrap();
            assert_eq!(req.param(param), Err(Malformed(param)), "{body}");
        }
    }

    #[test]
    fn known_parameters_must_be_utf8() {
        for body in ["token=%FF", "refresh_token=%C3", "scope=%ED%A0%80"] {
            assert!(
                matches!(parse(body), Err(GrantError::InvalidRequest(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn values_at_the_cap_and_non_ascii_text_are_accepted() {
        for param in Param::ALL {
            let at_cap = "a".repeat(param.max_len());
            let body = format!("{}={at_cap}", param.name());
            assert_eq!(
                parse(&body).unwrap().param(param),
                Ok(Some(at_cap.as_str()))
            );
        }
        let req = parse("password=p%C3%A4ss+w%C3%B6rd+%E2%9C%93").unwrap();
        assert_eq!(req.param(Param::Password), Ok(Some("päss wörd ✓")));
    }

    #[test]
    fn unknown_parameters_are_ignored_whatever_they_hold() {
        let req = parse("x=%00&%FF=%FF&grant_type=client_credentials").unwrap();
        assert_eq!(req.param(Param::GrantType), Ok(Some("client_credentials")));
        assert_eq!(
            format!("{req:?}"),
            r#"TokenRequest { params: ["grant_type"], authorization: None }"#
        );
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let req = parse("scope=&grant_type=client_credentials&&scope=a").unwrap();
        assert_eq!(req.param(Param::Scope), Ok(Some("a")));
        assert_eq!(req.param(Param::Username), Ok(None));
    }
}
