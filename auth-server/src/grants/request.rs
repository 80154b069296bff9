//! A token request as the grants see it: unique form parameters and the raw `Authorization`
//! header, parsed strictly (UTF-8, no repeated parameters — RFC 6749 §3.2).

use std::borrow::Cow;

use percent_encoding::percent_decode;

use super::GrantError;

/// The parameters and credentials of one token request.
#[derive(Default)]
pub struct TokenRequest {
    params: Vec<(String, String)>,
    authorization: Option<String>,
    client_ip: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("TokenRequest")
            .field("params", &names)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl TokenRequest {
    /// Parses an `application/x-www-form-urlencoded` body and the `Authorization` header.
    pub fn from_form(
        body: &[u8],
        authorization: Option<&[u8]>,
    ) -> Result<TokenRequest, GrantError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode_form_component(name)?;
            let value = decode_form_component(value)?;
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if value.is_empty() {
                continue;
            }
            if params.iter().any(|(existing, _)| *existing == name) {
                return Err(GrantError::InvalidRequest(
                    format!("parameter `{name}` is repeated").into(),
                ));
            }
            params.push((name, value));
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

    /// The value of a parameter, if present and non-empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }
}

/// Decodes one form-urlencoded component (`+` is a space), rejecting invalid UTF-8.
pub fn decode_form_component(raw: &[u8]) -> Result<String, GrantError> {
    let plus_as_space: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode(&plus_as_space)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| GrantError::InvalidRequest("request parameters must be UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<TokenRequest, GrantError> {
        TokenRequest::from_form(body.as_bytes(), None)
    }

    #[test]
    fn decodes_percent_and_plus() {
        let req = parse("grant_type=client_credentials&scope=a+b%20c&x=%C3%A9").unwrap();
        assert_eq!(req.param("grant_type"), Some("client_credentials"));
        assert_eq!(req.param("scope"), Some("a b c"));
        assert_eq!(req.param("x"), Some("é"));
    }

    #[test]
    fn table_of_rejected_bodies() {
        for body in ["a=1&a=2", "scope=a&scope=b", "x=%FF", "x=%C3", "%FF=1"] {
            assert!(
                matches!(parse(body), Err(GrantError::InvalidRequest(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let req = parse("scope=&grant_type=client_credentials&&scope=a").unwrap();
        assert_eq!(req.param("scope"), Some("a"));
    }
}
