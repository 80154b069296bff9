//! Local TCP for fault tests: a port that refuses connections ([`closed_port`]), a free port
//! ([`free_port`]) and [`TcpProxy`], a
//! proxy in front of a shared server (Redis, PostgreSQL) that the test cuts, stalls or closes,
//! so that server goes away for one process without touching the server the other tests share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A loopback port on which a connection is refused, reserved for as long as the value lives:
/// a socket is bound to `127.0.0.1:<port>` and never listens, so the kernel answers a connection
/// with a reset and gives the port to no other socket (a port merely bound once and released
/// can be handed to another test's server in the meantime). Displays as the port number.
pub struct ClosedPort {
    port: u16,
    _reserved: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for ClosedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.port)
    }
}

/// A [`ClosedPort`]: keep it for as long as the test needs the port refused.
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let port = socket.local_addr().unwrap().port();
    ClosedPort {
        port,
        _reserved: socket,
    }
}

/// A loopback port free at the time of the call (bound once, then released), for a server the
/// test starts as a process of its own.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A TCP proxy on `127.0.0.1:<random port>` forwarding every connection to one upstream
/// `host:port`, in four states the test switches between:
///
/// * forwarding (the start);
/// * cut ([`cut`](Self::cut)): live connections are dropped and new ones are accepted and
///   closed at once, as when the server went away; [`restore`](Self::restore) forwards again;
/// * stalled ([`stall`](Self::stall)): connections stay open and new ones are accepted, but no
///   byte is forwarded in either direction, like a `SIGSTOP`ped server or a dead network path;
///   [`resume`](Self::resume) delivers what was held, in order;
/// * closed ([`stop_listening`](Self::stop_listening)): live connections are dropped and the
///   port is closed, so a connection is refused as by a stopped host;
///   [`listen_again`](Self::listen_again) reopens the same port.
///
/// Dropping the proxy drops every connection and closes the port.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: String,
    up: Arc<AtomicBool>,
    stalled: watch::Sender<bool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The accept loop; `None` while the port is closed.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stalled, _) = watch::channel(false);
        let proxy = TcpProxy {
            addr: listener.local_addr().unwrap(),
            upstream: upstream.into(),
            up: Arc::new(AtomicBool::new(true)),
            stalled,
            links: Arc::default(),
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// A proxy in front of the server `url` names, and `url` pointed at the proxy
    /// ([`proxied_url`]); `None` for a URL a TCP proxy cannot stand in for.
    pub async fn in_front_of(url: &str) -> Option<(TcpProxy, String)> {
        let upstream = upstream_of(url)?;
        let proxy = TcpProxy::start(upstream).await;
        let proxied = proxied_url(url, proxy.addr())?;
        Some((proxy, proxied))
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the accept loop on `listener`.
    fn serve(&self, listener: TcpListener) {
        let (up, links, stalled) = (self.up.clone(), self.links.clone(), self.stalled.clone());
        let upstream = self.upstream.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let upstream = upstream.clone();
                let stalled = stalled.clone();
                links.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, stalled.subscribe()),
                            pump(server_read, client_write, stalled.subscribe()),
                        );
                    }
                }));
            }
        });
        *self.accept.lock().unwrap() = Some(accept);
    }

    /// Drops every live connection and closes new ones at once, until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Forwards new connections again after [`cut`](Self::cut).
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// From now on nothing is forwarded in either direction; connections stay open and new
    /// ones are accepted.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards again after [`stall`](Self::stall), held bytes first, in order.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// The upstream's host goes down: every live connection is closed and, once this returns,
    /// the port is closed too, so a new connection is refused.
    pub async fn stop_listening(&self) {
        self.up.store(false, Ordering::SeqCst);
        let accept = self.accept.lock().unwrap().take();
        let links: Vec<_> = self.links.lock().unwrap().drain(..).collect();
        // A cancelled task's future (and its sockets) is dropped before its handle resolves.
        for task in accept.into_iter().chain(links) {
            task.abort();
            let _ = task.await;
        }
    }

    /// After [`stop_listening`](Self::stop_listening): listens on the same port again and
    /// forwards.
    pub async fn listen_again(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
        self.restore();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
    }
}

/// Copies `from` to `to`, holding the bytes while `stalled` is `true`.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut stalled: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|stalled| !stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The default port of the URL schemes a TCP proxy can stand in for: plain `redis://` and
/// PostgreSQL; `None` for any other (`rediss://` is TLS to a named host, `redis+unix://` a
/// socket file).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "redis" => Some(6379),
        "postgres" | "postgresql" => Some(5432),
        _ => None,
    }
}

/// `host:port` of the server `url` names (the scheme's default port when it has none); `None`
/// for a URL a TCP proxy cannot stand in for (see [`proxied_url`]).
pub fn upstream_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let port = url.port().unwrap_or(default_port(url.scheme())?);
    Some(format!("{}:{port}", url.host_str()?))
}

/// `url` with its host and port replaced by `proxy`'s, keeping the user, password, database
/// and query; `None` unless `url` is `redis://`, `postgres://` or `postgresql://` with a host
/// (not TLS to a named host, not a Unix socket).
pub fn proxied_url(url: &str, proxy: SocketAddr) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    default_port(url.scheme())?;
    url.host_str()?;
    let mut proxied = url.clone();
    proxied.set_host(Some(&proxy.ip().to_string())).ok()?;
    proxied.set_port(Some(proxy.port())).ok()?;
    Some(proxied.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_url_keeps_the_password_and_the_database() {
        let proxy = "127.0.0.1:4242".parse().unwrap();
        for (upstream, proxied) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:4242"),
            ("redis://localhost", "redis://127.0.0.1:4242"),
            (
                "redis://:s3cret@redis.internal:6380/3",
                "redis://:s3cret@127.0.0.1:4242/3",
            ),
            (
                "redis://app:pw@10.0.0.5/2?protocol=resp3",
                "redis://app:pw@127.0.0.1:4242/2?protocol=resp3",
            ),
            (
                "postgres://postgres:pw@db.internal/platform?sslmode=disable",
                "postgres://postgres:pw@127.0.0.1:4242/platform?sslmode=disable",
            ),
        ] {
            assert_eq!(proxied_url(upstream, proxy).as_deref(), Some(proxied));
        }
        for unsupported in ["rediss://h:6379", "redis+unix:///tmp/redis.sock"] {
            assert_eq!(proxied_url(unsupported, proxy), None);
        }
    }

    #[test]
    fn the_upstream_is_the_urls_host_and_port() {
        for (url, upstream) in [
            ("redis://127.0.0.1:6379", Some("127.0.0.1:6379")),
            ("redis://localhost", Some("localhost:6379")),
            (
                "redis://:s3cret@redis.internal:6380/3",
                Some("redis.internal:6380"),
            ),
            (
                "postgres://postgres@127.0.0.1/postgres",
                Some("127.0.0.1:5432"),
            ),
            ("rediss://h:6379", None),
            ("redis+unix:///tmp/redis.sock", None),
        ] {
            assert_eq!(upstream_of(url).as_deref(), upstream, "{url}");
        }
    }
}
