//! User passwords: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), hashed and
//! verified on a bounded pool off the async runtime. When the pool and its queue are full the
//! caller gets [`PasswordError::Saturated`] at once (the HTTP layer answers 503), so a login
//! flood cannot queue without bound or starve token issuance. Every password is prepared with
//! the RFC 8265 OpaqueString profile ([`prepare_password`]) before it is hashed or verified.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::identifiers::{IdentifierError, normalize_username, prepare_password};

/// Shortest password `users create` and `users reset-password` accept (NIST SP 800-63B).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted anywhere, so hashing cost stays bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Passwords refused outright: the most common ones of at least eight characters.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password!",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "0123456789",
    "87654321",
    "11111111",
    "00000000",
    "88888888",
    "12341234",
    "11223344",
    "123123123",
    "123321123",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "1qaz2wsx",
    "zaq12wsx",
    "asdfghjk",
    "asdfghjkl",
    "asdf1234",
    "zxcvbnm1",
    "abcd1234",
    "abc12345",
    "abcdefgh",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein!",
    "trustno1",
    "superman",
    "starwars",
    "whatever",
    "computer",
    "michelle",
    "jennifer",
    "corvette",
    "mercedes",
    "liverpool",
    "chelsea1",
    "arsenal1",
    "mustang1",
    "shadow12",
    "master12",
    "dragon12",
    "monkey12",
    "charlie1",
    "jordan23",
    "access14",
    "changeme",
    "changeme1",
    "administrator",
    "admin123",
    "admin1234",
    "root1234",
    "test1234",
    "testtest",
    "guest123",
    "default1",
    "secret12",
    "secret123",
    "summer2024",
    "winter2024",
    "spring2024",
    "autumn2024",
    "summer2025",
    "winter2025",
    "spring2025",
    "summer2026",
    "winter2026",
    "spring2026",
    "qazwsxedc",
    "google123",
    "samsung1",
    "pokemon1",
    "blink182",
    "freedom1",
    "hello123",
    "lovely12",
    "loveme12",
    "ashley12",
    "daniel12",
    "matthew1",
    "jessica1",
    "123qweasd",
];

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password hashing pool is saturated")]
    Saturated,
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("password is too common")]
    TooCommon,
    #[error("{0}")]
    Invalid(IdentifierError),
    #[error("password hashing failed")]
    Hash,
}

fn argon2id() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(19_456, 2, 1, None).map_err(|_| PasswordError::Hash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks a new password against the policy: a valid RFC 8265 OpaqueString (§4.2) whose
/// prepared form has the length bounds, is not on the common-password list and is not the
/// user name.
pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::TooShort);
    }
    let prepared = prepare_password(password).map_err(PasswordError::Invalid)?;
    if prepared.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if prepared.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let lower = prepared.to_lowercase();
    let username = normalize_username(email).unwrap_or_else(|_| email.trim().to_lowercase());
    if COMMON_PASSWORDS.contains(&lower.as_str()) || lower == username {
        return Err(PasswordError::TooCommon);
    }
    Ok(())
}

