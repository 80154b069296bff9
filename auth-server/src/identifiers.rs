//! How user names and passwords are compared: the PRECIS profiles of RFC 8265, so that the
//! same text typed on different systems (NFC or NFD, full-width or ASCII, upper or lower case)
//! names the same account and unlocks it with the same password.
//!
//! - User names (e-mail addresses) go through `UsernameCaseMapped` (RFC 8265 §3.3): width
//!   mapping, the IdentifierClass repertoire (no spaces, no controls, no symbols outside
//!   ASCII), case mapping, NFC, the bidi rule. The result is what the store keeps in
//!   `users.email_normalized` and what keys the login throttle.
//! - Passwords go through `OpaqueString` (RFC 8265 §4.2): non-ASCII spaces become U+0020, then
//!   NFC. The result is what argon2 hashes and verifies.

use std::borrow::Cow;

use precis_profiles::precis_core::profile::PrecisFastInvocation;
use precis_profiles::{OpaqueString, UsernameCaseMapped};

/// Longest user name accepted after preparation, in bytes (RFC 5321 §4.5.3.1.3 path limit
/// less the angle brackets).
pub const MAX_USERNAME_LEN: usize = 254;

/// Why a user name or password is not a valid PRECIS string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// RFC 8265 §3.3: the user name is empty or has a character UsernameCaseMapped forbids
    /// (a space, a control, a symbol or punctuation outside ASCII, an unassigned code point).
    #[error(
        "`{0}` is not a valid user name: it must be non-empty and contain no spaces, \
         control characters or non-ASCII symbols (RFC 8265 UsernameCaseMapped)"
    )]
    InvalidUsername(String),
    #[error("user name must be at most {MAX_USERNAME_LEN} bytes")]
    UsernameTooLong,
    /// RFC 8265 §4.2: the password is empty or has a control or unassigned character. The
    /// password itself is never part of the message.
    #[error("password must be non-empty and contain no control characters (RFC 8265 OpaqueString)")]
    InvalidPassword,
}

/// The comparison form of a user name (an e-mail address): surrounding whitespace removed,
/// then RFC 8265 §3.3 UsernameCaseMapped preparation and enforcement. Two user names are the
/// same account exactly when their normalized forms are equal.
pub fn normalize_username(username: &str) -> Result<String, IdentifierError> {
    let trimmed = username.trim();
    let normalized = UsernameCaseMapped::enforce(trimmed)
        .map_err(|_| IdentifierError::InvalidUsername(trimmed.to_owned()))?;
    if normalized.len() > MAX_USERNAME_LEN {
        return Err(IdentifierError::UsernameTooLong);
    }
    Ok(normalized.into_owned())
}

/// The form of a password that is hashed and verified: RFC 8265 §4.2 OpaqueString preparation
/// and enforcement (spaces mapped to U+0020, NFC). ASCII passwords come back unchanged.
pub fn prepare_password(password: &str) -> Result<Cow<'_, str>, IdentifierError> {
    OpaqueString::enforce(password).map_err(|_| IdentifierError::InvalidPassword)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_normalize_per_rfc_8265() {
        let nfc = "jos\u{e9}@example.com";
        let nfd = "jose\u{301}@example.com";
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("ascii", "ada@example.com", Some("ada@example.com")),
            ("upper case", "Ada@Example.COM", Some("ada@example.com")),
            (
                "surrounding spaces",
                "  ada@example.com\t",
                Some("ada@example.com"),
            ),
            ("nfc", nfc, Some(nfc)),
            ("nfd composes to nfc", nfd, Some(nfc)),
            ("nfd upper case", "JOSE\u{301}@example.com", Some(nfc)),
            (
                "full-width letters map to ASCII",
                "\u{ff41}\u{ff44}\u{ff41}@example.com",
                Some("ada@example.com"),
            ),
            (
                "full-width at sign",
                "ada\u{ff20}example.com",
                Some("ada@example.com"),
            ),
            (
                "greek final sigma",
                "\u{3a3}\u{391}@example.com",
                Some("\u{3c3}\u{3b1}@example.com"),
            ),
            ("inner space", "ada lovelace@example.com", None),
            ("no-break space", "ada\u{a0}@example.com", None),
            ("control", "ada\u{7}@example.com", None),
            ("newline inside", "ada\n@example.com", None),
            ("zero-width joiner", "ad\u{200d}a@example.com", None),
            ("symbol outside ASCII", "ada\u{2603}@example.com", None),
            ("empty", "", None),
            ("only spaces", "   ", None),
        ];
        for (name, input, expected) in cases {
            assert_eq!(
                normalize_username(input).ok().as_deref(),
                *expected,
                "{name}: {input:?}"
            );
        }
    }

    #[test]
    fn username_length_is_bounded_after_preparation() {
        let local = "a".repeat(64);
        let ok = format!("{local}@{}.com", "b".repeat(MAX_USERNAME_LEN - 64 - 5));
        assert_eq!(normalize_username(&ok).unwrap().len(), MAX_USERNAME_LEN);
        let long = format!("{local}@{}.com", "b".repeat(MAX_USERNAME_LEN - 64 - 4));
        assert_eq!(
            normalize_username(&long),
            Err(IdentifierError::UsernameTooLong)
        );
        // Full-width letters are 3 bytes each but 1 byte once width-mapped.
        let wide = format!("{}@example.com", "\u{ff41}".repeat(200));
        assert_eq!(normalize_username(&wide).unwrap().len(), 212);
    }

    #[test]
    fn passwords_prepare_per_rfc_8265() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "ascii unchanged",
                "correct horse battery",
                Some("correct horse battery"),
            ),
            ("case kept", "Correct Horse", Some("Correct Horse")),
            (
                "nfd composes to nfc",
                "cafe\u{301} au lait",
                Some("caf\u{e9} au lait"),
            ),
            (
                "nfc unchanged",
                "caf\u{e9} au lait",
                Some("caf\u{e9} au lait"),
            ),
            (
                "no-break space maps to space",
                "correct\u{a0}horse",
                Some("correct horse"),
            ),
            (
                "ideographic space maps to space",
                "correct\u{3000}horse",
                Some("correct horse"),
            ),
            (
                "full-width letters kept",
                "\u{ff41}bcdefgh",
                Some("\u{ff41}bcdefgh"),
            ),
            ("control refused", "correct\u{7}horse", None),
            ("tab refused", "correct\thorse", None),
            ("empty refused", "", None),
        ];
        for (name, input, expected) in cases {
            assert_eq!(prepare_password(input).ok().as_deref(), *expected, "{name}");
        }
    }
}
