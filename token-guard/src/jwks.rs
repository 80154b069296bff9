//! [`JwksCache`]: the auth server's public keys, fetched at start, refreshed in the background
//! as `Cache-Control: max-age` allows (bounded), refetched when a token names an unknown `kid`
//! (at most once per interval), and kept as they were while the auth server cannot be reached.
//!
//! Each usable JWK becomes a [`VerifyingKey`] whose algorithm comes from the key itself
//! (`alg`, checked against `kty`/`crv`), so a token can never choose how it is verified.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::GuardConfig;
use crate::verify::PublicKey;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Refresh interval when the response carries no usable `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Why the key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("JWKS request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("JWKS request to {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("JWKS document at {url} is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge { url: String },
    #[error("JWKS document at {url} is not a JSON key set: {reason}")]
    Invalid { url: String, reason: String },
    #[error("JWKS document at {url} holds no usable signing key")]
    NoUsableKey { url: String },
}

/// A published key and the JWK it came from.
pub(crate) struct VerifyingKey {
    pub(crate) key: PublicKey,
    /// The JWK as published, to tell a changed key from an unchanged one.
    fingerprint: String,
}

/// One fetched key set.
struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// Bumped whenever a key disappears or changes, so cached verifications made with a key
    /// that is no longer published stop counting.
    generation: u64,
}

struct Inner {
    url: String,
    http: reqwest::Client,
    min_refresh: Duration,
    max_refresh: Duration,
    refetch_interval: Duration,
    current: RwLock<Arc<KeySet>>,
    /// When the last refetch caused by an unknown `kid` happened; held while it runs so
    /// concurrent requests wait for one fetch instead of starting their own.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The cached key set; cheap to clone.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.inner.url)
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Fetches the key set once (failing if that fails or yields no usable key) and starts the
    /// background refresh, which ends when the last clone of the cache is dropped.
    pub async fn start(config: &GuardConfig) -> Result<JwksCache, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .build()
            .map_err(JwksError::Client)?;
        let cache = JwksCache {
            inner: Arc::new(Inner {
                url: config.jwks_url.clone(),
                http,
                min_refresh: config.min_refresh,
                max_refresh: config.max_refresh,
                refetch_interval: config.unknown_kid_refetch_interval,
                current: RwLock::new(Arc::new(KeySet {
                    keys: HashMap::new(),
                    generation: 0,
                })),
                last_refetch: tokio::sync::Mutex::new(None),
            }),
        };
        let max_age = cache.refresh().await?;
        tokio::spawn(refresh_loop(Arc::downgrade(&cache.inner), max_age));
        Ok(cache)
    }

    /// The URL the keys are fetched from.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Key ids currently trusted, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.current().keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Fetches the key set now and installs it; on failure the previous set stays in force.
    /// Returns how long the answer may be cached, already bounded by the configured limits.
    pub async fn refresh(&self) -> Result<Duration, JwksError> {
        let (keys, max_age) = fetch(&self.inner.http, &self.inner.url).await?;
        let max_age = max_age
            .unwrap_or(DEFAULT_MAX_AGE)
            .clamp(self.inner.min_refresh, self.inner.max_refresh);
        self.install(keys);
        Ok(max_age)
    }

    fn install(&self, keys: HashMap<String, Arc<VerifyingKey>>) {
        let mut guard = match self.inner.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = guard.clone();
        let lost_or_changed = old.keys.iter().any(|(kid, key)| {
            keys.get(kid)
                .is_none_or(|new| new.fingerprint != key.fingerprint)
        });
        let generation = old.generation + u64::from(lost_or_changed);
        *guard = Arc::new(KeySet { keys, generation });
    }

    fn current(&self) -> Arc<KeySet> {
        match self.inner.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes whenever a trusted key is withdrawn or replaced.
    pub(crate) fn generation(&self) -> u64 {
        self.current().generation
    }

    /// The key named `kid` with the generation of the set it came from; refetches the set
    /// when `kid` is unknown, at most once per refetch interval.
    pub(crate) async fn key(&self, kid: &str) -> Option<(Arc<VerifyingKey>, u64)> {
        let lookup = |set: Arc<KeySet>| set.keys.get(kid).map(|k| (k.clone(), set.generation));
        if let Some(found) = lookup(self.current()) {
            return Some(found);
        }
        let mut last = self.inner.last_refetch.lock().await;
        // Another request may have refetched while this one waited.
        if let Some(found) = lookup(self.current()) {
            return Some(found);
        }
        if last.is_some_and(|at| at.elapsed() < self.inner.refetch_interval) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(err) = self.refresh().await {
            tracing::warn!(error = %err, "refetching the JWKS for an unknown kid failed; keeping the current keys");
        }
        lookup(self.current())
    }
}

async fn refresh_loop(inner: Weak<Inner>, first_wait: Duration) {
    let mut wait = first_wait;
    loop {
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cache = JwksCache { inner };
        wait = match cache.refresh().await {
            Ok(max_age) => max_age,
            Err(err) => {
                tracing::warn!(error = %err, "refreshing the JWKS failed; keeping the last good keys");
                cache.inner.min_refresh
            }
        };
    }
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
) -> Result<(HashMap<String, Arc<VerifyingKey>>, Option<Duration>), JwksError> {
    let request_error = |source| JwksError::Request {
        url: url.to_owned(),
        source,
    };
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(request_error)?;
    if !response.status().is_success() {
        return Err(JwksError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_max_age);
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(JwksError::TooLarge {
            url: url.to_owned(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge {
                url: url.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let keys = parse_jwks(&body).map_err(|reason| JwksError::Invalid {
        url: url.to_owned(),
        reason,
    })?;
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey {
            url: url.to_owned(),
        });
    }
    Ok((keys, max_age))
}

/// `max-age` of a `Cache-Control` value, zero for `no-store`/`no-cache`.
pub(crate) fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = match directive.split_once('=') {
            Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            max_age = arg
                .and_then(|a| a.parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    max_age
}

#[derive(Deserialize)]
struct JwkSetDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Usable signing keys by kid. Keys that cannot be used (no kid, not for signatures, an
/// algorithm outside ES256/RS256/EdDSA, symmetric keys, bad coordinates) are skipped.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<VerifyingKey>>, String> {
    let document: JwkSetDocument = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for value in document.keys {
        let fingerprint = value.to_string();
        let parsed = value
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no kid".to_owned())
            .and_then(|kid| Ok((kid, public_key(&value)?)));
        match parsed {
            Ok((kid, key)) => {
                keys.insert(kid, Arc::new(VerifyingKey { key, fingerprint }));
            }
            Err(reason) => tracing::warn!(%reason, "skipping an unusable JWK"),
        }
    }
    Ok(keys)
}

/// The key of one JWK; see [`PublicKey::from_jwk`].
pub(crate) fn public_key(jwk: &serde_json::Value) -> Result<PublicKey, String> {
    let raw = RawJwk::deserialize(jwk).map_err(|e| e.to_string())?;
    let (alg, key) = verifying_key(&raw)?;
    Ok(PublicKey { alg, key })
}

/// The algorithm a JWK is for, from its key type (and its `alg` when present, which must
/// agree), and the key itself.
fn verifying_key(jwk: &RawJwk) -> Result<(Algorithm, DecodingKey), String> {
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return Err("key is not for signatures".to_owned());
    }
    fn field<'a>(kty: &str, value: &'a Option<String>, name: &str) -> Result<&'a str, String> {
        value
            .as_deref()
            .ok_or_else(|| format!("{kty} key without `{name}`"))
    }
    let (alg, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("EC", Some("P-256")) => {
            let (x, y) = (field(&jwk.kty, &jwk.x, "x")?, field(&jwk.kty, &jwk.y, "y")?);
            for coordinate in [x, y] {
                if URL_SAFE_NO_PAD.decode(coordinate).map(|c| c.len()) != Ok(32) {
                    return Err("EC coordinate is not 32 bytes".to_owned());
                }
            }
            let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
            (Algorithm::ES256, key)
        }
        ("RSA", _) => {
            let (n, e) = (field(&jwk.kty, &jwk.n, "n")?, field(&jwk.kty, &jwk.e, "e")?);
            let modulus = URL_SAFE_NO_PAD
                .decode(n)
                .map_err(|_| "RSA modulus is not base64url".to_owned())?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA modulus shorter than 2048 bits".to_owned());
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
            (Algorithm::RS256, key)
        }
        ("OKP", Some("Ed25519")) => {
            let x = field(&jwk.kty, &jwk.x, "x")?;
            if URL_SAFE_NO_PAD.decode(x).map(|c| c.len()) != Ok(32) {
                return Err("Ed25519 key is not 32 bytes".to_owned());
            }
            let key = DecodingKey::from_ed_components(x).map_err(|e| e.to_string())?;
            (Algorithm::EdDSA, key)
        }
        (kty, crv) => return Err(format!("unsupported key type {kty} {crv:?}")),
    };
    let alg_name = algorithm_name(alg);
    match jwk.alg.as_deref() {
        None => Ok((alg, key)),
        Some(declared) if declared == alg_name => Ok((alg, key)),
        Some(declared) => Err(format!("`alg` {declared} does not fit a {alg_name} key")),
    }
}

/// The JOSE name of one of the accepted algorithms.
pub(crate) fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        // Never produced by `verifying_key`.
        _ => "unsupported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_max_age("public, max-age=300"), secs(300));
        assert_eq!(parse_max_age("Max-Age=\"60\", public"), secs(60));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
        assert_eq!(parse_max_age("no-store"), secs(0));
        assert_eq!(parse_max_age("max-age=300, no-cache"), secs(0));
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "HS256", "kid": "lies"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "use": "enc", "kid": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": x},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "short"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig", "kid": "good"},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(keys["good"].key.alg, Algorithm::EdDSA);
        assert!(parse_jwks(b"[]").is_err());
    }
}
