//! Signing keys: generate, import, rotate, retire (the `next → active → retired` life cycle of
//! [`crate::keys`]). Running servers pick changes up at their next key reload.

use std::path::Path;

use super::{Admin, AdminError, Rotation};
use crate::keys;
use crate::model::{KeyAlgorithm, KeyRecord, KeyState};

impl Admin {
    /// Generates a key (needs `AUTH_SECRETS`): published as `next`, or made `active` when no
    /// key is active.
    pub async fn generate_key(&self, alg: KeyAlgorithm) -> Result<KeyRecord, AdminError> {
        let sealed = self.sealed()?;
        let has_active = self
            .list_keys()
            .await?
            .iter()
            .any(|key| key.state == KeyState::Active);
        let state = if has_active {
            KeyState::Next
        } else {
            KeyState::Active
        };
        Ok(keys::generate_key(self.store.as_ref(), &sealed.secrets, alg, state).await?)
    }

    /// Adds an existing PKCS#8 private key (the text of a `-----BEGIN PRIVATE KEY-----` PEM)
    /// as the `next` key (needs `AUTH_SECRETS`). Its algorithm is `alg`, or the one the key is
    /// for (ES256 on P-256, RS256 with RSA ≥ 2048 bits, EdDSA on Ed25519) when `None`. Errors
    /// name the key by `origin` (the file it came from).
    pub async fn import_key(
        &self,
        pem: &[u8],
        alg: Option<KeyAlgorithm>,
        origin: &Path,
    ) -> Result<KeyRecord, AdminError> {
        let sealed = self.sealed()?;
        Ok(keys::import_pem(self.store.as_ref(), &sealed.secrets, pem, origin, alg).await?)
    }

    /// Every key, newest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, AdminError> {
        Ok(self.store.list_keys().await?)
    }

    /// Promotes the oldest next key to active (generating one if none exists), retires the
    /// active key and generates a new next key of `alg` (needs `AUTH_SECRETS`).
    pub async fn rotate_keys(&self, alg: KeyAlgorithm) -> Result<Rotation, AdminError> {
        let sealed = self.sealed()?;
        Ok(keys::rotate(self.store.as_ref(), &sealed.secrets, alg).await?)
    }

    /// Retires a key that is not the active one ([`KeyError::RetireActive`](super::KeyError::RetireActive)
    /// otherwise); it stays published until the tokens it signed have expired.
    pub async fn retire_key(&self, kid: &str) -> Result<(), AdminError> {
        Ok(keys::retire(self.store.as_ref(), kid).await?)
    }
}
