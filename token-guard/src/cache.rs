//! [`VerifiedCache`]: a bounded memory of tokens whose signature and claims already passed,
//! keyed by the SHA-256 of the token, so a repeated token costs a hash instead of a signature
//! check.
//!
//! Rules, so the answer is the one a full verification would give:
//! - an entry is used only before the token's `exp` (after it, the token is verified again,
//!   which still applies the leeway) and only while the key set it was verified with has not
//!   lost or changed a key;
//! - revocation is not cached: the guard checks the deny-list on every request, hit or miss;
//! - only fully accepted tokens are stored; when full, expired entries go first, then any one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::digest::{SHA256, digest};

use crate::Principal;

/// SHA-256 of a token.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn token_hash(token: &str) -> TokenHash {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    hash
}

struct Entry {
    principal: Arc<Principal>,
    /// JWKS generation the signature was checked under.
    generation: u64,
}

/// Verified tokens by hash, at most `capacity` of them.
pub(crate) struct VerifiedCache {
    capacity: usize,
    entries: RwLock<HashMap<TokenHash, Entry>>,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The principal of a token verified before, if that verification still stands at `now`
    /// (unix seconds) under JWKS `generation`.
    pub(crate) fn get(
        &self,
        hash: &TokenHash,
        now: u64,
        generation: u64,
    ) -> Option<Arc<Principal>> {
        if self.capacity == 0 {
            return None;
        }
        let stale = {
            let entries = match self.entries.read() {
                Ok(entries) => entries,
                Err(poisoned) => poisoned.into_inner(),
            };
            let entry = entries.get(hash)?;
            if now < entry.principal.exp && entry.generation == generation {
                return Some(entry.principal.clone());
            }
            true
        };
        if stale {
            self.remove(hash);
        }
        None
    }

    /// Remembers a token that passed every check at `now`.
    pub(crate) fn insert(
        &self,
        hash: TokenHash,
        principal: Arc<Principal>,
        now: u64,
        generation: u64,
    ) {
        if self.capacity == 0 || now >= principal.exp {
            return;
        }
        let mut entries = match self.entries.write() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        if entries.len() >= self.capacity && !entries.contains_key(&hash) {
            entries.retain(|_, e| now < e.principal.exp && e.generation == generation);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.keys().next().copied()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(
            hash,
            Entry {
                principal,
                generation,
            },
        );
    }

    pub(crate) fn remove(&self, hash: &TokenHash) {
        let mut entries = match self.entries.write() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.remove(hash);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(jti: &str, exp: u64) -> Arc<Principal> {
        Arc::new(Principal {
            sub: "s".into(),
            client_id: "c".into(),
            scopes: Default::default(),
            jti: jti.into(),
            exp,
            iat: 0,
        })
    }

    #[test]
    fn entries_end_at_exp_and_with_their_key_set() {
        let cache = VerifiedCache::new(10);
        let hash = token_hash("a.b.c");
        cache.insert(hash, principal("1", 100), 50, 0);
        assert!(cache.get(&hash, 99, 0).is_some());
        assert!(cache.get(&hash, 99, 1).is_none(), "key set changed");
        cache.insert(hash, principal("1", 100), 50, 0);
        assert!(cache.get(&hash, 100, 0).is_none(), "dropped at exp");
        assert_eq!(cache.len(), 0);
        cache.insert(hash, principal("1", 100), 100, 0);
        assert_eq!(cache.len(), 0, "an already expired token is not stored");
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let cache = VerifiedCache::new(3);
        for i in 0..10u64 {
            cache.insert(token_hash(&i.to_string()), principal("j", 1000 + i), 10, 0);
            assert!(cache.len() <= 3);
        }
        let newest = token_hash("9");
        assert!(cache.get(&newest, 11, 0).is_some());
        let disabled = VerifiedCache::new(0);
        disabled.insert(newest, principal("j", 1000), 10, 0);
        assert!(disabled.get(&newest, 11, 0).is_none());
    }
}
