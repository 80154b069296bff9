//! The SQL shared by both backends. SQLite and PostgreSQL accept the same statements here
//! (`$n` placeholders, no dialect-specific functions), so one macro implements [`Store`] for
//! each pool type and the two backends cannot drift apart.
//!
//! [`Store`]: super::Store

use crate::model::FamilyOwner;

/// The new failure count of a conflicting `login_failures` row: 1 when its window began
/// before `$2` (window_start_after), else one more.
macro_rules! next_failures {
    () => {
        "(CASE WHEN login_failures.window_start < $2 THEN 1 ELSE login_failures.failures + 1 END)"
    };
}

/// The lock (unix second) after failure `$n` of a key with rule row `$r` of `attempt`, at
/// `$1` (now): `base << (n − threshold)` seconds, `max_secs` from `max_doublings` doublings on
/// (no overflow; no `POWER`, which SQLite lacks), none below the threshold.
macro_rules! lock_after {
    ($n:expr, $r:literal) => {
        concat!(
            "CASE WHEN ",
            $n,
            " < ",
            $r,
            ".threshold THEN NULL ",
            "WHEN ",
            $n,
            " - ",
            $r,
            ".threshold >= ",
            $r,
            ".max_doublings THEN $1 + ",
            $r,
            ".max_secs ",
            "ELSE $1 + (",
            $r,
            ".base_secs << CAST(",
            $n,
            " - ",
            $r,
            ".threshold AS INTEGER)) END"
        )
    };
}

