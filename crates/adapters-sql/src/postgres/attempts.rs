//! [`LoginAttemptStore`] over `login_attempts`: the lockout counter.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{Admission, Email, LoginAttemptStore, StoreError, Timestamp};
use sqlx::PgConnection;

use super::error::map_pg;
use super::{commit, PostgresStores};
use crate::time::{from_db_saturating, to_db, window, window_start};

/// Forgets every attempt against an address.
pub(super) async fn clear_on(conn: &mut PgConnection, email: &str) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM login_attempts WHERE email = $1")
        .bind(email)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_pg)
}

/// Takes the transaction-scoped advisory lock that serialises every
/// count-then-insert on one key. Advisory locks are per database; the
/// `namespace` prefix keeps the lockout counter and the rate limits from
/// queueing behind each other for equal keys. A hash collision between two
/// keys only makes them wait for each other.
pub(super) async fn lock_key(
    conn: &mut PgConnection,
    namespace: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind(namespace)
        .bind(key)
        .execute(conn)
        .await
        .map(drop)
        .map_err(map_pg)
}

#[async_trait]
impl LoginAttemptStore for PostgresStores {
    async fn admit(
        &self,
        email: &Email,
        now: Timestamp,
        window_len: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        let now_db = to_db(now);
        let mut tx = self.begin().await?;
        // The lock is its own statement, so the count below takes its
        // snapshot only once the lock is held: it sees every attempt the
        // previous holder committed, and no other admit for this address
        // can count until this one commits. A parallel burst therefore
        // admits at most `threshold` attempts.
        lock_key(&mut tx, "login_attempts", email.as_str()).await?;
        // Newest first, at most `threshold` rows (one index range scan on
        // (email, attempted_at)): fewer means there is room; exactly
        // `threshold` means locked, and the last of them is the attempt
        // whose exit from the window brings the count below the threshold.
        let recent: Vec<i64> = sqlx::query_scalar(
            "SELECT attempted_at FROM login_attempts \
             WHERE email = $1 AND attempted_at > $2 \
             ORDER BY attempted_at DESC LIMIT $3",
        )
        .bind(email.as_str())
        .bind(window_start(now, window_len))
        .bind(i64::from(threshold))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_pg)?;

        let counted = u32::try_from(recent.len()).unwrap_or(u32::MAX);
        if counted < threshold {
            sqlx::query("INSERT INTO login_attempts (email, attempted_at) VALUES ($1, $2)")
                .bind(email.as_str())
                .bind(now_db)
                .execute(&mut *tx)
                .await
                .map_err(map_pg)?;
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
        sqlx::query("DELETE FROM login_attempts WHERE email = $1")
            .bind(email.as_str())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_pg)
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM login_attempts WHERE attempted_at < $1")
            .bind(to_db(before))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_pg)
    }
}
