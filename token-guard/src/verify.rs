//! The verification rules of DESIGN.md §6, applied to one compact JWS, and [`VerifyError`],
//! the reason a token is refused.
//!
//! Order: length cap → compact-JWS shape → header (`typ` at+jwt, `alg` in the allow-list, `kid`,
//! no `crit`) → key by `kid` (the key fixes the algorithm; the header must name the same one)
//! → signature, `exp`/`nbf` with leeway, `iss`, `aud`, required claims (jsonwebtoken) →
//! `jti` not revoked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::config::GuardConfig;
use crate::jwks::algorithm_name;

/// Why a token was refused. The `Display` text is safe to send as `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is longer than {0} bytes")]
    TooLong(usize),
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token header is invalid")]
    InvalidHeader,
    #[error("the token type is not at+jwt")]
    WrongType,
    #[error("the token algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token header has no key id")]
    MissingKeyId,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the token signature is invalid")]
    InvalidSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token issuer is not trusted")]
    WrongIssuer,
    #[error("the token is not meant for this service")]
    WrongAudience,
    #[error("the token lacks the claim {0}")]
    MissingClaim(String),
    #[error("the token claims are invalid")]
    InvalidClaims,
    #[error("the token has been revoked")]
    Revoked,
}

/// The JOSE header fields the guard looks at.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    /// Any critical extension is one this guard does not understand (RFC 7515 §4.1.11).
    crit: Option<serde_json::Value>,
}

/// Claims of an access token beyond those jsonwebtoken validates (RFC 9068 §2.2).
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    client_id: Option<String>,
    jti: Option<String>,
    scope: Option<String>,
    exp: Option<u64>,
    iat: Option<u64>,
}

/// The claims a [`Principal`](crate::Principal) is made of, all present.
pub(crate) struct AccessClaims {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) jti: String,
    pub(crate) scope: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
}

/// The checked header: which key to use and the algorithm the token claims.
pub(crate) struct CheckedHeader {
    pub(crate) kid: String,
    pub(crate) alg: String,
}

const ALLOWED_ALGORITHMS: [&str; 3] = ["ES256", "RS256", "EdDSA"];

/// Length cap and compact-JWS shape: three non-empty base64url parts.
pub(crate) fn check_shape(token: &str, max_len: usize) -> Result<(), VerifyError> {
    if token.len() > max_len {
        return Err(VerifyError::TooLong(max_len));
    }
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        let base64url = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if part.is_empty() || !base64url {
            return Err(VerifyError::Malformed);
        }
    }
    if parts == 3 {
        Ok(())
    } else {
        Err(VerifyError::Malformed)
    }
}

/// Decodes and checks the header of a token that passed [`check_shape`].
pub(crate) fn check_header(token: &str) -> Result<CheckedHeader, VerifyError> {
    let encoded = token.split('.').next().ok_or(VerifyError::Malformed)?;
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| VerifyError::Malformed)?;
    let header: JoseHeader =
        serde_json::from_slice(&json).map_err(|_| VerifyError::InvalidHeader)?;
    let typ_ok = header.typ.as_deref().is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(VerifyError::WrongType);
    }
    if header.crit.is_some() {
        return Err(VerifyError::InvalidHeader);
    }
    if !ALLOWED_ALGORITHMS.contains(&header.alg.as_str()) {
        return Err(VerifyError::AlgorithmNotAllowed);
    }
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(VerifyError::MissingKeyId)?;
    Ok(CheckedHeader {
        kid,
        alg: header.alg,
    })
}

/// The header must name exactly the algorithm of the key.
pub(crate) fn check_algorithm(
    header: &CheckedHeader,
    key_alg: Algorithm,
) -> Result<(), VerifyError> {
    if header.alg == algorithm_name(key_alg) {
        Ok(())
    } else {
        Err(VerifyError::AlgorithmMismatch)
    }
}

/// One [`Validation`] per accepted algorithm, built once.
pub(crate) struct Validations {
    es256: Validation,
    rs256: Validation,
    eddsa: Validation,
}

impl Validations {
    pub(crate) fn new(config: &GuardConfig) -> Validations {
        let build = |alg| {
            let mut validation = Validation::new(alg);
            validation.leeway = config.leeway.as_secs();
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_issuer(&[config.issuer.as_str()]);
            validation.set_audience(&[config.audience.as_str()]);
            validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
            validation
        };
        Validations {
            es256: build(Algorithm::ES256),
            rs256: build(Algorithm::RS256),
            eddsa: build(Algorithm::EdDSA),
        }
    }

