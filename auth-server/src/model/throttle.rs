//! The login lock-out counters in the form the store applies atomically; the policy they come
//! from is [`ThrottlePolicy`](crate::config::ThrottlePolicy).

/// The lock-out rule of one throttle key, in the form the store applies atomically: after
/// `failures` ≥ `threshold` failures (in-flight attempts included) the key locks for
/// `base_secs · 2^(failures − threshold)` seconds, at most `max_secs` (reached after
/// `max_doublings` doublings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRule {
    pub threshold: i64,
    pub base_secs: i64,
    pub max_secs: i64,
    /// The fewest doublings of `base_secs` that reach `max_secs` (≤ 20).
    pub max_doublings: i64,
}

/// One key to reserve a login attempt on.
#[derive(Debug, Clone)]
pub struct ThrottleKey {
    /// `account:<RFC 8265 form>` or `address:<ip>`.
    pub key: String,
    pub rule: LockRule,
}

/// The answer to [`ThrottleStore::reserve_login_attempt`](crate::store::ThrottleStore::reserve_login_attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted as a failure on every key until released; `numbers[i]` is this attempt's
    /// number in the current window of `keys[i]`.
    Allowed { numbers: Vec<i64> },
    /// Some key is locked (nothing was counted) until this unix second, inclusive.
    Locked { until: i64 },
}

/// How much of a reserved attempt
/// [`ThrottleStore::release_login_attempts`](crate::store::ThrottleStore::release_login_attempts)
/// takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// This attempt only (a success from an address, or a refused request).
    One,
    /// This attempt and every one counted before it (a success clears the account).
    UpTo,
}

/// Attempt `number` of `key` (from [`LoginAttempt::Allowed`]), to give back.
#[derive(Debug, Clone, Copy)]
pub struct ReleasedAttempt<'a> {
    pub key: &'a str,
    pub number: i64,
    pub release: Release,
    pub threshold: i64,
}
