//! Revocation records beyond single tokens: a "not valid before" cutoff per user or client.

pub use token_guard::CutoffKind;

/// A "not valid before" cutoff: tokens of `subject` issued at or before `not_before_ms` are
/// revoked (see `token_guard::is_revoked_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCutoff {
    pub kind: CutoffKind,
    /// A user id (`sub`) or a client id.
    pub subject: String,
    /// Unix milliseconds.
    pub not_before_ms: i64,
    /// Unix seconds; past it every covered token has expired.
    pub expires_at: i64,
}