/// Hashes the RFC 8265 OpaqueString form of a password into a PHC string. CPU-heavy: call it
/// off the async runtime.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let prepared = prepare_password(password).map_err(PasswordError::Invalid)?;
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Hash)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Hash)?;
    Ok(argon2id()?
        .hash_password(prepared.as_bytes(), &salt)
        .map_err(|_| PasswordError::Hash)?
        .to_string())
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    match argon2id() {
        Ok(argon2) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Verifies passwords on at most `pool_size` blocking threads with at most `queue_limit`
/// callers waiting.
pub struct PasswordPool {
    permits: Arc<Semaphore>,
    outstanding: AtomicUsize,
    max_outstanding: usize,
    /// Hash of a random password: unknown users are verified against it so they cost the same.
    dummy_hash: String,
    verifications: AtomicU64,
}

/// Decrements the outstanding count when a verification ends or its caller goes away.
struct Outstanding<'a>(&'a AtomicUsize);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordPool {
    pub async fn new(pool_size: usize, queue_limit: usize) -> Result<PasswordPool, PasswordError> {
        let mut random = [0u8; 24];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| PasswordError::Hash)?;
        let dummy_password = random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let dummy_hash = tokio::task::spawn_blocking(move || hash_password(&dummy_password))
            .await
            .map_err(|_| PasswordError::Hash)??;
        let pool_size = pool_size.max(1);
        Ok(PasswordPool {
            permits: Arc::new(Semaphore::new(pool_size)),
            outstanding: AtomicUsize::new(0),
            max_outstanding: pool_size + queue_limit,
            dummy_hash,
            verifications: AtomicU64::new(0),
        })
    }

    /// Verifies the RFC 8265 OpaqueString form of `password` against `hash`, or against the
    /// dummy hash when there is no user or the password is not a valid OpaqueString (always
    /// `false` then). Takes the same time either way: one argon2 run, never a second try
    /// with the raw form.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (password, hash) = match prepare_password(password.expose_secret()) {
            Ok(prepared) => (SecretString::from(prepared.into_owned()), hash),
            Err(_) => (password, None),
        };
        if self.outstanding.fetch_add(1, Ordering::AcqRel) >= self.max_outstanding {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(PasswordError::Saturated);
        }
        let _outstanding = Outstanding(&self.outstanding);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Hash)?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_blocking(password.expose_secret(), &hash)
        })
        .await
        .map_err(|_| PasswordError::Hash)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(known && matched)
    }

    /// How many argon2 verifications have run (unknown users included).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        assert!(check_policy("correct horse battery", "a@b.c").is_ok());
        assert!(matches!(
            check_policy("short", "a@b.c"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            check_policy("Password123", "a@b.c"),
            Err(PasswordError::TooCommon)
        ));
        assert!(matches!(
            check_policy("someone@example.com", "Someone@Example.com"),
            Err(PasswordError::TooCommon)
        ));
        assert!(matches!(
            check_policy(&"x".repeat(2000), "a@b.c"),
            Err(PasswordError::TooLong)
        ));
        // RFC 8265: the prepared form is what is checked.
        assert!(matches!(
            check_policy("correct\u{7}horse", "a@b.c"),
            Err(PasswordError::Invalid(_))
        ));
        assert!(matches!(
            check_policy("", "a@b.c"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            check_policy("Jose\u{301}@example.com", "jos\u{e9}@Example.com"),
            Err(PasswordError::TooCommon)
        ));
        // 1024 bytes of NFD "é" (3 bytes) shrink to NFC (2 bytes) within the limit.
        let nfd = "e\u{301}".repeat(MAX_PASSWORD_LEN / 3 + 1);
        assert!(nfd.len() > MAX_PASSWORD_LEN);
        assert!(check_policy(&nfd, "a@b.c").is_ok());
    }

    #[tokio::test]
    async fn nfd_and_nfc_forms_of_a_password_verify_alike() {
        let pool = PasswordPool::new(1, 4).await.unwrap();
        let secret = |s: &str| SecretString::from(s.to_owned());
        let nfc = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e";
        let nfd = "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e";
        for (created, presented) in [(nfc, nfd), (nfd, nfc), (nfc, nfc), (nfd, nfd)] {
            let hash = hash_password(created).unwrap();
            assert!(
                pool.verify(secret(presented), Some(hash)).await.unwrap(),
                "{created:?} / {presented:?}"
            );
        }
        let before = pool.verifications();
        assert!(
            !pool
                .verify(
                    secret("bad\u{7}password"),
                    Some(hash_password(nfc).unwrap())
                )
                .await
                .unwrap(),
            "an invalid OpaqueString never matches"
        );
        assert_eq!(pool.verifications() - before, 1, "still one argon2 run");
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let pool = PasswordPool::new(1, 4).await.unwrap();
        let secret = |s: &str| SecretString::from(s.to_owned());
        assert!(
            pool.verify(secret("correct horse battery"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify(secret("wrong horse battery"), Some(hash))
                .await
                .unwrap()
        );
        assert!(!pool.verify(secret("anything"), None).await.unwrap());
        assert_eq!(pool.verifications(), 3);
    }

    #[tokio::test]
    async fn a_full_pool_refuses_instead_of_queueing() {
        let pool = Arc::new(PasswordPool::new(1, 1).await.unwrap());
        let hash = hash_password("correct horse battery").unwrap();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                let hash = hash.clone();
                tokio::spawn(async move {
                    pool.verify(SecretString::from("x".to_owned()), Some(hash))
                        .await
                })
            })
            .collect();
        let mut saturated = 0;
        for call in calls {
            if matches!(call.await.unwrap(), Err(PasswordError::Saturated)) {
                saturated += 1;
            }
        }
        assert!(
            saturated >= 1,
            "8 callers on a pool of 1 + queue of 1 must see refusals"
        );
        assert!(
            saturated <= 6,
            "at least the running and the queued call complete"
        );
    }
}
