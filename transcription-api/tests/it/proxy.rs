//! A TCP proxy the test controls, in front of Redis or PostgreSQL: cut (live connections
//! dropped, new ones closed at once) and restored, or paused, so a backend goes away and comes
//! back without touching the shared server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use job_queue::{QueueConfig, RedisQueue, ReliableQueue};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::signing_key;

/// A TCP proxy to Redis or PostgreSQL that can be cut (dropping live connections) and restored:
/// the backend going away and coming back, without touching the shared server.
pub struct SwitchableProxy {
    pub addr: std::net::SocketAddr,
    upstream: String,
    up: Arc<AtomicBool>,
    /// While `true`, live connections forward nothing (bytes wait in the proxy), like a
    /// `kill -STOP`ped Redis; set back to `false`, everything held is delivered in order.
    paused: tokio::sync::watch::Sender<bool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The accept loop; `None` while [`stop_listening`](Self::stop_listening) holds the port
    /// closed.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl SwitchableProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> SwitchableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (paused, _) = tokio::sync::watch::channel(false);
        let proxy = SwitchableProxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            up: Arc::new(AtomicBool::new(true)),
            paused,
            links: Arc::default(),
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// Runs the accept loop on `listener`.
    fn serve(&self, listener: TcpListener) {
        let (up, links, paused) = (self.up.clone(), self.links.clone(), self.paused.clone());
        let upstream = self.upstream.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let upstream = upstream.clone();
                let paused = paused.clone();
                links.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, paused.subscribe()),
                            pump(server_read, client_write, paused.subscribe()),
                        );
                    }
                }));
            }
        });
        *self.accept.lock().unwrap() = Some(accept);
    }

    /// Drops every live connection and closes new ones at once.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// The backend's host goes down: every live connection is closed and, once this returns,
    /// the port is closed too, so a new connection is refused (as by a stopped server).
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

    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// `redis://` to the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for SwitchableProxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
    }
}

/// Copies `from` to `to`, holding the bytes while `paused` is `true`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A Redis queue behind a proxy, under a random prefix (deleted at the end).
pub async fn redis_behind_proxy()
-> Option<(SwitchableProxy, Arc<dyn ReliableQueue>, RedisQueue, String)> {
    let url = test_support::redis::reachable_url().await?;
    let upstream = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = SwitchableProxy::start(upstream).await;
    let prefix = format!("api-it-{}", Uuid::new_v4().simple());
    let through_proxy =
        RedisQueue::connect(&proxy.url(), &prefix, signing_key(), QueueConfig::default())
            .await
            .unwrap();
    let direct = RedisQueue::connect(&url, &prefix, signing_key(), QueueConfig::default())
        .await
        .unwrap();
    Some((proxy, Arc::new(through_proxy), direct, prefix))
}

/// Deletes the test's Redis keys under `prefix:`.
pub async fn delete_prefix(prefix: &str) {
    if let Some(url) = test_support::redis::reachable_url().await {
        test_support::redis::delete_prefix(&url, prefix).await;
    }
}
