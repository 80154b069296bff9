//! Signed job envelopes: the versioned JSON every queue stores, and its HMAC-SHA-256 seal.
//!
//! Wire format (one UTF-8 string per job):
//!
//! ```text
//! {"envelope":{"v":1,"id":"…","kind":"…","attempt":0,"enqueued_at":1700000000000,"payload":{…}},"sig":"<base64url>"}
//! ```
//!
//! `sig` is the unpadded base64url HMAC-SHA-256, under the shared `JOB_SIGNING_KEY`, of the
//! envelope's bytes *exactly as they appear on the wire* (the verifier borrows them as a raw JSON
//! value and never re-serializes), so no canonical-JSON rules are needed: the producer signs
//! what it writes and the consumer checks what it reads. Verification is constant time
//! (`aws_lc_rs::hmac::verify`). The envelope is parsed only after its signature checks out.
//!
//! Every step that reads a stored job, from its raw bytes on, is part of [`SigningKey::open_bytes`]
//! and fails with an [`EnvelopeError`] (never a panic or a storage error): an entry that is
//! larger than [`MAX_JOB_BYTES`], not UTF-8, not JSON, of the wrong shape or badly signed is a
//! rejection reason, so the queues can move it to the dead list instead of stalling on it.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The envelope version this crate writes and accepts.
pub const ENVELOPE_VERSION: u32 = 1;

/// Shortest signing key accepted, in bytes (256 bits).
pub const MIN_KEY_LEN: usize = 32;

/// Longest job id accepted, in bytes.
const MAX_ID_LEN: usize = 200;

/// Largest stored job (wire form) that is sealed or opened, in bytes (1 MiB). Larger entries
/// are rejected before any parsing, so one huge entry costs no more than reading it.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;

/// How much of an unreadable job a dead-list entry keeps (the rest is dropped).
const DEAD_PREVIEW_BYTES: usize = 4096;

/// Why a job could not be sealed or opened. Each message is a dead-list reason, so it never
/// contains the key or the payload.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The stored job is not the `{"envelope": …, "sig": …}` JSON object, or the signed envelope
    /// does not have the expected fields.
    #[error("unparsable job: {0}")]
    Unparsable(String),
    /// The stored job is larger than [`MAX_JOB_BYTES`].
    #[error("oversized job: {len} bytes, at most {max} are accepted")]
    Oversized { len: usize, max: usize },
    /// The stored job is not UTF-8 text.
    #[error("unreadable job: not UTF-8 ({0})")]
    NotUtf8(String),
    /// The job carries no signature.
    #[error("unsigned job")]
    Unsigned,
    /// The signature does not match the envelope (forged or tampered job, or another key).
    #[error("bad signature")]
    BadSignature,
    /// The envelope was signed correctly but has a version this code does not understand.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u32),
    /// The signing key is shorter than [`MIN_KEY_LEN`].
    #[error("job signing key too short: at least {MIN_KEY_LEN} bytes are required")]
    KeyTooShort,
    /// A job id is empty, too long or contains control characters.
    #[error("invalid job id: {0}")]
    InvalidId(String),
    /// The envelope could not be serialized.
    #[error("cannot encode job: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A job's identity: a UUID string for generated ids, or any caller-given string of
