//! Parsing and validation of request bodies: a submission arrives as JSON or as a form, with the
//! seed's field name `audio-file-url` accepted for `audio_url`; every problem is collected per
//! field ([`FieldErrors`]) so the client sees all of them at once.

use std::collections::BTreeMap;

use contracts::report::{MAX_REASON_BYTES, NotificationReport, ResultReport};
use serde::Serialize;
use serde_json::Value;

/// Longest accepted `audio_url`, in bytes (README, transcription-api "Routes").
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted e-mail address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Messages per field name, serialized as `{"email": ["…"], …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    pub fn single(field: &str, message: impl Into<String>) -> FieldErrors {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        errors
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages of `field`.
    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0.get(field).map(Vec::as_slice)
    }
}

/// Why a body could not be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Neither `application/json` nor `application/x-www-form-urlencoded`.
    UnsupportedMediaType,
    /// Not parseable at all (broken JSON, not an object, not UTF-8).
    Malformed(String),
    /// Parsed, but fields are missing or wrong.
    Invalid(FieldErrors),
}

/// A valid submission, normalised (trimmed; URL in its canonical form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub email: String,
    pub audio_url: String,
}

/// Body formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Form,
}

fn format_of(content_type: Option<&str>) -> Option<Format> {
    let essence = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(Format::Json),
        "application/x-www-form-urlencoded" => Some(Format::Form),
        _ => None,
    }
}

/// The raw fields of a body: name → the values given (a form may repeat a name).
type Fields = BTreeMap<String, Vec<Value>>;

fn read_fields(content_type: Option<&str>, body: &[u8]) -> Result<Fields, BodyError> {
    let format = format_of(content_type).ok_or(BodyError::UnsupportedMediaType)?;
    let text = std::str::from_utf8(body)
        .map_err(|_| BodyError::Malformed("the body is not valid UTF-8".into()))?;
    let mut fields = Fields::new();
    match format {
        Format::Json => {
            let value: JsonBody = serde_json::from_str(text)
                .map_err(|e| BodyError::Malformed(format!("the body is not valid JSON: {e}")))?;
            let JsonBody::Object(members) = value else {
                return Err(BodyError::Malformed(
                    "the body must be a JSON object".into(),
                ));
            };
            // Every member is kept, so a repeated name is seen (and refused) as a form's is.
            for (name, value) in members {
                fields.entry(name).or_default().push(value);
            }
        }
        Format::Form => {
            for (name, value) in form_urlencoded::parse(text.as_bytes()) {
                if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                    return Err(BodyError::Malformed(
                        "the form is not valid percent-encoded UTF-8".into(),
                    ));
                }
                fields
                    .entry(name.into_owned())
                    .or_default()
                    .push(Value::String(value.into_owned()));
            }
        }
    }
    Ok(fields)
}

/// A JSON body as written: an object's members in order with repeated names kept (RFC 8259
/// §4 leaves their meaning to the reader, and `serde_json::Value` silently keeps the last one),
/// or any other value.
enum JsonBody {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> serde::Deserialize<'de> for JsonBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;

        impl<'de> serde::de::Visitor<'de> for BodyVisitor {
            type Value = JsonBody;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonBody, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(JsonBody::Object(members))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<JsonBody, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(JsonBody::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<JsonBody, E> {
                Ok(JsonBody::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<JsonBody, E> {
                Ok(JsonBody::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<JsonBody, E> {
                Ok(JsonBody::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<JsonBody, E> {
                Ok(JsonBody::Other)
            }

            fn visit_str<E>(self, _: &str) -> Result<JsonBody, E> {
                Ok(JsonBody::Other)
            }

            fn visit_unit<E>(self) -> Result<JsonBody, E> {
                Ok(JsonBody::Other)
            }
        }

        deserializer.deserialize_any(BodyVisitor)
    }
}

/// Records every field given more than once that has no message yet: a repeated name is
/// ambiguous whatever the field (the reader cannot know which value the sender meant).
fn refuse_repeated(fields: &Fields, errors: &mut FieldErrors) {
    for (name, values) in fields {
        if values.len() > 1 && errors.get(name).is_none() {
            errors.add(
                name,
                format!("The {} field must be given once.", name.replace('_', " ")),
            );
        }
    }
}

/// Takes the one string value of `name` (or of its `alias`), recording what is wrong with it.
fn string_field(
    fields: &Fields,
    name: &str,
    alias: Option<&str>,
    errors: &mut FieldErrors,
) -> Option<String> {
    let values = fields
        .get(name)
        .or_else(|| alias.and_then(|alias| fields.get(alias)));
    let label = name.replace('_', " ");
    match values.map(Vec::as_slice) {
        None | Some([]) | Some([Value::Null]) => {
            errors.add(name, format!("The {label} field is required."));
            None
        }
        Some([Value::String(value)]) => {
            let value = value.trim();
            if value.is_empty() {
                errors.add(name, format!("The {label} field is required."));
                None
            } else {
                Some(value.to_owned())
            }
        }
        Some([_]) => {
            errors.add(name, format!("The {label} field must be a string."));
            None
        }
        Some(_) => {
            // Already named by `refuse_repeated` when it was the one repeated.
            if errors.get(name).is_none() {
                errors.add(name, format!("The {label} field must be given once."));
            }
            None
        }
    }
}

/// Parses and validates a `POST /transcriptions` body.
pub fn submission(content_type: Option<&str>, body: &[u8]) -> Result<Submission, BodyError> {
    let fields = read_fields(content_type, body)?;
    let mut errors = FieldErrors::default();
    refuse_repeated(&fields, &mut errors);
    let email = string_field(&fields, "email", None, &mut errors);
    if fields.contains_key("audio_url") && fields.contains_key("audio-file-url") {
        errors.add(
            "audio_url",
            "Give either audio_url or audio-file-url, not both.",
        );
    }
    let audio_url = string_field(&fields, "audio_url", Some("audio-file-url"), &mut errors);
    if let Some(email) = &email
        && let Err(message) = check_email(email)
    {
        errors.add("email", message);
    }
    let audio_url = match audio_url.map(|url| check_audio_url(&url)) {
        Some(Ok(url)) => Some(url),
        Some(Err(message)) => {
            errors.add("audio_url", message);
            None
        }
        None => None,
    };
    match (email, audio_url) {
        (Some(email), Some(audio_url)) if errors.is_empty() => Ok(Submission { email, audio_url }),
        _ => Err(BodyError::Invalid(errors)),
    }
}

/// Longest accepted local part (RFC 5321 §4.5.3.1.1).
pub const MAX_EMAIL_LOCAL_LEN: usize = 64;

/// An address the notifier can mail: what the mailer's own parser (`lettre::Address`, RFC 5322
/// §3.4.1 dot-atoms, so no leading, trailing or doubled dot) accepts, in ASCII (a non-ASCII
/// address needs the SMTP server's SMTPUTF8 extension, RFC 6531, which no relay promises), no
/// domain literal, and within the RFC 5321 §4.5.3.1 limits (local part ≤ 64, path ≤ 254).
pub fn check_email(email: &str) -> Result<(), String> {
    const MESSAGE: &str = "The email field must be a valid email address.";
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "The email field must not be longer than {MAX_EMAIL_LEN} characters."
        ));
    }
    if !email.is_ascii() {
        return Err("The email field must be an ASCII email address.".into());
    }
    if email
        .rsplit_once('@')
        .is_some_and(|(local, _)| local.len() > MAX_EMAIL_LOCAL_LEN)
    {
        return Err(format!(
            "The part of the email before @ must not be longer than {MAX_EMAIL_LOCAL_LEN} characters."
        ));
    }
    let address: lettre::Address = email.parse().map_err(|_| MESSAGE.to_owned())?;
    // Host names only (RFC 1035 letters, digits, hyphens): the parser also takes domain
    // literals such as `[192.0.2.1]`, which are no customer's mailbox.
    let domain_ok = address.domain().split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if domain_ok {
        Ok(())
    } else {
        Err(MESSAGE.into())
    }
}

/// An absolute http(s) URL with a host and no credentials, at most 2048 bytes; returns its
/// canonical form.
pub fn check_audio_url(url: &str) -> Result<String, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "The audio url field must not be longer than {MAX_URL_LEN} bytes."
        ));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("The audio url field must not contain spaces or control characters.".into());
    }
    let parsed = url::Url::parse(url)
        .map_err(|_| "The audio url field must be a valid absolute URL.".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("The audio url field must be an http or https URL.".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("The audio url field must name a host.".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("The audio url field must not contain credentials.".into());
    }
    let canonical = parsed.to_string();
    if canonical.len() > MAX_URL_LEN {
        return Err(format!(
            "The audio url field must not be longer than {MAX_URL_LEN} bytes."
        ));
    }
    Ok(canonical)
}

/// An `Idempotency-Key`: 1–255 visible ASCII characters.
pub fn check_idempotency_key(key: &[u8]) -> Result<String, String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!(
            "The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters."
        ));
    }
    if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err("The Idempotency-Key header must be visible ASCII characters.".into());
    }
    Ok(String::from_utf8_lossy(key).into_owned())
}

/// A worker's report ([`ResultReport`]): `{"status": "processing"}`,
/// `{"status": "completed", "transcript": …}` or `{"status": "failed", "error": …}`, read field
/// by field so that every problem gets its own message.
pub fn report(content_type: Option<&str>, body: &[u8]) -> Result<ResultReport, BodyError> {
    if format_of(content_type) != Some(Format::Json) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let fields = read_fields(content_type, body)?;
    let mut errors = FieldErrors::default();
    refuse_repeated(&fields, &mut errors);
    let status = string_field(&fields, "status", None, &mut errors);
    let report = match status.as_deref() {
        None => None,
        Some("processing") => Some(ResultReport::Processing),
        Some("completed") => {
            let transcript = match fields.get("transcript").map(Vec::as_slice) {
                Some([Value::String(text)]) if !is_storable_text(text) => {
                    errors.add(
                        "transcript",
                        "The transcript field must not contain control characters.",
                    );
                    None
                }
                Some([Value::String(text)]) => Some(text.clone()),
                Some([_, _, ..]) => None, // named by `refuse_repeated`
                _ => {
                    errors.add(
                        "transcript",
                        "The transcript field is required when status is completed.",
                    );
                    None
                }
            };
            transcript.map(|transcript| ResultReport::Completed { transcript })
        }
        Some("failed") => {
            bounded_text(&fields, "error", &mut errors).map(|error| ResultReport::Failed { error })
        }
        Some(_) => {
            errors.add(
                "status",
                "The status field must be one of processing, completed, failed.",
            );
            None
        }
    };
    match report {
        Some(report) if errors.is_empty() => Ok(report),
        _ => Err(BodyError::Invalid(errors)),
    }
}

/// The notifier's report on the e-mail ([`NotificationReport`]): `{"status": "sent"}` or
/// `{"status": "failed", "reason": …}` (`pending` is where a record starts, never a report).
pub fn notification(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<NotificationReport, BodyError> {
    if format_of(content_type) != Some(Format::Json) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let fields = read_fields(content_type, body)?;
    let mut errors = FieldErrors::default();
    refuse_repeated(&fields, &mut errors);
    let status = string_field(&fields, "status", None, &mut errors);
    let notification = match status.as_deref() {
        None => None,
        Some("sent") => Some(NotificationReport::Sent),
        Some("failed") => bounded_text(&fields, "reason", &mut errors)
            .map(|reason| NotificationReport::Failed { reason }),
        Some(_) => {
            errors.add("status", "The status field must be one of sent, failed.");
            None
        }
    };
    match notification {
        Some(notification) if errors.is_empty() => Ok(notification),
        _ => Err(BodyError::Invalid(errors)),
    }
}

/// A required string field of at most [`MAX_REASON_BYTES`] bytes that the store can keep as
/// sent (an error or a reason text); `None` with the field's error otherwise.
fn bounded_text(fields: &Fields, name: &str, errors: &mut FieldErrors) -> Option<String> {
    let text = string_field(fields, name, None, errors)?;
    if text.len() > MAX_REASON_BYTES {
        errors.add(
            name,
            format!("The {name} field must not be longer than {MAX_REASON_BYTES} bytes."),
        );
        return None;
    }
    if !is_storable_text(&text) {
        errors.add(
            name,
            format!("The {name} field must not contain control characters."),
        );
        return None;
    }
    Some(text)
}

/// Text that every store keeps as sent: no control characters but tab, line feed and carriage
/// return (PostgreSQL's `text` cannot hold NUL at all).
fn is_storable_text(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=utf-8");

    fn invalid(result: Result<Submission, BodyError>) -> FieldErrors {
        match result {
            Err(BodyError::Invalid(errors)) => errors,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn json_and_form_with_either_field_name_are_accepted() {
        let expected = Submission {
            email: "a@example.com".into(),
            audio_url: "https://cdn.example.com/a.mp3".into(),
        };
        for (content_type, body) in [
            (
                JSON,
                r#"{"email":"a@example.com","audio_url":"https://cdn.example.com/a.mp3"}"#,
            ),
            (
                JSON,
                r#"{"email":" a@example.com ","audio-file-url":"https://cdn.example.com/a.mp3"}"#,
            ),
            (
                FORM,
                "email=a%40example.com&audio_url=https%3A%2F%2Fcdn.example.com%2Fa.mp3",
            ),
            (
                FORM,
                "email=a@example.com&audio-file-url=https://cdn.example.com/a.mp3",
            ),
        ] {
            assert_eq!(
                submission(content_type, body.as_bytes()),
                Ok(expected.clone()),
                "{body}"
            );
        }
    }

    #[test]
    fn every_field_problem_is_reported_at_once() {
        let errors = invalid(submission(JSON, b"{}"));
        assert_eq!(
            errors.get("email").unwrap(),
            ["The email field is required."]
        );
        assert_eq!(
            errors.get("audio_url").unwrap(),
            ["The audio url field is required."]
        );
        let errors = invalid(submission(JSON, br#"{"email": 5, "audio_url": ["x"]}"#));
        assert_eq!(
            errors.get("email").unwrap(),
            ["The email field must be a string."]
        );
        assert_eq!(
            errors.get("audio_url").unwrap(),
            ["The audio url field must be a string."]
        );
        let errors = invalid(submission(FORM, b"email=a@example.com&email=b@example.com"));
        assert_eq!(
            errors.get("email").unwrap(),
            ["The email field must be given once."]
        );
    }

    #[test]
    fn emails_are_what_the_mailer_accepts() {
        for good in [
            "a@example.com",
            "first.last+tag@sub.example.co",
            "first.last+tag@sub.example.co.uk",
            "x@localhost",
            "o'neil@example.org",
            "o'brien@example.com",
        ] {
            assert!(good.parse::<lettre::Address>().is_ok(), "{good}");
            assert_eq!(check_email(good), Ok(()), "{good}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@@example.com",
            "a b@example.com",
            "a@-example.com",
            "a@example..com",
            "a@exa_mple.com",
            "ä@example.com",
            &long,
            // Refused by the mailer (RFC 5322 dot-atom): these used to get 202.
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a@[127.0.0.1]",
            "a@example.com.",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        let long_local = format!("{}@example.com", "a".repeat(MAX_EMAIL_LOCAL_LEN + 1));
        assert!(check_email(&long_local).unwrap_err().contains("64"));
        let fits = format!("{}@example.com", "a".repeat(MAX_EMAIL_LOCAL_LEN));
        assert_eq!(check_email(&fits), Ok(()));
    }

    #[test]
    fn a_field_given_twice_is_refused_in_json_as_in_a_form() {
        for (content_type, body, field) in [
            (
                JSON,
                r#"{"email":"first@example.com","email":"second@example.com","audio_url":"https://cdn.example.com/a.mp3"}"#,
                "email",
            ),
            (
                JSON,
                r#"{"email":"a@example.com","audio_url":"https://cdn.example.com/a.mp3","audio_url":"https://cdn.example.com/b.mp3"}"#,
                "audio_url",
            ),
            (
                JSON,
                r#"{"email":"a@example.com","audio-file-url":"https://cdn.example.com/a.mp3","audio-file-url":"https://cdn.example.com/a.mp3"}"#,
                "audio-file-url",
            ),
            (
                JSON,
                r#"{"email":"a@example.com","audio_url":"https://cdn.example.com/a.mp3","note":1,"note":2}"#,
                "note",
            ),
            (
                FORM,
                "email=first@example.com&email=second@example.com&audio_url=https://cdn.example.com/a.mp3",
                "email",
            ),
            (
                FORM,
                "email=a@example.com&audio_url=https://cdn.example.com/a.mp3&note=1&note=2",
                "note",
            ),
        ] {
            let errors = invalid(submission(content_type, body.as_bytes()));
            let label = field.replace('_', " ");
            assert_eq!(
                errors.get(field),
                Some(&[format!("The {label} field must be given once.")][..]),
                "{body}"
            );
        }
        for body in [
            r#"{"status":"processing","status":"failed"}"#,
            r#"{"status":"completed","transcript":"a","transcript":"b"}"#,
            r#"{"status":"failed","error":"a","error":"a"}"#,
        ] {
            let Err(BodyError::Invalid(errors)) = report(JSON, body.as_bytes()) else {
                panic!("{body} was accepted");
            };
            let repeated = ["status", "transcript", "error"]
                .into_iter()
                .filter(|field| body.matches(&format!("\"{field}\"")).count() > 1);
            for field in repeated {
                assert_eq!(
                    errors.get(field),
                    Some(&[format!("The {field} field must be given once.")][..]),
                    "{body}"
                );
            }
        }
        // Members of nested values and members with distinct names are not repeats.
        assert!(submission(JSON, br#"{"email":"a@example.com","audio_url":"https://cdn.example.com/a.mp3","x":{"y":1},"z":{"y":2}}"#).is_ok());
    }

    #[test]
    fn audio_urls_must_be_absolute_http_without_credentials() {
        assert_eq!(
            check_audio_url("HTTPS://Example.com/a b"),
            Err("The audio url field must not contain spaces or control characters.".into())
        );
        assert_eq!(
            check_audio_url("https://Example.COM/a.wav").unwrap(),
            "https://example.com/a.wav"
        );
        for bad in [
            "/relative/a.mp3",
            "ftp://example.com/a.mp3",
            "file:///etc/passwd",
            "https://user:pw@example.com/a.mp3",
            "http://",
            "javascript:alert(1)",
            "mailto:a@b.c",
        ] {
            assert!(check_audio_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_audio_url(&long).unwrap_err().contains("2048"));
        let fits = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert!(check_audio_url(&fits).is_ok());
    }

    #[test]
    fn unparseable_bodies_are_not_field_errors() {
        assert_eq!(
            submission(None, b"{}"),
            Err(BodyError::UnsupportedMediaType)
        );
        assert_eq!(
            submission(Some("text/plain"), b"{}"),
            Err(BodyError::UnsupportedMediaType)
        );
        assert!(matches!(
            submission(JSON, b"{\"email\":"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            submission(JSON, b"[1,2]"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            submission(JSON, b"\xff\xfe"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            submission(FORM, b"email=%FF"),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert_eq!(check_idempotency_key(b"order-42").unwrap(), "order-42");
        for bad in [
            &b""[..],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
            &[b'k'; 256],
        ] {
            assert!(check_idempotency_key(bad).is_err());
        }
    }

    #[test]
    fn reports_parse_per_status() {
        assert_eq!(
            report(JSON, br#"{"status":"processing"}"#),
            Ok(ResultReport::Processing)
        );
        assert_eq!(
            report(JSON, br#"{"status":"completed","transcript":""}"#),
            Ok(ResultReport::Completed {
                transcript: String::new()
            })
        );
        assert_eq!(
            report(JSON, br#"{"status":"failed","error":"boom"}"#),
            Ok(ResultReport::Failed {
                error: "boom".into()
            })
        );
        assert!(matches!(
            report(JSON, br#"{"status":"completed"}"#),
            Err(BodyError::Invalid(_))
        ));
        assert!(matches!(
            report(JSON, br#"{"status":"done"}"#),
            Err(BodyError::Invalid(_))
        ));
        assert!(matches!(
            report(FORM, b"status=processing"),
            Err(BodyError::UnsupportedMediaType)
        ));
    }

    /// What the worker sends (the contract type's serde form) is what this reader accepts, and
    /// it reads back the same value.
    #[test]
    fn the_workers_serialized_reports_parse_to_the_same_value() {
        for sent in [
            ResultReport::Processing,
            ResultReport::Completed {
                transcript: "line one\nline\ttwo".into(),
            },
            ResultReport::Failed {
                error: "the audio could not be downloaded (timeout)".into(),
            },
        ] {
            let body = serde_json::to_vec(&sent).unwrap();
            assert_eq!(report(JSON, &body), Ok(sent));
        }
        for sent in [
            NotificationReport::Sent,
            NotificationReport::Failed {
                reason: "550 no such user".into(),
            },
        ] {
            let body = serde_json::to_vec(&sent).unwrap();
            assert_eq!(notification(JSON, &body), Ok(sent));
        }
    }

    #[test]
    fn reports_with_control_characters_are_refused() {
        for body in [
            r#"{"status":"completed","transcript":"a\u0000b"}"#,
            r#"{"status":"completed","transcript":"a\u001bb"}"#,
            r#"{"status":"failed","error":"a\u0000b"}"#,
            r#"{"status":"failed","error":"\u0085"}"#,
        ] {
            assert!(
                matches!(report(JSON, body.as_bytes()), Err(BodyError::Invalid(_))),
                "{body}"
            );
        }
        let multi_line = r#"{"status":"completed","transcript":"line one\nline\ttwo\r\n"}"#;
        assert!(report(JSON, multi_line.as_bytes()).is_ok());
    }
}
