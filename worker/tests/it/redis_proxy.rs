//! A TCP proxy in front of the shared Redis that the test can stall: while stalled it keeps
//! every connection open and accepts new ones but forwards no byte in either direction, so the
//! process behind it sees a Redis that accepts TCP and never answers (a `SIGSTOP`ped server,
//! a dead network path), without touching the Redis the other tests share. Resumed, it
//! delivers what it held, in order.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct StallableRedisProxy {
    /// The Redis URL with the proxy's address in place of the server's.
    url: String,
    stalled: watch::Sender<bool>,
    tasks: std::sync::Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl StallableRedisProxy {
    /// Listens on 127.0.0.1:0 and forwards to the server of `redis_url`
    /// (`redis://[user:password@]host:port[/db]`).
    pub async fn start(redis_url: &str) -> StallableRedisProxy {
        let (scheme, rest) = redis_url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, upstream) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (format!("{userinfo}@"), host.to_owned()),
            None => (String::new(), authority.to_owned()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("{scheme}://{userinfo}{addr}/{path}");
        let (stalled, _) = watch::channel(false);
        let tasks: std::sync::Arc<Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let accept = tokio::spawn({
            let (stalled, tasks) = (stalled.clone(), tasks.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let stalled = stalled.clone();
                    tasks.lock().unwrap().push(tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, stalled.subscribe()),
                            pump(server_read, client_write, stalled.subscribe()),
                        );
                    }));
                }
            }
        });
        tasks.lock().unwrap().push(accept);
        StallableRedisProxy {
            url,
            stalled,
            tasks,
        }
    }

    /// The Redis URL that goes through the proxy.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// From now on nothing is forwarded; connections stay open.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards again, held bytes first.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }
}

impl Drop for StallableRedisProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
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
