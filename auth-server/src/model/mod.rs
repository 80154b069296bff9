//! The authorization server's records: what the store keeps and the admin layer, the grants
//! and the key ring pass around. Plain data with their invariants' documentation, no I/O; the
//! [`store`](crate::store) persists them, [`admin`](crate::admin) creates them by the rules.
//!
//! - [`client`]: scopes, grant types and client applications;
//! - [`user`]: end users of the password grant;
//! - [`key`]: signing-key metadata and the sealed private key;
//! - [`session`]: refresh-token families (sessions) and their tokens;
//! - [`signin`]: browser sessions, authorization codes and consents of sign-in for people;
//! - [`revocation`]: "not valid before" cutoffs of a user or client;
//! - [`throttle`]: the login lock-out counters as the store applies them.

pub mod client;
pub mod key;
pub mod revocation;
pub mod session;
pub mod signin;
pub mod throttle;
pub mod user;

pub use client::{Client, GrantType, IdTokenAlg, Scope};
pub use key::{KeyAlgorithm, KeyRecord, KeyState, StoredKey};
pub use revocation::{CutoffKind, SubjectCutoff};
pub use session::{Families, FamilyOwner, RefreshFamily, RefreshLookup, RefreshTokenRecord};
pub use signin::{AuthorizationCodeRecord, BrowserSession, CodeRedemption, Consent};
pub use throttle::{LockRule, LoginAttempt, Release, ReleasedAttempt, ThrottleKey};
pub use user::{User, normalize_username};
