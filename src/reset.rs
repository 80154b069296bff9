//! `stack --reset`: removes what earlier runs of the stack created, and nothing else.
//!
//! The stack's own files are a fixed list (`classify`, and the README's *The stack's
//! settings*): in the data directory the SQLite databases with their `-wal`/`-shm`/`-journal`
//! companions, `demo-credentials.json`, `job-signing-key`, `auth-secrets`, the outbox's
//! `<transcription id>.eml` files (and `.tmp-<hex>` left by an interrupted write) and the
//! transcriber's scratch downloads `scratch/audio-<transcription id>-<hex>`; in the keys
//! directory the generated `<kid>.pem` files and `client-secret-pepper` (the layout before
//! keys moved into the database). A directory that holds anything else is refused as a whole,
//! before anything is deleted, unless the operator passes `--yes`; then only the stack's own
//! files go and the rest is kept.
//!
//! On PostgreSQL the tables the auth server's and transcription-api's migrations create are
//! dropped, with their rows in `_sqlx_migrations` (the table itself when no other migration is
//! recorded there); the table names are read from the migrations themselves, so a new
//! migration is covered without a list to update. On Redis every key under `QUEUE_PREFIX:`
//! is deleted (the queues, markers, heartbeats and the revoked-token set).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use plumbing::connect::Backend;
use secrecy::ExposeSecret;
use sqlx::Connection;
use uuid::Uuid;

use crate::StackConfig;

/// SQLite databases of the stack in the data directory.
pub const DATABASES: [&str; 3] = ["auth-server.db", "transcription-api.db", "queue.db"];
/// Files SQLite keeps beside a database (WAL mode; `-journal` before WAL is switched on).
const SQLITE_COMPANIONS: [&str; 4] = ["", "-wal", "-shm", "-journal"];
/// Other files the stack writes into the data directory.
pub const DATA_FILES: [&str; 3] = ["demo-credentials.json", "job-signing-key", "auth-secrets"];
/// Subdirectories of the data directory and what the stack writes into them.
const OUTBOX_DIR: &str = "outbox";
const SCRATCH_DIR: &str = "scratch";
/// The client-secret pepper generated into the keys directory (old layout).
const PEPPER_FILE: &str = auth_server::config::LEGACY_PEPPER_FILE;
/// Committed files of `./keys/`: neither the stack's to delete nor foreign.
const KEYS_COMMITTED: [&str; 2] = ["README.md", ".gitignore"];

/// Why a reset did not happen (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Nothing was deleted.
    #[error(
        "--reset refused, nothing deleted: not created by the stack: {}; pass --yes to delete only the stack's own files and keep these",
        list(.0)
    )]
    Foreign(Vec<PathBuf>),
    #[error(
        "--reset knows PostgreSQL databases and the SQLite files of the data directory, not `{0}`"
    )]
    UnsupportedDatabase(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resetting the PostgreSQL tables: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("deleting the Redis keys: {0}")]
    Redis(#[from] redis::RedisError),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a reset found in the directories.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The stack's own files: deleted.
    pub owned: Vec<PathBuf>,
    /// Everything else: refused, or kept with `--yes`.
    pub foreign: Vec<PathBuf>,
}

/// What [`reset`] did.
#[derive(Debug, Default)]
pub struct Report {
    pub files_removed: usize,
    /// Entries that were not the stack's and stayed (only with `--yes`).
    pub kept: Vec<PathBuf>,
    pub tables_dropped: usize,
    pub redis_keys_deleted: usize,
}

/// Whose a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// One of the stack's files.
    Owned,
    /// A directory the stack fills: its entries are classified one by one.
    OwnedDir(Subdir),
    /// A committed file of `./keys/`: kept.
    Committed,
    Foreign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subdir {
    Outbox,
    Scratch,
}

/// Which directory an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Data,
    Keys,
    /// `--data-dir` and `--keys-dir` are the same directory.
    DataAndKeys,
    Sub(Subdir),
}

