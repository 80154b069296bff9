//! Redis for tests: where it is (`REDIS_URL`, default [`DEFAULT_URL`]), the one probe that
//! decides whether a test runs ([`reachable_url`]), the clean-up of the random key prefix each
//! test works under ([`delete_prefix`], [`delete_prefix_blocking`]), and a `redis-server` of a
//! test's own ([`OwnRedis`]).

use std::time::Duration;

/// Where tests find Redis when `REDIS_URL` is unset.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// `REDIS_URL`, or [`DEFAULT_URL`] when it is unset; not probed (for a test that needs a URL
/// but no answer, such as one checking that bad settings are refused before connecting).
pub fn configured_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The Redis URL for tests ([`configured_url`]) if Redis answers a `PING` within 3 s; when it
/// does not, `None` with `skipping: Redis unreachable at <url>: <cause>` outside CI, and a
/// failed test in CI ([`crate::ci::skip_unless_ci`]).
pub async fn reachable_url() -> Option<String> {
    let url = configured_url();
    let ping = async {
        let client = ::redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let reason = match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(err)) => err.to_string(),
        Err(_) => "no answer within 3 s".to_owned(),
    };
    crate::ci::skip_unless_ci(&format!("Redis unreachable at {url}: {reason}"))
}

/// Deletes every key under `prefix:` at `url` (the end of a test that used its own prefix);
/// panics when Redis does not answer.
pub async fn delete_prefix(url: &str, prefix: &str) {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = ::redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// [`delete_prefix`] for a `Drop` impl: synchronous on a thread of its own (so it runs inside
/// or outside a runtime, and when the test panicked), connecting for at most 2 s, and silent
/// when Redis is gone (a drop must not panic).
pub fn delete_prefix_blocking(url: &str, prefix: &str) {
    let url = url.to_owned();
    let pattern = format!("{prefix}:*");
    let _ = std::thread::spawn(move || {
        let Ok(client) = ::redis::Client::open(url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = match ::redis::Commands::scan_match(&mut conn, &pattern) {
            Ok(keys) => keys.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = ::redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    })
    .join();
}

/// A `redis-server` process of the test's own on a free loopback port, without persistence and
/// optionally requiring a password: a server the test may suspend, resume or lose without
/// touching the one the other tests share. Resumed and killed on drop.
pub struct OwnRedis {
    child: std::process::Child,
    url: String,
}

impl OwnRedis {
    /// Starts `redis-server` on 127.0.0.1 (with `--requirepass` when `password` is given) and
    /// waits until it answers a `PING` within [`crate::process::PATIENCE`]. When it cannot be
    /// started: `None` with `skipping: redis-server not runnable: …` outside CI, a failed test
    /// in CI ([`crate::ci::skip_unless_ci`]).
    pub async fn start(password: Option<&str>) -> Option<OwnRedis> {
        let port = crate::net::free_port();
        let mut command = std::process::Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null());
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return crate::ci::skip_unless_ci(&format!("redis-server not runnable: {e}"));
            }
        };
        let userinfo = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let server = OwnRedis {
            child,
            url: format!("redis://{userinfo}127.0.0.1:{port}"),
        };
        let ping = || async {
            let client = ::redis::Client::open(server.url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        let deadline = tokio::time::Instant::now() + crate::process::PATIENCE;
        while ping().await.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {port} did not answer within {:?}",
                crate::process::PATIENCE
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Some(server)
    }

    /// `redis://[:<password>@]127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server with `SIGSTOP`: connections stay open, nothing is answered.
    pub fn suspend(&self) {
        self.signal("-STOP");
    }

    /// Continues a suspended server (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill {signal} {}", self.child.id());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
