//! Redirect URIs: what may be registered, and whether a requested one is registered.
//!
//! A request's `redirect_uri` must equal a registered one as a string (RFC 6749 §3.1.2.3,
//! OAuth 2.1 §2.3.1: no partial or semantic matching). The one exception is RFC 8252 §7.3:
//! a native app listening on a loopback IP literal (`http://127.0.0.1`, `http://[::1]`) gets an
//! ephemeral port, so for those the port is ignored — and only the port.

/// Longest redirect URI accepted, in bytes (at registration and in requests).
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI `{0}` is not an absolute URI")]
    NotAbsolute(String),
    #[error("redirect URI `{0}` has a fragment (RFC 6749 §3.1.2)")]
    Fragment(String),
    #[error("redirect URI `{0}` is longer than {MAX_REDIRECT_URI_LEN} bytes")]
    TooLong(String),
    #[error(
        "redirect URI `{0}` must use https, http on a loopback address (127.0.0.1, [::1], localhost) or an app's private-use scheme like com.example.app:/cb (RFC 8252 §7)"
    )]
    Scheme(String),
}

/// Checks a URI an operator registers as a redirect (or post-logout redirect) URI: absolute,
/// without a fragment or whitespace, at most [`MAX_REDIRECT_URI_LEN`] bytes, and `https`,
/// `http` on a loopback host (RFC 8252 §7.3, §8.3), or a private-use scheme containing a dot
/// (RFC 8252 §7.1).
pub fn check_registration(uri: &str) -> Result<(), RedirectUriError> {
    let err = |make: fn(String) -> RedirectUriError| Err(make(uri.to_owned()));
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return err(RedirectUriError::TooLong);
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(RedirectUriError::NotAbsolute);
    }
    let Ok(parsed) = url::Url::parse(uri) else {
        return err(RedirectUriError::NotAbsolute);
    };
    if parsed.fragment().is_some() || uri.contains('#') {
        return err(RedirectUriError::Fragment);
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if matches!(parsed.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")) => Ok(()),
        "http" | "https" => err(RedirectUriError::Scheme),
        scheme if scheme.contains('.') => Ok(()),
        _ => err(RedirectUriError::Scheme),
    }
}

/// Whether `asked` is one of `registered`: the same string, or for a loopback IP literal
/// (`http://127.0.0.1…`, `http://[::1]…`) the same string once the port is taken out of both
/// (RFC 8252 §7.3).
pub fn is_registered(registered: &[String], asked: &str) -> bool {
    if registered.iter().any(|uri| uri == asked) {
        return true;
    }
    let Some(asked) = without_loopback_port(asked) else {
        return false;
    };
    registered
        .iter()
        .filter_map(|uri| without_loopback_port(uri))
        .any(|uri| uri == asked)
}

/// `http://127.0.0.1:PORT/rest` → `http://127.0.0.1/rest` (same for `[::1]`); `None` for
/// anything else, and for a port that is not 1–5 digits.
fn without_loopback_port(uri: &str) -> Option<String> {
    let host = ["http://127.0.0.1", "http://[::1]"]
        .into_iter()
        .find(|host| uri.starts_with(host))?;
    let rest = &uri[host.len()..];
    let rest = match rest.strip_prefix(':') {
        Some(port_and_rest) => {
            let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=5).contains(&digits) {
                return None;
            }
            &port_and_rest[digits..]
        }
        None => rest,
    };
    if !(rest.is_empty() || rest.starts_with(['/', '?'])) {
        return None;
    }
    Some(format!("{host}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        let ok = [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
        ];
        for uri in ok {
            assert_eq!(check_registration(uri), Ok(()), "{uri}");
        }
        let refused = [
            (
                "cb",
                RedirectUriError::NotAbsolute as fn(String) -> RedirectUriError,
            ),
            ("/cb", RedirectUriError::NotAbsolute),
            ("https://app.example/cb#x", RedirectUriError::Fragment),
            ("https://app.example/cb#", RedirectUriError::Fragment),
            ("https://app.example/c b", RedirectUriError::NotAbsolute),
            ("http://app.example/cb", RedirectUriError::Scheme),
            ("http://10.0.0.1/cb", RedirectUriError::Scheme),
            ("myapp:/cb", RedirectUriError::Scheme),
            ("javascript:alert(1)", RedirectUriError::Scheme),
            ("data:text/html,x", RedirectUriError::Scheme),
        ];
        for (uri, make) in refused {
            assert_eq!(check_registration(uri), Err(make(uri.to_owned())), "{uri}");
        }
        let long = format!("https://app.example/{}", "a".repeat(MAX_REDIRECT_URI_LEN));
        assert!(matches!(
            check_registration(&long),
            Err(RedirectUriError::TooLong(_))
        ));
    }

    /// RFC 6749 §3.1.2.3 exact match; RFC 8252 §7.3 any port on loopback IP literals only.
    #[test]
    fn matching_is_exact_except_the_loopback_port() {
        let registered: Vec<String> = [
            "https://app.example/cb",
            "http://127.0.0.1/native",
            "http://[::1]:4000/v6",
            "http://localhost:3000/cb",
        ]
        .map(str::to_owned)
        .to_vec();
        let table = [
            ("https://app.example/cb", true),
            ("https://app.example/cb/", false),
            ("https://APP.example/cb", false),
            ("https://app.example:443/cb", false),
            ("https://app.example/cb?x=1", false),
            ("https://app.example/cb#f", false),
            ("http://app.example/cb", false),
            ("http://127.0.0.1/native", true),
            ("http://127.0.0.1:51234/native", true),
            ("http://127.0.0.1:51234/native/x", false),
            ("http://127.0.0.1:51234/other", false),
            ("http://127.0.0.1:/native", false),
            ("http://127.0.0.1:123456/native", false),
            ("http://127.0.0.1.evil.example/native", false),
            ("http://127.0.0.1@evil.example/native", false),
            ("http://[::1]/v6", true),
            ("http://[::1]:1/v6", true),
            ("http://localhost:3000/cb", true),
            ("http://localhost:3001/cb", false),
            ("", false),
        ];
        for (asked, expected) in table {
            assert_eq!(is_registered(&registered, asked), expected, "{asked}");
        }
    }
}
