//! The worker's reports to transcription-api, JSON bodies of its internal routes (scope
//! `transcriptions:report`): [`ResultReport`] for `PUT /internal/transcriptions/{id}/result`
//! (the transcriber), [`NotificationReport`] for `PUT /internal/transcriptions/{id}/notification`
//! (the notifier). Both are internally tagged by `status`.

use serde::{Deserialize, Serialize};

/// Longest `error` of a [`ResultReport::Failed`] and `reason` of a
/// [`NotificationReport::Failed`] transcription-api accepts, in bytes.
pub const MAX_REASON_BYTES: usize = 4096;

/// A worker report on one transcription, by `status`: `{"status": "processing"}`,
/// `{"status": "completed", "transcript": "…"}` or `{"status": "failed", "error": "…"}`.
///
/// transcription-api moves the record `queued → processing → completed | failed`; repeating the
/// current state is accepted, changing a final result is refused (409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ResultReport {
    /// The worker took the job and is working on it.
    Processing,
    /// The transcription is done.
    Completed {
        /// The transcript (may be empty; no control characters but tab, line feed and carriage
        /// return).
        transcript: String,
    },
    /// The audio can never be transcribed.
    Failed {
        /// What the owner reads; at most 4096 bytes.
        #[cfg_attr(
            feature = "openapi",
            schema(example = "the audio could not be downloaded (http_status)")
        )]
        error: String,
    },
}

/// What became of the e-mail telling the owner about the result, by `status`:
/// `{"status": "sent"}` or `{"status": "failed", "reason": "…"}`. Both are final; repeating the
/// state is accepted, changing it is refused (409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum NotificationReport {
    /// The mail server accepted the message (or it was written to the outbox).
    Sent,
    /// The message can never be delivered.
    Failed {
        /// Why, as the notifier saw it; shown to the owner. At most 4096 bytes.
        #[cfg_attr(feature = "openapi", schema(example = "550 5.1.1 mailbox unavailable"))]
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The bodies as transcription-api reads them, written out.
    #[test]
    fn reports_serialize_as_the_contract_says() {
        assert_eq!(MAX_REASON_BYTES, 4096);
        assert_eq!(
            serde_json::to_value(ResultReport::Processing).unwrap(),
            json!({"status": "processing"})
        );
        assert_eq!(
            serde_json::to_value(ResultReport::Completed {
                transcript: "hi".into()
            })
            .unwrap(),
            json!({"status": "completed", "transcript": "hi"})
        );
        assert_eq!(
            serde_json::to_value(ResultReport::Failed { error: "x".into() }).unwrap(),
            json!({"status": "failed", "error": "x"})
        );
    }

    #[test]
    fn notification_reports_serialize_as_the_contract_says() {
        assert_eq!(
            serde_json::to_value(NotificationReport::Sent).unwrap(),
            json!({"status": "sent"})
        );
        assert_eq!(
            serde_json::to_value(NotificationReport::Failed {
                reason: "550 no such user".into()
            })
            .unwrap(),
            json!({"status": "failed", "reason": "550 no such user"})
        );
    }

    #[test]
    fn reports_parse_back() {
        for report in [
            ResultReport::Processing,
            ResultReport::Completed {
                transcript: "line\none".into(),
            },
            ResultReport::Failed { error: "x".into() },
        ] {
            let json = serde_json::to_string(&report).unwrap();
            assert_eq!(serde_json::from_str::<ResultReport>(&json).unwrap(), report);
        }
        let failed: NotificationReport =
            serde_json::from_str(r#"{"status":"failed","reason":"r"}"#).unwrap();
        assert_eq!(failed, NotificationReport::Failed { reason: "r".into() });
        assert!(serde_json::from_str::<NotificationReport>(r#"{"status":"pending"}"#).is_err());
    }
}
