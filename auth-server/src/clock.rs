//! The time the server's time rules read: the refresh-token grace window and expiry
//! (RFC 6749 §6, OAuth 2.0 Security BCP §4.14), the client cache's 2 s life
//! ([`CLIENT_CACHE_TTL`](crate::grants::client_auth::CLIENT_CACHE_TTL)), the login lock-out
//! windows and how long a retired signing key stays published (access-token TTL + 60 s). A [`ServerConfig`](crate::config::ServerConfig) holds one [`Clock`]; servers use
//! [`SystemClock`], and tests use [`ManualClock`] to step over a rule's boundary instead of
//! waiting for it, so no test depends on how fast the machine runs.
//!
//! Token `iat`/`exp` claims and the issue time in a token's `jti` are not read from this clock
//! but from [`ServerConfig::token_clock`](crate::config::ServerConfig::token_clock), the system
//! clock in servers: resource servers check them against their own clocks, and revocation
//! cutoffs are wall-clock times.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time (UTC).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, as the time rules see it.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until it is moved: for tests of time rules.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    /// A clock stopped at the system's current time.
    pub fn starting_now() -> ManualClock {
        ManualClock {
            now: Mutex::new(OffsetDateTime::now_utc()),
        }
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::starting_now();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(2_001));
        assert_eq!(clock.now() - start, Duration::from_millis(2_001));
    }
}
