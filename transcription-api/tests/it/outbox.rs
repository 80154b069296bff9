//! The record and its job stay together: a queue that is down at request time gives 503 and
//! leaves nothing behind; a crash between commit and enqueue is repaired by the outbox relay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use job_queue::jobs::TRANSCRIBE_QUEUE;
use job_queue::{QueueConfig, RedisQueue, ReliableQueue};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use transcription_api::store::Report;
use transcription_api::submissions::OutboxConfig;
use uuid::Uuid;

use crate::helpers::*;

/// A TCP proxy to Redis that can be cut (dropping live connections) and restored: Redis going
/// away and coming back, without touching the shared server.
struct SwitchableProxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl SwitchableProxy {
    async fn start(upstream: String) -> SwitchableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links) = (up.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let upstream = upstream.clone();
                    links.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        SwitchableProxy {
            addr,
            up,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for SwitchableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A Redis queue behind a proxy, under a random prefix (deleted at the end).
async fn redis_behind_proxy()
-> Option<(SwitchableProxy, Arc<dyn ReliableQueue>, RedisQueue, String)> {
    let url = auth_server::testing::redis_url().await?;
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

async fn delete_prefix(prefix: &str) {
    if let Some(url) = auth_server::testing::redis_url().await {
        auth_server::testing::delete_redis_prefix(&url, prefix).await;
    }
}

#[tokio::test]
async fn queue_down_gives_503_with_retry_after_and_no_record_then_recovers() {
    let Some((proxy, queue, direct, prefix)) = redis_behind_proxy().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        queue: Some(queue),
        outbox: OutboxConfig {
            enqueue_timeout: Duration::from_secs(2),
            relay_interval: Duration::from_secs(3600),
            ..OutboxConfig::default()
        },
        ..Options::default()
    })
    .await;
    let token = api.token(&[WRITE, READ]).await;

    proxy.cut();
    let response = api.submit(&token, &sample_body()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "5");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "service_unavailable"
    );
    let listed: Value = api
        .get(&token, "/transcriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"],
        Value::Array(vec![]),
        "no half-written record"
    );
    assert_eq!(api.transcriptions.store().outbox_len().await.unwrap(), 0);
    let ready = api.http.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    let mut accepted = None;
    // The connection manager reconnects on the next command; allow it a few attempts.
    for _ in 0..10 {
        let response = api.submit(&token, &sample_body()).await;
        if response.status() == StatusCode::ACCEPTED {
            accepted = Some(response.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let accepted = accepted.expect("accepted once Redis is back");
    let job = direct
        .reserve(TRANSCRIBE_QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .expect("the job is in Redis");
    assert_eq!(job.envelope.id.as_str(), accepted["id"].as_str().unwrap());
    drop(api);
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn the_relay_queues_a_record_whose_enqueue_never_happened() {
    let api = TestApi::spawn().await;
    let store = api.transcriptions.store().clone();
    // What a crash right after the commit leaves: the record and its outbox entry, due now.
    let orphan = record("someone");
    store.insert(&orphan, None, 0).await.unwrap();
    // A record whose job was evidently queued (a worker reported on it) but whose entry stayed.
    let started = record("someone");
    store.insert(&started, None, 0).await.unwrap();
    store
        .report(started.id, &Report::Processing, OffsetDateTime::now_utc())
        .await
        .unwrap();
    // An entry still within its grace period (a request in flight) is left alone.
    let in_flight = record("someone");
    store.insert(&in_flight, None, i64::MAX).await.unwrap();

    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 2);
    let stats = api.queue.stats(TRANSCRIBE_QUEUE).await.unwrap();
    assert_eq!(stats.ready, 1, "only the orphan is queued");
    let job = api
        .queue
        .reserve(TRANSCRIBE_QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.envelope.id.as_str(), orphan.id.to_string());
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 0);
}

#[tokio::test]
async fn the_relay_keeps_an_entry_while_the_queue_is_down_and_queues_it_once_back() {
    let Some((proxy, queue, direct, prefix)) = redis_behind_proxy().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        queue: Some(queue),
        outbox: OutboxConfig {
            enqueue_timeout: Duration::from_secs(2),
            // Entries are due at once and a failed claim is retried on the next pass.
            grace: Duration::ZERO,
            relay_interval: Duration::from_secs(3600),
        },
        ..Options::default()
    })
    .await;
    let store = api.transcriptions.store().clone();
    let orphan = record("someone");
    store.insert(&orphan, None, 0).await.unwrap();

    proxy.cut();
    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 0);
    assert_eq!(
        store.outbox_len().await.unwrap(),
        1,
        "the entry survives the outage"
    );

    proxy.restore();
    let mut settled = 0;
    for _ in 0..10 {
        settled = api.transcriptions.relay_once().await.unwrap();
        if settled == 1 {
            break;
        }
    }
    assert_eq!(settled, 1);
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    let job = direct
        .reserve(TRANSCRIBE_QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.envelope.id.as_str(), orphan.id.to_string());
    drop(api);
    delete_prefix(&prefix).await;
}