/// `attempt (throttle_key, threshold, base_secs, max_secs, max_doublings)` rows for `keys`
/// keys, binds from `$3` on.
fn attempt_rows(keys: usize) -> String {
    (0..keys)
        .map(|i| {
            let b = 3 + 5 * i;
            format!("(${b}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts one login attempt on each key unless it is locked at `$1`, and locks a key whose
/// count reaches its threshold, in one statement. Returns the rows of the keys counted; a key
/// locked at `$1` returns none. Binds: now, window_start_after, then per key: key, threshold,
/// base_secs, max_secs, max_doublings.
pub(super) fn reserve_login_attempt_sql(keys: usize) -> String {
    format!(
        concat!(
            "WITH attempt (throttle_key, threshold, base_secs, max_secs, max_doublings) AS (VALUES {rows}) ",
            "INSERT INTO login_failures (throttle_key, failures, window_start, locked_until) ",
            "SELECT a.throttle_key, 1, $1, ",
            lock_after!("1", "a"),
            " FROM attempt a WHERE TRUE ",
            "ON CONFLICT (throttle_key) DO UPDATE SET ",
            "failures = ",
            next_failures!(),
            ", ",
            "window_start = CASE WHEN login_failures.window_start < $2 THEN $1 ELSE login_failures.window_start END, ",
            "locked_until = (SELECT ",
            lock_after!(next_failures!(), "r"),
            " FROM attempt r WHERE r.throttle_key = login_failures.throttle_key) ",
            "WHERE login_failures.locked_until IS NULL OR login_failures.locked_until < $1 ",
            "RETURNING throttle_key, failures"
        ),
        rows = attempt_rows(keys)
    )
}

/// Takes back attempts: per key `(throttle_key, forget, number, threshold)` from `$1` on.
pub(super) fn release_login_attempts_sql(keys: usize) -> String {
    let rows = (0..keys)
        .map(|i| {
            let b = 1 + 4 * i;
            format!("(${b}, ${}, ${}, ${})", b + 1, b + 2, b + 3)
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        concat!(
            "WITH released (throttle_key, forget, number, threshold) AS (VALUES {rows}) ",
            "UPDATE login_failures SET ",
            "failures = CASE WHEN failures > r.forget THEN failures - r.forget ELSE 0 END, ",
            "locked_until = CASE WHEN failures = r.number OR failures - r.forget < r.threshold ",
            "THEN NULL ELSE locked_until END ",
            "FROM released r WHERE login_failures.throttle_key = r.throttle_key"
        ),
        rows = rows
    )
}

/// The condition selecting the refresh families of `owner` (columns prefixed with `table`, e.g.
/// `f.`), its placeholders numbered from `$first`, and the values to bind to them in order.
pub(super) fn family_owner_filter<'a>(
    owner: FamilyOwner<'a>,
    table: &str,
    first: usize,
) -> (String, Vec<&'a str>) {
    match owner {
        FamilyOwner::Client(id) => (format!("{table}client_id = ${first}"), vec![id]),
        FamilyOwner::User(id) => (format!("{table}user_id = ${first}"), vec![id]),
        FamilyOwner::UserAtClient { user, client } => (
            format!(
                "{table}user_id = ${first} AND {table}client_id = ${}",
                first + 1
            ),
            vec![user, client],
        ),
    }
}

/// The `pending_data_migrations` row of migration 0003.
pub(super) const RENORMALIZE_USER_EMAILS: &str = "renormalize user emails (RFC 8265)";

/// Implements `Store` for a struct with `pool` and `writer` fields (`sqlx::Pool<$db>`; reads go
/// to `pool`, writes to `writer`) and a `fn migrator() -> sqlx::migrate::Migrator`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> Result<(), StoreError> {
                Self::migrator().run(&self.writer).await?;
                renormalize_user_emails(&self.writer).await?;
                // The OpenID Connect identity scopes exist in every database (OIDC Core §5.4).
                for (name, description) in $crate::signin::IDENTITY_SCOPES {
                    sqlx::query(
                        "INSERT INTO scopes (name, description, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(name)
                    .bind(description)
                    .bind(time::OffsetDateTime::now_utc())
                    .execute(&self.writer)
                    .await?;
                }
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ScopeStore for $store {
            async fn create_scope(&self, scope: &Scope) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO scopes (name, description, created_at) VALUES ($1, $2, $3)")
                    .bind(&scope.name)
                    .bind(&scope.description)
                    .bind(scope.created_at)
                    .execute(&self.writer)
                    .await
                    .map_err(|e| map_insert_error(e, &format!("scope `{}`", scope.name), None))?;
                Ok(())
            }

            async fn list_scopes(&self) -> Result<Vec<Scope>, StoreError> {
                let rows = sqlx::query("SELECT name, description, created_at FROM scopes ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Scope {
                            name: row.try_get("name")?,
                            description: row.try_get("description")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn delete_scope(&self, name: &str) -> Result<bool, StoreError> {
                match sqlx::query("DELETE FROM scopes WHERE name = $1")
                    .bind(name)
                    .execute(&self.writer)
                    .await
                {
                    Ok(done) => Ok(done.rows_affected() > 0),
                    Err(e) if is_foreign_key_violation(&e) => Err(StoreError::ScopeInUse(name.to_owned())),
                    Err(e) => Err(e.into()),
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ClientStore for $store {
            async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "INSERT INTO clients (id, name, secret_hash, grant_types, disabled, created_at, \
                     public_client, first_party, id_token_alg, redirect_uris, post_logout_redirect_uris) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&client.id)
                .bind(&client.name)
                .bind(&client.secret_hash)
                .bind(join_grant_types(&client.grant_types))
                .bind(client.disabled)
                .bind(client.created_at)
                .bind(client.public)
                .bind(client.first_party)
                .bind(client.id_token_alg.as_str())
                .bind(client.redirect_uris.join(" "))
                .bind(client.post_logout_redirect_uris.join(" "))
                .execute(&mut *tx)
                .await
                .map_err(|e| map_insert_error(e, &format!("client `{}`", client.id), None))?;
                for scope in &client.scopes {
                    sqlx::query("INSERT INTO client_scopes (client_id, scope) VALUES ($1, $2)")
                        .bind(&client.id)
                        .bind(scope)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| map_insert_error(e, "client scope", Some(scope)))?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT c.id, c.name, c.secret_hash, c.grant_types, c.disabled, c.created_at, cs.scope, ",
                    "c.public_client, c.first_party, c.id_token_alg, c.redirect_uris, c.post_logout_redirect_uris ",
                    "FROM clients c LEFT JOIN client_scopes cs ON cs.client_id = c.id WHERE c.id = $1"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(fold_clients(&rows)?.pop())
            }

            async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT c.id, c.name, c.secret_hash, c.grant_types, c.disabled, c.created_at, cs.scope, ",
                    "c.public_client, c.first_party, c.id_token_alg, c.redirect_uris, c.post_logout_redirect_uris ",
                    "FROM clients c LEFT JOIN client_scopes cs ON cs.client_id = c.id ",
                    "ORDER BY c.created_at, c.id"
                ))
                .fetch_all(&self.pool)
                .await?;
                fold_clients(&rows)
            }

            async fn set_client_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE clients SET disabled = $1 WHERE id = $2")
                    .bind(disabled)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_client_secret_hash(&self, id: &str, hash: &[u8]) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE clients SET secret_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM clients WHERE id = $1")
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn create_user(&self, user: &User) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "INSERT INTO users (id, email, email_normalized, password_hash, disabled, created_at, \
                     display_name, email_verified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(normalize_username(&user.email)?)
                .bind(&user.password_hash)
                .bind(user.disabled)
                .bind(user.created_at)
                .bind(&user.display_name)
                .bind(user.email_verified)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_insert_error(e, &format!("user `{}`", user.email), None))?;
                insert_permissions(&mut tx, &user.id, &user.permissions).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_user(&self, id: &str) -> Result<Option<User>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT u.id, u.email, u.password_hash, u.disabled, u.created_at, u.display_name, u.email_verified, p.scope ",
                    "FROM users u LEFT JOIN user_permissions p ON p.user_id = u.id WHERE u.id = $1"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(fold_users(&rows)?.pop())
            }

            async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
                // A name RFC 8265 refuses cannot belong to anyone.
                let Ok(normalized) = normalize_username(email) else { return Ok(None) };
                let rows = sqlx::query(concat!(
                    "SELECT u.id, u.email, u.password_hash, u.disabled, u.created_at, u.display_name, u.email_verified, p.scope ",
                    "FROM users u LEFT JOIN user_permissions p ON p.user_id = u.id WHERE u.email_normalized = $1"
                ))
                .bind(normalized)
                .fetch_all(&self.pool)
                .await?;
                Ok(fold_users(&rows)?.pop())
            }

            async fn list_users(&self) -> Result<Vec<User>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT u.id, u.email, u.password_hash, u.disabled, u.created_at, u.display_name, u.email_verified, p.scope ",
                    "FROM users u LEFT JOIN user_permissions p ON p.user_id = u.id ORDER BY u.created_at, u.id"
                ))
                .fetch_all(&self.pool)
                .await?;
                fold_users(&rows)
            }

            async fn set_user_permissions(&self, id: &str, permissions: &BTreeSet<String>) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                if exists.is_none() {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM user_permissions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
                insert_permissions(&mut tx, id, permissions).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_user_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                    .bind(disabled)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_user_profile(&self, id: &str, display_name: Option<&str>, email_verified: bool) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE users SET display_name = $1, email_verified = $2 WHERE id = $3")
                    .bind(display_name)
                    .bind(email_verified)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&self.writer).await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn create_refresh_family(&self, family: &RefreshFamily, first: &RefreshTokenRecord) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "INSERT INTO refresh_families (id, client_id, user_id, scope, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&family.id)
                .bind(&family.client_id)
                .bind(&family.user_id)
                .bind(&family.scope)
                .bind(family.created_at)
                .bind(family.revoked_at)
                .execute(&mut *tx)
                .await?;
                insert_refresh_token(&mut tx, first).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_refresh_token(&self, token_hash: &[u8]) -> Result<Option<RefreshLookup>, StoreError> {
                let row = sqlx::query(concat!(
                    "SELECT t.token_hash, t.family_id, t.parent_hash, t.issued_at, t.expires_at, t.used_at, ",
                    "t.access_jti, t.access_expires_at, ",
                    "f.client_id, f.user_id, f.scope, f.created_at, f.revoked_at ",
                    "FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1"
                ))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let token = refresh_token_from_row(&row)?;
                let family = RefreshFamily {
                    id: token.family_id.clone(),
                    client_id: row.try_get("client_id")?,
                    user_id: row.try_get("user_id")?,
                    scope: row.try_get("scope")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                };
                let successor = sqlx::query(
                    "SELECT token_hash, family_id, parent_hash, issued_at, expires_at, used_at, \
                     access_jti, access_expires_at FROM refresh_tokens WHERE parent_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?
                .map(|row| refresh_token_from_row(&row))
                .transpose()?;
                Ok(Some(RefreshLookup { token, family, successor }))
            }

            async fn rotate_refresh_token(
                &self,
                parent_hash: &[u8],
                used_at: OffsetDateTime,
                successor: &RefreshTokenRecord,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                // Not for a family revoked meanwhile: a refresh racing a revocation issues nothing.
                let done = sqlx::query(concat!(
                    "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL ",
                    "AND family_id IN (SELECT id FROM refresh_families WHERE revoked_at IS NULL)"
                ))
                    .bind(used_at)
                    .bind(parent_hash)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_refresh_token(&mut tx, successor).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_refresh_family(&self, family_id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(at)
                    .bind(family_id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_refresh_families(&self, owner: FamilyOwner<'_>, at: OffsetDateTime) -> Result<u64, StoreError> {
                let (filter, ids) = family_owner_filter(owner, "", 2);
                let sql = format!("UPDATE refresh_families SET revoked_at = $1 WHERE {filter} AND revoked_at IS NULL");
                let mut query = sqlx::query(&sql).bind(at);
                for id in ids {
                    query = query.bind(id);
                }
                let done = query.execute(&self.writer).await?;
                Ok(done.rows_affected())
            }

            async fn family_access_tokens(&self, families: Families<'_>, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
                const LIVE: &str = "t.access_jti IS NOT NULL AND t.access_expires_at >= $1";
                let (filter, ids) = match families {
                    Families::One(id) => ("t.family_id = $2".to_owned(), vec![id]),
                    Families::Of(owner) => family_owner_filter(owner, "f.", 2),
                };
                let sql = format!(
                    "SELECT t.access_jti, t.access_expires_at FROM refresh_tokens t \
                     JOIN refresh_families f ON f.id = t.family_id WHERE {filter} AND {LIVE}"
                );
                let mut query = sqlx::query(&sql).bind(now);
                for id in ids {
                    query = query.bind(id);
                }
                let rows = query.fetch_all(&self.writer).await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("access_jti")?, row.try_get("access_expires_at")?)))
                    .collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::RevocationStore for $store {
            async fn deny_access_token(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at < $1").bind(now).execute(&self.writer).await?;
                sqlx::query(
                    "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at",
                )
                .bind(jti)
                .bind(expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn is_access_token_denied(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
                let row = sqlx::query("SELECT 1 FROM revoked_access_tokens WHERE jti = $1 AND expires_at >= $2")
                    .bind(jti)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn denied_access_tokens(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
                let rows = sqlx::query("SELECT jti, expires_at FROM revoked_access_tokens WHERE expires_at >= $1")
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("jti")?, row.try_get("expires_at")?)))
                    .collect()
            }

            async fn revoke_subject(&self, cutoff: &SubjectCutoff, now: i64) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM revoked_subjects WHERE expires_at < $1").bind(now).execute(&self.writer).await?;
                sqlx::query(
                    "INSERT INTO revoked_subjects (kind, subject, not_before_ms, expires_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (kind, subject) DO UPDATE SET \
                     not_before_ms = CASE WHEN excluded.not_before_ms > revoked_subjects.not_before_ms \
                         THEN excluded.not_before_ms ELSE revoked_subjects.not_before_ms END, \
                     expires_at = CASE WHEN excluded.expires_at > revoked_subjects.expires_at \
                         THEN excluded.expires_at ELSE revoked_subjects.expires_at END",
                )
                .bind(cutoff.kind.as_str())
                .bind(&cutoff.subject)
                .bind(cutoff.not_before_ms)
                .bind(cutoff.expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn subject_cutoff(&self, kind: CutoffKind, subject: &str, now: i64) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query(
                    "SELECT not_before_ms FROM revoked_subjects WHERE kind = $1 AND subject = $2 AND expires_at >= $3",
                )
                .bind(kind.as_str())
                .bind(subject)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|row| row.try_get("not_before_ms")).transpose()?)
            }

            async fn revoked_subjects(&self, now: i64) -> Result<Vec<SubjectCutoff>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kind, subject, not_before_ms, expires_at FROM revoked_subjects WHERE expires_at >= $1",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.try_get("kind")?;
                        Ok(SubjectCutoff {
                            kind: CutoffKind::parse(&kind)
                                .ok_or_else(|| StoreError::Corrupt(format!("cutoff kind {kind}")))?,
                            subject: row.try_get("subject")?,
                            not_before_ms: row.try_get("not_before_ms")?,
                            expires_at: row.try_get("expires_at")?,
                        })
                    })
                    .collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ThrottleStore for $store {
            async fn login_locked_until(&self, key: &str, now: i64) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query("SELECT locked_until FROM login_failures WHERE throttle_key = $1 AND locked_until > $2")
                    .bind(key)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|row| row.try_get("locked_until")).transpose()?)
            }

            async fn reserve_login_attempt(
                &self,
                keys: &[ThrottleKey],
                now: i64,
                window_start_after: i64,
            ) -> Result<LoginAttempt, StoreError> {
                if keys.is_empty() {
                    return Ok(LoginAttempt::Allowed { numbers: Vec::new() });
                }
                let sql = reserve_login_attempt_sql(keys.len());
                let mut query = sqlx::query(&sql).bind(now).bind(window_start_after);
                for key in keys {
                    query = query
                        .bind(&key.key)
                        .bind(key.rule.threshold)
                        .bind(key.rule.base_secs)
                        .bind(key.rule.max_secs)
                        .bind(key.rule.max_doublings);
                }
                let rows = query.fetch_all(&self.writer).await?;
                let mut counted = std::collections::HashMap::with_capacity(rows.len());
                for row in &rows {
                    let key: String = row.try_get("throttle_key")?;
                    let failures: i64 = row.try_get("failures")?;
                    counted.insert(key, failures);
                }
                if counted.len() == keys.len() {
                    let numbers = keys
                        .iter()
                        .map(|k| counted.get(&k.key).copied().ok_or_else(|| StoreError::Corrupt(format!("no count for {}", k.key))))
                        .collect::<Result<_, _>>()?;
                    return Ok(LoginAttempt::Allowed { numbers });
                }
                // Some key is locked: take back what was counted on the others.
                let released: Vec<ReleasedAttempt<'_>> = keys
                    .iter()
                    .filter_map(|k| {
                        counted.get(&k.key).map(|&number| ReleasedAttempt {
                            key: &k.key,
                            number,
                            release: Release::One,
                            threshold: k.rule.threshold,
                        })
                    })
                    .collect();
                self.release_login_attempts(&released).await?;
                let mut until = now;
                for key in keys {
                    if let Some(locked) = self.login_locked_until(&key.key, now - 1).await? {
                        until = until.max(locked);
                    }
                }
                Ok(LoginAttempt::Locked { until })
            }

            async fn release_login_attempts(&self, attempts: &[ReleasedAttempt<'_>]) -> Result<(), StoreError> {
                if attempts.is_empty() {
                    return Ok(());
                }
                let sql = release_login_attempts_sql(attempts.len());
                let mut query = sqlx::query(&sql);
                for attempt in attempts {
                    let forget = match attempt.release {
                        Release::One => 1,
                        Release::UpTo => attempt.number,
                    };
                    query = query.bind(attempt.key).bind(forget).bind(attempt.number).bind(attempt.threshold);
                }
                query.execute(&self.writer).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SignInStore for $store {
            async fn insert_browser_session(&self, session: &BrowserSession) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO browser_sessions (id_hash, user_id, auth_time, last_seen, expires_at, amr) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&session.id_hash)
                .bind(&session.user_id)
                .bind(session.auth_time)
                .bind(session.last_seen)
                .bind(session.expires_at)
                .bind(&session.amr)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn find_browser_session(&self, id_hash: &[u8], now: i64, idle_after: i64) -> Result<Option<BrowserSession>, StoreError> {
                let row = sqlx::query(
                    "SELECT id_hash, user_id, auth_time, last_seen, expires_at, amr FROM browser_sessions \
                     WHERE id_hash = $1 AND expires_at > $2 AND last_seen > $3",
                )
                .bind(id_hash)
                .bind(now)
                .bind(idle_after)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| {
                    Ok(BrowserSession {
                        id_hash: row.try_get("id_hash")?,
                        user_id: row.try_get("user_id")?,
                        auth_time: row.try_get("auth_time")?,
                        last_seen: row.try_get("last_seen")?,
                        expires_at: row.try_get("expires_at")?,
                        amr: row.try_get("amr")?,
                    })
                })
                .transpose()
            }

            async fn touch_browser_session(&self, id_hash: &[u8], now: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE browser_sessions SET last_seen = $1 WHERE id_hash = $2 AND last_seen < $1")
                    .bind(now)
                    .bind(id_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn delete_browser_session(&self, id_hash: &[u8]) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_user_browser_sessions(&self, user_id: &str) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn insert_authorization_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, scope, \
                     code_challenge, nonce, auth_time, amr, expires_at, used_at, family_id, access_jti, access_expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&code.code_hash)
                .bind(&code.client_id)
                .bind(&code.user_id)
                .bind(&code.redirect_uri)
                .bind(&code.scope)
                .bind(&code.code_challenge)
                .bind(&code.nonce)
                .bind(code.auth_time)
                .bind(&code.amr)
                .bind(code.expires_at)
                .bind(code.used_at)
                .bind(&code.family_id)
                .bind(&code.access_jti)
                .bind(code.access_expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn redeem_authorization_code(&self, code_hash: &[u8], now: i64) -> Result<CodeRedemption, StoreError> {
                const COLUMNS: &str = "code_hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce, \
                     auth_time, amr, expires_at, used_at, family_id, access_jti, access_expires_at";
                let fresh = sqlx::query(&format!(
                    "UPDATE authorization_codes SET used_at = $1 \
                     WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING {COLUMNS}"
                ))
                .bind(now)
                .bind(code_hash)
                .fetch_optional(&self.writer)
                .await?;
                if let Some(row) = fresh {
                    return Ok(CodeRedemption::Fresh(code_from_row(&row)?));
                }
                let used = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM authorization_codes WHERE code_hash = $1 AND used_at IS NOT NULL"
                ))
                .bind(code_hash)
                .fetch_optional(&self.writer)
                .await?;
                match used {
                    Some(row) => Ok(CodeRedemption::Replayed(code_from_row(&row)?)),
                    None => Ok(CodeRedemption::Invalid),
                }
            }

            async fn record_code_issue(&self, code_hash: &[u8], family_id: Option<&str>, access_jti: &str, access_expires_at: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE authorization_codes SET family_id = $1, access_jti = $2, access_expires_at = $3 \
                     WHERE code_hash = $4",
                )
                .bind(family_id)
                .bind(access_jti)
                .bind(access_expires_at)
                .bind(code_hash)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn find_consent(&self, user_id: &str, client_id: &str) -> Result<Option<Consent>, StoreError> {
                let row = sqlx::query(
                    "SELECT user_id, client_id, scope, granted_at FROM consents WHERE user_id = $1 AND client_id = $2",
                )
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| consent_from_row(&row)).transpose()
            }

            async fn add_consent(&self, user_id: &str, client_id: &str, scopes: &BTreeSet<String>, at: OffsetDateTime) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                // Writing first takes the row's write lock, so two additions cannot lose one.
                sqlx::query(
                    "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, '', $3) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET granted_at = $3",
                )
                .bind(user_id)
                .bind(client_id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_insert_error(e, "consent", None))?;
                let current: String = sqlx::query_scalar("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
                    .bind(user_id)
                    .bind(client_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let union: BTreeSet<&str> = current.split_whitespace().chain(scopes.iter().map(String::as_str)).collect();
                sqlx::query("UPDATE consents SET scope = $1 WHERE user_id = $2 AND client_id = $3")
                    .bind(union.into_iter().collect::<Vec<_>>().join(" "))
                    .bind(user_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_consents(&self, user_id: &str, client_id: Option<&str>) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND ($2 IS NULL OR client_id = $2)")
                    .bind(user_id)
                    .bind(client_id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>, StoreError> {
                let rows = sqlx::query(
                    "SELECT user_id, client_id, scope, granted_at FROM consents WHERE user_id = $1 ORDER BY client_id",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(consent_from_row).collect()
            }

            async fn purge_sign_in(&self, now: i64, codes_before: i64) -> Result<u64, StoreError> {
                let sessions = sqlx::query("DELETE FROM browser_sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                let codes = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                    .bind(codes_before)
                    .execute(&self.writer)
                    .await?;
                Ok(sessions.rows_affected() + codes.rows_affected())
            }
        }

        fn code_from_row(row: &<$db as sqlx::Database>::Row) -> Result<AuthorizationCodeRecord, StoreError> {
            Ok(AuthorizationCodeRecord {
                code_hash: row.try_get("code_hash")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                redirect_uri: row.try_get("redirect_uri")?,
                scope: row.try_get("scope")?,
                code_challenge: row.try_get("code_challenge")?,
                nonce: row.try_get("nonce")?,
                auth_time: row.try_get("auth_time")?,
                amr: row.try_get("amr")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
                family_id: row.try_get("family_id")?,
                access_jti: row.try_get("access_jti")?,
                access_expires_at: row.try_get("access_expires_at")?,
            })
        }

        fn consent_from_row(row: &<$db as sqlx::Database>::Row) -> Result<Consent, StoreError> {
            let scope: String = row.try_get("scope")?;
            Ok(Consent {
                user_id: row.try_get("user_id")?,
                client_id: row.try_get("client_id")?,
                scopes: scope.split_whitespace().map(str::to_owned).collect(),
                granted_at: row.try_get("granted_at")?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::store::KeyStore for $store {
            async fn insert_key(&self, key: &KeyRecord, sealed_private_key: &[u8]) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, state, created_at, activated_at, retired_at, private_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&key.kid)
                .bind(key.alg.as_str())
                .bind(key.state.as_str())
                .bind(key.created_at)
                .bind(key.activated_at)
                .bind(key.retired_at)
                .bind(sealed_private_key)
                .execute(&self.writer)
                .await
                .map_err(|e| map_insert_error(e, &format!("key `{}` (or a second active key of its algorithm)", key.kid), None))?;
                Ok(())
            }

            async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kid, alg, state, created_at, activated_at, retired_at FROM signing_keys \
                     ORDER BY created_at DESC, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(key_record_from_row).collect()
            }

            async fn list_stored_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kid, alg, state, created_at, activated_at, retired_at, private_key FROM signing_keys \
                     ORDER BY created_at DESC, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(StoredKey {
                            record: key_record_from_row(row)?,
                            sealed_private_key: row.try_get("private_key")?,
                        })
                    })
                    .collect()
            }

            async fn set_sealed_private_key(
                &self,
                kid: &str,
                expected: Option<&[u8]>,
                sealed: &[u8],
            ) -> Result<bool, StoreError> {
                let done = match expected {
                    None => sqlx::query("UPDATE signing_keys SET private_key = $1 WHERE kid = $2 AND private_key IS NULL")
                        .bind(sealed)
                        .bind(kid)
                        .execute(&self.writer)
                        .await?,
                    Some(expected) => sqlx::query("UPDATE signing_keys SET private_key = $1 WHERE kid = $2 AND private_key = $3")
                        .bind(sealed)
                        .bind(kid)
                        .bind(expected)
                        .execute(&self.writer)
                        .await?,
                };
                Ok(done.rows_affected() > 0)
            }

            async fn activate_key(&self, next_kid: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                // Only the chain of the key's own algorithm: one active key per algorithm.
                sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE state = 'active' \
                     AND alg = (SELECT alg FROM signing_keys WHERE kid = $2 AND state = 'next')",
                )
                .bind(at)
                .bind(next_kid)
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query(
                    "UPDATE signing_keys SET state = 'active', activated_at = $1 WHERE kid = $2 AND state = 'next'",
                )
                .bind(at)
                .bind(next_kid)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn retire_key(&self, kid: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE kid = $2 AND state <> 'retired'",
                )
                .bind(at)
                .bind(kid)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SystemSecretStore for $store {
            async fn find_system_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
                let row = sqlx::query("SELECT sealed FROM system_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|row| row.try_get("sealed")).transpose()?)
            }

            async fn insert_system_secret(&self, name: &str, sealed: &[u8], at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "INSERT INTO system_secrets (name, sealed, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(sealed)
                .bind(at)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_system_secrets(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
                let rows = sqlx::query("SELECT name, sealed FROM system_secrets ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("name")?, row.try_get("sealed")?)))
                    .collect()
            }

            async fn replace_system_secret(&self, name: &str, expected: &[u8], sealed: &[u8]) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE system_secrets SET sealed = $1 WHERE name = $2 AND sealed = $3")
                    .bind(sealed)
                    .bind(name)
                    .bind(expected)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        /// Folds the rows of a clients ⟕ client_scopes join (ordered by client) into clients.
        fn fold_clients(rows: &[<$db as sqlx::Database>::Row]) -> Result<Vec<Client>, StoreError> {
            let mut clients: Vec<Client> = Vec::new();
            for row in rows {
                let id: String = row.try_get("id")?;
                let scope: Option<String> = row.try_get("scope")?;
                match clients.last_mut() {
                    Some(last) if last.id == id => {}
                    _ => {
                        let grant_types: String = row.try_get("grant_types")?;
                        clients.push(Client {
                            id,
                            name: row.try_get("name")?,
                            secret_hash: row.try_get("secret_hash")?,
                            grant_types: parse_grant_types(&grant_types)?,
                            scopes: Default::default(),
                            disabled: row.try_get("disabled")?,
                            created_at: row.try_get("created_at")?,
                            public: row.try_get("public_client")?,
                            first_party: row.try_get("first_party")?,
                            id_token_alg: {
                                let alg: String = row.try_get("id_token_alg")?;
                                IdTokenAlg::parse(&alg)
                                    .ok_or_else(|| StoreError::Corrupt(format!("id_token_alg {alg}")))?
                            },
                            redirect_uris: split_uris(row.try_get("redirect_uris")?),
                            post_logout_redirect_uris: split_uris(row.try_get("post_logout_redirect_uris")?),
                        });
                    }
                }
                if let (Some(scope), Some(last)) = (scope, clients.last_mut()) {
                    last.scopes.insert(scope);
                }
            }
            Ok(clients)
        }

        /// Folds the rows of a users ⟕ user_permissions join (ordered by user) into users.
        fn fold_users(rows: &[<$db as sqlx::Database>::Row]) -> Result<Vec<User>, StoreError> {
            let mut users: Vec<User> = Vec::new();
            for row in rows {
                let id: String = row.try_get("id")?;
                let scope: Option<String> = row.try_get("scope")?;
                match users.last_mut() {
                    Some(last) if last.id == id => {}
                    _ => users.push(User {
                        id,
                        email: row.try_get("email")?,
                        password_hash: row.try_get("password_hash")?,
                        permissions: Default::default(),
                        disabled: row.try_get("disabled")?,
                        created_at: row.try_get("created_at")?,
                        display_name: row.try_get("display_name")?,
                        email_verified: row.try_get("email_verified")?,
                    }),
                }
                if let (Some(scope), Some(last)) = (scope, users.last_mut()) {
                    last.permissions.insert(scope);
                }
            }
            Ok(users)
        }

/// Re-computes `users.email_normalized` with [`normalize_username`] (RFC 8265) once after
        /// migration 0003 (its `pending_data_migrations` row), and again on any later run while
        /// some row carries a [`duplicate_marker`]. Users whose forms collide all get the marker
        /// (a warning names them); a user whose stored e-mail RFC 8265 refuses keeps the old form
        /// (no login name can reach it) with a warning. One transaction.
        async fn renormalize_user_emails(pool: &sqlx::Pool<$db>) -> Result<(), StoreError> {
            let mut tx = pool.begin().await?;
            let pending = sqlx::query("DELETE FROM pending_data_migrations WHERE name = $1 RETURNING name")
                .bind(RENORMALIZE_USER_EMAILS)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            let marked = sqlx::query("SELECT 1 FROM users WHERE email_normalized LIKE '% #dup %' LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !pending && !marked {
                return Ok(());
            }
            let rows = sqlx::query("SELECT id, email, email_normalized FROM users ORDER BY created_at, id")
                .fetch_all(&mut *tx)
                .await?;
            let mut users = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get("id")?;
                let email: String = row.try_get("email")?;
                let current: String = row.try_get("email_normalized")?;
                users.push((id, email, current));
            }
            let mut by_form: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
            for (index, (id, email, _)) in users.iter().enumerate() {
                match normalize_username(email) {
                    Ok(form) => by_form.entry(form).or_default().push(index),
                    Err(err) => tracing::warn!(
                        target: "security",
                        user_id = %id,
                        %err,
                        "stored e-mail is not a valid RFC 8265 user name; the user cannot log in until an operator fixes it"
                    ),
                }
            }
            let mut changes = Vec::new();
            for (form, indices) in &by_form {
                if indices.len() > 1 {
                    let ids: Vec<&str> = indices.iter().map(|&i| users[i].0.as_str()).collect();
                    tracing::warn!(
                        target: "security",
                        user_ids = ?ids,
                        "users share one RFC 8265 user name; none of them can log in by it until an operator deletes all but one and runs `auth-server migrate`"
                    );
                }
                for &index in indices {
                    let (id, _, current) = &users[index];
                    let target = if indices.len() > 1 { duplicate_marker(form, id) } else { form.clone() };
                    if &target != current {
                        changes.push((id.as_str(), target));
                    }
                }
            }
            // Two passes so that one row may take a form another row is giving up.
            for (id, _) in &changes {
                sqlx::query("UPDATE users SET email_normalized = $1 WHERE id = $2")
                    .bind(format!("#renormalizing-{id}"))
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
            }
            for (id, target) in &changes {
                sqlx::query("UPDATE users SET email_normalized = $1 WHERE id = $2")
                    .bind(target)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            if !changes.is_empty() {
                tracing::info!(changed = changes.len(), "re-normalized user e-mails (RFC 8265)");
            }
            Ok(())
        }

        async fn insert_permissions(
            tx: &mut sqlx::Transaction<'_, $db>,
            user_id: &str,
            permissions: &BTreeSet<String>,
        ) -> Result<(), StoreError> {
            for scope in permissions {
                sqlx::query("INSERT INTO user_permissions (user_id, scope) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(scope)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| map_insert_error(e, "user permission", Some(scope)))?;
            }
            Ok(())
        }

        async fn insert_refresh_token(
            tx: &mut sqlx::Transaction<'_, $db>,
            token: &RefreshTokenRecord,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO refresh_tokens \
                 (token_hash, family_id, parent_hash, issued_at, expires_at, used_at, access_jti, access_expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&token.token_hash)
            .bind(&token.family_id)
            .bind(&token.parent_hash)
            .bind(token.issued_at)
            .bind(token.expires_at)
            .bind(token.used_at)
            .bind(&token.access_jti)
            .bind(token.access_expires_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        fn key_record_from_row(row: &<$db as sqlx::Database>::Row) -> Result<KeyRecord, StoreError> {
            let (alg, state) = parse_key_fields(row.try_get("alg")?, row.try_get("state")?)?;
            Ok(KeyRecord {
                kid: row.try_get("kid")?,
                alg,
                state,
                created_at: row.try_get("created_at")?,
                activated_at: row.try_get("activated_at")?,
                retired_at: row.try_get("retired_at")?,
            })
        }

        fn refresh_token_from_row(row: &<$db as sqlx::Database>::Row) -> Result<RefreshTokenRecord, StoreError> {
            Ok(RefreshTokenRecord {
                token_hash: row.try_get("token_hash")?,
                family_id: row.try_get("family_id")?,
                parent_hash: row.try_get("parent_hash")?,
                issued_at: row.try_get("issued_at")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
                access_jti: row.try_get("access_jti")?,
                access_expires_at: row.try_get("access_expires_at")?,
            })
        }
    };
}

pub(crate) use impl_sql_store;
