//! Encryption at rest of what the database holds secret (the private signing keys and the
//! client-secret pepper) under the operator's `AUTH_SECRETS`, in the manner of ORY Hydra's
//! `SECRETS_SYSTEM` (docs/decisions.md, "Signing keys and the pepper in the database").
//!
//! Each configured secret (≥ 32 bytes) becomes an AES-256-GCM key through HKDF-SHA256 with a
//! fixed, versioned label. The **first** secret seals everything written; every listed secret
//! can open. A sealed blob is
//!
//! ```text
//! version (1 byte) ‖ key fingerprint (8 bytes) ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag (16 bytes)
//! ```
//!
//! The fingerprint (the first 8 bytes of SHA-256 of the derived key) names the secret that
//! sealed the blob, so opening needs no trial decryption and a wrong secret is told apart from
//! a damaged blob. The associated data is the header and the blob's [`Purpose`] (a key's kid,
//! the pepper's name): a blob copied into another row does not open there.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

/// The layout version written in the first byte of every blob.
const VERSION: u8 = 1;
/// HKDF `info` of version 1: changing the derivation means a new version.
const HKDF_INFO: &[u8] = b"auth-server sealed v1 aes-256-gcm";
const FINGERPRINT_LEN: usize = 8;
const HEADER_LEN: usize = 1 + FINGERPRINT_LEN;
const TAG_LEN: usize = 16;
/// Minimum length of one secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What a sealed blob is; part of its associated data, so blobs cannot change places.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// The PKCS#8 private key of the signing key `kid`.
    SigningKey(&'a str),
    /// A named secret of the server (the client-secret pepper).
    SystemSecret(&'a str),
}

impl Purpose<'_> {
    fn label(&self) -> Vec<u8> {
        let (kind, name): (&[u8], &str) = match self {
            Purpose::SigningKey(kid) => (b"signing-key\0", kid),
            Purpose::SystemSecret(name) => (b"system-secret\0", name),
        };
        [kind, name.as_bytes()].concat()
    }
}

impl std::fmt::Display for Purpose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Purpose::SigningKey(kid) => write!(f, "the private key of `{kid}`"),
            Purpose::SystemSecret(name) => write!(f, "the {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("each secret must be at least {MIN_SECRET_LEN} bytes")]
    TooShort,
    #[error("no secret given")]
    Empty,
    #[error("it was encrypted with a secret that is not in AUTH_SECRETS")]
    UnknownSecret,
    #[error("it is damaged or belongs to another record")]
    Damaged,
    #[error("its format version {0} is not one this build reads")]
    Version(u8),
    #[error("cryptographic operation failed")]
    Crypto,
}

/// One secret of the list, as the AES-256-GCM key derived from it.
struct SealingKey {
    key: RandomizedNonceKey,
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl SealingKey {
    fn derive(secret: &[u8]) -> Result<SealingKey, SealError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SealError::TooShort);
        }
        let mut bytes = [0u8; 32];
        Salt::new(HKDF_SHA256, &[])
            .extract(secret)
            .expand(&[HKDF_INFO], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut bytes))
            .map_err(|_| SealError::Crypto)?;
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&digest(&SHA256, &bytes).as_ref()[..FINGERPRINT_LEN]);
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::Crypto);
        bytes.fill(0);
        Ok(SealingKey {
            key: key?,
            fingerprint,
        })
    }
}

/// The operator's secrets (`AUTH_SECRETS`): the first seals, every one opens. Cheap to clone;
/// `Debug` shows only how many there are.
#[derive(Clone)]
pub struct SystemSecrets {
    keys: Arc<[SealingKey]>,
}

impl std::fmt::Debug for SystemSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SystemSecrets({} × ***)", self.keys.len())
    }
}

