//! `--reset` removes what the stack created and nothing else: real files in a temporary
//! directory, the real binary for the refusal, a random PostgreSQL database and a Redis prefix
//! of its own for the production backends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use stack::reset::{inventory, reset};

use super::*;

/// Every file under `root` with a hash of its contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                files.insert(path, hasher.finish());
            }
        }
    }
    files
}

/// [`snapshot`] once the files stopped changing: SQLite connections of a stopped stack close
/// (and fold the `-wal` file back) on their own threads, shortly after `shutdown` returns.
fn settled_snapshot(root: &Path) -> BTreeMap<PathBuf, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = snapshot(root);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = snapshot(root);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Runs the stack once: first start, one transcription completed (its e-mail in the outbox),
/// stopped. Returns the demo client.
async fn run_once(config: StackConfig) -> (String, String) {
    let stack = Stack::start(config).await.unwrap();
    assert!(stack.created);
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let demo = (c.client_id.clone(), c.client_secret.clone());
    let token = client
        .token((&demo.0, &demo.1), &[("grant_type", "client_credentials")])
        .await;
    let token = token["access_token"].as_str().unwrap();
    let id = client.submit(token, "listener@example.com").await;
    assert_eq!(client.until_final(token, &id).await["status"], "completed");
    eventually("the e-mail", || outbox_mails(&stack).pop()).await;
    stack.shutdown().await.unwrap();
    demo
}

/// Files an operator keeps beside the stack's: in the data directory, in the outbox and in the
/// keys directory; and the committed files of `./keys/`, which are nobody's to delete.
fn add_foreign_files(dirs: &Dirs) -> BTreeSet<PathBuf> {
    let keys = dirs.0.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("README.md"), "committed").unwrap();
    std::fs::write(keys.join(".gitignore"), "*\n").unwrap();
    let foreign = [
        dirs.0.join("data/notes.txt"),
        dirs.0.join("data/outbox/draft.eml"),
        keys.join("id_ed25519"),
    ];
    for path in &foreign {
        std::fs::write(path, "not the stack's").unwrap();
    }
    foreign.into_iter().collect()
}

/// A transcriber's download left behind by a killed process: the stack's, so it goes.
fn add_scratch_leftover(dirs: &Dirs) -> PathBuf {
    let scratch = dirs.0.join("data/scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let path = scratch.join(format!(
        "audio-{}-{}",
        Uuid::new_v4(),
        Uuid::new_v4().simple()
    ));
    std::fs::write(&path, b"RIFF").unwrap();
    path
}

