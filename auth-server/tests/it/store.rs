//! The storage conformance suite: the same checks against SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use std::time::Duration;

use auth_server::config::ThrottlePolicy;
use auth_server::model::{
    AuthorizationCodeRecord, BrowserSession, Client, CodeRedemption, Families, FamilyOwner,
    GrantType, IdTokenAlg, KeyAlgorithm, KeyRecord, KeyState, LockRule, LoginAttempt,
    RefreshFamily, RefreshTokenRecord, Release, ReleasedAttempt, Scope, ThrottleKey, User,
};
use auth_server::store::{self, Store, StoreError};
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
        grant_types: BTreeSet::from([
            GrantType::AuthorizationCode,
            GrantType::ClientCredentials,
            GrantType::RefreshToken,
        ]),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
        created_at: OffsetDateTime::now_utc(),
        public: false,
        first_party: true,
        id_token_alg: IdTokenAlg::ES256,
        redirect_uris: vec![
            format!("https://{id}.example/cb"),
            "http://127.0.0.1/cb".to_owned(),
        ],
        post_logout_redirect_uris: vec![format!("https://{id}.example/bye")],
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
    // The OpenID Connect identity scopes are in every migrated database.
    assert_eq!(names, ["a", "b", "email", "openid", "profile"]);

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
        BTreeSet::from([
            GrantType::AuthorizationCode,
            GrantType::ClientCredentials,
            GrantType::RefreshToken
        ])
    );
    assert!(!c1.disabled);
    let expected = client("c1", &[]);
    assert_eq!(
        (
            c1.public,
            c1.first_party,
            c1.id_token_alg,
            &c1.redirect_uris,
            &c1.post_logout_redirect_uris
        ),
        (
            expected.public,
            expected.first_party,
            expected.id_token_alg,
            &expected.redirect_uris,
            &expected.post_logout_redirect_uris
        ),
        "the sign-in fields survive the round trip"
    );
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

    // Signing keys: one active per algorithm at a time; activation retires the previous key of
    // that algorithm atomically.
    store
        .insert_key(&key("k1", KeyState::Active), b"sealed-1")
        .await
        .unwrap();
    assert!(
        store
            .insert_key(&key("k-dup", KeyState::Active), b"sealed")
            .await
            .is_err(),
        "a second active key is refused"
    );
    store
        .insert_key(&key("k2", KeyState::Next), b"sealed-2")
        .await
        .unwrap();
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
    store
        .insert_key(&key("k3", KeyState::Next), b"sealed-3")
        .await
        .unwrap();
    assert!(store.retire_key("k3", at).await.unwrap());
    assert!(!store.retire_key("k3", at).await.unwrap());

    // Sealed private keys: replaced only if still the expected blob.
    let stored = store.list_stored_keys().await.unwrap();
    assert_eq!(stored.len(), 3);
    let sealed = |kid: &str| {
        stored
            .iter()
            .find(|k| k.record.kid == kid)
            .unwrap()
            .sealed_private_key
            .clone()
    };
    assert_eq!(sealed("k2").as_deref(), Some(&b"sealed-2"[..]));
    assert_eq!(stored[0].record, store.list_keys().await.unwrap()[0]);
    assert!(
        !store
            .set_sealed_private_key("k2", None, b"x")
            .await
            .unwrap(),
        "an import never overwrites a stored key"
    );
    assert!(
        !store
            .set_sealed_private_key("k2", Some(b"stale"), b"x")
            .await
            .unwrap()
    );
    assert!(
        store
            .set_sealed_private_key("k2", Some(b"sealed-2"), b"resealed-2")
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_sealed_private_key("missing", None, b"x")
            .await
            .unwrap()
    );

    // Another algorithm has a chain of its own: its active key stands beside the ES256 one,
    // and activating either retires only the active key of the same algorithm.
    let rsa = |kid: &str, state| KeyRecord {
        alg: KeyAlgorithm::RS256,
        ..key(kid, state)
    };
    store
        .insert_key(&rsa("r1", KeyState::Active), b"sealed-r1")
        .await
        .expect("an active RS256 key beside the active ES256 one");
    assert!(
        matches!(
            store
                .insert_key(&rsa("r-dup", KeyState::Active), b"sealed")
                .await,
            Err(StoreError::AlreadyExists(_))
        ),
        "a second active RS256 key is refused"
    );
    store
        .insert_key(&rsa("r2", KeyState::Next), b"sealed-r2")
        .await
        .unwrap();
    store
        .insert_key(&key("k4", KeyState::Next), b"sealed-4")
        .await
        .unwrap();
    assert!(store.activate_key("r2", at).await.unwrap());
    let states = |keys: Vec<KeyRecord>| -> Vec<(String, KeyState)> {
        let mut states: Vec<_> = keys.into_iter().map(|k| (k.kid, k.state)).collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    };
    let expected = |k2, k4, r1, r2| {
        vec![
            ("k1".to_owned(), KeyState::Retired),
            ("k2".to_owned(), k2),
            ("k3".to_owned(), KeyState::Retired),
            ("k4".to_owned(), k4),
            ("r1".to_owned(), r1),
            ("r2".to_owned(), r2),
        ]
    };
    assert_eq!(
        states(store.list_keys().await.unwrap()),
        expected(
            KeyState::Active,
            KeyState::Next,
            KeyState::Retired,
            KeyState::Active
        ),
        "the ES256 chain is untouched"
    );
    assert!(store.activate_key("k4", at).await.unwrap());
    assert_eq!(
        states(store.list_keys().await.unwrap()),
        expected(
            KeyState::Retired,
            KeyState::Active,
            KeyState::Retired,
            KeyState::Active
        ),
        "the RS256 chain is untouched"
    );

    // System secrets: the first insert wins; replaced only if still the expected blob.
    assert_eq!(store.find_system_secret("pepper").await.unwrap(), None);
    assert!(
        store
            .insert_system_secret("pepper", b"first", at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_system_secret("pepper", b"second", at)
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_system_secret("pepper").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert!(
        !store
            .replace_system_secret("pepper", b"stale", b"third")
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_system_secret("pepper", b"first", b"third")
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_system_secrets().await.unwrap(),
        vec![("pepper".to_owned(), b"third".to_vec())]
    );
}

fn user(id: &str, email: &str, permissions: &[&str]) -> User {
    User {
        id: id.to_owned(),
        email: email.to_owned(),
        password_hash: "$argon2id$stub".to_owned(),
        permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
        created_at: OffsetDateTime::now_utc(),
        display_name: Some(format!("Name of {id}")),
        email_verified: true,
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
    // RFC 8265: the NFD, full-width and upper-case spellings are the same user name.
    store
        .create_user(&user("u-nfc", "jos\u{e9}@example.com", &[]))
        .await
        .unwrap();
    for twin in [
        "jose\u{301}@example.com",
        "JOSE\u{301}@EXAMPLE.COM",
        "\u{ff4a}os\u{e9}@example.com",
    ] {
        assert!(
            matches!(
                store.create_user(&user("u-twin", twin, &[])).await,
                Err(StoreError::AlreadyExists(_))
            ),
            "{twin:?}"
        );
        assert_eq!(
            store.find_user_by_email(twin).await.unwrap().unwrap().id,
            "u-nfc",
            "{twin:?}"
        );
    }
    assert!(matches!(
        store
            .create_user(&user("u-space", "a b@example.com", &[]))
            .await,
        Err(StoreError::InvalidIdentifier(_))
    ));
    assert!(
        store
            .find_user_by_email("a b@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.delete_user("u-nfc").await.unwrap());
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
    assert_eq!(
        (u1.display_name.as_deref(), u1.email_verified),
        (Some("Name of u1"), true)
    );
    assert!(store.set_user_profile("u1", None, false).await.unwrap());
    let u1 = store.find_user("u1").await.unwrap().unwrap();
    assert_eq!((u1.display_name, u1.email_verified), (None, false));
    assert!(
        !store
            .set_user_profile("missing", None, false)
            .await
            .unwrap()
    );
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
    assert!(
        !store
            .rotate_refresh_token(&[2; 32], at, &token(6, "f1", Some(2)))
            .await
            .unwrap(),
        "a refresh racing its family's revocation rotates nothing"
    );
    assert!(store.find_refresh_token(&[6; 32]).await.unwrap().is_none());
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
    // One user's families at one client (a withdrawn consent), and the access tokens issued
    // from the families of each kind of owner, unexpired.
    store.create_client(&client("c2", &["a"])).await.unwrap();
    let now = at.unix_timestamp();
    for (id, hash, user_id, client_id) in [
        ("f4", 7, "u1", "c1"),
        ("f5", 8, "u1", "c2"),
        ("f6", 9, "u4", "c1"),
    ] {
        let family = RefreshFamily {
            id: id.to_owned(),
            user_id: user_id.to_owned(),
            client_id: client_id.to_owned(),
            ..family.clone()
        };
        let first = RefreshTokenRecord {
            access_jti: Some(format!("jti-{id}")),
            access_expires_at: Some(now + 600),
            ..token(hash, id, None)
        };
        store.create_refresh_family(&family, &first).await.unwrap();
    }
    let expired = RefreshTokenRecord {
        access_jti: Some("jti-f4-expired".to_owned()),
        access_expires_at: Some(now - 1),
        ..token(10, "f4", Some(7))
    };
    assert!(
        store
            .rotate_refresh_token(&[7; 32], at, &expired)
            .await
            .unwrap()
    );
    let u1_at_c1 = FamilyOwner::UserAtClient {
        user: "u1",
        client: "c1",
    };
    for (families, jtis) in [
        (Families::One("f5"), &["jti-f5"][..]),
        (Families::Of(FamilyOwner::User("u1")), &["jti-f4", "jti-f5"]),
        (
            Families::Of(FamilyOwner::Client("c1")),
            &["jti-f4", "jti-f6"],
        ),
        (Families::Of(u1_at_c1), &["jti-f4"]),
    ] {
        let mut listed = store.family_access_tokens(families, now).await.unwrap();
        listed.sort();
        let expected: Vec<(String, i64)> = jtis
            .iter()
            .map(|jti| ((*jti).to_owned(), now + 600))
            .collect();
        assert_eq!(listed, expected, "{families:?}");
    }
    assert_eq!(
        store.revoke_refresh_families(u1_at_c1, at).await.unwrap(),
        1
    );
    assert_eq!(
        store.revoke_refresh_families(u1_at_c1, at).await.unwrap(),
        0
    );
    for (hash, revoked) in [(7, Some(at)), (8, None), (9, None)] {
        let lookup = store
            .find_refresh_token(&[hash; 32])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lookup.family.revoked_at, revoked, "family of token {hash}");
    }
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

    // Login throttling: reservations count per key within a window, lock at the threshold,
    // and are taken back by releases.
    let rule = |threshold| LockRule {
        threshold,
        base_secs: 60,
        max_secs: 900,
        max_doublings: 4,
    };
    let on = |name: &str, threshold| ThrottleKey {
        key: name.to_owned(),
        rule: rule(threshold),
    };
    let allowed = |numbers: &[i64]| LoginAttempt::Allowed {
        numbers: numbers.to_vec(),
    };
    let reserve = |keys: Vec<ThrottleKey>, now: i64, window_start_after: i64| {
        let store = store.clone();
        async move {
            store
                .reserve_login_attempt(&keys, now, window_start_after)
                .await
                .unwrap()
        }
    };
    let release = |key: &'static str, number: i64, release: Release, threshold: i64| {
        let store = store.clone();
        async move {
            store
                .release_login_attempts(&[ReleasedAttempt {
                    key,
                    number,
                    release,
                    threshold,
                }])
                .await
                .unwrap()
        }
    };
    assert_eq!(reserve(vec![on("k", 3)], 100, 0).await, allowed(&[1]));
    assert_eq!(reserve(vec![on("k", 3)], 101, 0).await, allowed(&[2]));
    assert_eq!(reserve(vec![on("other", 3)], 101, 0).await, allowed(&[1]));
    assert_eq!(
        reserve(vec![on("k", 3)], 5_000, 1_000).await,
        allowed(&[1]),
        "a new window restarts the count"
    );
    assert_eq!(store.login_locked_until("k", 5_000).await.unwrap(), None);
    assert_eq!(reserve(vec![on("k", 3)], 5_000, 1_000).await, allowed(&[2]));
    assert_eq!(
        reserve(vec![on("k", 3)], 5_000, 1_000).await,
        allowed(&[3]),
        "the attempt that reaches the threshold is allowed and locks"
    );
    assert_eq!(
        store.login_locked_until("k", 5_000).await.unwrap(),
        Some(5_060)
    );
    assert_eq!(
        store.login_locked_until("k", 5_060).await.unwrap(),
        None,
        "the lock has expired"
    );
    for now in [5_001, 5_060] {
        assert_eq!(
            reserve(vec![on("k", 3)], now, 1_000).await,
            LoginAttempt::Locked { until: 5_060 },
            "locked through its last second ({now})"
        );
    }
    // A locked key counts nothing on the other keys of the request either.
    assert_eq!(
        reserve(vec![on("other", 3), on("k", 3)], 5_030, 0).await,
        LoginAttempt::Locked { until: 5_060 }
    );
    assert_eq!(reserve(vec![on("other", 3)], 5_030, 0).await, allowed(&[2]));
    // After the lock, the next attempt is failure 4: the lock doubles.
    assert_eq!(reserve(vec![on("k", 3)], 5_061, 1_000).await, allowed(&[4]));
    assert_eq!(
        store.login_locked_until("k", 5_061).await.unwrap(),
        Some(5_061 + 120)
    );
    // A success clears every attempt up to it, and its lock.
    release("k", 4, Release::UpTo, 3).await;
    assert_eq!(store.login_locked_until("k", 5_061).await.unwrap(), None);
    assert_eq!(reserve(vec![on("k", 3)], 5_062, 1_000).await, allowed(&[1]));
    // Releasing one attempt takes back the lock it set, and only its own count.
    assert_eq!(reserve(vec![on("a", 2)], 6_000, 0).await, allowed(&[1]));
    assert_eq!(reserve(vec![on("a", 2)], 6_000, 0).await, allowed(&[2]));
    assert_eq!(
        store.login_locked_until("a", 6_000).await.unwrap(),
        Some(6_060)
    );
    release("a", 2, Release::One, 2).await;
    assert_eq!(store.login_locked_until("a", 6_000).await.unwrap(), None);
    assert_eq!(reserve(vec![on("a", 2)], 6_000, 0).await, allowed(&[2]));
    // An earlier attempt's success leaves the attempts counted after it.
    assert_eq!(reserve(vec![on("b", 9)], 6_000, 0).await, allowed(&[1]));
    assert_eq!(reserve(vec![on("b", 9)], 6_000, 0).await, allowed(&[2]));
    assert_eq!(reserve(vec![on("b", 9)], 6_000, 0).await, allowed(&[3]));
    release("b", 2, Release::UpTo, 9).await;
    assert_eq!(reserve(vec![on("b", 9)], 6_000, 0).await, allowed(&[2]));
}

/// The lock each failure sets is `ThrottlePolicy::lock_for` to the second: doubling from the
/// threshold, capped, for policies whose cap is reached by `max_lock` or by 20 doublings.
async fn lock_durations_follow_the_policy(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    let policies = [
        ThrottlePolicy::default(),
        ThrottlePolicy {
            base_lock: Duration::from_secs(1),
            max_lock: Duration::from_secs(100 * 365 * 86_400),
            ..ThrottlePolicy::default()
        },
        ThrottlePolicy {
            base_lock: Duration::from_secs(600),
            max_lock: Duration::from_secs(60),
            ..ThrottlePolicy::default()
        },
    ];
    for (index, policy) in policies.iter().enumerate() {
        for threshold in [1, 5] {
            let key = ThrottleKey {
                key: format!("policy-{index}-{threshold}"),
                rule: policy.lock_rule(threshold),
            };
            let mut now = 1_000_000;
            for failures in 1..30 {
                let attempt = store
                    .reserve_login_attempt(std::slice::from_ref(&key), now, 0)
                    .await
                    .unwrap();
                assert_eq!(
                    attempt,
                    LoginAttempt::Allowed {
                        numbers: vec![failures]
                    }
                );
                let until = store.login_locked_until(&key.key, now - 1).await.unwrap();
                let expected = policy
                    .lock_for(failures, threshold)
                    .map(|lock| now + i64::try_from(lock.as_secs()).unwrap());
                assert_eq!(
                    until, expected,
                    "{policy:?}, threshold {threshold}, failure {failures}"
                );
                now = until.unwrap_or(now) + 1;
            }
        }
    }
}

/// N parallel reservations against a threshold L, spread over two store handles (two server
/// instances on one database): exactly L are allowed, the rest see the lock.
async fn parallel_reservations_allow_the_threshold(url: &str) {
    let first = store::connect(url).await.unwrap();
    first.migrate().await.unwrap();
    let second = store::connect(url).await.unwrap();
    let rule = ThrottlePolicy::default().lock_rule(5);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let attempts: Vec<_> = (0..24)
        .map(|i| {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let keys = vec![ThrottleKey {
                key: "account:race@example.com".to_owned(),
                rule,
            }];
            tokio::spawn(async move { store.reserve_login_attempt(&keys, now, 0).await })
        })
        .collect();
    let mut numbers = Vec::new();
    let mut locked = 0;
    for attempt in attempts {
        match attempt.await.unwrap().unwrap() {
            LoginAttempt::Allowed { numbers: n } => numbers.extend(n),
            LoginAttempt::Locked { until } => {
                assert_eq!(until, now + 60);
                locked += 1;
            }
        }
    }
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        vec![1, 2, 3, 4, 5],
        "each allowed attempt has its own number"
    );
    assert_eq!(locked, 19);
}

fn browser_session(id: u8, user_id: &str, now: i64) -> BrowserSession {
    BrowserSession {
        id_hash: vec![id; 32],
        user_id: user_id.to_owned(),
        auth_time: now,
        last_seen: now,
        expires_at: now + 36_000,
        amr: "pwd".to_owned(),
    }
}

fn code(id: u8, client_id: &str, user_id: &str, expires_at: i64) -> AuthorizationCodeRecord {
    AuthorizationCodeRecord {
        code_hash: vec![id; 32],
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        redirect_uri: "https://c1.example/cb".to_owned(),
        scope: "openid a".to_owned(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        nonce: Some("n-0S6_WzA2Mj".to_owned()),
        auth_time: expires_at - 100,
        amr: "pwd".to_owned(),
        expires_at,
        used_at: None,
        family_id: None,
        access_jti: None,
        access_expires_at: None,
    }
}

/// Browser sessions (idle and absolute ends in SQL), single-use codes (one `Fresh` of two
/// concurrent redemptions, replay told from unknown and expired), consents (union,
/// withdrawal) and the cascades of deleting a user or client.
async fn sign_in_conformance(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.create_scope(&scope("a")).await.unwrap();
    store.create_scope(&scope("b")).await.unwrap();
    store
        .create_client(&client("c1", &["a", "b"]))
        .await
        .unwrap();
    store.create_client(&client("c2", &["a"])).await.unwrap();
    store
        .create_user(&user("u1", "al@example.com", &["a"]))
        .await
        .unwrap();
    store
        .create_user(&user("u2", "bo@example.com", &[]))
        .await
        .unwrap();
    let now = 1_800_000_000;

    // Sessions: alive until the absolute end, and only while used within the idle window.
    let s1 = browser_session(1, "u1", now);
    store.insert_browser_session(&s1).await.unwrap();
    let found = store
        .find_browser_session(&s1.id_hash, now + 10, now - 1800)
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&s1));
    assert_eq!(
        store
            .find_browser_session(&s1.id_hash, now + 10, now)
            .await
            .unwrap(),
        None,
        "idle: last seen at the idle cutoff"
    );
    assert_eq!(
        store
            .find_browser_session(&s1.id_hash, s1.expires_at, now - 1800)
            .await
            .unwrap(),
        None,
        "absolute end"
    );
    store
        .touch_browser_session(&s1.id_hash, now + 60)
        .await
        .unwrap();
    store
        .touch_browser_session(&s1.id_hash, now + 30)
        .await
        .unwrap();
    let touched = store
        .find_browser_session(&s1.id_hash, now + 61, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen, now + 60, "last_seen never goes back");
    assert!(
        store
            .find_browser_session(&[9; 32], now, 0)
            .await
            .unwrap()
            .is_none()
    );
    store
        .insert_browser_session(&browser_session(2, "u1", now))
        .await
        .unwrap();
    store
        .insert_browser_session(&browser_session(3, "u2", now))
        .await
        .unwrap();
    assert!(store.delete_browser_session(&s1.id_hash).await.unwrap());
    assert!(!store.delete_browser_session(&s1.id_hash).await.unwrap());
    assert_eq!(store.delete_user_browser_sessions("u1").await.unwrap(), 1);
    assert!(
        store
            .find_browser_session(&[3; 32], now, 0)
            .await
            .unwrap()
            .is_some()
    );

    // Codes: single use, even under concurrent redemption.
    let c = code(1, "c1", "u1", now + 60);
    store.insert_authorization_code(&c).await.unwrap();
    let (a, b) = tokio::join!(
        store.redeem_authorization_code(&c.code_hash, now),
        store.redeem_authorization_code(&c.code_hash, now)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let fresh: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            CodeRedemption::Fresh(record) => Some(record.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(fresh.len(), 1, "exactly one redemption wins: {outcomes:?}");
    assert_eq!(
        AuthorizationCodeRecord {
            used_at: None,
            ..fresh[0].clone()
        },
        c,
        "every field round-trips"
    );
    store
        .record_code_issue(&c.code_hash, Some("fam-1"), "jti-1", now + 300)
        .await
        .unwrap();
    match store
        .redeem_authorization_code(&c.code_hash, now + 1)
        .await
        .unwrap()
    {
        CodeRedemption::Replayed(record) => {
            assert_eq!(record.family_id.as_deref(), Some("fam-1"));
            assert_eq!(record.access_jti.as_deref(), Some("jti-1"));
            assert_eq!(record.access_expires_at, Some(now + 300));
            assert_eq!(record.used_at, Some(now));
        }
        other => panic!("a second presentation is a replay, got {other:?}"),
    }
    let expired = code(2, "c1", "u1", now + 60);
    store.insert_authorization_code(&expired).await.unwrap();
    assert_eq!(
        store
            .redeem_authorization_code(&expired.code_hash, now + 60)
            .await
            .unwrap(),
        CodeRedemption::Invalid,
        "a code is redeemable only before expires_at"
    );
    assert_eq!(
        store
            .redeem_authorization_code(&[7; 32], now)
            .await
            .unwrap(),
        CodeRedemption::Invalid
    );
    // Purge: sessions past their end and codes expired before the cutoff.
    store
        .insert_browser_session(&BrowserSession {
            expires_at: now,
            ..browser_session(4, "u2", now - 10)
        })
        .await
        .unwrap();
    assert_eq!(store.purge_sign_in(now, now + 61).await.unwrap(), 3);
    assert!(
        store
            .find_browser_session(&[3; 32], now, 0)
            .await
            .unwrap()
            .is_some()
    );

    // Consents: the union of what was allowed, per client, until withdrawn.
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let set = |names: &[&str]| {
        names
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert!(store.find_consent("u1", "c1").await.unwrap().is_none());
    store
        .add_consent("u1", "c1", &set(&["openid", "a"]), at)
        .await
        .unwrap();
    store
        .add_consent("u1", "c1", &set(&["b"]), at)
        .await
        .unwrap();
    store
        .add_consent("u1", "c2", &set(&["a"]), at)
        .await
        .unwrap();
    let consent = store.find_consent("u1", "c1").await.unwrap().unwrap();
    assert_eq!(consent.scopes, set(&["a", "b", "openid"]));
    assert_eq!(consent.granted_at, at);
    let listed: Vec<String> = store
        .list_consents("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(listed, ["c1", "c2"]);
    assert_eq!(store.delete_consents("u1", Some("c2")).await.unwrap(), 1);
    assert_eq!(store.list_consents("u1").await.unwrap().len(), 1);
    assert_eq!(store.delete_consents("u1", None).await.unwrap(), 1);
    assert!(store.list_consents("u1").await.unwrap().is_empty());

    // Deleting a user or a client takes its sessions, codes and consents with it.
    store
        .add_consent("u2", "c1", &set(&["a"]), at)
        .await
        .unwrap();
    store
        .insert_authorization_code(&code(5, "c2", "u2", now + 60))
        .await
        .unwrap();
    assert!(store.delete_client("c1").await.unwrap());
    assert!(store.list_consents("u2").await.unwrap().is_empty());
    assert!(store.delete_user("u2").await.unwrap());
    assert!(
        store
            .find_browser_session(&[3; 32], now, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .redeem_authorization_code(&[5; 32], now)
            .await
            .unwrap(),
        CodeRedemption::Invalid
    );
}

#[tokio::test]
async fn sqlite_sign_in_conformance() {
    let db = TestDb::sqlite();
    sign_in_conformance(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_sign_in_conformance() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    sign_in_conformance(store::connect(&db.url).await.unwrap()).await;
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
async fn sqlite_lock_durations_follow_the_policy() {
    let db = TestDb::sqlite();
    lock_durations_follow_the_policy(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_lock_durations_follow_the_policy() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    lock_durations_follow_the_policy(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_parallel_reservations_allow_the_threshold() {
    let db = TestDb::sqlite();
    parallel_reservations_allow_the_threshold(&db.url).await;
}

#[tokio::test]
async fn postgres_parallel_reservations_allow_the_threshold() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    parallel_reservations_allow_the_threshold(&db.url).await;
}

/// Runs one statement with text binds on the database at `url` (what an older release left).
pub async fn execute(url: &str, sql: &str, binds: &[&str]) {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(&pool).await.unwrap();
    }
}

async fn normalized_email(url: &str, id: &str) -> String {
    use sqlx::Row;
    let sql = "SELECT email_normalized FROM users WHERE id = $1";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0)
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0)
    }
}

/// Migration 0003's Rust step on rows stored with the old trim-and-lowercase form: each gets
/// its RFC 8265 form; two that now collide both get ` #dup <id>` and answer to neither spelling
/// until one is deleted and `migrate` runs again; a name RFC 8265 refuses keeps its old form.
async fn existing_users_are_renormalized(url: &str) {
    let store = store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    // Rows as the previous release stored them (email, its lowercase form).
    let old_rows = [
        ("u1", "Jos\u{e9}@Example.com", "jos\u{e9}@example.com"),
        ("u2", "jose\u{301}@example.com", "jose\u{301}@example.com"),
        (
            "u3",
            "\u{ff21}\u{ff24}\u{ff21}@example.com",
            "\u{ff41}\u{ff44}\u{ff41}@example.com",
        ),
        ("u4", "Bob@Example.com", "bob@example.com"),
        ("u5", "bad name@example.com", "bad name@example.com"),
    ];
    for (id, _, _) in &old_rows {
        store
            .create_user(&user(id, &format!("{id}@example.com"), &[]))
            .await
            .unwrap();
    }
    for (id, email, old) in &old_rows {
        execute(
            url,
            "UPDATE users SET email = $1, email_normalized = $2 WHERE id = $3",
            &[email, old, id],
        )
        .await;
    }
    execute(
        url,
        "INSERT INTO pending_data_migrations (name) VALUES ($1)",
        &["renormalize user emails (RFC 8265)"],
    )
    .await;

    store.migrate().await.unwrap();
    assert_eq!(
        normalized_email(url, "u1").await,
        "jos\u{e9}@example.com #dup u1"
    );
    assert_eq!(
        normalized_email(url, "u2").await,
        "jos\u{e9}@example.com #dup u2"
    );
    for ambiguous in ["jos\u{e9}@example.com", "jose\u{301}@example.com"] {
        assert!(store.find_user_by_email(ambiguous).await.unwrap().is_none());
    }
    assert_eq!(normalized_email(url, "u3").await, "ada@example.com");
    assert_eq!(
        store
            .find_user_by_email("ada@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u3"
    );
    assert_eq!(normalized_email(url, "u4").await, "bob@example.com");
    assert_eq!(normalized_email(url, "u5").await, "bad name@example.com");

    // Idempotent; and once the operator deletes one twin, the next migrate frees the name.
    store.migrate().await.unwrap();
    assert_eq!(
        normalized_email(url, "u1").await,
        "jos\u{e9}@example.com #dup u1"
    );
    assert!(store.delete_user("u2").await.unwrap());
    store.migrate().await.unwrap();
    assert_eq!(
        store
            .find_user_by_email("JOSE\u{301}@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u1"
    );
}

#[tokio::test]
async fn sqlite_existing_users_are_renormalized() {
    let db = TestDb::sqlite();
    existing_users_are_renormalized(&db.url).await;
}

#[tokio::test]
async fn postgres_existing_users_are_renormalized() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    existing_users_are_renormalized(&db.url).await;
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
