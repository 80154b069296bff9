//! Command-line flags with environment fallbacks, validated once into [`ServerConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use plumbing::cli::{LogFormat, secret};
use secrecy::SecretString;

use crate::clock::{Clock, SystemClock};
use crate::grants::checkpoint::Checkpoints;
use crate::model::KeyAlgorithm;
use crate::sealed::SealError;

pub use crate::sealed::SystemSecrets;
pub use crate::throttle::ThrottlePolicy;

/// Default prefix of a deployment's Redis keys.
pub const DEFAULT_REDIS_PREFIX: &str = "transcribe";

/// Default SQLite database of the auth server.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/auth-server.db";

/// The file holding the client-secret pepper in the keys directory of versions before
/// migration 0005 (`KEYS_DIR`, an import source only; beside it each key's `<kid>.pem`).
pub const LEGACY_PEPPER_FILE: &str = crate::secrets::PEPPER_NAME;

/// Flags shared by `serve` and the admin commands.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// `sqlite:PATH` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// Secrets that encrypt the signing keys and the client-secret pepper in the database:
    /// comma-separated, each ≥ 32 bytes; the first encrypts, every one decrypts.
    #[arg(long, env = "AUTH_SECRETS", hide_env_values = true, global = true, value_parser = secret)]
    pub secrets: Option<SecretString>,
    /// File of the secrets instead: one per line, blank lines ignored.
    #[arg(long, env = "AUTH_SECRETS_FILE", global = true)]
    pub secrets_file: Option<PathBuf>,
    /// Import source only: the keys directory of an earlier version (`<kid>.pem`,
    /// `client-secret-pepper`), read once by the migration that moves them into the database.
    #[arg(long, env = "KEYS_DIR", default_value = "keys", global = true)]
    pub keys_dir: PathBuf,
    /// Import source only: the pepper an earlier version was given (≥ 32 bytes); refused if
    /// the database holds another.
    #[arg(long, env = "CLIENT_SECRET_PEPPER", hide_env_values = true, global = true, value_parser = secret)]
    pub client_secret_pepper: Option<SecretString>,
    /// Redis for the shared access-token deny-list (optional).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,
    /// Prefix of this deployment's Redis keys.
    #[arg(long, env = "QUEUE_PREFIX", default_value = DEFAULT_REDIS_PREFIX, global = true)]
    pub queue_prefix: String,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// `AUTH_SECRETS` or the secrets of `AUTH_SECRETS_FILE`; `None` when neither is given.
    pub fn system_secrets(&self) -> Result<Option<SystemSecrets>, ServerConfigError> {
        match (&self.secrets, &self.secrets_file) {
            (Some(_), Some(_)) => Err(ServerConfigError::TwoSecretSources),
            (Some(list), None) => SystemSecrets::from_list(list)
                .map(Some)
                .map_err(ServerConfigError::Secrets),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    ServerConfigError::SecretsFile(path.display().to_string(), err.to_string())
                })?;
                SystemSecrets::from_lines(&SecretString::from(text))
                    .map(Some)
                    .map_err(|err| {
                        ServerConfigError::SecretsFile(path.display().to_string(), err.to_string())
                    })
            }
            (None, None) => Ok(None),
        }
    }
}