/// 1–200 bytes without control characters (used for duplicate suppression).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// A fresh random (v4 UUID) id.
    pub fn random() -> Self {
        JobId(uuid::Uuid::new_v4().to_string())
    }

    /// Validates a caller-given id.
    pub fn new(id: impl Into<String>) -> Result<Self, EnvelopeError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
            return Err(EnvelopeError::InvalidId(id.chars().take(40).collect()));
        }
        Ok(JobId(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = EnvelopeError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        JobId::new(id)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl From<uuid::Uuid> for JobId {
    fn from(id: uuid::Uuid) -> Self {
        JobId(id.to_string())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One job as producers and workers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope version, [`ENVELOPE_VERSION`].
    pub v: u32,
    pub id: JobId,
    /// What the job is, e.g. `transcribe` or `notify`; workers dispatch on it.
    pub kind: String,
    /// Failed deliveries so far: 0 for a fresh job, incremented by every `fail`.
    pub attempt: u32,
    /// When the job was first enqueued, in Unix milliseconds.
    pub enqueued_at: i64,
    pub payload: Value,
}

impl Envelope {
    /// A fresh envelope (attempt 0, enqueued now).
    pub fn new(id: JobId, kind: impl Into<String>, payload: Value) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            id,
            kind: kind.into(),
            attempt: 0,
            enqueued_at: now_ms(),
            payload,
        }
    }
}

/// The HMAC key shared by producers and workers (`JOB_SIGNING_KEY`). Its `Debug` shows `***`.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// A key from raw bytes (for `JOB_SIGNING_KEY`, the UTF-8 bytes of the variable);
    /// at least [`MIN_KEY_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, EnvelopeError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(EnvelopeError::KeyTooShort);
        }
        Ok(SigningKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// Serializes and signs an envelope into its wire form.
    pub fn seal(&self, envelope: &Envelope) -> Result<String, EnvelopeError> {
        let body = serde_json::to_string(envelope).map_err(EnvelopeError::Encode)?;
        let tag = hmac::sign(&self.0, body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
        let wire = format!(r#"{{"envelope":{body},"sig":"{sig}"}}"#);
        check_size(wire.len())?;
        Ok(wire)
    }

    /// Opens a job as stored (any bytes): checks its size and UTF-8 before [`open`](Self::open).
    /// Returns the wire text with the envelope, so the caller keeps the exact stored form.
    pub fn open_bytes(&self, raw: Vec<u8>) -> Result<(Envelope, String), EnvelopeError> {
        check_size(raw.len())?;
        let wire = String::from_utf8(raw)
            .map_err(|e| EnvelopeError::NotUtf8(e.utf8_error().to_string()))?;
        let envelope = self.open(&wire)?;
        Ok((envelope, wire))
    }

    /// Verifies a wire string (constant time) and only then parses its envelope.
    pub fn open(&self, wire: &str) -> Result<Envelope, EnvelopeError> {
        check_size(wire.len())?;
        let sealed: Sealed<'_> =
            serde_json::from_str(wire).map_err(|e| EnvelopeError::Unparsable(e.to_string()))?;
        let sig = sealed.sig.ok_or(EnvelopeError::Unsigned)?;
        let tag = URL_SAFE_NO_PAD
            .decode(sig.as_bytes())
            .map_err(|_| EnvelopeError::BadSignature)?;
        hmac::verify(&self.0, sealed.envelope.get().as_bytes(), &tag)
            .map_err(|_| EnvelopeError::BadSignature)?;
        let envelope: Envelope = serde_json::from_str(sealed.envelope.get())
            .map_err(|e| EnvelopeError::Unparsable(e.to_string()))?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(envelope.v));
        }
        Ok(envelope)
    }
}

/// The outer wire object, borrowing the envelope bytes for verification.
#[derive(Deserialize)]
struct Sealed<'a> {
    #[serde(borrow)]
    envelope: &'a RawValue,
    sig: Option<String>,
}

fn check_size(len: usize) -> Result<(), EnvelopeError> {
    if len > MAX_JOB_BYTES {
        return Err(EnvelopeError::Oversized {
            len,
            max: MAX_JOB_BYTES,
        });
    }
    Ok(())
}

/// What an unverified job claims to be, read leniently to label a rejected job on the dead
/// list. Nothing here is trusted.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub attempt: Option<u32>,
}

/// Reads the claimed id, kind and attempt of a stored job (any bytes) without checking its
/// signature; nothing for entries that are oversized or not UTF-8.
pub(crate) fn peek_unverified_bytes(raw: &[u8]) -> Claimed {
    if raw.len() > MAX_JOB_BYTES {
        return Claimed::default();
    }
    std::str::from_utf8(raw).map_or_else(|_| Claimed::default(), peek_unverified)
}

/// The text a dead-list entry keeps of a rejected job: the job itself when it is UTF-8 and not
/// oversized, else a lossy (U+FFFD for bad bytes) preview of its first 4 KiB.
pub(crate) fn dead_text(raw: &[u8]) -> String {
    if raw.len() <= MAX_JOB_BYTES
        && let Ok(text) = std::str::from_utf8(raw)
    {
        return text.to_owned();
    }
    String::from_utf8_lossy(&raw[..raw.len().min(DEAD_PREVIEW_BYTES)]).into_owned()
}