impl SystemSecrets {
    /// Derives a key from each secret, in order; each must be at least 32 bytes.
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<SystemSecrets, SealError> {
        let keys = secrets
            .into_iter()
            .map(SealingKey::derive)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SealError::Empty);
        }
        Ok(SystemSecrets { keys: keys.into() })
    }

    /// Parses `AUTH_SECRETS`: secrets separated by commas, surrounding spaces and empty
    /// entries ignored.
    pub fn from_list(list: &SecretString) -> Result<SystemSecrets, SealError> {
        Self::new(
            list.expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::as_bytes),
        )
    }

    /// Parses the contents of `AUTH_SECRETS_FILE`: one secret per line, blank lines ignored.
    pub fn from_lines(text: &SecretString) -> Result<SystemSecrets, SealError> {
        Self::new(
            text.expose_secret()
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::as_bytes),
        )
    }

    /// A new random secret: 32 random bytes, base64url (43 characters).
    pub fn generate_secret() -> Result<SecretString, SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Crypto)?;
        Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Secrets made of one new random secret (tests, and servers whose database lives no
    /// longer than the process).
    pub fn generate() -> Result<SystemSecrets, SealError> {
        Self::from_list(&Self::generate_secret()?)
    }

    /// Encrypts `plaintext` for `purpose` with the first secret.
    pub fn seal(&self, purpose: Purpose<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let sealing = self.keys.first().ok_or(SealError::Empty)?;
        let header = header(&sealing.fingerprint);
        let mut ciphertext = plaintext.to_vec();
        let nonce = sealing
            .key
            .seal_in_place_append_tag(Aad::from(aad(&header, purpose)), &mut ciphertext)
            .map_err(|_| SealError::Crypto)?;
        let mut blob = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&header);
        blob.extend_from_slice(nonce.as_ref());
        blob.extend_from_slice(&ciphertext);
        ciphertext.fill(0);
        Ok(blob)
    }

    /// Decrypts a blob sealed for `purpose` by any of the secrets.
    pub fn open(&self, purpose: Purpose<'_>, blob: &[u8]) -> Result<SecretSlice<u8>, SealError> {
        let opening = self.opener(blob)?;
        let (header, rest) = blob.split_at(HEADER_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut buffer = ciphertext.to_vec();
        let opened = opening
            .key
            .open_in_place(nonce, Aad::from(aad(header, purpose)), &mut buffer)
            .map(|plaintext| plaintext.to_vec());
        buffer.fill(0);
        opened
            .map(SecretSlice::from)
            .map_err(|_| SealError::Damaged)
    }

    /// Whether `blob` was sealed with the first secret (so re-encrypting it changes nothing).
    pub fn is_sealed_with_first(&self, blob: &[u8]) -> bool {
        self.keys
            .first()
            .is_some_and(|first| blob.get(1..HEADER_LEN) == Some(&first.fingerprint[..]))
    }

    /// The key whose fingerprint `blob` carries, after checking its version and length.
    fn opener(&self, blob: &[u8]) -> Result<&SealingKey, SealError> {
        match blob.first() {
            Some(&VERSION) => {}
            Some(&other) => return Err(SealError::Version(other)),
            None => return Err(SealError::Damaged),
        }
        if blob.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(SealError::Damaged);
        }
        let fingerprint = &blob[1..HEADER_LEN];
        self.keys
            .iter()
            .find(|k| k.fingerprint[..] == *fingerprint)
            .ok_or(SealError::UnknownSecret)
    }
}

fn header(fingerprint: &[u8; FINGERPRINT_LEN]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = VERSION;
    header[1..].copy_from_slice(fingerprint);
    header
}

