//! First-start set-up of the one-process stack: the product's scopes, a demo client and user,
//! the worker's own client, and `data/demo-credentials.json` (mode 0600). Later starts read the
//! credentials back, so everything is reused until `--reset`.

use std::path::Path;

use auth_server::admin::{Admin, AdminError, NewClient, NewUser, RegisteredClient};
use auth_server::config::SystemSecrets;
use auth_server::model::GrantType;
use contracts::scopes::{self, TRANSCRIPTIONS_READ, TRANSCRIPTIONS_REPORT, TRANSCRIPTIONS_WRITE};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
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

/// Why the demo set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{0}")]
    Setup(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Reads the credentials of an earlier start, or registers scopes, clients and user through
/// the auth server's admin layer and writes them. Returns the credentials and whether they were
/// created now.
pub async fn ensure(
    admin: &Admin,
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
    {
        match admin.client(&existing.client_id).await {
            Ok(_) => {
                existing.auth_url = auth_url.to_owned();
                existing.api_url = api_url.to_owned();
                return Ok((existing, false));
            }
            // A database reset under the file: register anew.
            Err(AdminError::ClientNotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    admin.ensure_scopes(&scopes::ALL).await?;
    let app = admin
        .register_client(NewClient::new(
            "demo app",
            [TRANSCRIPTIONS_WRITE, TRANSCRIPTIONS_READ],
            [GrantType::ClientCredentials, GrantType::Password],
        ))
        .await?;
    let worker = admin
        .register_client(NewClient::new(
            "worker",
            [TRANSCRIPTIONS_REPORT],
            [GrantType::ClientCredentials],
        ))
        .await?;

    // 20 characters of a fresh random secret (base64url).
    let password = SystemSecrets::generate_secret()
        .map_err(|e| DemoError::Setup(e.to_string()))?
        .expose_secret()
        .chars()
        .take(20)
        .collect::<String>();
    let email = format!(
        "demo-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    // On the auth server's hashing threads: no 19 MiB allocation of its own.
    let user = NewUser::new(&email, [TRANSCRIPTIONS_WRITE, TRANSCRIPTIONS_READ])?;
    admin
        .register_user(user, SecretString::from(password.clone()))
        .await?;

    // Both are confidential clients; a missing secret is a broken invariant, not a panic.
    let secret_of = |registered: &RegisteredClient| {
        registered
            .secret
            .as_ref()
            .map(|secret| secret.expose_secret().to_owned())
            .ok_or_else(|| DemoError::Setup("a confidential client got no secret".to_owned()))
    };
    let client_secret = secret_of(&app)?;
    let worker_client_secret = secret_of(&worker)?;
    let credentials = DemoCredentials {
        auth_url: auth_url.to_owned(),
        api_url: api_url.to_owned(),
        client_id: app.client.id,
        client_secret,
        user_email: email,
        user_password: password,
        worker_client_id: worker.client.id,
        worker_client_secret,
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let _ = std::fs::remove_file(file);
    let json =
        serde_json::to_vec_pretty(&credentials).map_err(|e| DemoError::Setup(e.to_string()))?;
    crate::write_private_file(file, &json).map_err(io)?;
    Ok((credentials, true))
}
