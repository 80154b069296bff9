//! `TestApi`: a real auth server, the API bound to 127.0.0.1:0 with a fresh database and a
//! fresh embedded queue (or a given one), and an HTTP client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use job_queue::{QueueConfig, ReliableQueue, SigningKey, SqliteQueue};
use reqwest::StatusCode;
use serde_json::Value;
use test_support::auth::TestAuthServer;
use time::OffsetDateTime;
use token_guard::{RevocationList, StaticRevocationList};
use transcription_api::config::ApiConfig;
use transcription_api::store::{Notification, Status, Transcription};
use transcription_api::submissions::{OutboxConfig, Transcriptions};
use transcription_api::{Application, Services};
use uuid::Uuid;

pub const WRITE: &str = "transcriptions:write";
pub const READ: &str = "transcriptions:read";
pub const REPORT: &str = "transcriptions:report";

pub fn signing_key() -> SigningKey {
    SigningKey::new(b"transcription-api tests: 32+ bytes of key").unwrap()
}

/// How a test wants its API built.
pub struct Options {
    /// Default: a SQLite file in the test's directory.
    pub database_url: Option<String>,
    /// Default: an embedded SQLite queue in the test's directory.
    pub queue: Option<Arc<dyn ReliableQueue>>,
    pub revocations: Arc<dyn RevocationList>,
    pub outbox: OutboxConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            database_url: None,
            queue: None,
            revocations: Arc::new(StaticRevocationList::new()),
            outbox: OutboxConfig {
                // Tests run the relay by hand (`relay_once`).
                relay_interval: Duration::from_secs(3600),
                ..OutboxConfig::default()
            },
        }
    }
}

pub struct TestApi {
    pub auth: TestAuthServer,
    pub base: String,
    pub queue: Arc<dyn ReliableQueue>,
    pub transcriptions: Arc<Transcriptions>,
    pub http: reqwest::Client,
    dir: PathBuf,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestApi {
    pub async fn spawn() -> TestApi {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApi {
        let auth = TestAuthServer::spawn().await;
        let dir = std::env::temp_dir().join(format!("api-it-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let database_url = options
            .database_url
            .unwrap_or_else(|| format!("sqlite:{}", dir.join("api.db").display()));
        let queue = match options.queue {
            Some(queue) => queue,
            None => {
                let url = format!("sqlite:{}", dir.join("queue.db").display());
                let queue = SqliteQueue::connect(&url, signing_key(), QueueConfig::default())
                    .await
                    .unwrap();
                queue.migrate().await.unwrap();
                Arc::new(queue)
            }
        };
        let mut config = ApiConfig::new("127.0.0.1:0".parse().unwrap(), database_url, &auth.issuer);
        config.outbox = options.outbox;
        let app = Application::build(
            config,
            Services {
                queue: queue.clone(),
                revocations: options.revocations,
                metrics: transcription_api::prometheus(),
            },
        )
        .await
        .expect("the API starts");
        let base = format!("http://{}", app.local_addr());
        let transcriptions = app.transcriptions();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApi {
            auth,
            base,
            queue,
            transcriptions,
            http: reqwest::Client::new(),
            dir,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token of a new client allowed `scopes`.
    pub async fn token(&self, scopes: &[&str]) -> String {
        self.auth.token(scopes).await
    }

    /// `POST /transcriptions` with a JSON body.
    pub async fn submit(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/transcriptions"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Submits a valid transcription and returns its id (asserting 202).
    pub async fn create(&self, token: &str) -> Uuid {
        let response = self.submit(token, &sample_body()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `PUT /internal/transcriptions/{id}/result`.
    pub async fn report(&self, token: &str, id: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/internal/transcriptions/{id}/result")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

pub fn sample_body() -> Value {
    serde_json::json!({"email": "ada@example.com", "audio_url": "https://cdn.example.com/a.wav"})
}

/// A new `queued` record of `owner`, as the store receives it.
pub fn record(owner: &str) -> Transcription {
    let now = OffsetDateTime::now_utc();
    Transcription {
        id: Uuid::new_v4(),
        owner: owner.to_owned(),
        client_id: "client-1".to_owned(),
        email: "ada@example.com".to_owned(),
        audio_url: "https://cdn.example.com/a.wav".to_owned(),
        status: Status::Queued,
        transcript: None,
        error: None,
        notification: Notification::Pending,
        attempt: 1,
        created_at: now,
        updated_at: now,
    }
}