/// Reads the claimed id, kind and attempt of a job without checking its signature.
pub(crate) fn peek_unverified(wire: &str) -> Claimed {
    #[derive(Deserialize)]
    struct Outer {
        envelope: Option<Value>,
    }
    let Some(envelope) = serde_json::from_str::<Outer>(wire)
        .ok()
        .and_then(|outer| outer.envelope)
    else {
        return Claimed::default();
    };
    let text = |field: &str| {
        envelope
            .get(field)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(MAX_ID_LEN).collect::<String>())
    };
    Claimed {
        id: text("id"),
        kind: text("kind"),
        attempt: envelope
            .get("attempt")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
    }
}

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::new(&[byte; 32]).unwrap()
    }

    fn sample() -> Envelope {
        Envelope::new(
            JobId::random(),
            "notify",
            serde_json::json!({"to": "a@example.com", "n": 1.5}),
        )
    }

    #[test]
    fn seal_then_open_round_trips() {
        let envelope = sample();
        let wire = key(1).seal(&envelope).unwrap();
        assert_eq!(key(1).open(&wire).unwrap(), envelope);
    }

    #[test]
    fn another_key_is_rejected() {
        let wire = key(1).seal(&sample()).unwrap();
        assert!(matches!(
            key(2).open(&wire),
            Err(EnvelopeError::BadSignature)
        ));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let wire = key(1).seal(&sample()).unwrap();
        let tampered = wire.replace("a@example.com", "b@example.com");
        assert!(matches!(
            key(1).open(&tampered),
            Err(EnvelopeError::BadSignature)
        ));
    }

    #[test]
    fn reformatted_envelope_is_rejected() {
        let wire = key(1).seal(&sample()).unwrap();
        let spaced = wire.replace(r#""kind":"#, r#""kind": "#);
        assert!(matches!(
            key(1).open(&spaced),
            Err(EnvelopeError::BadSignature)
        ));
    }

    #[test]
    fn unsigned_and_garbage_are_rejected() {
        let envelope = serde_json::to_string(&sample()).unwrap();
        let unsigned = format!(r#"{{"envelope":{envelope}}}"#);
        assert!(matches!(
            key(1).open(&unsigned),
            Err(EnvelopeError::Unsigned)
        ));
        assert!(matches!(
            key(1).open("not json"),
            Err(EnvelopeError::Unparsable(_))
        ));
        assert!(matches!(
            key(1).open(r#"{"sig":"x"}"#),
            Err(EnvelopeError::Unparsable(_))
        ));
        assert!(matches!(
            key(1).open(r#"{"envelope":{},"sig":"%%%"}"#),
            Err(EnvelopeError::BadSignature)
        ));
    }

    #[test]
    fn signed_but_wrong_version_is_rejected() {
        let mut envelope = sample();
        envelope.v = 2;
        let wire = key(1).seal(&envelope).unwrap();
        assert!(matches!(
            key(1).open(&wire),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn short_keys_and_bad_ids_are_refused() {
        assert!(matches!(
            SigningKey::new(b"short"),
            Err(EnvelopeError::KeyTooShort)
        ));
        assert!(JobId::new("").is_err());
        assert!(JobId::new("a\nb").is_err());
        assert!(JobId::new("x".repeat(201)).is_err());
        assert_eq!(JobId::new("order-42").unwrap().as_str(), "order-42");
        assert_eq!(format!("{:?}", key(1)), "SigningKey(***)");
    }

    #[test]
    fn unreadable_bytes_are_rejected_with_a_reason() {
        let wire = key(1).seal(&sample()).unwrap();
        let (envelope, text) = key(1).open_bytes(wire.clone().into_bytes()).unwrap();
        assert_eq!(text, wire);
        assert_eq!(envelope.kind, "notify");
        assert!(matches!(
            key(1).open_bytes(vec![0xff, 0xfe]),
            Err(EnvelopeError::NotUtf8(_))
        ));
        let huge = vec![b' '; MAX_JOB_BYTES + 1];
        assert!(matches!(
            key(1).open_bytes(huge.clone()),
            Err(EnvelopeError::Oversized { .. })
        ));
        assert_eq!(dead_text(&huge).len(), DEAD_PREVIEW_BYTES);
        assert_eq!(dead_text(&[0xff, b'a']), "\u{fffd}a");
        let too_big = Envelope::new(
            JobId::random(),
            "notify",
            serde_json::json!({ "x": "y".repeat(MAX_JOB_BYTES) }),
        );
        assert!(matches!(
            key(1).seal(&too_big),
            Err(EnvelopeError::Oversized { .. })
        ));
    }

    #[test]
    fn peek_reads_claims_of_forged_jobs() {
        let wire = key(1).seal(&sample()).unwrap();
        let claimed = peek_unverified(&wire);
        assert_eq!(claimed.kind.as_deref(), Some("notify"));
        assert_eq!(claimed.attempt, Some(0));
        assert!(peek_unverified("junk").id.is_none());
    }
}
