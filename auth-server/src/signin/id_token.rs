//! OpenID Connect id_tokens (OIDC Core §2, §3.1.3.6): who signed in, to which client, when and
//! how, signed with the client's registered algorithm (RS256 unless ES256 was registered).

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::keys::{ID_TOKEN_TYP, KeyError, KeySet};
use crate::model::IdTokenAlg;

/// The claims of an id_token. `name`, `email` and `email_verified` are not here: with an access
/// token issued they come from the userinfo endpoint (OIDC Core §5.4).
#[derive(Debug, Serialize)]
pub struct IdTokenClaims<'a> {
    pub iss: &'a str,
    /// The user id.
    pub sub: &'a str,
    /// The client id (OIDC Core §2: the audience is the client).
    pub aud: &'a str,
    /// The client id: the party the token was issued to (OIDC Core §2).
    pub azp: &'a str,
    /// Unix seconds.
    pub exp: i64,
    pub iat: i64,
    /// When the user last entered their password (unix seconds).
    pub auth_time: i64,
    /// The authorization request's `nonce`, when it sent one (OIDC Core §3.1.2.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    /// Authentication methods (RFC 8176): `["pwd"]`.
    pub amr: Vec<&'a str>,
    /// Hash of the access token issued with it (OIDC Core §3.1.3.6).
    pub at_hash: String,
}

/// `at_hash` (OIDC Core §3.1.3.6): base64url of the left half of the SHA-256 of the access
/// token's ASCII — SHA-256 being the hash of both RS256 and ES256.
pub fn at_hash(access_token: &str) -> String {
    let hash = digest(&SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

/// Signs `claims` with the active key of `alg`, with the JOSE header `typ: "JWT"`, which
/// resource servers refuse as an access token (RFC 9068 §2.1 requires `at+jwt`).
pub fn sign(
    keys: &KeySet,
    alg: IdTokenAlg,
    claims: &IdTokenClaims<'_>,
) -> Result<String, KeyError> {
    let algorithm = alg.key_algorithm();
    let key = keys
        .active(algorithm)
        .ok_or(KeyError::NoActiveKey(algorithm))?;
    key.sign_jwt_typed(claims, ID_TOKEN_TYP)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of OIDC Core Appendix A.3 (RS256): `at_hash` of its access token.
    #[test]
    fn at_hash_of_the_oidc_example() {
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
