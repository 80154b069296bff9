//! Signing keys: generation and import, the next → active → retired life cycle, JWS signing
//! and the published JWKS.
//!
//! Everything about a key lives in the store, so every instance and the admin CLI agree on
//! which key is active and each can sign with it: its metadata (kid, algorithm, state,
//! timestamps) and its PKCS#8 private key, sealed under `AUTH_SECRETS` ([`crate::sealed`]).
//! A running server reloads the set periodically, so keys generated, imported or rotated from
//! the CLI are picked up without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::model::{KeyAlgorithm, KeyRecord, KeyState, StoredKey};
use crate::sealed::{Purpose, SealError, SystemSecrets};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0} is not a valid PKCS#8 key for its algorithm")]
    InvalidKey(PathBuf),
    #[error("{path}: {reason}")]
    UnusableKeyFile { path: PathBuf, reason: String },
    #[error("the private key of `{0}` in the database is not a valid PKCS#8 key for its algorithm")]
    InvalidStoredKey(String),
    #[error(
        "key `{0}` has no private key in the database yet: run `auth-server migrate` with KEYS_DIR pointing at the directory that holds `{0}.pem`"
    )]
    MissingPrivateKey(String),
    #[error("the private key of `{kid}` cannot be decrypted: {source}")]
    Sealed { kid: String, source: SealError },
    #[error("no active signing key")]
    NoActiveKey,
    #[error("no key with kid `{0}`")]
    UnknownKid(String),
    #[error("key `{0}` is the active key: rotate to a new key before retiring it")]
    RetireActive(String),
    #[error("cryptographic operation failed")]
    Crypto,
    #[error("encrypting a private key failed: {0}")]
    Seal(#[from] SealError),
}

enum KeyMaterial {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A parsed private key, ready to sign.
pub struct SigningKey {
    kid: String,
    alg: KeyAlgorithm,
    material: KeyMaterial,
    /// base64url of the JOSE header, which is the same for every token this key signs.
    header_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PKCS#8 DER private key.
    pub fn from_pkcs8(kid: &str, alg: KeyAlgorithm, der: &[u8]) -> Option<SigningKey> {
        let material = match alg {
            KeyAlgorithm::ES256 => KeyMaterial::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?,
            ),
            KeyAlgorithm::RS256 => KeyMaterial::Rsa(RsaKeyPair::from_pkcs8(der).ok()?),
            KeyAlgorithm::EdDSA => {
                KeyMaterial::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?)
            }
        };
        let header = serde_json::json!({ "alg": alg.as_str(), "typ": "at+jwt", "kid": kid });
        Some(SigningKey {
            kid: kid.to_owned(),
            alg,
            material,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> KeyAlgorithm {
        self.alg
    }

    /// Signs `claims` as a compact JWS with header `{alg, typ: "at+jwt", kid}`.
    pub fn sign_jwt<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Crypto)?;
        let mut jws = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 400);
        jws.push_str(&self.header_b64);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jws);
        Ok(jws)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.material {
            KeyMaterial::Ec(pair) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
            KeyMaterial::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Crypto)?;
                Ok(sig)
            }
            KeyMaterial::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// Verifies a signature made by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Ec(pair) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
                    .verify(message, signature)
                    .is_ok()
            }
            KeyMaterial::Rsa(pair) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref())
                    .verify(message, signature)
                    .is_ok()
            }
            KeyMaterial::Ed(pair) => UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref())
                .verify(message, signature)
                .is_ok(),
        }
    }

    /// The public key as a JWK (RFC 7517) with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> serde_json::Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (kid, alg) = (&self.kid, self.alg.as_str());
        match &self.material {
            KeyMaterial::Ec(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let coordinates = pair.public_key().as_ref().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "use": "sig", "alg": alg, "kid": kid})
            }
            KeyMaterial::Rsa(pair) => {
                let public = pair.public_key();
                serde_json::json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                    "use": "sig", "alg": alg, "kid": kid,
                })
            }
            KeyMaterial::Ed(pair) => {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()), "use": "sig", "alg": alg, "kid": kid})
            }
        }
    }
}

