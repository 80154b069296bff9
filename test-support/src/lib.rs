//! Shared by the tests of every crate (a dev-dependency; `auth-server` reaches it through its
//! `testing` feature): the one rule for "are we in CI", and the Redis probe that applies it.
//!
//! Outside CI a test whose server is unreachable prints `skipping: …` and passes; in CI it
//! fails, so a missing PostgreSQL or Redis can never turn a CI run green by skipping.

use std::time::Duration;

/// Where tests find Redis when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// CI is on when `CI` is set to anything but empty, `0` or `false` (any case): `CI=true`,
/// `CI=1` and `CI=yes` all count.
pub fn in_ci() -> bool {
    ci_value_means_on(std::env::var("CI").ok().as_deref())
}

/// The rule of [`in_ci`] on a value of `CI` (`None`: unset).
pub fn ci_value_means_on(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("" | "0") => false,
        Some(value) => !value.eq_ignore_ascii_case("false"),
    }
}

/// The Redis URL for tests (`REDIS_URL`, default [`DEFAULT_REDIS_URL`]) if Redis answers a
/// `PING` within 3 s; `None` with a `skipping:` message outside CI when it does not. In CI an
/// unreachable Redis fails the test.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let reason = match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(err)) => err.to_string(),
        Err(_) => "no answer within 3 s".to_owned(),
    };
    skip_unless_ci(&format!("Redis unreachable at {url}: {reason}"))
}

/// `None` with `skipping: {why}` on stderr outside CI; in CI the test fails with `why`.
#[allow(clippy::panic)] // the point: a test that cannot run in CI fails there
pub fn skip_unless_ci<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("required when CI is on: {why}");
    }
    eprintln!("skipping: {why}");
    None
}

#[cfg(test)]
mod tests {
    use super::ci_value_means_on;

    #[test]
    fn ci_is_on_unless_unset_empty_zero_or_false() {
        for off in [
            None,
            Some(""),
            Some(" "),
            Some("0"),
            Some("false"),
            Some("FALSE"),
        ] {
            assert!(!ci_value_means_on(off), "{off:?}");
        }
        for on in [
            Some("true"),
            Some("1"),
            Some("yes"),
            Some("TRUE"),
            Some("on"),
        ] {
            assert!(ci_value_means_on(on), "{on:?}");
        }
    }
}
