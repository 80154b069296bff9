//! The real services the worker talks to, in-process over real HTTP on 127.0.0.1:0: the auth
//! server (`test_support::auth`) and transcription-api, which verifies every token against
//! the auth server's JWKS and queues its jobs on the queue the test hands it (the one the
//! worker under test consumes).
//!
//! Two clients, as an operator registers them: the submitter (`transcriptions:write` and
//! `transcriptions:read`) creates records through `POST /transcriptions` and reads them with
//! `GET /transcriptions/{id}`; the worker holds only `transcriptions:report`.

use std::sync::Arc;
use std::time::Duration;

use job_queue::{Envelope, ReliableQueue};
use secrecy::SecretString;
use serde_json::Value;
use test_support::auth::TestAuthServer;
use test_support::db::TestDb;
use token_guard::StaticRevocationList;
use transcription_api::config::ApiConfig;
use transcription_api::{Application, Services};
use uuid::Uuid;
use worker::api::ClientCredentials;

use crate::helpers::TempDir;

pub const WRITE: &str = "transcriptions:write";
pub const READ: &str = "transcriptions:read";
pub const REPORT: &str = "transcriptions:report";

/// The auth server and transcription-api; both stop when this is dropped.
pub struct TestPlatform {
    /// Stops the API first (fields drop in order).
    _shutdown: tokio::sync::oneshot::Sender<()>,
    pub auth: TestAuthServer,
    /// transcription-api's base URL, `http://127.0.0.1:<port>`.
    pub api_url: String,
    /// The worker's client: id and secret, allowed `transcriptions:report` only.
    pub worker_client: (String, String),
    /// The API's deny-list (what it reads from Redis in production): a test revokes tokens
    /// here as an operator's `auth-server tokens revoke` would.
    pub revocations: Arc<StaticRevocationList>,
    /// A `transcriptions:write transcriptions:read` token of the submitting client.
    submitter_token: String,
    http: reqwest::Client,
    /// The API's PostgreSQL database, when it has one (dropped after the API).
    _database: Option<TestDb>,
    /// The API's SQLite database otherwise.
    _dir: TempDir,
}

impl TestPlatform {
    /// Both services, the API on a fresh SQLite database, queuing on `queue`.
    pub async fn start(queue: Arc<dyn ReliableQueue>) -> TestPlatform {
        TestPlatform::start_with(queue, None).await
    }

    /// Both services, the API on a fresh PostgreSQL database; `None` (with a message) when
    /// PostgreSQL is unreachable outside CI, a failure in CI.
    pub async fn start_on_postgres(queue: Arc<dyn ReliableQueue>) -> Option<TestPlatform> {
        let database = TestDb::postgres().await?;
        Some(TestPlatform::start_with(queue, Some(database)).await)
    }

    async fn start_with(queue: Arc<dyn ReliableQueue>, database: Option<TestDb>) -> TestPlatform {
        let auth = TestAuthServer::spawn().await;
        let dir = TempDir::new("api");
        let database_url = match &database {
            Some(db) => db.url.clone(),
            None => format!("sqlite:{}", dir.path().join("api.db").display()),
        };
        // The API's defaults, outbox relay included (it finishes an enqueue that missed its
        // time in the request).
        let config = ApiConfig::new("127.0.0.1:0".parse().unwrap(), database_url, &auth.issuer);
        let revocations = Arc::new(StaticRevocationList::new());
        let app = Application::build(
            config,
            Services {
                queue,
                revocations: revocations.clone(),
                metrics: None,
            },
        )
        .await
        .expect("transcription-api starts");
        let api_url = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let worker_client = auth.client(&[REPORT]).await;
        let submitter_token = auth.token(&[WRITE, READ]).await;
        TestPlatform {
            _shutdown: tx,
            auth,
            api_url,
            worker_client,
            revocations,
            submitter_token,
            http: reqwest::Client::new(),
            _database: database,
            _dir: dir,
        }
    }

    /// The worker's client_credentials settings, as `worker transcriber` builds them from
    /// `--auth-url`, `--worker-client-id` and `--worker-client-secret`.
    pub fn worker_credentials(&self) -> ClientCredentials {
        self.credentials_of(&self.worker_client, REPORT)
    }

    /// Settings for `client` asking for `scope`.
    pub fn credentials_of(&self, client: &(String, String), scope: &str) -> ClientCredentials {
        ClientCredentials {
            token_url: self.token_url(),
            client_id: client.0.clone(),
            client_secret: SecretString::from(client.1.clone()),
            scope: scope.into(),
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.auth.base)
    }

    /// `POST /transcriptions` as the submitter; the new record's id (asserting 202).
    pub async fn submit(&self, email: &str, audio_url: &str) -> Uuid {
        let response = self
            .http
            .post(format!("{}/transcriptions", self.api_url))
            .bearer_auth(&self.submitter_token)
            .json(&serde_json::json!({"email": email, "audio_url": audio_url}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "submission refused: {body}");
        assert_eq!(body["status"], "queued");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// `GET /transcriptions/{id}` as the submitter (asserting 200).
    pub async fn transcription(&self, id: Uuid) -> Value {
        let response = self
            .http
            .get(format!("{}/transcriptions/{id}", self.api_url))
            .bearer_auth(&self.submitter_token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The `status` of record `id`.
    pub async fn status(&self, id: Uuid) -> String {
        self.transcription(id).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Every record of the submitter, newest first (`GET /transcriptions`, up to 100).
    pub async fn transcriptions(&self) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/transcriptions?limit=100", self.api_url))
            .bearer_auth(&self.submitter_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["data"].as_array().unwrap().clone()
    }

    /// `PUT /internal/transcriptions/{id}/result` with `token`: the API's answer status.
    pub async fn report_with(&self, token: &str, id: Uuid, report: &Value) -> u16 {
        self.http
            .put(format!(
                "{}/internal/transcriptions/{id}/result",
                self.api_url
            ))
            .bearer_auth(token)
            .json(report)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Takes the next job of `queue_name` off `queue` (as an inspecting worker would) and returns
/// its envelope; the job stays held by that inspector.
pub async fn take_job(queue: &dyn ReliableQueue, queue_name: &str) -> Envelope {
    queue
        .heartbeat("inspector", Duration::from_secs(60))
        .await
        .unwrap();
    queue
        .reserve(queue_name, "inspector", Duration::ZERO)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no job on `{queue_name}`"))
        .envelope
}