/// The algorithm of a PKCS#8 private key: each parser checks the key's algorithm identifier
/// (and the curve), so at most one accepts a key.
pub fn detect_algorithm(der: &[u8]) -> Option<KeyAlgorithm> {
    [
        KeyAlgorithm::ES256,
        KeyAlgorithm::EdDSA,
        KeyAlgorithm::RS256,
    ]
    .into_iter()
    .find(|alg| SigningKey::from_pkcs8("", *alg, der).is_some())
}

/// The DER of a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM document.
pub fn pkcs8_from_pem(text: &[u8]) -> Result<SecretSlice<u8>, String> {
    let parsed = pem::parse(text)
        .map_err(|_| "not a PEM file (expected -----BEGIN PRIVATE KEY-----)".to_owned())?;
    if parsed.tag() != "PRIVATE KEY" {
        return Err(format!(
            "a `{}` PEM, not a PKCS#8 `PRIVATE KEY` (convert it with `openssl pkcs8 -topk8 -nocrypt`)",
            parsed.tag()
        ));
    }
    Ok(SecretSlice::from(parsed.into_contents()))
}

/// Generates a new private key as PKCS#8 DER.
fn generate_pkcs8(alg: KeyAlgorithm) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg {
        KeyAlgorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Crypto)?
            .as_ref()
            .to_vec(),
        KeyAlgorithm::RS256 => {
            use aws_lc_rs::encoding::AsDer;
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Crypto)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> =
                pair.as_der().map_err(|_| KeyError::Crypto)?;
            der.as_ref().to_vec()
        }
        KeyAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Crypto)?
            .as_ref()
            .to_vec(),
    };
    Ok(der)
}

/// A random key id: 16 url-safe base64 characters (96 bits), never starting with `-`.
fn new_kid() -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    loop {
        let mut bytes = [0u8; 12];
        rng.fill(&mut bytes).map_err(|_| KeyError::Crypto)?;
        let kid = URL_SAFE_NO_PAD.encode(bytes);
        // Never a leading `-` (1 kid in 64): `keys retire <kid>` would read it as an option.
        if !kid.starts_with('-') {
            return Ok(kid);
        }
    }
}

/// Decrypts the private key of a stored key (PKCS#8 DER).
pub fn open_private_key(
    secrets: &SystemSecrets,
    key: &StoredKey,
) -> Result<SecretSlice<u8>, KeyError> {
    let kid = &key.record.kid;
    let sealed = key
        .sealed_private_key
        .as_deref()
        .ok_or_else(|| KeyError::MissingPrivateKey(kid.clone()))?;
    secrets
        .open(Purpose::SigningKey(kid), sealed)
        .map_err(|source| KeyError::Sealed {
            kid: kid.clone(),
            source,
        })
}

fn load_key(secrets: &SystemSecrets, key: &StoredKey) -> Result<SigningKey, KeyError> {
    let der = open_private_key(secrets, key)?;
    let record = &key.record;
    SigningKey::from_pkcs8(&record.kid, record.alg, der.expose_secret())
        .ok_or_else(|| KeyError::InvalidStoredKey(record.kid.clone()))
}

/// Records a key in `state` with its private key `der`, sealed under the first secret.
async fn insert_sealed(
    store: &dyn Store,
    secrets: &SystemSecrets,
    alg: KeyAlgorithm,
    state: KeyState,
    der: &[u8],
) -> Result<KeyRecord, KeyError> {
    let kid = new_kid()?;
    let sealed = secrets.seal(Purpose::SigningKey(&kid), der)?;
    let now = OffsetDateTime::now_utc();
    let record = KeyRecord {
        kid,
        alg,
        state,
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
    };
    store.insert_key(&record, &sealed).await?;
    Ok(record)
}

/// Generates a key and records it, private key sealed, in `state`.
pub(crate) async fn generate_key(
    store: &dyn Store,
    secrets: &SystemSecrets,
    alg: KeyAlgorithm,
    state: KeyState,
) -> Result<KeyRecord, KeyError> {
    let der = SecretSlice::from(generate_pkcs8(alg)?);
    insert_sealed(store, secrets, alg, state, der.expose_secret()).await
}

