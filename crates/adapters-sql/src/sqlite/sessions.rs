//! [`SessionStore`] over `sessions`.
//!
//! A session is live while `revoked_at IS NULL AND expires_at > now AND
//! idle_expires_at > now` ([`Session::is_live`]); every conditional write
//! here repeats that condition, so a dead session keeps the reason it died
//! of. A session's refresh family is three columns of its row: the live
//! token's hash, the hash the last rotation spent and when.
//!
//! [`rotate`](SessionStore::rotate) is first one autocommit `UPDATE` of that
//! row, conditional on the presented hash being the live one: of any number
//! of concurrent presentations exactly one changes the row (SQLite has one
//! writer). Only the losers, and presentations of anything but the live
//! token, read the row to tell a replay from reuse; a reuse revokes with a
//! conditional `UPDATE`, so concurrent reuses revoke — and report — once.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{
    NewSession, RevokeReason, Rotation, Session, SessionId, SessionStart, SessionStore, StoreError,
    Timestamp, TokenHash, User, UserId,
};
use sqlx::SqliteConnection;

use super::{commit, rollback, SqliteStores};
use crate::error::map_sqlx;
use crate::family::{self, Miss};
use crate::rows::{self, session_cols, user_cols, USER_COLS};
use crate::time::{to_db, window};

/// Revokes every live (unrevoked, unexpired, not idled-out) session of a
/// user.
pub(super) async fn revoke_live_of_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, StoreError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
         WHERE user_id = ?3 AND revoked_at IS NULL AND expires_at > ?1 \
         AND idle_expires_at > ?1",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    .map_err(map_sqlx)
}

/// Revokes one live session. Conditional: only a live session changes, so
/// a session is revoked once and keeps its first reason.
async fn revoke_on(
    conn: &mut SqliteConnection,
    id: &SessionId,
    reason: RevokeReason,
    now: i64,
) -> Result<bool, StoreError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
         WHERE id = ?3 AND revoked_at IS NULL AND expires_at > ?1 \
         AND idle_expires_at > ?1",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(id.as_str())
    .execute(conn)
    .await
    .map(|r| r.rows_affected() > 0)
    .map_err(map_sqlx)
}

/// Deletes every session of a user, refresh families included (account
/// deletion).
pub(super) async fn delete_all_of_user(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = ?1")
        .bind(user_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
}

/// The session and its user, by the session's primary key.
async fn session_and_user_on(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<(Session, User)>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_cols!(u),
        ", ",
        session_cols!(s),
        " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id = ?1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(map_sqlx)?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((
        rows::session(&row, USER_COLS)?,
        rows::user(&row, 0)?,
    )))
}

#[async_trait]
impl SessionStore for SqliteStores {
    async fn start(&self, s: NewSession) -> Result<SessionStart, StoreError> {
        let created = to_db(s.created_at);
        let mut tx = self.write_tx().await?;
        // The user first, conditional on the credential epoch the sign-in
        // read: under the write lock nothing changes it before the commit.
        let stamped = sqlx::query(
            "UPDATE users SET last_login = ?1 WHERE id = ?2 AND tokens_invalidated_after IS ?3",
        )
        .bind(created)
        .bind(s.user_id.as_str())
        .bind(s.credential_epoch.map(to_db))
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if stamped.rows_affected() == 0 {
            rollback(tx).await?;
            return Ok(SessionStart::Stale);
        }
        // A duplicate id fails the primary key (→ Conflict) and the whole
        // transaction with it.
        sqlx::query(
            "INSERT INTO sessions \
             (id, user_id, created_at, last_used_at, expires_at, idle_expires_at, \
             user_agent, ip, refresh_hash) \
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(s.id.as_str())
        .bind(s.user_id.as_str())
        .bind(created)
        .bind(to_db(s.expires_at))
        .bind(to_db(s.idle_expires_at))
        .bind(s.user_agent)
        .bind(s.ip)
        .bind(s.refresh_hash.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        commit(tx).await?;
        Ok(SessionStart::Started)
    }

    async fn rotate(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        grace: TimeDelta,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        let now_db = to_db(now);

        // 1. Spend the token if it is its live family's live token: one
        //    write to one row, no index touched. The changed row decides
        //    the winner of a race. The idle end moves forward, never past
        //    the absolute end.
        let rotated = sqlx::query(concat!(
            "UPDATE sessions SET prev_refresh_hash = refresh_hash, refresh_hash = ?1, \
             rotated_at = ?2, last_used_at = ?2, idle_expires_at = MIN(?3, expires_at) \
             WHERE id = ?4 AND refresh_hash = ?5 AND revoked_at IS NULL \
             AND expires_at > ?2 AND idle_expires_at > ?2 RETURNING ",
            session_cols!()
        ))
        .bind(successor.as_str())
        .bind(now_db)
        .bind(now_db.saturating_add(window(idle)))
        .bind(id.as_str())
        .bind(presented.as_str())
        .fetch_optional(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        if let Some(row) = rotated {
            let session = rows::session(&row, 0)?;
            // The user outlives its sessions (deleting it deletes them), so
            // it is there unless the account was deleted a moment ago.
            let user = sqlx::query(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users WHERE id = ?1"
            ))
            .bind(session.user_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?;
            return Ok(match user {
                Some(row) => Rotation::Rotated {
                    session,
                    user: rows::user(&row, 0)?,
                },
                None => Rotation::Invalid,
            });
        }

        // 2. Not the live token (or the family is dead): read the family.
        let row = sqlx::query(concat!(
            "SELECT s.refresh_hash, s.prev_refresh_hash, s.rotated_at, ",
            user_cols!(u),
            ", ",
            session_cols!(s),
            " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id = ?1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let (session, user) = match family::after_miss(&row, presented, successor, now, grace)? {
            Miss::Invalid => return Ok(Rotation::Invalid),
            Miss::Replayed(session, user) => return Ok(Rotation::Replayed { session, user }),
            Miss::Reuse(session, user) => (session, user),
        };
        // The whole family dies — once, however many race to present it.
        if revoke_on(
            &mut *self.write_conn().await?,
            id,
            RevokeReason::RefreshReuse,
            now_db,
        )
        .await?
        {
            Ok(Rotation::Reused {
                session_id: session.id,
                user_id: user.id,
            })
        } else {
            Ok(Rotation::Invalid)
        }
    }

    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL \
             AND expires_at > ?2 AND idle_expires_at > ?2 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user.as_str())
        .bind(to_db(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?
        .iter()
        .map(|r| rows::session(r, 0))
        .collect()
    }

    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // The owner is part of the condition, so another user's id changes
        // nothing and reads exactly like an unknown session.
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
             WHERE id = ?3 AND user_id = ?4 AND revoked_at IS NULL \
             AND expires_at > ?1 AND idle_expires_at > ?1",
        )
        .bind(to_db(now))
        .bind(reason.as_str())
        .bind(id.as_str())
        .bind(owner.as_str())
        .execute(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        // One query, both sides by primary key.
        let mut conn = self.pool.acquire().await.map_err(map_sqlx)?;
        session_and_user_on(&mut conn, id.as_str()).await
    }

    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        revoke_on(&mut *self.write_conn().await?, id, reason, to_db(now)).await
    }

    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        revoke_live_of_user(&mut conn, user.as_str(), reason, to_db(now)).await
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        // A session has ended when it expired, idled out or was revoked;
        // its refresh family goes with the row.
        sqlx::query(
            "DELETE FROM sessions WHERE expires_at < ?1 OR idle_expires_at < ?1 \
             OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
        )
        .bind(to_db(before))
        .execute(&mut *self.write_conn().await?)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
    }
}
