//! The SQL shared by both backends: SQLite and PostgreSQL accept the same statements here, so
//! one macro implements [`TranscriptionStore`](super::TranscriptionStore) for each pool type and
//! the two cannot drift apart.

/// Implements `TranscriptionStore` for a struct with `pool` and `writer` fields
/// (`sqlx::Pool<$db>`: reads go to `pool`, writes to `writer`) and a `fn migrator()`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::TranscriptionStore for $store {
            async fn migrate(&self) -> Result<(), StoreError> {
                Self::migrator().run(&self.writer).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn insert(
                &self,
                t: &Transcription,
                idempotency: Option<&IdempotencyKey>,
                outbox_due_ms: i64,
            ) -> Result<Inserted, StoreError> {
                let id = t.id.to_string();
                let mut tx = self.writer.begin().await?;
                if let Some(key) = idempotency
                    && let Some(earlier) = Self::replay(&mut *tx, key).await?
                {
                    return Ok(Inserted::Replayed(earlier));
                }
                sqlx::query(
                    "INSERT INTO transcriptions (id, owner, client_id, email, audio_url, status, \
                     transcript, error, notification, notification_reason, created_at, updated_at, \
                     queued_at_ms, attempt) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&id)
                .bind(&t.owner)
                .bind(&t.client_id)
                .bind(&t.email)
                .bind(&t.audio_url)
                .bind(t.status.as_str())
                .bind(&t.transcript)
                .bind(&t.error)
                .bind(t.notification.as_str())
                .bind(t.notification.reason())
                .bind(t.created_at)
                .bind(t.updated_at)
                .bind(t.created_at.unix_timestamp() * 1000)
                .bind(i32::try_from(t.attempt).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO transcription_outbox (transcription_id, due_at_ms) VALUES ($1, $2)",
                )
                .bind(&id)
                .bind(outbox_due_ms)
                .execute(&mut *tx)
                .await?;
                if let Some(key) = idempotency
                    && !Self::remember_key(&mut *tx, key, &id, t.created_at).await?
                {
                    tx.rollback().await?;
                    return Ok(Inserted::Replayed(self.concurrent_replay(key).await?));
                }
                tx.commit().await?;
                Ok(Inserted::Created)
            }

            async fn retry(
                &self,
                owner: &str,
                id: Uuid,
                idempotency: Option<&IdempotencyKey>,
                now: OffsetDateTime,
                outbox_due_ms: i64,
            ) -> Result<Retried, StoreError> {
                let key_id = id.to_string();
                let mut tx = self.writer.begin().await?;
                if let Some(key) = idempotency
                    && let Some(earlier) = Self::replay(&mut *tx, key).await?
                {
                    return Ok(Retried::Replayed(earlier));
                }
                let row = sqlx::query(concat!(
                    "UPDATE transcriptions SET status = 'queued', transcript = NULL, error = NULL, \
                     notification = 'pending', notification_reason = NULL, attempt = attempt + 1, \
                     updated_at = $1, queued_at_ms = $2 \
                     WHERE id = $3 AND owner = $4 AND status = 'failed' RETURNING ",
                    transcription_columns!()
                ))
                .bind(now)
                .bind(now.unix_timestamp() * 1000)
                .bind(&key_id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    let current = sqlx::query("SELECT status FROM transcriptions WHERE id = $1 AND owner = $2")
                        .bind(&key_id)
                        .bind(owner)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.rollback().await?;
                    return match current {
                        Some(row) => Ok(Retried::NotFailed(Status::parse(&row.try_get::<String, _>("status")?)?)),
                        None => Ok(Retried::NotFound),
                    };
                };
                let record = Self::transcription(&row)?;
                // A failed record has no outbox entry; a stale one from its last attempt is
                // taken over.
                sqlx::query(
                    "INSERT INTO transcription_outbox (transcription_id, due_at_ms) VALUES ($1, $2) \
                     ON CONFLICT (transcription_id) DO UPDATE SET due_at_ms = excluded.due_at_ms",
                )
                .bind(&key_id)
                .bind(outbox_due_ms)
                .execute(&mut *tx)
                .await?;
                if let Some(key) = idempotency
                    && !Self::remember_key(&mut *tx, key, &key_id, now).await?
                {
                    tx.rollback().await?;
                    return Ok(Retried::Replayed(self.concurrent_replay(key).await?));
                }
                tx.commit().await?;
                Ok(Retried::Queued(record))
            }

            async fn outbox_done(&self, id: Uuid) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM transcription_outbox WHERE transcription_id = $1")
                    .bind(id.to_string())
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn outbox_due(&self, id: Uuid, due_ms: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE transcription_outbox SET due_at_ms = $1 WHERE transcription_id = $2")
                    .bind(due_ms)
                    .bind(id.to_string())
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn settle_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE idempotency_keys SET in_flight_until_ms = 0 WHERE owner = $1 AND key = $2")
                    .bind(owner)
                    .bind(key)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn get(&self, id: Uuid) -> Result<Option<Transcription>, StoreError> {
                let row = sqlx::query(concat!("SELECT ", transcription_columns!(), " FROM transcriptions WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| Self::transcription(&row)).transpose()
            }

            async fn list(
                &self,
                owner: &str,
                after: Option<Uuid>,
                limit: u32,
            ) -> Result<Option<Page>, StoreError> {
                // The cursor is a transcription of this owner: its row number stays internal.
                let before = match after {
                    None => i64::MAX,
                    Some(after) => {
                        let row = sqlx::query("SELECT seq FROM transcriptions WHERE id = $1 AND owner = $2")
                            .bind(after.to_string())
                            .bind(owner)
                            .fetch_optional(&self.pool)
                            .await?;
                        match row {
                            Some(row) => row.try_get::<i64, _>("seq")?,
                            None => return Ok(None),
                        }
                    }
                };
                // One row more than asked tells whether there is a next page.
                let rows = sqlx::query(concat!(
                    "SELECT seq, ", transcription_columns!(), " FROM transcriptions \
                     WHERE owner = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                ))
                .bind(owner)
                .bind(before)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
                let mut items = Vec::with_capacity(rows.len());
                for row in rows.iter().take(limit as usize) {
                    items.push(Self::transcription(row)?);
                }
                let next_cursor = if rows.len() > limit as usize {
                    items.last().map(|t| t.id)
                } else {
                    None
                };
                Ok(Some(Page { items, next_cursor }))
            }

            async fn report(
                &self,
                id: Uuid,
                report: &ResultReport,
                now: OffsetDateTime,
            ) -> Result<ReportOutcome, StoreError> {
                let key = id.to_string();
                let (transcript, error) = match report {
                    ResultReport::Processing => (None, None),
                    ResultReport::Completed { transcript } => (Some(transcript.as_str()), None),
                    ResultReport::Failed { error } => (None, Some(error.as_str())),
                };
                let sql = match report {
                    ResultReport::Processing => {
                        "UPDATE transcriptions SET status = $1, transcript = $2, error = $3, \
                         updated_at = $4 WHERE id = $5 AND status = 'queued'"
                    }
                    _ => {
                        "UPDATE transcriptions SET status = $1, transcript = $2, error = $3, \
                         updated_at = $4 WHERE id = $5 AND status IN ('queued', 'processing')"
                    }
                };
                let changed = sqlx::query(sql)
                    .bind(Status::from(report).as_str())
                    .bind(transcript)
                    .bind(error)
                    .bind(now)
                    .bind(&key)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                if changed > 0 {
                    return Ok(ReportOutcome::Applied);
                }
                let row = sqlx::query("SELECT status, transcript, error FROM transcriptions WHERE id = $1")
                    .bind(&key)
                    .fetch_optional(&self.writer)
                    .await?;
                let Some(row) = row else {
                    return Ok(ReportOutcome::NotFound);
                };
                let status = Status::parse(&row.try_get::<String, _>("status")?)?;
                let same = status == Status::from(report)
                    && row.try_get::<Option<String>, _>("transcript")?.as_deref() == transcript
                    && row.try_get::<Option<String>, _>("error")?.as_deref() == error;
                Ok(if same {
                    ReportOutcome::Unchanged
                } else {
                    ReportOutcome::Conflict(status)
                })
            }

            async fn report_notification(
                &self,
                id: Uuid,
                notification: &Notification,
                now: OffsetDateTime,
            ) -> Result<NotificationOutcome, StoreError> {
                let key = id.to_string();
                let changed = sqlx::query(
                    "UPDATE transcriptions SET notification = $1, notification_reason = $2, \
                     updated_at = $3 WHERE id = $4 AND notification = 'pending'",
                )
                .bind(notification.as_str())
                .bind(notification.reason())
                .bind(now)
                .bind(&key)
                .execute(&self.writer)
                .await?
                .rows_affected();
                if changed > 0 {
                    return Ok(NotificationOutcome::Applied);
                }
                let row = sqlx::query(
                    "SELECT notification, notification_reason FROM transcriptions WHERE id = $1",
                )
                .bind(&key)
                .fetch_optional(&self.writer)
                .await?;
                let Some(row) = row else {
                    return Ok(NotificationOutcome::NotFound);
                };
                let current = Notification::parse(
                    &row.try_get::<String, _>("notification")?,
                    row.try_get("notification_reason")?,
                )?;
                Ok(if &current == notification {
                    NotificationOutcome::Unchanged
                } else {
                    NotificationOutcome::Conflict(current)
                })
            }

            async fn claim_outbox(
                &self,
                now_ms: i64,
                lease_until_ms: i64,
                limit: u32,
            ) -> Result<Vec<OutboxEntry>, StoreError> {
                let rows = sqlx::query(
                    "SELECT o.transcription_id, t.audio_url, t.email, t.status, t.attempt \
                     FROM transcription_outbox o JOIN transcriptions t ON t.id = o.transcription_id \
                     WHERE o.due_at_ms <= $1 ORDER BY o.due_at_ms LIMIT $2",
                )
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let mut claimed = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: String = row.try_get("transcription_id")?;
                    let won = sqlx::query(
                        "UPDATE transcription_outbox SET due_at_ms = $1, attempts = attempts + 1 \
                         WHERE transcription_id = $2 AND due_at_ms <= $3",
                    )
                    .bind(lease_until_ms)
                    .bind(&id)
                    .bind(now_ms)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                    if won == 1 {
                        claimed.push(OutboxEntry {
                            transcription_id: parse_id(&id)?,
                            audio_url: row.try_get("audio_url")?,
                            email: row.try_get("email")?,
                            status: Status::parse(&row.try_get::<String, _>("status")?)?,
                            attempt: Self::attempt(&row)?,
                        });
                    }
                }
                Ok(claimed)
            }

            async fn requeue_stale(
                &self,
                stale_before_ms: i64,
                now_ms: i64,
                limit: u32,
            ) -> Result<u64, StoreError> {
                let mut tx = self.writer.begin().await?;
                let rows = sqlx::query(
                    "UPDATE transcriptions SET queued_at_ms = $1 WHERE id IN (\
                     SELECT t.id FROM transcriptions t WHERE t.status = 'queued' \
                     AND t.queued_at_ms <= $2 AND NOT EXISTS (SELECT 1 FROM transcription_outbox o \
                     WHERE o.transcription_id = t.id) ORDER BY t.queued_at_ms LIMIT $3) \
                     AND status = 'queued' RETURNING id",
                )
                .bind(now_ms)
                .bind(stale_before_ms)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                for row in &rows {
                    sqlx::query(
                        "INSERT INTO transcription_outbox (transcription_id, due_at_ms) \
                         VALUES ($1, $2) ON CONFLICT (transcription_id) DO NOTHING",
                    )
                    .bind(row.try_get::<String, _>("id")?)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(rows.len() as u64)
            }

            async fn outbox_len(&self) -> Result<u64, StoreError> {
                let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM transcription_outbox")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("n")?;
                Ok(u64::try_from(count).unwrap_or_default())
            }

            async fn purge_idempotency_keys(&self, before_ms: i64) -> Result<u64, StoreError> {
                Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at_ms < $1")
                    .bind(before_ms)
                    .execute(&self.writer)
                    .await?
                    .rows_affected())
            }
        }

        impl $store {
            /// Describes the earlier request that holds `key`, if there is one.
            async fn replay<'e, E>(executor: E, key: &IdempotencyKey) -> Result<Option<EarlierRequest>, StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let row = sqlx::query(
                    "SELECT request_hash, transcription_id, in_flight_until_ms FROM idempotency_keys \
                     WHERE owner = $1 AND key = $2",
                )
                .bind(&key.owner)
                .bind(&key.key)
                .fetch_optional(executor)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let hash: String = row.try_get("request_hash")?;
                let earlier: String = row.try_get("transcription_id")?;
                Ok(Some(EarlierRequest {
                    transcription_id: parse_id(&earlier)?,
                    same_request: hash == key.request_hash,
                    in_flight_until_ms: row.try_get("in_flight_until_ms")?,
                }))
            }

            /// Remembers `key` for transcription `id`; `false` when a concurrent request with
            /// the same key committed first (the caller rolls back and describes that one).
            async fn remember_key<'e, E>(
                executor: E,
                key: &IdempotencyKey,
                id: &str,
                created_at: OffsetDateTime,
            ) -> Result<bool, StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys \
                     (owner, key, request_hash, transcription_id, created_at_ms, \
                     in_flight_until_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&key.owner)
                .bind(&key.key)
                .bind(&key.request_hash)
                .bind(id)
                .bind(created_at.unix_timestamp() * 1000)
                .bind(key.in_flight_until_ms)
                .execute(executor)
                .await;
                match inserted {
                    Ok(_) => Ok(true),
                    Err(e) if is_unique_violation(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }

            /// The request that took `key` while this one was writing.
            async fn concurrent_replay(&self, key: &IdempotencyKey) -> Result<EarlierRequest, StoreError> {
                Self::replay(&self.writer, key)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("an idempotency key vanished".into()))
            }

            /// The `attempt` column.
            fn attempt(row: &<$db as sqlx::Database>::Row) -> Result<u32, StoreError> {
                let attempt: i32 = row.try_get("attempt")?;
                u32::try_from(attempt)
                    .map_err(|_| StoreError::Corrupt(format!("attempt {attempt}")))
            }

            fn transcription(row: &<$db as sqlx::Database>::Row) -> Result<Transcription, StoreError> {
                Ok(Transcription {
                    id: parse_id(&row.try_get::<String, _>("id")?)?,
                    owner: row.try_get("owner")?,
                    client_id: row.try_get("client_id")?,
                    email: row.try_get("email")?,
                    audio_url: row.try_get("audio_url")?,
                    status: Status::parse(&row.try_get::<String, _>("status")?)?,
                    transcript: row.try_get("transcript")?,
                    error: row.try_get("error")?,
                    notification: Notification::parse(
                        &row.try_get::<String, _>("notification")?,
                        row.try_get("notification_reason")?,
                    )?,
                    attempt: Self::attempt(row)?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }
    };
}

pub(crate) use impl_sql_store;

/// The columns [`Transcription`](super::Transcription) is read from.
macro_rules! transcription_columns {
    () => {
        "id, owner, client_id, email, audio_url, status, transcript, error, notification, \
         notification_reason, attempt, created_at, updated_at"
    };
}

pub(crate) use transcription_columns;
