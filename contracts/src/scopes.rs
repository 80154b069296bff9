//! The scope names of the transcription platform (RFC 6749 §3.3 scope tokens). The auth server
//! stores and grants them (registered by an operator or the one-process stack), transcription-api
//! demands one per route, and the worker asks for [`TRANSCRIPTIONS_REPORT`].

/// Submit transcriptions and retry failed ones (`POST /transcriptions`,
/// `POST /transcriptions/{id}/retry`).
pub const TRANSCRIPTIONS_WRITE: &str = "transcriptions:write";

/// Read one's own transcriptions (`GET /transcriptions`, `GET /transcriptions/{id}`).
pub const TRANSCRIPTIONS_READ: &str = "transcriptions:read";

/// Report results and e-mail outcomes (`PUT /internal/transcriptions/{id}/…`): the worker's
/// scope.
pub const TRANSCRIPTIONS_REPORT: &str = "transcriptions:report";

/// Every scope of the platform, each with the description it is registered with.
pub const ALL: [(&str, &str); 3] = [
    (TRANSCRIPTIONS_WRITE, "submit transcriptions"),
    (TRANSCRIPTIONS_READ, "read your transcriptions"),
    (
        TRANSCRIPTIONS_REPORT,
        "report transcription results (worker)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens already issued and clients already registered carry these names.
    #[test]
    fn scope_names_are_the_contract() {
        assert_eq!(TRANSCRIPTIONS_WRITE, "transcriptions:write");
        assert_eq!(TRANSCRIPTIONS_READ, "transcriptions:read");
        assert_eq!(TRANSCRIPTIONS_REPORT, "transcriptions:report");
        let names: Vec<&str> = ALL.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "transcriptions:write",
                "transcriptions:read",
                "transcriptions:report"
            ]
        );
    }
}
