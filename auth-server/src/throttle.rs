//! Brute-force protection for the password grant: failure counters per account and per
//! source address with exponential lock-out, kept in the store so they survive a restart and
//! are shared by every auth-server instance.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::model::{
    LockRule, LoginAttempt, Release, ReleasedAttempt, ThrottleKey, normalize_username,
};
use crate::store::{Store, StoreError};

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

    /// [`ThrottlePolicy::lock_for`] as the store applies it: the cap is `max_lock` or 20
    /// doublings of `base_lock`, whichever is shorter, reached after `max_doublings`.
    pub fn lock_rule(&self, threshold: i64) -> LockRule {
        let base_secs = secs(self.base_lock);
        let max_secs = secs(self.max_lock).min(base_secs.saturating_mul(1 << 20));
        let max_doublings = (0..20)
            .find(|d| base_secs.saturating_mul(1 << d) >= max_secs)
            .unwrap_or(20);
        LockRule {
            threshold,
            base_secs,
            max_secs,
            max_doublings,
        }
    }
}

/// Counts failed logins and answers whether an attempt may proceed.
///
/// Check and count are one step: [`LoginThrottle::reserve`] counts the attempt as a failure
/// before the password is verified, so N parallel guesses against a threshold L get at most L
/// verifications (RFC 6749 §10.10 asks the server to make password guessing expensive). A
/// success gives the reservation back ([`LoginThrottle::succeeded`]); a failure keeps it.
pub struct LoginThrottle {
    store: Arc<dyn Store>,
    policy: ThrottlePolicy,
    clock: Arc<dyn Clock>,
}

/// An attempt counted on the account (and address) keys, awaiting its outcome.
#[derive(Debug)]
#[must_use = "a permit is settled by `succeeded` or `failed`"]
pub struct LoginPermit {
    account: (String, i64),
    address: Option<(String, i64)>,
}

/// The answer to [`LoginThrottle::reserve`].
#[derive(Debug)]
pub enum Admission {
    /// Verify the password, then settle the permit.
    Allowed(LoginPermit),
    /// Locked out: retry after this many seconds (≥ 1).
    Locked { retry_after: u64 },
}

/// The throttle key of an account: its RFC 8265 form, so every spelling of one name shares
/// one counter. A name RFC 8265 refuses (no account can have it) is throttled like any unknown
/// name under a prefix of its own, keyed by the SHA-256 of its trimmed lowercase form: such
/// "names" are often passwords typed into the wrong field, and keys appear in security logs.
fn account_key(username: &str) -> String {
    match normalize_username(username) {
        Ok(normalized) => format!("account:{normalized}"),
        Err(_) => {
            let digest = aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                username.trim().to_lowercase().as_bytes(),
            );
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            format!("account-invalid:{hex}")
        }
    }
}

