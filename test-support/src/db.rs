//! [`TestDb`]: a database that exists for one test and is removed after it, on SQLite or
//! PostgreSQL, with a scratch directory and an `AUTH_SECRETS` value of its own.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Where PostgreSQL tests connect to create their databases: `TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database, its `AUTH_SECRETS` and a directory that exist for one test and are removed
/// after it (on drop: the directory, and a PostgreSQL database with `DROP DATABASE … WITH
/// (FORCE)`).
pub struct TestDb {
    /// `sqlite:<dir>/auth.db`, or `postgres://…/test_<random>`.
    pub url: String,
    /// A fresh directory under the system temp dir (holds the SQLite file).
    pub dir: PathBuf,
    /// The `AUTH_SECRETS` value every process on this database is given: one random secret of
    /// 64 hex characters (auth-server takes any secret of at least 32 bytes).
    pub auth_secrets: SecretString,
    /// The admin URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite database file in a fresh directory (created on first open).
    pub fn sqlite() -> TestDb {
        let dir = scratch_dir();
        let url = format!("sqlite:{}", dir.join("auth.db").display());
        TestDb {
            url,
            dir,
            auth_secrets: random_secret(),
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database named `test_<random>` on the server of
    /// [`postgres_admin_url`], or `None` with `skipping: PostgreSQL unreachable at …` when the
    /// server is unreachable outside CI. In CI ([`crate::ci::in_ci`]) an unreachable server
    /// fails the test.
    pub async fn postgres() -> Option<TestDb> {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(err) => {
                return crate::ci::skip_unless_ci(&format!(
                    "PostgreSQL unreachable at {admin}: {err}"
                ));
            }
        };
        let name = format!("test_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin);
        Some(TestDb {
            url: format!("{base}/{name}"),
            dir: scratch_dir(),
            auth_secrets: random_secret(),
            postgres: Some((admin, name)),
        })
    }

    /// The `AUTH_SECRETS` value, for a process's environment.
    pub fn auth_secrets(&self) -> &str {
        self.auth_secrets.expose_secret()
    }

    /// `<dir>/keys`: a keys directory of auth-server's layout before its keys moved into the
    /// database (an import source only).
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs outside any runtime guarantee: use a private one on a plain thread.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&sql).execute(&mut conn).await;
                    }
                });
            })
            .join();
        }
    }
}

/// `<temp dir>/test-db-<random>`, created.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("test-db-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two random (v4) UUIDs in hex: 64 characters, 244 random bits.
fn random_secret() -> SecretString {
    SecretString::from(format!(
        "{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    ))
}
