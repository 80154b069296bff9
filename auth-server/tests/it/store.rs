//! The storage conformance suite: the same checks against SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use auth_server::keys::{KeyAlgorithm, KeyState};
use auth_server::store::{self, Client, GrantType, KeyRecord, Scope, Store, StoreError};
use time::OffsetDateTime;

use crate::helpers::TestDb;

fn scope(name: &str) -> Scope {
    Scope {
        name: name.to_owned(),
        description: format!("about {name}"),
        created_at: OffsetDateTime::now_utc(),
    }
}

fn client(id: &str, scopes: &[&str]) -> Client {
    Client {
        id: id.to_owned(),
        name: format!("client {id}"),
        secret_hash: vec![1, 2, 3, 255],
        grant_types: BTreeSet::from([GrantType::ClientCredentials, GrantType::RefreshToken]),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
        created_at: OffsetDateTime::now_utc(),
    }
}

fn key(kid: &str, state: KeyState) -> KeyRecord {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    KeyRecord {
        kid: kid.to_owned(),
        alg: KeyAlgorithm::ES256,
        state,
        created_at: now,
        activated_at: None,
        retired_at: None,
    }
}

async fn conformance(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrations are idempotent");
    store.ping().await.unwrap();

    // Scopes.
    store.create_scope(&scope("b")).await.unwrap();
    store.create_scope(&scope("a")).await.unwrap();
    assert!(matches!(
        store.create_scope(&scope("a")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let names: Vec<String> = store
        .list_scopes()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);

    // Clients, with their scopes, atomically.
    store
        .create_client(&client("c1", &["a", "b"]))
        .await
        .unwrap();
    store.create_client(&client("c2", &[])).await.unwrap();
    assert!(matches!(
        store.create_client(&client("c1", &[])).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(
        matches!(store.create_client(&client("c3", &["a", "nope"])).await, Err(StoreError::UnknownScope(s)) if s == "nope")
    );
    assert!(
        store.find_client("c3").await.unwrap().is_none(),
        "failed create leaves nothing behind"
    );
    let c1 = store.find_client("c1").await.unwrap().unwrap();
    assert_eq!(c1.scopes, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    assert_eq!(c1.secret_hash, vec![1, 2, 3, 255]);
    assert_eq!(
        c1.grant_types,
        BTreeSet::from([GrantType::ClientCredentials, GrantType::RefreshToken])
    );
    assert!(!c1.disabled);
    let c2 = store.find_client("c2").await.unwrap().unwrap();
    assert!(c2.scopes.is_empty());
    let listed: Vec<String> = store
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, ["c1", "c2"]);
    assert!(store.find_client("missing").await.unwrap().is_none());

    assert!(store.set_client_disabled("c1", true).await.unwrap());
    assert!(store.find_client("c1").await.unwrap().unwrap().disabled);
    assert!(!store.set_client_disabled("missing", true).await.unwrap());
    assert!(store.set_client_secret_hash("c1", &[9, 9]).await.unwrap());
    assert_eq!(
        store.find_client("c1").await.unwrap().unwrap().secret_hash,
        vec![9, 9]
    );

    // A scope granted to a client cannot be deleted; once the client is gone it can.
    let in_use = store.delete_scope("a").await;
    assert!(
        matches!(in_use, Err(StoreError::ScopeInUse(_))),
        "{in_use:?}"
    );
    assert!(store.delete_client("c1").await.unwrap());
    assert!(!store.delete_client("c1").await.unwrap());
    assert!(store.delete_scope("a").await.unwrap());
    assert!(!store.delete_scope("a").await.unwrap());

    // Signing keys: one active at a time; activation retires the previous key atomically.
    store
        .insert_key(&key("k1", KeyState::Active))
        .await
        .unwrap();
    assert!(
        store
            .insert_key(&key("k-dup", KeyState::Active))
            .await
            .is_err(),
        "a second active key is refused"
    );
    store.insert_key(&key("k2", KeyState::Next)).await.unwrap();
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    assert!(store.activate_key("k2", at).await.unwrap());
    assert!(
        !store.activate_key("k2", at).await.unwrap(),
        "only a next key can be activated"
    );
    let keys = store.list_keys().await.unwrap();
    let state = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().clone();
    assert_eq!(state("k1").state, KeyState::Retired);
    assert_eq!(state("k1").retired_at, Some(at));
    assert_eq!(state("k2").state, KeyState::Active);
    assert_eq!(state("k2").activated_at, Some(at));
    assert!(!store.activate_key("missing", at).await.unwrap());
    assert!(
        store
            .list_keys()
            .await
            .unwrap()
            .iter()
            .any(|k| k.state == KeyState::Active),
        "failed activation rolls back"
    );
    store.insert_key(&key("k3", KeyState::Next)).await.unwrap();
    assert!(store.retire_key("k3", at).await.unwrap());
    assert!(!store.retire_key("k3", at).await.unwrap());
}

#[tokio::test]
async fn sqlite_store_conformance() {
    let db = TestDb::sqlite();
    conformance(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_store_conformance() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    conformance(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn unsupported_database_urls_are_refused() {
    assert!(matches!(
        store::connect("mysql://localhost/x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}
