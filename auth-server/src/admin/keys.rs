//! Signing keys: generate, import, rotate, retire (the `next → active → retired` life cycle of
//! [`crate::keys`], one chain per algorithm). Running servers pick changes up at their next key
//! reload.

use std::path::Path;

use super::{Admin, AdminError, Rotation};
use crate::keys;
use crate::model::{KeyAlgorithm, KeyRecord, KeyState};

impl Admin {
    /// Generates a key of `alg` (needs `AUTH_SECRETS`): published as `next`, or made `active`
    /// when no key of `alg` is active.
    pub async fn generate_key(&self, alg: KeyAlgorithm) -> Result<KeyRecord, AdminError> {
        let sealed = self.sealed()?;
        let has_active = self
            .list_keys()
            .await?
            .iter()
            .any(|key| key.alg == alg && key.state == KeyState::Active);
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

    /// Rotates the chain of `alg` (needs `AUTH_SECRETS`): promotes its oldest next key to
    /// active (generating one if none exists), retires its active key and generates a new next
    /// key of `alg`. Keys of other algorithms are untouched.
    pub async fn rotate_keys(&self, alg: KeyAlgorithm) -> Result<Rotation, AdminError> {
        let sealed = self.sealed()?;
        Ok(keys::rotate(self.store.as_ref(), &sealed.secrets, alg).await?)
    }

    /// Rotates every algorithm's chain that has an active key, as [`Admin::rotate_keys`] does
    /// one (needs `AUTH_SECRETS`); with no active key at all, starts the ES256 chain. One
    /// [`Rotation`] per chain, in the order ES256, RS256, EdDSA.
    pub async fn rotate_all_keys(&self) -> Result<Vec<Rotation>, AdminError> {
        let sealed = self.sealed()?;
        Ok(keys::rotate_all(self.store.as_ref(), &sealed.secrets).await?)
    }

    /// Retires a key that is not active ([`KeyError::RetireActive`](super::KeyError::RetireActive)
    /// otherwise); it stays published until the tokens it signed have expired.
    pub async fn retire_key(&self, kid: &str) -> Result<(), AdminError> {
        Ok(keys::retire(self.store.as_ref(), kid).await?)
    }
}
