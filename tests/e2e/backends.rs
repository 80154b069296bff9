//! Evidence that a run on PostgreSQL + Redis used them and nothing else: rows in the database,
//! keys under the deployment's Redis prefix, and no SQLite file in the data directory (a
//! silent fallback to SQLite files or the embedded queue would leave one).

use std::path::Path;

use sqlx::Connection;

/// The transcription's row (final, with `transcript`) and the client's row are in the
/// PostgreSQL database at `url`.
pub async fn assert_rows_in_postgres(
    url: &str,
    transcription_id: &str,
    transcript: &str,
    client_id: &str,
) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let (status, stored): (String, Option<String>) =
        sqlx::query_as("SELECT status, transcript FROM transcriptions WHERE id = $1")
            .bind(transcription_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), stored.as_deref()),
        ("completed", Some(transcript))
    );
    let clients: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients WHERE id = $1")
        .bind(client_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(clients, 1, "the demo client is a row in PostgreSQL");
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// While the workers run, each keeps a heartbeat key `{prefix}:_heartbeat:<worker id>`.
pub async fn assert_heartbeats_under_prefix(url: &str, prefix: &str) {
    let heartbeats: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:_heartbeat:*"))
        .query_async(&mut redis(url).await)
        .await
        .unwrap();
    assert!(
        heartbeats.len() >= 2,
        "the transcriber's and the notifier's heartbeats under {prefix}: {heartbeats:?}"
    );
}

/// After the run: both queues were used under `prefix` (`{prefix}:_queues`), and the notifier
/// left its sent marker `notify-sent:<id>` there (`{prefix}:_marker:notify-sent:<id>`).
pub async fn assert_queue_keys_under_prefix(url: &str, prefix: &str, transcription_id: &str) {
    let mut conn = redis(url).await;
    let mut queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}:_queues"))
        .query_async(&mut conn)
        .await
        .unwrap();
    queues.sort();
    assert_eq!(queues, ["notify", "transcribe"]);
    let marker: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}:_marker:notify-sent:{transcription_id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        marker,
        "the sent marker of {transcription_id} under {prefix}"
    );
}

/// No file under `dir` is a SQLite database (by its header), nor named like one.
pub fn assert_no_sqlite_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_no_sqlite_files(&path);
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            ![".db", ".db-wal", ".db-shm", ".sqlite"]
                .iter()
                .any(|suffix| name.ends_with(suffix)),
            "{} looks like a SQLite file",
            path.display()
        );
        let header = std::fs::read(&path).unwrap_or_default();
        assert!(
            !header.starts_with(b"SQLite format 3\0"),
            "{} is a SQLite database",
            path.display()
        );
    }
}
