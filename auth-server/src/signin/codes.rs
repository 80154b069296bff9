//! Authorization codes (RFC 6749 §4.1.2): 256 random bits, base64url, stored only as a keyed
//! hash, valid for [`CODE_TTL`], redeemable once.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::Clock;
use crate::keys::KeyError;
use crate::model::{AuthorizationCodeRecord, CodeRedemption};
use crate::secrets::SecretHasher;
use crate::store::{Store, StoreError};

/// How long a code can be redeemed (RFC 6749 §4.1.2 recommends at most 10 minutes; the code
/// goes from the browser to the client's back end at once).
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// How long a redeemed or expired code's row is kept, so that a second presentation is
/// recognised as a replay and revokes what the first one issued.
pub const CODE_REPLAY_WINDOW: Duration = Duration::from_secs(600);

/// 32 random bytes, base64url without padding (43 characters): codes, session ids.
pub fn random_token() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Crypto)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Issues and redeems codes.
pub struct AuthorizationCodes {
    store: Arc<dyn Store>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
}

impl AuthorizationCodes {
    pub fn new(store: Arc<dyn Store>, hasher: SecretHasher, clock: Arc<dyn Clock>) -> Self {
        AuthorizationCodes {
            store,
            hasher,
            clock,
        }
    }

    /// The stored form of a code.
    pub fn hash(&self, code: &str) -> Vec<u8> {
        self.hasher.hash(&format!("authorization-code:{code}"))
    }

    /// Stores `record` (its `code_hash` and `expires_at` are set here) under a new code and
    /// returns the code.
    pub async fn issue(&self, mut record: AuthorizationCodeRecord) -> Result<String, CodeError> {
        let code = random_token()?;
        record.code_hash = self.hash(&code);
        record.expires_at = self.clock.now().unix_timestamp() + CODE_TTL.as_secs() as i64;
        self.store.insert_authorization_code(&record).await?;
        Ok(code)
    }

    /// Marks the code used (atomically: one of two concurrent redemptions wins).
    pub async fn redeem(&self, code: &str) -> Result<CodeRedemption, StoreError> {
        self.store
            .redeem_authorization_code(&self.hash(code), self.clock.now().unix_timestamp())
            .await
    }
}

/// Issuing a code failed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}