fn address_key(ip: IpAddr) -> String {
    format!("address:{ip}")
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl LoginThrottle {
    /// A throttle counting in `store`, reading the time from `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        policy: ThrottlePolicy,
        clock: Arc<dyn Clock>,
    ) -> LoginThrottle {
        LoginThrottle {
            store,
            policy,
            clock,
        }
    }

    /// Now, in Unix seconds.
    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// Counts this attempt on the account and the address in one atomic store operation,
    /// unless one of them is locked out.
    ///
    /// Locks are kept in whole seconds and hold through their last second (`locked_until` ≥ the
    /// current second), so a lock lasts at least its configured length, never less.
    pub async fn reserve(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Admission, StoreError> {
        let mut keys = vec![ThrottleKey {
            key: account_key(username),
            rule: self.policy.lock_rule(self.policy.account_threshold),
        }];
        if let Some(ip) = ip {
            keys.push(ThrottleKey {
                key: address_key(ip),
                rule: self.policy.lock_rule(self.policy.address_threshold),
            });
        }
        let asked_at = self.now();
        let window_start_after = asked_at.saturating_sub(secs(self.policy.window));
        match self
            .store
            .reserve_login_attempt(&keys, asked_at, window_start_after)
            .await?
        {
            // Counted from the answer, not the request: the store may have queued it a while.
            LoginAttempt::Locked { until } => Ok(Admission::Locked {
                retry_after: u64::try_from(until - self.now()).unwrap_or(1).max(1),
            }),
            LoginAttempt::Allowed { numbers } => {
                let mut reserved = keys.into_iter().map(|k| k.key).zip(numbers);
                let account = reserved
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("no account reservation".to_owned()))?;
                Ok(Admission::Allowed(LoginPermit {
                    account,
                    address: reserved.next(),
                }))
            }
        }
    }

    /// The attempt failed: it stays counted. Logs the lock-outs it caused.
    pub fn failed(&self, permit: LoginPermit) {
        let kinds = [
            ("account", self.policy.account_threshold),
            ("address", self.policy.address_threshold),
        ];
        for ((key, failures), (kind, threshold)) in std::iter::once(permit.account)
            .chain(permit.address)
            .zip(kinds)
        {
            if let Some(lock) = self.policy.lock_for(failures, threshold) {
                metrics::counter!("oauth_login_lockouts_total", "key" => kind).increment(1);
                tracing::warn!(target: "security", key, failures, lock_secs = lock.as_secs(), "login locked out");
            }
        }
    }

    /// The attempt was never verified (the hashing pool was full): take it back everywhere.
    pub async fn cancel(&self, permit: LoginPermit) -> Result<(), StoreError> {
        self.release(&permit, Release::One).await
    }

    /// A successful login clears the account's failures up to this attempt, and takes back
    /// this attempt only from the address (one attacker with one valid account must not reset
    /// the counter of the address they guess from). One statement for both.
    pub async fn succeeded(&self, permit: LoginPermit) -> Result<(), StoreError> {
        self.release(&permit, Release::UpTo).await
    }

    async fn release(&self, permit: &LoginPermit, account: Release) -> Result<(), StoreError> {
        let mut attempts = vec![ReleasedAttempt {
            key: &permit.account.0,
            number: permit.account.1,
            release: account,
            threshold: self.policy.account_threshold,
        }];
        if let Some((key, number)) = &permit.address {
            attempts.push(ReleasedAttempt {
                key,
                number: *number,
                release: Release::One,
                threshold: self.policy.address_threshold,
            });
        }
        self.store.release_login_attempts(&attempts).await
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

    /// The store computes locks from [`LockRule`] as `base << d` below `max_doublings` and
    /// `max_secs` from there on; that must be [`ThrottlePolicy::lock_for`] exactly.
    #[test]
    fn lock_rule_matches_lock_for() {
        let policies = [
            ThrottlePolicy::default(),
            ThrottlePolicy {
                base_lock: Duration::from_secs(1),
                max_lock: Duration::from_secs(10 * 365 * 86_400),
                ..ThrottlePolicy::default()
            },
            ThrottlePolicy {
                base_lock: Duration::from_secs(600),
                max_lock: Duration::from_secs(60),
                ..ThrottlePolicy::default()
            },
        ];
        for policy in policies {
            let rule = policy.lock_rule(5);
            for failures in 0..60 {
                let by_rule = if failures < rule.threshold {
                    None
                } else if failures - rule.threshold >= rule.max_doublings {
                    Some(rule.max_secs)
                } else {
                    Some(rule.base_secs << (failures - rule.threshold))
                };
                assert_eq!(
                    by_rule,
                    policy.lock_for(failures, 5).map(secs),
                    "{policy:?} at {failures}"
                );
            }
        }
    }

    #[test]
    fn account_keys_use_the_rfc_8265_form() {
        assert_eq!(
            account_key(" Jose\u{301}@Example.com"),
            account_key("jos\u{e9}@example.com")
        );
        let invalid = account_key("a b@example.com");
        assert!(invalid.starts_with("account-invalid:"), "{invalid}");
        assert!(!invalid.contains("example"), "{invalid}");
        assert_eq!(invalid, account_key(" A B@example.com "));
    }
}
