//! Request bodies read up to a limit, for the handlers that take a body themselves (form and
//! JSON bodies whose size is part of the contract: 413 beyond it). Each service maps
//! [`BodyError`] to its own error answer.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than `limit` bytes: declared so in `Content-Length` (decided before
    /// reading anything) or found so while reading (a chunked body, or a client that declared
    /// less than it sends). Answered with 413 (RFC 9110 §15.5.14).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read to its end (the client went away or sent a broken chunk).
    #[error("could not read the request body")]
    Unreadable,
}

/// Reads a request body of at most `limit` bytes. A `Content-Length` above the limit is refused
/// before any byte is read; otherwise reading stops at the first byte past the limit.
///
/// # Errors
///
/// [`BodyError::TooLarge`] beyond `limit`, [`BodyError::Unreadable`] when the body breaks off.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(_) => Err(BodyError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    fn declaring(length: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(length).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn reads_up_to_the_limit() {
        let read = read_body(&declaring("4"), Body::from("abcd"), 4).await;
        assert_eq!(read, Ok(Bytes::from_static(b"abcd")));
        let undeclared = read_body(&HeaderMap::new(), Body::from("abcd"), 4).await;
        assert_eq!(undeclared, Ok(Bytes::from_static(b"abcd")));
    }

    #[tokio::test]
    async fn refuses_a_declared_length_over_the_limit_before_reading() {
        // The body itself is short: only the declared length can have refused it.
        let read = read_body(&declaring("5"), Body::from("ab"), 4).await;
        assert_eq!(read, Err(BodyError::TooLarge { limit: 4 }));
    }

    #[tokio::test]
    async fn stops_at_the_first_byte_past_the_limit() {
        let undeclared = read_body(&HeaderMap::new(), Body::from("abcde"), 4).await;
        assert_eq!(undeclared, Err(BodyError::TooLarge { limit: 4 }));
        let understated = read_body(&declaring("3"), Body::from("abcde"), 4).await;
        assert_eq!(understated, Err(BodyError::TooLarge { limit: 4 }));
    }

    /// A client that declares 10 bytes, sends 3 and hangs up: the handler's read fails.
    #[tokio::test]
    async fn a_body_that_breaks_off_is_unreadable() {
        use tokio::io::AsyncWriteExt;

        let (read_tx, mut read_rx) = tokio::sync::mpsc::channel(1);
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap, body: Body| async move {
                let _ = read_tx.send(read_body(&headers, body, 64).await).await;
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        drop(client);
        assert_eq!(read_rx.recv().await, Some(Err(BodyError::Unreadable)));
        server.abort();
    }
}
