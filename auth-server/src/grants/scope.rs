//! Scope parsing and negotiation (RFC 6749 §3.3): the granted scope is exactly the requested
//! scope, which must be a subset of what is allowed; no scope means everything allowed.

use std::collections::BTreeSet;

use super::{GrantError, Param, TokenRequest};

/// The request's `scope` parameter; a value over its cap or with control characters is
/// `invalid_scope` (RFC 6749 §5.2: "malformed").
pub fn requested(request: &TokenRequest) -> Result<Option<&str>, GrantError> {
    request
        .param(Param::Scope)
        .map_err(|_| GrantError::InvalidScope("malformed scope"))
}

/// Whether `token` is a valid RFC 6749 scope-token (`%x21 / %x23-5B / %x5D-7E`, non-empty).
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Resolves the `scope` parameter against the allowed set; returns the space-delimited
/// granted scope. Unknown or excess scope is `invalid_scope`, never silently dropped; a
/// scope with no scope-token in it (only spaces) is malformed (RFC 6749 §3.3), not "all".
pub fn negotiate(
    requested: Option<&str>,
    allowed: &BTreeSet<String>,
) -> Result<String, GrantError> {
    let Some(requested) = requested else {
        return Ok(allowed
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" "));
    };
    let mut granted: Vec<&str> = Vec::new();
    for token in requested.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(GrantError::InvalidScope("malformed scope"));
        }
        if !allowed.contains(token) {
            return Err(GrantError::InvalidScope("a requested scope is not allowed"));
        }
        if !granted.contains(&token) {
            granted.push(token);
        }
    }
    if granted.is_empty() {
        return Err(GrantError::InvalidScope("malformed scope"));
    }
    Ok(granted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> BTreeSet<String> {
        ["b", "a", "c"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table() {
        let cases: &[(Option<&str>, Result<&str, ()>)] = &[
            (None, Ok("a b c")),
            (Some(" "), Err(())),
            (Some("   "), Err(())),
            (Some("b"), Ok("b")),
            (Some("c a"), Ok("c a")),
            (Some("a a  b"), Ok("a b")),
            (Some("a d"), Err(())),
            (Some("A"), Err(())),
            (Some("a\"b"), Err(())),
            (Some("a\tb"), Err(())),
        ];
        for (requested, expected) in cases {
            let got = negotiate(*requested, &allowed());
            match expected {
                Ok(scope) => assert_eq!(got.unwrap(), *scope, "{requested:?}"),
                Err(()) => assert!(
                    matches!(got, Err(GrantError::InvalidScope(_))),
                    "{requested:?}"
                ),
            }
        }
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("transcriptions:write"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token("é"));
        assert!(!is_scope_token(""));
    }
}
