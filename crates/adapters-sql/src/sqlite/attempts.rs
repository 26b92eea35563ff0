//! [`LoginAttemptStore`] over `login_attempts`: the lockout counter.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{Admission, Email, LoginAttemptStore, StoreError, Timestamp};
use sqlx::SqliteConnection;

use super::{commit, SqliteStores};
use crate::error::map_sqlx;
use crate::time::{from_db_saturating, to_db, window, window_start};

/// Forgets every attempt against an address.
pub(super) async fn clear_on(conn: &mut SqliteConnection, email: &str) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM login_attempts WHERE email = ?1")
        .bind(email)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
}

#[async_trait]
impl LoginAttemptStore for SqliteStores {
    async fn admit(
        &self,
        email: &Email,
        now: Timestamp,
        window_len: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        let now_db = to_db(now);
        let mut tx = self.write_tx().await?;
        // Inside BEGIN IMMEDIATE this connection is the only writer: the
        // count and the insert below cannot interleave with another admit,
        // so a parallel burst admits at most `threshold` attempts.
        //
        // Newest first, at most `threshold` rows (one index range scan on
        // (email, attempted_at)): fewer means there is room; exactly
        // `threshold` means locked, and the last of them is the attempt
        // whose exit from the window brings the count below the threshold.
        let recent: Vec<i64> = sqlx::query_scalar(
            "SELECT attempted_at FROM login_attempts \
             WHERE email = ?1 AND attempted_at > ?2 \
             ORDER BY attempted_at DESC LIMIT ?3",
        )
        .bind(email.as_str())
        .bind(window_start(now, window_len))
        .bind(i64::from(threshold))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;

        let counted = u32::try_from(recent.len()).unwrap_or(u32::MAX);
        if counted < threshold {
            sqlx::query("INSERT INTO login_attempts (email, attempted_at) VALUES (?1, ?2)")
                .bind(email.as_str())
                .bind(now_db)
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            commit(tx).await?;
            return Ok(Admission::Admitted {
                failures: counted + 1,
            });
        }
        // Nothing was written; ending the transaction frees the lock.
        commit(tx).await?;
        // With a threshold of 0 nothing is ever admitted; report a full
        // window from now.
        let lifts_from = recent.last().copied().unwrap_or(now_db);
        Ok(Admission::Locked {
            retry_at: from_db_saturating(lifts_from.saturating_add(window(window_len))),
        })
    }

    async fn clear(&self, email: &Email) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        clear_on(&mut conn, email.as_str()).await.map(drop)
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM login_attempts WHERE attempted_at < ?1")
            .bind(to_db(before))
            .execute(&mut *self.write_conn().await?)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_sqlx)
    }
}
