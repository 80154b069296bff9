//! The SMTP sink: a tiny SMTP server for tests that speaks enough real SMTP over TCP (RFC 5321:
//! greeting, EHLO/HELO, MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT) and
//! keeps every message. With a [`Handshake`] it also speaks TLS: `STARTTLS` (RFC 3207) or
//! implicit TLS from the first byte (`smtps://`). The TLS itself comes from the test (the
//! worker's tests build it with a private CA), so the sink needs nothing but tokio.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A connection the sink speaks SMTP on: TCP, or TLS over it.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// The server side of a TLS handshake on a connection: the secured connection.
pub type Handshake = Arc<
    dyn Fn(
            Box<dyn Connection>,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Connection>>> + Send>>
        + Send
        + Sync,
>;

/// Whether and how the sink speaks TLS.
#[derive(Clone, Default)]
pub enum SinkTls {
    /// Plain SMTP; `STARTTLS` is neither offered nor accepted.
    #[default]
    None,
    /// `STARTTLS` offered in the EHLO reply and performed with this handshake.
    StartTls(Handshake),
    /// TLS from the first byte (`smtps://`), before the greeting.
    Implicit(Handshake),
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses, in order.
    pub recipients: Vec<String>,
    /// The DATA section: headers, blank line, body (CRLF line ends).
    pub data: String,
    /// Whether the message came over TLS (after `STARTTLS`, or on an implicit-TLS port).
    pub tls: bool,
}

impl ReceivedMail {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut lines = head.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                let mut value = value.trim().to_owned();
                while let Some(next) = lines.peek() {
                    if next.starts_with([' ', '\t']) {
                        value.push(' ');
                        value.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(value);
            }
        }
        None
    }

    /// The body, decoded when it is quoted-printable.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        let qp = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("quoted-printable"));
        if qp { decode_qp(body) } else { body.to_owned() }
    }
}

/// A running sink on `127.0.0.1:<random port>`; it serves until the test's runtime ends.
pub struct SmtpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every message accepted so far, in order.
    pub messages: Arc<Mutex<Vec<ReceivedMail>>>,
    /// TLS from the first byte: the URL is `smtps://`.
    implicit_tls: bool,
}

impl SmtpSink {
    /// A plain SMTP sink.
    pub async fn start() -> SmtpSink {
        SmtpSink::start_with(SinkTls::None).await
    }

    /// A sink speaking TLS as `tls` says.
    pub async fn start_with(tls: SinkTls) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        let implicit_tls = matches!(tls, SinkTls::Implicit(_));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = session(socket, tls, store).await;
                });
            }
        });
        SmtpSink {
            addr,
            messages,
            implicit_tls,
        }
    }

    /// `smtp://127.0.0.1:<port>`, or `smtps://…` for implicit TLS.
    pub fn url(&self) -> String {
        let scheme = if self.implicit_tls { "smtps" } else { "smtp" };
        format!("{scheme}://{}", self.addr)
    }

    /// A copy of the messages accepted so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.messages.lock().unwrap().clone()
    }
}

/// Writes one reply and flushes it (a TLS stream holds written records until flushed).
async fn reply(
    connection: &mut BufReader<Box<dyn Connection>>,
    text: &[u8],
) -> std::io::Result<()> {
    connection.write_all(text).await?;
    connection.flush().await
}

async fn session(
    socket: tokio::net::TcpStream,
    tls: SinkTls,
    store: Arc<Mutex<Vec<ReceivedMail>>>,
) -> std::io::Result<()> {
    let mut connection: Box<dyn Connection> = Box::new(socket);
    let mut secure = false;
    if let SinkTls::Implicit(handshake) = &tls {
        connection = handshake(connection).await?;
        secure = true;
    }
    let mut lines = BufReader::new(connection);
    reply(&mut lines, b"220 sink.test ESMTP test sink\r\n").await?;
    let mut from = String::new();
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let offers_starttls = matches!(tls, SinkTls::StartTls(_)) && !secure;
        let answer: &[u8] = if upper.starts_with("EHLO") && offers_starttls {
            b"250-sink.test greets you\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SIZE 10485760\r\n"
        } else if upper.starts_with("EHLO") {
            b"250-sink.test greets you\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if upper == "STARTTLS" {
            let SinkTls::StartTls(handshake) = &tls else {
                reply(&mut lines, b"502 5.5.1 STARTTLS not offered\r\n").await?;
                continue;
            };
            if secure {
                reply(&mut lines, b"503 5.5.1 TLS already active\r\n").await?;
                continue;
            }
            reply(&mut lines, b"220 2.0.0 Ready to start TLS\r\n").await?;
            // RFC 3207: nothing may follow STARTTLS in the same packet, and the session starts
            // over (the client says EHLO again).
            let plain = lines.into_inner();
            lines = BufReader::new(handshake(plain).await?);
            secure = true;
            from.clear();
            recipients.clear();
            continue;
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command["MAIL FROM:".len()..]);
            recipients.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            recipients.push(address(&command["RCPT TO:".len()..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            reply(&mut lines, b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let content = line.trim_end_matches(['\r', '\n']);
                if content == "." {
                    break;
                }
                data.push_str(content.strip_prefix('.').unwrap_or(content));
                data.push_str("\r\n");
            }
            store.lock().unwrap().push(ReceivedMail {
                from: from.clone(),
                recipients: std::mem::take(&mut recipients),
                data,
                tls: secure,
            });
            b"250 OK: queued\r\n"
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            reply(&mut lines, b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            b"502 Command not implemented\r\n"
        };
        reply(&mut lines, answer).await?;
    }
}

/// `<a@b> SIZE=…` → `a@b`.
fn address(argument: &str) -> String {
    let argument = argument.trim();
    match (argument.find('<'), argument.find('>')) {
        (Some(start), Some(end)) if start < end => argument[start + 1..end].to_owned(),
        _ => argument.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// Decodes a quoted-printable body (RFC 2045 §6.7: soft line breaks and `=XX`).
pub fn decode_qp(body: &str) -> String {
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = joined.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
