//! First-start set-up of the one-process stack: the product's scopes, a demo client and user,
//! the worker's own client, the demo web app's client ([`crate::web_app`]), and
//! `data/demo-credentials.json` (mode 0600). Later starts read the credentials back, so
//! everything is reused until `--reset`.

use std::path::Path;

use auth_server::admin::{Admin, AdminError, NewClient, NewUser, ProfileUpdate, RegisteredClient};
use auth_server::config::SystemSecrets;
use auth_server::model::GrantType;
use contracts::scopes::{self, TRANSCRIPTIONS_READ, TRANSCRIPTIONS_REPORT, TRANSCRIPTIONS_WRITE};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::web_app;

/// The demo user's OIDC `name` claim (its e-mail is released as verified).
pub const DEMO_USER_NAME: &str = "Demo User";
/// The name of the demo web app's client, shown on the consent page.
pub const WEB_APP_NAME: &str = "Demo web app";

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
    /// The demo web app's client: confidential, `authorization_code`, not first-party (its
    /// users see the consent page), redirect URI [`web_app::redirect_uri`] of the API's
    /// address. Empty in a file written before the web app existed (registered then).
    #[serde(default)]
    pub web_client_id: String,
    #[serde(default)]
    pub web_client_secret: String,
}

impl std::fmt::Debug for DemoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCredentials")
            .field("client_id", &self.client_id)
            .field("user_email", &self.user_email)
            .field("web_client_id", &self.web_client_id)
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
    if let Ok(text) = std::fs::read(file)
        && let Ok(mut existing) = serde_json::from_slice::<DemoCredentials>(&text)
    {
        match admin.client(&existing.client_id).await {
            Ok(_) => {
                existing.auth_url = auth_url.to_owned();
                existing.api_url = api_url.to_owned();
                if ensure_web_client(admin, &mut existing, api_url).await? {
                    // Registered by an earlier version: its user gets the profile now.
                    admin
                        .set_user_profile(
                            &existing.user_email,
                            ProfileUpdate {
                                display_name: Some(Some(DEMO_USER_NAME.to_owned())),
                                email_verified: Some(true),
                            },
                        )
                        .await?;
                    write(file, &existing)?;
                }
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
    let mut user = NewUser::new(&email, [TRANSCRIPTIONS_WRITE, TRANSCRIPTIONS_READ])?;
    user.display_name = Some(DEMO_USER_NAME.to_owned());
    user.email_verified = true;
    admin
        .register_user(user, SecretString::from(password.clone()))
        .await?;

    let mut credentials = DemoCredentials {
        auth_url: auth_url.to_owned(),
        api_url: api_url.to_owned(),
        client_secret: secret_of(&app)?,
        client_id: app.client.id,
        user_email: email,
        user_password: password,
        worker_client_secret: secret_of(&worker)?,
        worker_client_id: worker.client.id,
        web_client_id: String::new(),
        web_client_secret: String::new(),
    };
    ensure_web_client(admin, &mut credentials, api_url).await?;
    write(file, &credentials)?;
    Ok((credentials, true))
}

/// Keeps the demo web app's client of `credentials` if it exists with the redirect URIs of
/// `api_url`; otherwise registers one (deleting the old one, whose URIs name an earlier
/// address) and puts it in `credentials`. Returns whether it registered one.
async fn ensure_web_client(
    admin: &Admin,
    credentials: &mut DemoCredentials,
    api_url: &str,
) -> Result<bool, DemoError> {
    let redirect_uris = vec![web_app::redirect_uri(api_url)];
    let post_logout_redirect_uris = vec![web_app::home_url(api_url)];
    if !credentials.web_client_id.is_empty() {
        match admin.client(&credentials.web_client_id).await {
            Ok(client)
                if client.redirect_uris == redirect_uris
                    && client.post_logout_redirect_uris == post_logout_redirect_uris =>
            {
                return Ok(false);
            }
            Ok(_) => {
                admin.delete_client(&credentials.web_client_id).await?;
            }
            Err(AdminError::ClientNotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let mut new = NewClient::signing_in(WEB_APP_NAME, web_app::SCOPE.split(' '), redirect_uris);
    new.post_logout_redirect_uris = post_logout_redirect_uris;
    let registered = admin.register_client(new).await?;
    credentials.web_client_secret = secret_of(&registered)?;
    credentials.web_client_id = registered.client.id;
    Ok(true)
}

/// The secret of a confidential client just registered.
fn secret_of(registered: &RegisteredClient) -> Result<String, DemoError> {
    registered
        .secret
        .as_ref()
        .map(|secret| secret.expose_secret().to_owned())
        .ok_or_else(|| DemoError::Setup(format!("client {} has no secret", registered.client.name)))
}

/// Writes `credentials` to `file` (mode 0600), replacing an earlier file.
fn write(file: &Path, credentials: &DemoCredentials) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: file.display().to_string(),
        source,
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let _ = std::fs::remove_file(file);
    let json =
        serde_json::to_vec_pretty(credentials).map_err(|e| DemoError::Setup(e.to_string()))?;
    crate::write_private_file(file, &json).map_err(io)
}