/// The header and the purpose: both authenticated, neither encrypted.
fn aad(header: &[u8], purpose: Purpose<'_>) -> Vec<u8> {
    [header, &purpose.label()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"first secret of at least 32 bytes";
    const B: &[u8] = b"second secret also of 32 bytes or more";
    const KEY: Purpose<'static> = Purpose::SigningKey("kid-1");

    fn secrets(list: &[&[u8]]) -> SystemSecrets {
        SystemSecrets::new(list.iter().copied()).unwrap()
    }

    #[test]
    fn round_trip() {
        let secrets = secrets(&[A]);
        let blob = secrets.seal(KEY, b"private key").unwrap();
        assert_eq!(blob[0], VERSION);
        assert_eq!(
            blob.len(),
            HEADER_LEN + NONCE_LEN + b"private key".len() + TAG_LEN
        );
        assert!(!blob.windows(11).any(|w| w == b"private key"));
        assert_eq!(
            secrets.open(KEY, &blob).unwrap().expose_secret(),
            b"private key"
        );
        let again = secrets.seal(KEY, b"private key").unwrap();
        assert_ne!(blob, again, "a fresh nonce each time");
    }

    #[test]
    fn a_wrong_secret_is_named_not_tried() {
        let blob = secrets(&[A]).seal(KEY, b"x").unwrap();
        assert!(matches!(
            secrets(&[B]).open(KEY, &blob),
            Err(SealError::UnknownSecret)
        ));
    }

    #[test]
    fn the_purpose_is_bound() {
        let secrets = secrets(&[A]);
        let blob = secrets.seal(KEY, b"x").unwrap();
        for other in [Purpose::SigningKey("kid-2"), Purpose::SystemSecret("kid-1")] {
            assert!(matches!(
                secrets.open(other, &blob),
                Err(SealError::Damaged)
            ));
        }
    }

    #[test]
    fn any_tampered_byte_is_refused() {
        let secrets = secrets(&[A]);
        let blob = secrets.seal(KEY, b"some plaintext").unwrap();
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            assert!(secrets.open(KEY, &tampered).is_err(), "byte {i}");
        }
        assert!(matches!(
            secrets.open(KEY, &blob[..blob.len() - 1]),
            Err(SealError::Damaged)
        ));
        assert!(matches!(secrets.open(KEY, &[]), Err(SealError::Damaged)));
        let mut future = blob.clone();
        future[0] = 2;
        assert!(matches!(
            secrets.open(KEY, &future),
            Err(SealError::Version(2))
        ));
    }

    #[test]
    fn the_first_secret_seals_and_every_secret_opens() {
        let old = secrets(&[A]).seal(KEY, b"old").unwrap();
        let rotated = secrets(&[B, A]);
        assert_eq!(rotated.open(KEY, &old).unwrap().expose_secret(), b"old");
        assert!(!rotated.is_sealed_with_first(&old));
        let new = rotated.seal(KEY, b"new").unwrap();
        assert!(rotated.is_sealed_with_first(&new));
        assert_eq!(
            secrets(&[B]).open(KEY, &new).unwrap().expose_secret(),
            b"new"
        );
        assert!(matches!(
            secrets(&[A]).open(KEY, &new),
            Err(SealError::UnknownSecret)
        ));
    }

    #[test]
    fn secrets_are_parsed_and_checked() {
        let list = format!(
            " {} ,,{}",
            std::str::from_utf8(A).unwrap(),
            std::str::from_utf8(B).unwrap()
        );
        let parsed = SystemSecrets::from_list(&SecretString::from(list)).unwrap();
        assert_eq!(parsed.keys.len(), 2);
        let blob = secrets(&[A]).seal(KEY, b"x").unwrap();
        assert!(parsed.is_sealed_with_first(&blob));
        let lines = format!(
            "\n{}\n\n  {}\n",
            std::str::from_utf8(B).unwrap(),
            std::str::from_utf8(A).unwrap()
        );
        let parsed = SystemSecrets::from_lines(&SecretString::from(lines)).unwrap();
        assert!(!parsed.is_sealed_with_first(&blob));
        assert!(parsed.open(KEY, &blob).is_ok());
        assert!(matches!(
            SystemSecrets::from_list(&SecretString::from("short".to_owned())),
            Err(SealError::TooShort)
        ));
        assert!(matches!(
            SystemSecrets::from_list(&SecretString::from(" , ".to_owned())),
            Err(SealError::Empty)
        ));
        let generated = SystemSecrets::generate_secret().unwrap();
        assert_eq!(generated.expose_secret().len(), 43);
        assert!(SystemSecrets::from_list(&generated).is_ok());
    }

    #[test]
    fn debug_shows_no_secret() {
        assert_eq!(format!("{:?}", secrets(&[A, B])), "SystemSecrets(2 × ***)");
    }
}
