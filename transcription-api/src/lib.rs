//! transcription-api: the gateway of the transcription platform (docs/architecture.md). Token
//! holders submit audio URLs and read their results; the worker reports back. Tokens are verified
//! locally by [`token_guard`]; jobs go out through the [`job_queue`] with an outbox
//! ([`submissions`]). [`Application::build`] binds a ready server; `main` is thin.

pub mod config;
pub mod http;
pub mod store;
pub mod submissions;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRef;
use job_queue::ReliableQueue;
use metrics_exporter_prometheus::PrometheusHandle;
use token_guard::{GuardError, RevocationList, TokenGuard};
use tokio::net::TcpListener;

use config::ApiConfig;
use store::StoreError;
use submissions::Transcriptions;

/// Shared state of the HTTP handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub guard: TokenGuard,
    pub transcriptions: Arc<Transcriptions>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

impl FromRef<AppState> for TokenGuard {
    fn from_ref(state: &AppState) -> TokenGuard {
        state.guard.clone()
    }
}

/// What the API runs on besides its own database: built by the caller, so the one-process
/// stack can share them.
pub struct Services {
    /// Where transcription jobs go.
    pub queue: Arc<dyn ReliableQueue>,
    /// Revoked token ids (the Redis deny-list in production).
    pub revocations: Arc<dyn RevocationList>,
    /// The installed Prometheus recorder, for `/metrics`.
    pub metrics: Option<PrometheusHandle>,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, ready-to-run API server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    extra: axum::Router,
}

impl Application {
    /// Connects and migrates the store, loads the auth server's keys and binds the listener.
    pub async fn build(config: ApiConfig, services: Services) -> Result<Application, StartError> {
        let store = store::connect(&config.database_url).await?;
        if config.migrate {
            store.migrate().await?;
        }
        let guard = TokenGuard::new(config.guard, services.revocations).await?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        Ok(Application {
            listener,
            state: AppState {
                guard,
                transcriptions: Arc::new(Transcriptions::new(store, services.queue, config.outbox)),
                metrics: services.metrics,
            },
            extra: axum::Router::new(),
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves `routes` next to the API's own (the one-process stack adds its sample audio).
    pub fn merge(mut self, routes: axum::Router) -> Self {
        self.extra = self.extra.merge(routes);
        self
    }

    /// The use cases (tests drive the outbox relay through it).
    pub fn transcriptions(&self) -> Arc<Transcriptions> {
        self.state.transcriptions.clone()
    }

    /// Serves, with the outbox relay running, until `shutdown` completes; then drains
    /// in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let relay = tokio::spawn(self.state.transcriptions.clone().run_relay(async move {
            let _ = stop_rx.changed().await;
        }));
        tracing::info!(addr = %self.local_addr(), "transcription-api listening");
        let app = http::router(self.state).merge(self.extra);
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = relay.await;
        result
    }
}

/// The services' one stop signal (SIGINT or SIGTERM), see [`plumbing::shutdown_signal`].
pub use plumbing::shutdown_signal;

/// What transcription-api records, for the process's recorder: no histogram buckets (its
/// request durations are summaries) and no descriptions.
pub const METRICS: plumbing::metrics::ServiceMetrics = plumbing::metrics::ServiceMetrics {
    histograms: &[],
    describe: || {},
};

/// The Prometheus recorder of this process, installed on first use with the API's [`METRICS`]
/// ([`plumbing::metrics::install_prometheus`]; a process has one). `None` (logged) when
/// another `metrics` recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    plumbing::metrics::install_prometheus(&[METRICS])
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok()
}
