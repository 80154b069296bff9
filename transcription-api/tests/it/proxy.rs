//! The test's Redis queue behind a [`TcpProxy`] (test-support) the test can cut, stall and
//! restore, so the backend goes away and comes back without touching the shared server.

use std::sync::Arc;

use job_queue::{QueueConfig, RedisQueue, ReliableQueue};
use test_support::net::TcpProxy;
use uuid::Uuid;

use crate::helpers::signing_key;

/// A Redis queue behind a proxy, under a random prefix (deleted at the end).
pub async fn redis_behind_proxy() -> Option<(TcpProxy, Arc<dyn ReliableQueue>, RedisQueue, String)>
{
    let url = test_support::redis::reachable_url().await?;
    let (proxy, proxied) = TcpProxy::in_front_of(&url)
        .await
        .expect("REDIS_URL names a host a TCP proxy can stand in for");
    let prefix = format!("api-it-{}", Uuid::new_v4().simple());
    let through_proxy =
        RedisQueue::connect(&proxied, &prefix, signing_key(), QueueConfig::default())
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
