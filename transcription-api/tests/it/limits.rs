//! Body limits of the worker's reports (README, "Errors"): a result report of up to 1 MiB and a
//! notification report of up to 16 KiB are taken whole; one byte more is 413
//! `payload_too_large` and leaves the record as it was. Both ways a body can be framed are
//! covered: a declared `Content-Length` (refused from the head) and a chunked body with no
//! length (refused while it is read).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The contract's limits, written out: the worker and the notifier size their reports by them.
const RESULT_LIMIT: usize = 1024 * 1024;
const NOTIFICATION_LIMIT: usize = 16 * 1024;

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `Content-Length: n`.
    Declared,
    /// `Transfer-Encoding: chunked`: the server learns the size only by reading.
    Chunked,
}

/// A status, the headers as received, and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON\n{}", self.head))
    }
}

/// `PUT path` with a JSON `body` over a connection of its own, sent with
/// `Expect: 100-continue`: the body goes out only once the server asks for it (hyper writes
/// `100 Continue` when the handler starts reading), so a refusal decided from the head alone
/// is read without the server ever facing an unread body.
async fn put(addr: SocketAddr, path: &str, token: &str, body: &[u8], framing: Framing) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let length = match framing {
            Framing::Declared => format!("Content-Length: {}", body.len()),
            Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
        };
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\n{length}\r\nExpect: 100-continue\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let (status, head) = read_head(&mut stream, &mut buffer).await;
        if status != 100 {
            return read_body(&mut stream, buffer, status, head).await;
        }
        let mut wire = Vec::with_capacity(body.len() + 64);
        match framing {
            Framing::Declared => wire.extend_from_slice(body),
            Framing::Chunked => {
                for chunk in body.chunks(64 * 1024) {
                    wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            }
        }
        stream.write_all(&wire).await.unwrap();
        let (status, head) = read_head(&mut stream, &mut buffer).await;
        read_body(&mut stream, buffer, status, head).await
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("an answer within 60 s")
}

/// Reads one response head from `buffer` and the stream; what follows it stays in `buffer`.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no status line in {head}"));
            return (status, head);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a complete head: {buffer:?}");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The body of a response with `head` (`Content-Length`, or none for 204).
async fn read_body(stream: &mut TcpStream, mut body: Vec<u8>, status: u16, head: String) -> Answer {
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed inside the body of\n{head}");
        body.extend_from_slice(&chunk[..n]);
    }
    Answer { status, head, body }
}

/// `{"status":"completed","transcript":"…"}` of exactly `size` bytes.
fn result_report(size: usize) -> (Vec<u8>, String) {
    let frame = r#"{"status":"completed","transcript":""}"#.len();
    let words = "the quick brown fox jumps over the lazy dog. ";
    let transcript: String = words.chars().cycle().take(size - frame).collect();
    let body =
        serde_json::to_vec(&json!({"status": "completed", "transcript": transcript})).unwrap();
    assert_eq!(body.len(), size);
    (body, transcript)
}

/// `{"status":"failed","reason":"…"}` with the longest reason (4096 bytes), padded with JSON
/// whitespace to exactly `size` bytes.
fn notification_report(size: usize) -> (Vec<u8>, String) {
    // The longest reason, ending in a visible character (a reason is stored trimmed).
    let mut reason = "550 5.1.1 mailbox unavailable; ".repeat(200)[..4095].to_owned();
    reason.push('.');
    let mut body = serde_json::to_vec(&json!({"status": "failed", "reason": reason})).unwrap();
    let close = body.pop();
    assert_eq!(close, Some(b'}'));
    body.resize(size - 1, b' ');
    body.push(b'}');
    (body, reason)
}

fn addr(api: &TestApi) -> SocketAddr {
    api.base.trim_start_matches("http://").parse().unwrap()
}

async fn shown(api: &TestApi, token: &str, id: &str) -> Value {
    let response = api.get(token, &format!("/transcriptions/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// 413 with the contract's error body, naming the limit.
fn assert_too_large(answer: &Answer, limit: usize) {
    assert_eq!(answer.status, 413, "{}", answer.head);
    let body = answer.json();
    assert_eq!(body["error"], "payload_too_large", "{body}");
    assert_eq!(
        body["message"],
        format!("The body must not exceed {limit} bytes."),
        "{body}"
    );
}

#[tokio::test]
async fn a_result_report_of_1_mib_is_stored_whole_and_one_byte_more_gets_413() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    for framing in [Framing::Declared, Framing::Chunked] {
        let id = api.create(&user).await.to_string();
        let path = format!("/internal/transcriptions/{id}/result");
        let before = shown(&api, &user, &id).await;

        let (over, _) = result_report(RESULT_LIMIT + 1);
        let answer = put(addr(&api), &path, &worker, &over, framing).await;
        assert_too_large(&answer, RESULT_LIMIT);
        assert_eq!(
            shown(&api, &user, &id).await,
            before,
            "{framing:?}: a refused report changes nothing"
        );

        let (at_limit, transcript) = result_report(RESULT_LIMIT);
        let answer = put(addr(&api), &path, &worker, &at_limit, framing).await;
        assert_eq!(answer.status, 204, "{framing:?}\n{}", answer.head);
        let after = shown(&api, &user, &id).await;
        assert_eq!(after["status"], "completed");
        assert_eq!(
            after["transcript"].as_str().map(str::len),
            Some(transcript.len()),
            "{framing:?}: the whole transcript is kept"
        );
        assert_eq!(after["transcript"], transcript.as_str());
    }
}

#[tokio::test]
async fn a_notification_report_of_16_kib_is_stored_and_one_byte_more_gets_413() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let notifier = api.token(&[REPORT]).await;
    for framing in [Framing::Declared, Framing::Chunked] {
        let id = api.create(&user).await.to_string();
        let path = format!("/internal/transcriptions/{id}/notification");
        let before = shown(&api, &user, &id).await;
        assert_eq!(before["notification"], json!({"status": "pending"}));

        let (over, _) = notification_report(NOTIFICATION_LIMIT + 1);
        let answer = put(addr(&api), &path, &notifier, &over, framing).await;
        assert_too_large(&answer, NOTIFICATION_LIMIT);
        assert_eq!(
            shown(&api, &user, &id).await,
            before,
            "{framing:?}: a refused report changes nothing"
        );

        let (at_limit, reason) = notification_report(NOTIFICATION_LIMIT);
        let answer = put(addr(&api), &path, &notifier, &at_limit, framing).await;
        assert_eq!(answer.status, 204, "{framing:?}\n{}", answer.head);
        assert_eq!(
            shown(&api, &user, &id).await["notification"],
            json!({"status": "failed", "reason": reason}),
            "{framing:?}: the report is kept as sent"
        );
    }
}