/// Adds the PKCS#8 PEM private key `pem` (read from `path`, which errors name) as the `next`
/// key. Its algorithm is `alg`, or the one the key is for when `None`.
pub(crate) async fn import_pem(
    store: &dyn Store,
    secrets: &SystemSecrets,
    pem: &[u8],
    path: &Path,
    alg: Option<KeyAlgorithm>,
) -> Result<KeyRecord, KeyError> {
    let unusable = |reason: String| KeyError::UnusableKeyFile {
        path: path.to_owned(),
        reason,
    };
    let der = pkcs8_from_pem(pem).map_err(unusable)?;
    let der = der.expose_secret();
    let alg = match alg {
        Some(alg) if SigningKey::from_pkcs8("", alg, der).is_some() => alg,
        Some(alg) => {
            return Err(unusable(format!(
                "not a valid {} private key",
                alg.as_str()
            )));
        }
        None => detect_algorithm(der).ok_or_else(|| {
            unusable(
                "not an ES256 (P-256), RS256 (RSA ≥ 2048 bits) or EdDSA (Ed25519) private key"
                    .to_owned(),
            )
        })?,
    };
    insert_sealed(store, secrets, alg, KeyState::Next, der).await
}

/// Outcome of a rotation ([`Admin::rotate_keys`](crate::admin::Admin::rotate_keys)).
#[derive(Debug, Serialize)]
pub struct Rotation {
    /// The key that now signs.
    pub activated: String,
    /// The key that stopped signing, if there was one.
    pub retired: Option<String>,
    /// The freshly generated next key, already published.
    pub next: String,
    /// True when no next key existed, so the new active key was never published before signing.
    pub unannounced: bool,
}

/// Promotes the next key to active (generating one if none exists), retires the active key
/// and generates a new next key so the following rotation is announced in advance.
pub(crate) async fn rotate(
    store: &dyn Store,
    secrets: &SystemSecrets,
    alg: KeyAlgorithm,
) -> Result<Rotation, KeyError> {
    let keys = store.list_keys().await?;
    let retired = keys
        .iter()
        .find(|k| k.state == KeyState::Active)
        .map(|k| k.kid.clone());
    // Oldest next key first: it has been published longest.
    let (next, unannounced) = match keys.iter().rev().find(|k| k.state == KeyState::Next) {
        Some(next) => (next.kid.clone(), false),
        None => (
            generate_key(store, secrets, alg, KeyState::Next).await?.kid,
            true,
        ),
    };
    if !store.activate_key(&next, OffsetDateTime::now_utc()).await? {
        return Err(KeyError::UnknownKid(next));
    }
    let upcoming = generate_key(store, secrets, alg, KeyState::Next).await?;
    Ok(Rotation {
        activated: next,
        retired,
        next: upcoming.kid,
        unannounced,
    })
}

/// Retires a key that is not the active one.
pub(crate) async fn retire(store: &dyn Store, kid: &str) -> Result<(), KeyError> {
    let keys = store.list_keys().await?;
    match keys.iter().find(|k| k.kid == kid) {
        None => Err(KeyError::UnknownKid(kid.to_owned())),
        Some(k) if k.state == KeyState::Active => Err(KeyError::RetireActive(kid.to_owned())),
        Some(_) => {
            store.retire_key(kid, OffsetDateTime::now_utc()).await?;
            Ok(())
        }
    }
}

