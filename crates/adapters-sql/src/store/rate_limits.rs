//! [`RateLimitStore`] over `rate_limit_hits`: sliding-window counters.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{RateLimitStore, StoreError, Timestamp};

use super::attempts::lock_key;
use super::{commit, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::rows::Cells;
use crate::time::{to_db, window_start};

/// Deletes the hits of every counter keyed by an address
/// (`<anything>:<email>`). Compared by suffix rather than `LIKE`, because
/// `_` and `%` are legal in addresses.
pub(super) async fn delete_for_email_on(
    conn: &mut impl Conn,
    email: &str,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM rate_limit_hits WHERE length(key) > length($1) \
         AND substr(key, length(key) - length($1)) = ':' || $1",
        &[Arg::Text(email)],
    )
    .await
}

#[async_trait]
impl<B: Backend> RateLimitStore for SqlStores<B> {
    async fn hit(
        &self,
        key: &str,
        now: Timestamp,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, StoreError> {
        // The count stops at `limit` rows: one bounded index range scan.
        const COUNT: &str = "SELECT count(*) FROM (SELECT 1 FROM rate_limit_hits \
             WHERE key = $1 AND hit_at > $2 LIMIT $3) AS recent";
        let mut tx = self.begin(Commit::Relaxed).await?;
        // As in `admit`: the count and the insert are one step.
        lock_key::<B>(&mut *tx, "rate_limit_hits", key).await?;
        let args = [
            Arg::Text(key),
            Arg::Int(window_start(now, window)),
            Arg::Int(i64::from(limit)),
        ];
        let counted = match tx.fetch_optional(COUNT, &args).await? {
            Some(row) => row.int(0)?,
            None => 0,
        };
        let recorded = counted < i64::from(limit);
        if recorded {
            tx.execute(
                "INSERT INTO rate_limit_hits (key, hit_at) VALUES ($1, $2)",
                &[Arg::Text(key), Arg::Int(to_db(now))],
            )
            .await?;
        }
        commit::<B>(tx).await?;
        Ok(recorded)
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM rate_limit_hits WHERE hit_at < $1",
                &[Arg::Int(to_db(before))],
            )
            .await
    }
}
