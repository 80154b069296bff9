//! First-start set-up of the one-process stack: the product's scopes, a demo client and user,
//! the worker's own client, and `data/demo-credentials.json` (mode 0600). Later starts read the
//! credentials back, so everything is reused until `--reset`.

use std::path::Path;

use auth_server::passwords::PasswordPool;
use auth_server::secrets::{SecretHasher, generate_client_secret};
use auth_server::store::{Client, GrantType, Scope, Store, StoreError, User};
use contracts::scopes::{self, TRANSCRIPTIONS_READ, TRANSCRIPTIONS_REPORT, TRANSCRIPTIONS_WRITE};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a newcomer needs to call the stack, as written to `demo-credentials.json`.
#[derive(Serialize, Deserialize)]
pub struct DemoCredentials {
    pub auth_url: String,
    pub api_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub user_email: String,
    pub user_password: String,
    /// The worker's own client (client_credentials with [`TRANSCRIPTIONS_REPORT`]).
    pub worker_client_id: String,
    pub worker_client_secret: String,
}

impl std::fmt::Debug for DemoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCredentials")
            .field("client_id", &self.client_id)
            .field("user_email", &self.user_email)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Reads the credentials of an earlier start, or creates scopes, clients and user and writes
/// them. Returns the credentials and whether they were created now.
pub async fn ensure(
    store: &dyn Store,
    hasher: &SecretHasher,
    passwords: &PasswordPool,
    file: &Path,
    auth_url: &str,
    api_url: &str,
) -> Result<(DemoCredentials, bool), DemoError> {
    let io = |source| DemoError::Io {
        path: file.display().to_string(),
        source,
    };
    if let Ok(text) = std::fs::read(file)
        && let Ok(mut existing) = serde_json::from_slice::<DemoCredentials>(&text)
        && store.find_client(&existing.client_id).await?.is_some()
    {
        existing.auth_url = auth_url.to_owned();
        existing.api_url = api_url.to_owned();
        return Ok((existing, false));
    }
    let now = OffsetDateTime::now_utc();
    let existing: Vec<String> = store
        .list_scopes()
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    for (name, description) in scopes::ALL {
        if !existing.iter().any(|s| s == name) {
            let scope = Scope {
                name: name.to_owned(),
                description: description.to_owned(),
                created_at: now,
            };
            store.create_scope(&scope).await?;
        }
    }
    let secret = || generate_client_secret().map_err(|e| DemoError::Setup(e.to_string()));
    let new_client = |name: &str, scopes: &[&str], grants: &[GrantType], secret: &str| Client {
        id: Uuid::new_v4().to_string(),
        name: name.to_owned(),
        secret_hash: hasher.hash(secret),
        grant_types: grants.iter().copied().collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
        created_at: now,
    };
    let app_secret = secret()?;
    let app = new_client(
        "demo app",
        &[TRANSCRIPTIONS_WRITE, TRANSCRIPTIONS_READ],
        &[
            GrantType::ClientCredentials,
            GrantType::Password,
            GrantType::RefreshToken,
        ],
        app_secret.expose_secret(),
    );
    store.create_client(&app).await?;
    let worker_secret = secret()?;
    let worker = new_client(
        "worker",
        &[TRANSCRIPTIONS_REPORT],
        &[GrantType::ClientCredentials],
        worker_secret.expose_secret(),
    );
    store.create_client(&worker).await?;

    let password = secret()?
        .expose_secret()
        .chars()
        .take(20)
        .collect::<String>();
    let email = format!(
        "demo-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    // On the auth server's hashing threads: no 19 MiB allocation of its own.
    let password_hash = passwords
        .hash(SecretString::from(password.clone()))
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let user = User {
        id: Uuid::new_v4().to_string(),
        email: email.clone(),
        password_hash,
        permissions: [TRANSCRIPTIONS_WRITE, TRANSCRIPTIONS_READ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        disabled: false,
        created_at: now,
    };
    store.create_user(&user).await?;

    let credentials = DemoCredentials {
        auth_url: auth_url.to_owned(),
        api_url: api_url.to_owned(),
        client_id: app.id,
        client_secret: app_secret.expose_secret().to_owned(),
        user_email: email,
        user_password: password,
        worker_client_id: worker.id,
        worker_client_secret: worker_secret.expose_secret().to_owned(),
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let _ = std::fs::remove_file(file);
    let json =
        serde_json::to_vec_pretty(&credentials).map_err(|e| DemoError::Setup(e.to_string()))?;
    auth_server::keys::write_private_file(file, &json)
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    Ok((credentials, true))
}
