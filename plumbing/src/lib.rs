//! What every binary of the platform shares, once: how an error becomes the one line an
//! operator reads ([`error_line`]), how a time is printed ([`rfc3339`]), how the databases and
//! Redis are chosen, opened and migrated so that a failure names what was tried ([`connect`]),
//! and behind features: argument parsing with JSON usage errors, the flags every binary has and
//! the log set-up (`cli`), request bodies read up to a limit (`http`), the process's Prometheus
//! recorder (`metrics`) and the services' stop signal (`signal`, [`shutdown_signal`]).

#[cfg(feature = "cli")]
pub mod cli;
pub mod connect;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "metrics")]
pub mod metrics;

use std::error::Error;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An error and its causes as one line: the error's own text, then each cause in the
/// `source()` chain whose text the line does not hold yet, joined with `": "`.
///
/// Error types here and in our dependencies (sqlx, redis, `std::io`) often both print their
/// cause (`"database error: {0}"`) and return it from `source()`, so printing every link of the
/// chain repeats the same cause two to four times. Keeping the `Display` texts complete (logs
/// print them with `%err`) and skipping what is already said here gives each cause once.
pub fn error_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `2026-11-30T22:48:17.38Z`: how the binaries print a time, in text and in JSON.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// [`rfc3339`] of a time in Unix milliseconds (as the queue and the deny-list keep them).
pub fn rfc3339_from_unix_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(feature = "signal")]
/// Completes on the first SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: call it (inside the runtime) before the service says
/// it is ready, so that a signal sent after that always finds them; until they exist the
/// default action ends the process at once, without draining anything.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let received = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
                match signal {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot listen for a stop signal");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = received(interrupt) => {}
                () = received(terminate) => {}
            }
            tracing::info!("shutdown signal received");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("starting: {0}")]
        Inner(#[from] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("cannot listen on 127.0.0.1:1: {0}")]
        Bind(#[source] std::io::Error),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("context only")]
    struct Context(#[source] std::io::Error);

    #[test]
    fn each_cause_appears_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let err = Outer::Inner(Inner::Bind(io()));
        assert_eq!(
            error_line(&err),
            "starting: cannot listen on 127.0.0.1:1: Address already in use"
        );
        // A context that does not print its cause gets it appended.
        assert_eq!(
            error_line(&Context(io())),
            "context only: Address already in use"
        );
        let multi = std::io::Error::other("first\nsecond");
        assert_eq!(error_line(&multi), "first second");
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_796_078_897_380_000_000).unwrap();
        assert_eq!(rfc3339(at), "2026-11-30T22:48:17.38Z");
        assert_eq!(
            rfc3339_from_unix_ms(1_796_078_897_380),
            "2026-11-30T22:48:17.38Z"
        );
    }
}
