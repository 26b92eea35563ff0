//! [`LoginAttemptStore`] over `login_attempts`: the lockout counter.
//!
//! A row is one admitted attempt in one bucket ([`LockoutKey`]): `email`
//! is the address, `device` the trusted device's id, or `''` for the
//! address's own bucket (migration 0004; every row from before it is the
//! address's). Both are plain equality columns of one index,
//! `(email, device, attempted_at)`: an admit reads one range of it, and
//! forgetting every bucket of an address is `email = $1`, its leading
//! column. (A device key packed into `email` would need a prefix match to
//! find an address's devices, which PostgreSQL's index serves only under
//! the C collation.)

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{Admission, Email, LockoutKey, LoginAttemptStore, StoreError, Timestamp};

use super::{commit, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::rows::Cells;
use crate::time::{from_db_saturating, to_db, window, window_start};

/// The `device` column of a bucket: the device's id, or `''` for the
/// address's own (ids are never empty).
fn device_of(key: &LockoutKey) -> &str {
    key.device_id().map_or("", |d| d.as_str())
}

/// Forgets every attempt against an address, in every bucket.
pub(super) async fn clear_on(conn: &mut impl Conn, email: &str) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM login_attempts WHERE email = $1",
        &[Arg::Text(email)],
    )
    .await
}

/// Serialises every count-then-insert on one key, inside a write
/// transaction, where the engine needs it ([`Backend::LOCK_KEY`]: a
/// transaction-scoped advisory lock on PostgreSQL, taken in a statement of
/// its own so that the count which follows takes its snapshot after the
/// lock is granted). The `namespace` keeps the lockout counter and the rate
/// limits from queueing behind each other for equal keys.
pub(super) async fn lock_key<B: Backend>(
    conn: &mut B::Conn,
    namespace: &str,
    key: &str,
) -> Result<(), StoreError> {
    match B::LOCK_KEY {
        Some(sql) => conn
            .execute(sql, &[Arg::Text(namespace), Arg::Text(key)])
            .await
            .map(drop),
        None => Ok(()),
    }
}

#[async_trait]
impl<B: Backend> LoginAttemptStore for SqlStores<B> {
    async fn admit(
        &self,
        key: &LockoutKey,
        now: Timestamp,
        window_len: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        // Newest first, at most `threshold` rows (one index range scan on
        // (email, device, attempted_at)): fewer means there is room;
        // exactly `threshold` means locked, and the last of them is the
        // attempt whose exit from the window brings the count below the
        // threshold.
        const RECENT: &str = "SELECT attempted_at FROM login_attempts \
             WHERE email = $1 AND device = $2 AND attempted_at > $3 \
             ORDER BY attempted_at DESC LIMIT $4";
        let (email, device) = (key.email().as_str(), device_of(key));
        let now_db = to_db(now);
        let mut tx = self.begin(Commit::Relaxed).await?;
        // No other admit for this bucket can count until this one commits,
        // so a parallel burst admits at most `threshold` attempts. Each
        // bucket has a lock of its own (a space is in no address and no
        // device id), so a device is never queued behind strangers.
        let lock = match key.device_id() {
            None => email.to_owned(),
            Some(d) => format!("{email} {d}"),
        };
        lock_key::<B>(&mut *tx, "login_attempts", &lock).await?;
        let args = [
            Arg::Text(email),
            Arg::Text(device),
            Arg::Int(window_start(now, window_len)),
            Arg::Int(i64::from(threshold)),
        ];
        let recent = tx
            .fetch_all(RECENT, &args)
            .await?
            .iter()
            .map(|r| r.int(0))
            .collect::<Result<Vec<i64>, _>>()?;

        let counted = u32::try_from(recent.len()).unwrap_or(u32::MAX);
        if counted < threshold {
            tx.execute(
                "INSERT INTO login_attempts (email, device, attempted_at) VALUES ($1, $2, $3)",
                &[Arg::Text(email), Arg::Text(device), Arg::Int(now_db)],
            )
            .await?;
            commit::<B>(tx).await?;
            return Ok(Admission::Admitted {
                failures: counted + 1,
            });
        }
        // Nothing was written; ending the transaction frees the lock.
        commit::<B>(tx).await?;
        // With a threshold of 0 nothing is ever admitted; report a full
        // window from now.
        let lifts_from = recent.last().copied().unwrap_or(now_db);
        Ok(Admission::Locked {
            retry_at: from_db_saturating(lifts_from.saturating_add(window(window_len))),
        })
    }

    async fn clear(&self, key: &LockoutKey) -> Result<(), StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM login_attempts WHERE email = $1 AND device = $2",
                &[Arg::Text(key.email().as_str()), Arg::Text(device_of(key))],
            )
            .await
            .map(drop)
    }

    async fn forget_address(&self, email: &Email) -> Result<(), StoreError> {
        let mut conn = self.write_conn(Commit::Relaxed).await?;
        clear_on(&mut *conn, email.as_str()).await.map(drop)
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM login_attempts WHERE attempted_at < $1",
                &[Arg::Int(to_db(before))],
            )
            .await
    }
}