    pub(crate) fn for_algorithm(&self, alg: Algorithm) -> Option<&Validation> {
        match alg {
            Algorithm::ES256 => Some(&self.es256),
            Algorithm::RS256 => Some(&self.rs256),
            Algorithm::EdDSA => Some(&self.eddsa),
            _ => None,
        }
    }
}

/// Signature and registered claims, then the access-token claims.
pub(crate) fn decode_claims(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    validation: &Validation,
) -> Result<AccessClaims, VerifyError> {
    let raw = jsonwebtoken::decode::<RawClaims>(token, key, validation)
        .map_err(map_error)?
        .claims;
    let required = |value: Option<String>, name: &str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| VerifyError::MissingClaim(name.to_owned()))
    };
    let Some(iat) = raw.iat else {
        return Err(VerifyError::MissingClaim("iat".to_owned()));
    };
    Ok(AccessClaims {
        iat,
        sub: required(raw.sub, "sub")?,
        client_id: required(raw.client_id, "client_id")?,
        jti: required(raw.jti, "jti")?,
        // An empty scope is a token that grants nothing, not a missing claim.
        scope: raw
            .scope
            .ok_or_else(|| VerifyError::MissingClaim("scope".to_owned()))?,
        exp: raw
            .exp
            .ok_or_else(|| VerifyError::MissingClaim("exp".to_owned()))?,
    })
}

fn map_error(err: jsonwebtoken::errors::Error) -> VerifyError {
    match err.into_kind() {
        ErrorKind::InvalidSignature => VerifyError::InvalidSignature,
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
        ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
        ErrorKind::InvalidAudience => VerifyError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => VerifyError::MissingClaim(claim),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            VerifyError::AlgorithmMismatch
        }
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            VerifyError::Malformed
        }
        _ => VerifyError::InvalidClaims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn with_header(json: &str) -> String {
        format!("{}.e30.c2ln", b64(json))
    }

    #[test]
    fn shapes() {
        assert!(check_shape("a.b.c", 100).is_ok());
        for bad in [
            "", "a.b", "a.b.c.d", "a..c", "a.b.c=", "a.b.c d", "a.b.ç", "a+b.c.d",
        ] {
            assert_eq!(check_shape(bad, 100), Err(VerifyError::Malformed), "{bad}");
        }
        assert_eq!(check_shape("a.b.cdef", 6), Err(VerifyError::TooLong(6)));
    }

    #[test]
    fn headers() {
        let ok = check_header(&with_header(r#"{"alg":"ES256","typ":"at+jwt","kid":"k"}"#)).unwrap();
        assert_eq!((ok.kid.as_str(), ok.alg.as_str()), ("k", "ES256"));
        for typ in ["AT+JWT", "application/at+jwt", "Application/AT+JWT"] {
            let header = format!(r#"{{"alg":"EdDSA","typ":"{typ}","kid":"k"}}"#);
            assert!(check_header(&with_header(&header)).is_ok(), "{typ}");
        }
        let cases = [
            (
                r#"{"alg":"ES256","typ":"JWT","kid":"k"}"#,
                VerifyError::WrongType,
            ),
            (r#"{"alg":"ES256","kid":"k"}"#, VerifyError::WrongType),
            (
                r#"{"alg":"none","typ":"at+jwt","kid":"k"}"#,
                VerifyError::AlgorithmNotAllowed,
            ),
            (
                r#"{"alg":"HS256","typ":"at+jwt","kid":"k"}"#,
                VerifyError::AlgorithmNotAllowed,
            ),
            (
                r#"{"alg":"es256","typ":"at+jwt","kid":"k"}"#,
                VerifyError::AlgorithmNotAllowed,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt"}"#,
                VerifyError::MissingKeyId,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":""}"#,
                VerifyError::MissingKeyId,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":"k","crit":["b64"]}"#,
                VerifyError::InvalidHeader,
            ),
            (
                r#"{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"k"}"#,
                VerifyError::InvalidHeader,
            ),
            (
                r#"{"alg":5,"typ":"at+jwt","kid":"k"}"#,
                VerifyError::InvalidHeader,
            ),
            ("not json", VerifyError::InvalidHeader),
        ];
        for (header, expected) in cases {
            assert_eq!(
                check_header(&with_header(header)).err(),
                Some(expected),
                "{header}"
            );
        }
    }

    #[test]
    fn header_alg_must_equal_the_key_alg() {
        let header = CheckedHeader {
            kid: "k".into(),
            alg: "RS256".into(),
        };
        assert!(check_algorithm(&header, Algorithm::RS256).is_ok());
        assert_eq!(
            check_algorithm(&header, Algorithm::ES256),
            Err(VerifyError::AlgorithmMismatch)
        );
    }
}
