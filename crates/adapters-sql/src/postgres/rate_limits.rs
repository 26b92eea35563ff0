//! [`RateLimitStore`] over `rate_limit_hits`: sliding-window counters.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{RateLimitStore, StoreError, Timestamp};
use sqlx::PgConnection;

use super::attempts::lock_key;
use super::error::map_pg;
use super::{commit, PostgresStores};
use crate::time::{to_db, window_start};

/// Deletes the hits of every counter keyed by an address
/// (`<anything>:<email>`). Compared by suffix rather than `LIKE`, because
/// `_` and `%` are legal in addresses.
pub(super) async fn delete_for_email_on(
    conn: &mut PgConnection,
    email: &str,
) -> Result<u64, StoreError> {
    sqlx::query(
        "DELETE FROM rate_limit_hits WHERE length(key) > length($1) \
         AND right(key, length($1) + 1) = ':' || $1",
    )
    .bind(email)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    .map_err(map_pg)
}

#[async_trait]
impl RateLimitStore for PostgresStores {
    async fn hit(
        &self,
        key: &str,
        now: Timestamp,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // As in `admit`: the advisory lock on the key, taken in a statement
        // of its own, makes the count and the insert one step.
        lock_key(&mut tx, "rate_limit_hits", key).await?;
        // The count stops at `limit` rows: one bounded index range scan.
        let counted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM rate_limit_hits \
             WHERE key = $1 AND hit_at > $2 LIMIT $3) AS recent",
        )
        .bind(key)
        .bind(window_start(now, window))
        .bind(i64::from(limit))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_pg)?;
        let recorded = counted < i64::from(limit);
        if recorded {
            sqlx::query("INSERT INTO rate_limit_hits (key, hit_at) VALUES ($1, $2)")
                .bind(key)
                .bind(to_db(now))
                .execute(&mut *tx)
                .await
                .map_err(map_pg)?;
        }
        commit(tx).await?;
        Ok(recorded)
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM rate_limit_hits WHERE hit_at < $1")
            .bind(to_db(before))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_pg)
    }
}
