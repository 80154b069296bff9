//! Opening the backends so that a failure names what was tried: the SQLite file, or the host
//! and port of PostgreSQL or Redis (never the URL, which may hold a password), with the cause
//! once: `cannot connect to PostgreSQL at 127.0.0.1:5433: Connection refused (os error 111)`.
//! Besides: which backend a `DATABASE_URL` names ([`Backend`]), and with the `sqlx` feature the
//! options every SQLite database is opened with ([`sqlite_options`]) and the migrator over a
//! crate's embedded migrations ([`embedded_migrator`]).

use std::error::Error;

/// The database a `DATABASE_URL` names, by its scheme: `sqlite:…` (a file) or `postgres://…` /
/// `postgresql://…` (a server; the two spellings of RFC 3986 schemes libpq accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend `url` names; `None` for any other scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// A database or Redis that could not be opened: what was tried, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct ConnectError {
    /// `cannot open SQLite database data/auth.db`, `cannot connect to Redis at host:6379`.
    pub what: String,
    /// The cause as one line ([`crate::error_line`]).
    pub cause: String,
}

impl ConnectError {
    /// `what` was tried and failed because of `cause` (kept as one line).
    pub fn new(what: impl Into<String>, cause: &(dyn Error + 'static)) -> ConnectError {
        ConnectError {
            what: what.into(),
            cause: crate::error_line(cause),
        }
    }
}

#[cfg(feature = "sqlx")]
pub use self::sql::{
    EmbeddedMigration, OtherMigrations, embedded_migrator, open_postgres, open_sqlite,
    postgres_target, sqlite_options,
};

#[cfg(feature = "sqlx")]
mod sql {
    use std::borrow::Cow;
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    };
    use sqlx::{ConnectOptions, Connection};

    use super::ConnectError;

    /// How long a connection waits for another one's write lock before `SQLITE_BUSY`.
    const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

    /// The options of every SQLite database of the platform, for a `sqlite:` URL: the file is
    /// created if missing, the journal is a write-ahead log (readers never block the writer),
    /// foreign keys are enforced, a locked database is waited for up to 5 s, and commits are
    /// as durable as `synchronous` says (<https://sqlite.org/pragma.html#pragma_synchronous>:
    /// `Normal` survives a crash of the process, `Full` a crash of the machine too).
    ///
    /// # Errors
    ///
    /// [`ConnectError`] (`invalid SQLite URL`) when the URL's options cannot be parsed.
    pub fn sqlite_options(
        url: &str,
        synchronous: SqliteSynchronous,
    ) -> Result<SqliteConnectOptions, ConnectError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| ConnectError::new("invalid SQLite URL", cause(e).as_ref()))?;
        Ok(options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT))
    }

    /// Opens a pool on the SQLite file of `options`, creating its directory first.
    pub async fn open_sqlite(
        options: SqliteConnectOptions,
        pool: SqlitePoolOptions,
    ) -> Result<SqlitePool, ConnectError> {
        let path = options.get_filename().to_owned();
        let what = || format!("cannot open SQLite database {}", path.display());
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                let what = format!("{}: cannot create {}", what(), parent.display());
                ConnectError::new(what, &e)
            })?;
        }
        pool.connect_with(options)
            .await
            .map_err(|e| ConnectError::new(what(), cause(e).as_ref()))
    }

    /// `PostgreSQL at host:port` (or at the socket directory) of a connection URL.
    pub fn postgres_target(options: &PgConnectOptions) -> String {
        match options.get_socket() {
            Some(socket) => format!("PostgreSQL at {}", socket.display()),
            None => format!(
                "PostgreSQL at {}:{}",
                options.get_host(),
                options.get_port()
            ),
        }
    }

    /// Opens a pool of at most `max_connections` on the PostgreSQL database at `url`, waiting
    /// up to `acquire_timeout` for the server. The pool retries a refused connection until
    /// then and reports only "timed out"; one direct attempt afterwards tells why.
    pub async fn open_postgres(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<PgPool, ConnectError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| ConnectError::new("invalid PostgreSQL URL", cause(e).as_ref()))?;
        let what = format!("cannot connect to {}", postgres_target(&options));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await;
        match pool {
            Ok(pool) => Ok(pool),
            Err(sqlx::Error::PoolTimedOut) => {
                let cause = match tokio::time::timeout(acquire_timeout, options.connect()).await {
                    Ok(Err(e)) => crate::error_line(cause(e).as_ref()),
                    Ok(Ok(conn)) => {
                        let _ = conn.close().await;
                        format!("no connection within {} s", acquire_timeout.as_secs())
                    }
                    Err(_) => format!("no answer within {} s", acquire_timeout.as_secs()),
                };
                Err(ConnectError { what, cause })
            }
            Err(e) => Err(ConnectError::new(what, cause(e).as_ref())),
        }
    }

    /// One migration embedded in the binary with `include_str!`: `(version, description, SQL)`.
    pub type EmbeddedMigration = (i64, &'static str, &'static str);

    /// What a migrator does about migrations the database has applied that are not in its list.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum OtherMigrations {
        /// Leave them be: other services keep their migrations in the same database (the
        /// one-process stack on PostgreSQL), under versions of their own.
        Ignore,
        /// Refuse to run: the database is this crate's alone, so an unknown migration means a
        /// newer binary migrated it.
        Refuse,
    }

    /// A migrator over migrations embedded at compile time (sqlx's `migrate!` macro is not
    /// enabled). Each migration runs in a transaction, under the database's migration lock, and
    /// is recorded in `_sqlx_migrations` with its checksum; `run` applies the pending ones.
    pub fn embedded_migrator(
        migrations: &[EmbeddedMigration],
        others: OtherMigrations,
    ) -> Migrator {
        let migrations = migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        Migrator {
            migrations: Cow::Owned(migrations),
            ignore_missing: others == OtherMigrations::Ignore,
            locking: true,
            no_tx: false,
        }
    }

    /// The error that says why: the I/O error itself rather than sqlx's "error communicating
    /// with database" around it.
    fn cause(err: sqlx::Error) -> Box<dyn std::error::Error + 'static> {
        match err {
            sqlx::Error::Io(io) => Box::new(io),
            other => Box::new(other),
        }
    }
}

#[cfg(feature = "redis")]
pub use self::redis_connect::{RedisTimeouts, connect_redis, redis_target};

#[cfg(feature = "redis")]
mod redis_connect {
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};

    use super::ConnectError;

    /// How long Redis gets to accept a connection and to answer a command, and how often a
    /// failed connection is tried again.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RedisTimeouts {
        pub connect: Duration,
        pub response: Duration,
        pub retries: usize,
    }

    /// `Redis at host:port` (or at the socket path) of a client.
    pub fn redis_target(client: &redis::Client) -> String {
        format!("Redis at {}", client.get_connection_info().addr())
    }

    /// A client for `url` and an auto-reconnecting connection to it.
    pub async fn connect_redis(
        url: &str,
        timeouts: RedisTimeouts,
    ) -> Result<(redis::Client, ConnectionManager), ConnectError> {
        let client =
            redis::Client::open(url).map_err(|e| ConnectError::new("invalid Redis URL", &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            .set_number_of_retries(timeouts.retries);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| {
                ConnectError::new(format!("cannot connect to {}", redis_target(&client)), &e)
            })?;
        Ok((client, conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of_url("sqlite:data/a.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u:p@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        for other in [
            "mysql://h/db",
            "data/a.db",
            "postgres:db",
            "SQLITE:a.db",
            "",
        ] {
            assert_eq!(Backend::of_url(other), None, "{other}");
        }
    }
}
