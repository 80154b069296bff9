//! The storage conformance suite: the same checks against SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use auth_server::keys::{KeyAlgorithm, KeyState};
use auth_server::store::{
    self, Client, FamilyOwner, GrantType, KeyRecord, RefreshFamily, RefreshTokenRecord, Scope,
    Store, StoreError, User,
};
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

fn user(id: &str, email: &str, permissions: &[&str]) -> User {
    User {
        id: id.to_owned(),
        email: email.to_owned(),
        password_hash: "$argon2id$stub".to_owned(),
        permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
        created_at: OffsetDateTime::now_utc(),
    }
}

fn token(hash: u8, family: &str, parent: Option<u8>) -> RefreshTokenRecord {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    RefreshTokenRecord {
        token_hash: vec![hash; 32],
        family_id: family.to_owned(),
        parent_hash: parent.map(|p| vec![p; 32]),
        issued_at: now,
        expires_at: now + time::Duration::days(30),
        used_at: None,
        access_jti: None,
        access_expires_at: None,
    }
}

/// Users, refresh families, the deny-list and login throttling.
async fn sessions_conformance(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.create_scope(&scope("a")).await.unwrap();
    store.create_scope(&scope("b")).await.unwrap();

    // Users: e-mail unique ignoring case, permissions must be scopes.
    store
        .create_user(&user("u1", "Ada@Example.com", &["a"]))
        .await
        .unwrap();
    assert!(matches!(
        store.create_user(&user("u2", "ada@example.COM", &[])).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store
            .create_user(&user("u3", "x@example.com", &["nope"]))
            .await,
        Err(StoreError::UnknownScope(_))
    ));
    assert!(store.find_user("u3").await.unwrap().is_none());
    let found = store
        .find_user_by_email("ADA@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "u1");
    assert_eq!(
        found.email, "Ada@Example.com",
        "the e-mail is kept as entered"
    );
    assert_eq!(found.password_hash, "$argon2id$stub");
    assert!(
        store
            .set_user_permissions("u1", &["a".to_owned(), "b".to_owned()].into())
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .find_user("u1")
            .await
            .unwrap()
            .unwrap()
            .permissions
            .len(),
        2
    );
    assert!(
        !store
            .set_user_permissions("missing", &BTreeSet::new())
            .await
            .unwrap()
    );
    assert!(
        store
            .set_user_password_hash("u1", "$argon2id$new")
            .await
            .unwrap()
    );
    assert!(store.set_user_disabled("u1", true).await.unwrap());
    let u1 = store.find_user("u1").await.unwrap().unwrap();
    assert!(u1.disabled && u1.password_hash == "$argon2id$new");
    store
        .create_user(&user("u4", "bo@example.com", &[]))
        .await
        .unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 2);

    // Refresh families: single use, atomic rotation, revocation by family, client or user.
    store.create_client(&client("c1", &["a"])).await.unwrap();
    let family = RefreshFamily {
        id: "f1".to_owned(),
        client_id: "c1".to_owned(),
        user_id: "u1".to_owned(),
        scope: "a".to_owned(),
        created_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        revoked_at: None,
    };
    store
        .create_refresh_family(&family, &token(1, "f1", None))
        .await
        .unwrap();
    let first = store.find_refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(first.family, family);
    assert!(first.token.used_at.is_none() && first.successor.is_none());
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    assert!(
        store
            .rotate_refresh_token(&[1; 32], at, &token(2, "f1", Some(1)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .rotate_refresh_token(&[1; 32], at, &token(3, "f1", Some(1)))
            .await
            .unwrap(),
        "single use"
    );
    assert!(
        store.find_refresh_token(&[3; 32]).await.unwrap().is_none(),
        "a refused rotation writes nothing"
    );
    let used = store.find_refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(used.token.used_at, Some(at));
    assert_eq!(used.successor.unwrap().token_hash, vec![2; 32]);
    assert!(store.revoke_refresh_family("f1", at).await.unwrap());
    assert!(!store.revoke_refresh_family("f1", at).await.unwrap());
    assert_eq!(
        store
            .find_refresh_token(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .family
            .revoked_at,
        Some(at)
    );
    for (id, hash) in [("f2", 4), ("f3", 5)] {
        let family = RefreshFamily {
            id: id.to_owned(),
            ..family.clone()
        };
        store
            .create_refresh_family(&family, &token(hash, id, None))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .revoke_refresh_families(FamilyOwner::User("u1"), at)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .revoke_refresh_families(FamilyOwner::Client("c1"), at)
            .await
            .unwrap(),
        0
    );
    assert!(store.delete_user("u1").await.unwrap());
    assert!(
        store.find_refresh_token(&[4; 32]).await.unwrap().is_none(),
        "families go with their user"
    );

    // Deny-list: entries live until their expiry, expired ones are purged on insert.
    store.deny_access_token("j1", 1_000, 500).await.unwrap();
    assert!(store.is_access_token_denied("j1", 999).await.unwrap());
    assert!(!store.is_access_token_denied("j1", 1_001).await.unwrap());
    assert!(!store.is_access_token_denied("j2", 0).await.unwrap());
    store.deny_access_token("j1", 2_000, 500).await.unwrap();
    assert!(
        store.is_access_token_denied("j1", 1_500).await.unwrap(),
        "re-denying extends"
    );

    // Login throttling: counts per key within a window, locks, clears.
    assert_eq!(store.record_login_failure("k", 100, 0).await.unwrap(), 1);
    assert_eq!(store.record_login_failure("k", 101, 0).await.unwrap(), 2);
    assert_eq!(
        store.record_login_failure("other", 101, 0).await.unwrap(),
        1
    );
    assert_eq!(
        store.record_login_failure("k", 5_000, 1_000).await.unwrap(),
        1,
        "a new window restarts the count"
    );
    assert_eq!(store.login_locked_until("k", 5_000).await.unwrap(), None);
    store.lock_login("k", 5_060).await.unwrap();
    assert_eq!(
        store.login_locked_until("k", 5_000).await.unwrap(),
        Some(5_060)
    );
    assert_eq!(
        store.login_locked_until("k", 5_060).await.unwrap(),
        None,
        "the lock has expired"
    );
    store.clear_login_failures("k").await.unwrap();
    assert_eq!(
        store.record_login_failure("k", 5_001, 1_000).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn sqlite_sessions_conformance() {
    let db = TestDb::sqlite();
    sessions_conformance(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_sessions_conformance() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    sessions_conformance(store::connect(&db.url).await.unwrap()).await;
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
