//! Signing keys: generation and import, the next → active → retired life cycle, JWS signing
//! and the published JWKS.
//!
//! Each algorithm has its own chain with at most one active key: access tokens are signed by
//! the active key of `ACCESS_TOKEN_ALG` (ES256 by default), OpenID Connect id_tokens by the
//! active RS256 key (OIDC Core §15.1 requires RS256). The JWKS publishes every chain.
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

/// The algorithm of access tokens when `ACCESS_TOKEN_ALG` is unset.
pub const DEFAULT_ACCESS_TOKEN_ALG: KeyAlgorithm = KeyAlgorithm::ES256;

/// The algorithm that always has an active key besides the access-token one: id_tokens must
/// be signable with RS256 (OIDC Core §15.1).
pub const ID_TOKEN_KEY_ALG: KeyAlgorithm = KeyAlgorithm::RS256;

/// The JOSE `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The JOSE `typ` of an OpenID Connect id_token (`JWT`, RFC 7519 §5.1): not
/// [`ACCESS_TOKEN_TYP`], so resource servers refuse an id_token as an access token
/// (RFC 9068 §4).
pub const ID_TOKEN_TYP: &str = "JWT";

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
    /// No active key of the access-token algorithm (`ACCESS_TOKEN_ALG`).
    #[error("no active {} signing key (the algorithm of ACCESS_TOKEN_ALG)", .0.as_str())]
    NoActiveKey(KeyAlgorithm),
    /// `ACCESS_TOKEN_ALG` is unset (so ES256) but the database's access tokens have been
    /// signed by a key of another algorithm: starting would switch them silently.
    #[error(
        "ACCESS_TOKEN_ALG is ES256 but the active access-token key is {}: set ACCESS_TOKEN_ALG={}",
        .active.as_str(),
        .active.as_str()
    )]
    AccessAlgorithmUnset { active: KeyAlgorithm },
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
    /// base64url of the JOSE headers `{alg, typ, kid}` for the `typ`s this server signs
    /// ([`ACCESS_TOKEN_TYP`], [`ID_TOKEN_TYP`]), encoded once rather than per token.
    headers_b64: [(&'static str, String); 2],
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
        Some(SigningKey {
            kid: kid.to_owned(),
            alg,
            material,
            headers_b64: [ACCESS_TOKEN_TYP, ID_TOKEN_TYP]
                .map(|typ| (typ, encode_header(alg, typ, kid))),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> KeyAlgorithm {
        self.alg
    }

    /// Signs `claims` as an access token: a compact JWS with header
    /// `{alg, typ: "at+jwt", kid}` (RFC 9068 §2.1).
    pub fn sign_jwt<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        self.sign_jwt_typed(claims, ACCESS_TOKEN_TYP)
    }

    /// Signs `claims` as a compact JWS (RFC 7515 §7.1) with header `{alg, typ, kid}`: `typ`
    /// is [`ACCESS_TOKEN_TYP`] for access tokens, [`ID_TOKEN_TYP`] for id_tokens. Errors only
    /// with [`KeyError::Crypto`] (claims that do not serialize, a failed signature).
    pub fn sign_jwt_typed<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Crypto)?;
        let encoded;
        let header_b64 = match self.headers_b64.iter().find(|(known, _)| *known == typ) {
            Some((_, header)) => header,
            None => {
                encoded = encode_header(self.alg, typ, &self.kid);
                &encoded
            }
        };
        let mut jws = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 400);
        jws.push_str(header_b64);
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

/// base64url of the JOSE header `{alg, typ, kid}`.
fn encode_header(alg: KeyAlgorithm, typ: &str, kid: &str) -> String {
    let header = serde_json::json!({ "alg": alg.as_str(), "typ": typ, "kid": kid });
    URL_SAFE_NO_PAD.encode(header.to_string())
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

/// Outcome of the rotation of one algorithm's chain
/// ([`Admin::rotate_keys`](crate::admin::Admin::rotate_keys)).
#[derive(Debug, Serialize)]
pub struct Rotation {
    /// The algorithm whose chain rotated; the other chains are untouched.
    pub alg: KeyAlgorithm,
    /// The key that now signs.
    pub activated: String,
    /// The key that stopped signing, if there was one.
    pub retired: Option<String>,
    /// The freshly generated next key, already published.
    pub next: String,
    /// True when no next key existed, so the new active key was never published before signing.
    pub unannounced: bool,
}

/// Rotates the chain of `alg`: promotes its next key to active (generating one if none
/// exists), retires its active key and generates a new next key so the following rotation is
/// announced in advance. Keys of other algorithms keep their state.
pub(crate) async fn rotate(
    store: &dyn Store,
    secrets: &SystemSecrets,
    alg: KeyAlgorithm,
) -> Result<Rotation, KeyError> {
    let keys = store.list_keys().await?;
    let chain = |state: KeyState| {
        keys.iter()
            .filter(move |k| k.alg == alg && k.state == state)
    };
    let retired = chain(KeyState::Active).next().map(|k| k.kid.clone());
    // Oldest next key first: it has been published longest.
    let (next, unannounced) = match chain(KeyState::Next).next_back() {
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
        alg,
        activated: next,
        retired,
        next: upcoming.kid,
        unannounced,
    })
}

/// Rotates every algorithm's chain that has an active key ([`rotate`]), in the order
/// ES256, RS256, EdDSA; with no active key at all, starts the ES256 chain
/// ([`DEFAULT_ACCESS_TOKEN_ALG`]).
pub(crate) async fn rotate_all(
    store: &dyn Store,
    secrets: &SystemSecrets,
) -> Result<Vec<Rotation>, KeyError> {
    let keys = store.list_keys().await?;
    let mut chains: Vec<KeyAlgorithm> = KeyAlgorithm::ALL
        .into_iter()
        .filter(|alg| {
            keys.iter()
                .any(|k| k.alg == *alg && k.state == KeyState::Active)
        })
        .collect();
    if chains.is_empty() {
        chains.push(DEFAULT_ACCESS_TOKEN_ALG);
    }
    let mut rotations = Vec::with_capacity(chains.len());
    for alg in chains {
        rotations.push(rotate(store, secrets, alg).await?);
    }
    Ok(rotations)
}

/// Retires a key that is not active (in any chain).
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

/// Makes sure the access-token algorithm (`access_token_alg`, `ACCESS_TOKEN_ALG`; `None`
/// when unset, meaning [`DEFAULT_ACCESS_TOKEN_ALG`]) and [`ID_TOKEN_KEY_ALG`] each have an
/// active key, generating the missing ones into the store (RSA keys are 2048 bits); returns
/// the keys it generated.
///
/// Upgrade rule: with the setting unset, a database that has active keys but none of ES256
/// (one from before per-algorithm chains, whose only active key is RS256 or EdDSA) fails with
/// [`KeyError::AccessAlgorithmUnset`] instead of switching access tokens to a new ES256 key.
pub(crate) async fn ensure_active_keys(
    store: &dyn Store,
    secrets: &SystemSecrets,
    access_token_alg: Option<KeyAlgorithm>,
) -> Result<Vec<KeyRecord>, KeyError> {
    let keys = store.list_keys().await?;
    let is_active = |alg: KeyAlgorithm| {
        keys.iter()
            .any(|k| k.alg == alg && k.state == KeyState::Active)
    };
    let access = access_token_alg.unwrap_or(DEFAULT_ACCESS_TOKEN_ALG);
    if access_token_alg.is_none() && !is_active(access) {
        // The key that signed access tokens: before per-algorithm chains the only active one;
        // RS256 is named last since it is also the id_token chain.
        let signing = [KeyAlgorithm::EdDSA, KeyAlgorithm::RS256]
            .into_iter()
            .find(|alg| is_active(*alg));
        if let Some(active) = signing {
            return Err(KeyError::AccessAlgorithmUnset { active });
        }
    }
    let mut generated = Vec::new();
    let mut wanted = vec![access];
    if access != ID_TOKEN_KEY_ALG {
        wanted.push(ID_TOKEN_KEY_ALG);
    }
    for alg in wanted.into_iter().filter(|alg| !is_active(*alg)) {
        match generate_key(store, secrets, alg, KeyState::Active).await {
            Ok(record) => generated.push(record),
            // Another instance starting at the same moment created that active key first.
            Err(KeyError::Store(StoreError::AlreadyExists(_))) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(generated)
}

/// Whether `record` is in the JWKS at `now`: next and active keys, and retired keys for
/// `retired_grace` after their retirement.
pub fn is_published(record: &KeyRecord, retired_grace: Duration, now: OffsetDateTime) -> bool {
    match record.state {
        KeyState::Next | KeyState::Active => true,
        KeyState::Retired => record.retired_at.is_some_and(|at| at + retired_grace > now),
    }
}

/// The keys in use at one moment: the active key of each algorithm, the one that signs access
/// tokens, and the JWKS document.
#[derive(Debug)]
pub struct KeySet {
    /// The active key of each algorithm that has one.
    active: std::collections::HashMap<KeyAlgorithm, Arc<SigningKey>>,
    /// The active key of the access-token algorithm (also in `active`).
    access: Arc<SigningKey>,
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
    /// Access tokens are signed by the active key of `access_token_alg`
    /// ([`KeyError::NoActiveKey`] if there is none).
    pub async fn load(
        store: &dyn Store,
        secrets: &SystemSecrets,
        access_token_alg: KeyAlgorithm,
        retired_grace: Duration,
        now: OffsetDateTime,
    ) -> Result<KeySet, KeyError> {
        let stored = store.list_stored_keys().await?;
        let mut active = std::collections::HashMap::new();
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
                active.insert(record.alg, key.clone());
            }
            by_kid.insert(record.kid.clone(), key);
        }
        let access = active
            .get(&access_token_alg)
            .cloned()
            .ok_or(KeyError::NoActiveKey(access_token_alg))?;
        let jwks = serde_json::json!({ "keys": published }).to_string();
        Ok(KeySet {
            active,
            access,
            published: by_kid,
            jwks: jwks.into(),
            verifiers,
        })
    }

    /// The active key of `alg`, if that algorithm has one (for an id_token: the client's
    /// `id_token_signed_response_alg`, OIDC Registration §2; `serve` makes sure RS256 has one).
    pub fn active(&self, alg: KeyAlgorithm) -> Option<&Arc<SigningKey>> {
        self.active.get(&alg)
    }

    /// The key that signs access tokens: the active key of `ACCESS_TOKEN_ALG`.
    pub fn access(&self) -> &Arc<SigningKey> {
        &self.access
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
    /// Whose active key signs access tokens ([`KeySet::access`]).
    access_token_alg: KeyAlgorithm,
    retired_grace: Duration,
    /// Decides which retired keys are still published (see [`is_published`]).
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    /// Loads the first [`KeySet`] (see [`KeySet::load`] for the arguments).
    pub async fn load(
        store: Arc<dyn Store>,
        secrets: SystemSecrets,
        access_token_alg: KeyAlgorithm,
        retired_grace: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyRing, KeyError> {
        let set = KeySet::load(
            store.as_ref(),
            &secrets,
            access_token_alg,
            retired_grace,
            clock.now(),
        )
        .await?;
        Ok(KeyRing {
            store,
            secrets,
            access_token_alg,
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
                self.access_token_alg,
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

    /// The header carries the `typ` asked for (precomputed or not), the signature verifies
    /// against the key's published JWK (jsonwebtoken, as any relying party), and only the
    /// access-token `typ` passes token-guard's access-token rules (RFC 9068 §4).
    #[test]
    fn sign_jwt_typed_writes_the_given_typ() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({
            "iss": "https://issuer.example", "sub": "s", "aud": "api", "exp": now + 60,
            "iat": now, "nbf": now, "jti": "j", "client_id": "c", "scope": "a",
        });
        let rules = token_guard::AccessTokenRules::new(
            "https://issuer.example",
            "api",
            Duration::from_secs(60),
            token_guard::DEFAULT_MAX_TOKEN_LEN,
        );
        for alg in KeyAlgorithm::ALL {
            let der = generate_pkcs8(alg).unwrap();
            let key = SigningKey::from_pkcs8("kid-1", alg, &der).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let public = token_guard::PublicKey::from_jwk(&key.public_jwk()).unwrap();
            for typ in [ID_TOKEN_TYP, ACCESS_TOKEN_TYP, "logout+jwt"] {
                let token = key.sign_jwt_typed(&claims, typ).unwrap();
                let header = jsonwebtoken::decode_header(&token).unwrap();
                assert_eq!(header.typ.as_deref(), Some(typ), "{alg:?}");
                assert_eq!(header.kid.as_deref(), Some("kid-1"));
                assert_eq!(header.alg, alg_of(alg));
                let mut validation = jsonwebtoken::Validation::new(header.alg);
                validation.set_audience(&["api"]);
                jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
                    .unwrap_or_else(|err| panic!("{alg:?} {typ}: {err}"));
                let as_access_token = rules.verify(&token, |_| Some(&public));
                assert_eq!(
                    as_access_token.is_ok(),
                    typ == ACCESS_TOKEN_TYP,
                    "{alg:?} {typ}"
                );
            }
            assert_eq!(
                key.sign_jwt(&claims).unwrap().split('.').next(),
                key.sign_jwt_typed(&claims, ACCESS_TOKEN_TYP)
                    .unwrap()
                    .split('.')
                    .next(),
                "sign_jwt is the access-token typ"
            );
        }
    }

    fn alg_of(alg: KeyAlgorithm) -> jsonwebtoken::Algorithm {
        match alg {
            KeyAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            KeyAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            KeyAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

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
