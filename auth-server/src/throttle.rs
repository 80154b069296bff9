//! Brute-force protection for the password grant: failure counters per account and per
//! source address with exponential lock-out, kept in the store so they survive a restart and
//! are shared by every auth-server instance.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::store::{Store, StoreError, normalize_email};

/// Lock-out policy.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures per account before it locks.
    pub account_threshold: i64,
    /// Failures per source address before it locks (higher: addresses are shared).
    pub address_threshold: i64,
    /// First lock-out; each further failure doubles it.
    pub base_lock: Duration,
    pub max_lock: Duration,
    /// Failures older than this no longer count.
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            account_threshold: 5,
            address_threshold: 20,
            base_lock: Duration::from_secs(60),
            max_lock: Duration::from_secs(15 * 60),
            window: Duration::from_secs(60 * 60),
        }
    }
}

impl ThrottlePolicy {
    /// Lock duration after `failures` failures against `threshold`, if any.
    pub fn lock_for(&self, failures: i64, threshold: i64) -> Option<Duration> {
        if failures < threshold {
            return None;
        }
        let doublings = u32::try_from(failures - threshold)
            .unwrap_or(u32::MAX)
            .min(20);
        Some(
            self.base_lock
                .saturating_mul(2u32.saturating_pow(doublings))
                .min(self.max_lock),
        )
    }
}

/// Counts failed logins and answers whether an attempt may proceed.
pub struct LoginThrottle {
    store: Arc<dyn Store>,
    policy: ThrottlePolicy,
}

fn account_key(username: &str) -> String {
    format!("account:{}", normalize_email(username))
}

fn address_key(ip: IpAddr) -> String {
    format!("address:{ip}")
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl LoginThrottle {
    pub fn new(store: Arc<dyn Store>, policy: ThrottlePolicy) -> LoginThrottle {
        LoginThrottle { store, policy }
    }

    /// Seconds to wait when the account or the address is locked out.
    ///
    /// Locks are kept in whole seconds and hold through their last second (`locked_until` ≥ the
    /// current second), so a lock lasts at least its configured length, never less.
    pub async fn retry_after(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<u64>, StoreError> {
        let now = now();
        // A lock set during second `now - 1` until `now` still holds in second `now`.
        let held_at = now - 1;
        let mut until = self
            .store
            .login_locked_until(&account_key(username), held_at)
            .await?;
        if let Some(ip) = ip {
            until = until.max(
                self.store
                    .login_locked_until(&address_key(ip), held_at)
                    .await?,
            );
        }
        Ok(until.map(|until| u64::try_from(until - now).unwrap_or(1).max(1)))
    }

    /// Records a failed attempt and locks the account or address past its threshold.
    pub async fn record_failure(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let mut keys = vec![(account_key(username), self.policy.account_threshold)];
        if let Some(ip) = ip {
            keys.push((address_key(ip), self.policy.address_threshold));
        }
        let now = now();
        let window_start_after =
            now - i64::try_from(self.policy.window.as_secs()).unwrap_or(i64::MAX);
        for (key, threshold) in keys {
            let failures = self
                .store
                .record_login_failure(&key, now, window_start_after)
                .await?;
            if let Some(lock) = self.policy.lock_for(failures, threshold) {
                let until = now.saturating_add(i64::try_from(lock.as_secs()).unwrap_or(i64::MAX));
                self.store.lock_login(&key, until).await?;
                tracing::warn!(target: "security", key, failures, lock_secs = lock.as_secs(), "login locked out");
            }
        }
        Ok(())
    }

    /// A successful login clears the account's failures (not the address's: one attacker with
    /// one valid account must not reset the counter of the address they guess from).
    pub async fn record_success(&self, username: &str) -> Result<(), StoreError> {
        self.store
            .clear_login_failures(&account_key(username))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_doubles_and_caps() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.lock_for(4, 5), None);
        assert_eq!(policy.lock_for(5, 5), Some(Duration::from_secs(60)));
        assert_eq!(policy.lock_for(6, 5), Some(Duration::from_secs(120)));
        assert_eq!(policy.lock_for(8, 5), Some(Duration::from_secs(480)));
        assert_eq!(policy.lock_for(50, 5), Some(Duration::from_secs(900)));
    }
}