/// The stack's rule for one entry: `name`, a regular file (`is_file`) or a directory.
fn classify(place: Place, name: &str, is_file: bool, is_dir: bool) -> Entry {
    let data = || {
        let sqlite = DATABASES
            .iter()
            .any(|db| SQLITE_COMPANIONS.iter().any(|c| name == format!("{db}{c}")));
        if is_file && (sqlite || DATA_FILES.contains(&name)) {
            Entry::Owned
        } else if is_dir && name == OUTBOX_DIR {
            Entry::OwnedDir(Subdir::Outbox)
        } else if is_dir && name == SCRATCH_DIR {
            Entry::OwnedDir(Subdir::Scratch)
        } else {
            Entry::Foreign
        }
    };
    let keys = || {
        if KEYS_COMMITTED.contains(&name) {
            Entry::Committed
        } else if is_file && (name == PEPPER_FILE || is_kid_pem(name)) {
            Entry::Owned
        } else {
            Entry::Foreign
        }
    };
    let owned_if = |yes: bool| {
        if is_file && yes {
            Entry::Owned
        } else {
            Entry::Foreign
        }
    };
    match place {
        Place::Data => data(),
        Place::Keys => keys(),
        Place::DataAndKeys => match data() {
            Entry::Foreign => keys(),
            entry => entry,
        },
        // `<transcription id>.eml`, or `.tmp-<32 hex>` of an interrupted write.
        Place::Sub(Subdir::Outbox) => owned_if(
            name.strip_suffix(".eml")
                .is_some_and(|id| Uuid::try_parse(id).is_ok())
                || name.strip_prefix(".tmp-").is_some_and(is_hex32),
        ),
        // `audio-<transcription id>-<32 hex>`.
        Place::Sub(Subdir::Scratch) => owned_if(
            name.strip_prefix("audio-")
                .and_then(|rest| rest.rsplit_once('-'))
                .is_some_and(|(id, random)| Uuid::try_parse(id).is_ok() && is_hex32(random)),
        ),
    }
}