/// Flags of `auth-server serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// `iss` of issued tokens and base of the metadata URLs; default `http://<bind address>`.
    #[arg(long, env = "AUTH_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` of issued access tokens.
    #[arg(long, env = "TOKEN_AUDIENCE", default_value = "transcription-api")]
    pub audience: String,
    /// Access-token lifetime: seconds, or a number with s/m/h/d.
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "900", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// Algorithm of the key that signs access tokens: ES256 (when unset), RS256 or EdDSA.
    #[arg(long, env = "ACCESS_TOKEN_ALG", value_parser = parse_key_algorithm)]
    pub access_token_alg: Option<KeyAlgorithm>,
    /// Refresh-token lifetime (each rotation starts a new one).
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,
    /// How long a just-rotated refresh token may be presented again for the same successor
    /// (concurrent refreshes); at most 5 s.
    #[arg(long, env = "REFRESH_GRACE", default_value = "2s", value_parser = parse_duration)]
    pub refresh_grace: Duration,
    /// Threads hashing and verifying passwords (argon2id), each holding 19 MiB for life;
    /// default: the number of cores.
    #[arg(long, env = "PASSWORD_HASH_THREADS")]
    pub password_hash_threads: Option<usize>,
    /// Logins that may wait for a hashing thread before new ones get 503.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 64)]
    pub password_hash_queue: usize,
    /// First lock-out after repeated failed logins; doubles with each further failure.
    #[arg(long, env = "LOGIN_LOCKOUT", default_value = "60s", value_parser = parse_duration)]
    pub login_lockout: Duration,
    /// Failed logins per account before it is locked out.
    #[arg(long, env = "LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: i64,
    /// Failed logins per source address before it is locked out.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 20)]
    pub login_max_failures_per_address: i64,
    /// A browser session ends after this long without an authorization request.
    #[arg(long, env = "SESSION_IDLE_TTL", default_value = "30m", value_parser = parse_duration)]
    pub session_idle_ttl: Duration,
    /// A browser session ends this long after its login, however busy.
    #[arg(long, env = "SESSION_TTL", default_value = "10h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// Directory of operator templates (`login.html`, `style.css`, …): each file there
    /// replaces the built-in one of the same name; all are checked at start.
    #[arg(long, env = "TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    pub no_migrate: bool,
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub database_url: String,
    /// `AUTH_SECRETS`: opens the database's sealed contents ([`crate::sealed`]); required.
    pub secrets: Option<SystemSecrets>,
    /// Import source only: the keys directory of an earlier version.
    pub keys_dir: PathBuf,
    /// Import source only: the pepper an earlier version was given.
    pub client_secret_pepper: Option<SecretString>,
    pub issuer: Option<String>,
    pub audience: String,
    pub access_token_ttl: Duration,
    /// `ACCESS_TOKEN_ALG`: whose active key signs access tokens. `None` (unset) means
    /// [`DEFAULT_ACCESS_TOKEN_ALG`](crate::keys::DEFAULT_ACCESS_TOKEN_ALG), ES256, except that a
    /// database whose active access-token key has another algorithm then refuses to start
    /// ([`KeyError::AccessAlgorithmUnset`](crate::keys::KeyError::AccessAlgorithmUnset)).
    pub access_token_alg: Option<KeyAlgorithm>,
    pub refresh_token_ttl: Duration,
    pub refresh_grace: Duration,
    /// Browser sessions: the idle and the absolute lifetime.
    pub session_idle_ttl: Duration,
    pub session_ttl: Duration,
    pub password_hash_threads: usize,
    pub password_hash_queue: usize,
    pub throttle: ThrottlePolicy,
    /// Redis URL and key prefix for the deny-list mirror.
    pub redis: Option<(String, String)>,
    pub migrate: bool,
    /// Operator templates replacing the built-in pages file by file ([`crate::pages`]);
    /// `None`: the built-in pages.
    pub templates_dir: Option<PathBuf>,
    /// The process's Prometheus recorder, rendered at `GET /metrics` (404 when `None`).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// What the time rules read as now (see [`crate::clock`]): the system clock, or a test's.
    pub clock: Arc<dyn Clock>,
    /// What access tokens are stamped with: `iat`, `nbf`, `exp` and the issue time in the
    /// `jti` that revocation cutoffs compare with. The system clock: resource servers check
    /// these against their own clocks and cutoffs are wall-clock times. A test sets it only to
    /// place a token's issue time exactly against a cutoff.
    pub token_clock: Arc<dyn Clock>,
    /// Where a test holds grants to drive races ([`crate::grants::checkpoint`]); `None`.
    pub checkpoints: Option<Arc<dyn Checkpoints>>,
    /// How often the running server re-reads its signing keys
    /// ([`KEY_RELOAD_INTERVAL`](crate::KEY_RELOAD_INTERVAL), 10 s).
    pub key_reload_interval: Duration,
}

impl ServerConfig {
    pub fn from_args(
        common: &CommonArgs,
        serve: &ServeArgs,
    ) -> Result<ServerConfig, ServerConfigError> {
        // RFC 8414 §2: an https URL (http for development) with no query or fragment.
        if let Some(issuer) = &serve.issuer
            && (!(issuer.starts_with("https://") || issuer.starts_with("http://"))
                || issuer.ends_with('/')
                || issuer.contains(['?', '#', ' '])
                || !is_plain_path(crate::issuer::issuer_path(issuer)))
        {
            return Err(ServerConfigError::Issuer(issuer.clone()));
        }
        if serve.audience.trim().is_empty() {
            return Err(ServerConfigError::Audience);
        }
        if serve.access_token_ttl.is_zero()
            || serve.refresh_token_ttl.is_zero()
            || serve.session_idle_ttl.is_zero()
            || serve.session_ttl.is_zero()
        {
            return Err(ServerConfigError::Ttl);
        }
        if serve.refresh_grace > Duration::from_secs(5) {
            return Err(ServerConfigError::Grace);
        }
        if serve.login_lockout.is_zero()
            || serve.login_max_failures < 1
            || serve.login_max_failures_per_address < 1
        {
            return Err(ServerConfigError::Lockout);
        }
        Ok(ServerConfig {
            bind: serve.bind,
            database_url: common.database_url.clone(),
            secrets: common.system_secrets()?,
            keys_dir: common.keys_dir.clone(),
            client_secret_pepper: common.client_secret_pepper.clone(),
            issuer: serve.issuer.clone(),
            audience: serve.audience.clone(),
            access_token_ttl: serve.access_token_ttl,
            access_token_alg: serve.access_token_alg,
            refresh_token_ttl: serve.refresh_token_ttl,
            refresh_grace: serve.refresh_grace,
            session_idle_ttl: serve.session_idle_ttl,
            session_ttl: serve.session_ttl,
            password_hash_threads: serve
                .password_hash_threads
                .unwrap_or_else(default_hash_threads)
                .max(1),
            password_hash_queue: serve.password_hash_queue,
            throttle: ThrottlePolicy {
                base_lock: serve.login_lockout,
                account_threshold: serve.login_max_failures,
                address_threshold: serve.login_max_failures_per_address,
                ..ThrottlePolicy::default()
            },
            redis: common
                .redis_url
                .clone()
                .map(|url| (url, common.queue_prefix.clone())),
            migrate: !serve.no_migrate,
            templates_dir: serve.templates_dir.clone(),
            metrics: None,
            clock: Arc::new(SystemClock),
            token_clock: Arc::new(SystemClock),
            checkpoints: None,
            key_reload_interval: crate::KEY_RELOAD_INTERVAL,
        })
    }

