//! The worker's client of transcription-api: `PUT /internal/transcriptions/{id}/result` (the
//! transcriber) and `PUT /internal/transcriptions/{id}/notification` (the notifier), with the
//! worker's own client_credentials access token, which [`TokenSource`] fetches from
//! the auth server (HTTP Basic client authentication) and caches until 30 s before expiry.
//! The bodies ([`ResultReport`], [`NotificationReport`]) and the token response
//! ([`TokenResponse`]) are the `contracts` types transcription-api and the auth server use.
//!
//! Every call has a deadline covering connect, request, response headers and the whole body
//! (`API_TIMEOUT_SECS`, default 30 s), so a server that accepts and never answers, or stalls
//! mid-body, fails the call as [`ApiError::Unavailable`] (retried with the job's back-off).

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::report::{NotificationReport, ResultReport};
use contracts::token::TokenResponse;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

/// A token is refreshed this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Default deadline of one call to the auth server or the API.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The worker's OAuth2 client.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The auth server's token endpoint, e.g. `http://auth:8080/oauth/token`.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Requested scope, [`TRANSCRIPTIONS_REPORT`](contracts::scopes::TRANSCRIPTIONS_REPORT).
    pub scope: String,
}

/// Why a call to the auth server or the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connection failure, timeout or 5xx: try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The auth server refused the worker's credentials (or answered nonsense).
    #[error("token endpoint: {0}")]
    Token(String),
    /// The API still answered 401 with a fresh token.
    #[error("transcription-api rejected the worker's token")]
    Unauthorized,
    /// 404: the API does not know the transcription.
    #[error("transcription-api does not know transcription {0}")]
    NotFound(Uuid),
    /// Another 4xx: the request itself is wrong.
    #[error("transcription-api rejected the report with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
}

impl ApiError {
    /// `true` when repeating the call cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ApiError::NotFound(_) | ApiError::Rejected { .. })
    }
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

/// Fetches and caches the worker's access token. Concurrent callers share one fetch.
pub struct TokenSource {
    http: reqwest::Client,
    credentials: ClientCredentials,
    cache: Mutex<Option<CachedToken>>,
    timeout: Duration,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(http: reqwest::Client, credentials: ClientCredentials) -> Self {
        TokenSource {
            http,
            credentials,
            cache: Mutex::new(None),
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Sets the deadline of one token request (the default is [`DEFAULT_CALL_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A valid access token: the cached one, or a fresh one.
    pub async fn token(&self) -> Result<SecretString, ApiError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Forgets the cached token (after the API answered 401).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(&self) -> Result<CachedToken, ApiError> {
        let creds = &self.credentials;
        let response = self
            .http
            .post(&creds.token_url)
            .basic_auth(
                form_encode(&creds.client_id),
                Some(form_encode(creds.client_secret.expose_secret())),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", creds.scope.as_str()),
            ])
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("token endpoint: {}", chain(&e))))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(ApiError::Unavailable(format!(
                "token endpoint answered HTTP {status}"
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ApiError::Token(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let body: TokenResponse = response.json().await.map_err(|e| {
            if e.is_timeout() {
                ApiError::Unavailable(format!("token endpoint: {}", chain(&e)))
            } else {
                ApiError::Token(format!("unreadable token response: {e}"))
            }
        })?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60));
        let usable = if lifetime > REFRESH_MARGIN * 2 {
            lifetime - REFRESH_MARGIN
        } else {
            lifetime / 2
        };
        tracing::debug!(lifetime = ?lifetime, "fetched an access token");
        Ok(CachedToken {
            token: SecretString::from(body.access_token),
            refresh_at: Instant::now() + usable,
        })
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-urlencoded before HTTP Basic.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// How the API took a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// 200/204.
    Accepted,
    /// 409: the transcription is already final; reporting again is a no-op.
    AlreadyFinal,
}

/// transcription-api's internal endpoint.
#[derive(Debug, Clone)]
pub struct TranscriptionApi {
    http: reqwest::Client,
    base_url: String,
    tokens: Arc<TokenSource>,
    timeout: Duration,
}

impl TranscriptionApi {
    /// `base_url` without the `/internal/…` path, e.g. `http://api:8081`.
    pub fn new(http: reqwest::Client, base_url: &str, tokens: Arc<TokenSource>) -> Self {
        TranscriptionApi {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            tokens,
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Sets the deadline of one report (the default is [`DEFAULT_CALL_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one result report; on 401 fetches a new token and tries once more.
    pub async fn report(&self, id: Uuid, report: &ResultReport) -> Result<ReportOutcome, ApiError> {
        self.put(id, "result", report).await
    }

    /// Reports the notification state of transcription `id` (409: a different final state
    /// was reported before).
    pub async fn report_notification(
        &self,
        id: Uuid,
        report: &NotificationReport,
    ) -> Result<ReportOutcome, ApiError> {
        self.put(id, "notification", report).await
    }

    /// `PUT /internal/transcriptions/{id}/{what}`; on 401 fetches a new token and tries once
    /// more.
    async fn put(
        &self,
        id: Uuid,
        what: &str,
        body: &impl Serialize,
    ) -> Result<ReportOutcome, ApiError> {
        let url = format!("{}/internal/transcriptions/{id}/{what}", self.base_url);
        let mut retried = false;
        loop {
            let token = self.tokens.token().await?;
            let response = self
                .http
                .put(&url)
                .bearer_auth(token.expose_secret())
                .json(body)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| ApiError::Unavailable(format!("transcription-api: {}", chain(&e))))?;
            let status = response.status();
            match status.as_u16() {
                200..=299 => return Ok(ReportOutcome::Accepted),
                409 => return Ok(ReportOutcome::AlreadyFinal),
                404 => return Err(ApiError::NotFound(id)),
                401 if !retried => {
                    self.tokens.invalidate().await;
                    retried = true;
                }
                401 => return Err(ApiError::Unauthorized),
                408 | 429 | 500..=599 => {
                    return Err(ApiError::Unavailable(format!(
                        "transcription-api answered HTTP {status}"
                    )));
                }
                code => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(ApiError::Rejected {
                        status: code,
                        body: body.chars().take(200).collect(),
                    });
                }
            }
        }
    }
}

/// The error and its sources on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
