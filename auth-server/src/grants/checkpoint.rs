//! Points where a grant can be held between the checks it made and the tokens it hands out, so
//! tests drive the races the grants are written to win in a fixed order instead of by timing
//! (docs/testing.md, "Rules the tests follow"): a user reset, disabled or deleted while their
//! password is verified, a login revoked while its refresh runs, a client disabled while a
//! grant holds its cached record. Servers run without any
//! ([`ServerConfig::checkpoints`](crate::config::ServerConfig::checkpoints) is `None`); the
//! integration tests install their `CheckpointGate` (`auth-server/tests/it/helpers.rs`).

use std::fmt;

use async_trait::async_trait;

/// Where a grant can be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// The password grant matched the password against the user record it read before the
    /// verification, and has not read that record again (nor issued anything).
    PasswordVerified,
    /// The refresh grant found the presented refresh token live and its user enabled, and
    /// signed the new access token, but has not rotated the refresh token (nor answered).
    RefreshChecked,
}

/// Called by the grants at each [`Checkpoint`]; a grant goes on when `reached` returns.
#[async_trait]
pub trait Checkpoints: Send + Sync + fmt::Debug {
    async fn reached(&self, checkpoint: Checkpoint);
}