    /// Defaults for a server on `bind` with the given database and legacy keys directory, and
    /// a new random `AUTH_SECRETS`: set [`ServerConfig::secrets`] for a database that is to
    /// outlive the process or be shared.
    pub fn new(bind: SocketAddr, database_url: &str, keys_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            bind,
            database_url: database_url.to_owned(),
            secrets: SystemSecrets::generate().ok(),
            keys_dir,
            client_secret_pepper: None,
            issuer: None,
            audience: "transcription-api".to_owned(),
            access_token_ttl: Duration::from_secs(900),
            access_token_alg: None,
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            refresh_grace: Duration::from_secs(2),
            session_idle_ttl: Duration::from_secs(30 * 60),
            session_ttl: Duration::from_secs(10 * 3600),
            password_hash_threads: default_hash_threads(),
            password_hash_queue: 64,
            throttle: ThrottlePolicy::default(),
            redis: None,
            migrate: true,
            templates_dir: None,
            metrics: None,
            clock: Arc::new(SystemClock),
            token_clock: Arc::new(SystemClock),
            checkpoints: None,
            key_reload_interval: crate::KEY_RELOAD_INTERVAL,
        }
    }
}

fn default_hash_threads() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    #[error(
        "AUTH_ISSUER must be an http(s) URL without a trailing slash, query or fragment, got `{0}`"
    )]
    Issuer(String),
    #[error("TOKEN_AUDIENCE must not be empty")]
    Audience,
    #[error(
        "ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL, SESSION_IDLE_TTL and SESSION_TTL must be positive"
    )]
    Ttl,
    #[error("REFRESH_GRACE must be at most 5 s")]
    Grace,
    #[error("LOGIN_LOCKOUT must be positive")]
    Lockout,
    #[error("AUTH_SECRETS: {0}")]
    Secrets(SealError),
    #[error("AUTH_SECRETS_FILE {0}: {1}")]
    SecretsFile(String, String),
    #[error("give AUTH_SECRETS or AUTH_SECRETS_FILE, not both")]
    TwoSecretSources,
}

/// A URL path of `/`-separated segments of unreserved characters (RFC 3986 §2.3), or empty.
fn is_plain_path(path: &str) -> bool {
    path.is_empty()
        || path.split('/').skip(1).all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        })
}

/// Parses a JWS `alg` value a signing key can have: `ES256`, `RS256` or `EdDSA`, exactly.
pub fn parse_key_algorithm(value: &str) -> Result<KeyAlgorithm, String> {
    KeyAlgorithm::parse(value).ok_or_else(|| "expected ES256, RS256 or EdDSA".to_owned())
}

/// Parses `900`, `900s`, `15m`, `1h` or `30d`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not a duration"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{value}`: unit must be s, m, h or d")),
    };
    number
        .checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{value}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn issuers() {
        use clap::Parser;
        let check = |issuer: &str| {
            let flags = Flags::parse_from(["auth-server", "--issuer", issuer]);
            ServerConfig::from_args(&flags.common, &flags.serve).map(|_| ())
        };
        for good in [
            "https://auth.example.com",
            "http://127.0.0.1:8080",
            "https://example.com/tenant",
            "https://example.com/a/b-c.d",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://example.com",
            "https://example.com/",
            "https://example.com/a?b",
            "https://example.com#x",
            "https://example.com//a",
            "https://example.com/{tenant}",
            "https://example.com/a b",
        ] {
            assert!(
                matches!(check(bad), Err(ServerConfigError::Issuer(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("900").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(2_592_000)
        );
        for bad in ["", "m", "1.5h", "10w", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
