//! The audio downloader against a local axum server: limits, redirects, refused addresses and
//! schemes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::AsyncWriteExt;
use worker::download::{AudioDownloader, DownloadError, DownloadLimits};

use crate::helpers::{TempDir, serve};

pub const AUDIO: &[u8] = b"RIFF....WAVEfmt fake audio bytes for the tests";
/// What the simulated engine makes of [`AUDIO`] (the engine is deterministic): a literal, so
/// a test never takes the expected transcript from the engine under test.
pub const AUDIO_TRANSCRIPT: &str = "Everyone here postponed an audio transcription over the \
     phone. [simulated transcript of 46 bytes, 7dae042e]";

async fn redirect(Path(n): Path<u32>) -> Response {
    let target = if n == 0 {
        "/audio".to_owned()
    } else {
        format!("/redirect/{}", n - 1)
    };
    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
}

/// The audio host fixture: `/audio`, `/big` (2000 bytes), `/redirect/{n}`, `/status/{code}`,
/// `/slow`.
pub async fn audio_host() -> SocketAddr {
    let router = Router::new()
        .route("/audio", get(|| async { AUDIO }))
        .route("/big", get(|| async { vec![7u8; 2000] }))
        .route("/redirect/{n}", get(redirect))
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move { StatusCode::from_u16(code).unwrap() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    serve(router).await
}

/// A raw HTTP server answering every request with a chunked body of `size` bytes and no
/// Content-Length.
async fn chunked_host(size: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                    .await;
                let chunk = vec![b'a'; 100];
                for _ in 0..size / 100 {
                    let _ = socket.write_all(b"64\r\n").await;
                    let _ = socket.write_all(&chunk).await;
                    let _ = socket.write_all(b"\r\n").await;
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

fn downloader(allow_private: bool, max_bytes: u64) -> AudioDownloader {
    AudioDownloader::new(DownloadLimits {
        max_bytes,
        timeout: Duration::from_millis(1500),
        allow_private,
        ..DownloadLimits::default()
    })
}

async fn fetch(downloader: &AudioDownloader, url: &str) -> Result<Vec<u8>, DownloadError> {
    let dir = TempDir::new("dl");
    let dest = dir.path().join("audio");
    downloader.fetch_to(url, &dest).await?;
    Ok(std::fs::read(dest).unwrap())
}

#[tokio::test]
async fn downloads_audio_when_private_addresses_are_allowed() {
    let host = audio_host().await;
    let bytes = fetch(&downloader(true, 1000), &format!("http://{host}/audio"))
        .await
        .unwrap();
    assert_eq!(bytes, AUDIO);
}

#[tokio::test]
async fn refuses_a_body_over_the_limit_by_content_length() {
    let host = audio_host().await;
    let err = fetch(&downloader(true, 1000), &format!("http://{host}/big"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::TooLarge { limit: 1000 }),
        "{err:?}"
    );
    assert!(err.is_permanent());
}

#[tokio::test]
async fn refuses_a_streamed_body_over_the_limit() {
    let host = chunked_host(5000).await;
    let err = fetch(&downloader(true, 1000), &format!("http://{host}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::TooLarge { .. }), "{err:?}");
    let ok = fetch(&downloader(true, 10_000), &format!("http://{host}/"))
        .await
        .unwrap();
    assert_eq!(ok.len(), 5000);
}

#[tokio::test]
async fn follows_three_redirects_but_not_four() {
    let host = audio_host().await;
    let d = downloader(true, 1000);
    assert_eq!(
        fetch(&d, &format!("http://{host}/redirect/2"))
            .await
            .unwrap(),
        AUDIO
    );
    let err = fetch(&d, &format!("http://{host}/redirect/3"))
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::TooManyRedirects(3)), "{err:?}");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn refuses_private_addresses_after_resolution_unless_allowed() {
    let host = audio_host().await;
    let port = host.port();
    let d = downloader(false, 1000);
    for url in [
        format!("http://127.0.0.1:{port}/audio"),
        format!("http://localhost:{port}/audio"),
        format!("http://[::1]:{port}/audio"),
        format!("http://0.0.0.0:{port}/audio"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/a.mp3".to_owned(),
    ] {
        let err = fetch(&d, &url).await.unwrap_err();
        assert!(
            matches!(err, DownloadError::Blocked { .. }),
            "{url}: {err:?}"
        );
        assert!(err.is_permanent());
    }
    let allowed = fetch(
        &downloader(true, 1000),
        &format!("http://localhost:{port}/audio"),
    )
    .await;
    assert_eq!(allowed.unwrap(), AUDIO);
}

#[tokio::test]
async fn refuses_non_http_schemes_and_bad_urls() {
    let d = downloader(true, 1000);
    for url in [
        "ftp://example.com/a.mp3",
        "file:///etc/passwd",
        "gopher://x/",
    ] {
        let err = fetch(&d, url).await.unwrap_err();
        assert!(matches!(err, DownloadError::Scheme(_)), "{url}: {err:?}");
    }
    let err = fetch(&d, "not a url").await.unwrap_err();
    assert!(matches!(err, DownloadError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn client_errors_are_permanent_and_server_errors_transient() {
    let host = audio_host().await;
    let d = downloader(true, 1000);
    let not_found = fetch(&d, &format!("http://{host}/status/404"))
        .await
        .unwrap_err();
    assert!(matches!(not_found, DownloadError::Status(404)) && not_found.is_permanent());
    let unavailable = fetch(&d, &format!("http://{host}/status/503"))
        .await
        .unwrap_err();
    assert!(matches!(unavailable, DownloadError::Status(503)) && !unavailable.is_permanent());
}

#[tokio::test]
async fn slow_servers_time_out_as_a_transient_error() {
    let host = audio_host().await;
    let err = fetch(&downloader(true, 1000), &format!("http://{host}/slow"))
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Timeout(_)), "{err:?}");
    assert!(!err.is_permanent());
}
