//! The SQL shared by both backends. SQLite and PostgreSQL accept the same statements here
//! (`$n` placeholders, no dialect-specific functions), so one macro implements [`Store`] for
//! each pool type and the two backends cannot drift apart.
//!
//! [`Store`]: super::Store

/// Implements `Store` for a struct with a `pool: sqlx::Pool<$db>` field and a
/// `fn migrator() -> sqlx::migrate::Migrator`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> Result<(), StoreError> {
                Self::migrator().run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_scope(&self, scope: &Scope) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO scopes (name, description, created_at) VALUES ($1, $2, $3)")
                    .bind(&scope.name)
                    .bind(&scope.description)
                    .bind(scope.created_at)
                    .execute(&self.pool)
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
                    .execute(&self.pool)
                    .await
                {
                    Ok(done) => Ok(done.rows_affected() > 0),
                    Err(e) if is_foreign_key_violation(&e) => Err(StoreError::ScopeInUse(name.to_owned())),
                    Err(e) => Err(e.into()),
                }
            }

            async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO clients (id, name, secret_hash, grant_types, disabled, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&client.id)
                .bind(&client.name)
                .bind(&client.secret_hash)
                .bind(join_grant_types(&client.grant_types))
                .bind(client.disabled)
                .bind(client.created_at)
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
                    "SELECT c.id, c.name, c.secret_hash, c.grant_types, c.disabled, c.created_at, cs.scope ",
                    "FROM clients c LEFT JOIN client_scopes cs ON cs.client_id = c.id WHERE c.id = $1"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(fold_clients(&rows)?.pop())
            }

            async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT c.id, c.name, c.secret_hash, c.grant_types, c.disabled, c.created_at, cs.scope ",
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
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_client_secret_hash(&self, id: &str, hash: &[u8]) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE clients SET secret_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM clients WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, state, created_at, activated_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&key.kid)
                .bind(key.alg.as_str())
                .bind(key.state.as_str())
                .bind(key.created_at)
                .bind(key.activated_at)
                .bind(key.retired_at)
                .execute(&self.pool)
                .await
                .map_err(|e| map_insert_error(e, &format!("key `{}` (or a second active key)", key.kid), None))?;
                Ok(())
            }

            async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kid, alg, state, created_at, activated_at, retired_at FROM signing_keys \
                     ORDER BY created_at DESC, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let (alg, state) = parse_key_fields(row.try_get("alg")?, row.try_get("state")?)?;
                        Ok(KeyRecord {
                            kid: row.try_get("kid")?,
                            alg,
                            state,
                            created_at: row.try_get("created_at")?,
                            activated_at: row.try_get("activated_at")?,
                            retired_at: row.try_get("retired_at")?,
                        })
                    })
                    .collect()
            }

            async fn activate_key(&self, next_kid: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE state = 'active'")
                    .bind(at)
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
                .execute(&self.pool)
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
                        });
                    }
                }
                if let (Some(scope), Some(last)) = (scope, clients.last_mut()) {
                    last.scopes.insert(scope);
                }
            }
            Ok(clients)
        }
    };
}

pub(crate) use impl_sql_store;

/// Builds a migrator from SQL files embedded at compile time.
pub(crate) fn migrator(files: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;
    let migrations = files
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}
