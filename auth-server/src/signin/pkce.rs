//! Proof Key for Code Exchange (RFC 7636), S256 only: `plain` is refused for every client
//! (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1).

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The only `code_challenge_method` accepted.
pub const S256: &str = "S256";

/// Whether `challenge` has the form of an S256 challenge: the base64url encoding, without
/// padding, of a SHA-256 digest — 43 characters of `[A-Za-z0-9_-]` (RFC 7636 §4.2).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` has the form RFC 7636 §4.1 requires: 43–128 characters of
/// `[A-Za-z0-9-._~]`.
pub fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `BASE64URL(SHA256(verifier)) == challenge` (RFC 7636 §4.6), compared in constant
/// time; `false` for a verifier of the wrong form.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    if !is_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn appendix_b() {
        assert!(is_s256_challenge(CHALLENGE));
        assert!(verify_s256(VERIFIER, CHALLENGE));
    }

    #[test]
    fn forms_and_mismatches() {
        let table = [
            (VERIFIER, CHALLENGE, true),
            (&VERIFIER[..42], CHALLENGE, false),
            (
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
                CHALLENGE,
                false,
            ),
            (
                VERIFIER,
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
                false,
            ),
            // `plain`: the verifier sent as its own challenge.
            (VERIFIER, VERIFIER, false),
            ("", "", false),
        ];
        for (verifier, challenge, expected) in table {
            assert_eq!(
                verify_s256(verifier, challenge),
                expected,
                "{verifier} {challenge}"
            );
        }
        assert!(!is_s256_challenge("abc"));
        assert!(!is_s256_challenge(&format!("{}=", &CHALLENGE[..42])));
        assert!(!is_s256_challenge(&format!("{CHALLENGE}A")));
        assert!(is_verifier(&"a~._-".repeat(20)));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier(&format!("{}+", "a".repeat(43))));
    }
}