#[tokio::test]
async fn reset_beside_a_foreign_file_refuses_and_deletes_nothing() {
    let dirs = Dirs::new();
    run_once(dirs.config()).await;
    let foreign = add_foreign_files(&dirs);
    add_scratch_leftover(&dirs);
    let before = settled_snapshot(&dirs.0);

    let output = Command::new(env!("CARGO_BIN_EXE_stack"))
        .args([
            "--reset",
            "--auth-bind",
            "127.0.0.1:0",
            "--api-bind",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dirs.0.join("data"))
        .arg("--keys-dir")
        .arg(dirs.0.join("keys"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    for path in &foreign {
        assert!(lines[0].contains(&path.display().to_string()), "{stderr}");
    }
    assert!(!lines[0].contains("README.md"), "{stderr}");
    assert_eq!(snapshot(&dirs.0), before, "nothing was deleted");
}

#[tokio::test]
async fn reset_with_yes_deletes_only_the_stacks_files() {
    let dirs = Dirs::new();
    let config = dirs.config();
    let (old_id, old_secret) = run_once(config.clone()).await;
    let leftover = add_scratch_leftover(&dirs);
    // What a version before the keys moved into the database left in the keys directory.
    let keys = dirs.0.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for name in ["client-secret-pepper", "AbCdEfGh_-123456.pem"] {
        std::fs::write(keys.join(name), "legacy").unwrap();
    }
    // After a run everything in the directories is the stack's own (the list is complete).
    let found = inventory(&config.data_dir, &config.keys_dir).unwrap();
    assert_eq!(found.foreign, Vec::<PathBuf>::new());
    let owned: BTreeSet<PathBuf> = found.owned.into_iter().collect();
    for name in [
        "data/auth-server.db",
        "data/transcription-api.db",
        "data/queue.db",
        "data/demo-credentials.json",
        "data/job-signing-key",
        "data/auth-secrets",
        "keys/client-secret-pepper",
        "keys/AbCdEfGh_-123456.pem",
    ] {
        assert!(owned.contains(&dirs.0.join(name)), "{name} in {owned:?}");
    }
    assert!(owned.contains(&leftover));
    assert!(
        owned
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "eml"))
    );
    assert!(
        owned
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "pem"))
    );
    let foreign = add_foreign_files(&dirs);

    let report = reset(&config, true).await.unwrap();

    let kept: BTreeSet<PathBuf> = report.kept.into_iter().collect();
    assert_eq!(kept, foreign);
    let left: BTreeSet<PathBuf> = snapshot(&dirs.0).into_keys().collect();
    let mut expected = foreign.clone();
    expected.insert(dirs.0.join("keys/README.md"));
    expected.insert(dirs.0.join("keys/.gitignore"));
    assert_eq!(left, expected, "only the stack's files went");
    assert!(
        !dirs.0.join("data/scratch").exists(),
        "its empty scratch dir went too"
    );

    // The next start is a first start: new demo client, the old one is gone.
    let stack = Stack::start(config).await.unwrap();
    assert!(stack.created);
    assert_ne!(stack.credentials.client_id, old_id);
    let refused = reqwest::Client::new()
        .post(format!("{}/oauth/token", stack.auth_url))
        .basic_auth(&old_id, Some(&old_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    stack.shutdown().await.unwrap();
}

/// Tables in the database's `public` schema.
async fn tables(url: &str) -> BTreeSet<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, String>(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn redis_keys(url: &str, prefix: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// On PostgreSQL + Redis the reset drops the stack's tables and migration rows and deletes its
/// Redis keys, and leaves another application's table and migration row alone; the stack then
/// starts as on an empty database: a new demo client works, the old one does not.
#[tokio::test]
async fn reset_on_postgres_and_redis_leaves_a_database_the_stack_starts_fresh_on() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(redis) = reachable_url().await else {
        return;
    };
    let dirs = Dirs::new();
    let prefix = format!("e2e-reset-{}", Uuid::new_v4().simple());
    let config = StackConfig {
        database_url: Some(db.url.clone()),
        redis_url: Some(SecretString::from(redis.clone())),
        queue_prefix: prefix.clone(),
        ..dirs.config()
    };
    let (old_id, old_secret) = run_once(config.clone()).await;
    assert!(tables(&db.url).await.contains("transcriptions"));
    assert!(!redis_keys(&redis, &prefix).await.is_empty());
    {
        // Another application in the same database, with a migration of its own.
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("CREATE TABLE other_app (x INT)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'other app', TRUE, '\\x00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }

    let report = reset(&config, false).await.unwrap();

    assert!(report.tables_dropped >= 13, "{report:?}");
    assert!(report.redis_keys_deleted > 0, "{report:?}");
    assert_eq!(
        tables(&db.url).await,
        BTreeSet::from(["other_app".to_owned(), "_sqlx_migrations".to_owned()])
    );
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(versions, [99999]);
    }
    assert_eq!(redis_keys(&redis, &prefix).await, Vec::<String>::new());

    let stack = Stack::start(config).await.unwrap();
    assert!(stack.created, "a first start");
    let client = Client::new(&stack);
    let c = &stack.credentials;
    assert_ne!(c.client_id, old_id);
    let token = client
        .token(
            (&c.client_id, &c.client_secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let id = client
        .submit(token["access_token"].as_str().unwrap(), "again@example.com")
        .await;
    let record = client
        .until_final(token["access_token"].as_str().unwrap(), &id)
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    let refused = client
        .http
        .post(format!("{}/oauth/token", client.auth))
        .basic_auth(&old_id, Some(&old_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    stack.shutdown().await.unwrap();
    test_support::redis::delete_prefix(&redis, &prefix).await;
}