/// Makes sure an active key exists, generating an ES256 one into the store if not; returns its
/// kid when one was generated.
pub(crate) async fn ensure_active_key(
    store: &dyn Store,
    secrets: &SystemSecrets,
) -> Result<Option<String>, KeyError> {
    let keys = store.list_keys().await?;
    if keys.iter().any(|k| k.state == KeyState::Active) {
        return Ok(None);
    }
    match generate_key(store, secrets, KeyAlgorithm::ES256, KeyState::Active).await {
        Ok(record) => Ok(Some(record.kid)),
        // Another instance starting at the same moment created the active key first.
        Err(KeyError::Store(StoreError::AlreadyExists(_))) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Whether `record` is in the JWKS at `now`: next and active keys, and retired keys for
/// `retired_grace` after their retirement.
pub fn is_published(record: &KeyRecord, retired_grace: Duration, now: OffsetDateTime) -> bool {
    match record.state {
        KeyState::Next | KeyState::Active => true,
        KeyState::Retired => record.retired_at.is_some_and(|at| at + retired_grace > now),
    }
}

/// The keys in use at one moment: the one that signs and the JWKS document.
#[derive(Debug)]
pub struct KeySet {
    pub active: Arc<SigningKey>,
    /// Every published key (next, active, recently retired) by kid.
    pub published: std::collections::HashMap<String, Arc<SigningKey>>,
    /// Serialized `{"keys": [...]}` (next, active and recently retired public keys), built
    /// once per reload rather than per request.
    pub jwks: Arc<str>,
    /// The published keys as verifiers, by kid, read from their own JWKs.
    verifiers: std::collections::HashMap<String, token_guard::PublicKey>,
}

impl KeySet {
    /// Reads the keys from the store, decrypting their private keys. Retired keys stay
    /// published for `retired_grace` after retirement (the longest a token they signed lives).
    pub async fn load(
        store: &dyn Store,
        secrets: &SystemSecrets,
        retired_grace: Duration,
        now: OffsetDateTime,
    ) -> Result<KeySet, KeyError> {
        let stored = store.list_stored_keys().await?;
        let mut active = None;
        let mut published = Vec::new();
        let mut by_kid = std::collections::HashMap::new();
        let mut verifiers = std::collections::HashMap::new();
        for stored in &stored {
            let record = &stored.record;
            if !is_published(record, retired_grace, now) {
                continue;
            }
            let key = Arc::new(load_key(secrets, stored)?);
            let jwk = key.public_jwk();
            let verifier = token_guard::PublicKey::from_jwk(&jwk)
                .map_err(|_| KeyError::InvalidStoredKey(record.kid.clone()))?;
            verifiers.insert(record.kid.clone(), verifier);
            published.push(jwk);
            if record.state == KeyState::Active {
                active = Some(key.clone());
            }
            by_kid.insert(record.kid.clone(), key);
        }
        let active = active.ok_or(KeyError::NoActiveKey)?;
        let jwks = serde_json::json!({ "keys": published }).to_string();
        Ok(KeySet {
            active,
            published: by_kid,
            jwks: jwks.into(),
            verifiers,
        })
    }

    /// The public half of a published key, for verifying tokens with
    /// [`token_guard::AccessTokenRules`] (the same rules resource servers apply).
    pub fn public_key(&self, kid: &str) -> Option<&token_guard::PublicKey> {
        self.verifiers.get(kid)
    }
}

/// The current [`KeySet`] of a running server, swapped atomically on reload.
pub struct KeyRing {
    store: Arc<dyn Store>,
    secrets: SystemSecrets,
    retired_grace: Duration,
    /// Decides which retired keys are still published (see [`is_published`]).
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    pub async fn load(
        store: Arc<dyn Store>,
        secrets: SystemSecrets,
        retired_grace: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyRing, KeyError> {
        let set = KeySet::load(store.as_ref(), &secrets, retired_grace, clock.now()).await?;
        Ok(KeyRing {
            store,
            secrets,
            retired_grace,
            clock,
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The key set in force now.
    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the keys from the store.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let set = Arc::new(
            KeySet::load(
                self.store.as_ref(),
                &self.secrets,
                self.retired_grace,
                self.clock.now(),
            )
            .await?,
        );
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the check about one kid in 64 would start with `-`; among 4,096 none does.
    #[test]
    fn kids_never_start_with_a_dash() {
        for _ in 0..4096 {
            let kid = new_kid().unwrap();
            assert_eq!(kid.len(), 16);
            assert!(!kid.starts_with('-'), "{kid}");
        }
    }
}
