//! [`closed_port`] refuses connections for as long as it lives, and no other socket gets the
//! port meanwhile; [`TcpProxy`] in each of its states, in front of an echo server: forwarding,
//! cut (live connections dropped, new ones closed), stalled (nothing forwarded, then delivered
//! in order) and closed (connections refused), and back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use test_support::net::{TcpProxy, closed_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for what must happen; only a broken proxy takes this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// An echo server on 127.0.0.1:0: writes back every byte it reads.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends `text` and reads as many bytes back.
async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    stream.write_all(text).await.unwrap();
    let mut answer = vec![0u8; text.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    answer
}

/// Whether the peer closed the connection (end of stream or a reset) within [`PATIENCE`].
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn a_closed_port_refuses_connections_and_is_given_to_no_other_socket() {
    let closed = closed_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], closed.port()));
    assert_eq!(closed.to_string(), closed.port().to_string());
    for _ in 0..3 {
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    // No other socket gets it, not even one binding that very port with SO_REUSEADDR (which
    // tokio and std set for a listener).
    let taken = TcpListener::bind(addr).await.unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn forwards_both_ways() {
    let proxy = TcpProxy::start(echo_server().await.to_string()).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"ping").await, b"ping");
}

#[tokio::test]
async fn a_cut_drops_live_connections_and_closes_new_ones_until_restored() {
    let proxy = TcpProxy::start(echo_server().await.to_string()).await;
    let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut live, b"before").await, b"before");

    proxy.cut();
    assert!(
        closed_by_peer(&mut live).await,
        "the live connection is dropped"
    );
    let mut new = TcpStream::connect(proxy.addr())
        .await
        .expect("a cut proxy still accepts");
    assert!(closed_by_peer(&mut new).await, "and closes at once");

    proxy.restore();
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut after, b"after").await, b"after");
}

#[tokio::test]
async fn a_stall_holds_every_byte_until_resumed_then_delivers_them_in_order() {
    let proxy = TcpProxy::start(echo_server().await.to_string()).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"warm").await, b"warm");

    proxy.stall();
    for part in [&b"one "[..], b"two ", b"three"] {
        stream.write_all(part).await.unwrap();
    }
    let mut new = TcpStream::connect(proxy.addr())
        .await
        .expect("a stalled proxy accepts");
    new.write_all(b"new").await.unwrap();
    // Absence can only be observed over a window; a slow machine can make this pass wrongly,
    // never fail wrongly.
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte))
            .await
            .is_err(),
        "nothing comes back while stalled"
    );

    proxy.resume();
    let mut answer = vec![0u8; "one two three".len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut answer))
        .await
        .expect("the held bytes after resume")
        .unwrap();
    assert_eq!(answer, b"one two three");
    let mut answer = [0u8; 3];
    tokio::time::timeout(PATIENCE, new.read_exact(&mut answer))
        .await
        .expect("the connection accepted while stalled forwards too")
        .unwrap();
    assert_eq!(&answer, b"new");
}

#[tokio::test]
async fn stop_listening_refuses_connections_until_it_listens_again_on_the_same_port() {
    let proxy = TcpProxy::start(echo_server().await.to_string()).await;
    let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut live, b"up").await, b"up");

    proxy.stop_listening().await;
    assert!(
        closed_by_peer(&mut live).await,
        "the live connection is dropped"
    );
    let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    proxy.listen_again().await;
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut again, b"again").await, b"again");
}

#[tokio::test]
async fn in_front_of_a_url_points_the_url_at_the_proxy() {
    let upstream = echo_server().await;
    let url = format!("redis://:pw@{upstream}/3");
    let (proxy, proxied) = TcpProxy::in_front_of(&url).await.unwrap();
    assert_eq!(proxied, format!("redis://:pw@{}/3", proxy.addr()));
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"through").await, b"through");
    assert!(TcpProxy::in_front_of("rediss://h:6379").await.is_none());
}