/// A generated key file: `<kid>.pem` with a kid of 16 URL-safe base64 characters.
fn is_kid_pem(name: &str) -> bool {
    name.strip_suffix(".pem").is_some_and(|kid| {
        kid.len() == 16
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn is_hex32(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Sorts the entries of `data_dir` and `keys_dir` into the stack's and the others. Missing
/// directories hold nothing.
pub fn inventory(data_dir: &Path, keys_dir: &Path) -> Result<Inventory, ResetError> {
    let mut inventory = Inventory::default();
    let same = match (data_dir.canonicalize(), keys_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => data_dir == keys_dir,
    };
    if same {
        scan(data_dir, Place::DataAndKeys, None, &mut inventory)?;
    } else {
        scan(data_dir, Place::Data, Some(keys_dir), &mut inventory)?;
        scan(keys_dir, Place::Keys, Some(data_dir), &mut inventory)?;
    }
    inventory.owned.sort();
    inventory.foreign.sort();
    Ok(inventory)
}

/// Classifies the entries of `dir`; `other` (the other directory, if nested here) is skipped
/// because it is scanned by its own rules.
fn scan(
    dir: &Path,
    place: Place,
    other: Option<&Path>,
    inventory: &mut Inventory,
) -> Result<(), ResetError> {
    let io = |source| ResetError::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io(err)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if other.is_some_and(|other| path == other) {
            continue;
        }
        // The entry itself, never what a symbolic link points to.
        let kind = entry.file_type().map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            inventory.foreign.push(path);
            continue;
        };
        match classify(place, name, kind.is_file(), kind.is_dir()) {
            Entry::Owned => inventory.owned.push(path),
            Entry::OwnedDir(sub) => scan(&path, Place::Sub(sub), None, inventory)?,
            Entry::Committed => {}
            Entry::Foreign => inventory.foreign.push(path),
        }
    }
    Ok(())
}

/// Removes what the stack created for `config`: its files in the data and keys directories,
/// its tables on PostgreSQL (`database_url`) and its keys on Redis (`redis_url`). With foreign
/// entries in a directory and without `yes`, nothing at all is deleted.
pub async fn reset(config: &StackConfig, yes: bool) -> Result<Report, ResetError> {
    let inventory = inventory(&config.data_dir, &config.keys_dir)?;
    if !inventory.foreign.is_empty() && !yes {
        return Err(ResetError::Foreign(inventory.foreign));
    }
    let postgres = match config.database_url.as_deref() {
        None => None,
        Some(url) if Backend::of_url(url) == Some(Backend::Postgres) => Some(url),
        Some(url) => {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(ResetError::UnsupportedDatabase(format!("{scheme}:…")));
        }
    };
    let mut report = Report {
        kept: inventory.foreign,
        ..Report::default()
    };
    if let Some(url) = postgres {
        report.tables_dropped = drop_postgres_tables(url).await?;
    }
    if let Some(url) = &config.redis_url {
        report.redis_keys_deleted =
            delete_redis_prefix(url.expose_secret(), &config.queue_prefix).await?;
    }
    for path in &inventory.owned {
        match std::fs::remove_file(path) {
            Ok(()) => report.files_removed += 1,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ResetError::Io {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    // The stack's subdirectories go too once empty (they still hold what `--yes` kept).
    for sub in [OUTBOX_DIR, SCRATCH_DIR] {
        let _ = std::fs::remove_dir(config.data_dir.join(sub));
    }
    Ok(report)
}

/// The migrations the stack applies to a PostgreSQL database (the job queue keeps its state in
/// Redis or in `queue.db`, never in PostgreSQL).
fn postgres_migrators() -> [sqlx::migrate::Migrator; 2] {
    [
        auth_server::postgres_migrations(),
        transcription_api::store::PostgresStore::migrator(),
    ]
}

/// The tables `CREATE TABLE` statements in `sql` create, in order.
pub fn created_tables(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let mut tables = Vec::new();
    let mut i = 0;
    while i + 2 < words.len() {
        if words[i].eq_ignore_ascii_case("create") && words[i + 1].eq_ignore_ascii_case("table") {
            let mut at = i + 2;
            if words.get(at..at + 3).is_some_and(|w| {
                w.iter()
                    .map(|s| s.to_ascii_lowercase())
                    .eq(["if", "not", "exists"])
            }) {
                at += 3;
            }
            if let Some(name) = words.get(at) {
                tables.push(name.trim_matches('"').to_owned());
            }
            i = at;
        } else {
            i += 1;
        }
    }
    tables
}

/// Drops the stack's tables and its `_sqlx_migrations` rows in one transaction; returns how
/// many tables existed. Without `CASCADE`: another application's object depending on one of
/// these tables makes the reset fail rather than disappear.
async fn drop_postgres_tables(url: &str) -> Result<usize, ResetError> {
    let migrators = postgres_migrators();
    let mut tables = BTreeSet::new();
    let mut versions = Vec::new();
    for migration in migrators.iter().flat_map(|m| m.iter()) {
        versions.push(migration.version);
        tables.extend(created_tables(&migration.sql));
    }
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    let mut existing = 0;
    for table in &tables {
        let found: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(quote(table))
            .fetch_one(&mut *tx)
            .await?;
        existing += usize::from(found);
    }
    if !tables.is_empty() {
        let names: Vec<String> = tables.iter().map(|t| quote(t)).collect();
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", names.join(", ")))
            .execute(&mut *tx)
            .await?;
    }
    let history: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if history {
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ANY($1)")
            .bind(&versions)
            .execute(&mut *tx)
            .await?;
        let others: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&mut *tx)
            .await?;
        if others == 0 {
            sqlx::query("DROP TABLE _sqlx_migrations")
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(existing)
}

/// `name` as a quoted PostgreSQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Deletes every key under `prefix:`; returns how many.
async fn delete_redis_prefix(url: &str, prefix: &str) -> Result<usize, ResetError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let escaped: String = prefix
        .chars()
        .flat_map(|c| {
            let special = matches!(c, '*' | '?' | '[' | ']' | '\\');
            special.then_some('\\').into_iter().chain([c])
        })
        .collect();
    let pattern = format!("{escaped}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let removed: usize = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
            deleted += removed;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stacks_file_names_are_its_own_and_nothing_else_is() {
        fn owned(place: Place, name: &str) -> bool {
            classify(place, name, true, false) == Entry::Owned
        }
        for name in [
            "auth-server.db",
            "auth-server.db-wal",
            "queue.db-shm",
            "transcription-api.db-journal",
            "demo-credentials.json",
            "job-signing-key",
            "auth-secrets",
        ] {
            assert!(owned(Place::Data, name), "{name}");
            assert!(owned(Place::DataAndKeys, name), "{name}");
            assert!(!owned(Place::Keys, name), "{name}");
        }
        for name in ["client-secret-pepper", "AbCdEfGh_-123456.pem"] {
            assert!(owned(Place::Keys, name), "{name}");
            assert!(owned(Place::DataAndKeys, name), "{name}");
            assert!(!owned(Place::Data, name), "{name}");
        }
        let id = Uuid::new_v4();
        let hex = Uuid::new_v4().simple().to_string();
        assert!(owned(Place::Sub(Subdir::Outbox), &format!("{id}.eml")));
        assert!(owned(Place::Sub(Subdir::Outbox), &format!(".tmp-{hex}")));
        assert!(owned(
            Place::Sub(Subdir::Scratch),
            &format!("audio-{id}-{hex}")
        ));
        for (place, name) in [
            (Place::Data, "notes.txt"),
            (Place::Data, "auth-server.db.bak"),
            (Place::Data, "queue.db-wal2"),
            (Place::Keys, "id_ed25519.pem"),
            (Place::Keys, "client-secret-pepper.old"),
            (Place::Sub(Subdir::Outbox), "draft.eml"),
            (Place::Sub(Subdir::Outbox), "readme.txt"),
            (Place::Sub(Subdir::Scratch), "audio-mine.wav"),
        ] {
            assert!(!owned(place, name), "{place:?} {name}");
        }
        // A directory under a file's name is not the stack's file.
        assert_eq!(
            classify(Place::Data, "auth-server.db", false, true),
            Entry::Foreign
        );
        assert_eq!(
            classify(Place::Keys, "README.md", true, false),
            Entry::Committed
        );
        assert_eq!(
            classify(Place::Data, "outbox", false, true),
            Entry::OwnedDir(Subdir::Outbox)
        );
        assert_eq!(classify(Place::Data, "outbox", true, false), Entry::Foreign);
    }

    #[test]
    fn created_tables_are_read_from_the_sql() {
        let sql = "-- CREATE TABLE commented (x INT);\n\
                   CREATE TABLE scopes (\n  name TEXT\n);\n\
                   create table if not exists \"Odd\"(x INT);\n\
                   CREATE INDEX scopes_name ON scopes (name);\n\
                   ALTER TABLE scopes ADD COLUMN y INT;";
        assert_eq!(created_tables(sql), ["scopes", "Odd"]);
    }

    #[test]
    fn every_postgres_migration_table_is_found() {
        let tables: BTreeSet<String> = postgres_migrators()
            .iter()
            .flat_map(|m| m.iter())
            .flat_map(|m| created_tables(&m.sql))
            .collect();
        for table in [
            "scopes",
            "clients",
            "signing_keys",
            "users",
            "refresh_tokens",
            "revoked_subjects",
            "transcriptions",
            "transcription_outbox",
            "idempotency_keys",
        ] {
            assert!(tables.contains(table), "{table} missing from {tables:?}");
        }
    }
}
