//! The API while a backend is unreachable: behind a TCP proxy the test cuts, stalls and
//! restores, or a database that ends its sessions (the shared servers keep running). The
//! database gone gives 503 `service_unavailable` with `Retry-After: 5` and service resumes once
//! it is back (README, "Errors"); the queue gone makes `/readyz` 503, and 200 again once the
//! queue is back (README, "The record and the job stay together").

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::db::TestDb;
use tokio::time::Instant;

use crate::helpers::*;
use crate::proxy::{delete_prefix, redis_behind_proxy};
use test_support::net::TcpProxy;

/// How long a backend that is back may take to be used again (reconnects, backoff): only a
/// broken API takes this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// Sends `request` until its status is `want`; returns that response.
async fn until_status(
    want: StatusCode,
    mut request: impl AsyncFnMut() -> reqwest::Response,
) -> reqwest::Response {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = request().await;
        if response.status() == want {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after {PATIENCE:?}, not {want}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 503 `service_unavailable` with `Retry-After: 5`, as the README gives it.
async fn assert_unavailable(what: &str, response: reqwest::Response) {
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        response.text().await.unwrap_or_default()
    );
    assert_eq!(response.headers()["retry-after"], "5", "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "service_unavailable", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "{what}: only error and message: {body}"
    );
}

/// The API on a fresh PostgreSQL database that it reaches through a proxy the test controls.
struct ApiOnPostgres {
    api: TestApi,
    proxy: TcpProxy,
    user: String,
    worker: String,
    /// A queued record written before the outage, and how it reads.
    id: String,
    before: Value,
    db: TestDb,
}

impl ApiOnPostgres {
    /// `None` (a skip) outside CI when PostgreSQL is not running.
    async fn start() -> Option<ApiOnPostgres> {
        let db = TestDb::postgres().await?;
        let mut url = url::Url::parse(&db.url).unwrap();
        let upstream = format!(
            "{}:{}",
            url.host_str().unwrap(),
            url.port_or_known_default().unwrap_or(5432)
        );
        let proxy = TcpProxy::start(upstream).await;
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(proxy.addr().port())).unwrap();
        let api = TestApi::spawn_with(Options {
            database_url: Some(url.to_string()),
            ..Options::default()
        })
        .await;
        let user = api.token(&[WRITE, READ]).await;
        let worker = api.token(&[REPORT]).await;
        let id = api.create(&user).await.to_string();
        let before: Value = api
            .get(&user, &format!("/transcriptions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(before["status"], "queued");
        Some(ApiOnPostgres {
            api,
            proxy,
            user,
            worker,
            id,
            before,
            db,
        })
    }

    fn path(&self) -> String {
        format!("/transcriptions/{}", self.id)
    }

    /// Once the database is back: the record reads as before, and reads, submissions and
    /// reports work again; nothing refused during the outage was written.
    async fn assert_service_resumes(&self) {
        let api = &self.api;
        let back = until_status(StatusCode::OK, async || {
            api.get(&self.user, &self.path()).await
        })
        .await;
        assert_eq!(
            back.json::<Value>().await.unwrap(),
            self.before,
            "the record is as it was"
        );
        let other = api.create(&self.user).await.to_string();
        assert_eq!(
            api.report(&self.worker, &self.id, &json!({"status": "processing"}))
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
        let listed: Value = api
            .get(&self.user, "/transcriptions")
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [other.as_str(), self.id.as_str()],
            "nothing refused during the outage was written"
        );
    }

    /// `/readyz` says the database is what is missing.
    async fn assert_not_ready(&self) {
        let ready = self
            .api
            .http
            .get(self.api.url("/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["checks"]["database"], "unavailable", "{ready}");
    }

    /// Every route that needs the database, at once (while the database is away each may wait
    /// for the pool's acquire timeout): all answer 503 `service_unavailable` with
    /// `Retry-After: 5`, and `/readyz` names the database.
    async fn assert_every_route_is_unavailable(&self) {
        let (api, user, worker, id) = (&self.api, &self.user, &self.worker, &self.id);
        let path = self.path();
        let (submission, processing) = (sample_body(), json!({"status": "processing"}));
        let (read, list, submit, retry, report, notification) = tokio::join!(
            api.get(user, &path),
            api.get(user, "/transcriptions"),
            api.submit(user, &submission),
            async {
                api.http
                    .post(api.url(&format!("{path}/retry")))
                    .bearer_auth(user)
                    .send()
                    .await
                    .unwrap()
            },
            api.report(worker, id, &processing),
            async {
                api.http
                    .put(api.url(&format!("/internal/transcriptions/{id}/notification")))
                    .bearer_auth(worker)
                    .json(&json!({"status": "sent"}))
                    .send()
                    .await
                    .unwrap()
            },
        );
        assert_unavailable("read", read).await;
        assert_unavailable("list", list).await;
        assert_unavailable("submit", submit).await;
        assert_unavailable("retry", retry).await;
        assert_unavailable("report", report).await;
        assert_unavailable("notification report", notification).await;
        self.assert_not_ready().await;
    }

    /// Runs `sql` as the PostgreSQL superuser tests connect with (`TEST_POSTGRES_URL`).
    async fn as_admin(&self, sql: &str) {
        use sqlx::Connection;
        let admin = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    /// The name of the test's database.
    fn database(&self) -> &str {
        self.db.url.rsplit('/').next().unwrap()
    }
}

/// PostgreSQL's host is down (its port refuses connections; the live ones are gone): every
/// route that needs the database answers 503 `service_unavailable` with `Retry-After: 5`, and
/// service resumes once it is back.
#[tokio::test]
async fn a_database_that_refuses_connections_gives_503_with_retry_after_5_until_it_is_back() {
    let Some(setup) = ApiOnPostgres::start().await else {
        return;
    };
    setup.proxy.stop_listening().await;
    setup.assert_every_route_is_unavailable().await;

    setup.proxy.listen_again().await;
    setup.assert_service_resumes().await;
}

/// A proxy or pooler in front of PostgreSQL that has no server behind it: it accepts each
/// connection and closes it at once (sqlx reads that as a protocol error, not an I/O one), and
/// the live connections are cut mid-message. The same 503 with `Retry-After: 5`, never a 500.
#[tokio::test]
async fn a_database_behind_a_proxy_that_closes_every_connection_gives_503_until_it_forwards() {
    let Some(setup) = ApiOnPostgres::start().await else {
        return;
    };
    setup.proxy.cut();
    setup.assert_every_route_is_unavailable().await;

    setup.proxy.restore();
    setup.assert_service_resumes().await;
}

/// PostgreSQL ends the API's sessions and takes no new ones (`ALLOW_CONNECTIONS false` and
/// `pg_terminate_backend`, as for maintenance; a server shutting down answers alike): 503
/// with `Retry-After: 5`, and service resumes once it takes connections again.
#[tokio::test]
async fn a_database_that_ends_sessions_and_takes_no_new_ones_gives_503_until_it_does() {
    let Some(setup) = ApiOnPostgres::start().await else {
        return;
    };
    let name = setup.database().to_owned();
    setup
        .as_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    setup
        .as_admin(&format!(
            // Waits (up to 60 s) until each session has actually ended.
            "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    setup.assert_every_route_is_unavailable().await;

    setup
        .as_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    setup.assert_service_resumes().await;
}

/// PostgreSQL stops answering (a partition, a stalled server: connections open, nothing comes
/// back): 503 with `Retry-After: 5` once the pool's acquire timeout passes, and service resumes
/// once it answers again.
#[tokio::test]
async fn a_database_that_does_not_answer_gives_503_with_retry_after_5_until_it_answers() {
    let Some(setup) = ApiOnPostgres::start().await else {
        return;
    };
    let (api, user) = (&setup.api, &setup.user);
    let path = setup.path();
    let submission = sample_body();
    setup.proxy.stall();
    let (read, submit) = tokio::join!(api.get(user, &path), api.submit(user, &submission));
    assert_unavailable("read", read).await;
    assert_unavailable("submit", submit).await;
    setup.assert_not_ready().await;

    setup.proxy.resume();
    setup.assert_service_resumes().await;
}

#[tokio::test]
async fn readyz_is_503_while_the_queue_is_unreachable_and_200_once_it_is_back() {
    let Some((proxy, queue, _direct, prefix)) = redis_behind_proxy().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        queue: Some(queue),
        ..Options::default()
    })
    .await;
    let readyz = async || api.http.get(api.url("/readyz")).send().await.unwrap();
    let ready = readyz().await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "checks": {"database": "ok", "queue": "ok", "keys": "ok"}})
    );

    proxy.cut();
    let unready = json!({
        "status": "unavailable",
        "checks": {"database": "ok", "queue": "unavailable", "keys": "ok"},
    });
    let first = until_status(StatusCode::SERVICE_UNAVAILABLE, async || readyz().await).await;
    assert_eq!(first.headers()["cache-control"], "no-store");
    assert_eq!(first.json::<Value>().await.unwrap(), unready);
    // While it stays away, every probe says so, and submissions are still accepted.
    for _ in 0..3 {
        let again = readyz().await;
        assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(again.json::<Value>().await.unwrap(), unready);
    }
    let token = api.token(&[WRITE]).await;
    assert_eq!(
        api.submit(&token, &sample_body()).await.status(),
        StatusCode::ACCEPTED
    );

    proxy.restore();
    let back = until_status(StatusCode::OK, async || readyz().await).await;
    assert_eq!(back.json::<Value>().await.unwrap()["status"], "ready");
    drop(api);
    delete_prefix(&prefix).await;
}
